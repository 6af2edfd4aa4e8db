"""Segmentation metrics: pixel IoU, Cell Tracking Challenge SEG, instance matching,
how many touching cells a prediction keeps apart, and the ISBI 2012 EM challenge
measures (pixel, Rand and warping error; V_rand and V_info).

All instance metrics take integer label images (0 = background; ids need not be
contiguous) and work on a contingency table of (ground-truth id, predicted id,
overlap in pixels), so their cost grows with the number of pixels and overlapping
pairs, never with the product of the object counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from skimage import morphology

__all__ = [
    "ISBI_THRESHOLDS",
    "match_instances",
    "pixel_error",
    "pixel_iou",
    "rand_error",
    "seg_score",
    "simple_points",
    "touching_pairs",
    "touching_pairs_separated",
    "v_rand_v_info",
    "vi_split_merge",
    "warping_error",
]


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {pred.shape} "
                         f"and {gt.shape}")
    return pred, gt


def _as_labels(a: np.ndarray, name: str) -> np.ndarray:
    """Validate an integer label image; returns it as int64, flattened."""
    if a.dtype == bool:
        return a.astype(np.int64).ravel()
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be an integer label image, got dtype {a.dtype}")
    flat = a.astype(np.int64, copy=False).ravel()
    if flat.size and flat.min() < 0:
        raise ValueError(f"{name} labels must be >= 0, got {int(flat.min())}")
    return flat


def _id_sizes(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero ids present and their pixel counts."""
    fg = flat[flat > 0]
    if fg.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if int(fg.max()) <= 4 * flat.size + 1024:
        counts = np.bincount(fg)
        ids = np.flatnonzero(counts)
        return ids, counts[ids]
    return np.unique(fg, return_counts=True)


@dataclass(frozen=True)
class _Overlap:
    """Contingency table of two label images, restricted to overlapping pairs."""

    gt_ids: np.ndarray  # (G,) ids present in gt
    gt_sizes: np.ndarray  # (G,)
    pred_ids: np.ndarray  # (P,)
    pred_sizes: np.ndarray  # (P,)
    gi: np.ndarray  # (M,) index into gt_ids of each overlapping pair
    pi: np.ndarray  # (M,) index into pred_ids
    inter: np.ndarray  # (M,) overlap in pixels

    @property
    def iou(self) -> np.ndarray:
        union = self.gt_sizes[self.gi] + self.pred_sizes[self.pi] - self.inter
        return self.inter / union


def _overlap(pred: np.ndarray, gt: np.ndarray) -> _Overlap:
    pred, gt = _check_pair(pred, gt)
    p = _as_labels(pred, "pred")
    g = _as_labels(gt, "gt")
    gt_ids, gt_sizes = _id_sizes(g)
    pred_ids, pred_sizes = _id_sizes(p)
    both = (g > 0) & (p > 0)
    gi = np.searchsorted(gt_ids, g[both])
    pi = np.searchsorted(pred_ids, p[both])
    key = gi * max(pred_ids.size, 1) + pi
    pairs, inter = np.unique(key, return_counts=True)
    n_pred = max(pred_ids.size, 1)
    return _Overlap(gt_ids, gt_sizes, pred_ids, pred_sizes,
                    pairs // n_pred, pairs % n_pred, inter)


# ---------------------------------------------------------------------- pixel level
def pixel_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of the foreground (``> 0``) of two masks.

    Returns 1.0 when both are empty (nothing to find, nothing found).

    Examples
    --------
    >>> import numpy as np
    >>> pixel_iou(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0]))
    0.3333333333333333
    """
    pred, gt = _check_pair(pred, gt)
    p, g = pred > 0, gt > 0
    union = int(np.count_nonzero(p | g))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & g)) / union


# ------------------------------------------------------------------- touching cells
def touching_pairs(gt_labels: np.ndarray, *, min_contact: int = 1) -> set[tuple[int, int]]:
    """Pairs of instances that touch each other directly.

    Two instances touch when at least ``min_contact`` pixel edges separate a pixel of
    one from a pixel of the other, counting 4-neighbours only (left-right and
    up-down; a diagonal corner alone is not a contact) and with no background pixel
    in between, as in Cell Tracking Challenge masks where touching cells have
    different ids and no gap.

    Parameters
    ----------
    gt_labels : numpy.ndarray
        ``(H, W)`` integer instance labels, 0 = background.
    min_contact : int
        Shortest shared border, in pixel edges, that counts as touching.

    Returns
    -------
    set of (int, int)
        ``(a, b)`` with ``a < b``, the ids as in ``gt_labels``.

    Examples
    --------
    >>> import numpy as np
    >>> sorted(touching_pairs(np.array([[1, 1, 2, 0, 3], [1, 1, 2, 0, 3]])))
    [(1, 2)]
    """
    labels = np.asarray(gt_labels)
    if labels.ndim != 2:
        raise ValueError(f"gt_labels must be 2-D (H, W), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"gt_labels must be integer labels, got dtype {labels.dtype}")
    if int(min_contact) != min_contact or min_contact < 1:
        raise ValueError(f"min_contact must be a positive integer, got {min_contact!r}")
    lab = labels.astype(np.int64, copy=False)
    firsts, seconds = [], []
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1, :], lab[1:, :])):
        edge = (a != b) & (a > 0) & (b > 0)
        firsts.append(np.minimum(a[edge], b[edge]))
        seconds.append(np.maximum(a[edge], b[edge]))
    lo, hi = np.concatenate(firsts), np.concatenate(seconds)
    if lo.size == 0:
        return set()
    pairs, counts = np.unique(np.stack([lo, hi], axis=1), axis=0, return_counts=True)
    pairs = pairs[counts >= min_contact]
    return {(int(a), int(b)) for a, b in pairs}


def _gt_to_pred_cover(ov: _Overlap) -> dict[int, int]:
    """GT id -> predicted id covering more than half of that GT object."""
    covers = 2 * ov.inter > ov.gt_sizes[ov.gi]
    return {int(ov.gt_ids[g]): int(ov.pred_ids[p])
            for g, p in zip(ov.gi[covers], ov.pi[covers], strict=True)}


def touching_pairs_separated(
    pred_labels: np.ndarray, gt_labels: np.ndarray, *, min_contact: int = 1
) -> tuple[int, int]:
    """How many touching ground-truth pairs the prediction keeps apart.

    A touching pair (see :func:`touching_pairs`) counts as *separated* when each of
    its two cells is matched to a predicted instance that covers more than half of
    it (the SEG matching rule; any IoU > 0.5 match satisfies it too) and the two
    matched instances are different. A merge (one instance over both) or a missed
    cell counts as not separated.

    Returns
    -------
    (separated, total) : (int, int)
        ``total`` is the number of touching pairs in ``gt_labels``.
    """
    pairs = touching_pairs(gt_labels, min_contact=min_contact)
    if not pairs:
        _check_pair(pred_labels, gt_labels)
        return 0, 0
    match = _gt_to_pred_cover(_overlap(pred_labels, gt_labels))
    separated = sum(
        1 for a, b in pairs if a in match and b in match and match[a] != match[b]
    )
    return separated, len(pairs)


# -------------------------------------------------------------------- object level
def seg_score(pred_labels: np.ndarray, gt_labels: np.ndarray) -> float:
    """Cell Tracking Challenge SEG measure.

    For each ground-truth object R, the predicted object S with
    ``|R ∩ S| > 0.5 |R|`` (at most one can exist) gives the Jaccard index
    ``|R ∩ S| / |R ∪ S|``; without such an S the object scores 0. SEG is the mean
    over ground-truth objects. False positives do not lower it.

    Returns
    -------
    float
        In ``[0, 1]``; ``nan`` when ``gt_labels`` has no objects (the measure is
        undefined, and a mean over images should skip such an image rather than
        count it as 0 or 1).

    References
    ----------
    .. [1] V. Ulman et al., "An objective comparison of cell-tracking algorithms",
       Nat. Methods 14, 1141-1152 (2017).

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[1, 1, 1, 1, 0, 2, 2]])
    >>> pred = np.array([[5, 5, 5, 0, 0, 0, 7]])  # 3/4 of 1 covered; 1/2 of 2 is not > 1/2
    >>> seg_score(pred, gt)
    0.375
    """
    ov = _overlap(pred_labels, gt_labels)
    if ov.gt_ids.size == 0:
        return float("nan")
    covers = 2 * ov.inter > ov.gt_sizes[ov.gi]
    total = float(ov.iou[covers].sum())
    return total / ov.gt_ids.size


def match_instances(
    pred: np.ndarray, gt: np.ndarray, iou_threshold: float = 0.5
) -> dict[str, float]:
    """Match predicted to ground-truth instances one-to-one by IoU.

    A pair can match when its IoU is at least ``iou_threshold``. For thresholds
    above 0.5 every object has at most one candidate and matching is immediate;
    otherwise (and on exact ties at 0.5) the Hungarian algorithm, run on the
    candidate pairs only, finds the largest number of matches and, among those, the
    largest total IoU.

    Parameters
    ----------
    pred, gt : numpy.ndarray
        Integer instance labels of the same shape (0 = background).
    iou_threshold : float
        In ``(0, 1]``.

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn`` (ints), ``precision = tp / (tp + fp)``,
        ``recall = tp / (tp + fn)``, ``f1 = 2 tp / (2 tp + fp + fn)`` and
        ``ap = tp / (tp + fp + fn)``, the average precision at this IoU threshold as
        cell segmentation benchmarks use it for label images without confidence
        scores (Data Science Bowl 2018, StarDist, Cellpose). When a denominator is
        zero (no objects on that side) the score is 1.0 if nothing was missed or
        invented, else 0.0; two empty images score 1.0 everywhere.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> m = match_instances(np.array([[3, 3, 0, 4, 0]]), gt)
    >>> m["tp"], m["fn"], m["recall"], m["ap"]
    (2, 0, 1.0, 1.0)
    >>> match_instances(np.array([[3, 3, 0, 0, 0]]), gt)["ap"]  # one found, one missed
    0.5
    """
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    ov = _overlap(pred, gt)
    n_gt, n_pred = ov.gt_ids.size, ov.pred_ids.size
    iou = ov.iou
    ok = iou >= iou_threshold
    gi, pi, iou = ov.gi[ok], ov.pi[ok], iou[ok]
    if gi.size and (np.unique(gi).size < gi.size or np.unique(pi).size < pi.size):
        # several candidates per object: best one-to-one assignment on the candidates
        g_u, g_idx = np.unique(gi, return_inverse=True)
        p_u, p_idx = np.unique(pi, return_inverse=True)
        # each match is worth more than any IoU total, so the count comes first
        bonus = float(min(g_u.size, p_u.size) + 1)
        cost = np.zeros((g_u.size, p_u.size))
        cost[g_idx, p_idx] = -(bonus + iou)
        rows, cols = linear_sum_assignment(cost)
        tp = int(np.count_nonzero(cost[rows, cols] < 0))
    else:
        tp = int(gi.size)
    fp, fn = n_pred - tp, n_gt - tp
    precision = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    ap = tp / (tp + fp + fn) if tp + fp + fn else 1.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall,
            "f1": f1, "ap": ap}


# ----------------------------------------------------------- ISBI 2012 EM challenge
#
# Conventions shared by the functions below (ISBI 2012 segmentation of neuronal
# structures in EM stacks):
#
# * ``prob`` is a *membrane* (boundary) probability map in [0, 1], as the challenge
#   submissions were; pass ``1 - p`` if you hold a cell probability ``p``.
# * After thresholding, a pixel is membrane when ``prob > t``; cells are the
#   4-connected components of the remaining pixels. Membranes are therefore
#   8-connected, the complementary connectivity, so that a one-pixel-wide diagonal
#   membrane still separates two cells.
# * Ground truth: the challenge's label images are 255 = cell interior, 0 =
#   membrane. ``gt_membrane`` is the boolean mask ``gt == 0``; ``gt_labels`` is an
#   instance image with 0 on the membrane, e.g.
#   ``scipy.ndimage.label(gt == 255)[0]``. Ground-truth membrane pixels (label 0)
#   are left out of the Rand and information scores (foreground restriction).

#: Thresholds tried by :func:`pixel_error` and :func:`rand_error` by default:
#: 0.0, 0.1, ..., 0.9 (membrane where ``prob > t``; ``t = 1`` would leave none).
ISBI_THRESHOLDS = np.round(np.arange(10) * 0.1, 1)


def _check_prob(prob: np.ndarray) -> np.ndarray:
    p = np.asarray(prob)
    if p.ndim != 2:
        raise ValueError(f"prob must be a 2-D (H, W) map, got shape {p.shape}")
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)
            or p.dtype == bool):
        raise ValueError(f"prob must be numeric, got dtype {p.dtype}")
    p = p.astype(np.float64, copy=False)
    if p.size and (not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(f"prob must lie in [0, 1], got values in "
                         f"[{np.nanmin(p)}, {np.nanmax(p)}]")
    return p


def _check_thresholds(thresholds: np.ndarray | list[float] | None) -> np.ndarray:
    t = ISBI_THRESHOLDS if thresholds is None else np.asarray(thresholds, np.float64)
    t = np.atleast_1d(t)
    if t.ndim != 1 or t.size == 0 or not np.isfinite(t).all():
        raise ValueError(f"thresholds must be a non-empty 1-D sequence of finite "
                         f"numbers, got {thresholds!r}")
    return t


def _check_mask(mask: np.ndarray, name: str, shape: tuple[int, ...] | None = None
                ) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) mask, got shape {m.shape}")
    if shape is not None and m.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {m.shape}")
    if m.dtype != bool:
        if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
            raise ValueError(f"{name} must be a boolean mask, got dtype {m.dtype}")
        values = np.unique(m)
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"{name} must be a boolean (0/1) mask, got values "
                             f"{values[:5].tolist()}")
        m = m.astype(bool)
    return m


def _check_labels_2d(labels: np.ndarray, name: str,
                     shape: tuple[int, ...] | None = None) -> np.ndarray:
    a = np.asarray(labels)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) label image, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return _as_labels(a, name).reshape(a.shape)


def _f_score(a: float, b: float) -> float:
    return 2.0 * a * b / (a + b) if a + b > 0 else 0.0


def _ratio(num: float, den: float) -> float:
    """``num / den``, with 0 / 0 read as 1 (nothing to find, nothing wrong)."""
    if den == 0:
        return 1.0 if num == 0 else 0.0
    return num / den


def _label_cells(membrane: np.ndarray) -> np.ndarray:
    """4-connected components of the non-membrane pixels; 0 on the membrane."""
    labels, _ = ndimage.label(~membrane)  # default structure = 4-connectivity in 2-D
    return labels


def _joint_counts(seg: np.ndarray, gt: np.ndarray, *, boundary_singletons: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contingency counts over the pixels with ``gt > 0``.

    Returns ``(n_ij, n_gt, n_seg)``: the non-zero counts of (gt id, seg id) pairs and
    the two marginals. Segmentation label 0 is an ordinary segment, unless
    ``boundary_singletons``, where each of its pixels is a segment of its own.
    """
    g = gt.ravel()
    s = seg.ravel()
    keep = g > 0
    g, s = g[keep], s[keep]
    if g.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    if boundary_singletons:
        s = s.copy()
        zero = s == 0
        s[zero] = int(s.max()) + 1 + np.arange(np.count_nonzero(zero))
    _, gi = np.unique(g, return_inverse=True)
    s_ids, si = np.unique(s, return_inverse=True)
    _, n_ij = np.unique(gi.astype(np.int64) * s_ids.size + si, return_counts=True)
    return n_ij, np.bincount(gi), np.bincount(si)


def _entropy(counts: np.ndarray, n: int) -> float:
    p = counts[counts > 0] / n
    return float(-(p * np.log2(p)).sum())


# -------------------------------------------------------------------- pixel error
def pixel_error(
    prob: np.ndarray,
    gt_membrane: np.ndarray,
    thresholds: np.ndarray | list[float] | None = None,
) -> dict[str, float]:
    """ISBI 2012 pixel error: 1 - the best F-score of pixel similarity.

    At each threshold ``t`` the prediction's membrane is ``prob > t``; its F-score
    against ``gt_membrane`` (membrane is the positive class) is
    ``2 TP / (2 TP + FP + FN)``. The error is one minus the largest F-score over
    ``thresholds``.

    Parameters
    ----------
    prob : numpy.ndarray
        ``(H, W)`` membrane probability in [0, 1].
    gt_membrane : numpy.ndarray
        ``(H, W)`` boolean mask, True on the membrane (``gt == 0`` for ISBI labels).
    thresholds : sequence of float, optional
        Defaults to :data:`ISBI_THRESHOLDS` (0.0, 0.1, ..., 0.9).

    Returns
    -------
    dict
        ``error`` (in [0, 1]), ``fscore`` and ``threshold``: the best one, the first
        in ``thresholds`` on ties. With no membrane in either image the F-score is 1.
        Also ``misclassified``, the smallest fraction of wrongly classified pixels
        over ``thresholds`` ((FP + FN) / N, the plain pixel error of earlier
        leaderboards, which some publications report under the same name), and its
        ``misclassified_threshold``.

    References
    ----------
    .. [1] I. Arganda-Carreras et al., "Crowdsourcing the creation of image
       segmentation algorithms for connectomics", Front. Neuroanat. 9:142 (2015).

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[True, False, False, True]])
    >>> r = pixel_error(np.array([[0.9, 0.2, 0.4, 0.6]]), gt, [0.3, 0.5])
    >>> r["error"], r["threshold"], r["misclassified"]
    (0.0, 0.5, 0.0)
    """
    p = _check_prob(prob)
    gt = _check_mask(gt_membrane, "gt_membrane", p.shape)
    t = _check_thresholds(thresholds)
    # counts of prob > t among membrane / non-membrane pixels, for all t at once
    on = np.sort(p[gt])
    off = np.sort(p[~gt])
    tp = on.size - np.searchsorted(on, t, side="right")
    fp = off.size - np.searchsorted(off, t, side="right")
    fn = on.size - tp
    den = 2 * tp + fp + fn
    f = np.where(den > 0, 2 * tp / np.maximum(den, 1), 1.0)
    best = int(np.argmax(f))
    wrong = (fp + fn) / max(p.size, 1)
    least = int(np.argmin(wrong))
    return {"error": float(1.0 - f[best]), "fscore": float(f[best]),
            "threshold": float(t[best]), "misclassified": float(wrong[least]),
            "misclassified_threshold": float(t[least])}


# ---------------------------------------------------------------- Rand / VI scores
def _adapted_rand(seg: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """(fscore, precision, recall) of the foreground-restricted Rand index."""
    n_ij, n_gt, n_seg = _joint_counts(seg, gt)
    n = float(n_gt.sum())
    both = float(n_ij @ n_ij) - n  # ordered pairs together in both (self-pairs out)
    in_seg = float(n_seg @ n_seg) - n
    in_gt = float(n_gt @ n_gt) - n
    precision, recall = _ratio(both, in_seg), _ratio(both, in_gt)
    return _ratio(2 * both, in_seg + in_gt), precision, recall


def rand_error(
    prob: np.ndarray,
    gt_labels: np.ndarray,
    thresholds: np.ndarray | list[float] | None = None,
) -> dict[str, float]:
    """ISBI 2012 Rand error: 1 - the best foreground-restricted Rand F-score.

    At each threshold ``t`` the cells of the prediction are the 4-connected
    components of ``prob <= t``; its membrane pixels (``prob > t``) together form
    segment 0, an ordinary segment. Pixels on the ground-truth membrane
    (``gt_labels == 0``) are left out. Over the remaining pixels, with ``n_ij``
    the overlap of ground-truth cell ``i`` and segment ``j``::

        precision = (sum n_ij^2 - n) / (sum_j s_j^2 - n)   # s_j: segment sizes
        recall    = (sum n_ij^2 - n) / (sum_i g_i^2 - n)   # g_i: cell sizes
        F = 2 precision recall / (precision + recall)

    i.e. the fraction of pixel pairs (not counting a pixel with itself) that are
    together in both, over those together in the prediction or in the ground
    truth. At a single threshold the error equals
    ``skimage.metrics.adapted_rand_error(gt_labels, cells)[0]``.

    Parameters
    ----------
    prob : numpy.ndarray
        ``(H, W)`` membrane probability in [0, 1].
    gt_labels : numpy.ndarray
        ``(H, W)`` integer cell labels, 0 on the membrane.
    thresholds : sequence of float, optional
        Defaults to :data:`ISBI_THRESHOLDS`.

    Returns
    -------
    dict
        ``error``, ``fscore``, ``precision``, ``recall`` and ``threshold`` at the
        best threshold (the first in ``thresholds`` on ties); ``error`` is ``nan`` when the
        ground truth has no cell pixel. A ratio 0 / 0 (no pairs anywhere) reads 1.

    References
    ----------
    .. [1] I. Arganda-Carreras et al., "Crowdsourcing the creation of image
       segmentation algorithms for connectomics", Front. Neuroanat. 9:142 (2015).
    .. [2] W. M. Rand, "Objective criteria for the evaluation of clustering
       methods", J. Am. Stat. Assoc. 66, 846-850 (1971).

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> rand_error(np.array([[0.1, 0.2, 0.9, 0.0, 0.3]]), gt, [0.5])["error"]
    0.0
    """
    p = _check_prob(prob)
    gt = _check_labels_2d(gt_labels, "gt_labels", p.shape)
    t = _check_thresholds(thresholds)
    if not np.any(gt):
        return {"error": float("nan"), "fscore": float("nan"), "precision": float("nan"),
                "recall": float("nan"), "threshold": float(t[0])}
    best: tuple[float, float, float, float] | None = None
    for th in t:
        f, prec, rec = _adapted_rand(_label_cells(p > th), gt)
        if best is None or f > best[0]:
            best = (f, prec, rec, float(th))
    f, prec, rec, th = best
    return {"error": 1.0 - f, "fscore": f, "precision": prec, "recall": rec,
            "threshold": th}


def vi_split_merge(seg: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Split and merge parts of the variation of information, foreground-restricted.

    Over the pixels with ``gt > 0`` (segment 0 of ``seg`` is an ordinary segment)::

        split = H(seg | gt)   # > 0 when a ground-truth cell is cut into pieces
        merge = H(gt | seg)   # > 0 when a segment spans several cells

    in bits; ``split + merge`` is the variation of information. The pair equals
    ``skimage.metrics.variation_of_information(gt, seg, ignore_labels=[0])``.

    Parameters
    ----------
    seg, gt : numpy.ndarray
        ``(H, W)`` integer label images; 0 in ``gt`` is left out.

    Returns
    -------
    (split, merge) : (float, float)
        ``(nan, nan)`` when ``gt`` has no foreground.

    References
    ----------
    .. [1] M. Meila, "Comparing clusterings by the variation of information",
       COLT 2003, LNAI 2777, 173-187.

    Examples
    --------
    >>> import numpy as np
    >>> split, merge = vi_split_merge(np.array([[1, 2]]), np.array([[5, 5]]))
    >>> split, merge
    (1.0, 0.0)
    """
    seg_a = _check_labels_2d(seg, "seg")
    gt_a = _check_labels_2d(gt, "gt", seg_a.shape)
    n_ij, n_gt, n_seg = _joint_counts(seg_a, gt_a)
    n = int(n_gt.sum())
    if n == 0:
        return float("nan"), float("nan")
    h_joint = _entropy(n_ij, n)
    split = h_joint - _entropy(n_gt, n)
    merge = h_joint - _entropy(n_seg, n)
    return max(split, 0.0), max(merge, 0.0)


def v_rand_v_info(
    membrane: np.ndarray, gt_labels: np.ndarray, *, thin: bool = True
) -> dict[str, float]:
    """V_rand and V_info, the scores of the later ISBI 2012 ranking (higher is better).

    What is done, step by step:

    1. ``membrane`` (the thresholded prediction, True = membrane) is thinned to
       one-pixel-wide, 8-connected curves with :func:`skimage.morphology.thin`
       (topology-preserving; skip with ``thin=False``). The mask is thinned inside
       a one-pixel frame of membrane, removed afterwards, so that a membrane that
       reaches the image border stays attached to it.
    2. Cells are the 4-connected components of the non-membrane pixels.
    3. Pixels with ``gt_labels == 0`` are left out; each remaining pixel of the
       thinned membrane is a segment of its own (it joins no cell).
    4. With ``p_ij`` the joint distribution of (segment ``i``, ground-truth cell
       ``j``) and ``s``, ``t`` its marginals::

           V_rand_split = sum p_ij^2 / sum t_j^2     V_rand_merge = sum p_ij^2 / sum s_i^2
           V_info_split = I(S; T) / H(S)             V_info_merge = I(S; T) / H(T)

       and ``V_rand``, ``V_info`` are the harmonic means of each pair (alpha = 0.5).
       A ratio 0 / 0 reads 1. Self-pairs are counted here, unlike :func:`rand_error`.

    Parameters
    ----------
    membrane : numpy.ndarray
        ``(H, W)`` boolean membrane mask of the prediction (e.g. ``prob > 0.5``).
    gt_labels : numpy.ndarray
        ``(H, W)`` integer cell labels, 0 on the membrane.
    thin : bool
        Thin the membrane before labelling the cells.

    Returns
    -------
    dict
        ``v_rand``, ``v_rand_split``, ``v_rand_merge``, ``v_info``,
        ``v_info_split``, ``v_info_merge``; all ``nan`` when the ground truth has
        no cell pixel.

    References
    ----------
    .. [1] I. Arganda-Carreras et al., "Crowdsourcing the creation of image
       segmentation algorithms for connectomics", Front. Neuroanat. 9:142 (2015).

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> v_rand_v_info(gt == 0, gt)["v_rand"]
    1.0
    """
    mem = _check_mask(membrane, "membrane")
    gt = _check_labels_2d(gt_labels, "gt_labels", mem.shape)
    keys = ("v_rand", "v_rand_split", "v_rand_merge", "v_info", "v_info_split",
            "v_info_merge")
    if not np.any(gt):
        return dict.fromkeys(keys, float("nan"))
    if thin:
        # a frame of membrane keeps membranes that reach the border attached to it;
        # thinned alone, their ends would be eaten away and open the cells
        mem = morphology.thin(np.pad(mem, 1, constant_values=True))[1:-1, 1:-1]
    n_ij, n_gt, n_seg = _joint_counts(_label_cells(mem), gt, boundary_singletons=True)
    n = int(n_gt.sum())
    both = float(n_ij.astype(np.float64) @ n_ij)
    rand_split = _ratio(both, float(n_gt.astype(np.float64) @ n_gt))
    rand_merge = _ratio(both, float(n_seg.astype(np.float64) @ n_seg))
    h_s, h_t = _entropy(n_seg, n), _entropy(n_gt, n)
    mutual = max(h_s + h_t - _entropy(n_ij, n), 0.0)
    info_split = _ratio(mutual, h_s) if h_s > 1e-12 else 1.0
    info_merge = _ratio(mutual, h_t) if h_t > 1e-12 else 1.0
    values = (_f_score(rand_split, rand_merge), rand_split, rand_merge,
              _f_score(info_split, info_merge), info_split, info_merge)
    return dict(zip(keys, (float(v) for v in values), strict=True))


# ------------------------------------------------------------------ warping error
# The 8 neighbours of a pixel, clockwise from the top-left; bit k of a
# neighbourhood code is neighbour k.
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _ring_components(members: list[tuple[int, int]], adjacency: int) -> list[set]:
    """Connected components of a set of ring offsets (4- or 8-adjacency)."""
    left = set(members)
    comps = []
    while left:
        stack = [left.pop()]
        comp = set(stack)
        while stack:
            y, x = stack.pop()
            for q in list(left):
                dy, dx = abs(q[0] - y), abs(q[1] - x)
                if (dy + dx == 1) if adjacency == 4 else max(dy, dx) == 1:
                    left.discard(q)
                    comp.add(q)
                    stack.append(q)
        comps.append(comp)
    return comps


def _build_simple_lut() -> np.ndarray:
    """Whether the centre of each of the 256 neighbourhoods is a simple point.

    Foreground 8-connected, background 4-connected. With ``N`` the 8 neighbours,
    the topological numbers are ``T8`` = the number of 8-components of the
    foreground in ``N``, and ``T4`` = the number of 4-components of the background
    in ``N`` that are 4-adjacent to the centre; the centre is simple (flipping it,
    either way, changes no topology) iff ``T8 == 1`` and ``T4 == 1``.
    """
    lut = np.zeros(256, bool)
    edge_neighbours = {(-1, 0), (0, 1), (1, 0), (0, -1)}
    for code in range(256):
        fg = [o for k, o in enumerate(_RING) if code >> k & 1]
        bg = [o for k, o in enumerate(_RING) if not code >> k & 1]
        t8 = len(_ring_components(fg, 8))
        t4 = sum(1 for c in _ring_components(bg, 4) if c & edge_neighbours)
        lut[code] = t8 == 1 and t4 == 1
    return lut


_SIMPLE_LUT = _build_simple_lut()


def _codes_at(padded: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Neighbourhood codes at (ys, xs), coordinates of the unpadded image."""
    code = np.zeros(ys.shape, np.uint8)
    for k, (dy, dx) in enumerate(_RING):
        code |= padded[ys + 1 + dy, xs + 1 + dx].astype(np.uint8) << k
    return code


def simple_points(mask: np.ndarray) -> np.ndarray:
    """Pixels whose flip changes no topology of a membrane mask.

    The foreground (True, membrane) is 8-connected and the background (cells)
    4-connected; outside the image counts as foreground, i.e. the image border is
    a membrane that closes the cells. A pixel is simple when flipping it neither
    creates nor deletes a component or a hole, nor splits or merges any: by the
    local test on its 3x3 neighbourhood with the topological numbers ``T8`` of the
    foreground and ``T4`` of the background, both of which must be 1.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` boolean mask.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool, True where the pixel is simple (whatever its value).

    References
    ----------
    .. [1] G. Bertrand, "Simple points, topological numbers and geodesic
       neighborhoods in cubic grids", Pattern Recognit. Lett. 15, 1003-1011 (1994).

    Examples
    --------
    >>> import numpy as np
    >>> line = np.zeros((3, 3), bool); line[:, 1] = True   # cuts the cells in two
    >>> bool(simple_points(line)[1, 1])
    False
    >>> end = np.zeros((3, 3), bool); end[:2, 1] = True    # end of a membrane
    >>> bool(simple_points(end)[1, 1])
    True
    """
    m = _check_mask(mask, "mask")
    padded = np.pad(m, 1, constant_values=True)
    ys, xs = np.indices(m.shape)
    return _SIMPLE_LUT[_codes_at(padded, ys, xs)]


def warping_error(
    pred_binary: np.ndarray, gt_binary: np.ndarray, *, max_iter: int | None = None
) -> float:
    """Warping error: the disagreements that no topology-preserving warp removes.

    The ground-truth membrane is warped towards the prediction by flipping only
    simple points (see :func:`simple_points`; membrane 8-connected, cells
    4-connected, image border = membrane), and only pixels where the two disagree,
    so that every flip lowers the disagreement by one. The pixels are visited in
    four interleaved sub-grids (row and column parity): two pixels of one sub-grid
    are never neighbours, so all simple disagreeing pixels of a sub-grid flip at
    once, exactly as if one after the other. Sweeps over the four sub-grids repeat
    until one flips nothing (or ``max_iter`` sweeps). The pixels that still
    disagree are non-simple -- each belongs to a split, a merger, an added or
    deleted object, or a hole -- and their count over the number of pixels is the
    warping error. A boundary that is only displaced scores 0.

    The greedy order is one valid choice; a different order can leave a different
    (equally topological) set of pixels.

    Parameters
    ----------
    pred_binary, gt_binary : numpy.ndarray
        ``(H, W)`` boolean membrane masks (True = membrane), e.g. ``prob > 0.5``
        and ``gt == 0`` for ISBI 2012 labels.
    max_iter : int, optional
        Most sweeps; None runs to convergence (at most one sweep per initially
        disagreeing pixel, since every sweep but the last flips at least one).

    Returns
    -------
    float
        In ``[0, 1]``; 0 when the prediction matches the ground truth up to a
        topology-preserving warp.

    References
    ----------
    .. [1] V. Jain et al., "Boundary learning by optimization with topological
       constraints", CVPR 2010, 2488-2495.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.zeros((6, 6), bool); gt[:, 2] = True
    >>> shifted = np.zeros((6, 6), bool); shifted[:, 3] = True
    >>> warping_error(shifted, gt)
    0.0
    >>> gap = gt.copy(); gap[3, 2] = False          # merges the two cells
    >>> warping_error(gap, gt) == 1 / 36
    True
    """
    pred = _check_mask(pred_binary, "pred_binary")
    gt = _check_mask(gt_binary, "gt_binary", pred.shape)
    if max_iter is not None and (int(max_iter) != max_iter or max_iter < 0):
        raise ValueError(f"max_iter must be a non-negative integer or None, "
                         f"got {max_iter!r}")
    if pred.size == 0:
        return 0.0
    warped = np.pad(gt, 1, constant_values=True)  # the border frame stays membrane
    inner = warped[1:-1, 1:-1]  # view: writes go into `warped`
    sweeps = 0
    while max_iter is None or sweeps < max_iter:
        flipped = 0
        for oy in (0, 1):
            for ox in (0, 1):
                diff = inner[oy::2, ox::2] != pred[oy::2, ox::2]
                sy, sx = np.nonzero(diff)
                if sy.size == 0:
                    continue
                ys, xs = 2 * sy + oy, 2 * sx + ox
                simple = _SIMPLE_LUT[_codes_at(warped, ys, xs)]
                ys, xs = ys[simple], xs[simple]
                inner[ys, xs] = ~inner[ys, xs]
                flipped += ys.size
        sweeps += 1
        if flipped == 0:
            break
    return float(np.count_nonzero(inner != pred)) / pred.size
