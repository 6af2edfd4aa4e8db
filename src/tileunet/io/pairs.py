"""Images paired with their masks, and loaded as training samples.

:func:`pair_images_masks` finds the mask of each image by name (same stem, else same
trailing number, as in the Cell Tracking Challenge's ``t002.tif`` <-> ``man_seg002.tif``);
:func:`load_samples` reads every pair (:mod:`tileunet.io.images`), checks that the mask can
be a training target (:func:`check_labels`) and normalises the image
(:mod:`tileunet.io.normalization`), giving one :class:`Sample` per page.

Masks are integer label images: 0 is background, every other value one object (an
instance mask, as in the Cell Tracking Challenge) or, with ``num_classes > 2``, a semantic
class map ``0 .. num_classes - 1``. Every problem with a file is a
:class:`~tileunet.errors.DataError` whose one-line message names the file, e.g.
``masks/b.png: size 256x256 does not match image images/b.png (512x512)``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from tileunet.errors import file_error
from tileunet.io.images import list_images, read_pages
from tileunet.io.normalization import Normalization

__all__ = [
    "Sample",
    "binary_to_instances",
    "check_labels",
    "load_samples",
    "pair_images_masks",
]

log = logging.getLogger(__name__)


def _size(shape: Sequence[int]) -> str:
    """``(..., H, W)`` -> ``"WxH"`` (width first, as image viewers show it)."""
    return f"{shape[-1]}x{shape[-2]}"


# ------------------------------------------------------------------------- pairing
_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


def _by_stem(files: list[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        if f.stem in out:
            raise file_error(f, f"has the same name stem as {out[f.stem]}; "
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
            raise file_error(f, f"has the same trailing number as {out[number]}; "
                                f"cannot tell which one to pair")
        out[number] = f
        prefixes.add(m.group(1))
    return out, prefixes


def pair_images_masks(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
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
        raise file_error(left_masks[0], f"mask has no matching image in {os.fspath(images_dir)}"
                                        f"{more}")
    if left_images:
        asked = skip_unmatched_images is not None
        if not asked:
            skip_unmatched_images = bool(masks) and all(
                re.fullmatch(r"man_seg\d+", m.stem) for m in masks)
        if not skip_unmatched_images:
            more = f" (and {len(left_images) - 1} more)" if len(left_images) > 1 else ""
            raise file_error(left_images[0], f"no mask for this image in "
                                             f"{os.fspath(masks_dir)}{more}")
        # said out loud only when decided here; callers who asked for it expect gaps
        log.log(logging.INFO if asked else logging.WARNING,
                "using the %d image(s) that have a mask in %s; skipping %d without, "
                "e.g. %s", len(pairs), os.fspath(masks_dir), len(left_images),
                left_images[0].name)
    if not pairs:
        raise file_error(images_dir, f"no image has a mask in {os.fspath(masks_dir)}")
    return [(img, pairs[img]) for img in images if img in pairs]


# --------------------------------------------------------------------------- labels
def check_labels(labels: np.ndarray, num_classes: int, path: str | os.PathLike) -> None:
    """Check that a mask can be a training target for ``num_classes`` classes.

    With ``num_classes == 2`` any non-negative integer mask is fine: 0 is background,
    every other value a cell (binary 0/1 or 0/255 masks, or instance ids). With
    ``num_classes > 2`` the mask is a semantic class map and its values must lie in
    ``0 .. num_classes - 1``.

    Parameters
    ----------
    labels : numpy.ndarray
        The mask.
    num_classes : int
        Number of classes the network is trained for (>= 2).
    path : str or path-like
        The mask's file, named in the error.

    Raises
    ------
    DataError
        Non-integer values, negative values, or classes beyond ``num_classes - 1``.
    ValueError
        ``num_classes < 2``.

    Examples
    --------
    >>> import numpy as np
    >>> check_labels(np.array([[0, 255]]), 2, "m.png")  # a binary mask: fine
    >>> check_labels(np.array([[0, 3]]), 3, "m.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tileunet.errors.DataError: m.png: mask has class value 3 but num_classes is 3 (...)
    """
    if not isinstance(num_classes, int | np.integer) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    labels = np.asarray(labels)
    if labels.size == 0:
        return
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise file_error(path, f"mask must hold integer labels, got dtype {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise file_error(path, f"mask has negative label {lo}; labels must be >= 0")
    if num_classes > 2 and hi > num_classes - 1:
        raise file_error(path, f"mask has class value {hi} but num_classes is {num_classes} "
                               f"(expected class values 0..{num_classes - 1})")


def _as_label_page(page: np.ndarray, path: Path) -> np.ndarray:
    """One mask page -> ``(H, W)`` int32 (identical channels are collapsed)."""
    if page.ndim == 3:
        if not np.all(page == page[:1]):
            raise file_error(path, f"mask has {page.shape[0]} different channels; expected a "
                                   f"single-channel label image")
        page = page[0]
    if page.dtype.kind == "f":
        if not np.all(np.isfinite(page)) or not np.all(page == np.round(page)):
            raise file_error(path, f"mask must hold integer labels, got non-integer "
                                   f"{page.dtype} values")
    elif not (np.issubdtype(page.dtype, np.integer) or page.dtype == bool):
        raise file_error(path, f"mask must hold integer labels, got dtype {page.dtype}")
    if page.size and page.max() > np.iinfo(np.int32).max:
        raise file_error(path, f"mask label {page.max()} does not fit int32")
    if page.size and page.min() < 0:
        raise file_error(path, f"mask has negative label {page.min()}; labels must be >= 0")
    return page.astype(np.int32)


def binary_to_instances(labels: np.ndarray) -> np.ndarray:
    """Label the connected components of a binary mask (4-connectivity), int32.

    A mask with at most one non-zero value (0/1, 0/255) says "cell or not" only;
    its connected components are the best guess at the instances that the paper's
    border weight map needs. Masks with several non-zero values are returned as
    they are (already instance ids).

    Parameters
    ----------
    labels : numpy.ndarray
        A 2-D mask.

    Returns
    -------
    numpy.ndarray
        ``int32`` instance labels of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> binary_to_instances(np.array([[255, 0, 255], [0, 255, 0]]))
    array([[1, 0, 2],
           [0, 3, 0]], dtype=int32)
    >>> binary_to_instances(np.array([[4, 0, 7]])).tolist()
    [[4, 0, 7]]
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
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
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
            raise file_error(mask_path, f"has {len(mask_pages)} page(s) but image {img_path} "
                                        f"has {len(img_pages)}")
        stack = len(img_pages) > 1
        for i, (img, mask) in enumerate(zip(img_pages, mask_pages, strict=True)):
            if img.shape[-2:] != mask.shape[-2:]:
                raise file_error(mask_path, f"size {_size(mask.shape)} does not match image "
                                            f"{img_path} ({_size(img.shape)})")
            image = img[None] if img.ndim == 2 else img  # (C, H, W)
            if channels is None:
                channels = (image.shape[0], img_path)
            elif image.shape[0] != channels[0]:
                raise file_error(img_path, f"has {image.shape[0]} channel(s) but "
                                           f"{channels[1]} has {channels[0]}")
            labels = _as_label_page(mask, mask_path)
            check_labels(labels, num_classes, mask_path)
            if num_classes == 2 and binary_as_instances:
                labels = binary_to_instances(labels)
            name = f"{img_path.stem}_page{i:03d}" if stack else img_path.stem
            samples.append(Sample(name=name, image=norm(image), labels=labels,
                                  source=img_path))
    return samples

