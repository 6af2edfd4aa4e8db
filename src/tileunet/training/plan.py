"""A training plan fitted to the machine and the time budget.

The paper's network (width 64, depth 5, one 572 tile per SGD step) learns DIC-HeLa and
ISBI 2012 well once it gets a few thousand steps, which a GPU gives in minutes but a
laptop CPU does not give in an hour. When the user sets a time budget and leaves the
network alone, :func:`make_plan` times a few training steps of candidate networks on
this machine (the probe, a small share of the budget) and picks the largest network
that still gets :data:`TARGET_STEPS` steps into the budget; on a fast machine that is
the paper's network. A smaller network also works at a lower resolution where the
objects in the training masks are large enough (:func:`choose_scale`), with tiles that
fit the images there. A smaller network trains with AdamW (without batch
normalisation, which validated erratically with one or two tiles per step), which
reached in a third of the steps what the paper's SGD with momentum 0.99 reached
(``benchmarks/RESULTS.md``, "30 minutes on a CPU"); the paper's network keeps the
paper's optimiser. Both follow the clock-driven cosine schedule. What the paper's method
is made of stays in every plan: valid convolutions, overlap-tile, the weight map and
elastic deformation.

``--recipe paper`` skips all of this: :data:`PAPER` is the paper's recipe, field by field.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from scipy import ndimage as ndi

from tileunet.device import autocast_dtype, training_memory_format
from tileunet.losses import weighted_cross_entropy
from tileunet.model import UNet
from tileunet.targets.instances import equivalent_diameters
from tileunet.training.config import ConfigError, TrainConfig, default_settings
from tileunet.training.loop import make_optimizer

log = logging.getLogger(__name__)

#: the fields a plan chooses; an explicit flag for any of them wins over the plan
PLANNED = ("width", "depth", "tile", "batch_size", "optimizer", "lr", "momentum",
           "weight_decay", "norm", "dropout", "scale", "weighted_tiles")
#: the paper's recipe: TrainConfig's defaults of those fields
PAPER = {k: v for k, v in default_settings().items() if k in PLANNED}
#: steps the plan wants to fit into the budget: on the CPU runs of benchmarks/RESULTS.md
#: more steps of small tiles kept paying well past the first few thousand
TARGET_STEPS = 10_000
#: largest share of the budget the probe may take
PROBE_SHARE = 0.02
#: share of the budget left for validation, writing files and the first steps' warm-up
RESERVE = 0.15
#: the optimiser of plans with a network smaller than the paper's
SMALL_NETWORK_OPTIMISER = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}
#: validations per run (the kept model is chosen among them)
VALIDATIONS = 10
#: working scales a plan may choose, from the images' own down
SCALES = (1.0, 0.5, 0.25)
#: at the working scale the small objects (10th percentile of equivalent diameters) stay
#: this many pixels across ...
MIN_OBJECT_PX = 32.0
#: ... and the gaps between objects (median width of the background) this many
MIN_GAP_PX = 8.0


@dataclass(frozen=True)
class Network:
    """A candidate: network size and the training tiles of one step."""

    width: int
    depth: int
    tile: int
    batch_size: int = 1


#: candidates from the cheapest to the paper's network; the smallest network also with
#: two 252 px tiles per step, so that CPU budgets get the steps the recipe needs (more
#: steps of fewer pixels learnt more than fewer steps of more pixels in the same
#: minutes: benchmarks/RESULTS.md, "30 minutes on a CPU")
CANDIDATES = (Network(16, 4, 252, 2), Network(16, 4, 572), Network(32, 4, 572),
              Network(32, 5, 572), Network(64, 5, 572))


@dataclass(frozen=True)
class Plan:
    """What :func:`make_plan` chose, and why."""

    settings: dict  # TrainConfig fields
    step_seconds: float | None  # measured for the chosen network (None: not probed)
    expected_steps: int | None
    probed: dict  # "WxD@T/B" -> seconds per step
    probe_seconds: float
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """The plan as a short table, printed before training starts."""
        s = self.settings
        rows = [("network", f"width {s['width']}, depth {s['depth']}"
                 f"{'' if s['norm'] == 'none' else ', ' + s['norm'] + ' norm'}"),
                ("tiles", f"{s['batch_size']} x {s['tile']} px per step"
                 + (f", images at scale {s['scale']:g}" if s["scale"] != 1 else "")),
                ("optimiser", f"{s['optimizer']}, lr {s['lr']:g}, then cosine to 0 at the end"),
                ("validation", f"every {s['val_every']} steps, if images are held out")]
        if self.step_seconds is not None:
            rows.append(("measured", f"{self.step_seconds:.3f} s per step -> about "
                         f"{self.expected_steps} steps"))
        rows.append(("why", self.reason))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"plan  {k:<{width}}  {v}" for k, v in rows)


def probe_step(net_spec: Network, in_channels: int, num_classes: int,
               device: torch.device, precision: str, steps: int = 2,
               norm: str = PAPER["norm"]) -> float:
    """Seconds per training step (forward, weighted loss, backward, the paper's
    optimiser) of ``net_spec`` with ``norm`` on ``device``: the best of ``steps`` steps
    after one warm-up step."""
    amp = autocast_dtype(precision, device)
    net = UNet(in_channels=in_channels, num_classes=num_classes, depth=net_spec.depth,
               width=net_spec.width, dropout=PAPER["dropout"],
               norm=norm).to(device)
    layout = training_memory_format(device, amp)
    net.to(memory_format=layout)
    tile = net.valid_input_size(net_spec.tile)
    out = net.output_size(tile)
    opt = make_optimizer(TrainConfig(images="", masks="", out="", iterations=1, lr=1e-4), net)
    gen = torch.Generator(device="cpu").manual_seed(0)
    n = net_spec.batch_size
    x = torch.randn(n, in_channels, tile, tile, generator=gen).to(device)
    x = x.contiguous(memory_format=layout)
    y = torch.randint(0, num_classes, (n, out, out), generator=gen).to(device)
    w = torch.ones(n, out, out, device=device)
    best = float("inf")
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = net(x)
        loss = weighted_cross_entropy(logits, y, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i > 0:  # the first step builds kernels and allocates
            best = min(best, time.perf_counter() - t)
    return best


def _key(n: Network) -> str:
    return f"{n.width}x{n.depth}@{n.tile}/{n.batch_size}"


def choose(budget_s: float, step_seconds: Callable[[Network], float],
           candidates: Sequence[Network] = CANDIDATES,
           target_steps: int = TARGET_STEPS) -> Plan:
    """Pick the largest candidate that fits ``target_steps`` steps into the budget,
    with the paper's optimiser for the paper's network and
    :data:`SMALL_NETWORK_OPTIMISER` for the others.

    ``step_seconds`` times one candidate (the probe; tests pass a fake). Candidates are
    timed from the cheapest up, and timing stops at the first that does not fit, or
    when the probe has used its share of the budget.
    """
    if not budget_s > 0:
        raise ValueError(f"the budget must be > 0 seconds, got {budget_s}")
    usable = budget_s * (1 - RESERVE - PROBE_SHARE)
    probed: dict[str, float] = {}
    chosen, chosen_s = None, None
    start = time.perf_counter()
    for cand in candidates:
        secs = step_seconds(cand)
        probed[_key(cand)] = round(secs, 4)
        if secs * target_steps > usable:
            break
        chosen, chosen_s = cand, secs
        if time.perf_counter() - start > PROBE_SHARE * budget_s:
            break
    if chosen is None:
        chosen, chosen_s = candidates[0], probed[_key(candidates[0])]
        reason = (f"even the smallest network gets only ~{int(usable / chosen_s)} of "
                  f"{target_steps} steps in this budget")
    elif chosen == candidates[-1]:
        reason = f"the largest network fits {target_steps} steps into the budget"
    else:
        reason = f"the largest network that fits {target_steps} steps into the budget"
    steps = int(usable / chosen_s)
    settings = {**PAPER, "width": chosen.width, "depth": chosen.depth, "tile": chosen.tile,
                "batch_size": chosen.batch_size,
                "val_every": max(20, steps // VALIDATIONS)}
    if (chosen.width, chosen.depth) != (PAPER["width"], PAPER["depth"]):
        settings.update(SMALL_NETWORK_OPTIMISER)
    return Plan(settings, chosen_s, steps, probed, round(time.perf_counter() - start, 2),
                reason)


def object_sizes(masks: Iterable[np.ndarray]) -> tuple[float, float]:
    """(10th percentile of the objects' equivalent diameters, median width of the
    background between them), in pixels, over instance label images."""
    diameters, gaps = [], []
    for labels in masks:
        diameters.extend(equivalent_diameters(labels))
        background = labels == 0
        if background.any():
            gaps.append(2.0 * float(np.median(ndi.distance_transform_edt(background)[
                background])))
    if not diameters:
        raise ValueError("the masks hold no objects")
    return float(np.percentile(diameters, 10)), float(np.median(gaps)) if gaps else math.inf


def choose_scale(small_object_px: float, gap_px: float) -> float:
    """The smallest of :data:`SCALES` at which objects and gaps stay wide enough."""
    fits = [s for s in SCALES if s * small_object_px >= MIN_OBJECT_PX
            and s * gap_px >= MIN_GAP_PX]
    return min(fits) if fits else 1.0


def fit_tile(cand: Network, side: float) -> Network:
    """``cand`` with a smaller tile where its tile is larger than one whose output
    covers an image ``side`` px wide, and as many more tiles per step as keep the
    step's output area (a 572 tile on a 256 px image would be mostly mirrored border)."""
    net = UNet(depth=cand.depth, width=1)  # the geometry does not depend on the width
    need = net.valid_input_size(math.ceil(side) + 2 * net.margin)
    if need >= cand.tile:
        return cand
    more = (net.output_size(cand.tile) / net.output_size(need)) ** 2
    return Network(cand.width, cand.depth, need, max(1, int(more)) * cand.batch_size)


def fix_network(candidates: Sequence[Network], fixed: dict) -> tuple[Network, ...]:
    """The candidates with the network fields the user fixed (``width``, ``depth``:
    flags, or the start model of ``--init``) set, each kept once, in order. The
    candidates with the paper's tile take the fixed fields; those with smaller tiles
    stay only where they already have them (they are variants of one network)."""
    given = {k: v for k, v in fixed.items() if k in ("width", "depth") and v is not None}
    kept = (replace(c, **given) if c.tile == PAPER["tile"] else c for c in candidates
            if c.tile == PAPER["tile"] or all(getattr(c, k) == v for k, v in given.items()))
    return tuple(dict.fromkeys(kept))


def fix_tiles(candidates: Sequence[Network], fixed: dict) -> tuple[Network, ...]:
    """The candidates with the tile and tiles per step the user fixed, so that the probe
    times what will run; a fixed tile drops the candidates whose depth it does not fit,
    and fitting none of them is an error."""
    given = {k: fixed[k] for k in ("tile", "batch_size") if fixed.get(k) is not None}
    kept = tuple(dict.fromkeys(replace(c, **given) for c in candidates))
    if "tile" not in given:
        return kept
    fits, why = [], ""
    for c in kept:
        try:
            UNet(depth=c.depth, width=1).output_size(c.tile)
            fits.append(c)
        except ValueError as e:
            why = why or str(e)
    if not fits:
        raise ConfigError("tile", "a usable input size", f"{given['tile']}: {why}")
    return tuple(fits)


def make_plan(budget_minutes: float, *, in_channels: int, num_classes: int,
              device: torch.device, precision: str,
              masks: Sequence[np.ndarray] | None = None, fixed: dict | None = None) -> Plan:
    """Probe this machine and choose (see :func:`choose`) among the candidates with
    the ``fixed`` network and tile fields (:func:`fix_network`, :func:`fix_tiles`), so
    that the probe times what will run; the plan's settings hold every
    ``fixed`` field, so that its table shows what will run. With the training masks
    (instance labels, two classes) the smaller networks work at the scale their object
    sizes allow (:func:`choose_scale`), with tiles fitted to the images there
    (:func:`fit_tile`; at a fixed scale, that scale); the paper's network keeps the
    paper's scale and tile."""
    paper_net, fixed = CANDIDATES[-1], fixed or {}
    candidates = fix_network(CANDIDATES, fixed)
    norm = fixed.get("norm") or PAPER["norm"]  # a norm layer costs time: probe with it
    scale, why = 1.0, ""
    if masks:
        small, gap = object_sizes(masks)
        scale = choose_scale(small, gap)
        side = min(min(m.shape) for m in masks) * (fixed.get("scale") or scale)
        if fixed.get("tile") is None:  # a fixed tile is trained as given
            candidates = tuple(c if c == paper_net else fit_tile(c, side)
                               for c in candidates)
        why = f"; objects >= {small:.0f} px (10th percentile), gaps {gap:.0f} px"
    candidates = fix_tiles(candidates, fixed)
    plan = choose(budget_minutes * 60, lambda n: probe_step(
        n, in_channels, num_classes, device, precision, norm=norm), candidates)
    given = {k: v for k, v in fixed.items() if k in PLANNED and v is not None}
    if (plan.settings["width"], plan.settings["depth"]) == (paper_net.width, paper_net.depth):
        return replace(plan, settings={**plan.settings, **given})
    if why and fixed.get("scale") is not None:
        why += f" (these allow scale {scale:g}; scale {fixed['scale']:g} as given)"
    elif why:
        why += f": scale {scale:g}"
    return replace(plan, settings={**plan.settings, "scale": scale, **given},
                   reason=plan.reason + why)


__all__ = ["CANDIDATES", "PAPER", "PLANNED", "SMALL_NETWORK_OPTIMISER", "Network", "Plan",
           "choose", "choose_scale", "fix_network", "fix_tiles", "make_plan", "object_sizes",
           "probe_step"]
