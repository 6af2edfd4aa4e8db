"""The overlap counts behind the Rand and information scores
(tileunet.evaluation.contingency), against a pixel loop and against the np.unique
counting that tileunet 0.1 used, on random label maps."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage

from tileunet.evaluation.contingency import GroundTruthCells, plogp_sum
from tileunet.evaluation.isbi import rand_error, v_rand_v_info, vi_split_merge


def loop_counts(seg, gt, zero_singletons):
    """(n, sorted pair counts, sorted gt sizes, sorted seg sizes, singles) by a loop."""
    pairs, a, b = Counter(), Counter(), Counter()
    singles = n = 0
    for g, s in zip(gt.ravel().tolist(), seg.ravel().tolist(), strict=True):
        if g == 0:
            continue
        n += 1
        a[g] += 1
        if zero_singletons and s == 0:
            singles += 1
            continue
        pairs[g, s] += 1
        b[s] += 1
    return (n, sorted(pairs.values()), sorted(a.values()), sorted(b.values()), singles)


def unique_counts(seg, gt, boundary_singletons):
    """The counting of tileunet 0.1 (three np.unique sorts): (n_ij, n_gt, n_seg)."""
    g, s = gt.ravel(), seg.ravel()
    keep = g > 0
    g, s = g[keep], s[keep].copy()
    if boundary_singletons:
        zero = s == 0
        s[zero] = int(s.max()) + 1 + np.arange(np.count_nonzero(zero))
    _, gi = np.unique(g, return_inverse=True)
    s_ids, si = np.unique(s, return_inverse=True)
    _, n_ij = np.unique(gi.astype(np.int64) * s_ids.size + si, return_counts=True)
    return n_ij, np.bincount(gi), np.bincount(si)


def random_maps(seed, shape=(37, 29), big_ids=False):
    rng = np.random.default_rng(seed)
    gt = ndimage.label(ndimage.gaussian_filter(rng.random(shape), 1.5) > 0.5)[0]
    seg = rng.integers(0, 9, shape) * (rng.random(shape) > 0.1)
    if big_ids:  # sparse, huge ids: the np.unique paths
        gt = gt * 1_000_003
        seg = seg * 7_000_001
    return seg, gt


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("big_ids", [False, True])
@pytest.mark.parametrize("zero_singletons", [False, True])
def test_counts_agree_with_a_pixel_loop(seed, big_ids, zero_singletons):
    seg, gt = random_maps(seed, big_ids=big_ids)
    c = GroundTruthCells(gt).count(seg, zero_singletons=zero_singletons)
    n, pairs, a, b, singles = loop_counts(seg, gt, zero_singletons)
    assert (c.n, sorted(c.pairs.tolist()), sorted(c.gt_sizes.tolist()),
            sorted(c.seg_sizes.tolist()), c.singles) == (n, pairs, a, b, singles)


@pytest.mark.parametrize("seed", range(4))
def test_sums_and_entropies_agree_with_the_previous_counting(seed):
    seg, gt = random_maps(seed)
    for singles in (False, True):
        c = GroundTruthCells(gt).count(seg, zero_singletons=singles)
        n_ij, n_gt, n_seg = unique_counts(seg, gt, singles)
        assert c.sum_squares() == (int(n_ij @ n_ij), int(n_gt @ n_gt), int(n_seg @ n_seg))

        def entropy(counts):
            p = counts / counts.sum()
            return float(-(p * np.log(p)).sum())

        assert c.entropies() == pytest.approx((entropy(n_ij), entropy(n_gt),
                                                entropy(n_seg)), abs=1e-12)


def test_one_ground_truth_serves_many_segmentations():
    seg, gt = random_maps(0)
    cells = GroundTruthCells(gt)
    for other in (seg, seg[::-1].copy(), np.zeros_like(seg), np.ones_like(seg)):
        fresh = GroundTruthCells(gt).count(other)
        again = cells.count(other)
        assert again.sum_squares() == fresh.sum_squares()


def test_edge_cases_and_bad_input():
    empty = GroundTruthCells(np.zeros((3, 3), int)).count(np.ones((3, 3), int))
    assert empty.n == 0 and all(math.isnan(h) for h in empty.entropies())
    all_border = GroundTruthCells(np.ones((2, 2), int)).count(np.zeros((2, 2), int),
                                                             zero_singletons=True)
    assert all_border.singles == 4 and all_border.sum_squares() == (4, 16, 4)
    assert plogp_sum(np.array([0, 1, 1])) == 0.0
    with pytest.raises(ValueError, match="seg must have shape"):
        GroundTruthCells(np.ones((2, 2), int)).count(np.ones((2, 3), int))
    with pytest.raises(ValueError, match="seg labels must be >= 0"):
        GroundTruthCells(np.ones((2, 2), int)).count(-np.ones((2, 2), int))


@pytest.mark.parametrize("seed", range(3))
def test_the_isbi_scores_built_on_them_agree_with_the_previous_counting(seed):
    """rand_error, vi_split_merge and v_rand_v_info as tileunet 0.1 computed them."""
    rng = np.random.default_rng(seed)
    gt = ndimage.label(ndimage.gaussian_filter(rng.random((40, 32)), 1.0) > 0.52)[0]
    prob = ndimage.gaussian_filter(rng.random((40, 32)), 1.0)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    membrane = prob > 0.5
    cells = ndimage.label(~membrane)[0]
    n_ij, n_gt, n_seg = unique_counts(cells, gt, False)
    assert n_gt.size > 3 and n_seg.size > 3
    n = n_gt.sum()
    both, in_gt, in_seg = (float(x @ x) - n for x in (n_ij, n_gt, n_seg))
    assert rand_error(prob, gt, [0.5])["fscore"] == pytest.approx(2 * both / (in_gt + in_seg))

    def bits(c):
        p = c / c.sum()
        return float(-(p * np.log2(p)).sum())

    split, merge = vi_split_merge(cells, gt)
    assert split == pytest.approx(bits(n_ij) - bits(n_gt), abs=1e-12)
    assert merge == pytest.approx(bits(n_ij) - bits(n_seg), abs=1e-12)
    n_ij, n_gt, n_seg = unique_counts(cells, gt, True)
    v = v_rand_v_info(membrane, gt, thin=False)
    assert v["v_rand_split"] == pytest.approx(float(n_ij @ n_ij) / float(n_gt @ n_gt))
    assert v["v_rand_merge"] == pytest.approx(float(n_ij @ n_ij) / float(n_seg @ n_seg))
    mutual = bits(n_gt) + bits(n_seg) - bits(n_ij)
    assert v["v_info_split"] == pytest.approx(mutual / bits(n_seg))
    assert v["v_info_merge"] == pytest.approx(mutual / bits(n_gt))
