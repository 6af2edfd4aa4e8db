"""How long ``tileunet evaluate --metric isbi`` takes per slice, before and after its
scoring was rewritten, in one run on the same machine and the same ISBI 2012 slices.

*Before* is a copy of the previous code kept below: contingency counts by three
``np.unique`` sorts per threshold, and V_rand / V_info at p = 0.5 after
``skimage.morphology.thin`` (tileunet's earlier ``v_rand`` / ``v_info``, today's
``v_rand_thin`` / ``v_info_thin``). *After* is the current code: one ``np.bincount`` per
threshold over a ground truth prepared once, and V_rand / V_info as the challenge's Fiji
script computes them (11 thresholds, borders thinned by a watershed). The pixel and
warping errors are the same code in both.

Measured, median over ``--repeats`` (after one untimed call) per slice:

* each metric, old and new, and their sum (what ``evaluate`` spends on a slice);
* the whole ``evaluate()`` over the slices written to a temporary folder, reading
  included, with one process and with one per core: seconds per slice;

and the scores side by side: the old per-image V_rand / V_info at p = 0.5, the new
per-image ones (each slice at its best threshold), and the stack figures of the
challenge (best threshold of the mean over the slices).

The probability maps are ``NAME_prob.tif`` from ``--pred`` (e.g. ``tileunet predict``
on the slices), or by default the label smoothed and roughened by smooth noise (fixed
seed), which gives borders of realistic width and some splits and merges.

Usage::

    python benchmarks/bench_evaluate.py [--data DIR] [--slices N] [--repeats 3] [--pred DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_common import OUT, announce, shown, timings
from paper_common import default_data
from scipy import ndimage as ndi
from skimage import morphology

from tileunet.evaluation import isbi, warping
from tileunet.evaluation.folders import ISBI_METRICS, default_jobs, evaluate
from tileunet.evaluation.isbi_thinned import stack_scores, thinned_scores
from tileunet.io.images import read_image, save_image


# ------------------------------------------------------- the previous implementation
def median_of(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after one untimed call."""
    return timings(fn, repeats)[0]


def _old_joint_counts(seg, gt, boundary_singletons=False):
    g, s = gt.ravel(), seg.ravel()
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


def _old_entropy(counts, n):
    p = counts[counts > 0] / n
    return float(-(p * np.log2(p)).sum())


def _ratio(num, den):
    return (1.0 if num == 0 else 0.0) if den == 0 else num / den


def _f(a, b):
    return 2.0 * a * b / (a + b) if a + b > 0 else 0.0


def old_rand_error(prob, gt, thresholds=isbi.ISBI_THRESHOLDS):
    """The previous ``isbi.rand_error`` (membrane probability): its best F-score's error."""
    best = 0.0
    for th in thresholds:
        n_ij, n_gt, n_seg = _old_joint_counts(ndi.label(~(prob > th))[0], gt)
        n = float(n_gt.sum())
        both = float(n_ij @ n_ij) - n
        in_seg, in_gt = float(n_seg @ n_seg) - n, float(n_gt @ n_gt) - n
        best = max(best, _ratio(2 * both, in_seg + in_gt))
    return 1.0 - best


def old_v_rand_v_info(membrane, gt):
    """The previous ``isbi.v_rand_v_info`` with ``thin=True``: (V_rand, V_info)."""
    mem = morphology.thin(np.pad(membrane, 1, constant_values=True))[1:-1, 1:-1]
    n_ij, n_gt, n_seg = _old_joint_counts(ndi.label(~mem)[0], gt, boundary_singletons=True)
    n = int(n_gt.sum())
    both = float(n_ij.astype(np.float64) @ n_ij)
    rand = _f(_ratio(both, float(n_gt.astype(np.float64) @ n_gt)),
              _ratio(both, float(n_seg.astype(np.float64) @ n_seg)))
    h_s, h_t = _old_entropy(n_seg, n), _old_entropy(n_gt, n)
    mutual = max(h_s + h_t - _old_entropy(n_ij, n), 0.0)
    info = _f(_ratio(mutual, h_s) if h_s > 1e-12 else 1.0,
              _ratio(mutual, h_t) if h_t > 1e-12 else 1.0)
    return rand, info


# --------------------------------------------------------------------- the run
def slices(args) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, cell probability, ISBI label) of the first ``--slices`` labelled slices."""
    labels = sorted((args.data / "isbi2012" / "train" / "labels").glob("*.png"))
    if not labels:
        raise SystemExit(f"no ISBI 2012 labels in {args.data}/isbi2012/train/labels "
                         "(--data or TILEUNET_DATA)")
    rng = np.random.default_rng(0)
    out = []
    for path in labels[: args.slices]:
        gt = read_image(path)
        if args.pred:
            prob = read_image(args.pred / f"{path.stem}_prob.tif").astype(np.float32)
        else:
            noise = ndi.gaussian_filter(rng.normal(0, 1, gt.shape), 3.0)
            cell = ndi.gaussian_filter((gt > 0).astype(np.float32), 1.5)
            prob = np.clip(cell + 0.15 * noise / noise.std(), 0, 1).astype(np.float32)
        out.append((path.stem, prob, gt))
    return out


def metric_times(prob, gt, repeats) -> dict[str, tuple[float, float]]:
    """(old, new) seconds of each ISBI metric on one slice, as evaluate calls them."""
    membrane, cells = gt == 0, ndi.label(gt > 0)[0]
    pixel = median_of(lambda: isbi.pixel_error(1.0 - prob, membrane), repeats)
    warp = median_of(lambda: warping.warping_error(prob < 0.5, membrane), repeats)
    return {
        "pixel_error, misclassified": (pixel, pixel),
        "rand_error": (median_of(lambda: old_rand_error(1.0 - prob, cells), repeats),
                       median_of(lambda: isbi.rand_error(1.0 - prob, cells), repeats)),
        "v_rand, v_info": (
            median_of(lambda: old_v_rand_v_info(prob < 0.5, cells), repeats),
            median_of(lambda: thinned_scores(prob, cells), repeats)),
        "warping_error": (warp, warp),
    }


def folder_times(data, repeats) -> dict[int, float]:
    """Seconds per slice of ``evaluate(metrics=isbi)`` on a folder, by processes."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        pred, gt = Path(tmp) / "pred", Path(tmp) / "gt"
        for name, prob, label in data:
            save_image(pred / f"{name}_prob.tif", prob)
            save_image(gt / f"{name}.png", label)
        for jobs in sorted({1, default_jobs()}):
            seconds = median_of(lambda j=jobs: evaluate(
                pred, gt, metrics=ISBI_METRICS, progress=False, jobs=j), repeats)
            out[jobs] = seconds / len(data)
    return out


def scores_side_by_side(data) -> dict[str, float]:
    old, new, per_slice = [], [], []
    for _, prob, gt in data:
        cells = ndi.label(gt > 0)[0]
        old.append(old_v_rand_v_info(prob < 0.5, cells))
        per_slice.append(thinned_scores(prob, cells))
        new.append((np.nanmax(per_slice[-1]["v_rand"]), np.nanmax(per_slice[-1]["v_info"])))
    stack = stack_scores(per_slice)
    return {"old_v_rand_mean": float(np.mean([o[0] for o in old])),
            "old_v_info_mean": float(np.mean([o[1] for o in old])),
            "new_v_rand_mean_of_best": float(np.mean([n[0] for n in new])),
            "new_v_info_mean_of_best": float(np.mean([n[1] for n in new])),
            **{f"stack_{k}": v for k, v in stack.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=default_data(),
                    help="the shared data folder (default ../shared/data or $TILEUNET_DATA)")
    ap.add_argument("--slices", type=int, default=30, help="labelled slices to score")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per measurement")
    ap.add_argument("--pred", type=Path, help="folder of NAME_prob.tif to score instead")
    args = ap.parse_args(argv)
    if args.slices < 1 or args.repeats < 1:
        raise SystemExit("--slices and --repeats must be >= 1")
    command, where = announce(torch.device("cpu"))
    data = slices(args)
    per = [metric_times(prob, gt, args.repeats) for _, prob, gt in data]
    rows = {k: tuple(statistics.median(p[k][i] for p in per) for i in (0, 1)) for k in per[0]}
    total = tuple(sum(v[i] for v in rows.values()) for i in (0, 1))
    print(f"### evaluate --metric isbi, seconds per 512² slice (median of {len(data)} "
          f"slices x {args.repeats} calls)\n")
    print("| metric | before | after | speed-up |\n|---|---|---|---|")
    for k, (old, new) in [*rows.items(), ("all of them", total)]:
        print(f"| {k} | {old:.3f} | {new:.3f} | {old / new:.1f}x |")
    folders = folder_times(data, args.repeats)
    print("\n### the whole `evaluate()`, reading included, seconds per slice\n")
    print("| processes | s per slice |\n|---|---|")
    for jobs, s in folders.items():
        print(f"| {jobs} | {s:.3f} |")
    side = scores_side_by_side(data)
    print("\n### the scores, before and after\n")
    print("| | V_rand | V_info |\n|---|---|---|")
    print(f"| before: mean of the slices at p = 0.5, thinned by skimage | "
          f"{side['old_v_rand_mean']:.4f} | {side['old_v_info_mean']:.4f} |")
    print(f"| after, per image: mean of each slice's best threshold | "
          f"{side['new_v_rand_mean_of_best']:.4f} | {side['new_v_info_mean_of_best']:.4f} |")
    print(f"| after, the challenge's figure: best threshold of the mean | "
          f"{side['stack_v_rand']:.4f} | {side['stack_v_info']:.4f} |")
    OUT.mkdir(parents=True, exist_ok=True)
    saved = OUT / "bench_evaluate.json"
    saved.write_text(json.dumps({"command": command, "machine": where, "slices": len(data),
                                 "seconds_per_slice": {k: {"before": o, "after": n}
                                                       for k, (o, n) in rows.items()},
                                 "total": {"before": total[0], "after": total[1]},
                                 "evaluate_s_per_slice": folders, "scores": side}, indent=1))
    print(f"\nsaved: {shown(saved)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
