"""Images larger than memory: block-wise prediction with dask, written to zarr.

The image is read lazily (a zarr array, an OME-Zarr image, or a TIFF through tifffile's
zarr interface) as a dask array of blocks. Each block is predicted with
:func:`dask.array.map_overlap`, its halo ``net.margin`` pixels wide, and written to a
zarr array as it comes; only a few blocks are in memory at any time, so the image can
be far larger than memory. The same job runs on this machine (dask's synchronous
scheduler) or on a ``dask.distributed`` cluster (``scheduler=ADDRESS``).

Why the result equals :func:`tileunet.predict` on the whole image
-----------------------------------------------------------------
A valid U-Net is translation-equivariant only for shifts by its pooling step (see
:mod:`tileunet.predict`). Blocks therefore start at multiples of ``net.size_step``
(``block`` is rounded to one), and each block is predicted from a window cut from the
image as the whole-image prediction sees it: ``net.margin`` pixels of context before
the block, and after it ``net.margin`` plus one pooling step (an output pixel late in a
pooling cell can see a few pixels past the margin; the extra outputs are dropped),
filled by mirroring where the window meets the image border, with the same mirror as
the in-memory path (which does not repeat the edge pixel; dask's own
``boundary="reflect"`` does, so the halo is taken with ``boundary="none"`` and the
mirror is built from the image's indices). A block at the bottom or right border whose
size is not a multiple of the step is widened by mirroring to the next multiple, as the
in-memory tiler does. With the same tile and batch size every pixel is bit for bit the
value of the in-memory prediction (tested, with blocks smaller than the tile too).

Instances across blocks
-----------------------
Instance labelling is not local: a cell can lie across a block border. Each block is
labelled from a window that reaches ``max_object`` pixels beyond it, with the very
function the in-memory path uses (:func:`tileunet.postprocess.instances_from_probability`);
an object whose connected component lies wholly inside the window comes out exactly as
on the whole image, and it is named by the raster index of its first pixel, which every
block that sees it agrees on. A second pass renumbers the names ``1..N`` (in raster
order of each object's first pixel) and grows the objects back (``grow`` pixels, with
that much halo). Objects larger than ``max_object`` can be cut at block borders; they
are counted and reported.

Normalisation is global, as in memory: the per-channel minimum, maximum and
percentiles of the whole image are found exactly, in two passes over the image
(a radix selection on the float32 values), not estimated.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from tileunet.data import DataError, Normalization, is_zarr_path, rescale
from tileunet.model import UNet
from tileunet.outputs import clear_stale, refuse_existing
from tileunet.postprocess import check_threshold, grow_labels, instances_from_probability
from tileunet.predict import check_batch_size, check_tile_fits, predict, tile_geometry
from tileunet.tiling import reflect_indices

logger = logging.getLogger(__name__)

#: Default block side (rounded to the network's pooling step).
DEFAULT_BLOCK = 2048
#: Default reach of the instance labelling beyond each block, in pixels.
DEFAULT_MAX_OBJECT = 256
ZARR_SUFFIXES = (".zarr", ".ome.zarr")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")


def _dask():
    try:
        import dask
        import dask.array as da
        import zarr
    except ImportError as e:  # pragma: no cover - the extra is pinned for the tests
        raise ImportError(
            f"block-wise prediction needs dask and zarr ({e.name} is missing): "
            "pip install 'tileunet[dask]'"
        ) from None
    return dask, da, zarr


# ---------------------------------------------------------------------- reading
def _to_cyx(arr: Any, axes: str, source: Path) -> Any:
    """Reorder a dask array with named axes to ``(C, Y, X)``; other axes must be 1 long."""
    axes = axes.upper()
    if len(axes) != arr.ndim or "Y" not in axes or "X" not in axes:
        raise DataError(f"{source}: cannot tell the image axes (axes {axes!r}, "
                        f"shape {arr.shape})")
    chan = [a for a in axes if a in "CS"]
    if len(chan) > 1 and arr.shape[axes.index(chan[1])] > 1 and arr.shape[
            axes.index(chan[0])] > 1:
        raise DataError(f"{source}: has two channel axes (axes {axes})")
    index = []
    for a, n in zip(axes, arr.shape, strict=True):
        if a in "YX" or (a in "CS" and n > 1):
            index.append(slice(None))
        elif n == 1:
            index.append(0)
        else:
            raise DataError(f"{source}: has {n} planes along axis {a!r} (shape {arr.shape}, "
                            f"axes {axes}); block-wise prediction takes one 2-D image, "
                            "with or without channels")
    kept = "".join(a for a, n in zip(axes, arr.shape, strict=True) if a in "YX" or
                   (a in "CS" and n > 1))
    arr = arr[tuple(index)]
    if len(kept) == 2:
        arr = arr[None]
        kept = "C" + kept
    order = [kept.index(c) for c in ("C" if "C" in kept else "S", "Y", "X")]
    return arr.transpose(order)


@functools.lru_cache(maxsize=8)
def _tiff_level0(path: str) -> Any:
    _, _, zarr = _dask()
    z = zarr.open(tifffile.imread(path, aszarr=True, series=0, level=0), mode="r")
    return z["0"] if not hasattr(z, "shape") else z


class _TiffArray:
    """A TIFF's first series as an array that reads only the pieces asked for, through
    tifffile's zarr interface; it pickles as its path (the open file stays in each
    process), so the blocks can be read on the workers of a cluster."""

    def __init__(self, path: str) -> None:
        self.path = path
        z = _tiff_level0(path)
        self.shape, self.dtype, self.ndim = tuple(z.shape), np.dtype(z.dtype), z.ndim
        self.chunks = tuple(z.chunks)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(_tiff_level0(self.path)[index])

    def __reduce__(self) -> tuple:
        return (_TiffArray, (self.path,))


def ngff_multiscales(attrs: dict) -> list | None:
    """OME-Zarr ``multiscales`` of a group's attributes (NGFF 0.4, or 0.5 under "ome")."""
    return attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")


def open_image(path: str | Path) -> Any:
    """A large image as a lazy ``(C, H, W)`` dask array, nothing read yet.

    Parameters
    ----------
    path : str or path-like
        A zarr array (``(Y, X)`` or ``(C, Y, X)``), an OME-Zarr image (the first,
        full-resolution level of its ``multiscales``; ``t`` and ``z`` axes must be 1
        long), or a TIFF (tiled or striped, BigTIFF included), read through tifffile's
        zarr interface; its first series, full-resolution level.

    Raises
    ------
    DataError
        Naming the file and what was wrong.
    """
    _, da, zarr = _dask()
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    if p.suffix.lower() in TIFF_SUFFIXES:
        try:
            with tifffile.TiffFile(p) as tif:
                axes = tif.series[0].axes
            lazy = _TiffArray(str(p.absolute()))
        except (tifffile.TiffFileError, ValueError, OSError, KeyError) as e:
            raise DataError(f"{p}: not a readable TIFF ({e})") from None
        return _to_cyx(da.from_array(lazy, chunks=lazy.chunks, asarray=True), axes, p)
    if not p.is_dir():
        raise DataError(f"{p}: not a zarr store or a TIFF file")
    try:
        z = zarr.open(str(p), mode="r")
    except Exception as e:  # zarr raises several kinds for a folder that is not a store
        raise DataError(f"{p}: not a zarr store ({type(e).__name__}: {e})") from None
    if isinstance(z, zarr.Array):
        axes = {2: "YX", 3: "CYX"}.get(z.ndim)
        if axes is None:
            raise DataError(f"{p}: a zarr array must be (Y, X) or (C, Y, X), got shape "
                            f"{z.shape}")
        return _to_cyx(da.from_zarr(z), axes, p)
    attrs = dict(z.attrs)
    multiscales = ngff_multiscales(attrs)
    if not multiscales:
        raise DataError(f"{p}: a zarr group without OME-Zarr 'multiscales' metadata; "
                        "give the path of the image array inside it")
    ms = multiscales[0]
    try:
        level = ms["datasets"][0]["path"]
        names = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])]
        arr = z[level]
    except (KeyError, IndexError, TypeError) as e:
        raise DataError(f"{p}: broken OME-Zarr multiscales metadata ({e})") from None
    if not names:  # NGFF 0.1/0.2: always 5-D TCZYX
        names = list("tczyx")[-arr.ndim:]
    return _to_cyx(da.from_zarr(arr), "".join(n[0] for n in names), p)


# ---------------------------------------------------------------- normalisation
def _float_keys(x: np.ndarray) -> np.ndarray:
    """float32 values as uint32 keys that sort like the values (finite values only)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    neg = (bits >> 31).astype(bool)
    return np.where(neg, ~bits, bits | np.uint32(0x80000000))


def _keys_to_float(keys: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.uint32)
    neg = (keys >> 31) == 0
    return np.where(neg, ~keys, keys & np.uint32(0x7FFFFFFF)).view(np.float32)


def linear_percentiles(n: int, q: Sequence[float], kth: Callable[[np.ndarray], np.ndarray]
                       ) -> np.ndarray:
    """``np.percentile(x, q)`` of ``n`` values from a function that returns order statistics.

    ``kth(ranks)`` must return the ``ranks``-th smallest values (0-based, float32).
    The arithmetic is NumPy's default ``"linear"`` method step by step, so the result is
    the same float64 number ``np.percentile`` gives (tested against it).
    """
    quantiles = np.true_divide(np.asarray(q, dtype=np.float64), 100)
    virtual = (n - 1) * quantiles
    prev = np.floor(virtual)
    nxt = prev + 1
    prev_i, next_i = prev.astype(np.intp), nxt.astype(np.intp)
    above = virtual >= n - 1
    prev_i[above] = n - 1
    next_i[above] = n - 1
    below = virtual < 0
    prev_i[below] = 0
    next_i[below] = 0
    next_i = np.minimum(next_i, n - 1)
    gamma = np.asarray(virtual - prev, dtype=virtual.dtype)
    a, b = kth(prev_i), kth(next_i)
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe")
    return out


def _channel_stats(image: Any, norm: Normalization, run: Callable) -> list[tuple[float, float]]:
    """Per-channel ``(lo, hi)`` exactly as :class:`Normalization` finds them in memory."""
    c = image.shape[0]
    if norm.method == "none":
        return [(0.0, 1.0)] * c
    want_pct = norm.method == "percentile"

    def first(block: np.ndarray, _loc: tuple) -> list:
        x = block.astype(np.float32, copy=False)
        out = []
        for ch in x:
            bad = ch.size - int(np.count_nonzero(np.isfinite(ch)))
            hist = (np.bincount((_float_keys(ch) >> 16).ravel(), minlength=1 << 16)
                    if want_pct and not bad else None)
            out.append((float(ch.min()), float(ch.max()), bad, hist))
        return out

    parts = run(image, first, "image statistics")
    stats, ranges = [], []
    for ch in range(c):
        lo = min(p[ch][0] for p in parts)
        hi = max(p[ch][1] for p in parts)
        bad = sum(p[ch][2] for p in parts)
        if bad:
            raise DataError(f"{bad} pixels of channel {ch} are NaN or infinite; fill or "
                            "crop them before using the image")
        stats.append(sum(p[ch][3] for p in parts) if want_pct else None)
        ranges.append((lo, hi))
    if not want_pct:
        return ranges
    n = int(np.prod(image.shape[1:]))
    quantiles = np.true_divide(np.asarray([norm.low, norm.high], dtype=np.float64), 100)
    virtual = (n - 1) * quantiles
    ranks = np.unique(np.clip(np.concatenate([np.floor(virtual), np.floor(virtual) + 1]),
                              0, n - 1).astype(np.int64))
    # the top 16 bits of each wanted rank's key, from the first histogram
    prefixes = []
    for hist in stats:
        cum = np.cumsum(hist)
        prefixes.append({int(r): int(np.searchsorted(cum, r, side="right")) for r in ranks})
    wanted = [sorted(set(p.values())) for p in prefixes]

    def second(block: np.ndarray, _loc: tuple) -> list:
        x = block.astype(np.float32, copy=False)
        out = []
        for ch, pre in zip(x, wanted, strict=True):
            keys = _float_keys(ch).ravel()
            top = keys >> 16
            out.append({p: np.bincount((keys[top == p] & 0xFFFF), minlength=1 << 16)
                        for p in pre})
        return out

    parts2 = run(image, second, "image percentiles")
    result = []
    for ch, (lo, hi) in enumerate(ranges):
        if not hi > lo:
            result.append((lo, hi))
            continue
        cum_top = np.concatenate([[0], np.cumsum(stats[ch])])
        low16 = {p: sum(part[ch][p] for part in parts2) for p in wanted[ch]}

        def kth(r: np.ndarray, ch: int = ch, cum_top=cum_top, low16=low16) -> np.ndarray:
            vals = []
            for rank in np.atleast_1d(r):
                p = prefixes[ch][int(rank)]
                within = int(rank) - int(cum_top[p])
                j = int(np.searchsorted(np.cumsum(low16[p]), within, side="right"))
                vals.append((p << 16) | j)
            return _keys_to_float(np.array(vals, dtype=np.uint32))

        p_lo, p_hi = linear_percentiles(n, [norm.low, norm.high], kth)
        if p_hi > p_lo:
            lo, hi = float(p_lo), float(p_hi)
        result.append((lo, hi))
    return result


def _normalize_block(block: np.ndarray, ranges: list[tuple[float, float]],
                     method: str) -> np.ndarray:
    """The arithmetic of :class:`Normalization`, with ranges found on the whole image."""
    x = block.astype(np.float32, copy=True)
    if method != "none":
        rescale(x, ranges)
    return x


# ----------------------------------------------------------------------- blocks
def _halo(net: UNet) -> int:
    """Context a block needs from its neighbours: the margin and one pooling step."""
    return net.margin + net.size_step


def block_size(net: UNet, block: int) -> int:
    """``block`` rounded up to the network's pooling step and to at least the halo."""
    step = net.size_step
    if int(block) != block or block < 1:
        raise ValueError(f"block must be a positive integer, got {block!r}")
    b = max(int(block), _halo(net))
    return math.ceil(b / step) * step


def _chunks(n: int, block: int, least: int) -> tuple[int, ...]:
    """Blocks of ``block`` pixels along an axis of ``n``; a last piece shorter than
    ``least`` is merged into the one before (so every block can lend a full halo)."""
    sizes = [block] * (n // block)
    rest = n - block * len(sizes)
    if rest:
        if sizes and rest < least:
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return tuple(sizes) or (n,)


def _offsets(chunks: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def _window(piece: np.ndarray, n: int, start: int, stop: int, have: int, margin: int,
            step: int, axis: int) -> np.ndarray:
    """Indices into ``piece`` (which starts at image index ``start - have``) of the
    context window of the block ``[start, stop)``: the block widened to a multiple of
    ``step`` and by one step more, ``margin`` pixels on each side, continued by the
    image's mirror where it passes the image border."""
    size = math.ceil((stop - start) / step) * step + step
    idx = reflect_indices(n, margin, margin + size)[start : start + size + 2 * margin]
    idx = idx - (start - have)
    if idx.min() < 0 or idx.max() >= piece.shape[axis]:  # pragma: no cover - a bug if hit
        raise RuntimeError("block window reaches beyond the halo")
    return idx


@functools.lru_cache(maxsize=2)
def _cached_model(path: str, device: str) -> tuple[UNet, dict]:
    from tileunet.checkpoint import load_model
    return load_model(path, device=device)


def _resolve_net(model: UNet | str | Path, device: str | None) -> UNet:
    if isinstance(model, UNet):
        return model
    from tileunet.device import resolve_device
    return _cached_model(str(model), str(resolve_device(device or "auto")))[0]


_PREDICT_LOCK = threading.Lock()


def _predict_window(net: UNet, window: np.ndarray, **kw: Any) -> np.ndarray:
    """One block at a time per process: :func:`predict` switches the network's mode and
    memory layout while it runs, so threads must not share it (dask's default scheduler
    runs blocks in threads); PyTorch uses all cores for one block anyway."""
    with _PREDICT_LOCK:
        return predict(net, window, context=True, progress=False, **kw)


def predict_blocks(model: UNet | str | Path, image: Any, *, block: int = DEFAULT_BLOCK,
                   tile: int | None = None, batch_size: int | None = None,
                   device: str | None = None, precision: str = "auto",
                   channels: Sequence[int] | None = None,
                   ranges: list[tuple[float, float]] | None = None,
                   normalization: str = "none") -> Any:
    """Class probabilities of a large image as a lazy dask array, block by block.

    Parameters
    ----------
    model : UNet or path
        The network, or a run directory / model file that each worker loads once (use
        a path with a cluster, so the weights are not shipped with every task).
    image : dask array or array-like
        ``(H, W)`` or ``(C, H, W)``, fed as it is unless ``ranges`` is given.
    block : int
        Block side, rounded up to a multiple of ``net.size_step`` and to more than the
        margin; any block size gives the same result.
    tile, batch_size, precision, channels
        As for :func:`tileunet.predict`, per block (``tta`` is not available).
    device : str, optional
        ``"auto"``, ``"cpu"``, ``"cuda:1"`` ...; resolved where the blocks run. Default:
        where the network is (for a path: ``"auto"``).
    ranges, normalization
        Per-channel ``(lo, hi)`` and the method, applied to each window as
        :class:`tileunet.data.Normalization` would on the whole image.

    Returns
    -------
    dask.array.Array
        ``(K, H, W)`` float32, chunked in blocks; nothing is computed yet.
    """
    _, da, _ = _dask()
    net = _resolve_net(model, device)
    if isinstance(model, UNet) and device is not None:
        from tileunet.device import resolve_device

        net.to(resolve_device(device))
    if not isinstance(image, da.Array):
        image = da.from_array(np.asarray(image))
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] != net.config.in_channels:
        raise ValueError(f"image must be (H, W) or (C, H, W) with C = "
                         f"{net.config.in_channels}, got shape {image.shape}")
    if net.config.padding != "valid":
        raise ValueError("block-wise prediction needs a network with padding='valid'")
    _, h, w = (int(n) for n in image.shape)
    m, step, halo = net.margin, net.size_step, _halo(net)
    b = block_size(net, block)
    rows, cols = _chunks(h, b, halo + 2 * step), _chunks(w, b, halo + 2 * step)
    image = image.rechunk(((image.shape[0],), rows, cols))
    roff, coff = _offsets(rows), _offsets(cols)
    keep = list(range(net.config.num_classes)) if channels is None else list(channels)

    def fn(piece: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        _, i, j = block_info[None]["chunk-location"]
        y0, y1, x0, x1 = roff[i], roff[i + 1], coff[j], coff[j + 1]
        r = _window(piece, h, y0, y1, halo if i else 0, m, step, 1)
        c = _window(piece, w, x0, x1, halo if j else 0, m, step, 2)
        window = piece[:, r[:, None], c[None, :]]
        if ranges is not None:
            window = _normalize_block(window, ranges, normalization)
        probs = _predict_window(_resolve_net(model, device), window, tile=tile,
                                batch_size=batch_size, precision=precision, channels=keep)
        return probs[:, : y1 - y0, : x1 - x0]

    return da.map_overlap(fn, image, depth={0: 0, 1: halo, 2: halo}, boundary="none",
                          trim=False,
                          dtype=np.float32, chunks=((len(keep),), rows, cols),
                          meta=np.empty((0, 0, 0), np.float32))


# ---------------------------------------------------------------------- running
class _Runner:
    """Runs one function per block (with a halo) and collects the small results, with a
    tqdm bar over blocks; locally (synchronous) or on a dask.distributed client."""

    def __init__(self, client: Any = None, progress: bool = True) -> None:
        self.client = client
        self.progress = progress

    def __call__(self, arr: Any, fn: Callable[[np.ndarray, tuple], Any], desc: str,
                 depth: int = 0) -> list:
        """``fn(piece, chunk_location)`` for every block of ``arr`` (with ``depth``
        pixels of halo on the two last axes where there is a neighbour); the results in
        block order."""
        _, da, _ = _dask()
        nb = arr.numblocks

        def wrap(piece: np.ndarray, block_info: dict | None = None) -> np.ndarray:
            res = np.empty((1,) * piece.ndim, dtype=object)
            res.flat[0] = fn(piece, block_info[None]["chunk-location"])
            return res

        chunks = tuple((1,) * n for n in nb)
        if depth:
            d = {0: 0, 1: depth, 2: depth} if arr.ndim == 3 else {0: depth, 1: depth}
            out = da.map_overlap(wrap, arr, depth=d, boundary="none", trim=False,
                                 dtype=object, chunks=chunks, meta=np.empty((0,) * arr.ndim,
                                                                            object))
        else:
            out = da.map_blocks(wrap, arr, dtype=object, chunks=chunks,
                                meta=np.empty((0,) * arr.ndim, object))
        total = int(np.prod(nb))
        bar = tqdm(total=total, desc=desc, unit="block", disable=not self.progress)
        try:
            if self.client is None:
                from dask.callbacks import Callback

                name = out.name

                class _Bar(Callback):
                    def _posttask(self, key, result, dsk, state, worker_id):
                        if isinstance(key, tuple) and key[0] == name:
                            bar.update(1)

                with _Bar():
                    result = out.compute(scheduler="sync")
                return [r for r in result.ravel()]
            from distributed import as_completed

            parts = out.to_delayed().ravel().tolist()
            futures = self.client.compute(parts)
            for _ in as_completed(futures):
                bar.update(1)
            return [r.ravel()[0] for r in self.client.gather(futures)]
        finally:
            bar.close()


# ---------------------------------------------------------------------- segment
PLAIN_PATHS = {"probability": "probability", "mask": "mask", "labels": "labels"}
OME_PATHS = {"probability": "0", "mask": "labels/mask/0", "labels": "labels/instances/0"}
#: NGFF units for the length units microscopy files use
_UNITS = {"micron": "micrometer", "microns": "micrometer", "um": "micrometer",
          "\u00b5m": "micrometer", "\u03bcm": "micrometer", "micrometer": "micrometer",
          "nm": "nanometer", "nanometer": "nanometer", "mm": "millimeter",
          "millimeter": "millimeter", "cm": "centimeter", "centimeter": "centimeter",
          "m": "meter", "meter": "meter", "angstrom": "angstrom"}


def image_scale(path: str | Path) -> tuple[float, float, str | None]:
    """Pixel size ``(y, x, unit)`` stored with an image (1, 1, None when there is none).

    From an OME-Zarr image's first dataset, an OME-TIFF's ``PhysicalSizeY/X``, or a
    TIFF's resolution tags (with ImageJ's unit, or centimetres / inches).
    """
    p = Path(path)
    try:
        if p.suffix.lower() in TIFF_SUFFIXES:
            return _tiff_scale(p)
        if p.is_dir():
            return _zarr_scale(p)
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError):
        logger.warning("%s: unreadable pixel size; using 1 per pixel", p)
    return 1.0, 1.0, None


def _zarr_scale(p: Path) -> tuple[float, float, str | None]:
    _, _, zarr = _dask()
    z = zarr.open(str(p), mode="r")
    attrs = dict(z.attrs)
    ms = (ngff_multiscales(attrs) or [None])[0]
    if not ms:
        return 1.0, 1.0, None
    axes = [a if isinstance(a, dict) else {"name": a} for a in ms.get("axes", [])]
    names = [a["name"] for a in axes]
    scale = [1.0] * len(names)
    for t in ms["datasets"][0].get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = [float(v) for v in t["scale"]]
    iy, ix = names.index("y"), names.index("x")
    unit = axes[ix].get("unit")
    return scale[iy], scale[ix], _UNITS.get(str(unit).lower(), unit) if unit else None


def _tiff_scale(p: Path) -> tuple[float, float, str | None]:
    import re

    with tifffile.TiffFile(p) as tif:
        if tif.is_ome and tif.ome_metadata:
            xml = tif.ome_metadata
            got = {}
            for ax in ("X", "Y"):
                m = re.search(rf'PhysicalSize{ax}="([^"]+)"', xml)
                if m:
                    got[ax] = float(m.group(1))
            if "X" in got:
                m = re.search(r'PhysicalSizeXUnit="([^"]+)"', xml)
                unit = _UNITS.get(m.group(1).lower(), "micrometer") if m else "micrometer"
                return got.get("Y", got["X"]), got["X"], unit
        page = tif.pages.first
        tags = page.tags
        if "XResolution" not in tags:
            return 1.0, 1.0, None
        xr, yr = tags["XResolution"].value, tags.get("YResolution", tags["XResolution"]).value
        sx, sy = xr[1] / xr[0], yr[1] / yr[0]  # units per pixel
        ij = tif.imagej_metadata or {}
        if ij.get("unit"):
            unit = _UNITS.get(str(ij["unit"]).lower())
            return (sy, sx, unit) if unit else (1.0, 1.0, None)
        res_unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
        if res_unit == 3:  # centimetre (inches are dots per inch of print, not a pixel size)
            return sy * 1e4, sx * 1e4, "micrometer"
    return 1.0, 1.0, None


def _pyramid_levels(h: int, w: int, block: int) -> int:
    """How many times the OME-Zarr output is halved: until a level fits in one block,
    or a side would drop under 16 px."""
    n = 0
    while max(h, w) > block and min(h, w) // 2 >= 16:
        h, w, n = h // 2, w // 2, n + 1
    return n


def _halve(a: np.ndarray, mean: bool) -> np.ndarray:
    """2x2 mean (probabilities) or the top-left pixel of each 2x2 cell (masks, labels:
    no values that were not there) over the last two axes; an odd last row/column is
    dropped, as the level's size is the floor of half."""
    hh, ww = a.shape[-2] // 2 * 2, a.shape[-1] // 2 * 2
    a = a[..., :hh, :ww]
    if not mean:
        return a[..., ::2, ::2]
    cells = a.reshape(*a.shape[:-2], hh // 2, 2, ww // 2, 2)
    return cells.mean(axis=(-3, -1), dtype=np.float64).astype(a.dtype)


def level_path(path: str, level: int) -> str:
    """``"labels/mask/0"`` -> ``"labels/mask/<level>"``."""
    head, _, _ = path.rpartition("/")
    return f"{head}/{level}" if head else str(level)


def _write_pyramid(store: str, paths: dict, block: int, run: Any) -> int:
    """Halved levels ``1, 2, ...`` beside each level-0 array of an OME-Zarr output, each
    computed block by block from the level above; returns how many were written."""
    _, da, zarr = _dask()
    root = zarr.open_group(store, mode="r+")
    h, w = root[paths["labels"]].shape
    levels = _pyramid_levels(h, w, block)
    for level in range(1, levels + 1):
        h, w = h // 2, w // 2
        for path in paths.values():
            src = root[level_path(path, level - 1)]
            root.create_array(level_path(path, level), shape=(*src.shape[:-2], h, w),
                              chunks=(*src.shape[:-2], block, block), dtype=src.dtype)

        def halve(_: np.ndarray, loc: tuple, level: int = level) -> None:
            i, j = loc
            g = zarr.open_group(store, mode="r+")
            for key, path in paths.items():
                src = g[level_path(path, level - 1)]
                part = src[..., 2 * i * block : 2 * (i + 1) * block,
                           2 * j * block : 2 * (j + 1) * block]
                g[level_path(path, level)][..., i * block : (i + 1) * block,
                                            j * block : (j + 1) * block] = _halve(
                    part, mean=key == "probability")

        run(da.zeros((h, w), chunks=block, dtype=np.uint8), halve, f"pyramid {level}/{levels}")
    return levels


def _write_ngff(root: Any, k: int, scale: tuple[float, float, str | None],
                levels: int = 0) -> None:
    """OME-Zarr 0.4 metadata: the probabilities as the image, mask and instances as its
    label images (``image-label``), all with the input's pixel size, level ``l`` of
    each at ``2**l`` times that."""
    sy, sx, unit = scale

    def space(name: str) -> dict:
        return {"name": name, "type": "space", **({"unit": unit} if unit else {})}

    def multiscales(name: str, channel: bool) -> list:
        axes = ([{"name": "c", "type": "channel"}] if channel else []) + [space("y"),
                                                                            space("x")]
        return [{"version": "0.4", "name": name, "axes": axes, "datasets": [
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": (
                [1.0] if channel else []) + [float(sy) * 2**level, float(sx) * 2**level]}]}
            for level in range(levels + 1)]}]

    root.attrs["multiscales"] = multiscales("probability", True)
    root.attrs["omero"] = {"channels": [
        {"label": "foreground" if k == 2 else f"class {i}", "active": True,
         "color": "FFFFFF", "window": {"start": 0.0, "end": 1.0, "min": 0.0, "max": 1.0}}
        for i in range(1 if k == 2 else k)]}
    labels = root["labels"]
    labels.attrs["labels"] = ["instances", "mask"]
    for name in ("instances", "mask"):
        g = labels[name]
        g.attrs["multiscales"] = multiscales(name, False)
        g.attrs["image-label"] = {"version": "0.4", "source": {"image": "../../"}}
def _have(i: int, n_blocks: int, depth: int) -> tuple[int, int]:
    """Halo pixels a block got before and after it (``boundary="none"``)."""
    return (depth if i > 0 else 0), (depth if i < n_blocks - 1 else 0)


def _name_objects(prob: np.ndarray, loc: tuple[int, int], offsets: tuple[np.ndarray, ...],
                  width: int, depth: int, threshold: float, options: dict
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """Instances of one block's window, named by the raster index of their first pixel.

    Returns the block's names (uint64, 0 = background), the names it holds, and how many
    of its objects belong to components that reach beyond the window (cut objects).
    """
    (i, j), (roff, coff) = loc, offsets
    ny, nx = len(roff) - 1, len(coff) - 1
    (top, bottom), (left, right) = _have(i, ny, depth), _have(j, nx, depth)
    wy0, wx0 = int(roff[i]) - top, int(coff[j]) - left  # window origin in the image
    labels = instances_from_probability(prob, threshold=threshold, grow=0, **options)
    names = np.zeros(prob.shape, dtype=np.uint64)
    n = int(labels.max())
    cut = 0
    if n:
        comps, _ = ndi.label(prob > threshold)  # the components the objects come from
        boxes = ndi.find_objects(comps)
        h, w = prob.shape
        reaches = np.zeros(len(boxes) + 1, dtype=bool)  # component touches an inner side
        for k, box in enumerate(boxes, start=1):
            if box is None:
                continue
            rs, cs = box
            reaches[k] = ((top and rs.start == 0) or (bottom and rs.stop == h)
                          or (left and cs.start == 0) or (right and cs.stop == w))
        ids, first = np.unique(labels.ravel(), return_index=True)
        ids, first = ids[ids > 0], first[ids > 0]
        fy, fx = np.divmod(first, w)
        lut = np.zeros(n + 1, dtype=np.uint64)
        lut[ids] = ((fy + wy0).astype(np.uint64) * np.uint64(width)
                    + (fx + wx0).astype(np.uint64) + np.uint64(1))
        names = lut[labels]
        cut_ids = ids[reaches[comps.ravel()[first]]]
        core = (slice(top, h - bottom), slice(left, w - right))
        if cut_ids.size:
            cut = int(np.isin(np.unique(labels[core]), cut_ids).sum())
        names = names[core]
    else:
        names = names[top : prob.shape[0] - bottom, left : prob.shape[1] - right]
    held = np.unique(names)
    return names, held[held > 0], cut


def is_own_store(path: Path) -> bool:
    """A zarr store that :func:`segment_to_zarr` wrote (its settings under
    ``attrs["tileunet"]``)."""
    import zarr

    try:
        return "tileunet" in zarr.open_group(str(path), mode="r").attrs
    except Exception:  # not a zarr group, unreadable
        return False


def segment_to_zarr(
    model: str | Path,
    source: str | Path,
    out: str | Path,
    *,
    block: int = DEFAULT_BLOCK,
    max_object: int = DEFAULT_MAX_OBJECT,
    tile: int | None = None,
    batch_size: int | None = None,
    threshold: float = 0.5,
    instances: str = "seeded",
    min_distance: int = 5,
    precision: str = "auto",
    device: str = "auto",
    scheduler: str | Any | None = None,
    overwrite: bool = False,
    progress: bool = True,
    ome: bool | None = None,
) -> Path:
    """Segment an image larger than memory into a zarr store: ``tileunet predict ... -o X.zarr``.

    Writes a zarr group at ``out`` with ``probability`` (float32: the foreground
    probability ``(H, W)`` of a two-class model, all classes ``(K, H, W)`` otherwise),
    ``mask`` (uint8: 255 where the foreground probability exceeds ``threshold``, or the
    most probable class) and ``labels`` (uint32 instances, 0 = background), chunked in
    blocks, plus the settings under ``attrs["tileunet"]``. The store is built under a
    temporary name beside ``out`` and renamed when complete.

    Parameters
    ----------
    model : path
        Run directory or model file.
    source : path
        zarr array, OME-Zarr image, or TIFF (:func:`open_image`).
    out : path
        The zarr store to write (``*.zarr``).
    block : int
        Block side in pixels (rounded to the pooling step); memory per worker grows
        with its square.
    max_object : int
        How far beyond its block each block's instance labelling looks: objects whose
        connected component fits within that reach are labelled exactly as on the
        whole image; larger ones can be cut at block borders (their number is logged).
    scheduler : str or distributed.Client, optional
        Address of a dask.distributed scheduler (or a client); default this process.
        Workers must be able to read ``model`` and ``source`` and write beside ``out``
        under the same paths.
    ome : bool, optional
        Write OME-Zarr (NGFF 0.4, zarr format 2), which napari and other NGFF viewers
        open with the image's pixel size: the probabilities are the image ``(c, y, x)``
        at the root, ``mask`` and ``instances`` its label images under ``labels/``.
        Default: when ``out`` ends in ``.ome.zarr``.
    Other parameters
        As for :func:`tileunet.segment.segment_files`.
    """
    from tileunet.device import resolve_device
    from tileunet.postprocess import instance_options

    _, da, zarr = _dask()
    split = instance_options(instances, min_distance)
    check_threshold(threshold)
    check_batch_size(batch_size)
    if int(max_object) != max_object or max_object < 1:
        raise ValueError(f"max_object must be a positive integer, got {max_object!r}")
    out = Path(out).absolute()
    if not is_zarr_path(out):
        raise ValueError(f"{out}: block-wise output must be a zarr store named *.zarr")
    if out == Path(source).absolute():
        raise ValueError(f"{out}: is the input image; choose another output")
    refuse_existing(out, overwrite, is_own_store, "a zarr store that tileunet predict wrote")
    clear_stale(out)
    if ome is None:
        ome = out.name.lower().endswith(".ome.zarr")
    model_path = str(Path(model).absolute())
    # loaded once here (a clear error before any work); predict_blocks finds it cached
    net, extra = _cached_model(model_path, str(resolve_device(device)))
    if extra.get("scale", 1.0) != 1.0:
        raise ValueError(f"{model}: trained at scale {extra['scale']}; block-wise "
                         "prediction supports models trained at scale 1 only")
    norm = Normalization.from_dict(extra.get("normalization", {}))
    if tile is not None:  # a clear error before any work, as predict gives it
        if scheduler is None:  # the memory is this machine's; a cluster's is its own
            check_tile_fits(net, tile, resolve_device(device), batch_size=batch_size or 1)
        else:
            tile_geometry(net, tile)
    image = open_image(source)
    c, h, w = (int(n) for n in image.shape)
    if c != net.config.in_channels:
        raise DataError(f"{source}: has {c} channel(s), the model expects "
                        f"{net.config.in_channels}")
    k = net.config.num_classes
    b = block_size(net, block)
    reach = min(int(max_object), h, w)  # a reach past the image sees all of it
    grow = 2
    client, own_client = scheduler, False
    if isinstance(scheduler, str):
        from distributed import Client

        client, own_client = Client(scheduler), True
    run = _Runner(client, progress)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        # 1. exact normalisation statistics of the whole image
        blocks = image.rechunk(((c,), _chunks(h, b, 1), _chunks(w, b, 1)))
        try:
            ranges = _channel_stats(blocks, norm, run)
        except DataError as e:
            raise DataError(f"{source}: {e}") from None
        # 2. probabilities and mask, block by block, straight into the store
        kp = 1 if k == 2 else k  # probability channels stored
        chan = ome or k != 2  # the probability array has a channel axis
        paths = OME_PATHS if ome else PLAIN_PATHS
        root = zarr.open_group(str(tmp), mode="w", zarr_format=2 if ome else 3)
        root.create_array(paths["probability"], shape=(kp, h, w) if chan else (h, w),
                          chunks=(kp, b, b) if chan else (b, b), dtype="float32")
        root.create_array(paths["mask"], shape=(h, w), chunks=(b, b), dtype="uint8")
        root.create_array(paths["labels"], shape=(h, w), chunks=(b, b), dtype="uint32")
        scratch = zarr.open_group(str(tmp / "_names"), mode="w")
        scratch.create_array("names", shape=(h, w), chunks=(b, b), dtype="uint64")
        # each worker resolves "auto" itself: a CPU-only client may drive GPU workers
        probs = predict_blocks(model_path, image, block=b, tile=tile, batch_size=batch_size,
                               device=device, precision=precision,
                               channels=[1] if k == 2 else None, ranges=ranges,
                               normalization=norm.method)
        roff, coff = _offsets(probs.chunks[1]), _offsets(probs.chunks[2])
        store = str(tmp)

        def write_probs(p: np.ndarray, loc: tuple) -> None:
            _, i, j = loc
            ys, xs = slice(roff[i], roff[i + 1]), slice(coff[j], coff[j + 1])
            g = zarr.open_group(store, mode="r+")
            if chan:
                g[paths["probability"]][:, ys, xs] = p
            else:
                g[paths["probability"]][ys, xs] = p[0]
            if k == 2:
                g[paths["mask"]][ys, xs] = (p[0] > threshold).view(np.uint8) * np.uint8(255)
            else:
                g[paths["mask"]][ys, xs] = np.argmax(p, axis=0).astype(np.uint8)

        run(probs, write_probs, "predict")
        # 3. objects named by their first pixel, from windows reaching `reach` further
        stored = da.from_zarr(str(tmp), component=paths["probability"])
        fg = (stored[0] if chan else stored) if k == 2 else 1.0 - stored[0]
        lb = max(b, reach)  # blocks at least as large as the reach (dask needs that)
        fg = fg.rechunk((_chunks(h, lb, reach), _chunks(w, lb, reach)))
        offs = (_offsets(fg.chunks[0]), _offsets(fg.chunks[1]))

        def name(p: np.ndarray, loc: tuple) -> tuple[np.ndarray, int]:
            names, held, cut = _name_objects(p, loc, offs, w, reach, float(threshold), split)
            i, j = loc
            zarr.open_group(str(tmp / "_names"), mode="r+")["names"][
                offs[0][i] : offs[0][i + 1], offs[1][j] : offs[1][j + 1]] = names
            return held, cut

        parts = run(fg, name, "instances", depth=reach)
        all_names = np.unique(np.concatenate([p[0] for p in parts] + [np.zeros(0, np.uint64)]))
        cut = sum(p[1] for p in parts)
        if cut:
            logger.warning("%d object(s) reach more than max_object=%d px beyond their "
                           "block and may be cut at block borders", cut, reach)
        # 4. names -> 1..N in raster order of first pixels, objects grown back
        halo = 2 * grow + 1
        names = da.from_zarr(str(tmp / "_names"), component="names")
        names = names.rechunk((_chunks(h, b, halo), _chunks(w, b, halo)))
        offs2 = (_offsets(names.chunks[0]), _offsets(names.chunks[1]))
        ny, nx = len(offs2[0]) - 1, len(offs2[1]) - 1

        def relabel(p: np.ndarray, loc: tuple) -> None:
            i, j = loc
            (top, bottom), (left, right) = _have(i, ny, halo), _have(j, nx, halo)
            seq = np.searchsorted(all_names, p).astype(np.int32) + 1
            seq[p == 0] = 0
            grown = grow_labels(seq, grow, "gaps", band_rows=max(seq.shape[0], 1))
            zarr.open_group(store, mode="r+")[paths["labels"]][
                offs2[0][i] : offs2[0][i + 1], offs2[1][j] : offs2[1][j + 1]] = grown[
                top : grown.shape[0] - bottom, left : grown.shape[1] - right].astype(np.uint32)

        run(names, relabel, "labels", depth=halo)
        shutil.rmtree(tmp / "_names")
        if ome:  # a pyramid of halved levels, so viewers can show a large output whole
            levels = _write_pyramid(store, paths, b, run)
            _write_ngff(root, k, image_scale(source), levels)
        root.attrs["tileunet"] = {
            "model": model_path, "source": str(Path(source).absolute()),
            "threshold": float(threshold), "instances": instances,
            "min_distance": int(min_distance), "block": b, "max_object": reach,
            "objects": int(all_names.size), "cut_objects": int(cut),
            "normalization": {**norm.to_dict(), "ranges": [list(r) for r in ranges]},
            "probability": "foreground" if k == 2 else "all classes",
        }
        if out.exists():  # --overwrite: the old store goes only once the new one is whole
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            out.rename(old / "store")
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if own_client:
            client.close()
    return out


__all__ = ["DEFAULT_BLOCK", "DEFAULT_MAX_OBJECT", "block_size", "is_own_store", "is_zarr_path",
           "level_path", "linear_percentiles", "ngff_multiscales", "open_image",
           "predict_blocks", "segment_to_zarr"]
