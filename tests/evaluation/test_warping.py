"""Simple points and the warping error on small hand-made cases with known answers
(tileunet.evaluation.warping)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tileunet.evaluation.warping import simple_points, warping_error


# ------------------------------------------------------------------- simple points
def _patch(rows):
    return np.array([[c == "#" for c in r] for r in rows])


@pytest.mark.parametrize(
    ("rows", "simple"),
    [
        ((".#.", ".#.", ".#."), False),  # removing it cuts a line (cells merge)
        ((".#.", ".#.", "..."), True),  # end of a line
        (("...", ".#.", "..."), False),  # isolated pixel: removing deletes an object
        (("###", "#.#", "###"), False),  # filling it closes a hole (deletes a cell)
        (("#..", ".#.", "..#"), False),  # diagonal line: still cuts the cells apart
        (("#..", "...", "..#"), False),  # adding it would join two membranes
        ((".#.", "#..", "..."), True),  # 8-adjacent neighbours: adding changes nothing
        (("###", "###", "#.."), True),  # edge of a blob
        (("###", "###", "##."), False),  # removing it makes a one-pixel cell (a hole)
        (("###", "#.#", "#.#"), True),  # bottom of a U: filling keeps the cell open
        (("#.#", "...", "..."), False),  # two separate membrane pieces
    ],
)
def test_simple_points_known_patches(rows, simple):
    patch = _patch(rows)
    assert bool(simple_points(patch)[1, 1]) is simple


def _topology(mask):
    padded = np.pad(mask, 1, constant_values=True)  # border = membrane
    n_fg = ndimage.label(padded, structure=np.ones((3, 3)))[1]
    n_bg = ndimage.label(~padded)[1]
    return n_fg, n_bg


def test_simple_points_keep_global_topology():
    rng = np.random.default_rng(7)
    for _ in range(20):
        mask = rng.random((7, 7)) < 0.45
        before = _topology(mask)
        simple = simple_points(mask)
        for y, x in zip(*np.nonzero(simple), strict=True):
            flipped = mask.copy()
            flipped[y, x] = ~flipped[y, x]
            assert _topology(flipped) == before, (mask.astype(int), y, x)


# ------------------------------------------------------------------- warping error
def test_warping_error_perfect_and_shifted_boundary(isbi_gt):
    mem, _ = isbi_gt(width=1)
    assert warping_error(mem, mem) == 0.0
    assert warping_error(np.roll(mem, 1, axis=1), mem) == 0.0  # one-pixel shift
    ring = np.zeros((16, 16), bool)
    ring[4:10, 4:10] = True
    ring[5:9, 5:9] = False  # a closed membrane around one cell
    assert warping_error(np.roll(ring, (1, 1), axis=(0, 1)), ring) == 0.0
    thick = ndimage.binary_dilation(mem)  # thicker boundary, same topology
    assert warping_error(thick, mem) == 0.0
    assert warping_error(mem, thick) == 0.0


def test_warping_error_merge_split_and_added_object(isbi_gt):
    mem, _ = isbi_gt(width=1)
    n = mem.size
    gap = mem.copy()
    gap[5, 12] = False  # a hole in the membrane merges the two top cells
    assert warping_error(gap, mem) == pytest.approx(1 / n)
    split = mem.copy()
    split[4, :12] = True  # a new membrane cuts the top-left cell in two
    err = warping_error(split, mem)
    assert 0 < err * n <= 2
    blob = mem.copy()
    blob[3:5, 3:5] = True  # an object that is not there: all 4 pixels count
    assert warping_error(blob, mem) == pytest.approx(4 / n)
    hole = np.ones((5, 5), bool)
    hole[2, 2] = False  # a one-pixel cell; the prediction misses it
    assert warping_error(np.ones((5, 5), bool), hole) == pytest.approx(1 / 25)


def test_warping_error_max_iter_and_validation(isbi_gt):
    mem, _ = isbi_gt(width=1)
    shifted = np.roll(mem, 1, axis=1)
    plain = np.count_nonzero(shifted != mem) / mem.size
    assert warping_error(shifted, mem, max_iter=0) == pytest.approx(plain)
    assert warping_error(shifted, mem, max_iter=1) < plain
    with pytest.raises(ValueError, match="max_iter"):
        warping_error(mem, mem, max_iter=-1)
    with pytest.raises(ValueError, match="shape"):
        warping_error(mem, mem[:-1])
