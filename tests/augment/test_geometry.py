"""Tests for tileunet.augment.geometry: one coordinate map, mirrored borders, the paper's
elastic field."""

from __future__ import annotations

import numpy as np
import torch

from tileunet.augment.geometry import elastic_field, fold_into, fold_tensor, source_coordinates
from tileunet.augment.params import AugmentParams


def test_folding_is_mirror_reflection_without_edge_duplication():
    p = AugmentParams((4, 4), 12, (1, 1))
    coords = source_coordinates(p)
    # rows of the tile show source rows -5 .. 6, mirrored: 1 2 3 2 1 0 1 2 3 2 1 0
    assert np.array_equal(coords[0][:, 0], [1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0])
    unfolded = source_coordinates(p, fold=False)
    assert np.array_equal(unfolded[1][0], np.arange(-5, 7))


def test_fold_tensor_equals_fold_into():
    for n, x in [(4, np.arange(-20.0, 21.0) / 3), (1, np.linspace(-3, 3, 7)),
                 (7, np.linspace(2.0, 5.5, 8))]:
        expected = x.copy()
        fold_into(expected, n)
        assert np.array_equal(fold_tensor(torch.from_numpy(x), n).numpy(), expected)


def test_elastic_field_interpolates_grid_at_corners_edges_and_centre(rng):
    coarse = rng.normal(0.0, 10.0, (2, 3, 3))
    field = elastic_field(coarse, 101)
    assert field.shape == (2, 101, 101)
    grid = np.ix_([0, 50, 100], [0, 50, 100])
    np.testing.assert_allclose(field[0][grid], coarse[0], atol=1e-12)
    np.testing.assert_allclose(field[1][grid], coarse[1], atol=1e-12)
    # smooth: neighbouring pixels differ by a small fraction of the grid spacing's change
    assert np.abs(np.diff(field, axis=1)).max() < np.abs(coarse).max()
    # a constant coarse field gives the same constant everywhere (a pure shift)
    np.testing.assert_allclose(elastic_field(np.full((2, 3, 3), 4.0), 33), 4.0, atol=1e-12)
