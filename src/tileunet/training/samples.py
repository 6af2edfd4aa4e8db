"""The training set of a run: samples read, chosen, split, resampled to the working scale,
and prepared with their training targets and weight maps (cached in the run folder).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tileunet.errors import DataError
from tileunet.inference.scale import image_to_scale, labels_to_scale
from tileunet.io.outputs import atomic_write
from tileunet.io.pairs import Sample, load_samples
from tileunet.targets.instances import training_target
from tileunet.targets.sparse import painted_cells, sparse_classes, sparse_targets
from tileunet.targets.weightmap import class_weight_map, weight_map
from tileunet.training.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A sample ready for training: image, training target and weight map."""

    name: str
    image: np.ndarray  # (C, H, W) float32
    target: np.ndarray  # (H, W) uint8
    weights: np.ndarray  # (H, W) float32
    labels: np.ndarray | None = None  # (H, W) instances (two classes), for SEG


def exclude_samples(samples: list[Sample], patterns: tuple[str, ...], where: str
                    ) -> list[Sample]:
    """Drop the samples whose name matches one of the shell-style ``patterns``."""
    from fnmatch import fnmatchcase

    for pat in patterns:
        if not any(fnmatchcase(s.name, pat) or fnmatchcase(s.source.name, pat)
                   for s in samples):
            raise DataError(f"{where}: --exclude {pat!r} matches no image "
                            f"(names: {', '.join(s.name for s in samples[:6])} ...)")
    kept = [s for s in samples if not any(fnmatchcase(s.name, p) or fnmatchcase(s.source.name, p)
                                          for p in patterns)]
    if not kept:
        raise DataError(f"{where}: --exclude leaves no image to train on")
    return kept


def read_ignore_masks(images: str, ignore_dir: str, samples: list[Sample]
                      ) -> dict[str, np.ndarray]:
    """Ignore regions by sample name: True where the image is not annotated.

    ``ignore_dir`` holds masks paired with the images like the label masks (by stem or
    trailing number); any non-zero pixel is ignored (weight 0 in the loss, left out of
    validation). Images without an ignore mask are fully annotated.
    """
    from tileunet.io.images import read_pages
    from tileunet.io.pairs import pair_images_masks

    by_source = {}
    for image_path, mask_path in pair_images_masks(images, ignore_dir,
                                                   skip_unmatched_images=True):
        by_source[image_path.resolve()] = (mask_path, read_pages(mask_path))
    out: dict[str, np.ndarray] = {}
    page_of: dict[Path, int] = {}
    for s in samples:
        key = s.source.resolve()
        if key not in by_source:
            continue
        mask_path, pages = by_source[key]
        i = page_of.get(key, 0)
        page_of[key] = i + 1
        page = pages[min(i, len(pages) - 1)]
        if page.shape != s.labels.shape:
            raise DataError(f"{mask_path}: ignore mask of shape {page.shape} does not match "
                            f"image {s.source} {s.labels.shape}")
        out[s.name] = page != 0
    return out


def prepare_samples(samples: list[Sample], cfg: TrainConfig, cache_dir: Path | None,
                    desc: str = "weight maps",
                    ignore: dict[str, np.ndarray] | None = None,
                    progress: bool = False) -> list[Prepared]:
    """Training targets and weight maps, computed once per image (cached on disk).

    Pixels in ``ignore[name]`` get weight 0: they neither teach nor count.
    """
    out = []
    sparse = cfg.annotation == "sparse"
    for s in tqdm(samples, desc=desc, unit="img", disable=not progress, leave=False):
        options = (s.labels.shape, cfg.network.num_classes, cfg.w0, cfg.sigma,
                   cfg.class_weights) + (("sparse",) if sparse else ())
        key = hashlib.sha1(s.labels.tobytes() + repr(options).encode()).hexdigest()[:16]
        cached = cache_dir / f"{key}.npz" if cache_dir is not None else None
        if cached is not None and cached.exists():
            with np.load(cached, allow_pickle=False) as z:
                target, weights = z["target"], z["weights"]
        else:
            target, weights = targets_of(s.labels, cfg)
            if cached is not None:
                atomic_npz(cached, target=target, weights=weights)
        weights = weights.astype(np.float32)
        if ignore and s.name in ignore:
            weights = np.where(ignore[s.name], np.float32(0.0), weights)
        instances = None
        if cfg.network.num_classes == 2:  # for SEG: the objects annotated whole
            instances = painted_cells(s.labels) if sparse else s.labels
        out.append(Prepared(s.name, s.image, target, weights, instances))
    return out


def targets_of(labels: np.ndarray, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The training target and weight map of one mask, as ``cfg`` says: the paper's
    (two classes), class weights only (more classes), or of a sparse annotation."""
    if cfg.annotation == "sparse":
        target, weights, _ = sparse_targets(labels, w0=cfg.w0, sigma=cfg.sigma,
                                            class_weights=cfg.class_weights)
        return target, weights
    if cfg.network.num_classes == 2:
        return training_target(labels), weight_map(labels, w0=cfg.w0, sigma=cfg.sigma,
                                                   class_weights=cfg.class_weights)
    target = labels.astype(np.uint8)
    return target, class_weight_map(target, cfg.class_weights, cfg.network.num_classes)


def samples_at_scale(samples: list[Sample], scale: float) -> list[Sample]:
    """The samples resampled to the working ``scale`` (images anti-aliased, labels by
    nearest neighbour; see :mod:`tileunet.inference.scale`)."""
    if scale == 1.0:
        return samples
    return [replace(s, image=image_to_scale(s.image, scale),
                    labels=labels_to_scale(s.labels, scale)) for s in samples]


def split_samples(samples: list[Sample], fraction: float, seed: int
                  ) -> tuple[list[Sample], list[Sample]]:
    """Hold out ``fraction`` of the images (at least one, never all) for validation."""
    if fraction <= 0 or len(samples) < 2:
        return samples, []
    n_val = min(max(1, round(fraction * len(samples))), len(samples) - 1)
    order = np.random.default_rng(seed).permutation(len(samples))
    val = {int(i) for i in order[:n_val]}
    return ([s for i, s in enumerate(samples) if i not in val],
            [s for i, s in enumerate(samples) if i in val])


def check_masks(samples: list[Sample], where: str, num_classes: int,
                sparse: bool = False) -> None:
    """Warn about masks with one class only (naming them); refuse training data in which
    no mask has two classes: there is nothing to learn. ``sparse``: the classes the
    strokes and painted cells teach (:mod:`tileunet.targets.sparse`)."""
    if sparse:
        classes = [sorted(sparse_classes(s.labels)) for s in samples]
    else:
        classes = [np.unique(s.labels > 0).tolist() if num_classes == 2
                   else np.unique(s.labels).tolist() for s in samples]
    flat = [s.name for s, c in zip(samples, classes, strict=True) if len(c) < 2]
    seen = set().union(*classes)
    if len(seen) < 2:
        if not any(seen):
            raise DataError(f"{where}: no mask has an object: nothing to learn")
        raise DataError(f"{where}: every mask is one class everywhere: nothing to learn")
    if flat:
        log.warning("%s: %d mask(s) hold one class only (%s): they teach only that class",
                    where, len(flat), ", ".join(flat[:5]) + (" ..." if len(flat) > 5 else ""))


def load_split(cfg: TrainConfig) -> tuple[list[Sample], list[Sample],
                                           dict[str, np.ndarray] | None, int]:
    """Training and validation samples at the working scale, the ignore masks, and the
    images' channel count."""
    if Path(cfg.masks).resolve() == Path(cfg.images).resolve():
        raise DataError(f"{cfg.masks}: is the images folder too; the masks are label "
                        "images in a folder of their own")
    dense = cfg.annotation == "dense"
    samples = load_samples(cfg.images, cfg.masks, cfg.normalization,
                           num_classes=cfg.network.num_classes, binary_as_instances=dense)
    check_masks(samples, cfg.masks, cfg.network.num_classes, sparse=not dense)
    if cfg.exclude:
        samples = exclude_samples(samples, cfg.exclude, cfg.images)
    ignore = read_ignore_masks(cfg.images, cfg.ignore, samples) if cfg.ignore else None
    if cfg.scale != 1.0:
        samples = samples_at_scale(samples, cfg.scale)
        ignore = ignore and {k: labels_to_scale(v, cfg.scale) for k, v in ignore.items()}
    chans = {s.image.shape[0] for s in samples}
    if len(chans) != 1:
        raise DataError(f"{cfg.images}: images have different channel counts {sorted(chans)}")
    if cfg.val_images is not None:
        train_s = samples
        val = load_samples(cfg.val_images, cfg.val_masks, cfg.normalization,
                           num_classes=cfg.network.num_classes, binary_as_instances=dense)
        val_s = samples_at_scale(val, cfg.scale)
    else:
        train_s, val_s = split_samples(samples, cfg.val_fraction, cfg.seed)
    return train_s, val_s, ignore, chans.pop()


def atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    atomic_write(path, write)


__all__ = ["Prepared", "atomic_npz", "check_masks", "exclude_samples", "load_split",
           "prepare_samples", "read_ignore_masks", "samples_at_scale", "split_samples"]
