"""Tests for tileunet.targets.sparse: strokes and whole painted cells as training targets."""

from __future__ import annotations

import numpy as np
import pytest

from tileunet.targets.instances import training_target
from tileunet.targets.sparse import (
    BACKGROUND,
    CELL,
    check_sparse,
    painted_cells,
    sparse_classes,
    sparse_targets,
)
from tileunet.targets.weightmap import border_term, weight_map


def test_strokes_teach_their_class_and_nothing_else_counts():
    labels = np.zeros((6, 8), np.int32)
    labels[0, :6] = BACKGROUND  # 6 background pixels
    labels[5, 4:6] = CELL  # 2 cell pixels
    target, weights, cells = sparse_targets(labels)
    assert target[0, :6].tolist() == [0] * 6 and target[5, 4:6].tolist() == [1, 1]
    assert not cells.any()
    annotated = labels > 0
    assert (weights[~annotated] == 0).all()
    # balanced over the 8 annotated pixels: 8 / (2 * 6) and 8 / (2 * 2)
    np.testing.assert_allclose(weights[0, :6], 8 / 12, rtol=1e-6)
    np.testing.assert_allclose(weights[5, 4:6], 8 / 4, rtol=1e-6)
    assert weights[annotated].mean() == pytest.approx(1.0)
    assert target[~annotated].max() == 0


def test_a_dense_mask_written_as_whole_cells_gives_the_papers_targets(rng):
    dense = np.zeros((48, 48), np.int32)
    dense[5:20, 5:20] = 1
    dense[5:20, 20:35] = 2  # touches cell 1
    dense[28:40, 10:30] = 3
    sparse = np.where(dense > 0, dense + 2, BACKGROUND)  # every pixel painted
    target, weights, cells = sparse_targets(sparse)
    np.testing.assert_array_equal(target, training_target(dense))
    np.testing.assert_allclose(weights, weight_map(dense), rtol=1e-5, atol=1e-6)
    assert set(np.unique(cells)) == {0, 3, 4, 5}


def test_the_border_term_applies_between_painted_cells_only_where_annotated():
    labels = np.zeros((20, 30), np.int32)
    labels[5:15, 3:12] = 3
    labels[5:15, 12:22] = 4  # two whole cells that touch
    target, weights, cells = sparse_targets(labels, class_weights=None)
    border = target[5:15, 11:13] == 0  # the separation border between them
    assert border.any()
    term = border_term(cells)
    assert (term[5:15, 11:13][border] > 1).all()
    # around the cells nothing is painted: no weight there, whatever the border term
    assert (weights[labels == 0] == 0).all() and term[labels == 0].max() > 0
    np.testing.assert_allclose(weights[labels > 0], 1 + term[labels > 0], rtol=1e-6)


def test_painted_cells_and_classes():
    labels = np.array([[0, 1, 2, 3, 3, 7]])
    assert painted_cells(labels).tolist() == [[0, 0, 0, 3, 3, 7]]
    assert sparse_classes(labels) == {0, 1}
    assert sparse_classes(np.array([[0, 1, 1]])) == {0}
    assert sparse_classes(np.array([[0, 0, 5]])) == {1}
    assert sparse_classes(np.zeros((2, 2), int)) == set()


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 2, 2), int), "2-D"),
    (np.zeros((2, 2), float), "integers"),
    (np.array([[0, -1]]), ">= 0"),
])
def test_bad_sparse_labels_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        check_sparse(bad)


def test_nothing_annotated_gives_zero_weights():
    target, weights, cells = sparse_targets(np.zeros((4, 4), np.int32))
    assert not target.any() and not weights.any() and not cells.any()
