"""Instance masks, separation borders and the training target (tileunet.targets.instances,
paper Fig. 3)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.measure import label as connected_components

from tileunet.targets.instances import (
    separate_touching,
    separated_cells,
    separation_border,
    to_instances,
    training_target,
)


# ----------------------------------------------------------------------------- helpers
def touching_pairs(labels: np.ndarray) -> int:
    """Number of cells with a pixel of another cell among their 8-neighbours."""
    count = 0
    for cell in np.unique(labels[labels != 0]):
        grown = ndi.binary_dilation(labels == cell, structure=np.ones((3, 3), dtype=bool))
        neighbours = labels[grown]
        count += int(np.any((neighbours != 0) & (neighbours != cell)))
    return count


# ------------------------------------------------------------------------ to_instances
def test_to_instances_keeps_noncontiguous_ids() -> None:
    labels = np.array([[0, 7, 7, 0], [40, 40, 0, 2]], dtype=np.uint16)
    out = to_instances(labels)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize("value", [1, 255, True])
def test_to_instances_splits_binary_masks_into_components(value) -> None:
    mask = np.zeros((6, 8), dtype=bool if value is True else np.uint8)
    mask[0:2, 0:2] = value
    mask[4:6, 5:8] = value
    mask[3, 3] = value  # a one-pixel cell
    out = to_instances(mask)
    assert out.dtype == np.int32
    assert sorted(np.unique(out).tolist()) == [0, 1, 2, 3]
    for region in ((slice(0, 2), slice(0, 2)), (slice(4, 6), slice(5, 8))):
        assert len(np.unique(out[region])) == 1 and out[region][0, 0] > 0


def test_to_instances_binary_uses_8_connectivity() -> None:
    mask = np.array([[255, 0], [0, 255]], dtype=np.uint8)
    assert np.unique(to_instances(mask)).tolist() == [0, 1]


def test_to_instances_float_masks() -> None:
    np.testing.assert_array_equal(
        to_instances(np.array([[0.0, 3.0, 5.0]])), np.array([[0, 3, 5]], dtype=np.int32)
    )
    np.testing.assert_array_equal(
        to_instances(np.array([[2.0, 0.0, 2.0]])), np.array([[1, 0, 2]], dtype=np.int32)
    )


def test_to_instances_empty_and_full() -> None:
    assert not to_instances(np.zeros((3, 4), dtype=np.uint8)).any()
    np.testing.assert_array_equal(to_instances(np.full((2, 2), 9)), np.full((2, 2), 9))


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.zeros((2, 3, 4), dtype=np.uint8), "2-D"),
        (np.zeros(5, dtype=np.uint8), "2-D"),
        (np.zeros((0, 4), dtype=np.uint8), "non-empty"),
        (np.array([[0, -1], [2, 3]]), "labels >= 0"),
        (np.array([[0.0, 0.5], [1.0, 1.0]]), "fractional"),
        (np.array([[0.0, np.nan]]), "finite"),
        (np.array([[0, 2**40]], dtype=np.int64), "int32"),
        (np.array([["a", "b"]]), "dtype"),
        (np.array([[1 + 1j, 0]]), "dtype"),
    ],
)
def test_to_instances_rejects_bad_masks(mask: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_instances(mask)


# ------------------------------------------------------------------- separation border
def test_separation_border_golden() -> None:
    labels = np.array([[1, 1, 2, 2, 2], [1, 1, 2, 2, 2]])
    expected = np.array([[0, 0, 1, 0, 0], [0, 0, 1, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(separation_border(labels), expected)
    # equal areas: the larger id gives up the line
    labels = np.array([[5, 5, 9, 9]])
    np.testing.assert_array_equal(separation_border(labels), [[False, False, True, False]])


@pytest.mark.parametrize("connectivity", [1, 2])
def test_touching_rectangles_become_two_components(connectivity: int) -> None:
    labels = np.zeros((12, 16), dtype=np.int32)
    labels[2:10, 2:7] = 4
    labels[3:11, 7:14] = 11
    assert connected_components(labels > 0, connectivity=connectivity).max() == 1
    target = training_target(labels)
    components = connected_components(target, connectivity=connectivity)
    assert components.max() == 2
    border = separation_border(labels)
    assert np.array_equal(np.flatnonzero(border.any(axis=0)), [7])  # a 1-pixel line ...
    assert np.all(labels[border] == 11)  # ... in the larger cell
    assert border.sum() == 8  # rows 3..9 side by side, plus row 10 touching diagonally


def test_diagonal_contact_is_separated() -> None:
    labels = np.zeros((6, 6), dtype=np.int32)
    labels[0:3, 0:3] = 1
    labels[3:6, 3:6] = 2
    target = training_target(labels)
    assert connected_components(target, connectivity=2).max() == 2
    assert separation_border(labels).sum() == 1


def test_isolated_cells_keep_all_pixels(rng: np.random.Generator) -> None:
    labels = np.zeros((40, 40), dtype=np.int32)
    labels[2:8, 2:9] = 17  # isolated
    labels[30:38, 3:5] = 23  # isolated, thin
    labels[15:25, 15:22] = 5  # touches 6
    labels[15:25, 22:30] = 6
    separated = separate_touching(labels)
    for cell in (17, 23):
        np.testing.assert_array_equal(separated == cell, labels == cell)
    assert touching_pairs(separated) == 0


def test_thin_cell_survives_against_a_larger_cell() -> None:
    labels = np.zeros((10, 12), dtype=np.int32)
    labels[1:9, 1:8] = 1  # large block
    labels[1:9, 8] = 2  # one-pixel-wide cell along its side
    separated = separate_touching(labels)
    np.testing.assert_array_equal(separated == 2, labels == 2)
    assert touching_pairs(separated) == 0


def test_cell_touched_everywhere_by_smaller_cells_is_kept() -> None:
    labels = np.zeros((8, 10), dtype=np.int32)
    labels[2, :] = 100  # one-pixel line, area 10: every pixel touches a 2x2 block
    for k, col in enumerate(range(0, 10, 2)):
        labels[3:5, col : col + 2] = k + 1  # area 4 each
    separated = separate_touching(labels)
    assert set(np.unique(separated).tolist()) == set(np.unique(labels).tolist())
    np.testing.assert_array_equal(separated == 100, labels == 100)
    assert touching_pairs(separated) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_separation_on_random_touching_cells(seed: int, voronoi_cells,
                                             random_disks) -> None:
    rng = np.random.default_rng(seed)
    labels = voronoi_cells((96, 96), 30, rng) if seed < 2 else random_disks((96, 96), 60, rng)
    assert touching_pairs(labels) > 0
    separated = separate_touching(labels)
    assert touching_pairs(separated) == 0
    border = separation_border(labels)
    np.testing.assert_array_equal(separated, np.where(border, 0, labels))
    assert not np.any(border & (labels == 0))
    # every cell survives, and each connected component of the target is one cell
    assert set(np.unique(separated).tolist()) == set(np.unique(labels).tolist())
    target = training_target(labels)
    for connectivity in (1, 2):
        components = connected_components(target, connectivity=connectivity)
        for index, box in enumerate(ndi.find_objects(components), start=1):
            inside = separated[box][components[box] == index]
            assert len(np.unique(inside)) == 1
    np.testing.assert_array_equal(separate_touching(separated), separated)  # idempotent


def test_binary_mask_has_no_separation_border() -> None:
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[2:8, 2:8] = 255
    assert not separation_border(mask).any()
    np.testing.assert_array_equal(training_target(mask), mask // 255)


def test_training_target_dtype_and_values() -> None:
    target = training_target(np.array([[0, 1, 1, 2, 2, 2]]))
    assert target.dtype == np.uint8
    np.testing.assert_array_equal(target, [[0, 1, 1, 0, 1, 1]])


def test_separated_cells_are_the_separated_labels_numbered_in_order_of_their_ids() -> None:
    labels = np.zeros((6, 12), dtype=np.int64)
    labels[1:5, 1:4] = 2_000_000_000
    labels[1:5, 4:9] = 40  # touches the first cell; the larger one gives up the line
    labels[2, 10] = 7
    cells, ids = separated_cells(labels)
    assert cells.dtype == np.int32 and ids.tolist() == [0, 7, 40, 2_000_000_000]
    np.testing.assert_array_equal(ids[cells], separate_touching(labels))
