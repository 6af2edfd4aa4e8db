"""Score predictions against ground truth: what ``tileunet evaluate`` does.

Predictions are the files ``tileunet predict`` writes (``NAME_instances.tif`` for the
instance metrics, ``NAME_prob.tif`` for the metrics over thresholds); ground truth is a
folder of instance or binary masks. Files pair by name (``NAME``), or by their trailing
number as in the Cell Tracking Challenge (``t002_instances.tif`` ↔ ``man_seg002.tif``).
Images are scored in parallel, one per process; the metrics are those of
:mod:`tileunet.evaluation.registry`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tileunet.errors import DataError
from tileunet.evaluation.isbi_thinned import threshold_text
from tileunet.evaluation.registry import (  # noqa: F401 (also read from here)
    DEFAULT_METRICS,
    ISBI_METRICS,
    METRICS,
    Metric,
    check_metrics,
    forget,
)
from tileunet.io.images import list_images, read_image
from tileunet.io.outputs import atomic_write
from tileunet.targets.instances import to_instances

PRED_SUFFIXES = ("_instances", "_prob", "_mask", "_overlay")

#: One row of the table: ``image`` and a value per metric (and, in the ``stack`` row,
#: the keys that say how its figures were reached).
Row = dict[str, "float | str"]


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


def default_jobs() -> int:
    """The cores this process may run on: how many images are scored at once."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def evaluate(pred_dir: str | Path, gt_dir: str | Path, *,
             metrics: Sequence[str] = DEFAULT_METRICS, progress: bool = True,
             jobs: int | None = None) -> list[Row]:
    """Score every ground-truth file of ``gt_dir`` against its prediction.

    Parameters
    ----------
    pred_dir, gt_dir : str or Path
        The folder ``tileunet predict`` wrote, and the ground-truth masks.
    metrics : sequence of str
        Names of :data:`METRICS`.
    progress : bool
        A progress bar over the images.
    jobs : int, optional
        Images scored at once, each in its own process; default :func:`default_jobs`.

    Returns
    -------
    list of dict
        One row per ground-truth file (``image`` and one value per metric), a ``mean``
        row (of the images' values, NaN skipped), and, when a metric has a figure over
        all images (``Metric.combine``), a ``stack`` row: those figures as the
        challenges compute them, plus keys that say how (e.g. ``v_rand_threshold``).
        The other metrics are NaN there.
    """
    chosen = check_metrics(metrics)
    if jobs is not None and (isinstance(jobs, bool) or int(jobs) != jobs or jobs < 1):
        raise ValueError(f"jobs must be a positive whole number, got {jobs!r}")
    kinds = sorted({m.needs for m in chosen})
    pairs = {k: pair_predictions(pred_dir, gt_dir, k) for k in kinds}
    tasks = [(name, {k: pairs[k][i][1] for k in kinds}, gt_path)
             for i, (name, _, gt_path) in enumerate(pairs[kinds[0]])]
    results = _score_all(tasks, [m.name for m in chosen], progress,
                         default_jobs() if jobs is None else int(jobs))
    rows: list[Row] = [row for row, _ in results]
    columns = [c for c in rows[0] if c != "image"] if rows else [m.name for m in chosen]
    mean: Row = {"image": "mean"}
    for c in columns:
        vals = [float(r[c]) for r in rows if not math.isnan(float(r[c]))]
        mean[c] = float(np.mean(vals)) if vals else math.nan
    rows.append(mean)
    combined = [m for m in chosen if m.combine is not None]
    if combined and results:
        stack: Row = {"image": "stack", **dict.fromkeys(columns, math.nan)}
        for m in combined:
            stack.update(m.combine([parts[m.name] for _, parts in results]))
        rows.append(stack)
    return rows


def _score_image(task: tuple[str, dict[str, Path], Path], names: list[str]
                 ) -> tuple[Row, dict[str, object]]:
    """The row of one image, and the parts of the metrics that combine over images."""
    name, preds, gt_path = task
    chosen = [METRICS[n] for n in names]
    try:
        gt_raw = read_image(gt_path)
        if gt_raw.ndim != 2:
            raise DataError(f"{gt_path}: expected a 2-D mask, got shape {gt_raw.shape}")
        gt = to_instances(gt_raw) if "instances" in preds else gt_raw
        row: Row = {"image": name}
        parts: dict[str, object] = {}
        for kind, pred_path in preds.items():
            pred = read_image(pred_path)
            if pred.shape != gt.shape:
                raise DataError(f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} does not "
                                f"match ground truth {gt_path} ({gt.shape[1]}x{gt.shape[0]})")
            if kind == "prob" and (pred.dtype.kind != "f" or pred.min() < 0 or pred.max() > 1):
                raise DataError(f"{pred_path}: expected probabilities in [0, 1] (float)")
            truth = gt if kind == "instances" else gt_raw
            for m in chosen:
                if m.needs == kind:
                    row[m.name] = float(m.fn(pred, truth))
                    if m.combine is not None and m.part is not None:
                        parts[m.name] = m.part(pred, truth)
        return row, parts
    finally:
        forget()  # the image's arrays are not kept alive


def _score_all(tasks: list, names: list[str], progress: bool, jobs: int
               ) -> list[tuple[Row, dict[str, object]]]:
    """:func:`_score_image` of every task, in order; ``jobs`` processes at once."""
    bar = tqdm(total=len(tasks), desc="evaluate", unit="img", disable=not progress)
    with bar:
        if min(jobs, len(tasks)) <= 1:
            results = []
            for task in tasks:
                results.append(_score_image(task, names))
                bar.update()
            return results
        # fork: the workers start at once and share what is loaded (spawn elsewhere)
        start = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        with ProcessPoolExecutor(min(jobs, len(tasks)),
                                 mp_context=multiprocessing.get_context(start)) as pool:
            futures = [pool.submit(_score_image, task, names) for task in tasks]
            try:
                for done in as_completed(futures):
                    done.result()  # the first error stops the rest
                    bar.update()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            return [f.result() for f in futures]


def _cell(value: float | str) -> str:
    v = float(value)
    return f"{'-':>10}" if math.isnan(v) else f"{v:>10.4f}"


def format_table(rows: list[Row]) -> str:
    """The rows as an aligned text table (NaN as ``-``); columns of the first row."""
    cols = list(rows[0])
    width = max(len("image"), *(len(str(r["image"])) for r in rows))
    lines = ["  ".join([f"{'image':<{width}}", *(f"{c:>10}" for c in cols[1:])])]
    for r in rows:
        lines.append("  ".join([f"{r['image']!s:<{width}}", *(_cell(r[c]) for c in cols[1:])]))
    return "\n".join(lines)


#: how the keys that explain a stack figure read (after the metric's name and "_")
_WORDS = {"threshold": "at cell probability", "ns": "splits", "fn": "missed",
          "fp": "invented", "gt": "objects"}


def _detail(suffix: str, value: float) -> str:
    if suffix == "threshold":
        return f"{_WORDS[suffix]} {threshold_text(value)}"
    text = f"{value:g}" if float(value).is_integer() else f"{value:.4f}"
    return f"{_WORDS.get(suffix, suffix)} {text}"


def format_stack(rows: list[Row]) -> str:
    """What the ``stack`` row of :func:`evaluate` holds, one metric a line ('' without)."""
    stack = next((r for r in rows if r["image"] == "stack"), None)
    if stack is None:
        return ""
    cols = [c for c in rows[0] if c != "image"]
    lines = ["stack: all images together, as the challenges report them (ISBI 2012: the "
             "mean over the images at the best threshold; CTC: sums over all frames)"]
    for c in cols:
        if math.isnan(float(stack[c])):
            continue
        extra = sorted((k[len(c) + 1:] for k in stack if k.startswith(f"{c}_")
                        and k not in cols), key=lambda k: k != "threshold")
        details = ", ".join(_detail(k, float(stack[f"{c}_{k}"])) for k in extra)
        lines.append(f"  {c:<10} {float(stack[c]):.4f}" + (f"  ({details})" if details else ""))
    return "\n".join(lines)


def write_results(rows: list[Row], out_dir: str | Path) -> tuple[Path, Path]:
    """``metrics.csv`` (the table's columns) and ``metrics.json`` (every key, NaN as
    null) in ``out_dir``, written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(rows[0]), extrasaction="ignore")
    wr.writeheader()
    wr.writerows(rows)
    atomic_write(out / "metrics.csv", lambda t: t.write_text(buf.getvalue()))
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
             for r in rows]
    text = json.dumps(clean, indent=2) + "\n"
    atomic_write(out / "metrics.json", lambda t: t.write_text(text))
    return out / "metrics.csv", out / "metrics.json"
