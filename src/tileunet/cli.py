"""Command line: one thin layer over the library.

``tileunet demo | train | predict | evaluate | weights | sizes``; every error a user can cause
ends in one line ``tileunet: error: FILE: what was wrong`` and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from tileunet.interrupt import terminate_as_interrupt
from tileunet.model import NORMS, PADDINGS
from tileunet.training.loop import TrainConfig


def _add_train_settings(p: argparse.ArgumentParser) -> None:
    """The network, tile and optimiser flags of ``train``: those a plan chooses (the
    ones without a default here) and how tiles are made."""
    p.add_argument("--width", type=int, help="channels of level 1 (paper: 64)")
    p.add_argument("--depth", type=int, help="levels (paper: 5)")
    p.add_argument("--num-classes", type=int, default=TrainConfig.num_classes)
    p.add_argument("--padding", choices=PADDINGS, default=TrainConfig.padding)
    p.add_argument("--dropout", type=float, help="at the end of the contracting path "
                   "(paper: 0.5)")
    p.add_argument("--norm", choices=NORMS,
                   help="normalisation after each convolution: none (paper), batch, or "
                        "group (any batch size, but each tile is normalised on its own: "
                        "predictions then depend on the tiling)")
    p.add_argument("--batch-norm", dest="norm", action="store_const", const="batch",
                   help="the same as --norm batch")
    p.add_argument("--tile", type=int, help="input tile size (paper: 572)")
    p.add_argument("--batch-size", type=int, help="tiles per step (paper: 1)")
    p.add_argument("--weighted-tiles", type=float, metavar="SHARE",
                   help="share of training tiles centred in proportion to the weight map "
                        "(borders between touching objects, thin membranes), the rest "
                        "anywhere (paper: 0)")
    p.add_argument("--scale", type=float,
                   help="working resolution relative to the images' (paper: 1; 0.5 trains "
                        "and predicts at half size, for objects tens of pixels across); "
                        "outputs stay at the images' size")
    p.add_argument("--workers", type=int,
                   help="processes making training tiles on the CPU (default: 0 on CPU; "
                        "with a GPU the tiles are made on it unless this is given)")
    p.add_argument("--augment-on", choices=("auto", "cpu", "device"),
                   default=TrainConfig.augment_on,
                   help="where training tiles are resampled: auto (default: on the GPU "
                        "when training on one), cpu, or device")
    p.add_argument("--optimizer", choices=("sgd", "adamw"),
                   help="sgd (the paper's, with --momentum) or adamw")
    p.add_argument("--lr", type=float,
                   help="peak learning rate (after the warm-up; annealed to 0 at the end; "
                        "paper recipe: 0.003)")
    p.add_argument("--momentum", type=float, help="SGD momentum (paper: 0.99)")
    p.add_argument("--weight-decay", type=float)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a U-Net on images and masks",
                       description="Train with the paper's recipe; writes a run directory.")
    p.add_argument("--images", required=True, help="folder (or file) of training images")
    p.add_argument("--masks", required=True, help="folder of masks, paired by file stem")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--val-fraction", type=float, default=TrainConfig.val_fraction,
                   help="fraction of images held out for validation (default 0.2)")
    p.add_argument("--val-images", help="explicit validation images (instead of a split)")
    p.add_argument("--val-masks", help="masks of --val-images")
    p.add_argument("--exclude", action="append", default=[], metavar="NAME",
                   help="leave out images whose name matches (shell pattern, repeatable), "
                        "e.g. a partly annotated frame: --exclude t067")
    p.add_argument("--ignore", metavar="DIR",
                   help="masks of regions that are not annotated (non-zero = ignore), "
                        "paired with the images like --masks; weight 0 there")
    budget = p.add_argument_group("budget (at least one; training stops at the first)")
    budget.add_argument("--minutes", type=float, help="wall-clock minutes of training")
    budget.add_argument("--iterations", type=int, help="number of SGD steps")
    p.add_argument("--recipe", choices=("auto", "paper"), default="auto",
                   help="auto (default): with --minutes, the network, tiles and optimiser "
                        "are planned for this machine and budget (a short probe times "
                        "candidate networks); paper: the paper's settings. Any flag "
                        "below that you give wins over the plan")
    _add_train_settings(p)
    p.add_argument("--init", metavar="RUN_OR_MODEL",
                   help="start from these weights instead of He initialisation "
                        "(fine-tuning); another number of classes replaces the last layer")
    p.add_argument("--keep", choices=("best", "last"), default=TrainConfig.keep,
                   help="model.safetensors: the weights of the best validation (SEG with "
                        "two classes; default) or of the last step (always in "
                        "last.safetensors)")
    p.add_argument("--w0", type=float, default=TrainConfig.w0, help="border weight w0 (paper: 10)")
    p.add_argument("--sigma", type=float, default=TrainConfig.sigma,
                   help="border sigma in px (paper: 5)")
    p.add_argument("--class-weights", default=TrainConfig.class_weights,
                   help="'balanced', 'none', or comma-separated weights per class")
    p.add_argument("--no-augment", action="store_true", help="disable augmentation")
    p.add_argument("--val-every", type=int,
                   help="iterations between validations (default: 10 per planned run, "
                        "else 100)")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="auto",
                   help="auto (default): bf16 autocast on GPUs and on CPUs with native bf16, "
                        "fp32 elsewhere")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    p.add_argument("--checkpoint-minutes", type=float, default=TrainConfig.checkpoint_minutes,
                   metavar="M",
                   help="save a resumable checkpoint at least every M minutes (default 5); "
                        "Ctrl-C and SIGTERM also save one")
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="train in N processes with DistributedDataParallel: one per GPU, "
                        "or N CPU processes without CUDA (starts torchrun; the same as "
                        "`torchrun --nproc_per_node N -m tileunet train ...`)")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment images with a trained model",
                       description="Overlap-tile prediction of images of any size.")
    p.add_argument("model", help="run directory or model.safetensors")
    p.add_argument("images", nargs="+",
                   help="image files (PNG, JPEG, TIFF, zarr, OME-Zarr) or folders")
    p.add_argument("-o", "--out", required=True,
                   help="output folder; or NAME.zarr to segment one image larger than "
                        "memory block by block (zarr, OME-Zarr or TIFF input); NAME.ome.zarr "
                        "writes OME-Zarr (NGFF 0.4) with the input's pixel size")
    p.add_argument("--tta", action="store_true", help="average over 8 flips/rotations")
    p.add_argument("--tile", type=int, help="input tile size (default: from a memory budget)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--threshold", type=float, default=0.5, help="foreground threshold")
    p.add_argument("--instances", choices=("seeded", "components", "watershed"), default="seeded",
                   help="how cells are separated: seeded (flood from the cores where the "
                        "network is sure; default), components (connected components), "
                        "watershed (distance map; also splits cells the network merged)")
    p.add_argument("--min-distance", type=int, default=5,
                   help="watershed: smallest distance between two cell centres, in pixels "
                        "(about the smallest cell's radius; default 5)")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="auto",
                   help="auto (default): bf16 autocast on GPUs and on CPUs with native bf16, "
                        "fp32 elsewhere")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--skip-existing", action="store_true",
                   help="finish an interrupted run: skip the images whose outputs are all "
                        "there, predict the rest")
    g = p.add_argument_group("images larger than memory (-o NAME.zarr)")
    g.add_argument("--block", type=int, default=2048,
                   help="block side in pixels (default 2048; memory per block grows with "
                        "its square)")
    g.add_argument("--max-object", type=int, default=256,
                   help="objects up to this many pixels beyond their block are labelled "
                        "exactly across block borders (default 256)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this dask.distributed scheduler (e.g. tcp://host:8786); "
                        "default: this machine")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a trained model as ONNX or a bioimage.io package",
                       description="onnx: a batch of input tiles -> class probabilities of "
                                   "the valid output (tile geometry and normalisation in the "
                                   "file's metadata). bioimageio: a BioImage Model Zoo "
                                   "package (format 0.5) for deepImageJ, ilastik, QuPath, "
                                   "napari and bioimageio.core.")
    p.add_argument("model", help="run directory or model.safetensors")
    p.add_argument("-o", "--out", required=True,
                   help=".onnx file, or for bioimageio a folder (or .zip) to write")
    p.add_argument("--format", choices=("onnx", "bioimageio"), default="onnx")
    p.add_argument("--tile", type=int, help="onnx: input tile side (default: the training "
                                            "tile); bioimageio: side of the test tile")
    p.add_argument("--sample", help="bioimageio: image to cut the test tile from "
                                    "(default: synthetic cells)")
    p.add_argument("--name", help="bioimageio: model name")
    p.add_argument("--author", action="append", default=[],
                   help="bioimageio: an author (repeatable; default: your user name)")
    p.add_argument("--license", default="CC-BY-4.0", help="bioimageio: SPDX licence id")
    p.add_argument("--overwrite", action="store_true")


def _add_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="draw the paper's weight map of a mask",
                       description="Writes the mask next to a heat map of w(x) (Fig. 3d).")
    p.add_argument("mask", help="instance or binary mask (PNG/TIFF)")
    p.add_argument("-o", "--out", required=True, help="PNG to write")
    p.add_argument("--w0", type=float, default=10.0)
    p.add_argument("--sigma", type=float, default=5.0)
    p.add_argument("--class-weights", default="balanced")
    p.add_argument("--overwrite", action="store_true")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from tileunet.evaluation.folders import DEFAULT_METRICS, METRICS

    p = sub.add_parser("evaluate", help="score predictions against ground truth",
                       description="Scores the outputs of `tileunet predict` against masks; "
                       "prints a table, writes metrics.csv and metrics.json.",
                       epilog="metrics: " + "; ".join(f"{m.name}: {m.doc}"
                                                      for m in METRICS.values()))
    p.add_argument("--pred", required=True, help="folder written by tileunet predict")
    p.add_argument("--gt", required=True, help="folder of ground-truth masks")
    p.add_argument("--metric", action="append", choices=[*sorted(METRICS), "isbi"],
                   help=f"metric to compute (repeatable; default: {', '.join(DEFAULT_METRICS)}; "
                        "--metric isbi for the ISBI 2012 set)")
    p.add_argument("-o", "--out", help="folder for metrics.csv/json (default: --pred)")
    p.add_argument("--overwrite", action="store_true")


def _add_sizes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sizes", help="table of valid input -> output tile sizes",
                       description="Valid input sizes of the valid-convolution U-Net.")
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--padding", choices=("valid", "same"), default="valid")
    p.add_argument("--max", type=int, default=1024, help="largest input size listed")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train and segment on built-in synthetic cells",
                       description="The whole job on synthetic data, no downloads.")
    p.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget (default 5)")
    p.add_argument("--iterations", type=int,
                   help="stop training after this many steps (if --minutes has not run out "
                        "first): with --seed, the same outputs on every run on this machine")
    p.add_argument("--size", type=int, default=2048, help="side of the large test image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")


class RaisingParser(argparse.ArgumentParser):
    """For callers inside a program (the napari widget): a bad flag raises ValueError
    with argparse's message instead of printing the usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise ValueError(message)


def build_parser(parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser
                 ) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="tileunet",
        description="U-Net (Ronneberger et al. 2015): train, predict seamlessly, weight maps.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_train, _add_predict, _add_evaluate, _add_export, _add_weights,
                _add_sizes):
        add(sub)
    return parser


def parse_class_weights(text: str) -> str | tuple[float, ...] | None:
    if text == "balanced":
        return "balanced"
    if text.lower() == "none":
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--class-weights: expected 'balanced', 'none' or numbers like "
                         f"'1,3', got {text!r}") from None


# ------------------------------------------------------------------ commands
def cmd_sizes(args: argparse.Namespace) -> int:
    from tileunet.inference.overlap import tile_geometry
    from tileunet.model import UNet

    net = UNet(depth=args.depth, width=1, padding=args.padding)
    rows = net.valid_sizes(args.max)
    print(f"depth {args.depth}, {args.padding} padding: input -> output "
          f"(margin {net.margin if args.padding == 'valid' else 0} px per side); "
          f"overlap-tile prediction keeps the output rounded down to a multiple of "
          f"{net.size_step}")
    for n, out in rows:
        try:
            kept = f"keeps {tile_geometry(net, n)[1]}"
        except ValueError:
            kept = "too small to tile"
        print(f"{n:6d} -> {out:6d}   {kept}")
    if not rows:
        print(f"no valid size up to {args.max}; the smallest is {net.min_input_size()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tileunet.export.onnx import export_onnx, is_own_onnx
    from tileunet.io.outputs import clear_stale, refuse_existing

    out = Path(args.out)
    if args.format == "bioimageio":
        from tileunet.export.bioimageio import export_bioimageio

        written = export_bioimageio(args.model, out, sample=args.sample, name=args.name,
                                    authors=args.author or None, license=args.license,
                                    tile=args.tile, overwrite=args.overwrite)
        rdf = written if written.suffix.lower() == ".zip" else written / "rdf.yaml"
        print(f"wrote {written} (bioimage.io model format 0.5; check it with "
              f"`bioimageio test {rdf}`)")
        return 0
    refuse_existing(out, args.overwrite, is_own_onnx, "an ONNX model that tileunet "
                    "exported")
    clear_stale(out)
    try:
        meta = export_onnx(args.model, out, tile=args.tile)
    except RuntimeError as e:  # the optional packages are missing
        print(f"tileunet: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: input tiles (N, C, {meta['tile']}, {meta['tile']}) -> probabilities "
          f"(N, {meta['classes']}, {meta['output']}, {meta['output']}); margin "
          f"{meta['margin']}, stride {meta['stride']}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from tileunet.io.images import read_image
    from tileunet.io.outputs import refuse_existing
    from tileunet.plots import save_weight_map_figure
    from tileunet.targets.weightmap import to_instances, weight_map

    out = Path(args.out)
    refuse_existing(out, args.overwrite, Path.is_file, "a file")
    mask = read_image(args.mask)
    if mask.ndim != 2:
        raise ValueError(f"{args.mask}: expected a 2-D mask, got shape {mask.shape}")
    labels = to_instances(mask)
    w = weight_map(labels, w0=args.w0, sigma=args.sigma,
                   class_weights=parse_class_weights(args.class_weights))
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weight_map_figure(labels, w, out, title=Path(args.mask).name)
    print(f"wrote {out} (weights {w.min():.2f} .. {w.max():.2f})")
    return 0


def _check_train_flags(args: argparse.Namespace) -> None:
    """The flags of ``train`` checked before any work (no file read, nothing planned)."""
    if args.minutes is None and args.iterations is None:
        raise ValueError("train: give --minutes or --iterations (or both)")
    if args.devices < 1:
        raise ValueError(f"--devices must be >= 1, got {args.devices}")
    _train_config(args, _given_settings(args, early=True), None)


def train_config(argv: list[str]) -> TrainConfig:
    """The configuration ``tileunet train ARGV`` trains with (flags checked, the plan
    made), for programs that run the trainer themselves (the napari widget): the same
    run as the command line's. A bad flag raises ValueError."""
    args = parse_train_flags(argv)
    return _train_config(args, *training_settings(args))


def parse_train_flags(argv: list[str]) -> argparse.Namespace:
    """The flags of ``tileunet train ARGV``, parsed and range-checked (no file is read,
    nothing is planned); a bad flag raises ValueError."""
    args = build_parser(RaisingParser).parse_args(["train", *argv])
    if args.devices != 1:
        raise ValueError("--devices: a program runs one training process")
    _check_train_flags(args)
    return args


def cmd_train(args: argparse.Namespace) -> int:
    from tileunet.training.loop import train

    _check_train_flags(args)
    settings, plan = training_settings(args)
    if args.devices > 1 and "LOCAL_RANK" not in os.environ:
        # every process trains with the settings chosen here (one probe, one plan)
        return _torchrun(args.devices, [*args.argv, *settings_as_flags(settings)])
    cfg = _train_config(args, settings, plan)
    res = train(cfg)
    if os.environ.get("RANK", "0") != "0":
        return 130 if res.interrupted else 0
    val = ""
    if res.val_iou is not None:
        seg = f", SEG {res.val_seg:.4f}" if res.val_seg is not None else ""
        val = f"; kept iteration {res.kept_iteration}: val pixel IoU {res.val_iou:.4f}{seg}"
    print(f"{'interrupted' if res.interrupted else 'trained'}: {res.iterations} iterations "
          f"in {res.seconds / 60:.1f} min{val}; run in {res.run_dir}")
    if res.interrupted:
        print(f"resume with: tileunet train ... --out {res.run_dir} --resume", file=sys.stderr)
        return 130
    return 0


def _train_config(args: argparse.Namespace, settings: dict, plan: dict | None):
    """The TrainConfig of these flags and settings; a value out of range is reported
    with its flag's name."""
    from tileunet.augment.transforms import AugmentConfig
    from tileunet.training.loop import ConfigError

    try:
        return TrainConfig(
            images=args.images, masks=args.masks, out=args.out,
            val_fraction=args.val_fraction, val_images=args.val_images,
            val_masks=args.val_masks, exclude=tuple(args.exclude), ignore=args.ignore,
            iterations=args.iterations, minutes=args.minutes, **settings,
            num_classes=args.num_classes, padding=args.padding,
            workers=args.workers, augment_on=args.augment_on, init=args.init,
            keep=args.keep, plan=plan, w0=args.w0, sigma=args.sigma,
            class_weights=parse_class_weights(args.class_weights),
            augment=AugmentConfig(enabled=not args.no_augment),
            precision=args.precision, device=args.device, seed=args.seed,
            resume=args.resume, checkpoint_minutes=args.checkpoint_minutes,
            progress=not args.quiet)
    except ConfigError as e:
        raise ValueError(f"--{e.field.replace('_', '-')} must be {e.rule}, got "
                         f"{e.value}") from None


def _given_settings(args: argparse.Namespace, early: bool = False) -> dict:
    """The planned settings given as flags; ``early``: with the paper's for the rest, to
    check the flags before the plan (a tile is checked against the depth only where the
    depth is given too: the plan may choose another)."""
    from tileunet.training.plan import PLANNED

    given = {f: getattr(args, f) for f in (*PLANNED, "val_every")
             if getattr(args, f) is not None}
    if not early:
        return given
    if "depth" not in given:
        given.pop("tile", None)
    return {**_paper_settings(), **given}


def _paper_settings() -> dict:
    """The paper's recipe for the planned fields, and TrainConfig's validation interval."""
    from tileunet.training.plan import PAPER

    return {**PAPER, "val_every": TrainConfig.val_every}


def training_settings(args: argparse.Namespace) -> tuple[dict, dict | None]:
    """The planned TrainConfig fields (network, tiles, optimiser, validation): the flags
    given, the rest from the plan (``--recipe auto`` with ``--minutes``), from the run
    being resumed, or the paper's recipe; and the plan as stored in config.json."""
    from tileunet.training.plan import PLANNED

    given = _given_settings(args)
    if args.init is not None and not args.resume:
        given = {**start_network(args.init, given), **given}
    base, plan = _paper_settings(), None
    if args.resume:
        base = _resumed_settings(Path(args.out), base)
    elif (args.recipe == "auto" and args.minutes is not None
          and not set(PLANNED) <= set(given)):
        plan = _plan(args, fixed=given)
        base = plan["settings"]
    return {**base, **given}, plan


#: the network fields a start model (``--init``) fixes: its weights need them
START_NETWORK = ("width", "depth", "norm")


def start_network(init: str, given: dict) -> dict:
    """The network fields of the start model ``init``; a flag that asks for another
    network is refused with both shapes named."""
    from tileunet.checkpoint import read_model_config

    config = read_model_config(init)
    theirs = {k: config.get(k) for k in START_NETWORK}
    clash = [k for k in START_NETWORK if k in given and given[k] != theirs[k]]
    if clash:
        def fmt(values: dict) -> str:
            return ", ".join(f"{k.replace('_', ' ')} {values[k]}" for k in clash)
        raise ValueError(f"{init}: the start model has {fmt(theirs)}; the flags ask for "
                         f"{fmt(given)}")
    return theirs


def _plan(args: argparse.Namespace, fixed: dict) -> dict:
    from tileunet.device import resolve_device
    from tileunet.io.images import load_samples
    from tileunet.training.plan import make_plan

    if not (args.minutes > 0):  # also NaN
        raise ValueError(f"--minutes must be > 0, got {args.minutes}")
    masks = None
    if args.num_classes == 2:  # object sizes choose the working scale
        masks = [s.labels for s in load_samples(args.images, args.masks)]
    plan = make_plan(args.minutes, in_channels=1, num_classes=args.num_classes,
                     device=resolve_device(args.device), precision=args.precision,
                     masks=masks, fixed=fixed)
    if not args.quiet:
        print(plan.table(), flush=True)
    return plan.to_dict()


def _resumed_settings(run: Path, base: dict) -> dict:
    """A resumed run keeps the settings it was started with (and planned)."""
    import json

    try:
        stored = json.loads((run / "config.json").read_text())["train"]
    except (OSError, ValueError, KeyError):
        return base  # the trainer says what is missing
    return {k: stored[k] for k in base if k in stored} | {
        k: v for k, v in base.items() if k not in stored}


def settings_as_flags(settings: dict) -> list[str]:
    """Command-line flags that set these TrainConfig fields."""
    flags = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, str(value)]
    return flags


def _torchrun(devices: int, argv: list[str]) -> int:
    """Start ``devices`` training processes with torchrun (this command in each)."""
    import subprocess

    import torch

    if torch.cuda.is_available() and devices > torch.cuda.device_count():
        raise ValueError(f"--devices {devices}: this machine has "
                         f"{torch.cuda.device_count()} GPU(s)")
    env = dict(os.environ)
    # CPU processes share the cores; GPU processes need few threads each
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // devices)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={devices}", "-m", "tileunet", *argv]
    return subprocess.call(cmd, env=env)


def cmd_predict(args: argparse.Namespace) -> int:
    from tileunet.inference.segment import segment_files
    from tileunet.io.images import is_zarr_path

    if is_zarr_path(args.out):
        from tileunet.inference.blockwise import segment_to_zarr

        if len(args.images) != 1:
            raise ValueError(f"{args.out}: a .zarr output takes one input image, got "
                             f"{len(args.images)}")
        if args.tta:
            raise ValueError("--tta is not available for block-wise (.zarr) prediction")
        if args.skip_existing:
            raise ValueError("--skip-existing is for folders of images; a .zarr output "
                             "is built whole under a temporary name")
        out = segment_to_zarr(args.model, args.images[0], args.out, block=args.block,
                              max_object=args.max_object, tile=args.tile,
                              batch_size=args.batch_size, threshold=args.threshold,
                              instances=args.instances, min_distance=args.min_distance,
                              precision=args.precision, device=args.device,
                              scheduler=args.scheduler, overwrite=args.overwrite,
                              progress=not args.quiet)
        if not args.quiet:
            print(f"wrote {out} (probability, mask, labels)")
        return 0
    if args.scheduler:
        raise ValueError("--scheduler needs a .zarr output (block-wise prediction)")
    segment_files(args.model, args.images, args.out, tta=args.tta, tile=args.tile,
                  batch_size=args.batch_size, threshold=args.threshold,
                  instances=args.instances, min_distance=args.min_distance,
                  precision=args.precision, device=args.device, overwrite=args.overwrite,
                  skip_existing=args.skip_existing, progress=not args.quiet)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tileunet.evaluation.folders import (
        DEFAULT_METRICS,
        ISBI_METRICS,
        evaluate,
        format_table,
        write_results,
    )
    from tileunet.io.outputs import refuse_existing

    out = Path(args.out or args.pred)
    for name in ("metrics.csv", "metrics.json"):  # named as evaluate writes them
        refuse_existing(out / name, args.overwrite)
    chosen = args.metric or list(DEFAULT_METRICS)
    if "isbi" in chosen:
        chosen = [m for m in chosen if m != "isbi"] + list(ISBI_METRICS)
    rows = evaluate(args.pred, args.gt, metrics=chosen, progress=not args.quiet)
    print(format_table(rows))
    csv_path, json_path = write_results(rows, out)
    print(f"wrote {csv_path} and {json_path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tileunet.demo import run_demo

    run_demo(args.out, minutes=args.minutes, size=args.size, seed=args.seed,
             device=args.device, overwrite=args.overwrite, progress=not args.quiet,
             iterations=args.iterations)
    return 0


COMMANDS = {"sizes": cmd_sizes, "weights": cmd_weights, "train": cmd_train,
            "predict": cmd_predict, "evaluate": cmd_evaluate, "demo": cmd_demo,
            "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    np.seterr(all="ignore")
    try:
        with terminate_as_interrupt():  # SIGTERM stops as cleanly as Ctrl-C
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("tileunet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped, e.g. `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError, FloatingPointError) as e:
        if args.verbose:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, FileNotFoundError) and e.filename:
            msg = f"{e.filename}: no such file or directory"
        print(f"tileunet: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
