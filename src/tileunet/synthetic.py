"""Synthetic cell images with instance labels, for the demo and the tests.

No downloads: :func:`synthetic_cells` draws an image that poses the problem the
paper's weight map was made for. Cells come alone or in clusters whose members touch
with no background between them (as in Cell Tracking Challenge masks), so a network
that only learns "cell or not" merges them; only a thin, faint, darker line marks
where two cells meet.

How an image is drawn
---------------------
1. Seeds: clusters of 1-6 seeds. Members of a cluster sit about 1.1-1.5 radii apart,
   so their cells overlap and will touch; different clusters keep a gap of a few
   pixels, so single cells stand alone.
2. Shapes: each pixel belongs to its nearest seed (a Voronoi partition, so touching
   cells share a border with no gap) and is inside the cell when its distance to the
   seed is below a random star-shaped radius ``r (1 + sum_k a_k cos(k theta - phi_k))``,
   k = 2, 3, 4. A star-shaped set cut by a convex Voronoi cell around the same seed
   stays in one piece. A smooth random displacement field then makes the straight
   Voronoi borders and the outlines wiggle.
3. Intensities: background level plus faint texture; each cell its own mean above it,
   a dome-shaped shading and a fine texture; a darker line two pixels wide along every
   cell-cell contact; a smooth illumination gradient across the image (strong enough
   that no single global threshold separates all cells from the background); Gaussian
   blur (optics) and Gaussian noise (camera).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from tileunet.io.images import save_image

__all__ = ["synthetic_cells", "write_synthetic_dataset"]

_CLUSTER_SIZES = np.array([1, 2, 3, 4, 5, 6])
_CLUSTER_PROBS = np.array([0.28, 0.22, 0.2, 0.14, 0.09, 0.07])


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (height, width), got {shape!r}") from None
    if h < 16 or w < 16:
        raise ValueError(f"shape must be at least (16, 16), got {shape!r}")
    return h, w


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation, float32.

    Wide filters run on a coarser grid (``sigma / 2`` times smaller) and are brought
    back to ``shape`` by linear interpolation: same look, a fraction of the time.
    """
    h, w = shape
    f = max(1, int(sigma // 2))
    noise = rng.standard_normal((h // f + 2, w // f + 2), dtype=np.float32)
    field = ndi.gaussian_filter(noise, sigma / f, mode="wrap")
    field = _upsample(field, f, h, w) if f > 1 else field[:h, :w]
    field -= field.mean()
    std = float(field.std())
    return field / std if std > 0 else field


def _upsample(a: np.ndarray, f: int, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of ``a`` by the integer factor ``f``, cropped to ``(h, w)``."""
    def axis_weights(n: int) -> tuple[np.ndarray, np.ndarray]:
        i = np.arange(n)
        return i // f, ((i % f) / f).astype(np.float32)

    iy, ty = axis_weights(h)
    rows = a[iy] * (1 - ty)[:, None] + a[iy + 1] * ty[:, None]  # (h, cw)
    ix, tx = axis_weights(w)
    return rows[:, ix] * (1 - tx)[None, :] + rows[:, ix + 1] * tx[None, :]


class _SeedGrid:
    """Seeds in square buckets, so a placement test looks only at nearby seeds."""

    def __init__(self, bucket: float) -> None:
        self.bucket = bucket
        self.cells: dict[tuple[int, int], list[int]] = {}
        self.pos: list[tuple[float, float]] = []
        self.rad: list[float] = []
        self.clu: list[int] = []

    def _key(self, y: float, x: float) -> tuple[int, int]:
        return int(y // self.bucket), int(x // self.bucket)

    def fits(self, y: float, x: float, r: float, cluster: int, gap: float) -> bool:
        """Far enough from other clusters (gap) and from its own cluster's seeds."""
        ky, kx = self._key(y, x)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                for i in self.cells.get((ky + dy, kx + dx), ()):
                    py, px = self.pos[i]
                    d = math.hypot(py - y, px - x)
                    if self.clu[i] == cluster:
                        if d < 1.05 * min(self.rad[i], r):
                            return False
                    elif d < self.rad[i] + r + gap:
                        return False
        return True

    def add(self, y: float, x: float, r: float, cluster: int) -> int:
        self.cells.setdefault(self._key(y, x), []).append(len(self.pos))
        self.pos.append((y, x))
        self.rad.append(r)
        self.clu.append(cluster)
        return len(self.pos) - 1


def _place_seeds(
    h: int, w: int, n_target: int, radius: float, gap: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Seed centres ``(n, 2)`` and radii ``(n,)``; clusters of touching cells."""
    grid = _SeedGrid(bucket=2.5 * radius + gap)
    cum = np.cumsum(_CLUSTER_PROBS)
    cluster = 0
    failures = 0
    while len(grid.pos) < n_target and failures < 60:
        n = len(grid.pos)
        k = int(min(_CLUSTER_SIZES[np.searchsorted(cum, rng.random() * cum[-1])],
                    n_target - n))
        r = radius * float(rng.uniform(0.75, 1.25))
        y, x = float(rng.uniform(0.0, h - 1.0)), float(rng.uniform(0.0, w - 1.0))
        if not grid.fits(y, x, r, cluster, gap):
            failures += 1
            continue
        failures = 0
        members = [grid.add(y, x, r, cluster)]
        tries = 0
        while len(members) < k and tries < 20 * k:
            tries += 1
            m = members[int(rng.integers(len(members)))]
            r_new = radius * float(rng.uniform(0.75, 1.25))
            angle = float(rng.uniform(0.0, 2.0 * math.pi))
            dist = min(grid.rad[m], r_new) * float(rng.uniform(1.1, 1.5))
            qy = grid.pos[m][0] + dist * math.sin(angle)
            qx = grid.pos[m][1] + dist * math.cos(angle)
            if 0 <= qy <= h - 1 and 0 <= qx <= w - 1 and grid.fits(qy, qx, r_new, cluster, gap):
                members.append(grid.add(qy, qx, r_new, cluster))
        cluster += 1
    pos = np.array(grid.pos, dtype=np.float64).reshape(-1, 2)
    return pos, np.array(grid.rad, dtype=np.float64)


def _cell_labels(
    h: int, w: int, pos: np.ndarray, rad: np.ndarray, radius: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels (int32, 0 = background) and relative radius ``d / R`` (float32)."""
    n = len(pos)
    if n == 0:
        return np.zeros((h, w), np.int32), np.ones((h, w), np.float32)
    seeds = np.zeros((h, w), dtype=np.int32)
    iy = np.clip(np.round(pos[:, 0]).astype(int), 0, h - 1)
    ix = np.clip(np.round(pos[:, 1]).astype(int), 0, w - 1)
    seeds[iy, ix] = np.arange(1, n + 1, dtype=np.int32)
    near = ndi.distance_transform_edt(seeds == 0, return_distances=False,
                                      return_indices=True)
    nearest = seeds[near[0], near[1]]  # (H, W) id of the nearest seed
    del near

    # smooth displacement: wiggly outlines and borders, small enough to fold nothing
    amp = 0.12 * radius
    sigma = 0.5 * radius
    yy = np.arange(h, dtype=np.float32)[:, None] + amp * _smooth_noise((h, w), sigma, rng)
    xx = np.arange(w, dtype=np.float32)[None, :] + amp * _smooth_noise((h, w), sigma, rng)
    ry = np.clip(np.rint(yy), 0, h - 1).astype(np.intp)
    rx = np.clip(np.rint(xx), 0, w - 1).astype(np.intp)
    ids = nearest[ry, rx]
    del ry, rx, nearest

    # star-shaped outline per cell: R(theta) = r (1 + sum_k a_k cos(k theta - phi_k))
    seed_y = np.concatenate([[0.0], pos[:, 0]]).astype(np.float32)
    seed_x = np.concatenate([[0.0], pos[:, 1]]).astype(np.float32)
    vy = yy - seed_y[ids]
    vx = xx - seed_x[ids]
    del yy, xx
    dist = np.hypot(vy, vx)
    # cos(k theta - phi) = cos(k theta) cos(phi) + sin(k theta) sin(phi), with
    # cos/sin(k theta) from the unit vector by the angle-addition recurrence
    safe = np.maximum(dist, 1e-6)
    c1, s1 = vx / safe, vy / safe
    del vy, vx, safe
    ck, sk = c1, s1
    shape_r = np.ones((h, w), dtype=np.float32)
    for k, a_max in ((1, 0.0), (2, 0.2), (3, 0.1), (4, 0.06)):
        if k > 1:
            ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
        if a_max == 0.0:
            continue
        a = rng.uniform(0.0, a_max, n)
        phi = rng.uniform(0.0, 2 * math.pi, n)
        a_cos = np.concatenate([[0.0], a * np.cos(phi)]).astype(np.float32)
        a_sin = np.concatenate([[0.0], a * np.sin(phi)]).astype(np.float32)
        shape_r += a_cos[ids] * ck + a_sin[ids] * sk
    del c1, s1, ck, sk
    r_all = np.concatenate([[1.0], rad]).astype(np.float32)
    rel = dist / (r_all[ids] * shape_r)  # < 1 inside the cell
    labels = np.where(rel < 1.0, ids, 0).astype(np.int32)

    # drop slivers (cells cut by the image border) and number the rest 1..N
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= max(12, int(0.08 * math.pi * radius**2))
    keep[0] = False
    new_id = np.zeros(n + 1, dtype=np.int32)
    new_id[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    labels = new_id[labels]
    return labels, np.minimum(rel, 1.0).astype(np.float32)


def _contacts(labels: np.ndarray) -> np.ndarray:
    """Pixels of a cell with a 4-neighbour in a different cell (both sides: 2 px wide)."""
    out = np.zeros(labels.shape, dtype=bool)
    a, b = labels[:, :-1], labels[:, 1:]
    edge = (a != b) & (a > 0) & (b > 0)
    out[:, :-1] |= edge
    out[:, 1:] |= edge
    a, b = labels[:-1, :], labels[1:, :]
    edge = (a != b) & (a > 0) & (b > 0)
    out[:-1, :] |= edge
    out[1:, :] |= edge
    return out


def synthetic_cells(
    shape: tuple[int, int] = (256, 256),
    *,
    n_cells: int | None = None,
    rng: np.random.Generator,
    cell_radius: float = 14.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a synthetic microscopy image of cells and its instance labels.

    Parameters
    ----------
    shape : (int, int)
        Height and width (each at least 16).
    n_cells : int, optional
        How many cells to aim for. Default: enough to cover about 35 % of the image.
        It is a target: a crowded image gets fewer (placement gives up when no free
        spot is found), and cells cut down to slivers by the border are dropped.
    rng : numpy.random.Generator
        All randomness comes from here; the same seed gives the same image.
    cell_radius : float
        Mean cell radius in pixels (each cell: 0.75-1.25 times this).

    Returns
    -------
    image : numpy.ndarray
        ``(H, W)`` float32 in ``[0, 1]``.
    labels : numpy.ndarray
        ``(H, W)`` int32 instance ids ``1..N`` (0 = background). Many cells touch
        other cells with no background between them.

    Examples
    --------
    >>> import numpy as np
    >>> image, labels = synthetic_cells((128, 128), rng=np.random.default_rng(0))
    >>> image.shape, image.dtype, labels.dtype
    ((128, 128), dtype('float32'), dtype('int32'))
    """
    h, w = _check_shape(shape)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if not cell_radius >= 3:
        raise ValueError(f"cell_radius must be at least 3 pixels, got {cell_radius!r}")
    if n_cells is None:
        n_cells = max(1, round(0.35 * h * w / (math.pi * cell_radius**2)))
    elif int(n_cells) != n_cells or n_cells < 0:
        raise ValueError(f"n_cells must be a non-negative integer or None, got {n_cells!r}")
    gap = 3.0 + 0.3 * cell_radius  # between clusters; keeps the warp from joining them
    pos, rad = _place_seeds(h, w, int(n_cells), cell_radius, gap, rng)
    labels, rel = _cell_labels(h, w, pos, rad, cell_radius, rng)
    n = int(labels.max())

    # intensities, in roughly [0, 1] before blur and noise
    background = rng.uniform(0.18, 0.28)
    cell_mean = np.concatenate([[0.0], background + rng.uniform(0.15, 0.42, n)])
    image = background + 0.025 * _smooth_noise((h, w), 4.0 * cell_radius, rng)
    image += 0.015 * _smooth_noise((h, w), 1.5, rng)
    inside = labels > 0
    texture = 0.045 * _smooth_noise((h, w), 1.2, rng)
    dome = 0.08 * (1.0 - rel**2)
    cells = cell_mean.astype(np.float32)[labels] + dome + texture
    image = np.where(inside, cells, image)
    del cells
    del texture, dome, rel
    image[_contacts(labels)] -= rng.uniform(0.16, 0.22)

    # smooth illumination gradient in a random direction, plus a mild vignette
    angle = rng.uniform(0.0, 2.0 * math.pi)
    y = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    image += rng.uniform(0.2, 0.32) * (math.sin(angle) * y + math.cos(angle) * x)
    image -= 0.08 * (x**2 + y**2)

    image = ndi.gaussian_filter(image, 1.0)
    image += np.float32(rng.uniform(0.02, 0.035)) * rng.standard_normal((h, w), np.float32)
    np.clip(image, 0.0, 1.0, out=image)
    return image.astype(np.float32, copy=False), labels


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    *,
    n_images: int,
    shape: tuple[int, int] = (256, 256),
    rng: np.random.Generator,
) -> tuple[Path, Path]:
    """Write a small synthetic training set.

    Files are ``out_dir/images/synth_NNN.tif`` (uint8 grey values, like most
    microscopy exports) and ``out_dir/masks/synth_NNN.tif`` (uint16 instance ids,
    0 = background), paired by name. Each file is written atomically.

    Parameters
    ----------
    out_dir : str or path-like
        Created if missing; existing files with the same names are replaced.
    n_images : int
        Number of image/mask pairs (at least 1).
    shape : (int, int)
        Size of every image.
    rng : numpy.random.Generator
        Source of all randomness.

    Returns
    -------
    (images_dir, masks_dir) : (pathlib.Path, pathlib.Path)
    """
    if int(n_images) != n_images or n_images < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    out = Path(out_dir)
    images_dir, masks_dir = out / "images", out / "masks"
    digits = max(3, len(str(n_images - 1)))
    for i in range(int(n_images)):
        image, labels = synthetic_cells(shape, rng=rng)
        name = f"synth_{i:0{digits}d}.tif"
        save_image(images_dir / name, np.round(image * 255.0).astype(np.uint8))
        save_image(masks_dir / name, labels.astype(np.uint16))
    return images_dir, masks_dir
