"""Shared parts of the accuracy benchmarks (`isbi2012.py`, `dic_hela.py`).

Each benchmark trains with the paper's recipe on a training split of the shared data,
predicts its validation split, scores it, and writes a results folder: `table.md`
(ours next to the paper's), `metrics.json`, overlays, probability maps and the
learning curve. Ablations switch one part of the recipe off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tileunet.augment.params import AugmentConfig
from tileunet.checkpoint import load_model
from tileunet.device import resolve_device
from tileunet.inference.postprocess import instances_from_probability
from tileunet.inference.scale import predict_at_scale
from tileunet.io.images import read_image, save_image
from tileunet.io.normalization import Normalization
from tileunet.model import NORMS
from tileunet.plots import overlay_rgb
from tileunet.training.config import Runtime, TrainConfig
from tileunet.training.loop import train
from tileunet.training.plan import PLANNED
from tileunet.training.request import TrainRequest, planned_settings

ABLATIONS = {
    "full": "the full method (weight map, elastic deformation, test-time flips)",
    "no-weights": "no weight map (w0 = 0, no class balancing)",
    "no-elastic": "no elastic deformation (other augmentation kept)",
    "no-tta": "no test-time flips/rotations",
}


#: the share of training images ``--validation holdout`` holds out
HOLDOUT_FRACTION = 0.2
#: where a benchmark run validates, and which weights it keeps (``--validation``)
VALIDATION = {
    "scored": "the scored images, for the learning curve only; the last step's weights kept",
    "holdout": f"one training image in {round(1 / HOLDOUT_FRACTION)} held out "
               f"(--val-fraction {HOLDOUT_FRACTION:g}), the best-validating weights kept",
    "none": "as `tileunet train` by default: every training image trains, the last "
            "step's weights kept",
}


def default_data() -> Path:
    env = os.environ.get("TILEUNET_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def parser(description: str, minutes: float) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", type=Path, default=default_data(),
                    help="the shared data folder (default ../shared/data or $TILEUNET_DATA)")
    ap.add_argument("--out", type=Path, help="results folder")
    ap.add_argument("--minutes", type=float, default=minutes,
                    help=f"training budget per run (default {minutes:g})")
    ap.add_argument("--iterations", type=int, help="or a number of steps")
    ap.add_argument("--recipe", choices=("auto", "paper"), default="auto",
                    help="as for `tileunet train`: auto plans the settings below that are "
                         "not given for this machine and --minutes; paper: the paper's")
    ap.add_argument("--width", type=int)
    ap.add_argument("--depth", type=int)
    ap.add_argument("--tile", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--optimizer", choices=("sgd", "adamw"))
    ap.add_argument("--momentum", type=float)
    ap.add_argument("--weight-decay", type=float)
    ap.add_argument("--norm", choices=NORMS)
    ap.add_argument("--batch-norm", dest="norm", action="store_const", const="batch")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--weighted-tiles", type=float)
    ap.add_argument("--dropout", type=float)
    ap.add_argument("--scale", type=float)
    ap.add_argument("--zoom", type=float, nargs=2, metavar=("LOW", "HIGH"),
                    help="magnification augmentation, as tileunet train --zoom (default: "
                         "tileunet train's; 1 1: none)")
    ap.add_argument("--contrast", type=float, nargs=2, metavar=("LOW", "HIGH"),
                    help="contrast factor range of the augmentation (default: "
                         "AugmentConfig's; 1 1: none)")
    ap.add_argument("--gamma", type=float, nargs=2, metavar=("LOW", "HIGH"),
                    help="gamma exponent range of the augmentation (default: "
                         "AugmentConfig's; 1 1: none)")
    ap.add_argument("--brightness", type=float,
                    help="brightness offset of the augmentation, a fraction of the "
                         "tile's range (default: AugmentConfig's; 0: none)")
    ap.add_argument("--ema", type=float,
                    help="moving average of the weights, as tileunet train --ema "
                         "(dic_hela.py scores the last step's own weights beside it)")
    ap.add_argument("--init", metavar="RUN_OR_MODEL",
                    help="start from these weights (fine-tuning), as for `tileunet train`")
    ap.add_argument("--val-every", type=int,
                    help="validate every N steps (the learning curve's resolution)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                    help="training and prediction (default fp32, as the recorded figures)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--validation", choices=tuple(VALIDATION), default="scored",
                    help="; ".join(f"{k}: {v}" for k, v in VALIDATION.items())
                    + " (default: scored)")
    ap.add_argument("--ablation", action="append", choices=[*ABLATIONS, "all"],
                    help="variants to run (repeatable; default: full)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def locate(args: argparse.Namespace, subfolder: str, name: str) -> tuple[Path, Path] | None:
    """The data folder ``args.data / subfolder`` and the results folder (created).

    Prints one line and returns None when the data is not there.
    """
    root = args.data / subfolder
    if not root.is_dir():
        print(f"{name}: {root} not found (set --data or TILEUNET_DATA)", file=sys.stderr)
        return None
    out = args.out or Path("benchmarks/out") / name
    out.mkdir(parents=True, exist_ok=True)
    return root, out


def hela_pair(root: Path, frame: str) -> tuple[Path, Path]:
    """Image and mask of a DIC-HeLa frame (Cell Tracking Challenge names)."""
    return root / "images" / f"t{frame}.tif", root / "masks" / f"man_seg{frame}.tif"


def variants(args: argparse.Namespace) -> list[str]:
    chosen = args.ablation or ["full"]
    return list(ABLATIONS) if "all" in chosen else chosen


def link_split(pairs: list[tuple[Path, Path]], folder: Path) -> tuple[Path, Path]:
    """Symbolic links to the chosen image/mask files (the data is never copied)."""
    images, masks = folder / "images", folder / "masks"
    for d in (images, masks):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for img, mask in pairs:
        (images / img.name).symlink_to(img.resolve())
        (masks / mask.name).symlink_to(mask.resolve())
    return images, masks


def benchmark_settings(args: argparse.Namespace, images: Path, masks: Path
                       ) -> tuple[dict, dict | None]:
    """The network, tile and optimiser settings as ``tileunet train`` would choose them
    from these flags and training data (the plan for this machine and --minutes, or the
    paper's recipe)."""
    given = {k: getattr(args, k) for k in (*PLANNED, "val_every", "precision")
             if getattr(args, k) is not None}
    request = TrainRequest(images=str(images), masks=str(masks), out="",
                           minutes=args.minutes, iterations=args.iterations,
                           recipe=args.recipe, init=args.init, settings=given,
                           device=args.device or "auto")
    settings, plan = planned_settings(request)
    return settings, None if plan is None else plan.to_dict()


def augment_from_flags(augment: AugmentConfig, args: argparse.Namespace) -> AugmentConfig:
    """``augment`` with the ranges given by --zoom, --contrast, --gamma and --brightness."""
    given = {k: getattr(args, k) for k in ("zoom", "contrast", "gamma", "brightness")
             if getattr(args, k) is not None}
    return replace(augment, **given)  # AugmentConfig makes the lists tuples itself


def train_variant(name: str, args: argparse.Namespace, split: dict[str, Path], out: Path,
                  settings: dict, plan: dict | None = None) -> tuple[Path, float, int]:
    """Train one variant; returns the run directory, training seconds and iterations."""
    mode = args.validation
    validation = {"val_images": str(split["val_images"]),
                  "val_masks": str(split["val_masks"])} if mode == "scored" else {}
    validation["val_fraction"] = HOLDOUT_FRACTION if mode == "holdout" else 0.0
    cfg = TrainConfig.from_settings(
        images=str(split["train_images"]), masks=str(split["train_masks"]), **validation,
        out=str(out / name / "run"), minutes=args.minutes, iterations=args.iterations,
        **settings, plan=plan, init=args.init, seed=args.seed, precision=args.precision,
        # "scored" validates on the scored images: keeping the best validation would
        # choose on the test data
        keep="best" if mode == "holdout" else "last")
    if name == "no-weights":
        cfg = replace(cfg, w0=0.0, class_weights=None)
    cfg = replace(cfg, augment=augment_from_flags(cfg.augment, args))
    if args.ema:
        cfg = replace(cfg, ema=args.ema)
    if name == "no-elastic":
        cfg = replace(cfg, augment=replace(cfg.augment, elastic_sigma=0.0))
    run = out / name / "run"
    if run.exists():
        shutil.rmtree(run)
    res = train(cfg, runtime=Runtime(device=args.device, progress=not args.quiet))
    return run, res.seconds, res.iterations


def predict_split(run: Path, images: list[Path], out: Path, *, tta: bool, device: str,
                  progress: bool, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Foreground probability per validation image; writes prob maps and overlays.
    ``run``: a run folder (its model) or a model file of it."""
    dev = resolve_device(device)
    net, extra = load_model(run, device=dev)
    norm = Normalization.from_dict(extra.get("normalization", {}))
    probs = {}
    for path in images:
        x = norm(read_image(path))
        p = predict_at_scale(net, x, extra.get("scale", 1.0), tta=tta, device=dev,
                             progress=progress, precision=precision)[1]
        probs[path.stem] = p
        save_image(out / f"{path.stem}_prob.tif", p.astype(np.float32))
        save_image(out / f"{path.stem}_overlay.png",
                   overlay_rgb(x, instances_from_probability(p)))
    return probs


def machine() -> str:
    dev = (torch.cuda.get_device_name() if torch.cuda.is_available()
           else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    return f"{dev}; torch {torch.__version__}; Python {platform.python_version()}"


def write_results(out: Path, title: str, header: list[str], rows: list[list[str]],
                  payload: dict) -> None:
    payload = {**payload, "machine": machine(), "command": "python " + " ".join(sys.argv),
               "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "metrics.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [f"# {title}", "", f"command: `{payload['command']}`  ",
             f"machine: {payload['machine']}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
