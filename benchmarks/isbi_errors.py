"""Where are ISBI 2012's misclassified pixels? Distance of each wrong pixel to the label's
membrane edge.

    python benchmarks/isbi_errors.py PRED_DIR [PRED_DIR ...] --labels LABEL_DIR

PRED_DIR holds ``NAME_prob.tif`` (foreground = cell probability, as written by
``benchmarks/isbi2012.py`` or ``tileunet predict``), LABEL_DIR ``NAME.png`` (membrane 0,
cell 255). Several PRED_DIRs: the mean of their probabilities is scored (an average of
models). The Rand error is the benchmark's (1 - best foreground-restricted Rand F).
For each image, at the threshold with the fewest misclassified pixels (the
benchmark's "misclassified pixels"), the wrong pixels are split by their distance to the
nearest pixel of the other label class: 1 px means on the edge of a labelled membrane,
where the label's own placement is uncertain by about a pixel; farther means a membrane
missed or invented away from any labelled edge. Also split by kind: membrane missed
(labelled membrane, predicted cell) or invented (labelled cell, predicted membrane).
A last line gives each band's share of all pixels and the share of those that are wrong.
The threshold (on the membrane probability) is the benchmark's, from 0.0, 0.1, ..., 0.9;
"finer grid" is the fewest misclassified pixels over 0.00, 0.01, ..., 0.99, which shows
whether the best threshold lies off the benchmark's grid (a weighted loss shifts the
probabilities towards the up-weighted membrane).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from tileunet.evaluation.folders import METRICS
from tileunet.evaluation.isbi import pixel_error
from tileunet.io.images import read_image

BANDS = ((1, 1), (2, 2), (3, 4), (5, None))  # distance bands in px, inclusive
FINE = np.round(np.arange(100) * 0.01, 2)  # membrane thresholds 0.00, 0.01, ..., 0.99


def band_name(lo: int, hi: int | None) -> str:
    return f"{lo} px" if lo == hi else (f"{lo}-{hi} px" if hi else f">= {lo} px")


def error_bands(prob_fg: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Fractions of all pixels that are wrong, per distance band and per kind."""
    membrane = label == 0
    res = pixel_error(1.0 - prob_fg, membrane)
    pred_membrane = (1.0 - prob_fg) > res["misclassified_threshold"]
    wrong = pred_membrane != membrane
    # distance to the nearest pixel of the other class: edt of a class's own mask
    dist = np.where(membrane, ndi.distance_transform_edt(membrane),
                    ndi.distance_transform_edt(~membrane))
    n = wrong.size
    fine = pixel_error(1.0 - prob_fg, membrane, FINE)
    out = {"rand error": METRICS["rand_error"].fn(prob_fg, label),
           "misclassified": float(wrong.sum() / n),
           "threshold": res["misclassified_threshold"],
           "finer grid": fine["misclassified"],
           "its threshold": fine["misclassified_threshold"],
           "membrane share": float(membrane.sum() / n),
           "missed": float((wrong & membrane).sum() / n),
           "invented": float((wrong & ~membrane).sum() / n)}
    for lo, hi in BANDS:
        inside = (dist >= lo) & (dist < (hi + 1 if hi else np.inf))
        out[band_name(lo, hi)] = float((wrong & inside).sum() / n)
        out["share " + band_name(lo, hi)] = float(inside.sum() / n)
    return out


def mean_probability(folders: list[Path], stem: str) -> np.ndarray:
    """The mean of the folders' ``STEM_prob.tif`` maps; ValueError names what is wrong."""
    maps = []
    for folder in folders:
        path = folder / f"{stem}_prob.tif"
        if not path.is_file():
            raise ValueError(f"{path}: missing (every folder needs the same images)")
        maps.append(read_image(path).astype(np.float64))
    if len({m.shape for m in maps}) > 1:
        raise ValueError(f"{folders[0] / stem}_prob.tif: shapes differ between the folders")
    return np.mean(maps, axis=0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pred", type=Path, nargs="+",
                    help="prediction folders; several: their mean probability is scored")
    ap.add_argument("--labels", type=Path, required=True, help="folder of NAME.png labels")
    args = ap.parse_args()
    probs = sorted(args.pred[0].glob("*_prob.tif"))
    if not probs:
        print(f"{args.pred[0]}: no *_prob.tif files", file=sys.stderr)
        return 2
    rows = {}
    for path in probs:
        stem = path.name[: -len("_prob.tif")]
        label = args.labels / f"{stem}.png"
        try:
            if not label.is_file():
                raise ValueError(f"{label}: no label for {path.name}")
            rows[stem] = error_bands(mean_probability(args.pred, stem), read_image(label))
        except ValueError as e:
            print(e, file=sys.stderr)
            return 2
    every = list(next(iter(rows.values())))
    rows["mean"] = {k: float(np.mean([r[k] for r in rows.values()])) for k in every}
    keys = [k for k in every if not k.startswith("share ")]
    print("| image | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for stem, r in rows.items():
        print(f"| {stem} | " + " | ".join(f"{r[k]:.4f}" for k in keys) + " |")
    mean, parts = rows["mean"], []
    for lo, hi in BANDS:
        name = band_name(lo, hi)
        share = mean["share " + name]
        parts.append(f"{name} {share:.4f} ({mean[name] / max(share, 1e-12):.1%} wrong)")
    print("\nshare of all pixels in each band: " + ", ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
