"""Benchmark: training speed of the paper's network, and the data pipeline on its own.

Claims measured, all in one run on one machine:

1. **Step speed.** One training step (forward, weighted cross-entropy, backward, SGD
   with momentum) of the paper's network (width 64, depth 5) on a 572 x 572 tile,
   batch 1, on the same pre-made tiles: the baseline as most reimplementations write
   it (fp32, NCHW) against tileunet's default (``precision="auto"``; channels-last on
   CUDA and for bf16 on a CPU, NCHW for fp32 on a CPU, see
   :func:`tileunet.device.training_memory_format`).
   Alternating blocks of ``--steps`` steps, ``--repeats`` times.
2. **Same convergence.** ``--iterations`` iterations of a whole training run twice from
   the same initial weights: the baseline loop (fp32, NCHW, tiles made in the training
   process between steps, the same learning rate schedule and gradient clipping as
   tileunet) and :func:`tileunet.train` with its defaults. On a CPU both draw the same
   stream of augmented tiles; beside a GPU tileunet makes its tiles in worker
   processes, each with its own random stream, so the tiles differ (same distribution).
   Both loss curves go into one PNG
   (``benchmarks/figures/train_loss_<device>.png``), with iterations per second of each
   whole run (tile making included).
3. **Data pipeline.** Augmented tiles per second (random tile, rotation, flips, elastic
   deformation, grey values; image, target and weight map) from each way tileunet can
   make them: in the training process, in worker processes, and resampled on the
   device itself (the default beside a GPU), against the steps per second of (1).

Training data: synthetic cells (``--images`` 512 x 512 images), so it runs anywhere.
Run ``python benchmarks/bench_train.py`` (CPU: about 25 min) or with ``--device cuda``
and more iterations (``--iterations 1500``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import FIGURES, OUT, announce, pyplot, save_figure, shown, sync, timed

from tileunet import UNet, weighted_cross_entropy
from tileunet.augment.params import AugmentConfig
from tileunet.device import autocast_dtype, training_memory_format
from tileunet.io.pairs import load_samples
from tileunet.synthetic import write_synthetic_dataset
from tileunet.training.config import Runtime, TrainConfig
from tileunet.training.loop import augment_on_device, lr_at, train
from tileunet.training.sampler import default_workers, device_tile_batches, tile_batches
from tileunet.training.samples import prepare_samples

TILE = 572
NET = {"width": 64, "depth": 5}  # the paper's network; --width/--depth for quick checks


def make_step(net: UNet, opt: torch.optim.Optimizer, amp: torch.dtype | None,
              channels_last: bool, clip: float = 0.0):
    dev = next(net.parameters()).device

    def step(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> float:
        x, y, w = x.to(dev), y.to(dev), w.to(dev)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = net(x)
        loss = weighted_cross_entropy(logits, y, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        return loss

    return step


def new_net(seed: int, dev: torch.device, channels_last: bool) -> UNet:
    torch.manual_seed(seed)
    net = UNet(**NET).to(dev)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def step_speed(args, dev, prepared) -> dict:
    amp = autocast_dtype("auto", dev)
    batches = tile_batches(prepared, TILE, AugmentConfig(), 1,
                           rng=np.random.default_rng(1), workers=0)
    tiles = [next(batches) for _ in range(4)]
    ours_cl = training_memory_format(dev, amp) == torch.channels_last
    variants = {"baseline": (None, False), "tileunet": (amp, ours_cl)}
    steps = {}
    for name, (a, cl) in variants.items():
        net = new_net(0, dev, cl).train()
        opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.99)
        steps[name] = make_step(net, opt, a, cl)
        for t in tiles[:2]:  # warm-up
            steps[name](*t)
    rates: dict[str, list[float]] = {n: [] for n in variants}
    for r in range(args.repeats):
        for name in variants:
            def block(name=name) -> None:
                for i in range(args.steps):
                    steps[name](*tiles[i % len(tiles)])
            _, s = timed(block, dev)
            rates[name].append(args.steps / s)
            print(f"  repeat {r + 1}: {name} {args.steps / s:.3f} steps/s", file=sys.stderr,
                  flush=True)
    return {"amp": "fp32" if amp is None else str(amp), "channels_last": ours_cl,
            "steps": args.steps,
            "repeats": args.repeats, "rates": rates,
            "speedup": statistics.median(rates["tileunet"]) / statistics.median(rates["baseline"])}


def baseline_run(args, dev, prepared, cfg: TrainConfig) -> dict:
    """The reimplementation's loop: fp32, NCHW, tiles made between steps."""
    net = new_net(cfg.seed, dev, channels_last=False).train()
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    step = make_step(net, opt, None, False, clip=cfg.clip_grad)
    batches = tile_batches(prepared, cfg.tile, cfg.augment, 1,
                           rng=np.random.default_rng(cfg.seed), workers=0)
    losses = []
    sync(dev)
    t0 = time.perf_counter()
    for it in range(args.iterations):
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, it, it / args.iterations)
        losses.append(float(step(*next(batches)).detach()))
    sync(dev)
    seconds = time.perf_counter() - t0
    batches.close()
    return {"losses": losses, "seconds": seconds, "it_per_s": args.iterations / seconds}


def tileunet_run(args, cfg: TrainConfig) -> dict:
    res = train(cfg, runtime=Runtime(device=args.device, progress=False))
    rows = [r for r in _read_csv(Path(cfg.out) / "metrics.csv")]
    return {"iterations": [int(r["iteration"]) for r in rows],
            "losses": [float(r["train_loss"]) for r in rows],
            "seconds": res.seconds, "it_per_s": res.iterations / res.seconds}


def _read_csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def pipeline_speed(args, dev, prepared, cfg: TrainConfig) -> dict:
    """Tiles per second from each way of making them; which one tileunet uses here."""
    import os

    counts = ({int(c) for c in args.pipeline_workers.split(",")} if args.pipeline_workers
              else {0, default_workers(dev), max(0, (os.cpu_count() or 1) - 1)})
    makers: dict[str, object] = {}
    for w in sorted(counts):
        makers[f"workers={w}"] = lambda w=w: tile_batches(
            prepared, TILE, AugmentConfig(), 1, rng=np.random.default_rng(2), workers=w,
            seed=2)
    makers["device"] = lambda: device_tile_batches(prepared, TILE, AugmentConfig(), 1,
                                                   rng=np.random.default_rng(2), device=dev)
    res = {}
    for name, make in makers.items():
        batches = make()
        for _ in range(max(4, 2 * int(name.split("=")[1]) if "=" in name else 4)):
            next(batches)  # start the workers, fill their queues
        sync(dev)
        t = time.perf_counter()
        for _ in range(args.tiles):
            next(batches)
        sync(dev)
        res[name] = args.tiles / (time.perf_counter() - t)
        batches.close()
        print(f"  pipeline, {name}: {res[name]:.1f} tiles/s", file=sys.stderr, flush=True)
    if augment_on_device(cfg, dev):
        default = "device"
    else:
        default = f"workers={default_workers(dev) if cfg.workers is None else cfg.workers}"
    return {"default": default, "tiles_per_s": res}


def plot_losses(base: dict, ours: dict, label: str, path: Path) -> None:
    plt = pyplot()
    def ema(v: list[float], a: float = 0.9) -> list[float]:
        out, m = [], None
        for x in v:
            m = x if m is None else a * m + (1 - a) * x
            out.append(m)
        return out

    fig, ax = plt.subplots(figsize=(6, 4))
    it_b = np.arange(1, len(base["losses"]) + 1)
    ax.plot(it_b, base["losses"], color="C0", alpha=0.35 if len(it_b) >= 200 else 0.8,
            lw=0.8, label=None if len(it_b) >= 200 else "baseline, every iteration")
    ax.plot(it_b, ema(base["losses"]), color="C0",
            label=f"baseline fp32 NCHW ({base['it_per_s']:.2f} it/s), smoothed")
    # tileunet logs every 10th iteration: smooth with the same time constant, or, for a
    # short run, show the logged values themselves (the baseline's raw curve is beside)
    ours_label = f"tileunet default ({ours['it_per_s']:.2f} it/s)"
    if len(ours["iterations"]) >= 20:
        ax.plot(ours["iterations"], ours["losses"], color="C1", alpha=0.25, lw=0.8)
        ax.plot(ours["iterations"], ema(ours["losses"], 0.9**10), color="C1",
                label=ours_label)
    else:
        ax.plot(ours["iterations"], ours["losses"], "o", color="C1",
                label=ours_label + ", logged every 10th")
    ax.set_xlabel("iteration")
    ax.set_ylabel("weighted cross-entropy (training tiles)")
    ax.set_title(f"paper network, 572 tiles, same initial weights\n{label}", fontsize=8)
    ax.legend(loc="lower left" if len(it_b) < 200 else "best", fontsize=8)
    save_figure(fig, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=3, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=40, help="iterations per training run")
    ap.add_argument("--tiles", type=int, default=100, help="tiles timed in the pipeline test")
    ap.add_argument("--pipeline-workers",
                    help="comma-separated worker counts (default: 0, tileunet's default, "
                         "all cores but one)")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--width", type=int, default=64, help="network width (paper: 64)")
    ap.add_argument("--depth", type=int, default=5, help="network depth (paper: 5)")
    ap.add_argument("--skip", action="append", default=[],
                    choices=["step", "convergence", "pipeline"])
    args = ap.parse_args()
    global TILE
    NET.update(width=args.width, depth=args.depth)
    TILE = UNet(**NET).valid_input_size(572)
    dev = torch.device(args.device)
    torch.set_flush_denormal(True)  # tileunet.train does this; the baseline gets it too
    command, where = announce(dev)
    tag = "cuda" if dev.type == "cuda" else "cpu"
    work = OUT / f"bench_train_{tag}"
    images, masks = write_synthetic_dataset(work / "data", n_images=args.images,
                                            shape=(512, 512), rng=np.random.default_rng(0))
    cfg = TrainConfig.from_settings(images=str(images), masks=str(masks),
                                    out=str(work / "run"), iterations=args.iterations,
                                    val_fraction=0.0, tile=TILE, **NET)
    prepared = prepare_samples(load_samples(images, masks, cfg.normalization), cfg, None)
    results: dict = {"command": command, "machine": where}

    if "step" not in args.skip:
        r = results["step"] = step_speed(args, dev, prepared)
        b, o = (statistics.median(r["rates"][k]) for k in ("baseline", "tileunet"))
        print(f"### training step, 572 tile, batch 1: median of {r['repeats']} blocks of "
              f"{r['steps']} steps (min in brackets)\n")
        print("| | steps/s | s/step |")
        print("|---|---|---|")
        for name, label in (("baseline", "baseline (fp32, NCHW)"),
                            ("tileunet", f"tileunet default ({r['amp']}, "
                                         f"{'channels-last' if r['channels_last'] else 'NCHW'})")):
            v = r["rates"][name]
            print(f"| {label} | {statistics.median(v):.3f} ({min(v):.3f}) | "
                  f"{1 / statistics.median(v):.3f} |")
        print(f"\nspeed-up {r['speedup']:.2f}× ({o:.3f} / {b:.3f} steps/s)\n")

    if "convergence" not in args.skip:
        import shutil

        shutil.rmtree(work / "run", ignore_errors=True)
        base = baseline_run(args, dev, prepared, cfg)
        ours = tileunet_run(args, cfg)
        results["convergence"] = {"baseline": base, "tileunet": ours}
        fig = FIGURES / f"train_loss_{tag}.png"
        plot_losses(base, ours, where, fig)
        last = max(1, args.iterations // 5)
        print(f"### {args.iterations} training iterations from the same initial weights\n")
        print("| | it/s (whole run) | mean loss, first 20 % | mean loss, last 20 % |")
        print("|---|---|---|---|")
        n_o = max(1, len(ours["losses"]) // 5)
        print(f"| baseline (fp32, NCHW, tiles made in-process) | {base['it_per_s']:.3f} | "
              f"{np.mean(base['losses'][:last]):.4f} | {np.mean(base['losses'][-last:]):.4f} |")
        print(f"| `tileunet.train` default | {ours['it_per_s']:.3f} | "
              f"{np.mean(ours['losses'][:n_o]):.4f} | {np.mean(ours['losses'][-n_o:]):.4f} |")
        print(f"\nplot: {shown(fig)}\n")

    if "pipeline" not in args.skip:
        p = results["pipeline"] = pipeline_speed(args, dev, prepared, cfg)
        step_rate = (statistics.median(results["step"]["rates"]["tileunet"])
                     if "step" in results else float("nan"))
        print("### data pipeline on its own: 572 tiles with elastic deformation\n")
        print("| tile makers | tiles/s | tiles per training step (tileunet default) |")
        print("|---|---|---|")
        for name, rate in p["tiles_per_s"].items():
            if name == "device":
                who = f"resampled on the {dev.type.upper()} (`--augment-on device`)"
            else:
                w = int(name.split("=")[1])
                who = "the training process" if w == 0 else f"{w} worker processes"
            mark = " (tileunet's default here)" if name == p["default"] else ""
            print(f"| {who}{mark} | {rate:.1f} | {rate / step_rate:.1f} |")
        print()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"bench_train_{tag}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
