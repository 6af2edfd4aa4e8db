"""What a partly annotated frame does to training (DIC-HeLa frame 067: 3 cells labelled).

    python benchmarks/partial_annotation.py [--minutes 3] [--width 16 --depth 4 --tile 252]

Three runs on DIC-HeLa fold 0 (train 005, 031, 034, 054; score 002, 021, 033, 039), the
same budget each:

* ``included``: 067 trained on as if complete (its unlabelled cells teach "background");
* ``excluded``: 067 left out (`--exclude t067`);
* ``ignored``: 067 kept, but only its annotated cells count: its background pixels get
  weight 0 through an ignore mask (`--ignore DIR`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from paper_common import (
    benchmark_settings,
    hela_pair,
    link_split,
    locate,
    machine,
    parser,
    predict_split,
)

from tileunet.evaluation.scores import pixel_iou, seg_score
from tileunet.inference.postprocess import instances_from_probability
from tileunet.io.images import read_image, save_image
from tileunet.targets.instances import to_instances
from tileunet.training.config import Runtime, TrainConfig
from tileunet.training.loop import train

TRAIN = ("005", "031", "034", "054", "067")
VAL = ("002", "021", "033", "039")


def main() -> int:
    ap = parser(__doc__.splitlines()[0], minutes=3)
    ap.set_defaults(width=16, depth=4, tile=252, recipe="paper", val_every=200)
    args = ap.parse_args()
    found = locate(args, "dic-hela/01", "partial_annotation")
    if found is None:
        return 2
    root, out = found

    def pair(t: str) -> tuple[Path, Path]:
        return hela_pair(root, t)

    ti, tm = link_split([pair(t) for t in TRAIN], out / "data" / "train")
    vi, vm = link_split([pair(t) for t in VAL], out / "data" / "val")
    ignore_dir = out / "data" / "ignore"
    shutil.rmtree(ignore_dir, ignore_errors=True)
    save_image(ignore_dir / "t067.png", (read_image(pair("067")[1]) == 0).astype(np.uint8))

    variants = {"included": {}, "excluded": {"exclude": ("t067",)},
                "ignored": {"ignore": str(ignore_dir)}}
    settings, _ = benchmark_settings(args, ti, tm)
    rows = []
    for name, extra in variants.items():
        run = out / name / "run"
        shutil.rmtree(out / name, ignore_errors=True)
        cfg = TrainConfig.from_settings(
            images=str(ti), masks=str(tm), val_images=str(vi), val_masks=str(vm),
            out=str(run), minutes=args.minutes, iterations=args.iterations, **settings,
            seed=args.seed, precision=args.precision, keep="last",  # scored on val
            **extra)
        res = train(cfg, runtime=Runtime(device=args.device, progress=not args.quiet))
        probs = predict_split(run, sorted(vi.iterdir()), out / name / "pred", tta=False,
                              device=args.device, progress=False,
                              precision=args.precision)
        seg, iou, fg = [], [], []
        for t in VAL:
            gt = to_instances(read_image(pair(t)[1]))
            inst = instances_from_probability(probs[f"t{t}"])
            seg.append(seg_score(inst, gt))
            iou.append(pixel_iou(inst > 0, gt > 0))
            fg.append(float((inst > 0).mean() / max((gt > 0).mean(), 1e-9)))
        rows.append(f"| {name} | {res.iterations} | {np.mean(seg):.4f} | {np.mean(iou):.4f} | "
                    f"{np.mean(fg):.3f} |")
    lines = ["# Partial annotation: DIC-HeLa frame 067 included, excluded, ignored", "",
             f"command: `python {' '.join(sys.argv)}`  ", f"machine: {machine()}", "",
             "| 067 | iterations | SEG | pixel IoU | predicted / true foreground |",
             "|---|---|---|---|---|", *rows]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
