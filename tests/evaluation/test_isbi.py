"""The ISBI 2012 metrics on small hand-made cases with known answers
(tileunet.evaluation.isbi)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from tileunet.evaluation.isbi import (
    ISBI_THRESHOLDS,
    pixel_error,
    rand_error,
    v_rand_v_info,
    vi_split_merge,
)
from tileunet.evaluation.warping import warping_error


# --------------------------------------------------------------------- pixel_error
def test_pixel_error_perfect_and_inverted(isbi_gt):
    mem, _ = isbi_gt()
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
def test_rand_error_perfect(isbi_gt):
    mem, labels = isbi_gt()
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
def test_v_rand_v_info_perfect_with_thick_membrane(isbi_gt):
    mem, labels = isbi_gt(width=3)  # thinning moves the boundary inside the membrane
    for thin in (True, False):
        v = v_rand_v_info(mem, labels, thin=thin)
        assert v == {k: pytest.approx(1.0) for k in v}


def test_v_rand_v_info_split_and_merge(isbi_gt):
    mem, labels = isbi_gt()
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
