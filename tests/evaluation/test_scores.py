"""Pixel and instance scores on small hand-made cases with known answers
(tileunet.evaluation.scores)."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest

from tileunet.evaluation.scores import (
    DET_WEIGHTS,
    det_counts,
    det_from_counts,
    det_score,
    match_instances,
    pixel_iou,
    seg_score,
    seg_totals,
    touching_pairs,
    touching_pairs_separated,
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


def test_seg_totals_add_up_over_frames_as_the_challenge_does():
    gt = np.array([[1, 1, 1, 1, 0, 2, 2]])
    pred = np.array([[5, 5, 5, 0, 0, 0, 7]])
    assert seg_totals(pred, gt) == (0.75, 2)
    # a frame of 2 objects at 0.375 and one of 1 object at 1.0: the sequence's SEG
    # weighs every object the same, (0.75 + 1) / 3, not the frames' mean (0.6875)
    one = np.array([[0, 3, 3]])
    total = [seg_totals(pred, gt), seg_totals(one, one)]
    assert sum(t for t, _ in total) / sum(n for _, n in total) == pytest.approx(1.75 / 3)


# ------------------------------------------------------------------------ det_score
def _det_frame():
    """Four ground-truth objects of 16 pixels in a row."""
    gt = np.zeros((4, 40), np.int32)
    for i in range(4):
        gt[:, 10 * i : 10 * i + 4] = i + 1
    return gt


def test_det_weights_are_the_challenges():
    assert DET_WEIGHTS == {"ns": 5, "fn": 10, "fp": 1}


def test_det_perfect_and_nothing():
    gt = _det_frame()
    assert det_counts(gt * 3, gt) == {"ns": 0, "fn": 0, "fp": 0, "gt": 4}
    assert det_score(gt * 3, gt) == 1.0
    assert det_score(np.zeros_like(gt), gt) == 0.0  # AOGM-D = AOGM-D0 = 10 x 4
    assert math.isnan(det_score(gt, np.zeros_like(gt)))


def test_det_a_merge_needs_splits():
    gt = _det_frame()
    pred = gt.copy()
    pred[:, 0:14] = 9  # objects 1 and 2 (and the gap between) in one
    assert det_counts(pred, gt) == {"ns": 1, "fn": 0, "fp": 0, "gt": 4}
    assert det_score(pred, gt) == pytest.approx(1 - 5 / 40)
    pred[:, 0:24] = 9  # three objects in one: k - 1 = 2 splits
    assert det_counts(pred, gt)["ns"] == 2
    assert det_score(pred, gt) == pytest.approx(1 - 10 / 40)


def test_det_a_split_object():
    gt = _det_frame()
    pred = gt.copy()
    pred[:, 0:3], pred[:, 3] = 7, 8  # 12 of 16 pixels and 4: the larger part detects it
    assert det_counts(pred, gt) == {"ns": 0, "fn": 0, "fp": 1, "gt": 4}
    assert det_score(pred, gt) == pytest.approx(1 - 1 / 40)
    pred[:, 0:2], pred[:, 2:4] = 7, 8  # halves: neither covers more than half
    assert det_counts(pred, gt) == {"ns": 0, "fn": 1, "fp": 2, "gt": 4}
    assert det_score(pred, gt) == pytest.approx(1 - 12 / 40)


def test_det_false_positive_and_false_negative():
    gt = _det_frame()
    extra = gt.copy()
    extra[0, 36:39] = 50  # an object where there is none
    assert det_counts(extra, gt) == {"ns": 0, "fn": 0, "fp": 1, "gt": 4}
    assert det_score(extra, gt) == pytest.approx(1 - 1 / 40)
    missed = np.where(gt == 4, 0, gt)
    assert det_counts(missed, gt) == {"ns": 0, "fn": 1, "fp": 0, "gt": 4}
    assert det_score(missed, gt) == pytest.approx(1 - 10 / 40)


def test_det_over_frames_adds_the_costs_before_normalising():
    gt = _det_frame()
    merged = gt.copy()
    merged[:, 0:14] = 9
    one = gt[:, :4]  # a frame with one object
    frames = [det_counts(merged, gt), det_counts(np.zeros_like(one), one)]
    # AOGM-D = 5 + 10, AOGM-D0 = 10 x (4 + 1): 1 - 15 / 50 (the frames' mean is 0.4375)
    assert det_from_counts(frames) == pytest.approx(1 - 15 / 50)
    assert math.isnan(det_from_counts([]))
    # a result so bad that building from scratch is cheaper scores 0, not below
    noise = np.arange(1, 161).reshape(4, 40) * (gt == 0)
    assert det_score(noise, gt) == 0.0


def test_det_exactly_half_is_not_a_match():
    gt = np.ones((1, 4), np.int32)
    assert det_counts(np.array([[1, 1, 2, 2]]), gt) == {"ns": 0, "fn": 1, "fp": 2, "gt": 1}


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


# ------------------------------------------------------------------ the 0.1 path
def test_the_old_module_path_still_gives_the_scores(monkeypatch):
    import tileunet.evaluation.scores

    monkeypatch.delitem(sys.modules, "tileunet.metrics", raising=False)
    with pytest.warns(DeprecationWarning, match="tileunet.metrics is now tileunet.evaluation"):
        from tileunet.metrics import seg_score as old_seg_score
    assert old_seg_score is tileunet.evaluation.scores.seg_score
