"""The paper's network on a CUDA GPU: training steps/s, prediction speed, tile invariance.

Usage::

    python benchmarks/bench_cuda.py [--steps 20] [--size 2048]

Prints a markdown table; exits with a message when no CUDA device is present. Measures
(all in the same run, random weights):

* training steps per second on 572x572 tiles, batch 1, fp32 and bf16 autocast;
* ``tileunet.inference.overlap`` on a size x size image, fp32 and ``precision="auto"``, with the
  agreement of the two (fraction of pixels with the same class, largest difference);
* tile invariance on CUDA: two tile sizes against each other.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch

from tileunet import UNet, predict, weighted_cross_entropy


def sync() -> None:
    torch.cuda.synchronize()


def train_steps_per_s(net: UNet, steps: int, amp: torch.dtype | None) -> float:
    dev = torch.device("cuda")
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99)
    x = torch.randn(1, 1, 572, 572, device=dev)
    y = torch.randint(0, 2, (1, 572, 572), device=dev)
    w = torch.rand(1, 572, 572, device=dev)

    def step() -> None:
        with torch.autocast("cuda", dtype=amp or torch.float32, enabled=amp is not None):
            logits = net(x)
        loss = weighted_cross_entropy(logits, y, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps / (time.perf_counter() - t)


def timed_predict(net: UNet, image: np.ndarray, **kw) -> tuple[np.ndarray, float]:
    predict(net, image[:600, :600], progress=False, **kw)  # warm-up
    sync()
    t = time.perf_counter()
    probs = predict(net, image, progress=False, **kw)
    sync()
    return probs, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return 0
    torch.manual_seed(0)
    net = UNet().cuda()
    rows = []
    for name, amp in (("fp32", None), ("bf16", torch.bfloat16)):
        rate = train_steps_per_s(net, args.steps, amp)
        rows.append((f"train steps/s, 572 tile, {name}", f"{rate:.2f}"))
    net.eval()
    image = np.random.default_rng(0).standard_normal((args.size, args.size)).astype(np.float32)
    p32, t32 = timed_predict(net, image, precision="fp32")
    pauto, tauto = timed_predict(net, image, precision="auto")
    mpx = args.size**2 / 1e6
    rows.append((f"predict {args.size}² fp32 (s, Mpx/s)", f"{t32:.3f}, {mpx / t32:.1f}"))
    rows.append((f"predict {args.size}² auto (s, Mpx/s)", f"{tauto:.3f}, {mpx / tauto:.1f}"))
    same = float(np.mean(p32.argmax(0) == pauto.argmax(0)))
    rows.append(("auto vs fp32: same class / max |dp|",
                 f"{same:.4f} / {np.abs(p32 - pauto).max():.3g}"))
    small = image[:700, :900]
    a = predict(net, small, tile=572, progress=False)
    b = predict(net, small, tile=828, progress=False)
    rows.append(("tile 572 vs 828, max |dp| (fp32)", f"{np.abs(a - b).max():.2e}"))
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"{platform.python_version()}")
    print(f"command: python {' '.join(sys.argv)}\n")
    print("| what | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
