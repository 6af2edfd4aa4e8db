"""Benchmark: peak memory of ``tileunet predict`` on a large image, written to files.

Claim measured: segmenting a ``--size`` x ``--size`` image (default 8192 x 8192, 67
megapixels) from the command line, with all four outputs (probability TIFF, mask,
instances, overlay), keeps the peak resident memory of the process under 2 GB. The
probabilities stream from the tiles into a memory-mapped TIFF, instances are found a
group of objects at a time, and the overlay is drawn a band of rows at a time.

The image is synthetic cells (written once to ``benchmarks/out/bench_memory``). The
model is ``--model``, or the demo's network (width 16, depth 4) trained on synthetic
cells for ``--train-iterations`` steps (cached in ``benchmarks/out/demo_model``), so the
instance step sees a realistic number of cells; ``--net paper`` uses the paper's
network with random weights instead (slow on a CPU: ~25 min for 8192 x 8192). The
command runs in a child process started by a small launcher (``measure_child.py``), so
that its peak resident set size from the kernel (``wait4``'s ``ru_maxrss``) counts the
command's pages alone; its resident memory is also sampled every 0.2 s to show which
stage peaks.

Run ``python benchmarks/bench_memory.py``; the table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import torch
from bench_common import OUT, announce, synthetic_image, trained_demo_model

from tileunet import UNet
from tileunet.checkpoint import save_model

LAUNCHER = Path(__file__).with_name("measure_child.py")


def run_measured(cmd: list[str]) -> tuple[int, float, int, list[tuple[float, int]]]:
    """Run ``cmd`` through the small launcher ``measure_child.py`` (so that its peak
    counts only its own pages, not this process's); its exit code, wall time, peak
    RSS (bytes, from ``wait4``) and its resident memory sampled every 0.2 s."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        subprocess.run([sys.executable, "-S", str(LAUNCHER), str(result), "--", *cmd],
                       check=True)
        res = json.loads(result.read_text())
    return res["exit"], res["seconds"], res["peak_rss"], [tuple(s) for s in res["samples"]]


def print_samples(samples: list[tuple[float, int]]) -> None:
    """A dozen of the sampled resident sizes, over the run."""
    if not samples:
        return
    ts = np.array([s[0] for s in samples])
    rs = np.array([s[1] for s in samples])
    step = max(1, len(ts) // 12)
    marks = ", ".join(f"{t:.0f} s: {r / 1e9:.2f} GB" for t, r in
                      zip(ts[::step], rs[::step], strict=True))
    print(f"resident memory over time (sampled): {marks}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--model", type=Path, help="trained model (default: the demo's network)")
    ap.add_argument("--net", choices=["demo", "paper"], default="demo")
    ap.add_argument("--train-iterations", type=int, default=2000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit-gb", type=float, default=2.0)
    args = ap.parse_args()
    work = OUT / "bench_memory"
    work.mkdir(parents=True, exist_ok=True)
    command, where = announce(torch.device(args.device))

    image_path = work / f"cells_{args.size}.tif"
    if not image_path.exists():
        print(f"drawing a synthetic {args.size}² image ...", file=sys.stderr, flush=True)
        image, _ = synthetic_image(args.size, seed=3)
        tifffile.imwrite(image_path, image, compression="zlib")
        del image
    if args.net == "paper":
        model = work / "paper_random.safetensors"
        torch.manual_seed(0)
        save_model(model, UNet())
    else:
        model = trained_demo_model(args.model, args.train_iterations, args.device)
    label = args.net if args.model is None else "given-model"
    out = work / f"pred_{args.size}_{label}"
    cmd = [sys.executable, "-m", "tileunet", "-q", "predict", str(model), str(image_path),
           "-o", str(out), "--overwrite", "--device", args.device]
    print("child: " + shlex.join(["tileunet", *cmd[3:]]), file=sys.stderr, flush=True)
    code, seconds, peak, samples = run_measured(cmd)
    if code != 0:
        print(f"tileunet predict failed with exit status {code}", file=sys.stderr)
        return 1
    px = args.size**2
    outputs = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    res = {"command": command, "machine": where, "size": args.size, "net": label,
           "model": str(model), "seconds": seconds, "peak_rss": peak,
           "samples": samples[:: max(1, len(samples) // 200)], "outputs": outputs}
    (OUT / f"bench_memory_{args.size}_{label}.json").write_text(json.dumps(res, indent=1))
    gb = 1e9
    print(f"### `tileunet predict` of a {args.size}×{args.size} image "
          f"({px / 1e6:.0f} megapixels), {label} network, {args.device}\n")
    print("| what | value |")
    print("|---|---|")
    print(f"| peak resident memory of the process | **{peak / gb:.2f} GB** |")
    print(f"| for scale: one float32 (2, H, W) probability array | {8 * px / gb:.2f} GB |")
    print(f"| for scale: the image as float32 | {4 * px / gb:.2f} GB |")
    print(f"| wall time | {seconds:.0f} s |")
    print(f"| outputs | {', '.join(f'{k} ({v / 1e6:.0f} MB)' for k, v in outputs.items())} |")
    verdict = "under" if peak < args.limit_gb * gb else "OVER"
    print(f"\npeak {peak / gb:.2f} GB: {verdict} the {args.limit_gb:g} GB limit")
    print_samples(samples)
    return 0 if peak < args.limit_gb * gb else 2


if __name__ == "__main__":
    sys.exit(main())
