"""Benchmark: prediction throughput against the machine's arithmetic limit.

The networks the training plan trains and the paper's, predicted on this machine.

Measured in one run on one machine:

1. **The limit.** The best square matrix product (:func:`bench_common.matmul_peak`) in
   fp32 and in bf16, at the start of the run, and the dtype ``precision="auto"`` becomes
   here. bf16 is measured only where the device computes it natively (``"auto"`` picks
   it: a CPU with AVX512-BF16, AMX or Arm BF16, or a GPU); elsewhere it is emulated and
   only ``--force-bf16`` times it. The FLOPs per output pixel of each network are
   PyTorch's FLOP count of one forward pass of the tile ``predict`` chooses
   (:func:`bench_common.tile_flops`, counted on the meta device) over the output pixels
   that tile contributes (its stride squared); the limit in Mpx/s is the peak over that.
2. **Throughput.** The networks :data:`tileunet.training.plan.CANDIDATES` can give (width
   16 depth 4, width 32 depth 4, width 32 depth 5) and the paper's (width 64, depth 5),
   random He-initialised weights as built, predicted by :func:`tileunet.predict` on a
   random image of each ``--sizes`` side with the tile and batch it chooses: fp32 and
   bf16, channels-last (``predict``'s layout on CPUs and GPUs) and contiguous NCHW
   (``predict``'s choice replaced for the call), and with 8-fold TTA (channels-last
   only). Each row: median and min of ``--repeats`` runs (TTA: ``--tta-repeats``) after a
   one-tile warm-up, megapixels of output per second, that against the limit, and the
   GFLOP/s of the tiles actually run against the peak of the precision used.
3. **Batches of tiles.** The width-16 network at the first size, ``precision="auto"``,
   channels-last: one tile per forward pass and all tiles in one, against ``predict``'s
   default (as many tiles as fit its 1 GiB budget).
4. **End to end.** A synthetic 1024 x 1024 cell image (``--e2e-size``) segmented as
   ``tileunet predict`` does it (percentile normalisation, the cell probability, seeded
   instances by :func:`tileunet.inference.postprocess.instances_from_probability`), no
   TTA, the model already in memory, each stage timed, against the goal of
   0.5 s: the width-16 depth-4 network with ``precision="auto"`` (and fp32 where that
   differs). Random weights draw no cells, so the instances come from a stand-in
   probability map (the image's training target, blurred, with noise) unless ``--model``
   gives a trained two-class model, whose network and probabilities are used instead.

Run ``python benchmarks/bench_throughput.py`` (2-core CPU: about 15 to 25 minutes, most
of it the paper network's TTA rows; ``--sizes 1024,2048`` about four times as long;
``--quick`` runs tiny networks on a tiny image in seconds, as the tests do) or with
``--device cuda``. The tables go to stdout and to ``table.md`` and ``metrics.json`` in
``benchmarks/out/bench_throughput/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from bench_common import OUT, announce, matmul_peak, shown, synthetic_image, tile_flops, timed
from scipy import ndimage as ndi

from tileunet import UNet, predict
from tileunet.checkpoint import load_model
from tileunet.device import autocast_dtype
from tileunet.inference import overlap
from tileunet.inference.overlap import (
    choose_tile,
    default_budget,
    tile_geometry,
    tile_memory_bytes,
)
from tileunet.inference.postprocess import instances_from_probability
from tileunet.inference.scale import predict_at_scale
from tileunet.io.normalization import Normalization
from tileunet.targets.instances import training_target
from tileunet.training.plan import CANDIDATES

GOAL_S = 0.5  # the goal for 1 Mpx end to end on 2 cores
TTA_TRANSFORMS = 8
#: tiny networks and sizes of ``--quick`` (the code paths, not the figures)
QUICK_NETWORKS = ((4, 3), (8, 3))
QUICK_SIZE = 96


@dataclass(frozen=True)
class Variant:
    """One way of calling ``predict``: precision, layout, TTA and tiles per batch."""

    precision: str  # "fp32" or "bf16"
    channels_last: bool = True
    tta: bool = False
    batch: int | None = None  # None: predict's default

    @property
    def layout(self) -> str:
        """The memory format's name in the tables."""
        return "channels-last" if self.channels_last else "NCHW"


def plan_networks() -> list[tuple[int, int]]:
    """(width, depth) of each distinct network the plan can choose, from the cheapest to
    the paper's (the last candidate, ``UNet()``'s defaults)."""
    return list(dict.fromkeys((c.width, c.depth) for c in CANDIDATES))


def network_name(width: int, depth: int) -> str:
    """The row name of a network: its kind ("paper", "plan" for a smaller network the
    plan can choose, "tiny" for ``--quick``'s), width and depth."""
    if (width, depth) == (CANDIDATES[-1].width, CANDIDATES[-1].depth):
        kind = "paper"
    else:
        kind = "plan" if (width, depth) in plan_networks() else "tiny"
    return f"{kind} {width}×{depth}"


def dtype_name(dtype: torch.dtype | None) -> str:
    """The precision name of an autocast dtype (None: no autocast, fp32)."""
    return "bf16" if dtype == torch.bfloat16 else "fp32" if dtype is None else str(dtype)


def quick_peak(device: torch.device, dtype: torch.dtype) -> float:
    """A rough matmul peak in GFLOP/s from 512 x 512 products (``--quick`` only: the full
    probe takes seconds per precision)."""
    a = torch.randn(512, 512, device=device).to(dtype)
    b = torch.randn(512, 512, device=device).to(dtype)
    timed(lambda: a @ b, device)
    return max(2 * 512**3 / timed(lambda: a @ b, device)[1] / 1e9 for _ in range(5))


def measure_peaks(device: torch.device, precisions: list[str], quick: bool) -> dict[str, float]:
    """The matmul peak (GFLOP/s) of each precision, measured now on ``device``."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {}
    for name in precisions:
        peaks[name] = (quick_peak(device, dtypes[name]) if quick
                       else matmul_peak(device, dtypes[name]))
        print(f"matmul peak {name}: {peaks[name]:.1f} GFLOP/s", file=sys.stderr, flush=True)
    return peaks


@contextlib.contextmanager
def memory_layout(channels_last: bool) -> Iterator[None]:
    """``predict`` with its own layout choice (channels-last on CPUs and GPUs), or with
    that choice replaced by contiguous NCHW: ``predict`` has no switch for it."""
    if channels_last:
        yield
        return
    with mock.patch.object(overlap, "inference_channels_last", lambda device, dtype: False):
        yield


def geometry(width: int, depth: int, size: int, device: torch.device,
             peaks: dict[str, float]) -> dict:
    """The tile ``predict`` chooses for a ``size`` x ``size`` image, its stride, the
    number of tiles and the default batch, the FLOPs of one tile and per output pixel,
    and the limit in Mpx/s of each precision."""
    net = UNet(width=width, depth=depth)
    tile = choose_tile(net, (size, size), default_budget(device))
    _, stride = tile_geometry(net, tile)
    tiles = math.ceil(size / stride) ** 2
    batch = max(1, min(tiles, default_budget(device) // tile_memory_bytes(net, tile)))
    meta = torch.device("meta")
    flops = tile_flops(net.to(meta), tile, meta)  # counted without computing
    per_px = flops / stride**2
    return {"network": network_name(width, depth), "width": width, "depth": depth,
            "size": size, "tile": tile, "stride": stride, "tiles": tiles, "batch": batch,
            "tile_gflop": flops / 1e9, "mflop_per_px": per_px / 1e6,
            "limit_mpx_s": {p: peak * 1e9 / per_px / 1e6 for p, peak in peaks.items()}}


def time_predict(net: UNet, image: np.ndarray, variant: Variant, tile: int, repeats: int,
                 device: torch.device) -> list[float]:
    """Seconds of ``repeats`` calls of ``predict`` in ``variant``, after one call on a
    one-tile crop with the same tile, precision and layout (kernels built, memory
    allocated)."""
    kwargs = dict(tile=tile, batch_size=variant.batch, precision=variant.precision,
                  progress=False)
    crop = image[: tile // 2, : tile // 2]
    with memory_layout(variant.channels_last):
        predict(net, crop, **{**kwargs, "batch_size": 1})
        seconds = []
        for _ in range(repeats):
            _, s = timed(lambda: predict(net, image, tta=variant.tta, **kwargs), device)
            seconds.append(s)
    return seconds


def throughput_row(geo: dict, variant: Variant, seconds: list[float],
                   peaks: dict[str, float]) -> dict:
    """Mpx/s, the share of the limit, GFLOP/s run and the share of the peak of one
    variant from its timings."""
    median = statistics.median(seconds)
    passes = TTA_TRANSFORMS if variant.tta else 1
    mpx_s = geo["size"] ** 2 / 1e6 / median
    limit = geo["limit_mpx_s"][variant.precision] / passes
    gflops = passes * geo["tiles"] * geo["tile_gflop"] / median
    return {"network": geo["network"], "size": geo["size"], "tile": geo["tile"],
            "tiles": geo["tiles"], "batch": variant.batch or geo["batch"],
            "precision": variant.precision, "layout": variant.layout, "tta": variant.tta,
            "seconds": seconds, "median_s": median, "min_s": min(seconds),
            "mpx_s": mpx_s, "limit_mpx_s": limit, "of_limit": mpx_s / limit,
            "gflops": gflops, "of_peak": gflops / peaks[variant.precision]}


def variants(precisions: list[str]) -> list[Variant]:
    """Each precision with channels-last and NCHW, then with TTA (channels-last)."""
    plain = [Variant(p, cl) for p in precisions for cl in (True, False)]
    return plain + [Variant(p, tta=True) for p in precisions]


def throughput(args: argparse.Namespace, device: torch.device, networks: list[tuple[int, int]],
               precisions: list[str], peaks: dict[str, float]) -> tuple[list[dict], list[dict]]:
    """Every network at every size in every variant: (geometry rows, throughput rows)."""
    geos, rows = [], []
    for width, depth in networks:
        torch.manual_seed(0)
        net = UNet(width=width, depth=depth).to(device).eval()  # He init, as built
        for size in args.sizes:
            geo = geometry(width, depth, size, device, peaks)
            geos.append(geo)
            image = np.random.default_rng(size).random((size, size), dtype=np.float32)
            for v in variants(precisions):
                repeats = args.tta_repeats if v.tta else args.repeats
                seconds = time_predict(net, image, v, geo["tile"], repeats, device)
                rows.append(throughput_row(geo, v, seconds, peaks))
                print(f"  {geo['network']} {size}² {v.precision} {v.layout}"
                      f"{' TTA' if v.tta else ''}: {statistics.median(seconds):.2f} s",
                      file=sys.stderr, flush=True)
        del net
    return geos, rows


def batches(args: argparse.Namespace, device: torch.device, auto: str,
            peaks: dict[str, float]) -> list[dict]:
    """The smallest network at the first size in ``auto``'s precision, channels-last:
    one tile per forward pass, the default batch, and all tiles in one pass."""
    width, depth = args.networks[0]
    size = args.sizes[0]
    geo = geometry(width, depth, size, device, peaks)
    torch.manual_seed(0)
    net = UNet(width=width, depth=depth).to(device).eval()
    image = np.random.default_rng(size).random((size, size), dtype=np.float32)
    rows = []
    for batch in dict.fromkeys((1, geo["batch"], geo["tiles"])):
        v = Variant(auto, batch=batch)
        seconds = time_predict(net, image, v, geo["tile"], args.repeats, device)
        rows.append(throughput_row(geo, v, seconds, peaks))
        print(f"  batch {batch}: {statistics.median(seconds):.2f} s", file=sys.stderr,
              flush=True)
    return rows


def stand_in_probability(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """A cell probability map such as a trained network gives for ``truth``: its training
    target (cells 1, background and the borders between touching cells 0) blurred by one
    pixel, with noise of standard deviation 0.05, clipped to [0, 1]."""
    prob = ndi.gaussian_filter(training_target(truth).astype(np.float32), 1.0)
    prob += np.random.default_rng(seed).normal(0.0, 0.05, prob.shape).astype(np.float32)
    return np.clip(prob, 0.0, 1.0)


def e2e_network(args: argparse.Namespace, device: torch.device
                ) -> tuple[UNet, Normalization, float, str]:
    """The network of the end-to-end run (``--model``'s, else the smallest plan network
    with random weights), its normalisation, its working scale and a name for the table."""
    if args.model is not None:
        net, extra = load_model(args.model, device=device)
        cfg = net.config
        return (net, Normalization.from_dict(extra.get("normalization", {})),
                float(extra.get("scale", 1.0)), f"{args.model.name} {cfg.width}×{cfg.depth}")
    width, depth = args.networks[0]
    torch.manual_seed(0)
    return (UNet(width=width, depth=depth).to(device).eval(), Normalization(), 1.0,
            network_name(width, depth))


def end_to_end(args: argparse.Namespace, device: torch.device, auto: str) -> list[dict]:
    """Normalise, predict the cell probability and draw the instances of a synthetic image,
    ``--repeats`` times after a warm-up, for ``precision="auto"`` and fp32 where that
    differs; seconds of each stage."""
    net, norm, scale, name = e2e_network(args, device)
    image, truth = synthetic_image(args.e2e_size)
    stand_in = None if args.model is not None else stand_in_probability(truth)
    rows = []
    for precision in ["auto"] if auto == "fp32" else ["auto", "fp32"]:
        stages: dict[str, list[float]] = {"normalise": [], "predict": [], "instances": []}
        objects = 0
        for r in range(args.repeats + 1):  # the first is the warm-up
            x, s_norm = timed(lambda: norm(image), device)
            fg, s_pred = timed(lambda x=x, p=precision: predict_at_scale(
                net, x, scale, channels=[1], precision=p, progress=False)[0], device)
            prob = fg if stand_in is None else stand_in
            labels, s_inst = timed(lambda prob=prob: instances_from_probability(prob), device)
            objects = int(labels.max())
            if r:
                for key, s in zip(stages, (s_norm, s_pred, s_inst), strict=True):
                    stages[key].append(s)
        total = [sum(t) for t in zip(*stages.values(), strict=True)]
        rows.append({"network": name, "size": args.e2e_size,
                     "precision": precision if precision != "auto" else f"auto ({auto})",
                     "probabilities": "stand-in" if stand_in is not None else "the model's",
                     "objects": objects, "stages": stages,
                     **{f"{k}_s": statistics.median(v) for k, v in stages.items()},
                     "total_s": statistics.median(total), "totals": total})
        print(f"  end to end {precision}: {statistics.median(total):.3f} s", file=sys.stderr,
              flush=True)
    return rows


def geometry_table(geos: list[dict], peaks: dict[str, float]) -> list[str]:
    """Markdown lines: per network and size, the tiling and the limit of each precision."""
    precs = list(peaks)
    lines = ["| network | size | tile × tiles | default batch | GFLOP per tile | "
             "MFLOP per output px | " + " | ".join(f"limit {p} (Mpx/s)" for p in precs) + " |",
             "|" + "---|" * (6 + len(precs))]
    for g in geos:
        limits = " | ".join(f"{g['limit_mpx_s'][p]:.3g}" for p in precs)
        lines.append(f"| {g['network']} | {g['size']}² | {g['tile']} × {g['tiles']} | "
                     f"{g['batch']} | {g['tile_gflop']:.3g} | {g['mflop_per_px']:.3g} | "
                     f"{limits} |")
    return lines


THROUGHPUT_HEADER = ["network", "size", "precision", "layout", "TTA", "tiles / batch",
                     "seconds, median (min)", "Mpx/s", "limit Mpx/s", "of limit", "GFLOP/s",
                     "of peak"]


def throughput_table(rows: list[dict]) -> list[str]:
    """Markdown lines of the throughput (and batch) rows."""
    lines = ["| " + " | ".join(THROUGHPUT_HEADER) + " |", "|" + "---|" * len(THROUGHPUT_HEADER)]
    for r in rows:
        lines.append(f"| {r['network']} | {r['size']}² | {r['precision']} | {r['layout']} | "
                     f"{'yes' if r['tta'] else 'no'} | {r['tiles']} / {r['batch']} | "
                     f"{r['median_s']:.3f} ({r['min_s']:.3f}) | {r['mpx_s']:.3g} | "
                     f"{r['limit_mpx_s']:.3g} | {100 * r['of_limit']:.0f} % | "
                     f"{r['gflops']:.1f} | {100 * r['of_peak']:.0f} % |")
    return lines


E2E_HEADER = ["network", "size", "precision", "probabilities", "normalise s", "predict s",
              "instances s", "total s, median", "objects", f"goal ≤ {GOAL_S} s"]


def e2e_table(rows: list[dict]) -> list[str]:
    """Markdown lines of the end-to-end rows, one stage per column."""
    lines = ["| " + " | ".join(E2E_HEADER) + " |", "|" + "---|" * len(E2E_HEADER)]
    for r in rows:
        met = "met" if r["total_s"] <= GOAL_S else f"{r['total_s'] / GOAL_S:.1f}× over"
        lines.append(f"| {r['network']} | {r['size']}² | {r['precision']} | "
                     f"{r['probabilities']} | {r['normalise_s']:.3f} | {r['predict_s']:.3f} | "
                     f"{r['instances_s']:.3f} | {r['total_s']:.3f} | {r['objects']} | "
                     f"{met} |")
    return lines


def report(results: dict) -> str:
    """The whole run as markdown: command, machine, limits, tables, time spent."""
    peaks = results["peaks"]
    lines = ["# Prediction throughput against the machine's limit", "",
             f"command: `{results['command']}`  ", f"machine: {results['machine']}  ",
             "matmul peak: " + ", ".join(f"{p} {v:.1f} GFLOP/s" for p, v in peaks.items())
             + f"; `precision=\"auto\"` is {results['auto']} here"
             + ("" if results["bf16_native"] else " (no native bf16: bf16 not timed)"), "",
             "## Networks and limits", "", *geometry_table(results["geometry"], peaks), "",
             f"## Throughput (median of {results['repeats']}, TTA "
             f"{results['tta_repeats']})", "", *throughput_table(results["throughput"]), ""]
    if results.get("batches"):
        lines += ["## Tiles per forward pass", "", *throughput_table(results["batches"]), ""]
    lines += ["## End to end, no TTA, model loaded", "", *e2e_table(results["end_to_end"]),
              "", f"time spent: {results['seconds'] / 60:.1f} min"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; ``--quick`` replaces networks, sizes and repeats by tiny ones."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="1024", help="comma-separated image sides")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per row (median)")
    ap.add_argument("--tta-repeats", type=int, default=1,
                    help="timed runs per TTA row (each runs the network 8 times)")
    ap.add_argument("--e2e-size", type=int, default=1024, help="side of the end-to-end image")
    ap.add_argument("--model", type=Path, help="a trained two-class model for the end-to-end "
                    "run (default: the width-16 plan network, random weights)")
    ap.add_argument("--force-bf16", action="store_true",
                    help="time bf16 also where the device emulates it (slow)")
    ap.add_argument("--skip-batches", action="store_true", help="leave out the batch rows")
    ap.add_argument("--quick", action="store_true",
                    help="tiny networks on a tiny image, one repeat: a smoke test")
    args = ap.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.networks = plan_networks()
    if args.quick:
        args.networks, args.sizes = list(QUICK_NETWORKS), [QUICK_SIZE]
        args.repeats = args.tta_repeats = 1
        args.e2e_size = QUICK_SIZE
    if not args.sizes or args.repeats < 1 or args.tta_repeats < 1:
        ap.error("--sizes needs a side, --repeats and --tta-repeats at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    args = parse_args(argv)
    device = torch.device(args.device)
    command, where = announce(device)
    auto = dtype_name(autocast_dtype("auto", device))
    native = auto == "bf16"
    precisions = ["fp32", "bf16"] if native or args.force_bf16 else ["fp32"]
    peaks = measure_peaks(device, precisions, args.quick)
    geos, rows = throughput(args, device, args.networks, precisions, peaks)
    results = {"command": command, "machine": where, "auto": auto, "bf16_native": native,
               "peaks": peaks, "repeats": args.repeats, "tta_repeats": args.tta_repeats,
               "networks": args.networks, "geometry": geos, "throughput": rows,
               "batches": [] if args.skip_batches else batches(args, device, auto, peaks),
               "end_to_end": end_to_end(args, device, auto)}
    results["seconds"] = time.perf_counter() - start
    text = report(results)
    print(text)
    out = OUT / "bench_throughput"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    (out / "metrics.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {shown(out / 'table.md')} and {shown(out / 'metrics.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
