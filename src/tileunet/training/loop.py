"""Training with the paper's recipe: one large tile per step, weighted cross-entropy,
elastic augmentation, SGD with momentum 0.99, He init.

The paper gives no learning rate or schedule. We use SGD(lr=0.003, momentum=0.99) with a
linear warm-up and a cosine decay over the run (by iterations or by the time budget,
whichever ends first), and clip the gradient norm: with momentum 0.99 the effective step
is 100x the learning rate, and the first steps from He init are the ones that diverge
without warm-up and clipping. ``docs/design.md`` records the measurements behind it.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

import tileunet.training.ddp as ddp
from tileunet.checkpoint import (
    CHECKPOINT_FILE,
    LAST_FILE,
    MODEL_FILE,
    load_start_weights,
    load_training_state,
    save_model,
    save_training_state,
)
from tileunet.device import (
    autocast_dtype,
    available_memory,
    resolve_device,
    training_memory_format,
)
from tileunet.errors import DataError
from tileunet.evaluation.scores import pixel_iou, seg_score
from tileunet.inference.overlap import predict, tile_memory_bytes
from tileunet.inference.postprocess import instances_from_probability
from tileunet.inference.separation import choose_separation
from tileunet.interrupt import interrupts_deferred, interrupts_noted
from tileunet.io.outputs import atomic_write, clear_temporaries, is_temporary, write_json
from tileunet.losses import weighted_cross_entropy
from tileunet.model import UNet
from tileunet.plots import save_loss_figure  # not lazily: a Ctrl-C must not hit an import
from tileunet.training.config import Runtime, TrainConfig
from tileunet.training.live import Live, SnapshotLog, Watch
from tileunet.training.replay import Schedule, replay_config
from tileunet.training.sampler import (
    WeightedCentres,
    default_workers,
    device_tile_batches,
    tile_batches,
)
from tileunet.training.samples import Prepared, load_split, prepare_samples

log = logging.getLogger(__name__)


CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
LOSS_PLOT = "loss.png"
#: a folder of the run written before training starts, holding the data it trains on
#: (the napari viewer writes its annotations there)
INPUTS_DIR = "annotations"






@dataclass
class TrainResult:
    """What a training run did: where it wrote, how far it got, and how the kept
    weights validated."""

    run_dir: Path
    iterations: int
    seconds: float
    val_loss: float | None
    val_iou: float | None
    interrupted: bool
    #: the trained network (in eval mode, on the training device); not a file
    net: UNet | None = field(default=None, repr=False, compare=False)
    #: the iteration whose weights are the run's model (the best validation, or the last)
    kept_iteration: int | None = None
    #: validation SEG of the kept weights (two classes), None otherwise
    val_seg: float | None = None


@dataclass(frozen=True)
class Validation:
    """Scores of one validation: weighted loss, foreground pixel IoU (or accuracy for
    more classes) and, with two classes, SEG of the instances (the kept model's score)."""

    loss: float
    iou: float
    seg: float | None = None

    @property
    def score(self) -> float:
        return self.seg if self.seg is not None else self.iou

    def row(self) -> dict[str, float | str]:
        return {"val_loss": self.loss, "val_iou": self.iou,
                "val_seg": "" if self.seg is None else self.seg}

    def __str__(self) -> str:
        seg = f", SEG {self.seg:.4f}" if self.seg is not None else ""
        return f"val loss {self.loss:.4f}, val pixel IoU {self.iou:.4f}{seg}"


@dataclass
class Best:
    """The best-validating weights so far (a CPU copy), their iteration and scores."""

    iteration: int | None = None
    validation: Validation | None = None
    weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def score(self) -> float:
        return self.validation.score if self.validation is not None else -math.inf

    def offer(self, iteration: int, val: Validation, net: torch.nn.Module) -> None:
        if val.score > self.score:  # ties keep the earlier weights
            self.iteration, self.validation = iteration, val
            self.weights = {k: v.detach().to("cpu", copy=True)
                            for k, v in net.state_dict().items()}


def make_optimizer(cfg: TrainConfig, net: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW, at ``cfg.lr`` before the schedule."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)




# ------------------------------------------------------------------ data preparation










# ---------------------------------------------------------------------- training
@dataclass
class Hooks:
    """How a program around the trainer (a GUI) follows and stops a run.

    ``stop``: once set, the run stops after the step under way as on Ctrl-C (a
    checkpoint is saved; ``resume`` continues it). ``on_row``: called with each row of
    metrics.csv as it is made (every 10 steps and at each validation), in the thread
    that trains. ``on_weights``: called with a copy of the weights (on the CPU) and the
    step, at most every ``weights_every`` seconds (a live view predicts with them in
    another thread).
    """

    stop: threading.Event | None = None
    on_row: Callable[[dict[str, Any]], None] | None = None
    on_weights: Callable[[dict[str, torch.Tensor], int], None] | None = None
    weights_every: float = 5.0

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()


def train(cfg: TrainConfig, hooks: Hooks | None = None,
          runtime: Runtime | None = None) -> TrainResult:
    """Train a U-Net as configured; writes the run directory ``cfg.out``.

    ``runtime`` says how (device, progress, resume, checkpoint interval; the defaults
    of :class:`~tileunet.training.config.Runtime` without it).

    The run directory holds ``config.json``, ``model.safetensors`` (weights with the
    config in its metadata), ``checkpoint.safetensors`` (for ``resume``),
    ``metrics.csv`` and ``loss.png``. Ctrl-C, and ``hooks.stop``, save a checkpoint
    and return with ``interrupted=True``.

    Started by torchrun (several processes, see :mod:`tileunet.training.ddp`), each process
    trains a copy of the network on its own random tiles (``batch_size`` tiles each, so
    a step sees ``batch_size x processes`` tiles), DistributedDataParallel averages the
    gradients, and only rank 0 writes the run directory and shows progress.
    """
    runtime = runtime or Runtime()
    if cfg.init is not None and runtime.resume:
        raise ValueError("init and resume exclude each other: a resumed run continues "
                         "from its own checkpoint")
    run = Path(cfg.out)
    ckpt_path = run / CHECKPOINT_FILE
    if runtime.resume:
        if not ckpt_path.exists():
            again = " (the run stopped before its first one: start it again without " \
                    "--resume)" if unstarted_run(run) else ""
            raise DataError(f"{ckpt_path}: no checkpoint to resume from{again}")
    elif run.exists() and any(run.iterdir()) and not unstarted_run(run):
        raise DataError(f"{run}: already holds files; use --resume to continue that run "
                        "or choose another output folder")
    ranks, device = ddp.setup(resolve_device(runtime.device))
    try:
        return _train(cfg, runtime, ranks, device, run, ckpt_path, hooks or Hooks())
    finally:
        ddp.teardown()


def check_training_memory(cfg: TrainConfig, in_channels: int, device: torch.device) -> None:
    """Refuse tiles and batches whose training step cannot fit in the memory available
    on ``device``: a step keeps every activation of the forward pass for the backward
    pass and then makes their gradients, so it is estimated at twice the forward sum of
    :func:`tileunet.inference.overlap.tile_memory_bytes`, per tile."""
    with torch.device("meta"):  # the geometry only: no weights are allocated
        net = UNet.from_config(replace(cfg.network, in_channels=in_channels))
    need = 2 * tile_memory_bytes(net, cfg.tile) * cfg.batch_size
    have = available_memory(device)
    if need > have:
        raise DataError(f"training tiles of {cfg.tile} px, {cfg.batch_size} per step, need "
                        f"about {need / 1e9:.1f} GB of memory, {have / 1e9:.1f} GB are "
                        "available: lower --tile or --batch-size")


def unstarted_run(run: Path) -> bool:
    """A run folder this tool made that holds no trained weights yet: a start that was
    refused or stopped before its first checkpoint (only the weight-map cache, the
    config, temporary files, and the annotations a viewer wrote for it). A new start may
    take it over."""
    if not run.is_dir():
        return False
    ours = {"cache", CONFIG_FILE, METRICS_FILE, LOSS_PLOT, INPUTS_DIR}
    entries = list(run.iterdir())
    return bool(entries) and all(e.name in ours or is_temporary(e) for e in entries) and all(
        f.suffix == ".npz" or is_temporary(f) for f in (run / "cache").glob("*"))






def _build(cfg: TrainConfig, resume: bool, device: torch.device,
           layout: torch.memory_format, show: bool
           ) -> tuple[UNet, torch.optim.Optimizer]:
    """The network of ``cfg`` (He init, or the start weights of ``cfg.init``) and its
    optimiser."""
    net = UNet.from_config(cfg.network)
    if cfg.init is not None and not resume:
        _say(load_start_weights(net, cfg.init), show)
    net.to(device).to(memory_format=layout)
    return net, make_optimizer(cfg, net)


def _averager(cfg: TrainConfig, net: UNet) -> AveragedModel | None:
    """The exponential moving average of ``net``'s weights (and buffers) that
    ``cfg.ema`` asks for, updated after each step; None without one."""
    if cfg.ema == 0:
        return None
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)


def _restore(ckpt_path: Path, net: UNet, opt: torch.optim.Optimizer, ranks: ddp.Ranks,
             rng: np.random.Generator, seed: int, averaged: AveragedModel | None
             ) -> tuple[dict, list[dict[str, Any]], Best, np.random.Generator]:
    """Weights, optimiser state, moving average, clock, metrics, best model and random
    state of the checkpoint: each rank continues its own tile stream where it was saved."""
    state, rows, best = _load_checkpoint(ckpt_path, net, opt, averaged)
    per_rank = state.get("rng_ranks")
    if ranks.main:
        rng.bit_generator.state = state["rng"]
    elif per_rank is not None and len(per_rank) == ranks.world:
        rng.bit_generator.state = per_rank[ranks.rank]
    else:  # another number of processes than before: a fresh stream per rank
        rng = np.random.default_rng([seed, int(state["iteration"])])
    return state, rows, best, rng


def _run_state(it: int, seconds: float, rng_state: dict, dropout_rng: torch.Tensor,
               ranks: ddp.Ranks, gather: bool = True) -> dict:
    """What a checkpoint needs to continue: the step, the clock, the tiles' random
    state of every rank (a collective call under torchrun unless ``gather`` is False)
    and the CPU generator of the dropout masks (rank 0's)."""
    state = {"iteration": it, "seconds": seconds, "rng": rng_state, "dropout_rng": dropout_rng}
    if ranks.distributed and gather:
        state["rng_ranks"] = ddp.gather_objects(rng_state, ranks)
    return state


def _prepare_data(cfg: TrainConfig, ranks: ddp.Ranks, device: torch.device, run: Path,
                  show: bool) -> tuple[list[Prepared], list[Prepared], int]:
    """Training and validation samples with their weight maps, and the channel count;
    rank 0 computes the weight maps into the cache, the other ranks then read them."""
    train_s, val_s, ignore, in_channels = load_split(cfg)
    check_training_memory(cfg, in_channels, device)  # before the first file is written
    if ranks.main:
        (run / "cache").mkdir(parents=True, exist_ok=True)
        for folder in (run, run / "cache"):  # what killed writes left
            clear_temporaries(folder)
    for turn in (True, False):
        if turn == ranks.main:
            train_p = prepare_samples(train_s, cfg, run / "cache", ignore=ignore,
                                      progress=show)
            val_p = prepare_samples(val_s, cfg, run / "cache", desc="weight maps (val)",
                                    ignore=ignore, progress=show)
        ddp.barrier(ranks)
    return train_p, val_p, in_channels


def _tile_stream(cfg: TrainConfig, train_p: list[Prepared], device: torch.device,
                 rng: np.random.Generator, seed: int, start: int) -> Any:
    """Endless batches of training tiles, made where ``cfg`` says (:mod:`sampler`). The
    weights of a sparse annotation are resampled like its target (nearest), so that a
    stroke's weight never lands on an unannotated pixel."""
    centres = WeightedCentres(train_p, cfg.weighted_tiles)
    if cfg.annotation == "sparse":
        cfg = replace(cfg, augment=replace(cfg.augment, weights="nearest"))
    if augment_on_device(cfg, device):
        return device_tile_batches(train_p, cfg.tile, cfg.augment, cfg.batch_size, rng=rng,
                                   device=device, centres=centres)
    workers = default_workers(device) if cfg.workers is None else cfg.workers
    return tile_batches(train_p, cfg.tile, cfg.augment, cfg.batch_size, rng=rng,
                        workers=workers, seed=seed, start=start,
                        pin_memory=device.type == "cuda", centres=centres)


def _progress_bar(cfg: TrainConfig, it: int, seconds: float, show: bool) -> Any:
    """Steps, or with a time budget seconds (so its remaining time is the budget's);
    hidden unless ``show``."""
    if cfg.iterations is not None:
        return tqdm(total=cfg.iterations, initial=it, desc="train", unit="it",
                    disable=not show, dynamic_ncols=True)
    total = round(cfg.minutes * 60)
    return tqdm(total=total, initial=min(round(seconds), total), desc="train", unit="s",
                disable=not show, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s [{elapsed}<{remaining}"
                           "{postfix}]")


@dataclass
class _Loop:
    """The moving parts of one training run, and its steps: schedule, step, record,
    validate, checkpoint (:meth:`run`). ``show`` is True only where progress is shown
    (rank 0 of a run with progress bars)."""

    cfg: TrainConfig
    runtime: Runtime
    show: bool
    ranks: ddp.Ranks
    device: torch.device
    net: UNet
    model: torch.nn.Module  # net, or net wrapped for DistributedDataParallel
    opt: torch.optim.Optimizer
    amp: torch.dtype | None
    layout: torch.memory_format
    val_p: list[Prepared]
    run_dir: Path
    ckpt_path: Path
    rows: list[dict[str, Any]]
    best: Best
    rng: np.random.Generator
    it: int
    t0: float  # perf_counter at the run's (virtual) start: resumed runs keep their clock
    hooks: Hooks = field(default_factory=Hooks)
    live: Live | None = None
    train_p: list[Prepared] = field(default_factory=list)  # the set in use (live: latest)
    shared_at: float = float("-inf")
    ema: float | None = None  # of the training loss
    averaged: AveragedModel | None = None  # of the weights (cfg.ema)
    val: Validation | None = None
    saved_at: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        # the random states as of the last completed step (for resume)
        self.rng_state, self.dropout_rng = self.rng.bit_generator.state, torch.get_rng_state()

    @property
    def model_net(self) -> torch.nn.Module:
        """The weights that are validated, shown and kept: the moving average, if the
        run keeps one, else the network that trains."""
        return self.net if self.averaged is None else self.averaged.module

    def fraction(self) -> float:
        """How much of the budget (steps or time) is spent; all ranks follow rank 0's
        clock: the same learning rate, the same last step."""
        f = 0.0
        if self.cfg.iterations is not None:
            f = max(f, self.it / self.cfg.iterations)
        if self.cfg.minutes is not None:
            f = max(f, (time.perf_counter() - self.t0) / (self.cfg.minutes * 60))
        return ddp.broadcast_float(min(f, 1.0), self.ranks, self.device)

    def step(self, batch: tuple[torch.Tensor, ...], lr: float) -> torch.Tensor:
        """One optimiser step at ``lr``; the loss as all ranks together see it."""
        for g in self.opt.param_groups:
            g["lr"] = lr
        x, y, w = (t.to(self.device, non_blocking=True) for t in batch)
        x = x.contiguous(memory_format=self.layout)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                            enabled=self.amp is not None):
            logits = self.model(x)
        loss = weighted_cross_entropy(logits, y, w)
        mean_loss = ddp.mean(loss.detach(), self.ranks)
        if not torch.isfinite(mean_loss):
            raise FloatingPointError(
                f"loss became {mean_loss.item()} at iteration {self.it}; lower --lr")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.clip_grad)
        with interrupts_deferred():  # a signal here would save weights a step ahead
            self.opt.step()
            if self.averaged is not None:
                self.averaged.update_parameters(self.net)
            self.it += 1
            self.rng_state = self.rng.bit_generator.state
            self.dropout_rng = torch.get_rng_state()
        return mean_loss

    def record(self, value: float, lr: float, now: float, done: bool) -> None:
        """Validate when it is time (rank 0), add a metrics row, and write the metrics
        and the loss figure at each validation, so people can watch the run."""
        main, it = self.ranks.main, self.it
        validated = main and bool(self.val_p) and (it % self.cfg.val_every == 0 or done)
        if validated:
            self.val = validate(self.model_net, self.val_p, self.cfg.tile, self.cfg,
                                self.device, self.amp, progress=self.show)
            self.net.train()
            self.best.offer(it, self.val, self.model_net)
            _say(f"iteration {it}: train loss {self.ema:.4f}, {self.val}", self.show)
        if main and (it % 10 == 0 or done or validated):
            self.rows.append({"iteration": it, "seconds": round(now, 2), "train_loss": value,
                              "train_loss_ema": self.ema, "lr": lr,
                              **(self.val.row() if validated else {})})
            if self.hooks.on_row is not None:
                self.hooks.on_row(dict(self.rows[-1]))
        if main and it % self.cfg.val_every == 0 and not done:
            _write_metrics(self.run_dir / METRICS_FILE, self.rows, self.best.iteration)
            _plot_losses(self.run_dir / LOSS_PLOT, self.rows)

    def checkpoint_if_due(self, now: float) -> None:
        """A resumable checkpoint every ``runtime.checkpoint_minutes``: kill -9 loses at
        most that much."""
        due = time.perf_counter() - self.saved_at >= self.runtime.checkpoint_minutes * 60
        if ddp.broadcast_float(float(due), self.ranks, self.device):
            periodic = _run_state(self.it, now, self.rng_state, self.dropout_rng, self.ranks)
            if self.ranks.main:
                _save_checkpoint(self.ckpt_path, self.net, self.opt, periodic, self.rows,
                                 self.best, self.averaged)
            self.saved_at = time.perf_counter()

    def share_weights(self) -> None:
        """A copy of the weights for ``hooks.on_weights``, when it is time."""
        if self.hooks.on_weights is None:
            return
        now = time.perf_counter()
        if now - self.shared_at >= self.hooks.weights_every:
            self.shared_at = now
            weights = {k: v.detach().to("cpu", copy=True)
                       for k, v in self.model_net.state_dict().items()}
            self.hooks.on_weights(weights, self.it)

    def refresh(self, batches: Any) -> Any:
        """Live or replay: the training set read again when it is due (its files
        changed; a recorded version's step was reached); the batches of the set to
        train on from the next step."""
        if self.live is None or not self.live.due(self.it):
            return batches
        try:
            train_p, val_p = self.live.reload()
        except DataError as e:  # half written: the next change is read again
            _say(f"live: not read yet ({e})", self.show)
            return batches
        batches.close()
        self.train_p, self.val_p = train_p, val_p
        folder = self.live.log.add(self.it, self.live.sources())
        _say(f"live: {len(train_p)} training image(s) from iteration {self.it} "
             f"(kept in {folder})", self.show)
        return self.live.stream(train_p, self.it)

    def run(self, batches: Any, bar: Any) -> bool:
        """Step until the budget is spent; True when interrupted (Ctrl-C, SIGTERM)."""
        try:
            with interrupts_noted() as noted:
                self.net.train()
                batches = self.refresh(batches)  # a resumed replay: its version by now
                batch = next(batches)
                frac = self.fraction()
                while frac < 1.0:
                    lr = lr_at(self.cfg, self.it, frac)
                    mean_loss = self.step(batch, lr)
                    # draw the next tiles before waiting for the loss: on a GPU the work
                    # of making them is queued while the step still runs
                    batch = next(batches)
                    value = mean_loss.item()
                    self.ema = value if self.ema is None else 0.95 * self.ema + 0.05 * value
                    now = time.perf_counter() - self.t0
                    bar.update(max(0, min(round(now), bar.total) - bar.n)
                               if self.cfg.iterations is None else 1)
                    bar.set_postfix(it=self.it, loss=f"{self.ema:.4f}", lr=f"{lr:.2e}",
                                    refresh=False)
                    frac = self.fraction()
                    self.record(value, lr, now, done=frac >= 1.0)
                    if frac < 1.0:
                        noted.raise_if_any()  # one dropped inside a finaliser
                        if self.hooks.stopped():
                            raise KeyboardInterrupt("stop requested")
                        self.checkpoint_if_due(now)
                        self.share_weights()
                        batches = self.refresh(batches)
        except KeyboardInterrupt:
            if self.ranks.main:
                how = "stopped" if self.hooks.stopped() else "interrupted"
                _say(f"{how} at iteration {self.it}: saving a checkpoint to "
                     f"{self.ckpt_path}", True)
            return True
        finally:
            batches.close()  # the set of a live run's last version, if it changed
        return False


def _train(cfg: TrainConfig, runtime: Runtime, ranks: ddp.Ranks, device: torch.device,
           run: Path, ckpt_path: Path, hooks: Hooks) -> TrainResult:
    ddp.barrier(ranks)  # every rank has checked the run folder before rank 0 writes to it
    main = ranks.main
    show = runtime.progress and main  # progress bars only where they are shown
    amp = autocast_dtype(cfg.precision, device)
    # Denormal floats appear in the gradients of ReLU nets and slow x86 CPUs down for
    # whole phases of training; flushing them costs no accuracy.
    torch.set_flush_denormal(True)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    seed = ranks.seed(cfg.seed)
    rng = np.random.default_rng(seed)
    train_p, val_p, in_channels = _prepare_data(cfg, ranks, device, run, show)
    # the network takes the images' channels; config.json says so
    cfg = replace(cfg, network=replace(cfg.network, in_channels=in_channels))
    layout = training_memory_format(device, amp)
    net, opt = _build(cfg, runtime.resume, device, layout, show)
    averaged = _averager(cfg, net)
    extra = {"normalization": cfg.normalization.to_dict(), "train": cfg.to_dict(),
             "precision_used": "bf16" if amp is not None else "fp32", "tile": cfg.tile,
             "scale": cfg.scale, "train_images": [p.name for p in train_p],
             "val_images": [p.name for p in val_p]}
    state, rows, best = {"iteration": 0, "seconds": 0.0}, [], Best()
    if runtime.resume:
        state, rows, best, rng = _restore(ckpt_path, net, opt, ranks, rng, seed,
                                          averaged)
    model: torch.nn.Module = net
    if ranks.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
        torch.manual_seed(seed)  # dropout masks differ between ranks, like their tiles
    if "dropout_rng" in state and main:
        torch.set_rng_state(state["dropout_rng"])
    if main:
        write_json(run / CONFIG_FILE, {"model": net.config.to_dict(), **extra,
                                        "processes": ranks.world})
    it, seconds = int(state["iteration"]), float(state["seconds"])
    loop = _Loop(cfg, runtime, show, ranks, device, net, model, opt, amp, layout, val_p, run,
                 ckpt_path, rows, best, rng, it, time.perf_counter() - seconds, hooks,
                 train_p=train_p, averaged=averaged)
    if runtime.live or runtime.replay is not None:
        loop.live = _live(cfg, runtime, ranks, device, run, it, loop)
    batches = _tile_stream(cfg, train_p, device, rng, seed, it)
    bar = _progress_bar(cfg, it, seconds, show)
    try:
        interrupted = loop.run(batches, bar)
    finally:
        bar.close()
        batches.close()  # stops the worker processes, if any
    return _finish(loop, extra, interrupted)


def _live(cfg: TrainConfig, runtime: Runtime, ranks: ddp.Ranks, device: torch.device,
          run: Path, it: int, loop: _Loop) -> Live:
    """When to read the training set again (its files changed; in a replay, a step
    reached a recorded version), its record (the version the run starts from is its
    first entry), and how to read it and make tiles of it."""
    if ranks.distributed:
        raise ValueError("live: one training process only (the processes would read "
                         "the files at different steps)")
    read = [cfg]  # the configuration naming the files of the version in use

    def sources() -> list[Path]:
        return [Path(p) for p in (read[0].images, read[0].masks, read[0].ignore)
                if p is not None]
    log = SnapshotLog(run, sources())
    if runtime.replay is None:
        watch = Watch(sources())
        log.add(it)

        def due(step: int) -> bool:
            return watch.changed(time.perf_counter())
    else:
        schedule = Schedule(replay_config(runtime.replay, run, cfg.iterations)[1])
        # a resumed replay past a version's step switches to it before its first step
        switch = [schedule.due(it)]
        if not switch[0]:
            log.add(it)

        def due(step: int) -> bool:
            if not (schedule.due(step) or switch[0]):
                return False
            switch[0] = False
            v = schedule.current
            read[0] = replace(cfg, images=v.images, masks=v.masks, ignore=v.ignore)
            return True

    def reload() -> tuple[list[Prepared], list[Prepared]]:
        train_p, val_p, channels = _prepare_data(read[0], ranks, device, run, False)
        if channels != loop.net.config.in_channels:
            raise DataError(f"{read[0].images}: images of {channels} channel(s), the "
                            f"network takes {loop.net.config.in_channels}")
        return train_p, val_p

    def stream(train_p: list[Prepared], start: int) -> Any:
        return _tile_stream(cfg, train_p, device, loop.rng, ranks.seed(cfg.seed), start)
    return Live(due=due, log=log, reload=reload, sources=sources, stream=stream)


def _finish(loop: _Loop, extra: dict, interrupted: bool) -> TrainResult:
    """The final checkpoint, last.safetensors, model.safetensors (the kept weights),
    metrics and figure; the run's result."""
    net, ranks, it, val = loop.net, loop.ranks, loop.it, loop.val
    seconds = time.perf_counter() - loop.t0
    net.eval()
    # (an interrupted rank may be alone: no collective calls)
    state = _run_state(it, seconds, loop.rng_state, loop.dropout_rng, ranks,
                       gather=not interrupted)
    if ranks.distributed and not interrupted:
        ddp.check_same_weights(net, ranks)
    best = loop.best
    kept = best.iteration if loop.cfg.keep == "best" and best.weights is not None else it
    if ranks.main:
        _save_checkpoint(loop.ckpt_path, net, loop.opt, state, loop.rows, best,
                         loop.averaged)
        save_model(loop.run_dir / LAST_FILE, net, {**extra, "iteration": it})
        if loop.averaged is not None:  # the model is the average (last: the step's own)
            net.load_state_dict(loop.averaged.module.state_dict())
        if kept != it:
            net.load_state_dict(best.weights)
            val = best.validation
        if not interrupted or loop.hooks.stopped():  # a signal asks for a quick exit
            extra = {**extra, **_separation(loop)}
        save_model(loop.run_dir / MODEL_FILE, net, {**extra, "iteration": kept})
        _write_metrics(loop.run_dir / METRICS_FILE, loop.rows, kept)
        _plot_losses(loop.run_dir / LOSS_PLOT, loop.rows)
    if not interrupted:
        ddp.barrier(ranks)  # the files are written when any rank returns
    return TrainResult(loop.run_dir, it, seconds, val and val.loss, val and val.iou,
                       interrupted, net, kept, val and val.seg)


def _separation(loop: _Loop) -> dict[str, Any]:
    """``{"separation": ...}``: how the kept weights' probabilities become instances,
    chosen on the training images' annotated cells
    (:func:`~tileunet.inference.separation.choose_separation`), in pixels of the images'
    own scale; also written into config.json. Empty without instance labels."""
    samples = [s for s in loop.train_p if s.labels is not None and s.labels.any()]
    if loop.cfg.network.num_classes != 2 or not samples:
        return {}
    loop.net.eval()
    precision = "bf16" if loop.amp is not None else "fp32"
    probs = [predict(loop.net, s.image, tile=loop.cfg.tile, device=loop.device,
                     progress=False, precision=precision, channels=[1])[0] for s in samples]
    choice = choose_separation(probs, [s.labels for s in samples], progress=False)
    choice = choice.at_scale(loop.cfg.scale)
    _say(f"instances: {choice.describe()}", loop.show)
    path = loop.run_dir / CONFIG_FILE
    write_json(path, {**json.loads(path.read_text()), "separation": choice.to_dict()})
    return {"separation": choice.to_dict()}


def augment_on_device(cfg: TrainConfig, device: torch.device) -> bool:
    """Make the training tiles on the training device? ``"auto"``: on a CUDA device,
    unless worker processes were asked for or the spline interpolation (CPU only)."""
    if cfg.augment_on == "device":
        return True
    return (cfg.augment_on == "auto" and device.type == "cuda" and cfg.workers is None
            and cfg.augment.interpolation == "bicubic")


def _say(msg: str, progress: bool) -> None:
    if progress:
        tqdm.write(msg)
    log.info(msg)


def lr_at(cfg: TrainConfig, it: int, frac: float) -> float:
    """Linear warm-up over ``cfg.warmup`` steps, then a cosine that reaches zero exactly
    when the budget (time or steps) ends: the schedule that suits a fixed budget best."""
    warm = min(1.0, (it + 1) / cfg.warmup) if cfg.warmup > 0 else 1.0
    return cfg.lr * warm * 0.5 * (1.0 + math.cos(math.pi * frac))


@torch.no_grad()
def validate(net: UNet, samples: list[Prepared], tile: int, cfg: TrainConfig,
             device: torch.device, amp: torch.dtype | None = None,
             progress: bool = False) -> Validation:
    """Mean weighted cross-entropy, foreground pixel IoU and (two classes) SEG of the
    instances that ``predict`` would give, over whole images."""
    losses, ious, segs = [], [], []
    precision = "bf16" if amp is not None else "fp32"
    for s in tqdm(samples, desc="validate", unit="img", disable=not progress, leave=False):
        probs = predict(net, s.image, tile=tile, device=device, progress=False,
                        precision=precision)
        p = np.take_along_axis(probs, s.target[None].astype(np.int64), axis=0)[0]
        losses.append(float(np.mean(s.weights * -np.log(np.clip(p, 1e-7, 1.0)))))
        seen = s.weights > 0  # ignored (unannotated) pixels do not count
        pred = probs.argmax(0)
        if cfg.network.num_classes == 2:
            ious.append(pixel_iou((pred == 1) & seen, (s.target == 1) & seen))
            if s.labels is not None:  # SEG counts annotated objects only
                segs.append(seg_score(instances_from_probability(probs[1]), s.labels))
        else:
            ious.append(float(np.mean(pred[seen] == s.target[seen])))
    return Validation(float(np.mean(losses)), float(np.mean(ious)),
                      float(np.mean(segs)) if segs else None)


# ------------------------------------------------------------- files of the run


def _write_metrics(path: Path, rows: list[dict[str, Any]], kept: int | None) -> None:
    """One row per 10 steps and per validation; ``kept`` marks the row of the weights
    that are (so far) the run's model."""
    cols = ["iteration", "seconds", "train_loss", "train_loss_ema", "lr", "val_loss", "val_iou",
            "val_seg", "kept"]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=cols, restval="")
            wr.writeheader()
            wr.writerows({**r, "kept": "yes" if r["iteration"] == kept else ""} for r in rows)
    atomic_write(path, write)


def _plot_losses(path: Path, rows: list[dict[str, Any]]) -> None:
    save_loss_figure(rows, path)


def _save_checkpoint(path: Path, net: UNet, opt: torch.optim.Optimizer, state: dict,
                     rows: list[dict[str, Any]], best: Best,
                     averaged: AveragedModel | None) -> None:
    save_training_state(path, net, opt, state, rows, {
        "iteration": best.iteration,
        "validation": best.validation and asdict(best.validation)}, best.weights, averaged)


def _load_checkpoint(path: Path, net: UNet, opt: torch.optim.Optimizer,
                     averaged: AveragedModel | None
                     ) -> tuple[dict, list[dict[str, Any]], Best]:
    state, rows, got, weights = load_training_state(path, net, opt, averaged)
    best = Best()
    if weights and got.get("iteration") is not None and got.get("validation"):
        best = Best(int(got["iteration"]), Validation(**got["validation"]), weights)
    return state, rows, best


__all__ = ["CONFIG_FILE", "INPUTS_DIR", "Hooks", "TrainResult", "train", "validate"]
