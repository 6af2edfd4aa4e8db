"""Does a model's prediction depend on the tile size? (It must not, for seamless tiles.)

    python benchmarks/tile_consistency.py MODEL IMAGE [IMAGE ...] [--tiles 252 508]

Predicts each image with each tile size (the model's working scale, fp32) and reports
the largest difference of the foreground probability between the tilings and the share
of pixels whose class (threshold 0.5) changes. With valid convolutions and no
normalisation layer, or batch norm (fixed statistics at inference), every tiling gives
one forward pass over the mirrored image and the figures are rounding; group norm
normalises each tile by its own statistics, so its output depends on where the tiles
fall; same padding pads every tile border with zeros.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from tileunet.checkpoint import load_model
from tileunet.inference.scale import predict_at_scale
from tileunet.io.images import read_image
from tileunet.io.normalization import Normalization


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("images", type=Path, nargs="+")
    ap.add_argument("--tiles", type=int, nargs="+", default=[252, 508])
    args = ap.parse_args()
    net, extra = load_model(args.model)
    norm = Normalization.from_dict(extra.get("normalization", {}))
    print(f"model {args.model}: norm {net.config.norm}, padding {net.config.padding}, "
          f"scale {extra.get('scale', 1.0)}; tiles {args.tiles}")
    print("| image | tiles | max abs. difference | pixels changing class |")
    print("|---|---|---|---|")
    for path in args.images:
        x = norm(read_image(path))
        fg = {t: predict_at_scale(net, x, extra.get("scale", 1.0), tile=t, progress=False,
                                  precision="fp32")[1] for t in args.tiles}
        for a, b in itertools.combinations(args.tiles, 2):
            diff = float(np.abs(fg[a] - fg[b]).max())
            flips = float(((fg[a] > 0.5) != (fg[b] > 0.5)).mean())
            print(f"| {path.name} | {a} / {b} | {diff:.2e} | {flips:.2%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
