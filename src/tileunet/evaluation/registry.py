"""The named metrics of ``tileunet evaluate``: what each one scores on an image, and, for
the challenge figures, how the images of a folder combine into one figure.

Instance metrics take the ``NAME_instances.tif`` that ``tileunet predict`` writes and an
instance (or binary) mask. The ISBI 2012 metrics take the cell probability
``NAME_prob.tif`` and an ISBI label image (non-zero = cell, 0 = membrane; the cells are
its 4-connected components); the ones defined on a membrane probability get ``1 - p``.

Metrics with a ``combine`` have a figure over all images, as the challenges report it:
the Cell Tracking Challenge adds SEG's and DET's sums over all frames of a sequence, and
the ISBI 2012 ranking takes the best threshold of the mean over the slices of a stack
(:mod:`tileunet.evaluation.isbi_thinned`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tileunet.evaluation import isbi, isbi_thinned, scores, warping

__all__ = ["DEFAULT_METRICS", "ISBI_METRICS", "METRICS", "Metric", "check_metrics", "forget"]


@dataclass(frozen=True)
class Metric:
    """A named score of ``tileunet evaluate``.

    Attributes
    ----------
    name : str
        Its column in the table.
    needs : str
        The prediction it reads: ``"instances"`` or ``"prob"``.
    fn : callable
        ``fn(prediction, ground_truth) -> float``, the score of one image.
    doc : str
        One line for the help and the docs.
    part : callable, optional
        ``part(prediction, ground_truth)``: what an image adds to the figure over all
        images (e.g. the counts of errors); picklable.
    combine : callable, optional
        ``combine(parts) -> dict``: the figure over all images from the parts of each,
        under the key ``name``, with any further keys that say how it was reached (a
        threshold, a total).
    """

    name: str
    needs: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    doc: str
    part: Callable[[np.ndarray, np.ndarray], object] | None = None
    combine: Callable[[list], dict[str, float]] | None = None


_MEMOS: list[list] = []


def _last_call(fn: Callable) -> Callable:
    """``fn`` remembering its result for the last arguments (compared by identity).

    The metrics of one image share their work: one instance matching for precision,
    recall, F1 and AP, one threshold sweep for both pixel errors, one thinning sweep for
    V_rand and V_info, one labelling of the ground truth for the ISBI metrics. Images
    are scored one at a time in a process; :func:`forget` drops what is kept.
    """
    memo: list = []
    _MEMOS.append(memo)

    def call(*args):
        if not (memo and len(memo[0]) == len(args)
                and all(a is b for a, b in zip(memo[0], args, strict=True))):
            memo[:] = [args, fn(*args)]
        return memo[1]
    return call


def forget() -> None:
    """Drop the results the metrics keep for the last image."""
    for memo in _MEMOS:
        memo.clear()


# ------------------------------------------------------------- instance metrics
_match = _last_call(lambda pred, gt: scores.match_instances(pred, gt, iou_threshold=0.5))
_det = _last_call(scores.det_counts)
_seg = _last_call(scores.seg_totals)


def _matched(key: str) -> Callable[[np.ndarray, np.ndarray], float]:
    return lambda pred, gt: float(_match(pred, gt)[key])


def _separated(pred: np.ndarray, gt: np.ndarray) -> float:
    sep, total = scores.touching_pairs_separated(pred, gt)
    return sep / total if total else math.nan


def _seg_one(pred: np.ndarray, gt: np.ndarray) -> float:
    total, n = _seg(pred, gt)
    return total / n if n else math.nan


def _seg_all(parts: list[tuple[float, int]]) -> dict[str, float]:
    total, n = sum(p[0] for p in parts), sum(p[1] for p in parts)
    return {"seg": total / n if n else math.nan, "seg_objects": float(n)}


def _det_all(parts: list[dict[str, int]]) -> dict[str, float]:
    errors = {k: float(sum(p[k] for p in parts)) for k in (*scores.DET_WEIGHTS, "gt")}
    return {"det": scores.det_from_counts(parts),
            **{f"det_{k}": v for k, v in errors.items()}}


# ------------------------------------------------------------ ISBI 2012 metrics
@_last_call
def _gt_cells(gt_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(membrane mask, cell labels: the 4-connected components of the non-zero pixels)."""
    cells = gt_raw > 0
    return ~cells, ndimage.label(cells)[0]


_pixel = _last_call(lambda prob_fg, gt_raw: isbi.pixel_error(1.0 - prob_fg,
                                                             _gt_cells(gt_raw)[0]))
_thinned = _last_call(lambda prob_fg, gt_raw: isbi_thinned.thinned_scores(
    prob_fg, _gt_cells(gt_raw)[1]))
_thin = _last_call(lambda prob_fg, gt_raw: isbi.v_rand_v_info(prob_fg < 0.5,
                                                            _gt_cells(gt_raw)[1]))


def _rand_error(prob_fg: np.ndarray, gt_raw: np.ndarray) -> float:
    return isbi.rand_error(1.0 - prob_fg, _gt_cells(gt_raw)[1])["error"]


def _warping_error(prob_fg: np.ndarray, gt_raw: np.ndarray) -> float:
    return warping.warping_error(prob_fg < 0.5, _gt_cells(gt_raw)[0])


def _best(key: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """The official score of one slice: its best threshold."""
    def fn(prob_fg: np.ndarray, gt_raw: np.ndarray) -> float:
        values = _thinned(prob_fg, gt_raw)[key]
        return math.nan if np.isnan(values).all() else float(np.nanmax(values))
    return fn


def _stack(key: str) -> Callable[[list], dict[str, float]]:
    def combine(parts: list) -> dict[str, float]:
        both = isbi_thinned.stack_scores(parts)
        return {k: v for k, v in both.items() if k.startswith(key)}
    return combine


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("seg", "instances", _seg_one,
               "Cell Tracking Challenge SEG (mean Jaccard of matched GT objects)",
               _seg, _seg_all),
        Metric("det", "instances", lambda p, g: scores.det_from_counts([_det(p, g)]),
               "Cell Tracking Challenge DET (1 - normalised AOGM-D: splits 5, missed 10, "
               "invented 1)", _det, _det_all),
        Metric("iou", "instances", lambda p, g: scores.pixel_iou(p > 0, g > 0),
               "foreground pixel IoU"),
        Metric("precision", "instances", _matched("precision"),
               "instance precision at IoU 0.5"),
        Metric("recall", "instances", _matched("recall"), "instance recall at IoU 0.5"),
        Metric("f1", "instances", _matched("f1"), "instance F1 at IoU 0.5"),
        Metric("ap", "instances", _matched("ap"),
               "average precision at IoU 0.5: TP / (TP + FP + FN)"),
        Metric("separated", "instances", _separated,
               "fraction of touching GT pairs that came out as two objects"),
        Metric("pixel_error", "prob", lambda p, g: _pixel(p, g)["error"],
               "ISBI 2012: 1 - best pixel F-score over thresholds (membrane = 1 - p)"),
        Metric("misclassified", "prob", lambda p, g: _pixel(p, g)["misclassified"],
               "ISBI 2012: smallest fraction of misclassified pixels over thresholds"),
        Metric("rand_error", "prob", _rand_error,
               "ISBI 2012: 1 - best foreground-restricted Rand F-score over thresholds"),
        Metric("warping_error", "prob", _warping_error,
               "ISBI 2012: topological disagreements at p = 0.5 (Jain et al. 2010)"),
        Metric("v_rand", "prob", _best("v_rand"),
               "ISBI 2012 ranking, as the challenge's Fiji script: V_rand after border "
               "thinning, best threshold (stack: of the mean over images)",
               _thinned, _stack("v_rand")),
        Metric("v_info", "prob", _best("v_info"),
               "ISBI 2012 ranking, as the challenge's Fiji script: V_info after border "
               "thinning, best threshold (stack: of the mean over images)",
               _thinned, _stack("v_info")),
        Metric("v_rand_thin", "prob", lambda p, g: _thin(p, g)["v_rand"],
               "V_rand at p = 0.5 after skimage.morphology.thin (v_rand before it "
               "followed the challenge)"),
        Metric("v_info_thin", "prob", lambda p, g: _thin(p, g)["v_info"],
               "V_info at p = 0.5 after skimage.morphology.thin (v_info before it "
               "followed the challenge)"),
    )
}
#: ``--metric isbi``: the measures of the ISBI 2012 challenge.
ISBI_METRICS = ("pixel_error", "misclassified", "rand_error", "warping_error", "v_rand",
                "v_info")
#: The metrics of ``tileunet evaluate`` without ``--metric``.
DEFAULT_METRICS = ("seg", "det", "iou", "precision", "recall", "f1", "ap", "separated")


def check_metrics(names: Sequence[str]) -> list[Metric]:
    """The metrics named, in order.

    Raises
    ------
    ValueError
        When a name is not one of :data:`METRICS`.
    """
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)}")
    return [METRICS[m] for m in names]
