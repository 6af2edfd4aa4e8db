"""Score predictions against ground truth: what ``tileunet evaluate`` does.

Predictions are the files ``tileunet predict`` writes (``NAME_instances.tif`` for the
instance metrics, ``NAME_prob.tif`` for the metrics over thresholds); ground truth is a
folder of instance or binary masks. Files pair by name (``NAME``), or by their trailing
number as in the Cell Tracking Challenge (``t002_instances.tif`` ↔ ``man_seg002.tif``).
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tileunet.errors import DataError
from tileunet.evaluation import isbi, scores, warping
from tileunet.io.images import list_images, read_image
from tileunet.io.outputs import atomic_write
from tileunet.targets.instances import to_instances

PRED_SUFFIXES = ("_instances", "_prob", "_mask", "_overlay")


@dataclass(frozen=True)
class Metric:
    name: str
    needs: str  # "instances" or "prob"
    fn: Callable[[np.ndarray, np.ndarray], float]
    doc: str


_MEMOS: list[list] = []


def _last_call(fn: Callable) -> Callable:
    """``fn`` remembering its result for the last arguments (compared by identity).

    The metrics of one image share their work: one instance matching for precision,
    recall, F1 and AP, one threshold sweep for both pixel errors, one labelling of the
    ground truth for the ISBI metrics. :func:`evaluate` forgets it all when it ends.
    """
    memo: list = []
    _MEMOS.append(memo)

    def call(*args):
        if not (memo and len(memo[0]) == len(args)
                and all(a is b for a, b in zip(memo[0], args, strict=True))):
            memo[:] = [args, fn(*args)]
        return memo[1]
    return call


def _forget() -> None:
    for memo in _MEMOS:
        memo.clear()


_match = _last_call(lambda pred, gt: scores.match_instances(pred, gt, iou_threshold=0.5))


def _matched(key: str) -> Callable[[np.ndarray, np.ndarray], float]:
    return lambda pred, gt: float(_match(pred, gt)[key])


def _separated(pred: np.ndarray, gt: np.ndarray) -> float:
    sep, total = scores.touching_pairs_separated(pred, gt)
    return sep / total if total else math.nan


# ISBI 2012: the predictions are cell probabilities (``NAME_prob.tif``); the challenge
# scores membrane probabilities, so these use 1 - p. Ground truth: non-zero = cell,
# 0 = membrane (ISBI labels are 255 / 0); cells are its 4-connected components.
@_last_call
def _gt_cells(gt_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage as ndi

    cells = gt_raw > 0
    return ~cells, ndi.label(cells)[0]


_pixel = _last_call(lambda prob_fg, gt_raw: isbi.pixel_error(1.0 - prob_fg,
                                                             _gt_cells(gt_raw)[0]))
_v = _last_call(lambda prob_fg, gt_raw: isbi.v_rand_v_info(prob_fg < 0.5,
                                                         _gt_cells(gt_raw)[1]))


def _rand_error(prob_fg: np.ndarray, gt_raw: np.ndarray) -> float:
    return isbi.rand_error(1.0 - prob_fg, _gt_cells(gt_raw)[1])["error"]


def _warping_error(prob_fg: np.ndarray, gt_raw: np.ndarray) -> float:
    return warping.warping_error(prob_fg < 0.5, _gt_cells(gt_raw)[0])


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("seg", "instances", scores.seg_score,
               "Cell Tracking Challenge SEG (mean Jaccard of matched GT objects)"),
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
        Metric("v_rand", "prob", lambda p, g: _v(p, g)["v_rand"],
               "ISBI 2012: V_rand after thinning"),
        Metric("v_info", "prob", lambda p, g: _v(p, g)["v_info"],
               "ISBI 2012: V_info after thinning"),
    )
}
ISBI_METRICS = ("pixel_error", "misclassified", "rand_error", "warping_error", "v_rand",
                "v_info")
DEFAULT_METRICS = ("seg", "iou", "precision", "recall", "f1", "ap", "separated")


def _key(stem: str) -> str:
    for suffix in PRED_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _number(stem: str) -> int | None:
    m = re.search(r"(\d+)$", stem)
    return int(m.group(1)) if m else None


def pair_predictions(pred_dir: str | Path, gt_dir: str | Path, kind: str
                     ) -> list[tuple[str, Path, Path]]:
    """(name, prediction file, ground-truth file) for every ground-truth file.

    ``kind`` picks the prediction files: ``"instances"`` or ``"prob"``.
    """
    gts = list_images(gt_dir)
    preds = [p for p in list_images(pred_dir) if p.stem.endswith(f"_{kind}")]
    if not preds:
        raise DataError(f"{pred_dir}: no *_{kind} files (outputs of tileunet predict)")
    by_name = {_key(p.stem): p for p in preds}
    by_number: dict[int, Path] = {}
    for p in preds:
        n = _number(_key(p.stem))
        if n is not None:
            by_number.setdefault(n, p)
    pairs = []
    for g in gts:
        p = by_name.get(g.stem)
        if p is None and _number(g.stem) is not None:
            p = by_number.get(_number(g.stem))
        if p is None:
            raise DataError(f"{g}: no prediction {g.stem}_{kind}.tif in {pred_dir}")
        pairs.append((_key(p.stem), p, g))
    return pairs


def evaluate(pred_dir: str | Path, gt_dir: str | Path, *,
             metrics: Sequence[str] = DEFAULT_METRICS, progress: bool = True
             ) -> list[dict[str, float | str]]:
    """One row of scores per ground-truth file, plus a final ``mean`` row."""
    try:
        return _evaluate(pred_dir, gt_dir, metrics, progress)
    finally:
        _forget()  # the last image's arrays are not kept alive


def _evaluate(pred_dir: str | Path, gt_dir: str | Path, metrics: Sequence[str],
              progress: bool) -> list[dict[str, float | str]]:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)}")
    chosen = [METRICS[m] for m in metrics]
    kinds = sorted({m.needs for m in chosen})
    pairs = {k: pair_predictions(pred_dir, gt_dir, k) for k in kinds}
    rows: list[dict[str, float | str]] = []
    first = pairs[kinds[0]]
    for i, (name, _, gt_path) in enumerate(tqdm(first, desc="evaluate", unit="img",
                                                 disable=not progress)):
        gt_raw = read_image(gt_path)
        if gt_raw.ndim != 2:
            raise DataError(f"{gt_path}: expected a 2-D mask, got shape {gt_raw.shape}")
        gt = to_instances(gt_raw) if "instances" in kinds else gt_raw
        row: dict[str, float | str] = {"image": name}
        for kind in kinds:
            pred_path = pairs[kind][i][1]
            pred = read_image(pred_path)
            if pred.shape != gt.shape:
                raise DataError(f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} does not "
                                f"match ground truth {gt_path} ({gt.shape[1]}x{gt.shape[0]})")
            if kind == "prob" and (pred.dtype.kind != "f" or pred.min() < 0 or pred.max() > 1):
                raise DataError(f"{pred_path}: expected probabilities in [0, 1] (float)")
            for m in chosen:
                if m.needs == kind:
                    row[m.name] = float(m.fn(pred, gt if kind == "instances" else gt_raw))
        rows.append(row)
    mean: dict[str, float | str] = {"image": "mean"}
    for m in chosen:
        vals = [float(r[m.name]) for r in rows if not math.isnan(float(r[m.name]))]
        mean[m.name] = float(np.mean(vals)) if vals else math.nan
    rows.append(mean)
    return rows


def format_table(rows: list[dict[str, float | str]]) -> str:
    cols = list(rows[0])
    width = max(len("image"), *(len(str(r["image"])) for r in rows))
    lines = ["  ".join([f"{'image':<{width}}", *(f"{c:>10}" for c in cols[1:])])]
    for r in rows:
        lines.append("  ".join([f"{r['image']!s:<{width}}",
                                *(f"{float(r[c]):>10.4f}" for c in cols[1:])]))
    return "\n".join(lines)


def write_results(rows: list[dict[str, float | str]], out_dir: str | Path) -> tuple[Path, Path]:
    """``metrics.csv`` and ``metrics.json`` in ``out_dir`` (written atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(rows[0]))
    wr.writeheader()
    wr.writerows(rows)
    atomic_write(out / "metrics.csv", lambda t: t.write_text(buf.getvalue()))
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
             for r in rows]
    text = json.dumps(clean, indent=2) + "\n"
    atomic_write(out / "metrics.json", lambda t: t.write_text(text))
    return out / "metrics.csv", out / "metrics.json"
