"""Benchmark: fast local weight map vs the naive one-EDT-per-cell reference.

Claim measured: :func:`tileunet.targets.weightmap.weight_map` (per-cell distance transforms on
the cell's bounding box grown by the cutoff) gives the values of
:func:`tileunet.targets.weightmap.weight_map_reference` (one full-image distance transform per
cell) to within 1e-4, far faster.

Two synthetic masks of touching cells are generated with a seeded generator: 512x512
with 100 cells and 2048x2048 with 1,500 cells. The naive map of the large mask takes
about ten minutes on one core, so by default its time is *estimated*: the reference
is timed on the same canvas holding only 8 and then 32 of the cells, and the straight
line through the two times (the reference costs one full-image transform per cell) is
extended to all cells. ``--full-naive`` runs it on the whole mask instead and also
reports the difference of the two maps.

Run ``python benchmarks/bench_weights.py --repeats 5``; the table goes to stdout,
progress to stderr.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
from scipy import ndimage as ndi

from tileunet.targets.instances import to_instances
from tileunet.targets.weightmap import weight_map, weight_map_reference


def touching_cells(size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` touching cells: Voronoi regions of random seeds cut to discs, random ids."""
    seeds = np.ones((size, size), dtype=bool)
    flat = rng.choice(size * size, size=count, replace=False)
    ys, xs = np.unravel_index(flat, (size, size))
    seeds[ys, xs] = False
    distance, (iy, ix) = ndi.distance_transform_edt(seeds, return_indices=True)
    ids = np.zeros((size, size), dtype=np.int32)
    ids[ys, xs] = rng.choice(np.arange(1, 50 * count), size=count, replace=False)
    labels = ids[iy, ix]
    labels[distance > 0.6 * size / math.sqrt(count)] = 0  # gaps between groups of cells
    return labels


def timed(function: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """Median wall time over ``repeats`` calls, and the last result."""
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def keep_cells(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids != 0]
    kept = rng.choice(ids, size=count, replace=False)
    return np.where(np.isin(labels, kept), labels, 0)


def processor_name() -> str:
    """CPU model from /proc/cpuinfo where there is one, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")
    parser.add_argument("--seed", type=int, default=2015, help="seed of the synthetic masks")
    parser.add_argument(
        "--full-naive",
        action="store_true",
        help="run the naive reference on the whole 2048x2048 mask (about 10 min)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")

    rng = np.random.default_rng(args.seed)
    rows = []
    for size, count in ((512, 100), (2048, 1500)):
        labels = touching_cells(size, count, rng)
        cells = len(np.unique(to_instances(labels))) - 1
        log(f"{size}x{size}, {cells} cells: fast path ...")
        weight_map(labels)  # warm-up
        fast_s, fast = timed(partial(weight_map, labels), args.repeats)
        if size <= 512 or args.full_naive:
            log(f"{size}x{size}: naive reference ...")
            naive_repeats = args.repeats if size <= 512 else 1
            naive_s, naive = timed(partial(weight_map_reference, labels), naive_repeats)
            naive_text = f"{naive_s:.2f}"
            diff_text = f"{float(np.max(np.abs(fast - naive))):.1e}"
        else:
            log(f"{size}x{size}: naive reference on 8 and 32 of the cells, extrapolated ...")
            few, more = (keep_cells(labels, k, rng) for k in (8, 32))
            t_few, _ = timed(partial(weight_map_reference, few), 1)
            t_more, _ = timed(partial(weight_map_reference, more), 1)
            naive_s = t_few + (t_more - t_few) / (32 - 8) * (cells - 8)
            naive_text = f"≈{naive_s:.0f} (est.)"
            diff_text = "n/a (`--full-naive`)"
        rows.append(
            f"| {size}×{size} | {cells} | {fast_s:.3f} | {naive_text} | "
            f"{naive_s / fast_s:.0f}× | {diff_text} |"
        )

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])
    print(f"Weight map (w0 = 10, sigma = 5, balanced class weights), seed {args.seed}\n")
    print("| size | cells | fast s (median) | naive s | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        f"\nmachine: {processor_name()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"load average {load_average()} (other work on the machine inflates wall times)"
    )
    print(f"command: `{command}` (fast: median of {args.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
