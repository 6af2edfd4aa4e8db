"""ISBI 2012 EM segmentation: train on slices 0-19, validate on 20-24, next to the paper.

    python benchmarks/isbi2012.py [--minutes 30] [--device cuda] [--ablation all]
    python benchmarks/isbi2012.py --fold 1    # train on slices 5-24, validate on 0-4

The slices are consecutive sections of one stack, so either fold scores the end of the
stack farthest from most of its training slices (leave-out by depth, as a new stack is).

Membranes (label 0) are the class to find; cells (label 255) are the objects between
them. The paper reports warping 0.000353, Rand 0.0382 and pixel error 0.0611 on the
challenge's hidden test labels; ours are on our own validation slices. The pixel
error is reported both as the challenge defines it today (1 - best F-score of the
membrane) and as the plain fraction of misclassified pixels (best threshold). V_rand and
V_info are the challenge's final ranking, as its Fiji script computes them over the
validation stack (best threshold of the mean over the slices); next to them, the earlier
per-image variant at p = 0.5 after skimage's thinning (``v_rand_thin``, ``v_info_thin``).
"""

from __future__ import annotations

import shutil
import sys

from paper_common import (
    ABLATIONS,
    benchmark_settings,
    link_split,
    locate,
    parser,
    predict_split,
    train_variant,
    variants,
    write_results,
)

from tileunet.evaluation.folders import METRICS
from tileunet.io.images import read_image

#: the scored slices of each fold (the other 20 train)
FOLDS = (range(20, 25), range(0, 5))
PAPER = {"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611}
ISBI = ("warping_error", "rand_error", "pixel_error", "misclassified", "v_rand", "v_info",
        "v_rand_thin", "v_info_thin")


def main() -> int:
    ap = parser(__doc__.splitlines()[0], minutes=30)
    ap.add_argument("--fold", type=int, choices=(0, 1), default=0,
                    help="0 (default): slices 20-24 scored; 1: slices 0-4 scored")
    args = ap.parse_args()
    found = locate(args, "isbi2012/train", "isbi2012")
    if found is None:
        return 2
    root, out = found
    pairs = [(root / "images" / f"{i:02d}.png", root / "labels" / f"{i:02d}.png")
             for i in range(25)]
    scored = FOLDS[args.fold]
    ti, tm = link_split([p for i, p in enumerate(pairs) if i not in scored],
                        out / "data" / "train")
    vi, vm = link_split([pairs[i] for i in scored], out / "data" / "val")
    split = {"train_images": ti, "train_masks": tm, "val_images": vi, "val_masks": vm}
    val_images = sorted(vi.iterdir())
    settings, plan = benchmark_settings(args, ti, tm)
    results, rows, trained = {}, [], {}
    for name in variants(args):
        run_name = "full" if name == "no-tta" else name  # no-tta predicts with the full run
        if run_name not in trained:
            trained[run_name] = train_variant(run_name, args, split, out, settings, plan)
        run, seconds, iterations = trained[run_name]
        pred_dir = out / name / "pred"
        shutil.rmtree(pred_dir, ignore_errors=True)
        probs = predict_split(run, val_images, pred_dir, tta=name != "no-tta",
                              device=args.device, progress=not args.quiet,
                              precision=args.precision)
        scores = {m: [] for m in ISBI}
        parts = {m: [] for m in ISBI if METRICS[m].combine is not None}
        for img in val_images:
            gt = read_image(vm / img.name)
            for m in ISBI:
                scores[m].append(METRICS[m].fn(probs[img.stem], gt))
                if m in parts:
                    parts[m].append(METRICS[m].part(probs[img.stem], gt))
        mean = {m: sum(v) / len(v) for m, v in scores.items()}
        stack = {k: v for m, p in parts.items() for k, v in METRICS[m].combine(p).items()}
        results[name] = {"seconds": seconds, "iterations": iterations, "mean": mean,
                         "stack": stack, "per_image": scores}
        shutil.copyfile(run / "loss.png", out / name / "loss.png")
        rows.append([f"tileunet: {ABLATIONS[name]}", f"{mean['warping_error']:.6f}",
                     f"{mean['rand_error']:.4f}", f"{mean['pixel_error']:.4f}",
                     f"{mean['misclassified']:.4f}",
                     f"{stack['v_rand']:.4f}", f"{stack['v_info']:.4f}",
                     f"{mean['v_rand_thin']:.4f}", f"{mean['v_info_thin']:.4f}",
                     f"{iterations} in {seconds / 60:.1f} min"])
    rows.append(["paper (challenge test set)", f"{PAPER['warping_error']:.6f}",
                 f"{PAPER['rand_error']:.4f}", f"{PAPER['pixel_error']:.4f}", "", "", "", "",
                 "", ""])
    write_results(out, f"ISBI 2012, validation slices {scored.start}-{scored.stop - 1} "
                  f"(validation: {args.validation})",
                  ["", "warping error", "Rand error", "pixel error (1 - F)",
                   "misclassified pixels", "V_rand", "V_info", "V_rand (thin, p = 0.5)",
                   "V_info (thin, p = 0.5)", "training"], rows,
                  {"results": results, "paper": PAPER, "settings": settings, "plan": plan,
                   "validation": args.validation, "scored_slices": list(scored)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
