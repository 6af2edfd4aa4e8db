"""Overlap-tile geometry: mirror the borders, cut tiles, run them, stitch the outputs.

The paper's strategy for images larger than one network input (Fig. 2 of [1]_): the
*output* tiles are disjoint and, put side by side, cover the image; each *input* tile
is its output tile plus ``margin`` pixels of context on every side; where that context
falls outside the image it is filled by mirroring the image at its border.

Coordinates used throughout: the image is mirror-padded by ``margin`` before (top and
left), so tile ``k`` along an axis starts at ``k * stride`` in the padded image, and the
output pixel ``q`` (``0 <= q < stride``) of that tile lands on pixel ``k * stride + q``
of the image. ``stride`` is the number of output pixels kept per tile: usually the whole
output tile, less when the tiles must stay aligned to a grid (see
:func:`tileunet.inference.overlap`, where ``stride`` is a multiple of the network's pooling step).

Nothing here knows about networks: :func:`tiled_apply` takes any function that maps a
batch of input tiles to a batch of output tiles, so the identity test (a centre crop by
``margin`` must give back the input exactly) checks this whole module.

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
   Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def reflect_indices(n: int, before: int, after: int) -> np.ndarray:
    """Indices that mirror an axis of length ``n`` by ``before`` and ``after`` pixels.

    The reflection does not repeat the edge pixel (NumPy's ``mode="reflect"``):
    ``[0, 1, 2]`` padded by 2 reads ``[2, 1, 0, 1, 2, 1, 0]``. Pads longer than the axis
    keep reflecting back and forth (the pattern is periodic with period ``2 * (n - 1)``).
    An axis of length 1 has nothing to reflect, so its single pixel is repeated.

    Parameters
    ----------
    n : int
        Length of the axis (>= 1).
    before, after : int
        Pixels to add before and after (>= 0).

    Returns
    -------
    np.ndarray
        ``int64`` indices into the axis, of length ``before + n + after``.

    Examples
    --------
    >>> reflect_indices(3, 2, 4).tolist()
    [2, 1, 0, 1, 2, 1, 0, 1, 2]
    >>> reflect_indices(1, 2, 1).tolist()
    [0, 0, 0, 0]
    """
    if n < 1:
        raise ValueError(f"axis length must be >= 1, got {n}")
    if before < 0 or after < 0:
        raise ValueError(f"pads must be >= 0, got before={before}, after={after}")
    i = np.arange(-before, n + after, dtype=np.int64)
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.mod(i, period)  # into [0, period)
    return np.where(i < n, i, period - i)


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        pair = tuple(int(v) for v in value)
        if len(pair) != 2:
            raise ValueError(f"{name} must be an int or a pair (rows, cols), got {value!r}")
    if min(pair) < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return pair  # type: ignore[return-value]


def mirror_pad(
    image: ArrayT,
    pad_before: int | tuple[int, int],
    pad_after: int | tuple[int, int],
) -> ArrayT:
    """Mirror-pad the last two axes of a NumPy array or a torch tensor.

    Same values as ``np.pad(image, ..., mode="reflect")`` on those axes, also for pads
    larger than the image, and with the single pixel repeated along an axis of length 1
    (see :func:`reflect_indices`). A torch tensor stays on its device.

    Parameters
    ----------
    image : np.ndarray or torch.Tensor
        Array of shape ``(..., H, W)`` with ``H, W >= 1``.
    pad_before, pad_after : int or (int, int)
        Pixels added before (top, left) and after (bottom, right); an int pads both axes
        alike, a pair gives ``(rows, cols)``.

    Returns
    -------
    np.ndarray or torch.Tensor
        Same type, dtype (and device) as ``image``, shape
        ``(..., H + top + bottom, W + left + right)``.

    Examples
    --------
    >>> mirror_pad(np.array([[1, 2, 3]]), (0, 2), (0, 1)).tolist()
    [[3, 2, 1, 2, 3, 2]]
    """
    if image.ndim < 2:
        raise ValueError(f"image must have at least 2 dimensions (..., H, W), got {image.ndim}")
    h, w = image.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"image must be at least 1x1, got {h}x{w}")
    (top, left), (bottom, right) = _pair(pad_before, "pad_before"), _pair(pad_after, "pad_after")
    rows = reflect_indices(h, top, bottom)
    cols = reflect_indices(w, left, right)
    if isinstance(image, torch.Tensor):
        r = torch.from_numpy(rows).to(image.device)
        c = torch.from_numpy(cols).to(image.device)
        return image.index_select(-2, r).index_select(-1, c)
    return image[..., rows[:, None], cols[None, :]]


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of one image go.

    Build it with :func:`tile_layout`, which checks the numbers.

    Attributes
    ----------
    image_hw : (int, int)
        Image height and width.
    in_tile, out_tile : int
        Side of the (square) input tile and of the output the function returns for it.
    margin : int
        Context pixels on each side: output pixel ``q`` sees input pixel ``margin + q``.
    stride : int
        Output pixels kept per tile and axis (the first ``stride`` of ``out_tile``); also
        the distance between neighbouring tiles.
    """

    image_hw: tuple[int, int]
    in_tile: int
    out_tile: int
    margin: int
    stride: int

    @property
    def grid(self) -> tuple[int, int]:
        """Number of tiles along the rows and the columns."""
        h, w = self.image_hw
        return math.ceil(h / self.stride), math.ceil(w / self.stride)

    @property
    def pad_before(self) -> tuple[int, int]:
        """Mirrored pixels added at the top and the left."""
        return self.margin, self.margin

    @property
    def pad_after(self) -> tuple[int, int]:
        """Mirrored pixels added at the bottom and the right.

        The margin, plus enough to fill the last tile: the image extent is continued by
        mirroring up to a whole number of output tiles.
        """
        return tuple(  # type: ignore[return-value]
            (k - 1) * self.stride + self.in_tile - self.margin - n
            for k, n in zip(self.grid, self.image_hw, strict=True)
        )

    @property
    def padded_hw(self) -> tuple[int, int]:
        """Shape of the mirror-padded image the tiles are cut from."""
        return tuple(  # type: ignore[return-value]
            (k - 1) * self.stride + self.in_tile for k in self.grid
        )

    def __len__(self) -> int:
        ny, nx = self.grid
        return ny * nx

    def origins(self) -> list[tuple[int, int]]:
        """Top-left corners of the tiles, row by row.

        ``(y, x)`` is both where the input tile starts in the padded image and where
        its kept output starts in the image.
        """
        ny, nx = self.grid
        return [(i * self.stride, j * self.stride) for i in range(ny) for j in range(nx)]


def tile_layout(
    image_hw: tuple[int, int],
    *,
    in_tile: int,
    out_tile: int,
    margin: int,
    stride: int | None = None,
) -> TileLayout:
    """Check the tile geometry and lay the tiles over an image.

    Parameters
    ----------
    image_hw : (int, int)
        Image height and width (>= 1 each).
    in_tile : int
        Input tile side.
    out_tile : int
        Output tile side; output pixel ``q`` must depend on input pixels
        ``q .. q + 2 * margin`` only, so ``out_tile + 2 * margin <= in_tile``.
    margin : int
        Context pixels per side (>= 0).
    stride : int, optional
        Output pixels kept per tile, ``1 <= stride <= out_tile``; default ``out_tile``.

    Returns
    -------
    TileLayout

    Examples
    --------
    >>> layout = tile_layout((500, 300), in_tile=572, out_tile=388, margin=92)
    >>> layout.grid, layout.pad_after
    ((2, 1), (368, 180))
    """
    h, w = (int(n) for n in image_hw)
    if h < 1 or w < 1:
        raise ValueError(f"image must be at least 1x1, got {h}x{w}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if out_tile < 1:
        raise ValueError(f"out_tile must be >= 1, got {out_tile}")
    if out_tile + 2 * margin > in_tile:
        raise ValueError(
            f"in_tile must be at least out_tile + 2 * margin = {out_tile + 2 * margin}, "
            f"got {in_tile}"
        )
    stride = out_tile if stride is None else int(stride)
    if not 1 <= stride <= out_tile:
        raise ValueError(f"stride must be in [1, out_tile={out_tile}], got {stride}")
    return TileLayout((h, w), int(in_tile), int(out_tile), int(margin), stride)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


#: The 8 symmetries of the square as ``(k, flip)``: flip the columns (when ``flip``),
#: then rotate by ``k`` quarter turns (``np.rot90`` / ``torch.rot90`` direction).
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))


def dihedral(image: ArrayT, k: int, flip: bool) -> ArrayT:
    """The image flipped left-right (when ``flip``), then rotated by ``k`` quarter turns.

    Works on the last two axes of a NumPy array or a torch tensor (a view for NumPy).

    Examples
    --------
    >>> dihedral(np.array([[1, 2], [3, 4]]), 1, False).tolist()
    [[2, 4], [1, 3]]
    """
    if isinstance(image, torch.Tensor):
        return torch.rot90(image.flip(-1) if flip else image, k, dims=(-2, -1))
    return np.rot90(image[..., ::-1] if flip else image, k, axes=(-2, -1))


def _dihedral_source(k: int, flip: bool, hw: tuple[int, int], rows: np.ndarray,
                     cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Where a block of the transformed image lies in the original image.

    For the block ``R[rows][:, cols]`` of ``R = dihedral(X, k, flip)`` (``X`` of shape
    ``hw``), returns index arrays ``(i, j)`` into ``X`` and whether the block is the
    transpose of ``X[i][:, j]``.
    """
    h, w = hw
    k %= 4
    if k == 0:
        i, j, swap = rows, cols, False
    elif k == 1:  # rot90(Y)[a, b] = Y[b, W - 1 - a]
        i, j, swap = cols, w - 1 - rows, True
    elif k == 2:  # rot90(Y, 2)[a, b] = Y[H - 1 - a, W - 1 - b]
        i, j, swap = h - 1 - rows, w - 1 - cols, False
    else:  # rot90(Y, 3)[a, b] = Y[H - 1 - b, a]
        i, j, swap = h - 1 - cols, rows, True
    if flip:  # Y[i, j] = X[i, W - 1 - j]
        j = w - 1 - j
    return i, j, swap


def _as_slice(idx: np.ndarray) -> tuple[slice, bool]:
    """A run of consecutive indices (rising or falling) as a slice, and whether it falls."""
    lo, hi = int(idx.min()), int(idx.max())
    return slice(lo, hi + 1), bool(len(idx) > 1 and idx[0] > idx[-1])


def tiled_apply(
    fn: Callable[[ArrayT], Any],
    image: ArrayT,
    *,
    margin: int,
    in_tile: int,
    out_tile: int,
    stride: int | None = None,
    batch_size: int = 1,
    out_channels: int | None = None,
    callback: Callable[[int], object] | None = None,
    transform: tuple[int, bool] = (0, False),
    out: Any = None,
    add: bool = False,
    context: bool = False,
) -> Any:
    """Apply ``fn`` to an image of any size, tile by tile, with mirrored borders.

    The input tiles are those of the image mirror-padded (:func:`mirror_pad`) by
    ``margin`` at the top and left and by enough at the bottom and right to fill a
    whole number of tiles; each is cut straight from the image with mirrored indices,
    so no padded copy of the image is made. The tiles are passed to ``fn`` in
    batches, and the first ``stride`` x ``stride`` pixels of each output tile are
    written, side by side, into the result as they come. Output tiles do not overlap,
    so there is nothing to blend: if ``fn`` is a function of each output pixel's
    context alone, the result does not depend on the tile size.

    With ``transform=(k, flip)`` the tiles are those of :func:`dihedral` of the image
    (again cut without making the transformed copy), and each output tile is mapped
    back before it is written: the result is ``dihedral`` undone on the tiled result
    of the transformed image, which is how test-time augmentation is built.

    Parameters
    ----------
    fn : callable
        Maps a batch of input tiles ``(N, C, in_tile, in_tile)`` (same type as ``image``:
        NumPy array or torch tensor on its device) to ``(N, K, out_tile, out_tile)``
        (NumPy array or tensor); output pixel ``(y, x)`` belongs to input pixel
        ``(margin + y, margin + x)``.
    image : np.ndarray or torch.Tensor
        ``(C, H, W)`` with ``H, W >= 1``; a NumPy memory map is read tile by tile.
    margin, in_tile, out_tile, stride
        Tile geometry; see :func:`tile_layout`.
    batch_size : int
        Tiles per call of ``fn``.
    out_channels : int, optional
        Expected ``K``; checked when given.
    callback : callable, optional
        Called with the number of tiles done after each batch (e.g. a progress bar's
        ``update``).
    transform : (int, bool)
        ``(k, flip)`` of :func:`dihedral`; default the identity.
    out : array-like, optional
        ``(K, H, W)`` array that receives the result (a NumPy array, a memory map, or
        anything that takes NumPy slice assignment); default a new NumPy array of the
        dtype ``fn`` returns.
    add : bool
        Add the output tiles to ``out`` instead of overwriting it.
    context : bool
        ``image`` already carries ``margin`` pixels of context on every side, such as a
        block cut from a larger image with its halo: nothing is mirrored in front, the
        first tile starts at the image's own top-left corner, and the result covers the
        inner ``(H - 2 * margin, W - 2 * margin)`` pixels (only the last tiles, which
        overhang, read mirrored pixels, for outputs that are not kept). Only with the
        identity ``transform``.

    Returns
    -------
    np.ndarray or the given ``out``
        ``(K, H, W)``.

    Examples
    --------
    The identity check: a centre crop by the margin gives back the image.

    >>> img = np.arange(35.0).reshape(1, 5, 7)
    >>> crop = lambda x: x[..., 2:-2, 2:-2]
    >>> out = tiled_apply(crop, img, margin=2, in_tile=7, out_tile=3, batch_size=4)
    >>> np.array_equal(out, img)
    True
    """
    if image.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W), got shape {tuple(image.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if add and out is None:
        raise ValueError("add=True needs an out array to add to")
    k, flip = int(transform[0]) % 4, bool(transform[1])
    _, h, w = image.shape
    if context:
        if (k, flip) != (0, False):
            raise ValueError("context=True works with the identity transform only")
        if min(h, w) <= 2 * margin:
            raise ValueError(f"an image with context must be larger than 2 * margin = "
                             f"{2 * margin} on each side, got {h}x{w}")
    oh, ow = (h - 2 * margin, w - 2 * margin) if context else (h, w)  # the result
    th, tw = (ow, oh) if k % 2 else (oh, ow)  # the transformed result
    layout = tile_layout((th, tw), in_tile=in_tile, out_tile=out_tile, margin=margin,
                         stride=stride)
    if out is not None and (len(out.shape) != 3 or tuple(out.shape[1:]) != (oh, ow)):
        raise ValueError(f"out must have shape (K, {oh}, {ow}), got {tuple(out.shape)}")
    cut = _tile_cutter(image, layout, (k, flip), context)
    stack = torch.stack if isinstance(image, torch.Tensor) else np.stack
    origins = layout.origins()
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        batch = stack([cut(y, x) for y, x in chunk])
        result = _to_numpy(fn(batch))  # (N, K, out_tile, out_tile)
        _check_result(result, tuple(batch.shape), len(chunk), out_tile,
                      out_channels if out is None else out.shape[0])
        if out is None:
            out = np.empty((result.shape[1], oh, ow), dtype=result.dtype)
        for (y, x), tile in zip(chunk, result, strict=True):
            _put_tile(out, tile, (y, x), layout.stride, (th, tw), (k, flip), add)
        if callback is not None:
            callback(len(chunk))
    assert out is not None  # there is always at least one tile
    return out


def _tile_cutter(image: ArrayT, layout: TileLayout, transform: tuple[int, bool],
                 context: bool) -> Callable[[int, int], ArrayT]:
    """``cut(y, x)``: the input tile at padded position ``(y, x)`` of the transformed,
    mirror-padded image, cut straight from ``image`` (no padded or transformed copy)."""
    k, flip = transform
    _, h, w = image.shape
    th, tw = (w, h) if k % 2 else (h, w)
    t = layout.in_tile
    if context:  # the padded image is the image, continued by mirroring to the last tile
        (ph, pw) = layout.padded_hw
        rows_all, cols_all = reflect_indices(h, 0, ph - h), reflect_indices(w, 0, pw - w)
    else:
        (pt, pl), (pb, pr) = layout.pad_before, layout.pad_after
        rows_all = reflect_indices(th, pt, pb)  # padded row p is image row rows_all[p]
        cols_all = reflect_indices(tw, pl, pr)

    def cut(y: int, x: int) -> ArrayT:
        i, j, swap = _dihedral_source(k, flip, (h, w), rows_all[y : y + t],
                                      cols_all[x : x + t])
        if isinstance(image, torch.Tensor):
            dev = image.device
            block = image.index_select(-2, torch.from_numpy(i).to(dev))
            block = block.index_select(-1, torch.from_numpy(j).to(dev))
            return block.transpose(-2, -1) if swap else block
        block = image[:, i[:, None], j[None, :]]
        return block.swapaxes(-2, -1) if swap else block

    return cut


def _check_result(result: np.ndarray, batch_shape: tuple, n: int, out_tile: int,
                  channels: int | None) -> None:
    """``fn``'s output for a batch of ``n`` tiles must be ``(n, K, out_tile, out_tile)``."""
    if (result.ndim != 4 or result.shape[0] != n or result.shape[2:] != (out_tile, out_tile)
            or (channels is not None and result.shape[1] != channels)):
        want = f"({n}, {'K' if channels is None else channels}, {out_tile}, {out_tile})"
        raise ValueError(f"fn must map a batch of shape {batch_shape} to {want}, "
                         f"got {result.shape}")


def _put_tile(out: Any, tile: np.ndarray, origin: tuple[int, int], stride: int,
              size: tuple[int, int], transform: tuple[int, bool], add: bool) -> None:
    """Write (or add) the first ``stride`` x ``stride`` pixels of an output tile at
    ``origin`` of the transformed result (``size``), mapped back to ``out``'s frame."""
    (y, x), (th, tw), (k, flip) = origin, size, transform
    oh, ow = (tw, th) if k % 2 else (th, tw)
    dy, dx = min(stride, th - y), min(stride, tw - x)
    i, j, swap = _dihedral_source(k, flip, (oh, ow), np.arange(y, y + dy), np.arange(x, x + dx))
    block = tile[:, :dy, :dx]
    if swap:
        block = block.swapaxes(-2, -1)
    (rs, rdown), (cs, cdown) = _as_slice(i), _as_slice(j)
    block = block[:, ::-1 if rdown else 1, ::-1 if cdown else 1]
    if add:
        out[:, rs, cs] += block
    else:
        out[:, rs, cs] = block


__all__ = ["DIHEDRAL", "TileLayout", "dihedral", "mirror_pad", "reflect_indices", "tile_layout",
           "tiled_apply"]
