"""The configuration of a training run: every setting, checked before any work.

A :class:`TrainConfig` says what a run learns and from what; it holds the network as a
:class:`~tileunet.model.UNetConfig` and is stored as the ``train`` entry of the run's
``config.json``. Its defaults are the paper's recipe, and two that measured better on
frames left out by time: every image trains (none is held out for validation) and the
training tiles are also magnified (:data:`TRAIN_ZOOM`). How a run is carried out on this
machine (device, progress bars, resuming, how often a checkpoint is saved) is a
:class:`Runtime`, which is not saved. :mod:`tileunet.training.request` decides the
settings a person did not give (the plan, a resumed run, a start model).

Requests, plans and the command line name the settings flat (``width``, ``tile``,
``lr``, ...): :meth:`TrainConfig.from_settings` and :meth:`TrainConfig.settings` go
between the two forms.

>>> config = TrainConfig.from_settings(images="imgs", masks="masks", out="run",
...                                    iterations=10, width=8, depth=3, tile=92)
>>> config.network.width, config.settings()["width"], config.tile
(8, 8, 92)
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import torch

from tileunet.augment.params import AugmentConfig
from tileunet.inference.scale import check_scale
from tileunet.io.normalization import Normalization
from tileunet.model import NORMS, PADDINGS, UNet, UNetConfig, upgrade_network_fields

OPTIMIZERS = ("sgd", "adamw")
#: how masks are annotated: every pixel, or strokes and whole cells
ANNOTATIONS = ("dense", "sparse")
#: the settings that describe the network: UNetConfig's fields (its ``in_channels`` are
#: the training images' channels, not a setting)
NETWORK_SETTINGS = ("width", "depth", "num_classes", "padding", "dropout", "norm")
#: settings that older runs stored with their configuration and that are now a Runtime
RUNTIME_SETTINGS = ("device", "resume", "progress", "checkpoint_minutes", "live",
                    "replay")
#: the magnification range of the training tiles unless told otherwise: a new sequence's
#: cells differ in size from the annotated ones (benchmarks/RESULTS.md, "A new sequence,
#: estimated by leaving out time")
TRAIN_ZOOM = (0.8, 1.25)


def _real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class ConfigError(ValueError):
    """A setting out of its range; ``field`` names the TrainConfig field (the command
    line turns it into the flag's name)."""

    def __init__(self, field: str, rule: str, value: Any) -> None:
        self.field, self.rule, self.value = field, rule, value
        super().__init__(f"{field} must be {rule}, got {value}")


@dataclass(frozen=True)
class TrainConfig:
    """What a training run learns and from what; stored in ``config.json`` of the run."""

    images: str
    masks: str
    out: str
    # share of the images held out for validation; 0: every image trains and, with no
    # validation to choose by, the last step's weights are the model
    val_fraction: float = 0.0
    val_images: str | None = None  # an explicit validation set (then val_fraction is unused)
    val_masks: str | None = None
    # partial annotation: leave images out, or zero the weight of unannotated regions
    exclude: tuple[str, ...] = ()
    ignore: str | None = None
    iterations: int | None = None
    minutes: float | None = None
    # the network (the paper's by default); its in_channels become the images' channels
    network: UNetConfig = field(default_factory=UNetConfig)
    # optimisation
    tile: int = 572
    batch_size: int = 1
    # share of training tiles centred where the weight map is high (sampler.WeightedCentres;
    # 0: every tile centre uniform over the image, as the paper)
    weighted_tiles: float = 0.0
    # where training tiles are made: "auto" resamples them on the GPU when training on
    # CUDA (augment_on="device"), else on the CPU, in the training process or in
    # `workers` processes (None: 0 on a CPU, up to 6 beside a GPU)
    workers: int | None = None
    augment_on: str = "auto"
    optimizer: str = "sgd"  # "sgd" (the paper's, with momentum) or "adamw"
    lr: float = 0.003
    momentum: float = 0.99
    weight_decay: float = 0.0
    warmup: int = 50
    clip_grad: float = 1.0
    precision: str = "auto"
    # weight map (eq. 2)
    w0: float = 10.0
    sigma: float = 5.0
    class_weights: str | tuple[float, ...] | None = "balanced"
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(zoom=TRAIN_ZOOM))
    normalization: Normalization = field(default_factory=Normalization)
    # how the masks are annotated: "dense" (every pixel: 0 background, cell ids) or
    # "sparse" (strokes: 0 not annotated, 1 background, 2 cell, 3+ whole cells; see
    # tileunet.targets.sparse)
    annotation: str = "dense"
    # working resolution relative to the images' (tileunet.inference.scale): 0.5 trains and predicts
    # at half size, probabilities come back at full size
    scale: float = 1.0
    # start weights (fine-tuning): a run folder or model file; None: He initialisation
    init: str | None = None
    # which weights become model.safetensors: the "best" validation (Validation.score), or
    # the "last"
    keep: str = "best"
    # decay per step of an exponential moving average of the weights (0: none); with
    # one, the average is what is validated, kept and saved as the model
    ema: float = 0.0
    # the plan that chose the settings above (tileunet.training.plan), kept for config.json
    plan: dict | None = None
    # bookkeeping
    val_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        self._check_numbers()
        if self.iterations is None and self.minutes is None:
            raise ValueError("give iterations or minutes (or both) to bound training")
        if self.augment_on not in ("auto", "cpu", "device"):
            raise ValueError(f"augment_on must be auto, cpu or device, got {self.augment_on!r}")
        if self.augment_on == "device" and self.augment.interpolation != "bicubic":
            raise ValueError("augment_on='device' needs interpolation='bicubic', got "
                             f"{self.augment.interpolation!r}")
        if (self.val_images is None) != (self.val_masks is None):
            raise ValueError("give both val_images and val_masks, or neither")
        check_scale(self.scale)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep must be best or last, got {self.keep!r}")
        if self.annotation not in ANNOTATIONS:
            raise ConfigError("annotation", " or ".join(ANNOTATIONS), self.annotation)
        if self.annotation == "sparse" and self.network.num_classes != 2:
            raise ConfigError("annotation", "dense with more than two classes",
                              self.annotation)
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be fp32, bf16 or auto, got {self.precision!r}")

    def _check_numbers(self) -> None:
        """Every number in its range (NaN fails every check), before any work."""
        real, whole = _real, _whole
        check_network(self.settings())
        rules = [("lr", real(self.lr) and self.lr > 0, "> 0"),
                 ("momentum", real(self.momentum) and 0 <= self.momentum < 1, "in [0, 1)"),
                 ("weight_decay", real(self.weight_decay) and self.weight_decay >= 0, ">= 0"),
                 ("warmup", whole(self.warmup) and self.warmup >= 0, ">= 0"),
                 ("clip_grad", real(self.clip_grad) and self.clip_grad >= 0, ">= 0"),
                 ("w0", real(self.w0) and self.w0 >= 0, ">= 0"),
                 ("sigma", real(self.sigma) and self.sigma > 0, "> 0"),
                 ("ema", real(self.ema) and 0 <= self.ema < 1, "in [0, 1)"),
                 ("val_every", whole(self.val_every) and self.val_every >= 1, ">= 1"),
                 ("val_fraction", real(self.val_fraction) and 0 <= self.val_fraction < 1,
                  "in [0, 1)"),
                 ("batch_size", whole(self.batch_size) and self.batch_size >= 1, ">= 1"),
                 ("weighted_tiles", real(self.weighted_tiles)
                  and 0 <= self.weighted_tiles <= 1, "in [0, 1]"),
                 ("workers", self.workers is None or (
                     whole(self.workers) and self.workers >= 0), ">= 0"),
                 ("minutes", self.minutes is None or (real(self.minutes) and self.minutes > 0),
                  "> 0"),
                 ("iterations", self.iterations is None or (
                     whole(self.iterations) and self.iterations >= 1), ">= 1")]
        for name, ok, rule in rules:
            if not ok:
                raise ConfigError(name, rule, getattr(self, name))
        weights, k = self.class_weights, self.network.num_classes
        if isinstance(weights, (tuple, list)) and not (
                len(weights) == k and all(_real(w) and w >= 0 for w in weights)
                and any(w > 0 for w in weights)):
            raise ConfigError("class_weights", f"{k} numbers >= 0, not all 0",
                              ",".join(str(w) for w in weights))
        try:
            # (building even this small network draws its initial weights: a check must
            # leave the random numbers of the run alone)
            with torch.random.fork_rng(devices=[]):
                geometry = UNet(depth=self.network.depth, width=1,
                                padding=self.network.padding)
            geometry.output_size(self.tile)
        except ValueError as e:  # the tile is used as given, never silently rounded
            raise ConfigError("tile", "a usable input size", f"{self.tile}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["normalization"] = self.normalization.to_dict()
        return d

    def settings(self) -> dict[str, Any]:
        """Every field, the network's named flat as requests and flags name them (its
        ``in_channels`` left out)."""
        network = {k: getattr(self.network, k) for k in NETWORK_SETTINGS}
        return {**network, **{f.name: getattr(self, f.name) for f in fields(self)
                              if f.name != "network"}}

    @classmethod
    def from_settings(cls, **settings: Any) -> TrainConfig:
        """The configuration of flat settings (``width=8, tile=92, lr=0.01, ...``); a
        network setting out of its range raises :class:`ConfigError` naming it."""
        network = {k: settings.pop(k) for k in NETWORK_SETTINGS if k in settings}
        check_network(network)
        return cls(network=UNetConfig(**network), **settings)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The configuration stored in a run's ``config.json`` (also as runs before the
        network was a UNetConfig stored it, flat and with the runtime options)."""
        d = stored_settings(d)
        known = {f.name for f in fields(cls)} | set(NETWORK_SETTINGS)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training options: {sorted(unknown)}")
        if isinstance(d.get("augment"), dict):
            d["augment"] = AugmentConfig(**{
                k: tuple(v) if isinstance(v, list) else v for k, v in d["augment"].items()
            })
        if isinstance(d.get("normalization"), dict):
            d["normalization"] = Normalization.from_dict(d["normalization"])
        for key in ("class_weights", "exclude"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls.from_settings(**d)


def stored_settings(stored: dict[str, Any]) -> dict[str, Any]:
    """The flat settings of a stored ``train`` entry: the network's fields next to the
    others (entries of older runs already are flat; their runtime options are left out,
    as are the network's in_channels, which the images decide)."""
    d = {k: v for k, v in stored.items() if k not in ("network", *RUNTIME_SETTINGS)}
    network = upgrade_network_fields(stored.get("network") or {})
    network.pop("in_channels", None)
    return {**upgrade_network_fields(d), **network}


def check_network(settings: dict[str, Any]) -> None:
    """The network settings among ``settings`` in their ranges; the first one out of
    its range raises :class:`ConfigError`."""
    s = settings
    rules = [("width", lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
             ("depth", lambda v: _whole(v) and 1 <= v <= 8, "between 1 and 8"),
             ("num_classes", lambda v: _whole(v) and v >= 2, ">= 2"),
             ("padding", lambda v: v in PADDINGS, " or ".join(PADDINGS)),
             ("norm", lambda v: v in NORMS, " or ".join(NORMS)),
             ("dropout", lambda v: _real(v) and 0 <= v < 1, "in [0, 1)")]
    for name, ok, rule in rules:
        if name in s and not ok(s[name]):
            raise ConfigError(name, rule, s[name])


@dataclass(frozen=True)
class Runtime:
    """How a run is carried out on this machine, not what it learns: not saved with the
    configuration.

    Parameters
    ----------
    device : str
        ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    resume : bool
        Continue the run from its checkpoint.
    progress : bool
        Progress bars and messages.
    checkpoint_minutes : float
        A resumable checkpoint at least this often: a killed run loses at most this much.
    live : bool
        Read the images and masks again when their files change, and train on the new
        set from the next step (:mod:`tileunet.training.live`).
    replay : str, optional
        A live run whose later versions of the training set this run switches to at
        the steps they joined at (:mod:`tileunet.training.replay`).
    """

    device: str = "auto"
    resume: bool = False
    progress: bool = True
    checkpoint_minutes: float = 5.0
    live: bool = False
    replay: str | None = None

    def __post_init__(self) -> None:
        if not (_real(self.checkpoint_minutes) and self.checkpoint_minutes > 0):
            raise ConfigError("checkpoint_minutes", "> 0", self.checkpoint_minutes)
        if self.live and self.replay is not None:
            raise ValueError("live and replay exclude each other: a replay's versions "
                             "are the recorded ones")


def default_settings() -> dict[str, Any]:
    """Every setting's default (TrainConfig's), flat."""
    defaults = {f.name: f.default for f in fields(TrainConfig)
                if f.default is not MISSING}
    defaults.update({f.name: f.default_factory() for f in fields(TrainConfig)
                     if f.default_factory is not MISSING and f.name != "network"})
    return {**{k: getattr(UNetConfig, k) for k in NETWORK_SETTINGS}, **defaults}


__all__ = ["ANNOTATIONS", "NETWORK_SETTINGS", "OPTIMIZERS", "RUNTIME_SETTINGS", "TRAIN_ZOOM",
           "ConfigError", "Runtime", "TrainConfig", "check_network", "default_settings",
           "stored_settings"]
