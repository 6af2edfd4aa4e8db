"""When to average over the 8 flips and rotations (test-time augmentation).

Averaging costs 8 predictions of every tile. ``"auto"`` turns it on where those 8
passes stay cheap: their multiply-adds, counted from the network's configuration and
the image's size at the working scale, within a budget per kind of device. The count
is exact arithmetic, not a timing, so the same command on the same kind of device
always makes the same choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tileunet.inference.scale import working_shape
from tileunet.model import UNetConfig

__all__ = ["CHEAP_MULTIPLY_ADDS", "TTA_PASSES", "check_tta", "multiply_adds_per_pixel",
           "tta_cost", "use_tta"]

TTA_PASSES = 8  # the dihedral group of the square: 4 rotations, each also mirrored

# What 8 passes over one image may cost and still count as cheap: on a 2-core CPU with
# bf16 matrix units, 2e12 multiply-adds take seconds to tens of seconds; a GPU does 100x
# that in the same time. Devices not named here count as CPUs.
CHEAP_MULTIPLY_ADDS = {"cpu": 2e12, "cuda": 2e14}


def multiply_adds_per_pixel(config: UNetConfig) -> float:
    """Multiply-adds of one forward pass per output pixel, for a network with ``config``.

    Every convolution costs ``in x out x kernel area`` per pixel of its own output; a
    level ``l`` down has ``4**-l`` of the output's pixels. With ``padding="same"`` this
    is exact; with ``"valid"`` each tile also computes its context margin, which adds
    the share of the margin in the tile (a small part for the tiles ``predict`` uses).
    """
    chans = [config.width * 2**level for level in range(config.depth)]
    total = 0.0
    cin = config.in_channels
    for level, c in enumerate(chans):  # the contracting path: two 3x3 convs per level
        total += 9 * (cin * c + c * c) / 4**level
        cin = c
    for level in range(config.depth - 1, 0, -1):  # the expanding path, level l -> l-1
        c, half = chans[level], chans[level - 1]
        up = c * half  # 2x2, stride 2: each output pixel sees one input pixel
        total += (up + 9 * (c * half + half * half)) / 4 ** (level - 1)
    return total + config.width * config.num_classes  # the 1x1 head


def tta_cost(config: UNetConfig, shape: Sequence[int], scale: float = 1.0) -> float:
    """Multiply-adds of the 8 passes over an image of ``shape`` (H, W) at ``scale``."""
    h, w = working_shape(tuple(shape[-2:]), scale)
    return TTA_PASSES * multiply_adds_per_pixel(config) * h * w


def check_tta(tta: bool | str) -> bool | str:
    """``tta`` if it is ``True``, ``False`` or ``"auto"``; else a ValueError."""
    if isinstance(tta, bool) or tta == "auto":
        return tta
    raise ValueError(f"tta must be True, False or 'auto', got {tta!r}")


def use_tta(tta: bool | str, config: UNetConfig, shape: Sequence[int], scale: float = 1.0,
            device: torch.device | str = "cpu") -> bool:
    """Whether to average over flips and rotations: ``tta`` itself when it is a bool;
    for ``"auto"``, whether :func:`tta_cost` is within :data:`CHEAP_MULTIPLY_ADDS` of
    ``device``'s kind."""
    if isinstance(check_tta(tta), bool):
        return tta
    kind = torch.device(device).type
    budget = CHEAP_MULTIPLY_ADDS.get(kind, CHEAP_MULTIPLY_ADDS["cpu"])
    return tta_cost(config, shape, scale) <= budget
