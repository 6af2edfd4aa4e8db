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
from tileunet.training.config import Runtime
from tileunet.training.flags import (
    add_train_arguments,
    flag_error,
    parse_class_weights,
    request_from_args,
    settings_as_flags,
)
from tileunet.training.loop import TrainResult
from tileunet.training.request import PLANNED_SETTINGS


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a U-Net on images and masks",
                       description="Train with the paper's recipe; writes a run directory.")
    add_train_arguments(p)
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="train in N processes with DistributedDataParallel: one per GPU, "
                        "or N CPU processes without CUDA (starts torchrun; the same as "
                        "`torchrun --nproc_per_node N -m tileunet train ...`)")



def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="train again as a live run trained, from its snapshots",
                       description="Train a new run with the settings, seed and start "
                                   "weights of a run trained with --live, switching to each "
                                   "version of its training set (RUN/snapshots/) at the "
                                   "step it joined at. It counts steps, not minutes, so two "
                                   "replays of a run give the same weights.")
    p.add_argument("run", help="the folder of a run trained with --live")
    p.add_argument("--out", required=True, help="the new run directory")
    p.add_argument("--iterations", type=int,
                   help="steps to train (default: as many as the live run made)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--resume", action="store_true", help="continue from the replay's checkpoint")
    p.add_argument("--checkpoint-minutes", type=float, default=Runtime.checkpoint_minutes,
                   metavar="M", help="save a resumable checkpoint at least every M minutes")


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
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default="auto",
                   help="average over the 8 flips/rotations of each image (8 predictions); "
                        "default: where that is cheap for the image's size and the device "
                        "(not for -o NAME.zarr)")
    p.add_argument("--tile", type=int, help="input tile size (default: from a memory budget)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--threshold", type=float, default=0.5, help="foreground threshold")
    p.add_argument("--instances", choices=("auto", "seeded", "components", "watershed"),
                   default="auto",
                   help="how cells are separated: auto (default: as the model chose on its "
                        "training images; seeded for models without a choice), seeded "
                        "(flood from the cores where the network is sure), components "
                        "(connected components), watershed (distance map; also splits "
                        "cells the network merged)")
    p.add_argument("--min-distance", type=int,
                   help="with --instances watershed: smallest distance between two cell "
                        "centres, in pixels (about the smallest cell's radius; default 5)")
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
    from tileunet.evaluation.folders import DEFAULT_METRICS, ISBI_METRICS, METRICS

    p = sub.add_parser("evaluate", help="score predictions against ground truth",
                       description="Scores the outputs of `tileunet predict` against masks; "
                       "prints a table (one row per image, their mean, and the figures "
                       "over all images as the challenges report them), writes "
                       "metrics.csv and metrics.json. --metric isbi scores V_rand and "
                       "V_info as the ISBI 2012 challenge's Fiji script does (cell "
                       "probability thresholds 0.0-0.9 and 1, borders thinned by a "
                       "watershed, best threshold of the mean over the images).",
                       epilog="metrics: " + "; ".join(f"{m.name}: {m.doc}"
                                                      for m in METRICS.values()))
    p.add_argument("--pred", required=True, help="folder written by tileunet predict")
    p.add_argument("--gt", required=True, help="folder of ground-truth masks")
    p.add_argument("--metric", action="append", choices=[*sorted(METRICS), "isbi"],
                   help=f"metric to compute (repeatable; default: {', '.join(DEFAULT_METRICS)}; "
                        f"--metric isbi for the ISBI 2012 set: {', '.join(ISBI_METRICS)})")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="images scored at once, one process each (default: all cores)")
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


def build_parser(parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser
                 ) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="tileunet",
        description="U-Net (Ronneberger et al. 2015): train, predict seamlessly, weight maps.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_train, _add_replay, _add_predict, _add_evaluate, _add_export,
                _add_weights, _add_sizes):
        add(sub)
    return parser


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
    from tileunet.targets.instances import to_instances
    from tileunet.targets.weightmap import weight_map

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


def cmd_replay(args: argparse.Namespace) -> int:
    from tileunet.training.request import replay

    runtime = Runtime(device=args.device, resume=args.resume, progress=not args.quiet,
                      checkpoint_minutes=args.checkpoint_minutes)
    res = replay(args.run, args.out, args.iterations, runtime=runtime)
    return _report_training(res, f"tileunet replay {args.run} --out {res.run_dir} --resume")


def cmd_train(args: argparse.Namespace) -> int:
    from tileunet.training.request import resolve, train

    if args.devices < 1:
        raise ValueError(f"--devices must be >= 1, got {args.devices}")
    request = request_from_args(args, progress=not args.quiet)
    try:
        resolved = resolve(request)
    except ValueError as e:
        raise flag_error(e) from None
    if resolved.plan is not None and not args.quiet:
        print(resolved.plan.table(), flush=True)
    if args.devices > 1 and "LOCAL_RANK" not in os.environ:
        # every process trains with the settings chosen here (one probe, one plan)
        settings = resolved.config.settings()
        planned = {k: settings[k] for k in PLANNED_SETTINGS}
        return _torchrun(args.devices, [*args.argv, *settings_as_flags(planned)])
    res = train(resolved.config, runtime=resolved.runtime)
    if os.environ.get("RANK", "0") != "0":
        return 130 if res.interrupted else 0
    return _report_training(res, f"tileunet train ... --out {res.run_dir} --resume")


def _report_training(res: TrainResult, resume: str) -> int:
    """What a training command prints at its end (``resume``: the command that
    continues an interrupted run); its exit status."""
    val = ""
    if res.val_iou is not None:
        seg = f", SEG {res.val_seg:.4f}" if res.val_seg is not None else ""
        val = f"; kept iteration {res.kept_iteration}: val pixel IoU {res.val_iou:.4f}{seg}"
    print(f"{'interrupted' if res.interrupted else 'trained'}: {res.iterations} iterations "
          f"in {res.seconds / 60:.1f} min{val}; run in {res.run_dir}")
    if res.interrupted:
        print(f"resume with: {resume}", file=sys.stderr)
        return 130
    return 0


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
        if args.tta is True:
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
        format_stack,
        format_table,
        write_results,
    )
    from tileunet.io.outputs import refuse_existing

    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    out = Path(args.out or args.pred)
    for name in ("metrics.csv", "metrics.json"):  # named as evaluate writes them
        refuse_existing(out / name, args.overwrite)
    chosen = args.metric or list(DEFAULT_METRICS)
    if "isbi" in chosen:
        chosen = [m for m in chosen if m != "isbi"] + list(ISBI_METRICS)
    chosen = list(dict.fromkeys(chosen))  # each once, in the order given
    rows = evaluate(args.pred, args.gt, metrics=chosen, progress=not args.quiet,
                    jobs=args.jobs)
    print(format_table(rows))
    if stack := format_stack(rows):
        print(stack)
    csv_path, json_path = write_results(rows, out)
    print(f"wrote {csv_path} and {json_path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tileunet.demo import run_demo

    run_demo(args.out, minutes=args.minutes, size=args.size, seed=args.seed,
             device=args.device, overwrite=args.overwrite, progress=not args.quiet,
             iterations=args.iterations)
    return 0


COMMANDS = {"sizes": cmd_sizes, "weights": cmd_weights, "train": cmd_train, "replay": cmd_replay,
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
