"""The configuration of a training run: every setting, checked before any work.

A :class:`TrainConfig` is stored as the ``train`` entry of a run's ``config.json``; its
defaults are the paper's recipe. :mod:`tileunet.training.request` decides the settings a
person did not give (the plan, a resumed run, a start model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from tileunet.augment.params import AugmentConfig
from tileunet.inference.scale import check_scale
from tileunet.io.normalization import Normalization
from tileunet.model import NORMS, PADDINGS, UNet, UNetConfig, upgrade_network_fields

OPTIMIZERS = ("sgd", "adamw")


class ConfigError(ValueError):
    """A setting out of its range; ``field`` names the TrainConfig field (the command
    line turns it into the flag's name)."""

    def __init__(self, field: str, rule: str, value: Any) -> None:
        self.field, self.rule, self.value = field, rule, value
        super().__init__(f"{field} must be {rule}, got {value}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; stored as ``config.json`` in the run directory."""

    images: str
    masks: str
    out: str
    val_fraction: float = 0.2
    val_images: str | None = None  # an explicit validation set (then val_fraction is unused)
    val_masks: str | None = None
    # partial annotation: leave images out, or zero the weight of unannotated regions
    exclude: tuple[str, ...] = ()
    ignore: str | None = None
    iterations: int | None = None
    minutes: float | None = None
    # network (the paper's by default: UNetConfig's)
    width: int = UNetConfig.width
    depth: int = UNetConfig.depth
    num_classes: int = UNetConfig.num_classes
    padding: str = UNetConfig.padding
    dropout: float = UNetConfig.dropout
    norm: str = UNetConfig.norm
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
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    normalization: Normalization = field(default_factory=Normalization)
    # working resolution relative to the images' (tileunet.inference.scale): 0.5 trains and predicts
    # at half size, probabilities come back at full size
    scale: float = 1.0
    # start weights (fine-tuning): a run folder or model file; None: He initialisation
    init: str | None = None
    # which weights become model.safetensors: the "best" validation (Validation.score), or
    # the "last"
    keep: str = "best"
    # the plan that chose the settings above (tileunet.training.plan), kept for config.json
    plan: dict | None = None
    # bookkeeping
    val_every: int = 100
    # a resumable checkpoint at least this often (a killed run loses at most this much)
    checkpoint_minutes: float = 5.0
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    progress: bool = True

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
        if self.init is not None and self.resume:
            raise ValueError("init and resume exclude each other: a resumed run continues "
                             "from its own checkpoint")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be fp32, bf16 or auto, got {self.precision!r}")

    def _check_numbers(self) -> None:
        """Every number in its range (NaN fails every check), before any work."""
        def real(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        def whole(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        rules = [("width", whole(self.width) and self.width >= 1, "a whole number >= 1"),
                 ("depth", whole(self.depth) and 1 <= self.depth <= 8, "between 1 and 8"),
                 ("num_classes", whole(self.num_classes) and self.num_classes >= 2, ">= 2"),
                 ("padding", self.padding in PADDINGS, " or ".join(PADDINGS)),
                 ("norm", self.norm in NORMS, " or ".join(NORMS)),
                 ("dropout", real(self.dropout) and 0 <= self.dropout < 1, "in [0, 1)"),
                 ("lr", real(self.lr) and self.lr > 0, "> 0"),
                 ("momentum", real(self.momentum) and 0 <= self.momentum < 1, "in [0, 1)"),
                 ("weight_decay", real(self.weight_decay) and self.weight_decay >= 0, ">= 0"),
                 ("warmup", whole(self.warmup) and self.warmup >= 0, ">= 0"),
                 ("clip_grad", real(self.clip_grad) and self.clip_grad >= 0, ">= 0"),
                 ("w0", real(self.w0) and self.w0 >= 0, ">= 0"),
                 ("sigma", real(self.sigma) and self.sigma > 0, "> 0"),
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
                     whole(self.iterations) and self.iterations >= 1), ">= 1"),
                 ("checkpoint_minutes", real(self.checkpoint_minutes)
                  and self.checkpoint_minutes > 0, "> 0")]
        for name, ok, rule in rules:
            if not ok:
                raise ConfigError(name, rule, getattr(self, name))
        weights = self.class_weights
        if isinstance(weights, (tuple, list)) and not (
                len(weights) == self.num_classes and all(real(w) and w >= 0 for w in weights)
                and any(w > 0 for w in weights)):
            raise ConfigError("class_weights", f"{self.num_classes} numbers >= 0, not all 0",
                              ",".join(str(w) for w in weights))
        try:
            # (building even this small network draws its initial weights: a check must
            # leave the random numbers of the run alone)
            with torch.random.fork_rng(devices=[]):
                geometry = UNet(depth=self.depth, width=1, padding=self.padding)
            geometry.output_size(self.tile)
        except ValueError as e:  # the tile is used as given, never silently rounded
            raise ConfigError("tile", "a usable input size", f"{self.tile}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["normalization"] = self.normalization.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = upgrade_network_fields(d)
        known = {f.name for f in fields(cls)}
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
        return cls(**d)


__all__ = ["OPTIMIZERS", "ConfigError", "TrainConfig"]
