"""Reading, pairing, normalising and safely writing images and masks.

This module is the edge between files and arrays: everything else in tileunet takes
and returns NumPy arrays. Every problem with a file is reported as a
:class:`DataError` whose message is one line that names the file and says what was
wrong, e.g. ``masks/b.png: size 256x256 does not match image images/b.png (512x512)``.

Conventions
-----------
* One *page* is one 2-D image: ``(H, W)`` for a single channel, ``(C, H, W)`` for
  RGB or other multi-channel data (channels first, as the network wants them).
* A file holds one or more pages. PNG and JPEG always hold one. A TIFF holds several
  when it is a stack (time, z, or plain multi-page): :func:`read_pages` returns one
  array per page, so stacks and channels can never be confused. :func:`read_image`
  is the one-page shortcut and refuses stacks.
* Masks are integer label images: 0 is background, every other value one object
  (an instance mask, as in the Cell Tracking Challenge) or, with ``num_classes > 2``,
  a semantic class map ``0 .. num_classes - 1``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from tileunet.errors import DataError
from tileunet.io.outputs import atomic_write

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
"""File suffixes (case-insensitive) that :func:`list_images` picks up."""

SAVE_SUFFIXES = (".png", ".tif", ".tiff")
"""File suffixes :func:`save_image` writes (JPEG is lossy and would corrupt masks)."""

_TIFF_SUFFIXES = (".tif", ".tiff")
_CHANNEL_AXES = "SC"  # tifffile axis codes for samples (RGB) and channels
_PathLike = str | os.PathLike


def _fail(path: _PathLike, reason: str) -> DataError:
    """Build a one-line :class:`DataError` ``"<path>: <reason>"``."""
    text = f"{os.fspath(path)}: {reason}"
    return DataError(" ".join(text.split()))


def _size(shape: Sequence[int]) -> str:
    """``(..., H, W)`` -> ``"WxH"`` (width first, as image viewers show it)."""
    return f"{shape[-1]}x{shape[-2]}"


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
    """True for a path that names a zarr store (``*.zarr``), existing or not."""
    return str(path).rstrip("/").lower().endswith(".zarr")


def _is_zarr_store(path: Path) -> bool:
    """A folder named ``*.zarr``: a zarr array or an OME-Zarr image, read as one image."""
    return path.is_dir() and is_zarr_path(path)


def image_stem(path: _PathLike) -> str:
    """The name outputs are called after: ``cells`` for ``cells.tif``, ``cells.ome.tif``,
    ``cells.zarr`` and ``cells.ome.zarr``."""
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
        raise _fail(path, "no such file")
    if _is_zarr_store(path):
        from tileunet.io.lazy import open_image  # needs the dask extra

        image = open_image(path).compute()  # (C, H, W)
        _check_finite(path, image)
        return [image[0] if image.shape[0] == 1 else image]
    if path.is_dir():
        raise _fail(path, "is a folder, expected an image file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise _fail(path, f"unsupported suffix {path.suffix!r}, expected one of "
                          f"{', '.join(IMAGE_SUFFIXES)}")
    try:
        pages = _read_tiff(path) if suffix in _TIFF_SUFFIXES else _read_pil(path)
    except Exception as exc:  # any decoder failure becomes one clear line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _fail(path, f"not a readable image ({reason})") from exc
    for page in pages:
        if page.size == 0:
            raise _fail(path, f"image is empty (shape {page.shape})")
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
        raise _fail(path, f"{bad} of {page.size} pixels are not finite ({nan} NaN, "
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
        raise _fail(path, f"is a stack of {len(pages)} pages; read it with read_pages()")
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
        raise _fail(path, "no such file or folder")
    if _is_zarr_store(path):
        return [path]
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise _fail(path, f"unsupported suffix {path.suffix!r}, expected one of "
                              f"{', '.join(IMAGE_SUFFIXES)}")
        return [path]
    files = [
        p for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".")
        and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise _fail(path, f"folder has no image files (looked for "
                          f"{', '.join(IMAGE_SUFFIXES)})")
    return sorted(files, key=_natural_key)


_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


def _by_stem(files: list[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        if f.stem in out:
            raise _fail(f, f"has the same name stem as {out[f.stem]}; "
                           f"cannot tell which one to pair")
        out[f.stem] = f
    return out


def _by_number(files: list[Path]) -> tuple[dict[int, Path], set[str]]:
    """Files whose stem ends in digits, keyed by that number; plus their prefixes."""
    out: dict[int, Path] = {}
    prefixes: set[str] = set()
    for f in files:
        m = _TRAILING_NUMBER.match(f.stem)
        if m is None:
            continue
        number = int(m.group(2))
        if number in out:
            raise _fail(f, f"has the same trailing number as {out[number]}; "
                           f"cannot tell which one to pair")
        out[number] = f
        prefixes.add(m.group(1))
    return out, prefixes


def pair_images_masks(
    images_dir: _PathLike,
    masks_dir: _PathLike,
    *,
    skip_unmatched_images: bool | None = None,
) -> list[tuple[Path, Path]]:
    """Pair each image with its mask.

    Rules, in order:

    1. Same file stem (``images/a.png`` <-> ``masks/a.tif``; suffixes may differ).
    2. For the files left over, the same trailing number, provided the leftover
       images share one prefix and the leftover masks share one prefix. This accepts
       the Cell Tracking Challenge naming (``t002.tif`` <-> ``man_seg002.tif``) and
       similar schemes (``img_7.png`` <-> ``mask_007.png``; the numbers are compared
       as integers).
    3. When there is exactly one image and one mask in all (two files given, or two
       folders of one file each, e.g. ``img2d.tif`` <-> ``mask2d.tif``), they pair.

    Parameters
    ----------
    images_dir, masks_dir : str or path-like
        Folders (or single files) as accepted by :func:`list_images`.
    skip_unmatched_images : bool or None
        True skips images without a mask (they are logged); False makes such an image
        an error. None (default) skips them only when the masks carry Cell Tracking
        Challenge names (``man_segNNN``), whose ``01_GT/SEG`` folders annotate only
        some frames of ``01/``; anywhere else a missing mask is more likely a mistake.
        A mask without an image is always an error.

    Returns
    -------
    list of (image_path, mask_path)
        In the natural order of the image names.

    Raises
    ------
    DataError
        Missing/empty folders, ambiguous names, an image without a mask or a mask
        without an image (the first offending file is named, with a count of others).
    """
    images = list_images(images_dir)
    masks = list_images(masks_dir)
    img_by_stem = _by_stem(images)
    mask_by_stem = _by_stem(masks)

    pairs: dict[Path, Path] = {}
    for stem, img in img_by_stem.items():
        if stem in mask_by_stem:
            pairs[img] = mask_by_stem[stem]
    used_masks = set(pairs.values())
    left_images = [p for p in images if p not in pairs]
    left_masks = [p for p in masks if p not in used_masks]

    if len(images) == 1 and len(masks) == 1 and not pairs:
        # one image and one mask (two files given, or two one-file folders)
        pairs[images[0]] = masks[0]
        left_images, left_masks = [], []

    if left_images and left_masks:
        img_num, img_prefixes = _by_number(left_images)
        mask_num, mask_prefixes = _by_number(left_masks)
        if len(img_prefixes) == 1 and len(mask_prefixes) == 1:
            for number, img in img_num.items():
                if number in mask_num:
                    pairs[img] = mask_num[number]
            used_masks = set(pairs.values())
            left_images = [p for p in images if p not in pairs]
            left_masks = [p for p in masks if p not in used_masks]

    if left_masks:
        more = f" (and {len(left_masks) - 1} more)" if len(left_masks) > 1 else ""
        raise _fail(left_masks[0], f"mask has no matching image in {os.fspath(images_dir)}"
                                   f"{more}")
    if left_images:
        asked = skip_unmatched_images is not None
        if not asked:
            skip_unmatched_images = bool(masks) and all(
                re.fullmatch(r"man_seg\d+", m.stem) for m in masks)
        if not skip_unmatched_images:
            more = f" (and {len(left_images) - 1} more)" if len(left_images) > 1 else ""
            raise _fail(left_images[0], f"no mask for this image in "
                                        f"{os.fspath(masks_dir)}{more}")
        # said out loud only when decided here; callers who asked for it expect gaps
        log.log(logging.INFO if asked else logging.WARNING,
                "using the %d image(s) that have a mask in %s; skipping %d without, "
                "e.g. %s", len(pairs), os.fspath(masks_dir), len(left_images),
                left_images[0].name)
    if not pairs:
        raise _fail(images_dir, f"no image has a mask in {os.fspath(masks_dir)}")
    return [(img, pairs[img]) for img in images if img in pairs]


# ---------------------------------------------------------------------- normalising
NORMALIZATION_METHODS = ("percentile", "minmax", "none")


@dataclass(frozen=True)
class Normalization:
    """Per-image intensity normalisation to roughly ``[0, 1]``, as float32.

    Parameters
    ----------
    method : {"percentile", "minmax", "none"}
        ``"percentile"``: ``(x - p_low) / (p_high - p_low)`` with the ``low`` and
        ``high`` percentiles of this image (robust to hot pixels; values beyond the
        percentiles fall slightly outside ``[0, 1]`` and are *not* clipped).
        ``"minmax"``: ``(x - min) / (max - min)``. ``"none"``: only cast to float32.
    low, high : float
        Percentiles for ``"percentile"`` (``0 <= low < high <= 100``).

    Notes
    -----
    The range always comes from the data, never from the dtype: 8-bit data stored
    in 16 bits (values 0..235) is stretched like any other. Multi-channel images
    ``(C, H, W)`` are normalised per channel. A channel whose percentile range is
    zero falls back to its min-max range; a constant channel becomes all zeros.

    Examples
    --------
    >>> import numpy as np
    >>> Normalization("minmax")(np.array([[100, 300]], dtype=np.uint16))
    array([[0., 1.]], dtype=float32)
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        if self.method not in NORMALIZATION_METHODS:
            raise ValueError(f"method must be one of {NORMALIZATION_METHODS}, "
                             f"got {self.method!r}")
        if not 0.0 <= float(self.low) < float(self.high) <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, "
                             f"got low={self.low!r}, high={self.high!r}")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Normalise ``(H, W)`` or ``(C, H, W)``; returns float32 of the same shape."""
        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise ValueError(f"expected an image (H, W) or (C, H, W), got shape {image.shape}")
        if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
            raise ValueError(f"expected a numeric image, got dtype {image.dtype}")
        x = image.astype(np.float32, copy=True)
        if self.method == "none":
            return x
        channels = x if x.ndim == 3 else x[None]
        ranges = []
        for c in channels:
            lo, hi = float(c.min()), float(c.max())
            if self.method == "percentile" and hi > lo:
                p_lo, p_hi = np.percentile(c, [self.low, self.high])
                if p_hi > p_lo:
                    lo, hi = float(p_lo), float(p_hi)
            ranges.append((lo, hi))
        rescale(channels, ranges)
        return x

    def to_dict(self) -> dict:
        """Plain dict for ``config.json``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(d) - {"method", "low", "high"}
        if unknown:
            raise ValueError(f"unknown normalization keys {sorted(unknown)}, "
                             f"expected method, low, high")
        return cls(**d)


def rescale(channels: np.ndarray, ranges: list[tuple[float, float]]) -> None:
    """In place: channel ``c`` of float32 ``(C, H, W)`` to ``(c - lo) / (hi - lo)``, or to
    zeros where ``hi <= lo``; the arithmetic of :class:`Normalization`, shared with the
    block-wise path (:mod:`tileunet.inference.blockwise`), which finds the ranges on a whole image
    larger than memory."""
    for c, (lo, hi) in zip(channels, ranges, strict=True):
        if hi > lo:
            c -= lo
            c /= hi - lo
        else:
            c[...] = 0.0


# --------------------------------------------------------------------------- labels
def check_labels(labels: np.ndarray, num_classes: int, path: _PathLike) -> None:
    """Check that a mask can be a training target for ``num_classes`` classes.

    With ``num_classes == 2`` any non-negative integer mask is fine: 0 is background,
    every other value a cell (binary 0/1 or 0/255 masks, or instance ids). With
    ``num_classes > 2`` the mask is a semantic class map and its values must lie in
    ``0 .. num_classes - 1``.

    Raises
    ------
    DataError
        Non-integer values, negative values, or classes beyond ``num_classes - 1``.
    ValueError
        ``num_classes < 2``.
    """
    if not isinstance(num_classes, int | np.integer) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    labels = np.asarray(labels)
    if labels.size == 0:
        return
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise _fail(path, f"mask must hold integer labels, got dtype {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise _fail(path, f"mask has negative label {lo}; labels must be >= 0")
    if num_classes > 2 and hi > num_classes - 1:
        raise _fail(path, f"mask has class value {hi} but num_classes is {num_classes} "
                          f"(expected class values 0..{num_classes - 1})")


def _as_label_page(page: np.ndarray, path: Path) -> np.ndarray:
    """One mask page -> ``(H, W)`` int32 (identical channels are collapsed)."""
    if page.ndim == 3:
        if not np.all(page == page[:1]):
            raise _fail(path, f"mask has {page.shape[0]} different channels; expected a "
                              f"single-channel label image")
        page = page[0]
    if page.dtype.kind == "f":
        if not np.all(np.isfinite(page)) or not np.all(page == np.round(page)):
            raise _fail(path, f"mask must hold integer labels, got non-integer "
                              f"{page.dtype} values")
    elif not (np.issubdtype(page.dtype, np.integer) or page.dtype == bool):
        raise _fail(path, f"mask must hold integer labels, got dtype {page.dtype}")
    if page.size and page.max() > np.iinfo(np.int32).max:
        raise _fail(path, f"mask label {page.max()} does not fit int32")
    if page.size and page.min() < 0:
        raise _fail(path, f"mask has negative label {page.min()}; labels must be >= 0")
    return page.astype(np.int32)


def binary_to_instances(labels: np.ndarray) -> np.ndarray:
    """Label the connected components of a binary mask (4-connectivity), int32.

    A mask with at most one non-zero value (0/1, 0/255) says "cell or not" only;
    its connected components are the best guess at the instances that the paper's
    border weight map needs. Masks with several non-zero values are returned as
    they are (already instance ids).
    """
    labels = np.asarray(labels)
    values = np.unique(labels)
    if values[values != 0].size > 1:
        return labels.astype(np.int32, copy=False)
    out, _ = ndi.label(labels != 0)
    return out.astype(np.int32, copy=False)


@dataclass
class Sample:
    """One training image with its labels.

    Attributes
    ----------
    name : str
        Image file stem; ``<stem>_page<NNN>`` for pages of a stack.
    image : numpy.ndarray
        ``(C, H, W)`` float32, normalised.
    labels : numpy.ndarray
        ``(H, W)`` int32; 0 = background; instance ids (or class values when
        ``num_classes > 2``).
    source : pathlib.Path
        The image file.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    source: Path


def load_samples(
    images_dir: _PathLike,
    masks_dir: _PathLike,
    normalization: Normalization | None = None,
    *,
    num_classes: int = 2,
    binary_as_instances: bool = True,
    skip_unmatched_images: bool | None = None,
) -> list[Sample]:
    """Read, check and normalise all image/mask pairs of a data set.

    Parameters
    ----------
    images_dir, masks_dir : str or path-like
        Paired with :func:`pair_images_masks`.
    normalization : Normalization, optional
        Applied to each image page (default: ``Normalization()``, percentiles 1-99.8).
    num_classes : int
        2 for cell / background (any instance or binary mask); more for semantic
        class maps (see :func:`check_labels`).
    binary_as_instances : bool
        With ``num_classes == 2``, turn a mask that has only one non-zero value
        (e.g. ISBI 2012's 0 = membrane, 255 = cell) into connected components
        (4-connectivity), so objects separated by background become separate
        instances for the weight map. Instance masks are left alone.
    skip_unmatched_images : bool or None
        See :func:`pair_images_masks` (by default, frames without a mask are skipped
        for Cell Tracking Challenge masks only).

    Returns
    -------
    list of Sample
        One per page: a multi-page image stack and a mask stack with the same number
        of pages give one sample per page.

    Raises
    ------
    DataError
        Anything wrong with a file: pairing, decoding, sizes that differ, page counts
        that differ, channel counts that differ between images, bad label values.
    """
    norm = Normalization() if normalization is None else normalization
    if not isinstance(norm, Normalization):
        raise ValueError(f"normalization must be a Normalization, got {type(norm).__name__}")
    samples: list[Sample] = []
    channels: tuple[int, Path] | None = None
    for img_path, mask_path in pair_images_masks(
        images_dir, masks_dir, skip_unmatched_images=skip_unmatched_images
    ):
        img_pages = read_pages(img_path)
        mask_pages = read_pages(mask_path)
        if len(img_pages) != len(mask_pages):
            raise _fail(mask_path, f"has {len(mask_pages)} page(s) but image {img_path} "
                                   f"has {len(img_pages)}")
        stack = len(img_pages) > 1
        for i, (img, mask) in enumerate(zip(img_pages, mask_pages, strict=True)):
            if img.shape[-2:] != mask.shape[-2:]:
                raise _fail(mask_path, f"size {_size(mask.shape)} does not match image "
                                       f"{img_path} ({_size(img.shape)})")
            image = img[None] if img.ndim == 2 else img  # (C, H, W)
            if channels is None:
                channels = (image.shape[0], img_path)
            elif image.shape[0] != channels[0]:
                raise _fail(img_path, f"has {image.shape[0]} channel(s) but "
                                      f"{channels[1]} has {channels[0]}")
            labels = _as_label_page(mask, mask_path)
            check_labels(labels, num_classes, mask_path)
            if num_classes == 2 and binary_as_instances:
                labels = binary_to_instances(labels)
            name = f"{img_path.stem}_page{i:03d}" if stack else img_path.stem
            samples.append(Sample(name=name, image=norm(image), labels=labels,
                                  source=img_path))
    return samples


# -------------------------------------------------------------------------- writing
def _png_array(array: np.ndarray, path: Path) -> np.ndarray:
    """Convert to something PNG holds: uint8 / uint16, ``(H, W)`` or ``(H, W, 3|4)``."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        if a.shape[0] not in (3, 4):
            raise _fail(path, f"PNG holds 1, 3 or 4 channels, got shape {a.shape} "
                              f"(channels first); save as .tif instead")
        a = np.moveaxis(a, 0, -1)
    elif a.ndim != 2:
        raise _fail(path, f"expected (H, W) or (C, H, W), got shape {a.shape}")
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or a.min() < 0.0 or a.max() > 1.0:
            raise _fail(path, "PNG stores floats only as values in [0, 1] (scaled to "
                              "0..255); save other floats as .tif")
        return np.round(a * 255.0).astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise _fail(path, f"cannot store dtype {a.dtype} in PNG")
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if lo < 0:
        raise _fail(path, f"PNG cannot store negative values (min {lo}); save as .tif")
    if hi <= 255:
        return a.astype(np.uint8)
    if hi <= 65535 and a.ndim == 2:
        return a.astype(np.uint16)
    raise _fail(path, f"PNG cannot store value {hi} (max 255 for colour, 65535 for "
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
        raise _fail(path, f"cannot write suffix {path.suffix!r}, expected one of "
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
            raise _fail(path, f"cannot store dtype {a.dtype} in TIFF")
        if axes is None:
            if a.ndim not in (2, 3):
                raise _fail(path, f"expected (H, W) or (C, H, W), got shape {a.shape}; "
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
