"""Benchmark: overlap-tile prediction of the paper's network against the naive loop.

Claims measured, all in one run on one machine:

1. **Speed.** The paper's network (width 64, depth 5, random weights) on a
   ``--size`` x ``--size`` image. The baseline is the loop most reimplementations
   write: the image mirror-padded once, one 572 x 572 tile at a time, fp32, NCHW,
   ``torch.no_grad``, tiles placed 388 px apart. Against it :func:`tileunet.inference.overlap`
   with its defaults (``precision="auto"``, channels-last, the largest tile within the
   memory budget, batched tiles, ``inference_mode``). The two alternate, ``--repeats``
   times each. Printed: seconds, megapixels/s, effective GFLOP/s (the FLOPs of the
   tiles actually run, counted by PyTorch's FLOP counter, over the wall time), the
   speed-up, and the fraction of the machine's matrix-multiply peak in the precision
   used, measured at the start of the same run.
2. **Accuracy guard.** A trained model (``--model``, default: the demo's network
   trained on synthetic cells for ``--train-iterations`` steps) on a synthetic image:
   ``precision="auto"`` and bf16 against fp32: fraction of pixels with the same class
   and the largest probability difference.
3. **Scaling.** Seconds against image size for ``--scaling`` sizes, with a PNG plot
   (``benchmarks/figures/predict_scaling_<device>.png``).

Run ``python benchmarks/bench_predict.py`` (CPU: about 45 min with the default
sizes, 8192 x 8192 alone ~25 min; ``--scaling 512,1024,2048`` for a short run) or
with ``--device cuda``. The tables go to stdout and ``benchmarks/out/bench_predict_*``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import (
    FIGURES,
    OUT,
    announce,
    matmul_peak,
    pyplot,
    save_figure,
    shown,
    synthetic_image,
    tile_flops,
    timed,
    trained_demo_model,
)

from tileunet import UNet, predict
from tileunet.checkpoint import load_model
from tileunet.device import autocast_dtype
from tileunet.inference.overlap import choose_tile, default_budget, tile_geometry
from tileunet.io.normalization import Normalization

NAIVE_TILE = 572


def _name(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def naive_predict(net: UNet, image: np.ndarray, device: torch.device) -> np.ndarray:
    """The textbook overlap-tile loop: pad once, one tile at a time, fp32, NCHW."""
    out = net.output_size(NAIVE_TILE)
    m = (NAIVE_TILE - out) // 2
    h, w = image.shape
    ny, nx = math.ceil(h / out), math.ceil(w / out)
    padded = np.pad(image, ((m, ny * out - h + m), (m, nx * out - w + m)), mode="reflect")
    probs = np.zeros((net.config.num_classes, ny * out, nx * out), np.float32)
    net.eval()
    with torch.no_grad():
        for i in range(ny):
            for j in range(nx):
                tile = padded[i * out : i * out + NAIVE_TILE, j * out : j * out + NAIVE_TILE]
                x = torch.from_numpy(np.ascontiguousarray(tile))[None, None].to(device)
                p = torch.softmax(net(x), dim=1)[0].cpu().numpy()
                probs[:, i * out : (i + 1) * out, j * out : (j + 1) * out] = p
    return probs[:, :h, :w]


def naive_tiles(size: int, net: UNet) -> int:
    return math.ceil(size / net.output_size(NAIVE_TILE)) ** 2


def default_tiles(size: int, net: UNet, device: torch.device) -> tuple[int, int]:
    """(tile side, number of tiles) that ``predict`` chooses by default."""
    tile = choose_tile(net, (size, size), default_budget(device))
    _, stride = tile_geometry(net, tile)
    return tile, math.ceil(size / stride) ** 2


def speed(args: argparse.Namespace, dev: torch.device) -> dict:
    torch.manual_seed(0)
    net = UNet().to(dev).eval()
    amp = autocast_dtype("auto", dev)
    peak32 = matmul_peak(dev, torch.float32)
    peak_auto = peak32 if amp is None else matmul_peak(dev, amp)
    peak_naive = peak32
    if dev.type == "cuda" and torch.backends.cudnn.allow_tf32:
        # PyTorch runs float32 convolutions in TF32 on CUDA unless told otherwise, so the
        # naive loop is held against the TF32 matmul peak
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        peak_naive = matmul_peak(dev, torch.float32)
        torch.backends.cuda.matmul.allow_tf32 = old
    print(f"matmul peak fp32 {peak32:.1f} GFLOP/s"
          + ("" if amp is None else f", {amp} {peak_auto:.1f} GFLOP/s"), file=sys.stderr)
    rng = np.random.default_rng(0)
    image = rng.random((args.size, args.size), dtype=np.float32)
    tile, n_tiles = default_tiles(args.size, net, dev)
    flops_naive = naive_tiles(args.size, net) * tile_flops(net, NAIVE_TILE, dev)
    flops_ours = n_tiles * tile_flops(net, tile, dev)
    warm = image[:400, :400]
    naive_predict(net, warm, dev)
    predict(net, warm, progress=False)
    t_naive, t_ours = [], []
    p_naive = p_ours = None
    for r in range(args.repeats):
        p_naive, s = timed(lambda: naive_predict(net, image, dev), dev)
        t_naive.append(s)
        print(f"  repeat {r + 1}: naive {s:.2f} s", file=sys.stderr, flush=True)
        p_ours, s = timed(lambda: predict(net, image, progress=False), dev)
        t_ours.append(s)
        print(f"  repeat {r + 1}: tileunet {s:.2f} s", file=sys.stderr, flush=True)
    mn, mo = statistics.median(t_naive), statistics.median(t_ours)
    mpx = args.size**2 / 1e6
    diff = float(np.abs(p_naive - p_ours).max())
    return {
        "size": args.size, "repeats": args.repeats, "tile": tile, "tiles": n_tiles,
        "naive_tiles": naive_tiles(args.size, net), "peak_fp32": peak32,
        "peak_auto": peak_auto, "auto_dtype": _name(amp),
        "naive_s": t_naive, "ours_s": t_ours, "naive_mpx_s": mpx / mn, "ours_mpx_s": mpx / mo,
        "naive_gflop": flops_naive / 1e9, "ours_gflop": flops_ours / 1e9,
        "naive_gflops": flops_naive / mn / 1e9, "ours_gflops": flops_ours / mo / 1e9,
        "speedup": mn / mo, "naive_peak_frac": flops_naive / mn / 1e9 / peak_naive,
        "peak_naive": peak_naive,
        "ours_peak_frac": flops_ours / mo / 1e9 / peak_auto, "max_diff": diff,
    }


def compile_check(dev: torch.device) -> dict:
    """One 572 tile through the paper network: eager against ``torch.compile``."""
    torch.manual_seed(0)
    net = UNet().to(dev).eval().to(memory_format=torch.channels_last)
    x = torch.randn(1, 1, NAIVE_TILE, NAIVE_TILE, device=dev).contiguous(
        memory_format=torch.channels_last)
    amp = autocast_dtype("auto", dev)

    def best(fn, n: int = 5) -> float:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=amp or torch.float32,
                                                    enabled=amp is not None):
            fn(x)
            return min(timed(lambda: fn(x), dev)[1] for _ in range(n))

    eager = best(net)
    t = time.perf_counter()
    compiled = torch.compile(net)
    with torch.inference_mode(), torch.autocast(dev.type, dtype=amp or torch.float32,
                                                enabled=amp is not None):
        compiled(x)
    compile_s = time.perf_counter() - t
    return {"eager_s": eager, "compiled_s": best(compiled), "compile_s": compile_s,
            "eager_again_s": best(net)}


def guard(args: argparse.Namespace, dev: torch.device) -> dict:
    run = trained_demo_model(args.model, args.train_iterations, str(dev))
    net, extra = load_model(run, device=dev)
    image, _ = synthetic_image(args.guard_size)
    x = Normalization.from_dict(extra.get("normalization", {}))(image)
    ref = predict(net, x, progress=False, precision="fp32")
    res = {"model": str(run), "size": args.guard_size,
           "auto_dtype": _name(autocast_dtype("auto", dev))}
    for name in ("auto", "bf16"):
        p = predict(net, x, progress=False, precision=name)
        res[f"{name}_same_class"] = float(np.mean(p.argmax(0) == ref.argmax(0)))
        res[f"{name}_max_diff"] = float(np.abs(p - ref).max())
    return res


def scaling(args: argparse.Namespace, dev: torch.device) -> list[dict]:
    torch.manual_seed(0)
    net = UNet().to(dev).eval()
    predict(net, np.zeros((400, 400), np.float32), progress=False)  # warm-up
    rows = []
    for size in args.scaling:
        image = np.random.default_rng(size).random((size, size), dtype=np.float32)
        tile, n_tiles = default_tiles(size, net, dev)
        _, s = timed(lambda image=image: predict(net, image, progress=False), dev)
        rows.append({"size": size, "tile": tile, "tiles": n_tiles, "seconds": s,
                     "s_per_mpx": s / (size**2 / 1e6)})
        print(f"  {size}^2: {s:.2f} s", file=sys.stderr, flush=True)
        del image
    return rows


def plot_scaling(rows: list[dict], label: str, path: Path) -> None:
    plt = pyplot()
    mpx = np.array([r["size"] ** 2 / 1e6 for r in rows])
    sec = np.array([r["seconds"] for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.loglog(mpx, sec, "o-", label="tileunet predict")
    ref = sec[-1] / mpx[-1]  # linear through the largest image
    ax.loglog(mpx, ref * mpx, "--", color="grey", label="linear in pixels")
    for m, s, r in zip(mpx, sec, rows, strict=True):
        ax.annotate(f"{r['size']}²", (m, s), textcoords="offset points", xytext=(4, -10),
                    fontsize=8)
    ax.set_xlabel("image size (megapixels)")
    ax.set_ylabel("seconds")
    ax.set_title(f"paper network, default predict\n{label}", fontsize=8)
    ax.legend()
    save_figure(fig, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=2048, help="image side for the speed test")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scaling", default="512,1024,2048,4096,8192",
                    help="comma-separated image sides ('' to skip)")
    ap.add_argument("--model", type=Path, help="trained model for the accuracy guard")
    ap.add_argument("--train-iterations", type=int, default=2000,
                    help="training of the guard's model when --model is not given")
    ap.add_argument("--guard-size", type=int, default=512)
    ap.add_argument("--compile-check", action="store_true",
                    help="also time one tile with torch.compile against eager")
    ap.add_argument("--skip", action="append", default=[],
                    choices=["speed", "guard", "scaling"])
    args = ap.parse_args()
    args.scaling = [int(s) for s in args.scaling.split(",") if s.strip()]
    dev = torch.device(args.device)
    command, where = announce(dev)
    tag = "cuda" if dev.type == "cuda" else "cpu"
    results: dict = {"command": command, "machine": where}
    if "speed" not in args.skip:
        r = results["speed"] = speed(args, dev)
        print(f"### {r['size']}×{r['size']}, paper network, median of {r['repeats']} "
              "(min in brackets)\n")
        print("| | tiles | seconds | Mpx/s | GFLOP run | GFLOP/s | of matmul peak |")
        print("|---|---|---|---|---|---|---|")
        for who, key, tiles in (("naive loop (572, fp32, NCHW)", "naive", r["naive_tiles"]),
                                (f"tileunet default (tile {r['tile']}, {r['auto_dtype']})",
                                 "ours", r["tiles"])):
            t = r[f"{key}_s"]
            print(f"| {who} | {tiles} | {statistics.median(t):.2f} ({min(t):.2f}) | "
                  f"{r[f'{key}_mpx_s']:.3f} | {r[f'{key}_gflop']:.0f} | "
                  f"{r[f'{key}_gflops']:.1f} | {100 * r[f'{key}_peak_frac']:.0f} % |")
        tf32 = ("" if r["peak_naive"] == r["peak_fp32"]
                else f" (TF32, which the naive loop's convolutions use: {r['peak_naive']:.0f})")
        print(f"\nspeed-up {r['speedup']:.2f}×; matmul peak fp32 "
              f"{r['peak_fp32']:.1f} GFLOP/s{tf32}"
              + ("" if r["auto_dtype"] == "fp32"
                 else f", {r['auto_dtype']} {r['peak_auto']:.1f} GFLOP/s")
              + f"; largest probability difference naive vs tileunet {r['max_diff']:.1e} "
              "(the naive tiles sit 388 px apart, off the network's pooling grid)\n")
    if "guard" not in args.skip:
        g = results["guard"] = guard(args, dev)
        print(f"### accuracy guard: trained demo model, {g['size']}² synthetic image\n")
        print(f"precision='auto' uses {g['auto_dtype']} here.\n")
        print("| against fp32 | same class | max abs diff of probabilities |")
        print("|---|---|---|")
        for name in ("auto", "bf16"):
            print(f"| {name} | {100 * g[f'{name}_same_class']:.3f} % | "
                  f"{g[f'{name}_max_diff']:.2e} |")
        print()
    if args.compile_check:
        c = results["compile"] = compile_check(dev)
        print("### torch.compile, one 572 tile, best of 5\n")
        print(f"eager {c['eager_s']:.3f} s, compiled {c['compiled_s']:.3f} s (compiling took "
              f"{c['compile_s']:.0f} s), eager again {c['eager_again_s']:.3f} s\n")
    if args.scaling and "scaling" not in args.skip:
        rows = results["scaling"] = scaling(args, dev)
        print("### scaling, paper network, default predict\n")
        print("| size | tile | tiles | seconds | s per Mpx |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['size']}² | {r['tile']} | {r['tiles']} | {r['seconds']:.2f} | "
                  f"{r['s_per_mpx']:.2f} |")
        fig = FIGURES / f"predict_scaling_{tag}.png"
        plot_scaling(rows, where, fig)
        print(f"\nplot: {shown(fig)}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"bench_predict_{tag}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
