"""Images too large for memory: lazy readers, pixel sizes and OME-Zarr output.

Reading: a zarr array, an OME-Zarr image or a TIFF (through tifffile's zarr interface)
becomes a lazy ``(C, H, W)`` dask array (:func:`open_image`); nothing is read until a
block is asked for. Pixel sizes come from OME-Zarr metadata, OME-XML, ImageJ metadata or
TIFF resolution tags (:func:`image_scale`). Writing: the multiscale metadata of an
OME-Zarr (NGFF 0.4) output and its halved pyramid levels (:func:`write_ngff`,
:func:`write_pyramid`). dask and zarr are the ``tileunet[dask]`` extra, imported when
first needed.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from tileunet.errors import DataError

logger = logging.getLogger(__name__)

ZARR_SUFFIXES = (".zarr", ".ome.zarr")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")


def require_dask():
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
    _, _, zarr = require_dask()
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
    _, da, zarr = require_dask()
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



# ------------------------------------------------------------------ pixel size
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
    _, _, zarr = require_dask()
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



# ------------------------------------------------------------------ OME-Zarr output
#: where :func:`tileunet.inference.blockwise.segment_to_zarr` writes each output, in a plain
#: zarr store and in an OME-Zarr image (level 0)
PLAIN_PATHS = {"probability": "probability", "mask": "mask", "labels": "labels"}
OME_PATHS = {"probability": "0", "mask": "labels/mask/0", "labels": "labels/instances/0"}

def pyramid_levels(h: int, w: int, block: int) -> int:
    """How many times the OME-Zarr output is halved: until a level fits in one block,
    or a side would drop under 16 px."""
    n = 0
    while max(h, w) > block and min(h, w) // 2 >= 16:
        h, w, n = h // 2, w // 2, n + 1
    return n


def halve_level(a: np.ndarray, mean: bool) -> np.ndarray:
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


def write_pyramid(store: str, paths: dict, block: int, run: Any) -> int:
    """Halved levels ``1, 2, ...`` beside each level-0 array of an OME-Zarr output, each
    computed block by block from the level above; returns how many were written."""
    _, da, zarr = require_dask()
    root = zarr.open_group(store, mode="r+")
    h, w = root[paths["labels"]].shape
    levels = pyramid_levels(h, w, block)
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
                                            j * block : (j + 1) * block] = halve_level(
                    part, mean=key == "probability")

        run(da.zeros((h, w), chunks=block, dtype=np.uint8), halve, f"pyramid {level}/{levels}")
    return levels


def write_ngff(root: Any, k: int, scale: tuple[float, float, str | None],
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


__all__ = ["OME_PATHS", "PLAIN_PATHS", "TIFF_SUFFIXES", "ZARR_SUFFIXES", "halve_level",
           "image_scale", "level_path", "ngff_multiscales", "open_image", "pyramid_levels",
           "require_dask", "write_ngff", "write_pyramid"]
