"""Image files: reading, listing and safely writing them.

This module is the edge between image files and arrays: everything else in tileunet
takes and returns NumPy arrays. Every problem with a file is reported as a
:class:`~tileunet.errors.DataError` whose message is one line that names the file and
says what was wrong, e.g. ``cells.tif: 100 of 1200 pixels are not finite (100 NaN, 0
infinite); fill or crop them before using the image``.

Conventions
-----------
* One *page* is one 2-D image: ``(H, W)`` for a single channel, ``(C, H, W)`` for
  RGB or other multi-channel data (channels first, as the network wants them).
* A file holds one or more pages. PNG and JPEG always hold one. A TIFF holds several
  when it is a stack (time, z, or plain multi-page): :func:`read_pages` returns one
  array per page, so stacks and channels can never be confused. :func:`read_image`
  is the one-page shortcut and refuses stacks.
* A folder is read in natural name order (``t2`` before ``t10``, :func:`list_images`);
  a folder named ``*.zarr`` is one image (a zarr array or OME-Zarr image).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from tileunet.errors import file_error
from tileunet.io.outputs import atomic_write

__all__ = [
    "IMAGE_SUFFIXES",
    "SAVE_SUFFIXES",
    "image_stem",
    "is_zarr_path",
    "list_images",
    "read_image",
    "read_pages",
    "save_image",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
"""File suffixes (case-insensitive) that :func:`list_images` picks up."""

SAVE_SUFFIXES = (".png", ".tif", ".tiff")
"""File suffixes :func:`save_image` writes (JPEG is lossy and would corrupt masks)."""

_TIFF_SUFFIXES = (".tif", ".tiff")
_CHANNEL_AXES = "SC"  # tifffile axis codes for samples (RGB) and channels
_PathLike = str | os.PathLike


# --------------------------------------------------------------------------- reading
def _pil_to_array(img: Image.Image) -> np.ndarray:
    """One Pillow frame -> ``(H, W)`` or ``(C, H, W)``; alpha channels are dropped."""
    mode = img.mode
    if mode in ("RGBA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        img = img.convert("RGB")
    elif mode in ("LA", "La"):
        img = img.convert("L")
    elif mode == "PA":
        img = img.convert("P")
    arr = np.asarray(img)
    if arr.dtype == bool:  # mode "1": 1-bit black and white
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 3:
        arr = np.moveaxis(arr, -1, 0)  # (H, W, C) -> (C, H, W)
    return np.ascontiguousarray(arr)


def _read_pil(path: Path) -> list[np.ndarray]:
    with Image.open(path) as img:
        img.load()
        return [_pil_to_array(img)]


def _read_tiff(path: Path) -> list[np.ndarray]:
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ValueError("TIFF holds no image data")
        series = tif.series[0]
        if len(tif.series) > 1:
            log.warning("%s: holds %d image series; reading only the first",
                        path, len(tif.series))
        data = series.asarray()
        axes = series.axes
    if data.ndim != len(axes) or "Y" not in axes or "X" not in axes:
        raise ValueError(f"unsupported TIFF layout (axes {axes!r}, shape {data.shape})")
    page_axes = [i for i, a in enumerate(axes) if a not in _CHANNEL_AXES + "YX"]
    chan_axes = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    order = page_axes + chan_axes + [axes.index("Y"), axes.index("X")]
    data = np.transpose(data, order)
    h, w = data.shape[-2:]
    n_pages = int(np.prod(data.shape[: len(page_axes)], dtype=np.int64))
    n_chan = int(np.prod(data.shape[len(page_axes): len(page_axes) + len(chan_axes)],
                         dtype=np.int64))
    data = data.reshape(n_pages, n_chan, h, w)
    if n_chan == 1:
        return [np.ascontiguousarray(p[0]) for p in data]
    return [np.ascontiguousarray(p) for p in data]


def is_zarr_path(path: _PathLike) -> bool:
    """True for a path that names a zarr store (``*.zarr``), existing or not.

    Examples
    --------
    >>> is_zarr_path("out/cells.ome.zarr/"), is_zarr_path("cells.tif")
    (True, False)
    """
    return str(path).rstrip("/").lower().endswith(".zarr")


def _is_zarr_store(path: Path) -> bool:
    """A folder named ``*.zarr``: a zarr array or an OME-Zarr image, read as one image."""
    return path.is_dir() and is_zarr_path(path)


def image_stem(path: _PathLike) -> str:
    """The name outputs are called after: ``cells`` for ``cells.tif``, ``cells.ome.tif``,
    ``cells.zarr`` and ``cells.ome.zarr``.

    Examples
    --------
    >>> image_stem("data/cells.ome.tif"), image_stem("a.b.png")
    ('cells', 'a.b')
    """
    name = Path(path).name
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem[:-4] if stem.lower().endswith(".ome") and len(stem) > 4 else stem


def read_pages(path: _PathLike) -> list[np.ndarray]:
    """Read every page of an image file.

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG or TIFF file (8/16/32-bit, float; LZW, deflate and other TIFF
        compressions through ``imagecodecs``), or a zarr array / OME-Zarr image (a
        folder named ``*.zarr``, read whole; needs ``tileunet[dask]``).

    Returns
    -------
    list of numpy.ndarray
        One array per page, each ``(H, W)`` (one channel) or ``(C, H, W)`` (RGB or
        multi-channel), in the file's own dtype. A single image gives a list of one.
        For TIFF, the axes that tifffile reports as samples (``S``) or channels
        (``C``) become ``C``; every other non-spatial axis (time, z, plain pages) is
        flattened into the list of pages. PNG/JPEG alpha channels are dropped; a
        palette PNG gives its palette indices (as label masks want).

    Raises
    ------
    DataError
        The path does not exist, is a folder, has an unknown suffix, cannot be
        decoded as an image, or has NaN or infinite pixels.
    """
    path = Path(path)
    if not path.exists():
        raise file_error(path, "no such file")
    if _is_zarr_store(path):
        from tileunet.io.lazy import open_image  # needs the dask extra

        image = open_image(path).compute()  # (C, H, W)
        _check_finite(path, image)
        return [image[0] if image.shape[0] == 1 else image]
    if path.is_dir():
        raise file_error(path, "is a folder, expected an image file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise file_error(path, f"unsupported suffix {path.suffix!r}, expected one of "
                               f"{', '.join(IMAGE_SUFFIXES)}")
    try:
        pages = _read_tiff(path) if suffix in _TIFF_SUFFIXES else _read_pil(path)
    except Exception as exc:  # any decoder failure becomes one clear line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise file_error(path, f"not a readable image ({reason})") from exc
    for page in pages:
        if page.size == 0:
            raise file_error(path, f"image is empty (shape {page.shape})")
        _check_finite(path, page)
    return pages


def _check_finite(path: _PathLike, page: np.ndarray) -> None:
    """Refuse NaN and infinite pixels: normalising them would silently blank the image,
    and no value can stand in for them without guessing."""
    if page.dtype.kind not in "fc":
        return
    bad = page.size - int(np.count_nonzero(np.isfinite(page)))
    if bad:
        nan = int(np.count_nonzero(np.isnan(page)))
        raise file_error(path, f"{bad} of {page.size} pixels are not finite ({nan} NaN, "
                               f"{bad - nan} infinite); fill or crop them before using the image")


def read_image(path: _PathLike) -> np.ndarray:
    """Read a single-page image as ``(H, W)`` or ``(C, H, W)``.

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG or TIFF file with one page.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` for one channel, ``(C, H, W)`` for RGB / multi-channel data, in the
        file's dtype.

    Raises
    ------
    DataError
        As :func:`read_pages`, and when the file is a multi-page stack (use
        :func:`read_pages` for those).
    """
    pages = read_pages(path)
    if len(pages) != 1:
        raise file_error(path, f"is a stack of {len(pages)} pages; read it with read_pages()")
    return pages[0]


# -------------------------------------------------------------------------- listing
def _natural_key(path: Path) -> list:
    """Sort key: ``img2`` before ``img10``; ties broken by the plain name."""
    parts = re.split(r"(\d+)", path.name)
    return [(0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in parts] + [
        (2, 0, path.name)
    ]


def list_images(path: _PathLike) -> list[Path]:
    """The image files at ``path``.

    Parameters
    ----------
    path : str or path-like
        An image file, or a folder. In a folder, files whose suffix (any case) is in
        :data:`IMAGE_SUFFIXES` are taken; hidden files (starting with ``.``) and
        sub-folders are ignored.

    Returns
    -------
    list of pathlib.Path
        ``[path]`` for a file; for a folder its image files in natural name order
        (``t2`` before ``t10``).

    Raises
    ------
    DataError
        The path does not exist, a file has an unsupported suffix, or a folder holds
        no image files.
    """
    path = Path(path)
    if not path.exists():
        raise file_error(path, "no such file or folder")
    if _is_zarr_store(path):
        return [path]
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise file_error(path, f"unsupported suffix {path.suffix!r}, expected one of "
                                   f"{', '.join(IMAGE_SUFFIXES)}")
        return [path]
    files = [
        p for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".")
        and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise file_error(path, f"folder has no image files (looked for "
                               f"{', '.join(IMAGE_SUFFIXES)})")
    return sorted(files, key=_natural_key)


# -------------------------------------------------------------------------- writing
def _png_array(array: np.ndarray, path: Path) -> np.ndarray:
    """Convert to something PNG holds: uint8 / uint16, ``(H, W)`` or ``(H, W, 3|4)``."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        if a.shape[0] not in (3, 4):
            raise file_error(path, f"PNG holds 1, 3 or 4 channels, got shape {a.shape} "
                                   f"(channels first); save as .tif instead")
        a = np.moveaxis(a, 0, -1)
    elif a.ndim != 2:
        raise file_error(path, f"expected (H, W) or (C, H, W), got shape {a.shape}")
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or a.min() < 0.0 or a.max() > 1.0:
            raise file_error(path, "PNG stores floats only as values in [0, 1] (scaled to "
                                   "0..255); save other floats as .tif")
        return np.round(a * 255.0).astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise file_error(path, f"cannot store dtype {a.dtype} in PNG")
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if lo < 0:
        raise file_error(path, f"PNG cannot store negative values (min {lo}); save as .tif")
    if hi <= 255:
        return a.astype(np.uint8)
    if hi <= 65535 and a.ndim == 2:
        return a.astype(np.uint16)
    raise file_error(path, f"PNG cannot store value {hi} (max 255 for colour, 65535 for "
                           f"grey); save as .tif")


def save_image(path: _PathLike, array: np.ndarray, *, axes: str | None = None) -> None:
    """Write an array to ``path`` atomically (never a half-written file).

    The data are written to a hidden temporary file in the same folder, flushed to
    disk, then moved over ``path`` with :func:`os.replace`. Missing parent folders
    are created.

    Parameters
    ----------
    path : str or path-like
        Suffix decides the format:

        * ``.png``: ``(H, W)`` or ``(C, H, W)`` with C in 1, 3, 4. Booleans become
          0/255; integers in 0..255 become uint8, in 0..65535 uint16 (grey only);
          floats must lie in [0, 1] and are scaled to 0..255 uint8. Anything else
          (negative, larger, NaN) is refused: use ``.tif``.
        * ``.tif`` / ``.tiff``: any numeric dtype as it is (uint16 instance labels,
          float32 probabilities), deflate-compressed; booleans become uint8 0/255.
          A 3-D array is written as channels ``(C, H, W)`` unless ``axes`` says
          otherwise (e.g. ``axes="ZYX"`` for a stack); :func:`read_pages` reads it
          back the same way.
    array : numpy.ndarray
        The image.
    axes : str, optional
        TIFF only: tifffile axis codes for ``array`` (default ``"YX"`` / ``"CYX"``).

    Raises
    ------
    DataError
        Unknown suffix, or data the format cannot hold.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SAVE_SUFFIXES:
        raise file_error(path, f"cannot write suffix {path.suffix!r}, expected one of "
                               f"{', '.join(SAVE_SUFFIXES)}")
    a = np.asarray(array)
    if suffix == ".png":
        if axes is not None:
            raise ValueError(f"axes is only used for TIFF, got axes={axes!r} for {path}")
        data = _png_array(a, path)
    else:
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        if not np.issubdtype(a.dtype, np.number):
            raise file_error(path, f"cannot store dtype {a.dtype} in TIFF")
        if axes is None:
            if a.ndim not in (2, 3):
                raise file_error(path, f"expected (H, W) or (C, H, W), got shape {a.shape}; "
                                       f"pass axes= for other layouts")
            axes = "YX" if a.ndim == 2 else "CYX"
        if len(axes) != a.ndim or not axes.endswith("YX"):
            raise ValueError(f"axes must name every dimension and end in 'YX', "
                             f"got axes={axes!r} for shape {a.shape}")
        data = a

    def write(tmp: Path) -> None:
        if suffix == ".png":
            Image.fromarray(data).save(tmp, format="PNG")
        else:
            tifffile.imwrite(tmp, data, photometric="minisblack", metadata={"axes": axes},
                             compression="zlib")

    atomic_write(path, write)
