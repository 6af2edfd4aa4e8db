"""V_rand and V_info after border thinning, the ISBI 2012 challenge's final ranking
(tileunet.evaluation.isbi_thinned): hand-computed cases, the flooding against a
re-implementation of the script's FIFO flooding, the scores against a pixel-loop
reference, and the stack-level figure."""

from __future__ import annotations

import math
from collections import Counter, deque

import numpy as np
import pytest
from scipy import ndimage

from tileunet.evaluation.isbi import v_rand_v_info
from tileunet.evaluation.isbi_thinned import (
    FIJI_THRESHOLDS,
    SCORE_NAMES,
    stack_scores,
    thin_borders,
    thinned_scores,
    threshold_text,
)


# ------------------------------------------------------------------ references
def fifo_flood(cells: np.ndarray) -> np.ndarray:
    """The script's flooding of a binary image, pixel by pixel: the 4-connected cell
    components are the basins; the border pixels are queued in column-major order
    (those touching a basin first), each takes the label of the first labelled of its
    neighbours (left, up, right, down) and becomes a dam (0) when a second neighbour has
    another label."""
    h, w = cells.shape
    if not cells.any():
        return np.ones((h, w), np.int32)
    lab = np.where(cells, ndimage.label(cells)[0], -1)  # -1: not reached yet
    queued = np.zeros((h, w), bool)
    nbrs = ((0, -1), (-1, 0), (0, 1), (1, 0))
    border = [(r, c) for c in range(w) for r in range(h) if not cells[r, c]]
    fifo = deque(p for p in border if any(
        0 <= p[0] + dr < h and 0 <= p[1] + dc < w and cells[p[0] + dr, p[1] + dc]
        for dr, dc in nbrs))
    queued[tuple(np.array(list(fifo)).T)] = True
    dam_flag = False  # the script's one flag: a dam pixel may still join a basin
    while fifo:
        r, c = fifo.popleft()
        for dr, dc in nbrs:
            u, v = r + dr, c + dc
            if not (0 <= u < h and 0 <= v < w):
                continue
            if lab[u, v] > 0:
                if lab[r, c] == -1 or (lab[r, c] == 0 and dam_flag):
                    lab[r, c] = lab[u, v]
                elif lab[r, c] > 0 and lab[r, c] != lab[u, v]:
                    lab[r, c], dam_flag = 0, False
            elif lab[u, v] == 0 and lab[r, c] == -1:
                lab[r, c], dam_flag = 0, True
            elif lab[u, v] == -1 and not queued[u, v]:
                queued[u, v] = True
                fifo.append((u, v))
    return lab.astype(np.int32)


def loop_scores(seg: np.ndarray, gt: np.ndarray) -> tuple[float, ...]:
    """The six scores of one slice from a pixel loop: probabilities ``p_ij`` over the
    ground truth's cell pixels, every dam pixel a segment of its own."""
    pairs, a, b = Counter(), Counter(), Counter()
    n = 0
    for k, (g, s) in enumerate(zip(gt.ravel().tolist(), seg.ravel().tolist(), strict=True)):
        if g == 0:
            continue
        s = ("dam", k) if s == 0 else s
        pairs[g, s] += 1
        a[g] += 1
        b[s] += 1
        n += 1
    p = [c / n for c in pairs.values()]
    pa, pb = [c / n for c in a.values()], [c / n for c in b.values()]
    sq = sum(x * x for x in p)
    rand_split, rand_merge = sq / sum(x * x for x in pa), sq / sum(x * x for x in pb)

    def entropy(q):
        return -sum(x * math.log(x) for x in q)

    h_a, h_b, h_ab = entropy(pa), entropy(pb), entropy(p)
    mutual = h_a + h_b - h_ab
    split = 0.0 if len(b) == 1 else 1.0 if len(a) == 1 else mutual / h_b
    merge = 1.0 if len(b) == 1 else 0.0 if len(a) == 1 else mutual / h_a

    def f(x, y):
        return 2 * x * y / (x + y) if x + y else 0.0

    return f(rand_split, rand_merge), rand_split, rand_merge, f(split, merge), split, merge


def smooth_map(shape, rng, sigma=2.0):
    m = ndimage.gaussian_filter(rng.random(shape), sigma)
    return ((m - m.min()) / (m.max() - m.min())).astype(np.float32)


# ------------------------------------------------------------------ thresholds
def test_thresholds_are_the_scripts_loop():
    assert FIJI_THRESHOLDS.size == 11
    assert FIJI_THRESHOLDS[3] == 0.1 + 0.1 + 0.1 != 0.3  # accumulated, as in the script
    assert 1.0 - 1e-15 < FIJI_THRESHOLDS[-1] < 1.0  # "1 - eps": only p == 1 is cell
    assert np.allclose(FIJI_THRESHOLDS, np.arange(11) / 10)
    assert [threshold_text(t) for t in FIJI_THRESHOLDS[[0, 3, 10]]] == ["> 0.0", "> 0.3",
                                                                       "= 1"]


def test_probabilities_compare_as_32_bit_floats_and_only_1_is_cell_at_the_last():
    gt = np.array([[1, 1, 0, 2, 2]])
    s = thinned_scores(np.array([[1.0, 1.0, 0.99999, 1.0, 1.0]]), gt)
    assert s["v_rand"][-1] == 1.0  # 0.99999 is border at "1 - eps": the cells come apart
    assert s["v_rand"][-2] == pytest.approx(2 / 3)  # at 0.9 all is cell: one segment
    # 0.3 as a 32-bit float lies above the script's 0.1 + 0.1 + 0.1 = 0.30000000000000004
    s = thinned_scores(np.array([[0.3, 0.3, 0.0, 0.3, 0.3]]), gt, [FIJI_THRESHOLDS[3]])
    assert s["v_rand"][0] == 1.0  # as 64-bit floats there would be no cell: 2 / 3


# ---------------------------------------------------------------- thin_borders
@pytest.mark.parametrize("width", [1, 2, 3, 4, 5])
def test_a_straight_border_becomes_one_dam_pixel_wide(width):
    cells = np.ones((6, 12), bool)
    cells[:, 4:4 + width] = False
    seg = thin_borders(cells)
    assert (seg == 0).sum(axis=1).tolist() == [1] * 6  # one pixel per row
    assert set(np.unique(seg[:, :4])) == {1} and set(np.unique(seg[:, 4 + width:])) == {2}
    if width % 2:  # an odd width has one middle pixel: both floodings put the dam there
        np.testing.assert_array_equal(seg == 0, fifo_flood(cells) == 0)


def test_no_cells_is_one_segment_and_all_cells_keep_their_components():
    assert (thin_borders(np.zeros((3, 4), bool)) == 1).all()
    assert (fifo_flood(np.zeros((3, 4), bool)) == 1).all()
    cells = np.ones((3, 4), bool)
    assert (thin_borders(cells) == 1).all()


def test_cells_touching_diagonally_are_two_segments():
    cells = np.array([[1, 0], [0, 1]], bool)  # 4-connectivity: two cells
    seg = thin_borders(cells)
    assert seg[0, 0] != seg[1, 1] and seg[0, 0] > 0 and seg[1, 1] > 0


@pytest.mark.parametrize("seed", range(4))
def test_thinning_agrees_with_the_scripts_flooding(seed):
    """Both floodings keep every cell in its segment; their scores differ only where
    ties are broken differently (even-width borders), and then little."""
    rng = np.random.default_rng(seed)
    prob = smooth_map((48, 40), rng)
    gt = ndimage.label(smooth_map((48, 40), rng, 3.0) > 0.45)[0]
    for t in (0.3, 0.5, 0.7):
        cells = prob.astype(np.float64) > t
        ours, script = thin_borders(cells), fifo_flood(cells)
        np.testing.assert_array_equal(ours[cells], script[cells])
        assert (ours == 0).sum() == pytest.approx((script == 0).sum(), rel=0.15, abs=3)
        for a, b in zip(loop_scores(ours, gt), loop_scores(script, gt), strict=True):
            assert a == pytest.approx(b, abs=0.03)


# --------------------------------------------------------------- thinned_scores
def test_hand_computed_split():
    gt = np.array([[1, 1, 1, 0, 2, 2, 2]])
    prob = np.array([[0.9, 0.1, 0.9, 0.1, 0.9, 0.9, 0.9]])
    s = thinned_scores(prob, gt, [0.5])
    # segments [1, 0, 2, 0, 3, 3, 3]; over the 6 cell pixels: pairs 1, 1, 3 and one dam
    # pixel: sum n_ij^2 = 12, sum a_i^2 = 18, sum b_j^2 = 12
    assert s["v_rand_split"][0] == pytest.approx(12 / 18)
    assert s["v_rand_merge"][0] == pytest.approx(1.0)
    assert s["v_rand"][0] == pytest.approx(0.8)
    # every segment lies in one cell: I = H(A) = ln 2, H(B) = ln 12 / 2
    split = 2 * math.log(2) / math.log(12)
    assert s["v_info_split"][0] == pytest.approx(split)
    assert s["v_info_merge"][0] == pytest.approx(1.0)
    assert s["v_info"][0] == pytest.approx(2 * split / (1 + split))


def test_hand_computed_merge_and_the_one_segment_rule():
    gt = np.array([[1, 1, 0, 2, 2]])
    s = thinned_scores(np.full((1, 5), 0.9), gt, [0.5])  # one segment over both cells
    assert (s["v_rand_split"][0], s["v_rand_merge"][0]) == (1.0, 0.5)
    assert s["v_rand"][0] == pytest.approx(2 / 3)
    assert (s["v_info"][0], s["v_info_split"][0], s["v_info_merge"][0]) == (0.0, 0.0, 1.0)
    one_cell = thinned_scores(np.full((1, 5), 0.9), np.ones((1, 5), int), [0.5])
    assert one_cell["v_rand"][0] == 1.0 and one_cell["v_info"][0] == 0.0
    assert all(np.isnan(v[0]) for k, v in thinned_scores(
        np.full((1, 5), 0.9), np.zeros((1, 5), int), [0.5]).items() if k != "threshold")


@pytest.mark.parametrize("seed", range(3))
def test_scores_agree_with_a_pixel_loop_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    prob = smooth_map((40, 36), rng, 1.5)
    gt = rng.integers(0, 6, (40, 36)) * (rng.random((40, 36)) > 0.2)  # ragged random ids
    s = thinned_scores(prob, gt)
    for i, t in enumerate(FIJI_THRESHOLDS):
        expected = loop_scores(thin_borders(prob.astype(np.float64) > t), gt)
        got = [s[k][i] for k in SCORE_NAMES]
        assert got == pytest.approx(expected, abs=1e-12), t


def test_thick_predicted_borders_score_about_1_after_thinning_and_lower_without():
    """Cells separated by 2-pixel membranes; the prediction's borders are 8 pixels wide
    around them. Thinning gives the cells back; without it the border pixels inside the
    cells are each a segment of their own."""
    shape, step = (96, 96), 24
    membrane = np.zeros(shape, bool)
    for k in range(step, shape[0], step):
        membrane[k - 1:k + 1, :] = True
        membrane[:, k - 1:k + 1] = True
    gt = ndimage.label(~membrane)[0]
    thick = ndimage.binary_dilation(membrane, iterations=3)
    prob = np.where(thick, 0.05, 0.95).astype(np.float32)
    s = thinned_scores(prob, gt)
    best = int(np.argmax(s["v_rand"]))
    assert s["v_rand"][best] > 0.99 and s["v_info"].max() > 0.99
    unthinned = v_rand_v_info(prob <= FIJI_THRESHOLDS[best], gt, thin=False)
    assert unthinned["v_rand"] < 0.8 and unthinned["v_info"] < 0.95


def test_bad_input_names_what_is_wrong():
    with pytest.raises(ValueError, match=r"prob must lie in \[0, 1\]"):
        thinned_scores(np.full((2, 2), 1.5), np.ones((2, 2), int))
    with pytest.raises(ValueError, match="gt_labels must have shape"):
        thinned_scores(np.zeros((2, 2)), np.ones((2, 3), int))
    with pytest.raises(ValueError, match="gt_labels must be an integer"):
        thinned_scores(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="thresholds"):
        thinned_scores(np.zeros((2, 2)), np.ones((2, 2), int), [])


# ----------------------------------------------------------------- stack_scores
def _slice(v_rand, v_info, thresholds=(0.3, 0.5, 0.7)):
    out = {"threshold": np.array(thresholds)}
    for k in SCORE_NAMES:
        out[k] = np.array(v_rand if k.startswith("v_rand") else v_info, float)
    return out


def test_stack_takes_the_best_threshold_of_the_mean_each_score_its_own():
    a = _slice([0.5, 0.9, 0.8], [0.9, 0.5, 0.5])
    b = _slice([0.9, 0.7, 0.8], [0.1, 0.8, 0.6])
    r = stack_scores([a, b])
    # V_rand means 0.7, 0.8, 0.8 -> 0.8 at 0.5 (first of the ties); per-slice maxima
    # would give (0.9 + 0.9) / 2 instead
    assert r["v_rand"] == pytest.approx(0.8) and r["v_rand_threshold"] == 0.5
    assert r["v_info"] == pytest.approx(0.65) and r["v_info_threshold"] == 0.5
    assert r["v_rand_split"] == pytest.approx(0.8)


def test_stack_skips_slices_without_cells_and_checks_its_input():
    a = _slice([0.5, 0.9, 0.8], [0.9, 0.5, 0.5])
    empty = _slice([np.nan] * 3, [np.nan] * 3)
    assert stack_scores([a, empty])["v_rand"] == pytest.approx(0.9)
    assert math.isnan(stack_scores([empty])["v_info"])
    with pytest.raises(ValueError, match="at least one slice"):
        stack_scores([])
    with pytest.raises(ValueError, match="different thresholds"):
        stack_scores([a, _slice([1, 1], [1, 1], (0.3, 0.5))])


def test_stack_of_real_slices_equals_the_mean_at_the_chosen_threshold():
    rng = np.random.default_rng(7)
    per = []
    for _ in range(3):
        gt = ndimage.label(smooth_map((40, 40), rng, 3.0) > 0.4)[0]
        prob = np.clip((gt > 0) * 0.8 + 0.3 * smooth_map((40, 40), rng), 0, 1)
        per.append(thinned_scores(prob, gt))
    r = stack_scores(per)
    i = list(FIJI_THRESHOLDS).index(r["v_rand_threshold"])
    assert r["v_rand"] == pytest.approx(np.mean([p["v_rand"][i] for p in per]))
    assert r["v_rand"] == pytest.approx(max(np.mean([p["v_rand"][j] for p in per])
                                            for j in range(FIJI_THRESHOLDS.size)))
