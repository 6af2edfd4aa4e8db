"""Figures for people, written with matplotlib's Agg canvas (no display, no pyplot state).

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
   Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597, Fig. 3.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure

from tileunet.io.outputs import atomic_write
from tileunet.targets.instances import separation_border, to_instances

__all__ = ["overlay_rgb", "save_loss_figure", "save_weight_map_figure"]

_GOLDEN = 0.618033988749895


def _instance_colours(instances: np.ndarray, border: np.ndarray) -> np.ndarray:
    """RGB image: black background, one hue per cell id, separation border in white."""
    ids = instances.astype(np.float64)
    hue = (ids * _GOLDEN) % 1.0  # neighbouring ids get far-apart hues, no randomness
    hsv = np.stack([hue, np.full_like(hue, 0.65), np.full_like(hue, 0.95)], axis=-1)
    rgb = hsv_to_rgb(hsv)
    rgb[instances == 0] = 0.0
    rgb[border] = 1.0
    return rgb


def save_weight_map_figure(
    labels: np.ndarray,
    weights: np.ndarray,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """Save the mask (cells coloured) next to a heat map of its weight map, as a PNG.

    Left: the instances, one colour per cell, with the separation border between
    touching cells in white (paper Fig. 3c). Right: the weight map with a colour bar
    (paper Fig. 3d). The file is written to a temporary name in the same folder and
    then renamed, so ``path`` never holds a half-written image.

    Parameters
    ----------
    labels : numpy.ndarray
        2-D instance labels or binary mask, see :func:`tileunet.targets.instances.to_instances`.
    weights : numpy.ndarray
        Weight map of the same shape, e.g. from :func:`tileunet.targets.weightmap.weight_map`.
    path : str or os.PathLike
        Destination PNG file; its folder must exist.
    title : str, optional
        Figure title.

    Raises
    ------
    ValueError
        If ``weights`` is not a finite 2-D array of the shape of ``labels``.

    References
    ----------
    .. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
       Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597, Fig. 3.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from tileunet.targets.weightmap import weight_map
    >>> labels = np.zeros((32, 32), dtype=int)
    >>> labels[4:14, 4:14], labels[14:28, 6:20] = 1, 2
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save_weight_map_figure(labels, weight_map(labels), os.path.join(folder, "w.png"))
    ...     os.listdir(folder)
    ['w.png']
    """
    instances = to_instances(labels)
    weights = np.asarray(weights)
    if weights.shape != instances.shape:
        raise ValueError(
            f"weights must have the shape of labels {instances.shape}, got {weights.shape}"
        )
    if weights.dtype.kind not in "iuf" or not np.all(np.isfinite(weights)):
        raise ValueError(f"weights must be finite numbers, got dtype {weights.dtype}")
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"expected an existing folder for the figure, got {folder}")

    figure = Figure(figsize=(10.0, 4.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    left.imshow(_instance_colours(instances, separation_border(instances)), interpolation="nearest")
    cells = np.count_nonzero(np.unique(instances))
    left.set_title(f"{cells} cell{'s' if cells != 1 else ''}")
    heat = right.imshow(weights, cmap="turbo", interpolation="nearest")
    right.set_title("weight map w(x)")
    figure.colorbar(heat, ax=right, shrink=0.9)
    for axis in (left, right):
        axis.set_xticks([])
        axis.set_yticks([])
    if title:
        figure.suptitle(title)

    _save_figure(figure, path)


def _save_figure(figure: Figure, path: Path) -> None:
    """PNG to a temporary name in the same folder, then rename (never half-written)."""
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def save_loss_figure(rows: list[dict], path: str | os.PathLike[str]) -> None:
    """Training loss (raw and smoothed) and validation loss / pixel IoU per iteration.

    ``rows`` are the rows of ``metrics.csv`` (keys ``iteration``, ``train_loss``,
    ``train_loss_ema``, ``val_loss``, ``val_iou``; empty strings where not measured).
    """
    path = Path(path)

    def series(key: str) -> tuple[np.ndarray, np.ndarray]:
        pts = [(float(r["iteration"]), float(r[key])) for r in rows
               if r.get(key) not in (None, "")]
        a = np.asarray(pts, dtype=float).reshape(-1, 2)
        return a[:, 0], a[:, 1]

    figure = Figure(figsize=(9.0, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    for key, style, label in (("train_loss", dict(alpha=0.3, lw=0.8), "train (per step)"),
                              ("train_loss_ema", dict(lw=1.5), "train (smoothed)"),
                              ("val_loss", dict(marker="o", lw=1.5), "validation")):
        x, y = series(key)
        if len(x):
            left.plot(x, y, label=label, **style)
    left.set_xlabel("iteration")
    left.set_ylabel("weighted cross-entropy")
    left.set_yscale("log")
    if left.get_lines():
        left.legend()
    x, y = series("val_iou")
    right.plot(x, y, marker="o", color="tab:green")
    right.set_xlabel("iteration")
    right.set_ylabel("validation pixel IoU")
    right.set_ylim(0.0, 1.0)
    right.grid(alpha=0.3)
    _save_figure(figure, path)


def overlay_rgb(image: np.ndarray, instances: np.ndarray, *, band: int = 512) -> np.ndarray:
    """The image in grey with the cells tinted and their outlines drawn, (3, H, W) uint8.

    ``image`` is (H, W) or (C, H, W) (the first channel is shown), scaled by its 1st and
    99th percentiles for display (estimated on a regular subsample of images over 16
    megapixels). The picture is drawn ``band`` rows at a time, so memory beyond the
    output stays small for images of any size.

    Examples
    --------
    >>> cells = np.zeros((4, 6), np.int32); cells[1:3, 1:3] = 1
    >>> rgb = overlay_rgb(np.linspace(0, 1, 24).reshape(4, 6), cells)
    >>> rgb.shape, rgb.dtype, bool((rgb[:, 0, 0] == rgb[0, 0, 0]).all())  # grey outside
    ((3, 4, 6), dtype('uint8'), True)
    """
    from skimage.segmentation import find_boundaries

    grey = np.asarray(image)
    if grey.ndim == 3:
        grey = grey[0]
    if grey.shape != instances.shape:
        raise ValueError(f"image {grey.shape} and instances {instances.shape} differ in size")
    h, w = grey.shape
    step = max(1, int(np.ceil(np.sqrt(grey.size / 16e6))))  # 1 up to 16 megapixels
    sample = np.asarray(grey[::step, ::step], dtype=np.float32)
    lo, hi = np.percentile(sample, (1, 99)) if sample.size else (0.0, 1.0)
    top = int(instances.max()) if instances.size else 0
    hue = (np.arange(top + 1, dtype=np.float64) * _GOLDEN) % 1.0
    lut = hsv_to_rgb(np.stack([hue, np.full_like(hue, 0.8), np.ones_like(hue)], axis=-1)).T
    out = np.empty((3, h, w), dtype=np.uint8)
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        a, b = max(0, y0 - 1), min(h, y1 + 1)  # one row of context for the outlines
        ids = np.asarray(instances[y0:y1])
        g = np.clip((np.asarray(grey[y0:y1], dtype=np.float32) - lo)
                    / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
        rgb = np.repeat(g[None], 3, axis=0).astype(np.float64)
        colours = lut[:, ids]  # (3, rows, W)
        cells = ids > 0
        rgb[:, cells] = 0.7 * rgb[:, cells] + 0.3 * colours[:, cells]
        edges = find_boundaries(np.asarray(instances[a:b]), mode="inner")[y0 - a : y0 - a + y1 - y0]
        rgb[:, edges] = colours[:, edges]
        out[:, y0:y1] = np.round(rgb * 255)
    return out
