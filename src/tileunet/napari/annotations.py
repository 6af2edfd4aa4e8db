"""Annotations made in a viewer, written as a training folder the command line reads.

A correction loop (paint or correct labels, train, predict, correct again) hands the
trainer image and label arrays, not files. :func:`write_annotations` writes them the
way ``tileunet train`` reads folders (``images/``, ``masks/`` paired by name, and
``ignore/`` for the regions left unannotated), with ``layers.json`` saying which layers
they came from, so that every run started from a viewer is also one command line.

Unannotated pixels are those of the ``unlabelled`` label value, if one is given, and the
non-zero pixels of an ignore layer; they get weight 0 in the loss, as ``--ignore`` does.
Nothing here needs napari: layers are anything with ``data`` and ``name`` (and, for
images, ``rgb`` and ``multiscale``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tileunet.errors import DataError
from tileunet.io.images import save_image
from tileunet.io.outputs import write_json
from tileunet.training.loop import INPUTS_DIR

#: the folder of a run that holds the annotations it was trained on: the run's inputs
ANNOTATIONS_DIR = INPUTS_DIR
#: which layers the files came from, and the command that trains on them
LAYERS_FILE = "layers.json"


#: where a labels layer made by the Segment widget names its image
IMAGE_KEY = "tileunet_image"


def image_for(labels: Any, images: list[Any]) -> Any:
    """The image layer of a labels (or ignore) layer: the one it names in its metadata
    (the Segment widget's layers do), else the one whose name starts its name
    ("cells" for "cells labels"), else the only one of its height and width; images
    that are themselves predictions (they name an image) are not candidates."""
    named = _named_image(labels)
    for im in images:
        if named is not None and im.name == named:
            return im
    images = [im for im in images if _named_image(im) is None]
    prefixed = [im for im in images
                if re.match(re.escape(im.name) + r"(\b|[ _-])", labels.name)]
    if prefixed:
        return max(prefixed, key=lambda im: len(im.name))
    shape = tuple(labels.data.shape[-2:])
    same = [im for im in images if layer_yx(im) == shape]
    if len(same) == 1:
        return same[0]
    why = "several" if same else "no"
    raise DataError(f"layer {labels.name!r}: {why} image layers of shape {shape}; name it "
                    "after its image (e.g. 'cells labels' for image 'cells')")


def _named_image(layer: Any) -> str | None:
    return (getattr(layer, "metadata", None) or {}).get(IMAGE_KEY)


def _full_resolution(layer: Any) -> Any:
    """A layer's data, or the first (full-resolution) level of a pyramid, not loaded."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_yx(image: Any) -> tuple[int, ...]:
    data = _full_resolution(image)
    return tuple(data.shape[:2] if getattr(image, "rgb", False) else data.shape[-2:])


def layer_array(layer: Any) -> np.ndarray:
    """The pixels of an image layer as the trainer and predictor take them: the full
    resolution of a pyramid, RGB ``(H, W, 3)`` as channels ``(3, H, W)``."""
    data = np.asarray(_full_resolution(layer))
    if getattr(layer, "rgb", False) and data.ndim == 3:
        data = np.moveaxis(data, -1, 0)
    return data


@dataclass(frozen=True)
class Annotated:
    """One image with its labels, ready to write."""

    name: str  # file stem
    image: np.ndarray  # (H, W) or (C, H, W)
    labels: np.ndarray  # (H, W) instance labels, 0 = background
    ignore: np.ndarray | None  # (H, W) bool, True = not annotated
    sources: dict  # the layers it came from


def annotated(image: Any, labels: Any, ignore: Any = None, unlabelled: int = 0
              ) -> Annotated:
    """Check an image layer, its labels layer and an optional ignore layer, and turn
    them into arrays; ``unlabelled`` > 0 is a label value that marks pixels as not
    annotated (0: every pixel is annotated, 0 being background)."""
    pixels = layer_array(image)
    where = f"layer {labels.name!r}"
    lab = np.asarray(_full_resolution(labels))
    if pixels.ndim not in (2, 3):
        raise DataError(f"layer {image.name!r}: shape {pixels.shape} is not an image "
                        "(H, W) or (C, H, W)")
    if lab.shape != pixels.shape[-2:]:
        raise DataError(f"{where}: shape {lab.shape} does not match image layer "
                        f"{image.name!r} {pixels.shape[-2:]}")
    if not np.issubdtype(lab.dtype, np.integer) or (lab.size and lab.min() < 0):
        raise DataError(f"{where}: labels must be non-negative integers")
    if not np.isfinite(pixels).all():
        raise DataError(f"layer {image.name!r}: holds NaN or infinite values")
    mask = lab == unlabelled if unlabelled > 0 else np.zeros(lab.shape, bool)
    sources = {"image": image.name, "labels": labels.name, "unlabelled": unlabelled}
    if ignore is not None:
        ign = np.asarray(ignore.data)
        if ign.shape != lab.shape:
            raise DataError(f"layer {ignore.name!r}: shape {ign.shape} does not match "
                            f"labels layer {labels.name!r} {lab.shape}")
        mask |= ign != 0
        sources["ignore"] = ignore.name
    if mask.all():
        raise DataError(f"{where}: no pixel is annotated")
    lab = np.where(mask, 0, lab).astype(np.uint32 if lab.max() > 65535 else np.uint16)
    return Annotated(image.name, pixels, lab, mask if mask.any() else None, sources)


def file_stems(names: list[str]) -> list[str]:
    """Safe, distinct file stems for layer names ("cells 1" -> "cells_1")."""
    stems: list[str] = []
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "layer"
        base, n = stem, 2
        while stem in stems:
            stem, n = f"{base}_{n}", n + 1
        stems.append(stem)
    return stems


def data_flags(folder: str | Path, items: list[Annotated]) -> list[str]:
    """The ``tileunet train`` flags that read ``items`` written under ``folder``."""
    folder = Path(folder)
    flags = ["--images", str(folder / "images"), "--masks", str(folder / "masks")]
    if any(a.ignore is not None for a in items):
        flags += ["--ignore", str(folder / "ignore")]
    return flags


def write_annotation_files(folder: str | Path, items: list[Annotated]) -> list[str]:
    """Write the images, masks and ignore masks of ``items`` under ``folder`` (each file
    whole, images first) and remove those of layers no longer among them; returns
    :func:`data_flags`. Written again into the folder of a live run, they join it."""
    if not items:
        raise DataError("no labels layer to train on")
    if not any(a.labels.any() for a in items):
        raise DataError("the labels layers hold no objects: paint or correct some first")
    folder = Path(folder)
    stems = file_stems([a.name for a in items])
    for stem, a in zip(stems, items, strict=True):
        save_image(folder / "images" / f"{stem}.tif", a.image)
        save_image(folder / "masks" / f"{stem}.tif", a.labels)
        if a.ignore is not None:
            save_image(folder / "ignore" / f"{stem}.tif", a.ignore)
    kept = {f"{stem}.tif" for stem in stems}
    for sub in ("masks", "ignore", "images"):  # a mask never stays without its image
        for old in (folder / sub).glob("*.tif"):
            if old.name not in kept:
                old.unlink()
    return data_flags(folder, items)


def write_annotations(folder: str | Path, items: list[Annotated], train_flags: list[str],
                      record: dict | None = None) -> list[str]:
    """Write ``items`` under ``folder`` (``images/``, ``masks/``, ``ignore/`` where any
    region is unannotated) and return the arguments of ``tileunet train`` that train on
    them: the data flags, then ``train_flags``. ``layers.json`` records the layers, the
    command and ``record``. Every item is checked before the first file is written;
    every file is written under a temporary name first."""
    flags = write_annotation_files(folder, items)
    folder, stems = Path(folder), file_stems([a.name for a in items])
    argv = [*flags, *train_flags]
    layers = [{"file": f"{stem}.tif", **a.sources} for stem, a in zip(stems, items, strict=True)]
    write_json(folder / LAYERS_FILE, {"layers": layers, **(record or {}),
                                      "command": shlex.join(["tileunet", "train", *argv])})
    return argv


__all__ = ["ANNOTATIONS_DIR", "IMAGE_KEY", "LAYERS_FILE", "Annotated", "annotated",
           "data_flags", "file_stems", "image_for", "layer_array", "layer_yx",
           "write_annotation_files", "write_annotations"]
