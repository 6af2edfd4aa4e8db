"""What lifts a short live run on sparse strokes: the sessions of live_annotation.py
trained again (``tileunet replay``, by steps, so the same computation on any load) with
one setting changed, and scored on the validation frames.

    python benchmarks/live_annotation.py --dataset dic-hela --seeds 0 1 2   # first
    python benchmarks/live_levers.py [--sessions random] [--seeds 0 1 2]

Each recorded session (its strokes as they grew, the step each version joined at, its
seed and settings) is replayed once per variant:

* ``as recorded``: the settings the live run had;
* ``no augmentation``: the tiles as drawn (``AugmentConfig(enabled=False)``);
* ``flips and rotations``: no elastic deformation and no gray-value changes;
* ``from synthetic cells``: the start weights of ``--init``, a model trained on the
  built-in synthetic cells (``tileunet demo``), instead of He initialisation.

The last weights of each replay predict the four validation frames, whose instances are
drawn two ways: the default separation (``instances_from_probability``), and the one
the run chooses on its own training images' painted cells
(:func:`tileunet.inference.separation.choose_separation`, as ``tileunet train`` does).
Writes ``table.md`` and ``metrics.json`` under ``--out``
(default ``benchmarks/out/live_levers``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from live_annotation import load, predict_all
from paper_common import default_data, machine
from safetensors.torch import load_file

from tileunet.evaluation.scores import seg_score
from tileunet.inference.postprocess import instances_from_probability
from tileunet.inference.separation import choose_separation
from tileunet.io.images import read_image
from tileunet.targets.sparse import painted_cells
from tileunet.training.config import Runtime, TrainConfig
from tileunet.training.loop import train as train_config
from tileunet.training.replay import replay_config


def augmented(cfg: TrainConfig, **changes: object) -> TrainConfig:
    return replace(cfg, augment=replace(cfg.augment, **changes))


VARIANTS = {
    "as recorded": lambda cfg, init: cfg,
    "no augmentation": lambda cfg, init: augmented(cfg, enabled=False),
    "flips and rotations": lambda cfg, init: augmented(
        cfg, elastic_sigma=0.0, contrast=(1.0, 1.0), brightness=0.0, gamma=(1.0, 1.0)),
    "from synthetic cells": lambda cfg, init: replace(cfg, init=str(init)),
}


def replay_variant(session: Path, variant: str, out: Path, init: Path | None) -> Path:
    """The replay of ``session`` with ``variant``'s change, trained unless its model is
    already there."""
    if not (out / "model.safetensors").exists():
        cfg, _ = replay_config(session, out)
        train_config(VARIANTS[variant](cfg, init), None,
                     Runtime(progress=False, replay=str(session)))
    return out


def painted(session: Path, names: list[str]) -> list[np.ndarray]:
    """The whole cells painted in the session's last version, per training image."""
    last = sorted((session / "snapshots").iterdir())[-1]
    return [painted_cells(read_image(last / "1-masks" / f"{n}.tif")) for n in names]


def score_run(run: Path, session: Path, train: list, val: list) -> dict:
    """Validation SEG with the default separation and with the chosen one."""
    weights = load_file(str(run / "model.safetensors"))
    pv, pt = predict_all(run, weights, val), predict_all(run, weights, train)
    choice = choose_separation(pt, painted(session, [im.name for im in train]),
                               progress=False)
    seg = {name: float(np.mean([seg_score(instances_from_probability(p, **opts), im.cells)
                                for p, im in zip(pv, val, strict=True)]))
           for name, opts in (("default", {}), ("chosen", choice.options))}
    return {**seg, "choice": choice.describe()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--sessions", type=Path,
                    default=Path("benchmarks/out/live_annotation_dic-hela"))
    ap.add_argument("--where", nargs="+", default=["random", "uncertain"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--init", type=Path,
                    help="the start model of 'from synthetic cells' (a tileunet demo run)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/live_levers"))
    args = ap.parse_args()
    if "from synthetic cells" in args.variants and args.init is None:
        ap.error("'from synthetic cells' needs --init RUN")
    if not (args.data / "dic-hela").is_dir():
        print(f"live_levers: no dic-hela under {args.data}")
        return 2
    train, val = load("dic-hela", args.data)
    rows = []
    for seed in args.seeds:
        for where in args.where:
            session = args.sessions / f"seed{seed}" / where / "run"
            if not (session / "snapshots.json").exists():
                print(f"live_levers: no recorded session {session}")
                return 2
            for variant in args.variants:
                slug = variant.replace(" ", "_")
                run = replay_variant(session, variant, args.out / f"seed{seed}" / where / slug,
                                     args.init)
                rows.append({"seed": seed, "where": where, "variant": variant,
                             **score_run(run, session, train, val)})
                print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps({"machine": machine(), "rows": rows},
                                                      indent=1))
    (args.out / "table.md").write_text("\n".join(table(rows, args.variants)) + "\n")
    print("\n".join(table(rows, args.variants)))
    return 0


def table(rows: list[dict], variants: list[str]) -> list[str]:
    """Mean (range) over sessions of each variant and separation."""
    out = ["| training | sessions | SEG, default separation | SEG, chosen on the paint |",
           "|---|---|---|---|"]
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        cells = []
        for key in ("default", "chosen"):
            x = [r[key] for r in mine]
            cells.append(f"{np.mean(x):.3f} ({min(x):.3f}-{max(x):.3f})")
        out.append(f"| {v} | {len(mine)} | {cells[0]} | {cells[1]} |")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
