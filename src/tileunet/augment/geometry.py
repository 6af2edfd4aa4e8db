"""Where each pixel of a training tile comes from: the coordinate map of
:class:`~tileunet.augment.params.AugmentParams`.

Everything geometric is one coordinate map: for each pixel of the output tile the
position in the *source image* it shows (random placement + shift + rotation + zoom + flip +
elastic displacement), with positions outside the image folded back in by mirror
reflection (:func:`fold_into`, or :func:`fold_tensor` on a device; like
``np.pad(mode="reflect")``: no edge duplication). The arrays are then resampled once each
at these positions (:mod:`tileunet.augment.resample`, :mod:`tileunet.augment.on_device`).

The elastic deformation is the paper's: "random displacement vectors on a coarse 3 by 3
grid [...] sampled from a Gaussian distribution with 10 pixels standard deviation.
Per-pixel displacements are then computed using bicubic interpolation" [1]_
(:func:`elastic_field`).

Conventions
-----------
* ``center`` is the source pixel ``(row, col)`` that the tile's centre pixel (index
  ``size // 2`` on each axis) shows without deformation; the undeformed tile is
  ``image[..., r - size // 2 : r - size // 2 + size, c - size // 2 : c - size // 2 + size]``.
* Rotations and flips act about the tile's geometric centre (``(size - 1) / 2``), so a
  multiple of 90 degrees permutes the pixels of that same crop: with ``angle = 90 * k``
  and no flip or elastic deformation the tile equals ``np.rot90(crop, k)`` (counter-
  clockwise as displayed with row 0 at the top). A flip is applied after the rotation
  (``flip_y``: ``np.flipud``, ``flip_x``: ``np.fliplr``).
* Elastic grid: ``points x points`` control points spread evenly over the output tile
  with the first and last at the tile's corner pixels -- for the paper's 3 x 3 grid: the
  four corners, the four edge midpoints and the centre. Each point gets a displacement
  ``(dy, dx)`` in source pixels, both components drawn from N(0, sigma). Per-pixel
  displacements are the cubic B-spline interpolant of the grid (mirror boundary), which
  passes exactly through the grid values, evaluated separably as ``M @ D @ M.T``.

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
   Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597, Sec. 3.1.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from scipy import ndimage as ndi

from tileunet.augment.params import AugmentParams, check_size

__all__ = [
    "coordinate_factors",
    "elastic_field",
    "fold_into",
    "fold_tensor",
    "source_coordinates",
]


# ------------------------------------------------------------------ elastic field
@lru_cache(maxsize=16)
def _spline_matrix(size: int, points: int) -> np.ndarray:
    """(size, points) weights: cubic B-spline interpolation from grid points to pixels.

    Grid point k sits at pixel ``k * (size - 1) / (points - 1)``: first and last at the
    tile's corner pixels. Rows at grid pixels are unit vectors (an interpolant).
    """
    if points == 1:
        matrix = np.ones((size, 1))
    else:
        if size == 1:  # a one-pixel tile sits at the grid's centre
            t = np.array([(points - 1) / 2.0])
        else:
            t = np.arange(size) * ((points - 1) / (size - 1))
        basis = np.eye(points)
        matrix = np.stack(
            [ndi.map_coordinates(basis[k], [t], order=3, mode="mirror") for k in range(points)],
            axis=1,
        )
        # exact unit rows at the grid pixels (the spline filter leaves ~1e-17 residues)
        on_grid = np.abs(t - np.round(t)) < 1e-9
        matrix[on_grid] = basis[np.round(t[on_grid]).astype(int)]
    matrix.setflags(write=False)
    return matrix


def _check_coarse(coarse: np.ndarray) -> np.ndarray:
    coarse = np.asarray(coarse, dtype=np.float64)
    if coarse.ndim != 3 or coarse.shape[0] != 2 or coarse.shape[1] != coarse.shape[2]:
        raise ValueError(f"coarse must have shape (2, points, points), got {coarse.shape}")
    return coarse


def elastic_field(coarse: np.ndarray, size: int) -> np.ndarray:
    """Per-pixel displacements from coarse-grid ones by bicubic (cubic spline) interpolation.

    Parameters
    ----------
    coarse : np.ndarray
        ``(2, points, points)`` displacements ``(dy, dx)`` at the grid points.
    size : int
        Side of the output tile.

    Returns
    -------
    np.ndarray
        ``(2, size, size)`` float64 displacements; equal to ``coarse`` at the grid points.

    Examples
    --------
    >>> coarse = np.zeros((2, 3, 3))
    >>> coarse[0, 1, 1] = 10.0  # push the centre down by 10 px
    >>> field = elastic_field(coarse, 5)
    >>> float(field[0, 2, 2]), float(field[0, 0, 0]), bool(field[1].any())
    (10.0, 0.0, False)
    """
    check_size(size)
    m = _spline_matrix(int(size), _check_coarse(coarse).shape[1])  # (size, points)
    return np.einsum("ciq,jq->cij", np.einsum("ip,cpq->ciq", m, coarse), m)


# -------------------------------------------------------------------------- folding
def fold_into(x: np.ndarray, n: int) -> None:
    """Mirror coordinates into ``[0, n - 1]`` in place (no edge duplication, period 2(n-1)).

    Parameters
    ----------
    x : np.ndarray
        Float coordinates along an axis of length ``n``; overwritten.
    n : int
        Length of the axis (1: every coordinate becomes 0).

    Examples
    --------
    >>> x = np.arange(-3.0, 8.0)
    >>> fold_into(x, 4)
    >>> x
    array([3., 2., 1., 0., 1., 2., 3., 2., 1., 0., 1.])
    """
    if n == 1:
        x[...] = 0.0
        return
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0.0 and hi <= n - 1:
        return
    period = 2.0 * (n - 1)
    if lo < -(n - 1) or hi > period:  # beyond the first reflection: wrap first
        np.mod(x, period, out=x)
    else:
        np.abs(x, out=x)
    np.subtract(period, x, out=x, where=x > n - 1)


def fold_tensor(x: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`fold_into` on a tensor, into a new one (without the data-dependent shortcuts:
    no device sync).

    Examples
    --------
    >>> fold_tensor(torch.arange(-3.0, 8.0), 4)
    tensor([3., 2., 1., 0., 1., 2., 3., 2., 1., 0., 1.])
    """
    if n == 1:
        return torch.zeros_like(x)
    period = 2.0 * (n - 1)
    x = torch.remainder(x, period)
    return torch.where(x > n - 1, period - x, x)


# -------------------------------------------------------------- the coordinate map
def coordinate_factors(params: AugmentParams) -> tuple[np.ndarray, np.ndarray]:
    """The coordinate map as a product: ``rows (2, size, k)`` and ``cols (k, size)``.

    ``np.einsum("cik,kj->cij", rows, cols)`` is the unfolded map of
    :func:`source_coordinates`; ``k`` is 2, plus the number of elastic grid points per
    axis when there is an elastic deformation. The two small factors are what a device
    copies to compute the map there.

    Examples
    --------
    >>> rows, cols = coordinate_factors(AugmentParams((10, 10), 4, (5, 5)))
    >>> rows.shape, cols.shape
    ((2, 4, 2), (2, 4))
    >>> np.einsum("cik,kj->cij", rows, cols)[1, 0]  # the first row's columns
    array([3., 4., 5., 6.])
    """
    size = params.size
    half = (size - 1) / 2.0
    v = np.arange(size, dtype=np.float64) - half  # tile coordinates about its centre
    vy = -v if params.flip_y else v
    vx = -v if params.flip_x else v
    # geometric tile centre in source coordinates
    cy = params.center[0] - size // 2 + half
    cx = params.center[1] - size // 2 + half
    theta = math.radians(params.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    if params.is_quarter_turn:  # exact for quarter turns
        cos, sin = float(round(cos)), float(round(sin))
    cos, sin = cos / params.zoom, sin / params.zoom  # a tile pixel spans 1/zoom source px
    # src = c + R @ flipped v / zoom + elastic, R = [[cos, sin], [-sin, cos]]
    # (counter-clockwise).
    # Every term is a sum of outer products rows[c, i, k] * cols[k, j]: one einsum pass,
    # written in place, makes the whole (2, size, size) map (single-threaded on purpose:
    # a threaded BLAS matmul is ~10x slower when the cores are busy).
    rows = [np.stack([cy + cos * vy, np.full(size, sin)], axis=-1),
            np.stack([cx - sin * vy, np.full(size, cos)], axis=-1)]
    cols = [np.ones(size), vx]
    if params.elastic.any():
        m = _spline_matrix(size, params.elastic.shape[1])  # (size, points)
        mc = np.matmul(m, params.elastic)  # (2, size, points)
        rows = [np.concatenate([rows[c], mc[c]], axis=-1) for c in range(2)]
        cols.extend(m.T)
    return np.stack(rows), np.stack(cols)


def source_coordinates(params: AugmentParams, fold: bool = True) -> np.ndarray:
    """Source-image ``(row, col)`` coordinates of every output pixel.

    Parameters
    ----------
    params : AugmentParams
    fold : bool
        Mirror coordinates outside the image back into ``[0, H-1] x [0, W-1]``
        (:func:`fold_into`).

    Returns
    -------
    np.ndarray
        ``(2, size, size)`` float64.

    Examples
    --------
    >>> p = AugmentParams((4, 4), 6, (1, 1))
    >>> source_coordinates(p, fold=False)[0][:, 0]
    array([-2., -1.,  0.,  1.,  2.,  3.])
    >>> source_coordinates(p)[0][:, 0]
    array([2., 1., 0., 1., 2., 3.])
    """
    size = params.size
    rows, cols = coordinate_factors(params)
    coords = np.empty((2, size, size))
    np.einsum("cik,kj->cij", rows, cols, out=coords)
    if fold:
        h, w = params.image_shape
        fold_into(coords[0], h)
        fold_into(coords[1], w)
    return coords

