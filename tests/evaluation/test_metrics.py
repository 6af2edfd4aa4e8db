"""Metrics on small hand-made cases with known answers (tileunet.evaluation.metrics)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from tileunet.evaluation.metrics import (
    ISBI_THRESHOLDS,
    match_instances,
    pixel_error,
    pixel_iou,
    rand_error,
    seg_score,
    simple_points,
    touching_pairs,
    touching_pairs_separated,
    v_rand_v_info,
    vi_split_merge,
    warping_error,
)


def _square(shape, top, left, size, value, out=None):
    out = np.zeros(shape, np.int32) if out is None else out
    out[top : top + size, left : left + size] = value
    return out


# ------------------------------------------------------------------------ pixel_iou
def test_pixel_iou_known_values():
    a = _square((10, 10), 0, 0, 4, 1)  # 16 px
    b = _square((10, 10), 0, 2, 4, 7)  # 16 px, 8 shared
    assert pixel_iou(a, b) == pytest.approx(8 / 24)
    assert pixel_iou(a, a * 5) == 1.0  # ids do not matter, only > 0
    assert pixel_iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert pixel_iou(np.zeros((3, 3)), np.ones((3, 3))) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        pixel_iou(np.zeros((3, 3)), np.zeros((3, 4)))


# ------------------------------------------------------------------------ seg_score
def test_seg_against_hand_computation():
    gt = np.zeros((10, 20), np.int32)
    gt[0:4, 0:4] = 3      # R1: 16 px
    gt[0:4, 10:15] = 9    # R2: 20 px
    gt[6:8, 0:5] = 4      # R3: 10 px
    pred = np.zeros_like(gt)
    pred[0:4, 1:5] = 100  # R1 ∩ = 12 > 8, union 20 -> 0.6
    pred[0:4, 10:12] = 2  # covers 8 of 20 of R2 (not > half) -> 0
    pred[0:4, 12:15] = 5  # covers 12 of 20 of R2 (> half): union 20 -> 0.6
    pred[9, 19] = 77      # false positive: SEG ignores it
    # R3 missed -> 0
    expected = (12 / 20 + 12 / 20 + 0.0) / 3
    assert seg_score(pred, gt) == pytest.approx(expected)
    assert seg_score(gt, gt) == 1.0
    assert math.isnan(seg_score(pred, np.zeros_like(gt)))
    assert seg_score(np.zeros_like(gt), gt) == 0.0


def test_seg_exactly_half_is_not_a_match():
    gt = np.zeros((1, 4), np.int32)
    gt[0, :] = 1
    pred = np.array([[1, 1, 2, 2]])
    assert seg_score(pred, gt) == 0.0


# ------------------------------------------------------------------ match_instances
def _two_cells():
    gt = _square((20, 20), 2, 2, 6, 1)
    _square((20, 20), 10, 10, 6, 2, out=gt)
    return gt


def test_match_perfect_and_non_contiguous_ids():
    gt = _two_cells()
    relabelled = np.select([gt == 1, gt == 2], [1000, 5], 0)
    m = match_instances(relabelled, gt * 35)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 0, 0)
    assert m["precision"] == m["recall"] == m["f1"] == m["ap"] == 1.0


def test_match_ap_three_of_five():
    """3 matched, 1 invented, 1 missed: AP = 3 / 5, F1 = 6 / 8."""
    gt = np.zeros((10, 40), np.int32)
    pred = np.zeros_like(gt)
    for i in range(4):  # GT cells 1..4 at x = 0, 10, 20, 30
        gt[2:8, 10 * i : 10 * i + 6] = i + 1
    for i in range(3):  # the first three found exactly
        pred[2:8, 10 * i : 10 * i + 6] = i + 7
    pred[0:2, 30:36] = 20  # misses cell 4 (IoU 0), invented one
    m = match_instances(pred, gt)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 1, 1)
    assert m["ap"] == pytest.approx(3 / 5) and m["f1"] == pytest.approx(6 / 8)


def test_match_one_pixel_shift():
    gt = _square((20, 20), 5, 5, 10, 1)
    pred = _square((20, 20), 5, 6, 10, 1)
    iou = 90 / 110
    assert match_instances(pred, gt)["tp"] == 1
    assert match_instances(pred, gt, iou_threshold=0.85)["tp"] == 0
    assert seg_score(pred, gt) == pytest.approx(iou)


def test_match_split_and_merge():
    gt = np.zeros((4, 10), np.int32)
    gt[:, 0:10] = 1  # one cell of 40 px
    split = np.zeros_like(gt)
    split[:, 0:6] = 1  # IoU 0.6
    split[:, 6:10] = 2  # IoU 0.4
    m = match_instances(split, gt)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 0)
    assert m["precision"] == 0.5 and m["recall"] == 1.0 and m["f1"] == pytest.approx(2 / 3)
    assert m["ap"] == 0.5  # 1 / (1 + 1 + 0)

    gt2 = np.zeros((4, 10), np.int32)
    gt2[:, 0:6], gt2[:, 6:10] = 1, 2
    merged = (gt2 > 0).astype(np.int32)
    m = match_instances(merged, gt2)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 0, 1)
    assert m["ap"] == 0.5  # the merged object matches the 24-px cell (IoU 0.6) only


def test_match_empty_cases():
    gt = _two_cells()
    empty = np.zeros_like(gt)
    m = match_instances(empty, gt)
    assert (m["tp"], m["fp"], m["fn"]) == (0, 0, 2)
    assert m["precision"] == m["recall"] == m["f1"] == m["ap"] == 0.0
    m = match_instances(gt, empty)
    assert (m["tp"], m["fp"], m["fn"]) == (0, 2, 0)
    assert m["precision"] == 0.0 and m["recall"] == 0.0
    m = match_instances(empty, empty)
    assert m["tp"] == m["fp"] == m["fn"] == 0 and m["f1"] == m["ap"] == 1.0


def test_match_low_threshold_is_a_maximum_matching():
    """Below 0.5 an object may have several candidates: compare with brute force."""
    rng = np.random.default_rng(0)
    for _ in range(25):
        gt = np.zeros((12, 12), np.int32)
        pred = np.zeros((12, 12), np.int32)
        for i in range(1, 4):
            y, x, h, w = rng.integers(0, 8, 4)
            gt[y : y + h + 2, x : x + w + 2] = i
            y, x, h, w = rng.integers(0, 8, 4)
            pred[y : y + h + 2, x : x + w + 2] = i
        g_ids, p_ids = np.unique(gt[gt > 0]), np.unique(pred[pred > 0])
        iou = {(g, p): np.sum((gt == g) & (pred == p)) / np.sum((gt == g) | (pred == p))
               for g in g_ids for p in p_ids}
        best = 0
        for k in range(min(len(g_ids), len(p_ids)), 0, -1):
            if any(all(iou[g, p] >= 0.1 for g, p in zip(gs, ps, strict=True))
                   for gs in itertools.combinations(g_ids, k)
                   for ps in itertools.permutations(p_ids, k)):
                best = k
                break
        assert match_instances(pred, gt, iou_threshold=0.1)["tp"] == best


def test_match_validation_and_speed():
    with pytest.raises(ValueError, match="iou_threshold"):
        match_instances(np.zeros((2, 2), int), np.zeros((2, 2), int), iou_threshold=0)
    with pytest.raises(ValueError, match="integer label image"):
        match_instances(np.zeros((2, 2)), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=">= 0"):
        seg_score(np.zeros((2, 2), int), -np.ones((2, 2), int))
    # 4096 objects on a 512x512 grid, each shifted by one pixel (IoU 7/9)
    gt = (np.arange(512)[:, None] // 8) * 64 + np.arange(512)[None, :] // 8 + 1
    pred = np.roll(gt, 1, axis=1)
    m = match_instances(pred, gt)
    assert m["tp"] == 64 * 64


# ---------------------------------------------------------------- touching cells
def test_touching_pairs():
    lab = np.array([
        [1, 1, 2, 0, 3, 0],
        [1, 1, 2, 0, 0, 4],  # 3 and 4 meet only at a corner: not touching
        [0, 0, 0, 0, 0, 4],
        [5, 0, 6, 6, 6, 6],  # 4 and 6 touch
    ])
    assert touching_pairs(lab) == {(1, 2), (4, 6)}
    assert touching_pairs(lab, min_contact=2) == {(1, 2)}
    assert touching_pairs(np.zeros((3, 3), np.int32)) == set()
    with pytest.raises(ValueError, match="integer"):
        touching_pairs(lab.astype(float))


def test_touching_pairs_separated():
    gt = np.zeros((10, 20), np.int32)
    gt[2:8, 2:10], gt[2:8, 10:18] = 1, 2  # touching pair
    gt[0:2, 0:2] = 3  # alone
    assert touching_pairs_separated(gt * 10, gt) == (1, 1)
    merged = (gt > 0).astype(np.int32)
    assert touching_pairs_separated(merged, gt) == (0, 1)
    one_missing = np.where(gt == 2, 0, gt)
    assert touching_pairs_separated(one_missing, gt) == (0, 1)
    shrunk = np.zeros_like(gt)
    shrunk[2:7, 3:9], shrunk[2:7, 11:17] = 4, 9  # 30 of 48 px: each > half of its cell
    assert touching_pairs_separated(shrunk, gt) == (1, 1)
    alone = np.where(gt == 3, 3, 0)
    assert touching_pairs_separated(alone, alone) == (0, 0)


# ------------------------------------------------------------- ISBI 2012: fixtures
def _isbi_gt(shape=(24, 24), width=2):
    """Membrane grid of ``width`` px splitting the image into 4 cells (+ border)."""
    mem = np.zeros(shape, bool)
    mem[:, shape[1] // 2 : shape[1] // 2 + width] = True
    mem[shape[0] // 2 : shape[0] // 2 + width, :] = True
    labels, n = ndimage.label(~mem)
    assert n == 4
    return mem, labels


# --------------------------------------------------------------------- pixel_error
def test_pixel_error_perfect_and_inverted():
    mem, _ = _isbi_gt()
    perfect = pixel_error(mem.astype(float), mem)
    assert perfect["error"] == 0.0 and perfect["fscore"] == 1.0
    assert perfect["threshold"] == 0.0  # lowest of the tied thresholds
    inverted = pixel_error(1.0 - mem, mem)
    assert inverted["error"] == 1.0  # no membrane pixel found at any threshold
    assert ISBI_THRESHOLDS.tolist() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def test_pixel_error_selects_best_threshold():
    gt = np.array([[True, False, False, True, True]])
    prob = np.array([[0.9, 0.2, 0.4, 0.6, 0.35]])
    # t=0.3: membrane TFTTT -> tp 3, fp 1 -> F = 6/7; t=0.5: TFFTF -> tp 2, fn 1 -> 4/5
    # t=0.7: TFFFF -> tp 1, fn 2 -> 2/4
    r = pixel_error(prob, gt, [0.5, 0.3, 0.7])
    assert r["threshold"] == 0.3
    assert r["fscore"] == pytest.approx(6 / 7)
    assert r["error"] == pytest.approx(1 / 7)
    assert pixel_error(prob, gt, [0.7])["error"] == pytest.approx(0.5)
    # no membrane anywhere: nothing to find, nothing found
    assert pixel_error(np.zeros((2, 2)), np.zeros((2, 2), bool))["error"] == 0.0


def test_pixel_error_misclassified_fraction_picks_its_own_threshold():
    # 100 membrane pixels (90 sure, 10 at 0.4) and 100 others (11 at 0.4, 89 sure)
    gt = np.r_[np.ones(100, bool), np.zeros(100, bool)][None]
    prob = np.r_[np.full(90, 0.9), np.full(10, 0.4), np.full(11, 0.4), np.full(89, 0.1)][None]
    r = pixel_error(prob, gt, [0.3, 0.5])
    # t=0.3: tp 100, fp 11 -> F = 200/211, 11 of 200 wrong; t=0.5: tp 90, fn 10 ->
    # F = 180/190, 10 of 200 wrong: the F-score and the plain error disagree
    assert r["threshold"] == 0.3 and r["fscore"] == pytest.approx(200 / 211)
    assert r["misclassified_threshold"] == 0.5
    assert r["misclassified"] == pytest.approx(10 / 200)
    assert pixel_error(gt.astype(float), gt)["misclassified"] == 0.0
    assert pixel_error(1.0 - gt, gt)["misclassified"] == 1.0


def test_pixel_error_validation():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pixel_error(np.full((2, 2), 2.0), np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="shape"):
        pixel_error(np.zeros((2, 2)), np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="boolean"):
        pixel_error(np.zeros((2, 2)), np.full((2, 2), 255))
    with pytest.raises(ValueError, match="thresholds"):
        pixel_error(np.zeros((2, 2)), np.zeros((2, 2), bool), [])


# ---------------------------------------------------------------------- rand_error
def test_rand_error_perfect():
    mem, labels = _isbi_gt()
    r = rand_error(mem.astype(float), labels)
    assert r["error"] == 0.0 and r["precision"] == r["recall"] == 1.0


def test_rand_error_split_by_hand():
    gt = np.array([[1, 1, 1, 1, 1]])  # one cell of 5 px
    prob = np.array([[0.0, 0.0, 1.0, 0.0, 0.0]])  # cut in two: segments 2 + 1 (membrane) + 2
    # pairs (ordered, no self-pairs): together in both 2*2 + 1*0 + 2*2 - ... = 9 - 5 = 4,
    # in the segmentation 9 - 5 = 4, in the ground truth 25 - 5 = 20
    r = rand_error(prob, gt, [0.5])
    assert r["precision"] == pytest.approx(1.0)
    assert r["recall"] == pytest.approx(4 / 20)
    assert r["error"] == pytest.approx(1 - 2 * 4 / (4 + 20))  # 2/3


def test_rand_error_merge_by_hand():
    gt = np.array([[1, 1, 0, 2, 2]])  # two cells; the membrane pixel is left out
    prob = np.zeros((1, 5))  # membrane missed: one segment over both cells
    # together in both 2*(4-2) = 4, in the segmentation 16 - 4 = 12, in gt 8 - 4 = 4
    r = rand_error(prob, gt, [0.5])
    assert r["precision"] == pytest.approx(1 / 3)
    assert r["recall"] == pytest.approx(1.0)
    assert r["error"] == pytest.approx(0.5)


def test_rand_error_picks_best_threshold_and_nan_without_cells():
    gt = np.array([[1, 1, 0, 2, 2]])
    prob = np.array([[0.1, 0.1, 0.6, 0.1, 0.1]])
    r = rand_error(prob, gt, [0.8, 0.5])
    assert r["threshold"] == 0.5 and r["error"] == 0.0
    assert rand_error(prob, gt, [0.8])["error"] == pytest.approx(0.5)
    assert math.isnan(rand_error(prob, np.zeros_like(gt))["error"])
    with pytest.raises(ValueError, match="integer"):
        rand_error(prob, gt.astype(float))


@pytest.mark.parametrize("t", [0.3, 0.5, 0.7])
def test_rand_error_agrees_with_skimage(t):
    from skimage.metrics import adapted_rand_error

    rng = np.random.default_rng(3)
    gt = ndimage.label(rng.random((48, 40)) > 0.35)[0]
    prob = ndimage.gaussian_filter(rng.random((48, 40)), 1.0)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    cells = ndimage.label(prob <= t)[0]  # 4-connected, 0 on the membrane
    ours = rand_error(prob, gt, [t])
    assert 0.0 < ours["error"] < 1.0
    assert ours["error"] == pytest.approx(adapted_rand_error(gt, cells)[0], abs=1e-12)


# ------------------------------------------------------------------ vi_split_merge
def test_vi_split_merge_by_hand_and_against_skimage():
    from skimage.metrics import variation_of_information

    gt = np.array([[1, 1, 1, 1, 0, 2, 2]])
    assert vi_split_merge(gt, gt) == (0.0, 0.0)
    split, merge = vi_split_merge(np.array([[1, 1, 2, 2, 9, 3, 3]]), gt)
    # cell 1 (4 of 6 px) cut in halves: H(seg | gt) = 4/6 * 1 bit
    assert (split, merge) == (pytest.approx(2 / 3), pytest.approx(0.0))
    split, merge = vi_split_merge(np.array([[4, 4, 4, 4, 0, 4, 4]]), gt)
    # one segment: H(gt | seg) = H(4/6, 2/6)
    assert split == pytest.approx(0.0)
    assert merge == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))
    rng = np.random.default_rng(0)
    g = rng.integers(0, 5, (30, 30))
    s = rng.integers(0, 7, (30, 30))
    expected = variation_of_information(g, s, ignore_labels=[0])
    assert np.allclose(vi_split_merge(s, g), expected, atol=1e-12)


# ------------------------------------------------------------------- v_rand_v_info
def test_v_rand_v_info_perfect_with_thick_membrane():
    mem, labels = _isbi_gt(width=3)  # thinning moves the boundary inside the membrane
    for thin in (True, False):
        v = v_rand_v_info(mem, labels, thin=thin)
        assert v == {k: pytest.approx(1.0) for k in v}


def test_v_rand_v_info_split_and_merge():
    mem, labels = _isbi_gt()
    split = mem.copy()
    split[3, :] = True  # cuts the two top cells
    v = v_rand_v_info(split, labels)
    assert v["v_rand_split"] < 1.0 and v["v_info_split"] < 1.0
    assert v["v_rand_merge"] == pytest.approx(1.0)
    assert v["v_info_merge"] == pytest.approx(1.0)
    assert v["v_rand"] < 1.0 and v["v_info"] < 1.0
    merged = mem.copy()
    merged[:, 12:14] = False  # vertical membrane gone: left and right cells merge
    v = v_rand_v_info(merged, labels)
    assert v["v_rand_merge"] < 1.0 and v["v_info_merge"] < 1.0
    assert v["v_rand_split"] == pytest.approx(1.0)
    assert v["v_info_split"] == pytest.approx(1.0)


def test_v_rand_v_info_by_hand():
    gt = np.array([[1, 1, 0, 2, 2]])
    v = v_rand_v_info(np.zeros((1, 5), bool), gt, thin=False)  # one segment, 4 px
    # sum p_ij^2 = 1/2, sum t^2 = 1/2, sum s^2 = 1 -> split 1, merge 1/2
    assert v["v_rand_split"] == pytest.approx(1.0)
    assert v["v_rand_merge"] == pytest.approx(0.5)
    assert v["v_rand"] == pytest.approx(2 / 3)
    # I(S;T) = 0, H(S) = 0 (0/0 -> 1), H(T) = 1 bit
    assert (v["v_info_split"], v["v_info_merge"], v["v_info"]) == (1.0, 0.0, 0.0)
    assert all(math.isnan(x) for x in v_rand_v_info(gt == 0, 0 * gt).values())


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
def test_warping_error_perfect_and_shifted_boundary():
    mem, _ = _isbi_gt(width=1)
    assert warping_error(mem, mem) == 0.0
    assert warping_error(np.roll(mem, 1, axis=1), mem) == 0.0  # one-pixel shift
    ring = np.zeros((16, 16), bool)
    ring[4:10, 4:10] = True
    ring[5:9, 5:9] = False  # a closed membrane around one cell
    assert warping_error(np.roll(ring, (1, 1), axis=(0, 1)), ring) == 0.0
    thick = ndimage.binary_dilation(mem)  # thicker boundary, same topology
    assert warping_error(thick, mem) == 0.0
    assert warping_error(mem, thick) == 0.0


def test_warping_error_merge_split_and_added_object():
    mem, _ = _isbi_gt(width=1)
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


def test_warping_error_max_iter_and_validation():
    mem, _ = _isbi_gt(width=1)
    shifted = np.roll(mem, 1, axis=1)
    plain = np.count_nonzero(shifted != mem) / mem.size
    assert warping_error(shifted, mem, max_iter=0) == pytest.approx(plain)
    assert warping_error(shifted, mem, max_iter=1) < plain
    with pytest.raises(ValueError, match="max_iter"):
        warping_error(mem, mem, max_iter=-1)
    with pytest.raises(ValueError, match="shape"):
        warping_error(mem, mem[:-1])


def test_isbi_metrics_speed():
    rng = np.random.default_rng(1)
    mem = np.zeros((256, 256), bool)
    mem[:, ::16] = True
    mem[::16, :] = True
    labels = ndimage.label(~mem)[0]
    pred = np.roll(mem, (2, 1), axis=(0, 1)) | (rng.random(mem.shape) < 0.002)
    prob = np.clip(pred + rng.normal(0, 0.2, mem.shape), 0, 1)
    pixel_error(prob, mem)
    rand_error(prob, labels)
    v_rand_v_info(pred, labels)
    assert warping_error(pred, mem) > 0
