"""The training request as ``tileunet train`` flags: one definition for every place
that reads or writes such a command line.

The command line parses these flags into a :class:`~tileunet.training.request.TrainRequest`;
so does the napari viewer, whose runs are recorded as the ``tileunet train`` command that
repeats them (:mod:`tileunet.napari.runs`). A setting's flag is its name with dashes
(``batch_size`` -> ``--batch-size``); :func:`flag_error` says a library error in those
terms.

>>> request = parse_train_argv(["--images", "i", "--masks", "m", "--out", "o",
...                             "--minutes", "30", "--width", "24"])
>>> request.minutes, dict(request.settings)
(30.0, {'width': 24})
>>> settings_as_flags({"batch_size": 2, "scale": 0.5})
['--batch-size', '2', '--scale', '0.5']
"""

from __future__ import annotations

import argparse
from typing import Any

from tileunet.augment.params import AugmentConfig
from tileunet.model import NORMS, PADDINGS, UNetConfig
from tileunet.training.config import (
    ANNOTATIONS,
    TRAIN_ZOOM,
    ConfigError,
    Runtime,
    TrainConfig,
    default_settings,
)
from tileunet.training.request import PLANNED_SETTINGS, SETTINGS, NoBudget, TrainRequest

#: flags whose value is not a setting of the same name
_NOT_SETTINGS = ("images", "masks", "out", "minutes", "iterations", "recipe", "init",
                 "resume", "device", "checkpoint_minutes", "live", "no_augment", "zoom",
                 "class_weights", "devices", "command", "quiet", "verbose", "argv")


def _add_settings(p: argparse.ArgumentParser) -> None:
    """The network, tile and optimiser flags of ``train``: those a plan chooses (the
    ones without a default here) and how tiles are made."""
    p.add_argument("--width", type=int, help="channels of level 1 (paper: 64)")
    p.add_argument("--depth", type=int, help="levels (paper: 5)")
    p.add_argument("--num-classes", type=int, default=UNetConfig.num_classes)
    p.add_argument("--padding", choices=PADDINGS, default=UNetConfig.padding)
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


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``tileunet train``, added to ``p``."""
    p.add_argument("--images", required=True, help="folder (or file) of training images")
    p.add_argument("--masks", required=True, help="folder of masks, paired by file stem")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--val-fraction", type=float, default=TrainConfig.val_fraction,
                   help="fraction of images held out for validation, e.g. 0.2; the best "
                        "validation's weights become the model (default 0: every image "
                        "trains, and the last step's weights are the model)")
    p.add_argument("--val-images", help="explicit validation images (instead of a split)")
    p.add_argument("--val-masks", help="masks of --val-images")
    p.add_argument("--exclude", action="append", default=[], metavar="NAME",
                   help="leave out images whose name matches (shell pattern, repeatable), "
                        "e.g. a partly annotated frame: --exclude t067")
    p.add_argument("--annotation", choices=ANNOTATIONS, default=TrainConfig.annotation,
                   help="dense (default): every pixel of a mask is annotated (0 background, "
                        "one id per cell); sparse: strokes, where only painted pixels count "
                        "(0 not annotated, 1 background stroke, 2 cell stroke, 3 and up "
                        "whole cells, one id each)")
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
    _add_settings(p)
    p.add_argument("--init", metavar="RUN_OR_MODEL",
                   help="start from these weights instead of He initialisation "
                        "(fine-tuning); another number of classes replaces the last layer")
    p.add_argument("--keep", choices=("best", "last"), default=TrainConfig.keep,
                   help="model.safetensors: the weights of the best validation (SEG with "
                        "two classes; default, where there is a validation) or of the "
                        "last step (always in last.safetensors)")
    p.add_argument("--ema", type=float, default=TrainConfig.ema, metavar="DECAY",
                   help="keep an exponential moving average of the weights, with this "
                        "decay per step (0.999: about the last 1,000 steps); the average "
                        "is validated and becomes the model (last.safetensors keeps the "
                        "last step's own weights). 0 (default): none")
    p.add_argument("--w0", type=float, default=TrainConfig.w0, help="border weight w0 (paper: 10)")
    p.add_argument("--sigma", type=float, default=TrainConfig.sigma,
                   help="border sigma in px (paper: 5)")
    p.add_argument("--class-weights", default=TrainConfig.class_weights,
                   help="'balanced', 'none', or comma-separated weights per class")
    p.add_argument("--no-augment", action="store_true", help="disable augmentation")
    p.add_argument("--zoom", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="magnify each training tile by a factor drawn log-uniformly from "
                        "[LOW, HIGH], for cells of other sizes than the annotated ones "
                        f"(default: {TRAIN_ZOOM[0]:g} {TRAIN_ZOOM[1]:g}; 1 1: none)")
    p.add_argument("--val-every", type=int,
                   help="iterations between validations (default: 10 per planned run, "
                        "else 100)")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="auto",
                   help="auto (default): bf16 autocast on GPUs and on CPUs with native bf16, "
                        "fp32 elsewhere")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    p.add_argument("--live", action="store_true",
                   help="read --images, --masks and --ignore again when their files change "
                        "and train on the new set from the next step, without a restart; "
                        "each version is kept in RUN/snapshots/ with the step it joined at "
                        "(snapshots.json)")
    p.add_argument("--checkpoint-minutes", type=float, default=Runtime.checkpoint_minutes,
                   metavar="M",
                   help="save a resumable checkpoint at least every M minutes (default 5); "
                        "Ctrl-C and SIGTERM also save one")


class RaisingParser(argparse.ArgumentParser):
    """For callers inside a program (the napari widget): a bad flag raises ValueError
    with argparse's message instead of printing the usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise ValueError(message)


def parse_class_weights(text: str) -> str | tuple[float, ...] | None:
    """``--class-weights``: 'balanced', 'none', or comma-separated weights per class."""
    if text == "balanced":
        return "balanced"
    if text.lower() == "none":
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--class-weights: expected 'balanced', 'none' or numbers like "
                         f"'1,3', got {text!r}") from None


def request_from_args(args: argparse.Namespace, progress: bool = True) -> TrainRequest:
    """The request of parsed ``train`` flags: the planned settings given, and every
    other setting whose value is not TrainConfig's default."""
    defaults = default_settings()
    settings: dict[str, Any] = {}
    for name, value in vars(args).items():
        if name in _NOT_SETTINGS or value is None:
            continue
        if name == "exclude":
            value = tuple(value)
        if name in PLANNED_SETTINGS or value != defaults[name]:
            settings[name] = value
    weights = parse_class_weights(args.class_weights)
    if weights != TrainConfig.class_weights:
        settings["class_weights"] = weights
    if args.no_augment:
        if args.zoom:
            raise ValueError("--zoom needs augmentation: leave out --no-augment")
        settings["augment"] = AugmentConfig(enabled=False)
    elif args.zoom:
        try:
            settings["augment"] = AugmentConfig(zoom=tuple(args.zoom))
        except ValueError:
            raise ValueError(f"--zoom must be 0 < LOW <= HIGH, got {args.zoom[0]:g} "
                             f"{args.zoom[1]:g}") from None
    unknown = set(settings) - set(SETTINGS)
    assert not unknown, unknown  # a flag added here without a TrainConfig field
    try:
        return TrainRequest(images=args.images, masks=args.masks, out=args.out,
                            minutes=args.minutes, iterations=args.iterations,
                            recipe=args.recipe, init=args.init, resume=args.resume,
                            settings=settings, progress=progress, device=args.device,
                            checkpoint_minutes=args.checkpoint_minutes, live=args.live)
    except ValueError as e:
        raise flag_error(e) from None


def parse_train_argv(argv: list[str]) -> TrainRequest:
    """The request of the arguments of ``tileunet train ARGV``; a bad flag raises
    ValueError."""
    parser = RaisingParser(prog="tileunet train")
    add_train_arguments(parser)
    return request_from_args(parser.parse_args(argv))


def flag_of(setting: str) -> str:
    """The flag of a setting: ``batch_size`` -> ``--batch-size``."""
    return "--" + setting.replace("_", "-")


def flag_error(error: ValueError) -> ValueError:
    """A library error in the command line's terms: a setting out of range names its
    flag; any other error is returned as it is."""
    if isinstance(error, ConfigError):
        return ValueError(f"{flag_of(error.field)} must be {error.rule}, got {error.value}")
    if isinstance(error, NoBudget):
        return ValueError("train: give --minutes or --iterations (or both)")
    return error


def settings_as_flags(settings: dict[str, Any]) -> list[str]:
    """Command-line flags that set these TrainConfig fields."""
    flags = []
    for key, value in settings.items():
        flag = flag_of(key)
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        else:
            flags += [flag, str(value)]
    return flags


__all__ = ["RaisingParser", "add_train_arguments", "flag_error", "flag_of",
           "parse_class_weights", "parse_train_argv", "request_from_args",
           "settings_as_flags"]
