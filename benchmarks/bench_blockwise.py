"""Benchmark: an image larger than memory, segmented block by block into zarr.

Claim measured: ``tileunet predict MODEL IMAGE.zarr -o OUT.zarr`` on a ``--size`` x
``--size`` image (default 16384 x 16384, 268 megapixels: 1.07 GB as float32, 2.1 GB as
a two-class probability array) keeps the peak resident memory of the process that runs
the command under 2 GB. By default the blocks run in that same process (dask's
synchronous scheduler), which is the strict case: the client does all the work.
``--workers N`` starts a ``dask.distributed`` LocalCluster with N single-threaded worker
processes and passes its address with ``--scheduler``; then the command's process only
schedules, and the workers' peak memory is reported beside it.

The image is synthetic cells: a 2048 x 2048 synthetic image, flipped and rotated
differently in each 2048 x 2048 block of the zarr array (chunks 1024 x 1024), written
once to ``benchmarks/out/bench_blockwise``. The model is ``--model``, or the demo's
network (width 16, depth 4) trained on synthetic cells (cached in
``benchmarks/out/demo_model``). The command runs in a child process; its peak resident
set size comes from the kernel (``wait4``'s ``ru_maxrss``), and its resident memory is
also sampled every 0.2 s.

Run ``python benchmarks/bench_blockwise.py``; the table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
import zarr
from bench_common import OUT, announce, synthetic_image, trained_demo_model
from bench_memory import print_samples, run_measured

from tileunet.inference.tiling import DIHEDRAL, dihedral


def write_image(path: Path, size: int, piece: int = 2048) -> None:
    """The synthetic image, block by block, so this process stays small too."""
    tmp = path.with_name(path.name + ".partial")
    z = zarr.open_array(str(tmp), mode="w", shape=(size, size), chunks=(1024, 1024),
                        dtype="uint8")
    base, _ = synthetic_image(min(piece, size), seed=3)
    k = 0
    for y in range(0, size, piece):
        for x in range(0, size, piece):
            block = np.ascontiguousarray(dihedral(base, *DIHEDRAL[k % 8]))
            k += 1
            z[y : y + piece, x : x + piece] = block[: size - y, : size - x]
    tmp.rename(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--block", type=int, default=2048)
    ap.add_argument("--model", type=Path, help="trained model (default: the demo's network)")
    ap.add_argument("--train-iterations", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=0,
                    help="run on a LocalCluster of this many worker processes (0: in the "
                         "command's own process)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit-gb", type=float, default=2.0)
    args = ap.parse_args()
    work = OUT / "bench_blockwise"
    work.mkdir(parents=True, exist_ok=True)
    command, where = announce(torch.device(args.device))
    image = work / f"cells_{args.size}.zarr"
    if not image.exists():
        print(f"writing a synthetic {args.size}² zarr image ...", file=sys.stderr, flush=True)
        write_image(image, args.size)
    model = trained_demo_model(args.model, args.train_iterations, args.device)
    out = work / f"pred_{args.size}.zarr"
    cmd = [sys.executable, "-m", "tileunet", "-q", "predict", str(model), str(image),
           "-o", str(out), "--overwrite", "--device", args.device, "--block", str(args.block)]
    cluster = None
    if args.workers:
        from distributed import LocalCluster

        threads = max(1, (os.cpu_count() or 1) // args.workers)
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                               processes=True, dashboard_address=None,
                               env={"OMP_NUM_THREADS": str(threads)})
        cmd += ["--scheduler", cluster.scheduler_address]
    print("child: " + shlex.join(["tileunet", *cmd[3:]]), file=sys.stderr, flush=True)
    code, seconds, peak_rss, samples = run_measured(cmd)
    worker_peak = None
    if cluster is not None:
        from distributed import Client

        with Client(cluster) as client:
            def peak() -> int:
                import resource
                return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

            worker_peak = max(client.run(peak).values())
        cluster.close()
    if code != 0:
        print(f"tileunet predict failed with exit status {code}", file=sys.stderr)
        return 1
    px = args.size**2
    g = zarr.open_group(str(out), mode="r")
    meta = dict(g.attrs["tileunet"])
    res = {"command": command, "machine": where, "size": args.size, "block": args.block,
           "workers": args.workers, "model": str(model), "seconds": seconds,
           "peak_rss": peak_rss, "worker_peak_rss": worker_peak,
           "objects": meta["objects"], "cut_objects": meta["cut_objects"],
           "samples": samples[:: max(1, len(samples) // 200)]}
    (OUT / f"bench_blockwise_{args.size}_w{args.workers}.json").write_text(
        json.dumps(res, indent=1))
    gb = 1e9
    where_run = (f"LocalCluster, {args.workers} worker processes" if args.workers
                 else "in the command's process")
    print(f"### `tileunet predict ... -o OUT.zarr` of a {args.size}×{args.size} zarr image "
          f"({px / 1e6:.0f} megapixels), blocks of {args.block}, {where_run}\n")
    print("| what | value |")
    print("|---|---|")
    print(f"| peak resident memory of the command's process | **{peak_rss / gb:.2f} GB** |")
    if worker_peak is not None:
        print(f"| peak resident memory of a worker | {worker_peak / gb:.2f} GB |")
    print(f"| for scale: the image as float32 | {4 * px / gb:.2f} GB |")
    print(f"| for scale: one float32 (2, H, W) probability array | {8 * px / gb:.2f} GB |")
    print(f"| wall time | {seconds:.0f} s ({seconds / px * 1e6:.2f} s per megapixel) |")
    print(f"| objects labelled | {meta['objects']:,} ({meta['cut_objects']} larger than "
          f"--max-object) |")
    verdict = "under" if peak_rss < args.limit_gb * gb else "OVER"
    print(f"\npeak {peak_rss / gb:.2f} GB: {verdict} the {args.limit_gb:g} GB limit")
    print_samples(samples)
    return 0 if peak_rss < args.limit_gb * gb else 2


if __name__ == "__main__":
    sys.exit(main())
