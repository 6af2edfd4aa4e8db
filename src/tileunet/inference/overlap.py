"""Segment an image of any size with the overlap-tile strategy of the paper.

:func:`predict` mirrors the image at its borders, cuts it into input tiles that each
carry the network's full context (``net.margin`` pixels per side), runs the tiles in
batches, and puts the disjoint output tiles side by side (:mod:`tileunet.inference.tiling`).
For the paper's valid-padding network the result is seamless: it equals one forward
pass over the whole mirror-padded image, whatever the tile size.

One detail the paper leaves implicit: a valid U-Net is translation-equivariant only
for shifts by a multiple of its pooling step ``2**(depth-1)`` (16 for the paper's
network), since each 2x2 max-pool and 2x2 up-convolution sees pixels in a fixed
phase. Valid output sizes are never such a multiple (388 = 24 * 16 + 4), so tiles placed
``out_tile`` apart would see the pooling grid in different phases and disagree at their
seams. Tiles are therefore placed ``stride`` apart, ``out_tile`` rounded down to a
multiple of the step (384 for a 572 tile), and only the first ``stride`` output
pixels of each tile are kept; all tiles then share the pooling grid of the whole
image.

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
   Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tileunet.device import (
    autocast_dtype,
    available_memory,
    inference_channels_last,
    strict_fp32,
)
from tileunet.inference.tiling import DIHEDRAL, tile_layout, tiled_apply
from tileunet.model import UNet

logger = logging.getLogger(__name__)

#: Default memory budget for the activations of one batch of tiles on a CPU.
CPU_BUDGET_BYTES = 1 << 30
#: Fraction of the free memory of a CUDA device used as the default budget.
CUDA_BUDGET_FRACTION = 0.5
#: Factor on the summed size of all activations of a forward pass (see
#: :func:`tile_memory_bytes`).
MEMORY_SAFETY = 1.25



# ---------------------------------------------------------------- tile geometry
def _first_tile(net: UNet) -> int:
    """Smallest tile whose output is at least one pooling step wide."""
    step = net.size_step
    if net.config.padding == "same":
        return net.valid_input_size(2 * net.margin + step)
    return net.input_size_for_output(step)


def tile_geometry(net: UNet, tile: int) -> tuple[int, int]:
    """Output size and stride of an input tile of side ``tile``.

    Usable tiles are the network's valid input sizes whose output (for
    ``padding="same"``: the output less ``net.margin`` per side) is at least one pooling
    step ``net.size_step`` wide; they are ``net.size_step`` apart.

    Parameters
    ----------
    net : UNet
        The network.
    tile : int
        Input tile side.

    Returns
    -------
    out_tile : int
        Side of the output kept from the network (for valid padding
        ``net.output_size(tile)``).
    stride : int
        ``out_tile`` rounded down to a multiple of ``net.size_step``: the output pixels
        kept per tile and the distance between tiles.

    Raises
    ------
    ValueError
        If ``tile`` is not usable; the message names the nearest usable sizes.

    Examples
    --------
    >>> tile_geometry(UNet(), 572)
    (388, 384)
    """
    if not isinstance(tile, (int, np.integer)) or isinstance(tile, bool):
        raise ValueError(f"tile must be an integer, got {tile!r}")
    tile = int(tile)
    step, first = net.size_step, _first_tile(net)
    if tile < first or (tile - first) % step:
        if tile > first:
            lo = first + (tile - first) // step * step
            near = f"the nearest are {lo} and {lo + step}"
        else:
            near = f"the smallest is {first}"
        cfg = net.config
        raise ValueError(
            f"tile must be a usable input size of this network (depth {cfg.depth}, "
            f"{cfg.padding} padding: {first}, {first + step}, {first + 2 * step}, ...), "
            f"got {tile}; {near}"
        )
    out = net.output_size(tile)
    if net.config.padding == "same":
        out -= 2 * net.margin
    return out, out // step * step


def tile_memory_bytes(net: UNet, tile: int, *, bytes_per_element: int = 4) -> int:
    """Estimated memory for the activations of one tile in one forward pass.

    The sum, over every tensor the forward pass creates (the input, each convolution,
    pooling, up-convolution and concatenation, the logits and the probabilities), of
    channels x height x width x ``bytes_per_element``, times :data:`MEMORY_SAFETY`.
    In inference mode most tensors are freed as soon as they are used, so this sum is
    already well above the peak (``benchmarks/RESULTS.md``, "The memory estimate of a
    tile"); the safety factor on top covers allocator slack and convolution
    workspaces. One exception: cuDNN may use whatever GPU memory is free as workspace
    for its fastest float32 algorithm; it falls back to other algorithms when that
    memory is not there.

    Parameters
    ----------
    net : UNet
        The network (its depth, width, channels and padding are used).
    tile : int
        Input tile side (any positive size; not checked for validity).
    bytes_per_element : int
        4 for float32.

    Returns
    -------
    int
        Bytes per tile; a batch of ``n`` tiles needs ``n`` times as much.

    Examples
    --------
    >>> tile_memory_bytes(UNet(), 572) < 2**30
    True
    """
    cfg = net.config
    shrink = 2 if cfg.padding == "valid" else 0  # per 3x3 conv
    per_conv = 1 if cfg.norm == "none" else 2  # a norm layer adds a tensor per conv
    chans = [cfg.width * 2**i for i in range(cfg.depth)]
    s = int(tile)
    total = cfg.in_channels * s * s
    for i, c in enumerate(chans):  # contracting path
        if i:
            s //= 2
            total += chans[i - 1] * s * s  # max-pool
        for _ in range(2):
            s = max(s - shrink, 0)
            total += per_conv * c * s * s
    for c in reversed(chans[:-1]):  # expanding path
        s *= 2
        total += 3 * c * s * s  # up-conv (c) and concatenation (2c)
        for _ in range(2):
            s = max(s - shrink, 0)
            total += per_conv * c * s * s
    total += 2 * cfg.num_classes * s * s  # logits and probabilities
    return int(math.ceil(MEMORY_SAFETY * total * bytes_per_element))


def default_budget(device: torch.device | str) -> int:
    """Default memory budget in bytes: 1 GiB on a CPU, half the free memory of a GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(CUDA_BUDGET_FRACTION * free)
    return CPU_BUDGET_BYTES


def check_batch_size(batch_size: int | None) -> None:
    """``None`` (as many tiles as fit the memory budget) or a positive integer."""
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer))
                                   or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def check_tile_fits(net: UNet, tile: int, device: torch.device | str, *,
                    batch_size: int = 1, bytes_per_element: int = 4) -> None:
    """Refuse a tile size the network cannot use or whose activations
    (:func:`tile_memory_bytes`) need more memory than ``device`` has available: a clear
    error before any work instead of a failed allocation halfway."""
    tile_geometry(net, tile)  # a usable size? (names the nearest ones)
    need = tile_memory_bytes(net, tile, bytes_per_element=bytes_per_element) * batch_size
    have = available_memory(torch.device(device))
    if need > have:
        raise ValueError(f"tile {tile} needs about {need / 1e9:.1f} GB of memory, "
                         f"{have / 1e9:.1f} GB are available: choose a smaller tile or "
                         "leave it out (then it fits the memory)")


def _net_device(net: nn.Module) -> torch.device:
    param = next(net.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def choose_tile(
    net: UNet,
    image_hw: tuple[int, int],
    budget_bytes: int | None = None,
    *,
    bytes_per_element: int = 4,
) -> int:
    """Choose the input tile size for an image.

    Among the usable tiles (:func:`tile_geometry`) whose estimated memory
    (:func:`tile_memory_bytes`) fits the budget, and that are no larger than one tile
    covering the whole image, take the one that makes the network process the fewest
    input pixels in all: ``tiles x tile**2``. For a large image that is the largest
    tile within the budget (less context recomputed at the seams); for an image that
    fits in one tile, the smallest tile covering it; for a thin strip such as 3 x 700, a
    small tile, since each extra row of a square tile is wasted.

    Parameters
    ----------
    net : UNet
        The network.
    image_hw : (int, int)
        Image height and width.
    budget_bytes : int, optional
        Memory for one tile; default :func:`default_budget` of the network's device.
        If even the smallest usable tile needs more, that tile is returned (and a
        warning logged).
    bytes_per_element : int
        Bytes per activation value (4 for float32).

    Returns
    -------
    int
        The input tile side.

    Examples
    --------
    >>> net = UNet()
    >>> choose_tile(net, (100, 100))  # one tile covers the image
    300
    >>> choose_tile(net, (4096, 4096), budget_bytes=2**30)
    604
    """
    h, w = (int(n) for n in image_hw)
    if h < 1 or w < 1:
        raise ValueError(f"image_hw must be at least 1x1, got {h}x{w}")
    budget = default_budget(_net_device(net)) if budget_bytes is None else int(budget_bytes)
    step, first = net.size_step, _first_tile(net)
    best: tuple[int, int] | None = None  # (pixels processed, tile)
    tile = first
    while True:
        if tile > first and tile_memory_bytes(net, tile,
                                              bytes_per_element=bytes_per_element) > budget:
            break
        _, stride = tile_geometry(net, tile)
        cost = math.ceil(h / stride) * math.ceil(w / stride) * tile * tile
        if best is None or cost < best[0]:
            best = (cost, tile)
        if stride >= max(h, w):  # one tile covers the image
            break
        tile += step
    if tile_memory_bytes(net, first, bytes_per_element=bytes_per_element) > budget:
        logger.warning("even the smallest tile (%d) exceeds the memory budget of %d bytes",
                       first, budget)
    assert best is not None
    return best[1]


# ----------------------------------------------------------------------- inputs
def _as_image(image: np.ndarray, in_channels: int) -> np.ndarray:
    """Check the image and return it as a real (C, H, W) array."""
    x = np.asarray(image)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"image must be a real numeric array, got dtype {x.dtype}")
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"image must have shape (H, W) or (C, H, W), got shape {x.shape}")
    if x.shape[0] != in_channels:
        raise ValueError(
            f"image must have {in_channels} channel(s) (the network's in_channels) as "
            f"(C, H, W){' or (H, W)' if in_channels == 1 else ''}, got shape "
            f"{np.shape(image)}"
        )
    if x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"image must be at least 1x1, got {x.shape[1]}x{x.shape[2]}")
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    elif not np.isfinite(x).all():
        raise ValueError("image must be finite, got NaN or infinite values")
    return np.ascontiguousarray(x)


# ---------------------------------------------------------------------- predict
def predict(
    net: UNet,
    image: np.ndarray,
    *,
    tile: int | None = None,
    batch_size: int | None = None,
    tta: bool = False,
    device: torch.device | str | None = None,
    progress: bool | Callable[..., Any] = True,
    precision: str = "auto",
    channels: Sequence[int] | None = None,
    out: Any = None,
    context: bool = False,
) -> np.ndarray:
    """Class probabilities for every pixel of an image of any size.

    The paper's overlap-tile strategy: the image is mirrored at its borders and cut
    into input tiles that carry ``net.margin`` pixels of context on each side; the
    disjoint output tiles are put side by side and cropped to the image. For
    ``padding="valid"`` the result is that of one forward pass over the whole
    mirror-padded image, whatever the tile size (tiles are placed a multiple of the
    pooling step apart, see the module notes). For ``padding="same"`` the tiles overlap
    by ``net.margin`` on each side and only their centres are kept; as the network pads
    its feature maps with zeros at every tile border, the result then depends (a
    little) on the tile size; so does that of a group-norm network (``norm="group"``),
    which normalises each tile by its own statistics.

    Memory: the tiles are cut from the image as they are needed (no padded or rotated
    copy of it is made) and their outputs written straight into the result, so besides
    the image and the result only one batch of tiles is held. Pass ``out`` (for
    example a :class:`numpy.memmap` or :func:`tifffile.memmap`) and ``channels`` to
    write an image larger than memory to disk as it is computed.

    Parameters
    ----------
    net : UNet
        The network; it is run in eval mode and left in the training mode it had.
    image : np.ndarray
        ``(H, W)`` (for one input channel) or ``(C, H, W)``, any size >= 1x1, finite.
        No intensity normalisation is applied: the values are fed as they are, cast to
        the network's dtype (float32 for a default network).
    tile : int, optional
        Input tile side; see :func:`tile_geometry` for the usable sizes. Default:
        :func:`choose_tile` within :func:`default_budget` of the device.
    batch_size : int, optional
        Tiles per forward pass; default as many as fit the budget.
    tta : bool
        Average the probabilities over the 8 rotations and flips of the image, each
        mapped back before averaging (the paper averaged rotated versions).
    device : torch.device or str, optional
        Where to run; the network is moved there. Default: where the network is.
    progress : bool or tqdm-like class
        Show a tqdm bar over the tiles; a class with tqdm's interface (for example
        ``napari.utils.progress``) is used instead of tqdm itself.
    precision : {"auto", "fp32", "bf16"}
        ``"auto"`` (default) runs the network under ``torch.autocast`` with bfloat16 on
        GPUs that support it and on CPUs with native bf16 instructions (AVX512-BF16,
        AMX, Arm BF16), and in float32 elsewhere, where bf16 is emulated and much
        slower. ``"fp32"`` always computes in float32 (TF32 convolutions, which PyTorch
        allows on CUDA by default, are switched off during the call); ``"bf16"``
        always uses bfloat16 autocast. Probabilities are returned in float32 either
        way.
    channels : sequence of int, optional
        Class indices to return, in this order (e.g. ``[1]`` for the foreground of a
        two-class network); default all classes.
    out : array-like, optional
        ``(len(channels), H, W)`` float32 array to write the result into (anything
        that takes NumPy slice assignment and ``+=``); it is returned.
    context : bool
        ``image`` is a block of a larger image that already carries ``net.margin``
        pixels of context on every side (mirrored where it met the larger image's
        border): the result covers the inner ``(H - 2 * margin, W - 2 * margin)``
        pixels and equals that part of the larger image's prediction, provided the
        block's inner part starts at a multiple of ``net.size_step`` (for
        ``padding="same"``: of the tile's stride, with the same ``tile``) in the larger
        image. This is how :mod:`tileunet.inference.blockwise` predicts images larger than
        memory. Not with ``tta``.

    Returns
    -------
    np.ndarray
        ``(K, H, W)`` float32 softmax probabilities (``K = len(channels)``), or ``out``.

    Examples
    --------
    >>> net = UNet(depth=3, width=4, dropout=0.0)
    >>> probs = predict(net, np.zeros((30, 50), np.float32), progress=False)
    >>> probs.shape, probs.dtype
    ((2, 30, 50), dtype('float32'))
    """
    cfg = net.config
    x = _as_image(image, cfg.in_channels)  # (C, H, W)
    h, w = _predicted_size(net, x, context, tta)
    dev = _net_device(net) if device is None else torch.device(device)
    amp, dtype = _compute_types(net, precision, dev)
    check_batch_size(batch_size)
    keep = _channels(channels, cfg.num_classes)
    if out is not None and tuple(out.shape) != (len(keep), h, w):
        raise ValueError(f"out must have shape {(len(keep), h, w)} (channels, H, W), "
                         f"got {tuple(out.shape)}")
    tile, out_tile, stride, batch_size, n_tiles = _tiles(net, (h, w), tile, batch_size, dev,
                                                          dtype)
    if device is not None:
        net.to(dev)
    channels_last = inference_channels_last(dev, dtype)
    transforms = DIHEDRAL if tta else DIHEDRAL[:1]
    run = _tile_probabilities(net, dev, amp, out_tile, keep, len(transforms), channels_last)
    was_training = net.training
    restore_format = channels_last and all(
        p.is_contiguous() for p in net.parameters() if p.ndim == 4)
    bar_class = progress if callable(progress) else tqdm
    bar = bar_class(total=len(transforms) * n_tiles, desc="predict", unit="tile",
                    disable=not progress)
    if out is None:
        out = np.empty((len(keep), h, w), dtype=np.float32)
    try:
        net.eval()
        if channels_last:
            net.to(memory_format=torch.channels_last)
        strict = strict_fp32(dev) if amp is None else contextlib.nullcontext()
        with torch.inference_mode(), strict:
            xt = torch.from_numpy(x).to(dev, dtype)  # no copy when already there
            for i, transform in enumerate(transforms):
                tiled_apply(run, xt, margin=net.margin, in_tile=tile, out_tile=out_tile,
                            stride=stride, batch_size=int(batch_size),
                            out_channels=len(keep), callback=bar.update,
                            transform=transform, out=out, add=i > 0, context=context)
    finally:
        bar.close()
        net.train(was_training)
        if restore_format:
            net.to(memory_format=torch.contiguous_format)
    return out


def _predicted_size(net: UNet, x: np.ndarray, context: bool, tta: bool) -> tuple[int, int]:
    """``(H, W)`` of the result: the image's, or with ``context`` its inner part."""
    h, w = x.shape[1:]
    if not context:
        return h, w
    if tta:
        raise ValueError("tta is not available with context=True")
    if min(h, w) <= 2 * net.margin:
        raise ValueError(f"an image with context must be larger than 2 * margin = "
                         f"{2 * net.margin} on each side, got {h}x{w}")
    return h - 2 * net.margin, w - 2 * net.margin


def _compute_types(net: UNet, precision: str, dev: torch.device
                   ) -> tuple[torch.dtype | None, torch.dtype]:
    """The autocast dtype (None: none) and the network's parameter dtype."""
    amp = autocast_dtype(precision, dev)  # validates precision
    dtype = next(net.parameters()).dtype
    if not dtype.is_floating_point:
        raise ValueError(f"network parameters must be floating point, got {dtype}")
    if precision == "auto" and dtype != torch.float32:
        amp = None  # a float64 (or already half-precision) network runs as it is
    return amp, dtype


def _tiles(net: UNet, size: tuple[int, int], tile: int | None, batch_size: int | None,
           dev: torch.device, dtype: torch.dtype) -> tuple[int, int, int, int, int]:
    """Tile side (the given one, checked, or what fits the memory budget of ``dev``),
    its output side and stride (:func:`tile_geometry`), tiles per batch (given, or what
    fits the budget) and the number of tiles of an image of ``size``."""
    element = torch.tensor([], dtype=dtype).element_size()
    budget = default_budget(dev) if tile is None or batch_size is None else 0
    if tile is None:
        tile = choose_tile(net, size, budget, bytes_per_element=element)
    else:
        check_tile_fits(net, tile, dev, batch_size=batch_size or 1, bytes_per_element=element)
    out_tile, stride = tile_geometry(net, tile)
    n_tiles = len(tile_layout(size, in_tile=tile, out_tile=out_tile, margin=net.margin,
                              stride=stride))
    if batch_size is None:
        per_tile = tile_memory_bytes(net, tile, bytes_per_element=element)
        batch_size = max(1, min(n_tiles, budget // per_tile))
    return tile, out_tile, stride, batch_size, n_tiles


def _tile_probabilities(net: UNet, dev: torch.device, amp: torch.dtype | None,
                        out_tile: int, keep: list[int], n_transforms: int,
                        channels_last: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function :func:`tiled_apply` runs on each batch of tiles: the kept classes'
    softmax probabilities of the output tiles, scaled by ``1 / n_transforms`` (a power
    of two: sums of scaled tiles are exact)."""
    crop = net.margin if net.config.padding == "same" else 0  # same: keep the centre only
    select = None if keep == list(range(net.config.num_classes)) else torch.tensor(keep)
    scale = 1.0 / n_transforms

    def run(batch: torch.Tensor) -> torch.Tensor:  # (N, C, tile, tile)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with (torch.autocast(dev.type, dtype=amp) if amp is not None
              else contextlib.nullcontext()):
            logits = net(batch)  # (N, K, out, out)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        if crop:
            logits = logits[..., crop : crop + out_tile, crop : crop + out_tile]
        probs = torch.softmax(logits, dim=1)
        if select is not None:
            probs = probs.index_select(1, select.to(probs.device))
        if scale != 1.0:
            probs = probs * scale
        return probs

    return run


def _channels(channels: Sequence[int] | None, num_classes: int) -> list[int]:
    if channels is None:
        return list(range(num_classes))
    keep = [int(c) for c in channels]
    if not keep or any(c != c0 for c, c0 in zip(keep, channels, strict=True)) or any(
            not 0 <= c < num_classes for c in keep):
        raise ValueError(f"channels must be a non-empty list of class indices in "
                         f"0..{num_classes - 1}, got {channels!r}")
    return keep


__all__ = ["autocast_dtype", "check_batch_size", "check_tile_fits", "choose_tile",
           "default_budget", "predict", "tile_geometry", "tile_memory_bytes"]
