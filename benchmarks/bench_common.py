"""Helpers shared by the speed and memory benchmarks: machine description, timing,
matmul peak, FLOP counts, and a small trained model for the accuracy and memory checks."""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from tileunet import UNet

_HERE = Path(__file__).resolve().parent
# TILEUNET_BENCH_DIR redirects results and figures (the tests' quick runs use it)
_BASE = Path(os.environ["TILEUNET_BENCH_DIR"]) if os.environ.get("TILEUNET_BENCH_DIR") else None
OUT = _BASE / "out" if _BASE else _HERE / "out"
FIGURES = _BASE / "figures" if _BASE else _HERE / "figures"


def shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    try:
        return str(path.relative_to(_HERE.parent))
    except ValueError:
        return str(path)


def announce(device: torch.device) -> tuple[str, str]:
    """Print, and return, the command line that repeats this run and the machine line."""
    command = (f"python benchmarks/{Path(sys.argv[0]).name} "
               + shlex.join(sys.argv[1:])).rstrip()
    where = machine(device)
    print(f"command: `{command}`\nmachine: {where}\n")
    return command, where


def machine(device: torch.device) -> str:
    """One line naming the machine the figures come from."""
    torch_v = torch.__version__
    if device.type == "cuda":
        return (f"{torch.cuda.get_device_name(device)}, PyTorch {torch_v}, "
                f"Python {platform.python_version()}")
    flags = set()
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        pass
    isa = ("AVX512-BF16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags
           else "AVX2" if "avx2" in flags else platform.machine())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{_cpu_name()}, {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} threads, {isa}, PyTorch {torch_v}, "
            f"Python {platform.python_version()}, load {load:.1f} at start")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """Run ``fn`` once; its result and wall seconds (device work included)."""
    sync(device)
    t = time.perf_counter()
    result = fn()
    sync(device)
    return result, time.perf_counter() - t


def timings(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, float]:
    """(median, min) seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 3.0) -> float:
    """Best GFLOP/s of square matrix products in ``dtype`` (sizes 1024 to 4096 on a CPU,
    to 8192 on a GPU), repeated for about ``seconds``."""
    sizes = (1024, 2048, 4096) if device.type == "cpu" else (2048, 4096, 8192)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        _, first = timed(lambda a=a, b=b: a @ b, device)  # warm-up
        reps = max(2, min(50, int(seconds / len(sizes) / max(first, 1e-4))))
        for _ in range(reps):
            _, s = timed(lambda a=a, b=b: a @ b, device)
            best = max(best, 2 * n**3 / s / 1e9)
    return best


def tile_flops(net: UNet, tile: int, device: torch.device) -> int:
    """FLOPs of one forward pass of one ``tile`` x ``tile`` input (a multiply-add is 2)."""
    x = torch.zeros(1, net.config.in_channels, tile, tile, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    return int(counter.get_total_flops())


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Lay out, write as a 120-dpi PNG (creating the folder) and close ``fig``."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    pyplot().close(fig)


def median_min(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f})"


def trained_demo_model(path: Path | None, iterations: int, device: str) -> Path:
    """A model trained on synthetic cells: ``path`` if given, else the demo's network
    trained for ``iterations`` steps (kept in ``benchmarks/out/demo_model`` and reused;
    2,000 steps take about 5 minutes on a 2-core CPU, as in ``make demo``)."""
    if path is not None:
        return path
    from tileunet.demo import DEMO_NET, DEMO_TILE
    from tileunet.synthetic import write_synthetic_dataset
    from tileunet.training.config import Runtime, TrainConfig
    from tileunet.training.loop import train

    run = OUT / "demo_model" / "run"
    if (run / "model.safetensors").exists():
        return run
    data = OUT / "demo_model" / "data"
    images, masks = write_synthetic_dataset(data, n_images=12, shape=(256, 256),
                                            rng=np.random.default_rng(0))
    train(TrainConfig.from_settings(images=str(images), masks=str(masks), out=str(run),
                                    val_fraction=0.17, iterations=iterations, tile=DEMO_TILE,
                                    val_every=100, seed=0, **DEMO_NET),
          runtime=Runtime(device=device))
    return run


def synthetic_image(size: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` synthetic cell image (uint8) and its instance labels."""
    from tileunet.synthetic import synthetic_cells

    image, truth = synthetic_cells((size, size), rng=np.random.default_rng(seed))
    return (image * 255).astype(np.uint8), truth
