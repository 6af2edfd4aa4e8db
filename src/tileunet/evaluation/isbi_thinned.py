"""V_rand and V_info after border thinning: the final, official ranking of the ISBI 2012
challenge (Arganda-Carreras et al. 2015), as the challenge's Fiji script "Segmentation
evaluation after border thinning" computes them (classes ``RandError`` and
``VariationOfInformation`` of Trainable Weka Segmentation).

The definition, step by step, for a stack of slices:

1. ``prob`` is a *cell* probability (1 = inside a cell), read as a 32-bit float image.
   At each threshold ``t`` of :data:`FIJI_THRESHOLDS` (0.0, 0.1, ..., 0.9, and
   ``1 - 2**-53``: the script's ``t += 0.1`` loop up to 1.0), a pixel is a cell pixel
   when ``prob > t``.
2. The borders are thinned by a watershed (:func:`thin_borders`): the 4-connected
   components of the cell pixels are the basins, flooded 4-connected over the border
   pixels; where two basins meet, a dam one pixel wide stays label 0. A slice without
   any cell pixel is one segment.
3. The ground-truth cells are the 4-connected components of its non-zero pixels (ISBI
   labels: 255 = cell, 0 = membrane); only ground-truth cell pixels are counted
   (foreground restriction), and each dam pixel among them is a segment of its own.
4. With ``p_ij`` the fraction of those pixels in ground-truth cell ``i`` and segment
   ``j``, ``a_i``, ``b_j`` its marginals::

       V_rand_split = sum p_ij^2 / sum a_i^2      V_rand_merge = sum p_ij^2 / sum b_j^2
       V_info_split = I(A; B) / H(B)              V_info_merge = I(A; B) / H(A)

   V_rand and V_info are the harmonic means of each pair; a ground truth of one cell
   (``H(A) = 0``) or a segmentation of one segment (``H(B) = 0``) has V_info 0.
5. Each score is averaged over the slices at each threshold; the stack's V_rand is the
   largest mean over the thresholds, and V_info likewise, each at its own threshold.

Scikit-image's watershed (priority flooding, ties by age) and the script's FIFO flooding
(first come, first served) break ties differently: where a border is an even number of
pixels wide, a dam may lie one pixel to the side of the script's. Each cell keeps its
segment in both; only which of two neighbouring segments (or the dam) takes such a
pixel can differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from tileunet.evaluation.contingency import Contingency, GroundTruthCells, harmonic_mean
from tileunet.evaluation.isbi import check_labels, check_prob, check_thresholds

__all__ = [
    "FIJI_THRESHOLDS",
    "SCORE_NAMES",
    "stack_scores",
    "thin_borders",
    "thinned_scores",
    "threshold_text",
]


def _script_thresholds() -> np.ndarray:
    """The thresholds of the script's loop ``for (th = 0.0; th <= 1.0; th += 0.1)``."""
    values, t = [], 0.0
    while t <= 1.0:
        values.append(t)
        t += 0.1
    return np.array(values)


#: The 11 cell-probability thresholds of the challenge's script, with its rounding:
#: 0.0, 0.1, 0.2, 0.30000000000000004, ..., 0.7999999999999999, 0.8999999999999999 and
#: 0.9999999999999999 (only a probability of exactly 1 counts as cell there).
FIJI_THRESHOLDS = _script_thresholds()

#: The per-threshold scores of :func:`thinned_scores`.
SCORE_NAMES = ("v_rand", "v_rand_split", "v_rand_merge", "v_info", "v_info_split",
               "v_info_merge")


def thin_borders(cells: np.ndarray) -> np.ndarray:
    """Segments of a binary cell mask, with borders thinned to dams one pixel wide.

    The 4-connected components of ``cells`` are flooded over the other pixels by a
    4-connected watershed (:func:`skimage.segmentation.watershed` with
    ``watershed_line=True``); pixels where two segments meet become dams, label 0.

    Parameters
    ----------
    cells : numpy.ndarray
        ``(H, W)`` bool, True inside cells.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` int32 labels 1..k, 0 on the dams; all 1 when there is no cell pixel
        (the script's flooding then makes the whole slice one basin).

    Examples
    --------
    >>> cells = np.array([[1, 1, 0, 0, 0, 1]], bool)
    >>> thin_borders(cells)
    array([[1, 1, 1, 0, 2, 2]], dtype=int32)
    """
    c = np.asarray(cells, bool)
    markers, k = ndimage.label(c)  # 4-connected in 2-D
    markers = markers.astype(np.int32, copy=False)
    if k == 0:
        return np.ones(c.shape, np.int32)
    if c.all():
        return markers
    border = ~c
    # only the border and the cell pixels touching it take part: fewer pixels to queue
    near = ndimage.binary_dilation(border)
    seg = watershed(border.view(np.uint8), np.where(near, markers, 0), connectivity=1,
                    mask=near, watershed_line=True).astype(np.int32, copy=False)
    seg[c] = markers[c]
    return seg


def _scores(counts: Contingency) -> tuple[float, ...]:
    """The :data:`SCORE_NAMES` of one slice at one threshold."""
    if counts.n == 0:
        return (float("nan"),) * len(SCORE_NAMES)
    both, in_gt, in_seg = counts.sum_squares()
    rand_split, rand_merge = both / in_gt, both / in_seg
    h_joint, h_gt, h_seg = counts.entropies()
    mutual = max(h_gt + h_seg - h_joint, 0.0)
    one_cell = counts.gt_sizes.size <= 1
    one_segment = counts.n == 1 or (counts.singles == 0 and counts.seg_sizes.size == 1)
    if one_segment:  # the script's order: a single segment decides last
        info_split, info_merge = 0.0, 1.0
    elif one_cell:
        info_split, info_merge = 1.0, 0.0
    else:
        info_split, info_merge = mutual / h_seg, mutual / h_gt
    return (harmonic_mean(rand_split, rand_merge), rand_split, rand_merge,
            harmonic_mean(info_split, info_merge), info_split, info_merge)


def thinned_scores(
    prob: np.ndarray,
    gt_labels: np.ndarray,
    thresholds: np.ndarray | Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """V_rand and V_info after border thinning of one slice, at every threshold.

    Parameters
    ----------
    prob : numpy.ndarray
        ``(H, W)`` *cell* probability in [0, 1] (compared as a 32-bit float).
    gt_labels : numpy.ndarray
        ``(H, W)`` integer cell labels, 0 on the membrane: for ISBI label images
        ``scipy.ndimage.label(gt > 0)[0]``, the script's 4-connected components.
    thresholds : sequence of float, optional
        Cell where ``prob > t``; defaults to :data:`FIJI_THRESHOLDS`.

    Returns
    -------
    dict
        ``threshold`` and each of :data:`SCORE_NAMES`, arrays over the thresholds
        (``nan`` where the ground truth has no cell pixel). :func:`stack_scores` turns
        the results of several slices into the challenge's figures.

    Examples
    --------
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> s = thinned_scores(np.array([[0.9, 0.8, 0.5, 0.9, 0.7]]), gt, [0.6, 0.75])
    >>> s["v_rand"].tolist()  # at 0.75 the pixel at 0.7 becomes border
    [1.0, 1.0]
    """
    p = check_prob(prob).astype(np.float32).astype(np.float64)  # as the script reads it
    gt = check_labels(gt_labels, "gt_labels", p.shape)
    t = check_thresholds(thresholds, FIJI_THRESHOLDS)
    cells = GroundTruthCells(gt)
    values = np.array([_scores(cells.count(thin_borders(p > th), zero_singletons=True))
                       for th in t]).reshape(t.size, len(SCORE_NAMES))
    out = {"threshold": t.copy()}
    out.update({name: values[:, i] for i, name in enumerate(SCORE_NAMES)})
    return out


def stack_scores(per_slice: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
    """The challenge's figures of a stack: the best threshold of the mean over slices.

    V_rand and V_info are each averaged over the slices at every threshold and maximised
    over the thresholds separately (the first threshold on ties); their split and merge
    parts are the means at that same threshold. Slices without ground-truth cells are
    left out of the means.

    Parameters
    ----------
    per_slice : sequence of dict
        Results of :func:`thinned_scores` on the slices, all with the same thresholds.

    Returns
    -------
    dict
        ``v_rand``, ``v_rand_split``, ``v_rand_merge``, ``v_rand_threshold``, and the
        same for ``v_info``; ``nan`` without any ground-truth cell.

    Examples
    --------
    >>> a = {"threshold": np.array([0.3, 0.5]), **{k: np.array([0.5, 0.9])
    ...                                            for k in SCORE_NAMES}}
    >>> b = {"threshold": np.array([0.3, 0.5]), **{k: np.array([0.9, 0.7])
    ...                                            for k in SCORE_NAMES}}
    >>> r = stack_scores([a, b])
    >>> round(r["v_rand"], 6), r["v_rand_threshold"]  # (0.9 + 0.7) / 2 at 0.5
    (0.8, 0.5)
    """
    if not per_slice:
        raise ValueError("per_slice must hold the scores of at least one slice")
    t = np.asarray(per_slice[0]["threshold"], np.float64)
    if any(not np.array_equal(np.asarray(s["threshold"]), t) for s in per_slice):
        raise ValueError("the slices were scored at different thresholds")
    out: dict[str, float] = {}
    for score in ("v_rand", "v_info"):
        parts = {k: np.array([s[k] for s in per_slice], np.float64)
                 for k in (score, f"{score}_split", f"{score}_merge")}
        counted = ~np.isnan(parts[score])
        if not counted.any():
            out.update({k: float("nan") for k in parts} | {f"{score}_threshold": float("nan")})
            continue
        means = {k: np.where(counted, v, 0.0).sum(0) / np.maximum(counted.sum(0), 1)
                 for k, v in parts.items()}
        best = int(np.argmax(np.where(counted.any(0), means[score], -np.inf)))
        out.update({k: float(m[best]) for k, m in means.items()})
        out[f"{score}_threshold"] = float(t[best])
    return out


def threshold_text(t: float) -> str:
    """How a threshold of :data:`FIJI_THRESHOLDS` reads: ``"> 0.3"``, or ``"= 1"`` for
    the last one.

    Examples
    --------
    >>> threshold_text(FIJI_THRESHOLDS[3]), threshold_text(FIJI_THRESHOLDS[-1])
    ('> 0.3', '= 1')
    """
    if np.isnan(t):
        return "-"
    return "= 1" if t >= 1.0 - 1e-9 else f"> {t:.1f}"
