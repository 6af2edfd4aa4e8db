"""Images larger than memory: block-wise prediction with dask, written to zarr.

The image is read lazily (a zarr array, an OME-Zarr image, or a TIFF through tifffile's
zarr interface) as a dask array of blocks. Each block is predicted with
:func:`dask.array.map_overlap`, its halo ``net.margin`` pixels wide, and written to a
zarr array as it comes; only a few blocks are in memory at any time, so the image can
be far larger than memory. The same job runs on this machine (dask's synchronous
scheduler) or on a ``dask.distributed`` cluster (``scheduler=ADDRESS``).

Why the result equals :func:`tileunet.inference.overlap` on the whole image
-----------------------------------------------------------------
A valid U-Net is translation-equivariant only for shifts by its pooling step (see
:mod:`tileunet.inference.overlap`). Blocks therefore start at multiples of ``net.size_step``
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
function the in-memory path uses
(:func:`tileunet.inference.postprocess.instances_from_probability`);
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
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from tileunet.errors import DataError
from tileunet.inference.overlap import check_batch_size, check_tile_fits, predict, tile_geometry
from tileunet.inference.postprocess import check_threshold, grow_labels, instances_from_probability
from tileunet.inference.tiling import reflect_indices
from tileunet.io.images import is_zarr_path
from tileunet.io.lazy import (
    OME_PATHS,
    PLAIN_PATHS,
    image_scale,
    open_image,
    require_dask,
    write_ngff,
    write_pyramid,
)
from tileunet.io.normalization import Normalization, rescale
from tileunet.io.outputs import clear_stale, refuse_existing, staged
from tileunet.io.percentiles import channel_ranges
from tileunet.model import UNet

logger = logging.getLogger(__name__)

#: Default block side (rounded to the network's pooling step).
DEFAULT_BLOCK = 2048
#: Default reach of the instance labelling beyond each block, in pixels.
DEFAULT_MAX_OBJECT = 256


# ---------------------------------------------------------------- normalisation
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
        As for :func:`tileunet.inference.overlap`, per block (``tta`` is not available).
    device : str, optional
        ``"auto"``, ``"cpu"``, ``"cuda:1"`` ...; resolved where the blocks run. Default:
        where the network is (for a path: ``"auto"``).
    ranges, normalization
        Per-channel ``(lo, hi)`` and the method, applied to each window as
        :class:`tileunet.io.normalization.Normalization` would on the whole image.

    Returns
    -------
    dask.array.Array
        ``(K, H, W)`` float32, chunked in blocks; nothing is computed yet.
    """
    _, da, _ = require_dask()
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
class Runner:
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
        _, da, _ = require_dask()
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


@dataclass(frozen=True)
class _Store:
    """The zarr output being built, and the block-wise steps that fill it (each run by
    ``run``, a :class:`Runner`; what the blocks' functions capture is this object,
    which pickles for the workers of a cluster)."""

    path: str
    paths: dict  # output -> array path (PLAIN_PATHS or OME_PATHS)
    k: int  # classes
    h: int
    w: int
    block: int
    threshold: float
    chan: bool  # the probability array has a channel axis

    def create(self, zarr_format: int) -> Any:
        """The group with empty probability, mask and label arrays, and the scratch
        array of object names."""
        _, _, zarr = require_dask()
        h, w, b, kp = self.h, self.w, self.block, 1 if self.k == 2 else self.k
        root = zarr.open_group(self.path, mode="w", zarr_format=zarr_format)
        root.create_array(self.paths["probability"],
                          shape=(kp, h, w) if self.chan else (h, w),
                          chunks=(kp, b, b) if self.chan else (b, b), dtype="float32")
        root.create_array(self.paths["mask"], shape=(h, w), chunks=(b, b), dtype="uint8")
        root.create_array(self.paths["labels"], shape=(h, w), chunks=(b, b), dtype="uint32")
        zarr.open_group(self.scratch, mode="w").create_array(
            "names", shape=(h, w), chunks=(b, b), dtype="uint64")
        return root

    @property
    def scratch(self) -> str:
        return str(Path(self.path) / "_names")

    def write_probabilities(self, probs: Any, run: Runner) -> None:
        """Probabilities and mask, block by block, straight into the store."""
        _, _, zarr = require_dask()
        roff, coff = _offsets(probs.chunks[1]), _offsets(probs.chunks[2])

        def write(p: np.ndarray, loc: tuple) -> None:
            _, i, j = loc
            ys, xs = slice(roff[i], roff[i + 1]), slice(coff[j], coff[j + 1])
            g = zarr.open_group(self.path, mode="r+")
            if self.chan:
                g[self.paths["probability"]][:, ys, xs] = p
            else:
                g[self.paths["probability"]][ys, xs] = p[0]
            if self.k == 2:
                g[self.paths["mask"]][ys, xs] = (p[0] > self.threshold).view(
                    np.uint8) * np.uint8(255)
            else:
                g[self.paths["mask"]][ys, xs] = np.argmax(p, axis=0).astype(np.uint8)

        run(probs, write, "predict")

    def name_objects(self, reach: int, split: dict, run: Runner) -> tuple[np.ndarray, int]:
        """Every object named by the raster index of its first pixel, from windows that
        reach ``reach`` pixels beyond each block; the names, sorted, and how many
        objects may be cut at block borders."""
        _, da, zarr = require_dask()
        h, w, b = self.h, self.w, self.block
        stored = da.from_zarr(self.path, component=self.paths["probability"])
        fg = (stored[0] if self.chan else stored) if self.k == 2 else 1.0 - stored[0]
        lb = max(b, reach)  # blocks at least as large as the reach (dask needs that)
        fg = fg.rechunk((_chunks(h, lb, reach), _chunks(w, lb, reach)))
        offs = (_offsets(fg.chunks[0]), _offsets(fg.chunks[1]))

        def name(p: np.ndarray, loc: tuple) -> tuple[np.ndarray, int]:
            names, held, cut = _name_objects(p, loc, offs, w, reach, self.threshold, split)
            i, j = loc
            zarr.open_group(self.scratch, mode="r+")["names"][
                offs[0][i] : offs[0][i + 1], offs[1][j] : offs[1][j + 1]] = names
            return held, cut

        parts = run(fg, name, "instances", depth=reach)
        names = np.unique(np.concatenate([p[0] for p in parts] + [np.zeros(0, np.uint64)]))
        cut = int(sum(p[1] for p in parts))
        if cut:
            logger.warning("%d object(s) reach more than max_object=%d px beyond their "
                           "block and may be cut at block borders", cut, reach)
        return names, cut

    def number_objects(self, all_names: np.ndarray, grow: int, run: Runner) -> None:
        """Names -> ``1..N`` in raster order of the objects' first pixels, each object
        grown back by ``grow`` pixels, into the labels; the scratch names go."""
        _, da, zarr = require_dask()
        halo = 2 * grow + 1
        names = da.from_zarr(self.scratch, component="names")
        names = names.rechunk((_chunks(self.h, self.block, halo),
                               _chunks(self.w, self.block, halo)))
        offs = (_offsets(names.chunks[0]), _offsets(names.chunks[1]))
        ny, nx = len(offs[0]) - 1, len(offs[1]) - 1

        def relabel(p: np.ndarray, loc: tuple) -> None:
            i, j = loc
            (top, bottom), (left, right) = _have(i, ny, halo), _have(j, nx, halo)
            seq = np.searchsorted(all_names, p).astype(np.int32) + 1
            seq[p == 0] = 0
            grown = grow_labels(seq, grow, "gaps", band_rows=max(seq.shape[0], 1))
            zarr.open_group(self.path, mode="r+")[self.paths["labels"]][
                offs[0][i] : offs[0][i + 1], offs[1][j] : offs[1][j + 1]] = grown[
                top : grown.shape[0] - bottom, left : grown.shape[1] - right].astype(np.uint32)

        run(names, relabel, "labels", depth=halo)
        shutil.rmtree(self.scratch)


def _writable_store(out: str | Path, source: str | Path, overwrite: bool) -> Path:
    """``out`` as an absolute path, once it is known that it may be written: a zarr
    name, not the input, not someone else's store; stale temporaries of it cleared."""
    out = Path(out).absolute()
    if not is_zarr_path(out):
        raise ValueError(f"{out}: block-wise output must be a zarr store named *.zarr")
    if out == Path(source).absolute():
        raise ValueError(f"{out}: is the input image; choose another output")
    refuse_existing(out, overwrite, is_own_store, "a zarr store that tileunet predict wrote")
    clear_stale(out)
    return out


def _checked_model(model_path: str, device: str, tile: int | None, batch_size: int | None,
                   local: bool) -> tuple[UNet, Normalization, dict]:
    """The model (loaded once here, for a clear error before any work;
    :func:`predict_blocks` finds it cached) and its normalisation; ``tile`` checked
    as :func:`tileunet.inference.overlap` checks it (against this machine's memory when the
    blocks run ``local``ly: a cluster's memory is its own); and what the trainer stored
    beside the weights."""
    from tileunet.device import resolve_device

    net, extra = _cached_model(model_path, str(resolve_device(device)))
    if extra.get("scale", 1.0) != 1.0:
        raise ValueError(f"{model_path}: trained at scale {extra['scale']}; block-wise "
                         "prediction supports models trained at scale 1 only")
    if tile is not None:
        if local:
            check_tile_fits(net, tile, resolve_device(device), batch_size=batch_size or 1)
        else:
            tile_geometry(net, tile)
    return net, Normalization.from_dict(extra.get("normalization", {})), extra


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
    instances: str = "auto",
    min_distance: int | None = None,
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
    tile, batch_size, threshold, instances, min_distance, precision, device, overwrite, progress
        As for :func:`tileunet.inference.segment.segment_files`.
    """
    from tileunet.inference.separation import check_separation_request, separation_options

    check_separation_request(instances, min_distance)  # a clear error before any work
    check_threshold(threshold)
    check_batch_size(batch_size)
    if int(max_object) != max_object or max_object < 1:
        raise ValueError(f"max_object must be a positive integer, got {max_object!r}")
    out = _writable_store(out, source, overwrite)
    if ome is None:
        ome = out.name.lower().endswith(".ome.zarr")
    model_path = str(Path(model).absolute())
    net, norm, extra = _checked_model(model_path, device, tile, batch_size,
                                      local=scheduler is None)
    split = separation_options(instances, min_distance, extra, model_path)
    image = open_image(source)
    c, h, w = (int(n) for n in image.shape)
    if c != net.config.in_channels:
        raise DataError(f"{source}: has {c} channel(s), the model expects "
                        f"{net.config.in_channels}")
    k = net.config.num_classes
    b = block_size(net, block)
    reach = min(int(max_object), h, w)  # a reach past the image sees all of it
    client, own_client = scheduler, False
    if isinstance(scheduler, str):
        from distributed import Client

        client, own_client = Client(scheduler), True
    run = Runner(client, progress)
    try:
        with staged(out) as tmp:
            # 1. exact normalisation statistics of the whole image
            try:
                ranges = channel_ranges(image.rechunk(((c,), _chunks(h, b, 1),
                                                       _chunks(w, b, 1))), norm, run)
            except DataError as e:
                raise DataError(f"{source}: {e}") from None
            store = _Store(str(tmp), OME_PATHS if ome else PLAIN_PATHS, k, h, w, b,
                           float(threshold), chan=ome or k != 2)
            root = store.create(zarr_format=2 if ome else 3)
            # 2. probabilities and mask; each worker resolves "auto" itself (a CPU-only
            # client may drive GPU workers)
            store.write_probabilities(predict_blocks(
                model_path, image, block=b, tile=tile, batch_size=batch_size, device=device,
                precision=precision, channels=[1] if k == 2 else None, ranges=ranges,
                normalization=norm.method), run)
            # 3. objects named by their first pixel; 4. numbered 1..N and grown back
            all_names, cut = store.name_objects(reach, split, run)
            store.number_objects(all_names, 2, run)
            if ome:  # a pyramid of halved levels, so viewers can show a large output whole
                levels = write_pyramid(store.path, store.paths, b, run)
                write_ngff(root, k, image_scale(source), levels)
            root.attrs["tileunet"] = {
                "model": model_path, "source": str(Path(source).absolute()),
                "threshold": float(threshold), "instances": instances,
                "separation": split, "block": b, "max_object": reach,
                "objects": int(all_names.size), "cut_objects": int(cut),
                "normalization": {**norm.to_dict(), "ranges": [list(r) for r in ranges]},
                "probability": "foreground" if k == 2 else "all classes",
            }
    finally:
        if own_client:
            client.close()
    return out


__all__ = ["DEFAULT_BLOCK", "DEFAULT_MAX_OBJECT", "Runner", "block_size", "is_own_store",
           "predict_blocks", "segment_to_zarr"]

