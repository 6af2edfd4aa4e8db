"""A training run as a person asks for it, resolved into the configuration it trains with.

A :class:`TrainRequest` says what a person asks for: the data, the budget, any setting
they want fixed, the recipe, a start model, or to resume. :func:`resolve` makes every
decision that turns it into a :class:`~tileunet.training.config.TrainConfig`: the settings
given win; a resumed run keeps the settings it started with; with a time budget and
``recipe="auto"`` the plan (:mod:`tileunet.training.plan`) chooses the rest for this
machine; otherwise the paper's recipe does. A start model fixes the network it needs.

``tileunet train``, the napari viewer and Python all go through :func:`resolve`, so the
same request makes the same plan and the same configuration everywhere. Errors name the
setting (a :class:`~tileunet.training.config.ConfigError` carries it); the command line
turns it into its flag.

>>> request = TrainRequest(images="imgs", masks="masks", out="run", iterations=10,
...                        settings={"width": 8, "depth": 3, "tile": 92})
>>> config = resolve(request).config          # no time budget: the paper's recipe
>>> config.network.width, config.network.depth, config.optimizer, config.momentum
(8, 3, 'sgd', 0.99)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tileunet.checkpoint import read_model_config
from tileunet.targets.sparse import painted_cells
from tileunet.training import plan as planning
from tileunet.training.config import (
    NETWORK_SETTINGS,
    ConfigError,
    Runtime,
    TrainConfig,
    default_settings,
)
from tileunet.training.loop import Hooks, TrainResult
from tileunet.training.loop import train as train_config
from tileunet.training.replay import replay_config

log = logging.getLogger(__name__)

#: recipes: "auto" plans with a time budget; "paper" is the paper's recipe
RECIPES = ("auto", "paper")
#: the settings a plan, a resumed run or the paper's recipe decide when not given
PLANNED_SETTINGS = (*planning.PLANNED, "val_every")
#: with a sparse annotation, the share of training tiles centred on painted pixels
#: (in proportion to their weight), unless given
SPARSE_WEIGHTED_TILES = 1.0
#: the network fields a start model fixes: its weights need them
START_NETWORK = ("width", "depth", "norm")
#: TrainConfig fields that a request holds itself, or that the resolution writes
_OWN = ("images", "masks", "out", "minutes", "iterations", "init", "plan")
#: the settings a request may give: the network's fields and every other TrainConfig
#: field, named flat
SETTINGS = (*NETWORK_SETTINGS,
            *(f.name for f in fields(TrainConfig) if f.name not in (*_OWN, "network")))


class NoBudget(ValueError):
    """A request without a budget (neither minutes nor iterations)."""


@dataclass(frozen=True)
class TrainRequest:
    """What to train on, for how long, and which settings are fixed.

    Parameters
    ----------
    images, masks : str
        Training images and their masks (folders or files, paired by name).
    out : str
        The run directory to write.
    minutes, iterations : float or int, optional
        The budget: training stops at the first that runs out (give at least one).
    recipe : {"auto", "paper"}
        ``"auto"``: with ``minutes``, the settings not given are planned for this
        machine and budget; ``"paper"``: the paper's recipe for them.
    init : str, optional
        A run directory or model file to start from (fine-tuning).
    resume : bool
        Continue the run in ``out`` from its checkpoint, with the settings it started
        with.
    settings : mapping
        Settings given explicitly (any of :data:`SETTINGS`, named flat: ``width``,
        ``tile``, ``lr``, ...): they win over the plan and the recipe.
    progress : bool
        Progress bars while training.
    device : str
        Where to train: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda:1"``...
    checkpoint_minutes : float
        A resumable checkpoint at least this often.
    live : bool
        Read the images and masks again when they change (:mod:`tileunet.training.live`).

    Notes
    -----
    ``resume``, ``progress``, ``device``, ``checkpoint_minutes`` and ``live`` say how
    the run is carried out (a :class:`~tileunet.training.config.Runtime`), not what it
    learns: they are not saved with its configuration.
    """

    images: str
    masks: str
    out: str
    minutes: float | None = None
    iterations: int | None = None
    recipe: str = "auto"
    init: str | None = None
    resume: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = True
    device: str = "auto"
    checkpoint_minutes: float = Runtime.checkpoint_minutes
    live: bool = False

    def __post_init__(self) -> None:
        if self.minutes is None and self.iterations is None:
            raise NoBudget("give minutes or iterations (or both) to bound training")
        if self.init is not None and self.resume:
            raise ValueError("init and resume exclude each other: a resumed run continues "
                             "from its own checkpoint")
        if self.recipe not in RECIPES:
            raise ConfigError("recipe", " or ".join(RECIPES), self.recipe)
        unknown = sorted(set(self.settings) - set(SETTINGS))
        if unknown:
            raise ValueError(f"unknown training setting {unknown[0]!r}; the settings are "
                             f"{', '.join(SETTINGS)}")

    def setting(self, name: str) -> Any:
        """The setting ``name`` as given, else its default."""
        return self.settings[name] if name in self.settings else default_settings()[name]

    def runtime(self) -> Runtime:
        """How the run is carried out (a setting out of its range raises ConfigError)."""
        return Runtime(device=self.device, resume=self.resume, progress=self.progress,
                       checkpoint_minutes=self.checkpoint_minutes, live=self.live)


@dataclass(frozen=True)
class Resolved:
    """The configuration a request trains with, the plan that chose it (None when
    nothing was planned), and how the run is carried out."""

    config: TrainConfig
    plan: planning.Plan | None
    runtime: Runtime


def paper_settings() -> dict[str, Any]:
    """The paper's recipe for the planned fields, and TrainConfig's validation interval."""
    return {**planning.PAPER, "val_every": TrainConfig.val_every}


def planned_settings(request: TrainRequest) -> tuple[dict[str, Any], planning.Plan | None]:
    """The planned TrainConfig fields (network, tiles, optimiser, validation interval):
    those given (a resumed run's own among them, see :func:`resumed_request`), the rest
    from the plan (``recipe="auto"`` with ``minutes``, not when resuming) or from the
    paper's recipe; and the plan, if one was made."""
    given = {k: v for k, v in request.settings.items() if k in PLANNED_SETTINGS}
    if request.init is not None and not request.resume:
        given = {**start_network(request.init, given), **given}
    base, plan = paper_settings(), None
    if (not request.resume and request.recipe == "auto" and request.minutes is not None
            and not set(planning.PLANNED) <= set(given)):
        plan = make_request_plan(request, fixed=given)
        base = plan.settings
    if request.setting("annotation") == "sparse" and not request.resume:
        # most tiles of sparse strokes would hold no painted pixel, and teach nothing
        base = {**base, "weighted_tiles": SPARSE_WEIGHTED_TILES}
    return {**base, **given}, plan


def start_network(init: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The network fields of the start model ``init``; settings that ask for another
    network are refused with both shapes named."""
    config = read_model_config(init)
    theirs = {k: config.get(k) for k in START_NETWORK}
    clash = [k for k in START_NETWORK if k in given and given[k] != theirs[k]]
    if clash:
        def fmt(values: Mapping[str, Any]) -> str:
            return ", ".join(f"{k.replace('_', ' ')} {values[k]}" for k in clash)
        raise ValueError(f"{init}: the start model has {fmt(theirs)}; the request asks "
                         f"for {fmt(given)}")
    return theirs


def make_request_plan(request: TrainRequest, fixed: Mapping[str, Any]) -> planning.Plan:
    """The plan of this request's budget, data and machine, with ``fixed`` kept."""
    from tileunet.device import resolve_device
    from tileunet.io.pairs import load_samples

    minutes = request.minutes
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise ConfigError("minutes", "> 0", minutes)
    num_classes = request.setting("num_classes")
    masks = None
    if num_classes == 2:  # object sizes choose the working scale
        sparse = request.setting("annotation") == "sparse"
        samples = load_samples(request.images, request.masks, binary_as_instances=not sparse)
        # strokes say nothing of the objects' size; whole painted cells do
        masks = [painted_cells(s.labels) if sparse else s.labels for s in samples]
        if sparse and not any(m.any() for m in masks):
            masks = None  # no size known: the images' own scale
    return planning.make_plan(minutes, in_channels=1, num_classes=num_classes,
                              device=resolve_device(request.device),
                              precision=request.setting("precision"), masks=masks,
                              fixed=dict(fixed))


def resumed_request(request: TrainRequest) -> TrainRequest:
    """A resumed run keeps every setting it started with that the request does not give
    again: the planned ones and the others alike (``--zoom`` or ``--ema`` left off the
    resuming command would otherwise change the run half-way)."""
    own = {"images": request.images, "masks": request.masks, "out": request.out,
           "minutes": request.minutes, "iterations": request.iterations}
    try:
        stored = TrainConfig.from_dict(
            {**json.loads((Path(request.out) / "config.json").read_text())["train"], **own})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return request  # the trainer says what is missing
    flat = {**{f.name: getattr(stored, f.name) for f in fields(TrainConfig)},
            **{k: getattr(stored.network, k) for k in NETWORK_SETTINGS}}
    kept = {k: v for k, v in flat.items() if k in SETTINGS}
    return replace(request, settings={**kept, **request.settings})


def config_of(request: TrainRequest, planned: Mapping[str, Any],
              plan: planning.Plan | None = None) -> TrainConfig:
    """The TrainConfig of a request with these planned fields (a setting out of its
    range raises :class:`~tileunet.training.config.ConfigError`)."""
    return TrainConfig.from_settings(
        images=request.images, masks=request.masks, out=request.out,
        minutes=request.minutes, iterations=request.iterations, init=request.init,
        plan=None if plan is None else plan.to_dict(), **{**request.settings, **planned})


def check(request: TrainRequest) -> None:
    """Every setting in its range before any work (no file read, nothing planned): the
    paper's recipe stands in for what a plan would choose. A tile is checked against
    the depth only where the depth is given too, since the plan may choose another."""
    given = {k: v for k, v in request.settings.items() if k in PLANNED_SETTINGS}
    if "depth" not in given:
        given.pop("tile", None)
    config_of(request, {**paper_settings(), **given})
    request.runtime()


def resolve(request: TrainRequest) -> Resolved:
    """Every decision of a training run: checked, planned, configured."""
    if request.resume:
        request = resumed_request(request)
    check(request)
    planned, plan = planned_settings(request)
    if plan is not None:
        log.info("training plan:\n%s", plan.table())
    return Resolved(config_of(request, planned, plan), plan, request.runtime())


def train(what: TrainRequest | TrainConfig, hooks: Hooks | None = None,
          runtime: Runtime | None = None) -> TrainResult:
    """Train as ``tileunet train`` does: a request is resolved first (planned for its
    budget); a TrainConfig trains as it is.

    Parameters
    ----------
    what : TrainRequest or TrainConfig
    hooks : Hooks, optional
        Stop switch and per-validation callback (the napari viewer's).
    runtime : Runtime, optional
        How a TrainConfig is carried out (a request says it itself).
    """
    if isinstance(what, TrainRequest):
        if runtime is not None:
            raise ValueError("a request says its runtime itself (device, progress, resume, "
                             "checkpoint_minutes)")
        resolved = resolve(what)
        return train_config(resolved.config, hooks, resolved.runtime)
    return train_config(what, hooks, runtime)


def replay(live_run: str | Path, out: str | Path, iterations: int | None = None,
           hooks: Hooks | None = None, runtime: Runtime | None = None) -> TrainResult:
    """Train ``out`` as the live run ``live_run`` trained: its settings, seed and start
    weights, on each recorded version of its training set from the step it joined at,
    for as many steps as it made or ``iterations``
    (:mod:`tileunet.training.replay`).

    Parameters
    ----------
    live_run : str or Path
        The folder of a run trained with ``live`` (it holds ``snapshots.json``).
    out : str or Path
        The new run directory.
    iterations : int, optional
        Steps to train (default: as many as the live run made).
    hooks : Hooks, optional
    runtime : Runtime, optional
        Device, progress, resume, checkpoint interval; ``live`` must be off.
    """
    cfg, _ = replay_config(live_run, out, iterations)
    runtime = replace(runtime or Runtime(), replay=str(live_run))
    return train_config(cfg, hooks, runtime)


__all__ = ["PLANNED_SETTINGS", "RECIPES", "SETTINGS", "SPARSE_WEIGHTED_TILES",
           "START_NETWORK", "NoBudget", "Resolved", "TrainRequest", "check", "config_of",
           "make_request_plan", "paper_settings", "planned_settings", "replay", "resolve",
           "resumed_request", "start_network", "train"]
