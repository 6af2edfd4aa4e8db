"""Segment image files with a trained model: what ``tileunet predict`` does.

For each input image ``NAME`` (each page ``NAME_pageNNN`` of a stack) it writes to the
output folder:

* ``NAME_mask.png``: the predicted class per pixel (2 classes: 0 background, 255 where
  the foreground probability exceeds the threshold, the same foreground the instances
  are drawn from; more classes: the most probable class index);
* ``NAME_prob.tif``: the foreground probability (2 classes) or all class
  probabilities ``(K, H, W)``, float32, uncompressed: it is written tile by tile as the
  network produces it (a memory-mapped TIFF), so no full probability array is held in
  memory, and other programs can memory-map it too;
* ``NAME_instances.tif``: instance labels (uint16 or uint32; 0 = background), touching
  cells separated where the network predicted the separation border;
* ``NAME_overlay.png``: the image with the instances' outlines drawn on it.

Everything is checked before the first file is written; each file is written to a
temporary name and renamed, so an interrupted run leaves no half-written output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from tqdm.auto import tqdm

from tileunet.checkpoint import load_model
from tileunet.device import resolve_device
from tileunet.errors import DataError
from tileunet.inference.overlap import check_batch_size, check_tile_fits
from tileunet.inference.postprocess import (
    check_threshold,
    foreground,
    instances_from_probability,
    label_mask,
)
from tileunet.inference.scale import predict_at_scale
from tileunet.inference.separation import check_separation_request, separation_options
from tileunet.inference.tta import check_tta, use_tta
from tileunet.io.images import image_stem, list_images, read_pages, save_image
from tileunet.io.normalization import Normalization
from tileunet.io.outputs import atomic_write, clear_stale
from tileunet.plots import overlay_rgb

OUTPUTS = ("mask.png", "prob.tif", "instances.tif", "overlay.png")


@dataclass
class Job:
    source: Path
    page: int
    name: str

    def outputs(self, out_dir: Path) -> dict[str, Path]:
        return {kind.split(".")[0]: out_dir / f"{self.name}_{kind}" for kind in OUTPUTS}


def plan_jobs(inputs: list[str | Path], in_channels: int) -> list[Job]:
    """Expand files/folders into one job per image page; checks every file first."""
    files: list[Path] = []
    for item in inputs:
        files.extend(list_images(item))
    jobs: list[Job] = []
    for f in tqdm(files, desc="check inputs", unit="file", leave=False, disable=len(files) < 20):
        pages = read_pages(f)
        for page in pages:
            chans = 1 if page.ndim == 2 else page.shape[0]
            if chans != in_channels:
                raise DataError(f"{f}: has {chans} channel(s), the model expects {in_channels}")
        stem = image_stem(f)
        names = [stem] if len(pages) == 1 else [f"{stem}_page{i:03d}"
                                                for i in range(len(pages))]
        jobs.extend(Job(f, i, n) for i, n in enumerate(names))
    seen: dict[str, Path] = {}
    for j in jobs:
        if j.name in seen and seen[j.name] != j.source:
            raise DataError(f"{j.source}: has the same name as {seen[j.name]}; "
                            "outputs would collide")
        seen[j.name] = j.source
    return jobs


def segment_files(model: str | Path, inputs: list[str | Path], out_dir: str | Path, *,
                  tta: bool | str = "auto", tile: int | None = None,
                  batch_size: int | None = None,
                  threshold: float = 0.5, instances: str = "auto",
                  min_distance: int | None = None,
                  precision: str = "auto", device: str = "auto", overwrite: bool = False,
                  skip_existing: bool = False, progress: bool = True) -> list[dict[str, Path]]:
    """Predict every image in ``inputs`` and write the four outputs per image.

    ``instances`` and ``min_distance`` choose how instance labels are drawn from the
    foreground probability: ``"auto"``, as the model chose when it was trained, or a
    method by name (:func:`tileunet.inference.separation.separation_options`).
    ``tta``: average over the 8 flips and rotations (``True``), not (``False``), or where
    that is cheap for the image's size (``"auto"``, :func:`tileunet.inference.tta.use_tta`).
    ``skip_existing`` finishes an interrupted run: images whose four outputs are all
    there are skipped, the others are predicted again (a partial set is replaced).
    """
    if overwrite and skip_existing:
        raise ValueError("--overwrite and --skip-existing exclude each other")
    check_separation_request(instances, min_distance)  # a clear error before any work
    check_threshold(threshold)
    check_batch_size(batch_size)
    check_tta(tta)
    dev = resolve_device(device)
    net, extra = load_model(model, device=dev)
    norm = Normalization.from_dict(extra.get("normalization", {}))
    split = separation_options(instances, min_distance, extra, model)
    if tile is not None:  # a clear error before any work
        check_tile_fits(net, tile, dev, batch_size=batch_size or 1)
    jobs = plan_jobs(list(inputs), net.config.in_channels)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if skip_existing:
        jobs = [j for j in jobs if not all(p.is_file() for p in j.outputs(out).values())]
    elif not overwrite:
        for j in jobs:
            for p in j.outputs(out).values():
                if p.exists():
                    raise FileExistsError(f"{p}: already exists (use --overwrite to replace "
                                          "it, or --skip-existing to finish an interrupted run)")
    out.mkdir(parents=True, exist_ok=True)
    for j in jobs:  # what a killed run left of these outputs
        for p in j.outputs(out).values():
            clear_stale(p)
    written = []
    pages: dict[Path, list[np.ndarray]] = {}
    said = None
    for j in tqdm(jobs, desc="images", unit="img", disable=not progress or len(jobs) < 2):
        if j.source not in pages:
            pages = {j.source: read_pages(j.source)}
        image = norm(pages[j.source][j.page])
        paths = j.outputs(out)
        k = net.config.num_classes
        averaged = use_tta(tta, net.config, image.shape, extra.get("scale", 1.0), dev)
        if progress and tta == "auto" and averaged != said:  # what "auto" chose, and when
            said = averaged                                   # that changes with the size
            _tell_tta(j.source, averaged)
        # the probabilities go straight into the output file as the tiles come
        # (a memory-mapped TIFF), not into a (K, H, W) array in memory
        probs = _predict_to_tiff(paths["prob"], net, image, extra.get("scale", 1.0),
                                 tile=tile, batch_size=batch_size,
                                 tta=averaged, device=dev, progress=progress, precision=precision)
        if k == 2:
            fg = probs
            classes = foreground(fg, threshold).view(np.uint8)
        else:
            classes = label_mask(probs)
            fg = 1.0 - probs[0]
        save_image(paths["mask"], classes * 255 if k == 2 else classes)
        del classes
        labels = instances_from_probability(fg, threshold=threshold, **split)
        del fg, probs
        inst_dtype = np.uint16 if labels.max() < 65536 else np.uint32
        save_image(paths["instances"], labels.astype(inst_dtype, copy=False))
        save_image(paths["overlay"], overlay_rgb(image, labels))
        del labels, image
        written.append(paths)
    return written


def _tell_tta(source: Path, averaged: bool) -> None:
    tqdm.write(f"{source.name}: test-time augmentation " + (
        "on (8 flips/rotations; cheap at this size)" if averaged
        else "off (8 flips/rotations would not be cheap at this size)"))


def _predict_to_tiff(path: Path, net, image: np.ndarray, scale: float = 1.0, **kw
                     ) -> np.ndarray:
    """Predict into a memory-mapped float32 TIFF at ``path`` (atomically); returns the map.

    Two classes: the foreground probability ``(H, W)``; more: all classes ``(K, H, W)``.
    The file is uncompressed, so readers can memory-map it too.
    """
    k = net.config.num_classes
    h, w = image.shape[-2:]
    shape, axes = ((h, w), "YX") if k == 2 else ((k, h, w), "CYX")
    held: list[np.ndarray] = []

    def write(tmp: Path) -> None:
        mm = tifffile.memmap(tmp, shape=shape, dtype=np.float32, photometric="minisblack",
                             metadata={"axes": axes})
        predict_at_scale(net, image, scale, channels=[1] if k == 2 else None,
                         out=mm[None] if k == 2 else mm, **kw)
        mm.flush()
        held.append(mm)

    atomic_write(path, write)
    return held[0]
