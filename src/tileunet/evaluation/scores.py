"""Pixel and instance scores: pixel IoU, the Cell Tracking Challenge SEG and DET, one-to-one
instance matching (precision, recall, F1, AP), and how many touching cells a prediction
keeps apart.

All instance scores take integer label images (0 = background; ids need not be
contiguous, see :func:`as_labels`) and work on a contingency table of (ground-truth id,
predicted id, overlap in pixels), so their cost grows with the number of pixels and
overlapping pairs, never with the product of the object counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "DET_WEIGHTS",
    "as_labels",
    "det_counts",
    "det_from_counts",
    "det_score",
    "match_instances",
    "pixel_iou",
    "seg_score",
    "seg_totals",
    "touching_pairs",
    "touching_pairs_separated",
]


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {pred.shape} "
                         f"and {gt.shape}")
    return pred, gt


def as_labels(a: np.ndarray, name: str) -> np.ndarray:
    """Check an integer label image and return it flattened, as int64.

    Parameters
    ----------
    a : numpy.ndarray
        Label image of any shape: integer ids >= 0 (0 = background), or a boolean
        mask.
    name : str
        What to call ``a`` in an error message.

    Returns
    -------
    numpy.ndarray
        ``(a.size,)`` int64.

    Raises
    ------
    ValueError
        When ``a`` is neither integer nor boolean, or holds a negative id.

    Examples
    --------
    >>> import numpy as np
    >>> as_labels(np.array([[0, 3], [3, 1]], np.uint8), "gt")
    array([0, 3, 3, 1])
    """
    a = np.asarray(a)
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
    p = as_labels(pred, "pred")
    g = as_labels(gt, "gt")
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
def seg_totals(pred_labels: np.ndarray, gt_labels: np.ndarray) -> tuple[float, int]:
    """The two sums of the Cell Tracking Challenge SEG: ``(sum of J, number of objects)``.

    For each ground-truth object R, the predicted object S with ``|R ∩ S| > 0.5 |R|``
    (at most one can exist) gives the Jaccard index ``J = |R ∩ S| / |R ∪ S|``; without
    such an S, ``J = 0``. SEG is the first sum over the second; over a sequence the
    challenge adds both sums over all frames first (all objects weigh the same).

    Examples
    --------
    >>> import numpy as np
    >>> seg_totals(np.array([[5, 5, 0, 7]]), np.array([[1, 1, 0, 2]]))
    (2.0, 2)
    """
    ov = _overlap(pred_labels, gt_labels)
    covers = 2 * ov.inter > ov.gt_sizes[ov.gi]
    return float(ov.iou[covers].sum()), int(ov.gt_ids.size)


def seg_score(pred_labels: np.ndarray, gt_labels: np.ndarray) -> float:
    """Cell Tracking Challenge SEG measure of one image.

    The mean over ground-truth objects of the Jaccard index of the predicted object that
    covers more than half of the object, 0 where none does (:func:`seg_totals`). False
    positives do not lower it.

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
    total, n = seg_totals(pred_labels, gt_labels)
    return total / n if n else float("nan")


#: Weights of the detection errors in AOGM-D, the cost behind the Cell Tracking
#: Challenge's DET: a split of a predicted object that covers several ground-truth
#: objects (``ns``, per extra object), a missed object (``fn``), an invented one (``fp``).
DET_WEIGHTS = {"ns": 5, "fn": 10, "fp": 1}


def det_counts(pred_labels: np.ndarray, gt_labels: np.ndarray) -> dict[str, int]:
    """The detection errors of one frame, as the Cell Tracking Challenge's DET counts them.

    A ground-truth object is detected by the predicted object that covers more than
    half of its pixels (at most one can). A predicted object that detects ``k > 1``
    objects needs ``k - 1`` splits; one that detects none is a false positive; an
    object that no predicted object detects is a false negative.

    Returns
    -------
    dict
        ``ns`` (splits), ``fn``, ``fp`` and ``gt`` (number of ground-truth objects), to
        be added over frames and turned into DET by :func:`det_from_counts`.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[1, 1, 0, 2, 2, 0, 3, 3, 0, 0]])
    >>> pred = np.array([[4, 4, 4, 4, 4, 0, 0, 0, 0, 9]])  # 1 and 2 merged, 3 missed
    >>> det_counts(pred, gt)
    {'ns': 1, 'fn': 1, 'fp': 1, 'gt': 3}
    """
    ov = _overlap(pred_labels, gt_labels)
    covers = 2 * ov.inter > ov.gt_sizes[ov.gi]
    detected = np.bincount(ov.pi[covers], minlength=ov.pred_ids.size)
    return {"ns": int(np.maximum(detected - 1, 0).sum()),
            "fn": int(ov.gt_ids.size - np.count_nonzero(covers)),
            "fp": int(np.count_nonzero(detected == 0)),
            "gt": int(ov.gt_ids.size)}


def det_from_counts(counts: Iterable[Mapping[str, int]]) -> float:
    """DET of one or more frames from their :func:`det_counts`.

    ``AOGM-D = 5 NS + 10 FN + 1 FP`` (:data:`DET_WEIGHTS`) summed over the frames,
    ``AOGM-D0 = 10 x`` the number of ground-truth objects (the cost of building the
    detections from nothing), and ``DET = 1 - min(AOGM-D, AOGM-D0) / AOGM-D0``.

    Returns
    -------
    float
        In ``[0, 1]``, higher is better; ``nan`` without ground-truth objects.

    References
    ----------
    .. [1] P. Matula et al., "Cell tracking accuracy measurement based on comparison of
       acyclic oriented graphs", PLoS ONE 10(12), e0144959 (2015).

    Examples
    --------
    >>> det_from_counts([{"ns": 1, "fn": 1, "fp": 1, "gt": 3},
    ...                  {"ns": 0, "fn": 0, "fp": 0, "gt": 5}])
    0.8
    """
    total = {k: 0 for k in (*DET_WEIGHTS, "gt")}
    for c in counts:
        for k in total:
            total[k] += int(c[k])
    empty = DET_WEIGHTS["fn"] * total["gt"]
    if empty == 0:
        return float("nan")
    aogm = sum(w * total[k] for k, w in DET_WEIGHTS.items())
    return 1.0 - min(aogm, empty) / empty


def det_score(pred_labels: np.ndarray, gt_labels: np.ndarray) -> float:
    """Cell Tracking Challenge DET of one frame (:func:`det_counts`,
    :func:`det_from_counts`).

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[1, 1, 0, 2, 2]])
    >>> det_score(gt, gt), det_score(np.array([[3, 3, 3, 3, 3]]), gt)  # a merge: 1 - 5/20
    (1.0, 0.75)
    """
    return det_from_counts([det_counts(pred_labels, gt_labels)])


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
