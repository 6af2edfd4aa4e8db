"""Augmenting a training tile costs far less than the training step that consumes it.

Measures, in one run on the same machine:

* the median time to augment one tile triple (image bicubic, target nearest, weight map
  linear; random placement, rotation, flips, the paper's elastic deformation and gray-value
  changes) from a 512 x 512 image with :func:`tileunet.augment.resample.augment_tile`, with the
  default ``interpolation="bicubic"`` and with ``"spline"`` (scipy's cubic B-spline);
* the median time of a plain mirrored crop (``AugmentConfig(enabled=False)``);
* the median time of one training step of the paper network (``tileunet.UNet()``, fp32,
  batch 1: forward, weighted cross-entropy, backward, SGD step with momentum 0.99) on a
  tile of the same size, after one warm-up step;

and prints them, their ratio, the machine and the command as a markdown table.

Usage::

    python benchmarks/bench_augment.py [--size 572] [--repeats 30] [--train-repeats 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from bench_common import timings
from scipy import ndimage as ndi

import tileunet
from tileunet.augment.params import AugmentConfig
from tileunet.augment.resample import augment_tile


def synthetic_image(shape: tuple[int, int], rng: np.random.Generator):
    """A smooth float32 image, a label image of blobs, and a weight map >= 1."""
    image = ndi.gaussian_filter(rng.random(shape), 4.0)
    image = ((image - image.mean()) / image.std()).astype(np.float32)
    labels, _ = ndi.label(image > 0.5)
    weights = (1.0 + 9.0 * rng.random(shape)).astype(np.float32)
    return image[None], labels.astype(np.int64), weights


def train_step_seconds(size: int, repeats: int) -> tuple[float, int]:
    net = tileunet.UNet()
    net.train()
    out = net.output_size(size)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, size, size, generator=gen)
    target = torch.randint(0, 2, (1, out, out), generator=gen)
    weight = torch.rand(1, out, out, generator=gen) + 1.0

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        logits = net(x)  # (1, 2, out, out)
        loss = (F.cross_entropy(logits, target, reduction="none") * weight).mean()
        loss.backward()
        opt.step()

    return timings(step, repeats, warmup=1)[0], out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=572, help="tile side (network input)")
    parser.add_argument("--image", type=int, default=512, help="side of the source image")
    parser.add_argument("--repeats", type=int, default=30, help="augmentation repeats")
    parser.add_argument("--train-repeats", type=int, default=2,
                        help="timed training steps (after one warm-up step)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    image, labels, weights = synthetic_image((args.image, args.image), rng)

    def augmenter(config: AugmentConfig) -> Callable[[], object]:
        return lambda: augment_tile(image, labels, weights, size=args.size, rng=rng,
                                    config=config)

    load_before = os.getloadavg()[0]
    t_aug, min_aug = timings(augmenter(AugmentConfig()), args.repeats, warmup=3)
    t_spline, min_spline = timings(augmenter(AugmentConfig(interpolation="spline")),
                                   args.repeats, warmup=3)
    t_crop, min_crop = timings(augmenter(AugmentConfig(enabled=False)), args.repeats, warmup=3)
    t_step, out = train_step_seconds(args.size, args.train_repeats)

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    n = args.size
    print(f"| what ({n}x{n} tile from a {args.image}x{args.image} image) | median (min) |")
    print("|---|---|")
    print(f"| augment tile triple (rotate, flip, elastic 3x3 N(0,10), gray), bicubic "
          f"| {t_aug * 1e3:.1f} ms ({min_aug * 1e3:.1f} ms), {args.repeats} repeats |")
    print(f"| the same, `interpolation=\"spline\"` (scipy's cubic B-spline) "
          f"| {t_spline * 1e3:.1f} ms ({min_spline * 1e3:.1f} ms) |")
    print(f"| plain mirrored crop (`enabled=False`) "
          f"| {t_crop * 1e3:.1f} ms ({min_crop * 1e3:.1f} ms) |")
    print(f"| training step, `UNet()` fp32 batch 1, {n}->{out} (fwd+bwd+SGD) "
          f"| {t_step:.2f} s ({args.train_repeats} repeats, 1 warm-up) |")
    print(f"| augmentation / training step | {t_aug / t_step:.2%} |")
    print(f"| machine | {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"os.cpu_count()={os.cpu_count()}, torch threads={torch.get_num_threads()}, "
          f"torch {torch.__version__}, numpy {np.__version__}, "
          f"1-min load average {load_before:.2f} at start |")
    print(f"| command | `{command}` |")


if __name__ == "__main__":
    main()
