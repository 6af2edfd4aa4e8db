"""The ISBI 2012 EM challenge metrics: pixel error, Rand error, the split and merge
parts of the variation of information, and V_rand / V_info of one thresholded map. The
warping error, the challenge's third measure, is in :mod:`tileunet.evaluation.warping`;
V_rand and V_info as the challenge ranks with them (its Fiji script: cell probability,
11 thresholds, watershed thinning, a stack's figure) are in
:mod:`tileunet.evaluation.isbi_thinned`.

Conventions of the challenge (segmentation of neuronal structures in EM stacks), which
the warping error follows too:

* ``prob`` is a *membrane* (boundary) probability map in [0, 1], as the challenge
  submissions were; pass ``1 - p`` if you hold a cell probability ``p``.
* After thresholding, a pixel is membrane when ``prob > t``; cells are the
  4-connected components of the remaining pixels. Membranes are therefore
  8-connected, the complementary connectivity, so that a one-pixel-wide diagonal
  membrane still separates two cells.
* Ground truth: the challenge's label images are 255 = cell interior, 0 =
  membrane. ``gt_membrane`` is the boolean mask ``gt == 0``; ``gt_labels`` is an
  instance image with 0 on the membrane, e.g.
  ``scipy.ndimage.label(gt == 255)[0]``. Ground-truth membrane pixels (label 0)
  are left out of the Rand and information scores (foreground restriction).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import morphology

from tileunet.evaluation.contingency import Contingency, GroundTruthCells, harmonic_mean
from tileunet.evaluation.scores import as_labels

__all__ = [
    "ISBI_THRESHOLDS",
    "check_labels",
    "check_mask",
    "check_prob",
    "check_thresholds",
    "pixel_error",
    "rand_error",
    "v_rand_v_info",
    "vi_split_merge",
]


#: Thresholds tried by :func:`pixel_error` and :func:`rand_error` by default:
#: 0.0, 0.1, ..., 0.9 (membrane where ``prob > t``; ``t = 1`` would leave none).
ISBI_THRESHOLDS = np.round(np.arange(10) * 0.1, 1)


def check_prob(prob: np.ndarray, name: str = "prob") -> np.ndarray:
    """Check a 2-D probability map and return it as float64 (no copy when it is).

    Raises
    ------
    ValueError
        When ``prob`` is not 2-D, not numeric, or has a value outside [0, 1] (NaN
        included).

    Examples
    --------
    >>> check_prob(np.array([[0.0, 1.0]], np.float32)).dtype
    dtype('float64')
    """
    p = np.asarray(prob)
    if p.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) map, got shape {p.shape}")
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)
            or p.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {p.dtype}")
    p = p.astype(np.float64, copy=False)
    if p.size and (not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got values in "
                         f"[{np.nanmin(p)}, {np.nanmax(p)}]")
    return p


def check_thresholds(thresholds: np.ndarray | list[float] | None,
                     default: np.ndarray = ISBI_THRESHOLDS) -> np.ndarray:
    """``thresholds`` (or ``default`` when None) as a non-empty 1-D float64 array.

    Raises
    ------
    ValueError
        When they are empty, not 1-D, or not all finite.
    """
    t = default if thresholds is None else np.asarray(thresholds, np.float64)
    t = np.atleast_1d(t)
    if t.ndim != 1 or t.size == 0 or not np.isfinite(t).all():
        raise ValueError(f"thresholds must be a non-empty 1-D sequence of finite "
                         f"numbers, got {thresholds!r}")
    return t


def check_mask(mask: np.ndarray, name: str, shape: tuple[int, ...] | None = None
               ) -> np.ndarray:
    """Check a 2-D mask (bool, or numbers that are all 0 or 1) and return it as bool.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` mask, e.g. a membrane mask (True = membrane).
    name : str
        What to call ``mask`` in an error message.
    shape : tuple of int, optional
        The shape it must have.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool.

    Raises
    ------
    ValueError
        When ``mask`` is not 2-D, has another shape than ``shape``, or holds values
        other than 0 and 1.

    Examples
    --------
    >>> import numpy as np
    >>> check_mask(np.array([[0, 1]]), "membrane")
    array([[False,  True]])
    """
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


def check_labels(labels: np.ndarray, name: str,
                 shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Check a 2-D integer label image (ids >= 0, or a boolean mask) and return it as
    int64.

    Raises
    ------
    ValueError
        When it is not 2-D, has another shape than ``shape``, is not integer or
        boolean, or holds a negative id.
    """
    a = np.asarray(labels)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) label image, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return as_labels(a, name).reshape(a.shape)


_LN2 = float(np.log(2.0))


def _ratio(num: float, den: float) -> float:
    """``num / den``, with 0 / 0 read as 1 (nothing to find, nothing wrong)."""
    if den == 0:
        return 1.0 if num == 0 else 0.0
    return num / den


def _label_cells(membrane: np.ndarray) -> np.ndarray:
    """4-connected components of the non-membrane pixels; 0 on the membrane."""
    labels, _ = ndimage.label(~membrane)  # default structure = 4-connectivity in 2-D
    return labels


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
    p = check_prob(prob)
    gt = check_mask(gt_membrane, "gt_membrane", p.shape)
    t = check_thresholds(thresholds)
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
def _adapted_rand(counts: Contingency) -> tuple[float, float, float]:
    """(fscore, precision, recall) of the foreground-restricted Rand index."""
    n = counts.n
    both, in_gt, in_seg = (x - n for x in counts.sum_squares())  # self-pairs out
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
    p = check_prob(prob)
    gt = check_labels(gt_labels, "gt_labels", p.shape)
    t = check_thresholds(thresholds)
    if not np.any(gt):
        return {"error": float("nan"), "fscore": float("nan"), "precision": float("nan"),
                "recall": float("nan"), "threshold": float(t[0])}
    cells = GroundTruthCells(gt)  # prepared once, counted at every threshold
    best: tuple[float, float, float, float] | None = None
    for th in t:
        f, prec, rec = _adapted_rand(cells.count(_label_cells(p > th)))
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
    seg_a = check_labels(seg, "seg")
    gt_a = check_labels(gt, "gt", seg_a.shape)
    counts = GroundTruthCells(gt_a).count(seg_a)
    if counts.n == 0:
        return float("nan"), float("nan")
    h_joint, h_gt, h_seg = (h / _LN2 for h in counts.entropies())  # in bits
    return max(h_joint - h_gt, 0.0), max(h_joint - h_seg, 0.0)


def v_rand_v_info(
    membrane: np.ndarray, gt_labels: np.ndarray, *, thin: bool = True
) -> dict[str, float]:
    """V_rand and V_info of one membrane mask, thinned by skimage (higher is better).

    The scores of the later ISBI 2012 ranking, computed on one thresholded map with
    :func:`skimage.morphology.thin`; the challenge's own procedure (its watershed
    thinning, every threshold, the stack) is
    :func:`tileunet.evaluation.isbi_thinned.thinned_scores`. What is done here, step
    by step:

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
    mem = check_mask(membrane, "membrane")
    gt = check_labels(gt_labels, "gt_labels", mem.shape)
    keys = ("v_rand", "v_rand_split", "v_rand_merge", "v_info", "v_info_split",
            "v_info_merge")
    if not np.any(gt):
        return dict.fromkeys(keys, float("nan"))
    if thin:
        # a frame of membrane keeps membranes that reach the border attached to it;
        # thinned alone, their ends would be eaten away and open the cells
        mem = morphology.thin(np.pad(mem, 1, constant_values=True))[1:-1, 1:-1]
    counts = GroundTruthCells(gt).count(_label_cells(mem), zero_singletons=True)
    both, in_gt, in_seg = counts.sum_squares()
    rand_split, rand_merge = _ratio(both, in_gt), _ratio(both, in_seg)
    h_joint, h_t, h_s = counts.entropies()
    mutual = max(h_s + h_t - h_joint, 0.0)
    info_split = _ratio(mutual, h_s) if h_s > 1e-12 else 1.0
    info_merge = _ratio(mutual, h_t) if h_t > 1e-12 else 1.0
    values = (harmonic_mean(rand_split, rand_merge), rand_split, rand_merge,
              harmonic_mean(info_split, info_merge), info_split, info_merge)
    return dict(zip(keys, (float(v) for v in values), strict=True))
