"""Data augmentation for training tiles: placement, rotation, flips, elastic, gray values.

The paper trains on few annotated images and leans on augmentation: shifts, rotations,
gray-value variations and, above all, *elastic deformations* -- "random displacement
vectors on a coarse 3 by 3 grid [...] sampled from a Gaussian distribution with 10
pixels standard deviation. Per-pixel displacements are then computed using bicubic
interpolation" [1]_.

Everything geometric is one coordinate map: for each pixel of the output tile we compute
the position in the *source image* it shows (random placement + shift + rotation + flip
+ elastic displacement), fold positions outside the image back in by mirror reflection
(like ``np.pad(mode="reflect")``: no edge duplication), and resample once per array:

=======  ==========================  ====================================================
array    interpolation               why
=======  ==========================  ====================================================
image    bicubic (or cubic spline)   smooth; see ``interpolation`` below
target   nearest                     the label set never changes: no new, mixed values
weights  linear                      a convex combination of neighbours: stays >= 0 and
                                     within the input's range (cubic would overshoot)
=======  ==========================  ====================================================

Because the mirror-extended image is symmetric about every border, folding a coordinate
and interpolating with mirror boundary conditions gives exactly the interpolation of the
infinitely mirrored image. So a tile near or beyond the border, or a rotated tile, only
ever sees real image content (no black corners); images smaller than the tile are
mirrored repeatedly, like ``np.pad(mode="reflect")``.

Image interpolation (``AugmentConfig.interpolation``):

* ``"bicubic"`` (default): cubic convolution (Keys, a = -0.75; the "bicubic" of PyTorch,
  OpenCV and most image editors), 4 x 4 taps, interpolating, no prefilter. Evaluated by
  ``torch.nn.functional.grid_sample`` on the bounding box of the needed source pixels.
* ``"spline"``: cubic B-spline interpolation, the same numbers as
  ``scipy.ndimage.map_coordinates(order=3, mode="mirror")`` on the whole image (to
  float32 rounding, ~1e-4 of the value range) but several times cheaper: the spline
  prefilter runs only on the bounding box plus :data:`SPLINE_MARGIN` pixels, and the
  spline is evaluated as four bilinear ``grid_sample`` taps per pixel.

Both are computed in float32. Tiles that need no interpolation (identity, quarter turns
and flips at an integer centre, no elastic deformation) are exact copies of source pixels.

Random parameters are drawn once (:func:`make_params`) and then applied to image, target
and weight map alike (:func:`apply`), so they can never drift apart.

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
.. [2] R. Keys, "Cubic convolution interpolation for digital image processing",
   IEEE Trans. ASSP 29(6), 1981.
.. [3] C. Sigg, M. Hadwiger, "Fast third-order texture filtering", GPU Gems 2, ch. 20,
   2005.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

__all__ = [
    "INTERPOLATIONS",
    "DeviceImage",
    "apply_on_device",
    "SPLINE_MARGIN",
    "AugmentConfig",
    "AugmentParams",
    "apply",
    "augment_tile",
    "elastic_field",
    "identity_params",
    "make_params",
    "source_coordinates",
]

#: Image interpolations :func:`apply` knows (see the module docstring).
INTERPOLATIONS = ("bicubic", "spline")

#: Extra source pixels around the needed bounding box on which the cubic B-spline
#: prefilter runs (``interpolation="spline"``). The prefilter's influence decays as
#: 0.268**k with distance k, so 12 pixels hide the crop's artificial border (< 2e-7).
SPLINE_MARGIN = 12

#: Mirrored pixels around every crop, so that all taps of a cubic kernel
#: (floor(x) - 1 ... floor(x) + 2) lie inside the array, also at the image border.
_PAD = 2


# --------------------------------------------------------------------------- config
def _check_range(name: str, value: tuple[float, float]) -> None:
    if not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi):
        raise ValueError(f"{name} must satisfy 0 < low <= high, got {value!r}")


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to draw and how strong (defaults: the paper's elastic, mild rest).

    Parameters
    ----------
    elastic_sigma : float
        Standard deviation, in pixels, of each component of the displacement vectors on
        the coarse grid (the paper: 10). 0 disables the elastic deformation.
    elastic_points : int
        The coarse grid is ``elastic_points x elastic_points`` (the paper: 3).
    rotate : bool
        Rotate by an angle drawn uniformly from [0, 360) degrees.
    flip : bool
        Flip up-down and left-right, each with probability 1/2.
    max_shift : float
        Extra shift of the tile centre, uniform in ``[-max_shift, max_shift]`` pixels per
        axis. The random placement of the tile already shifts it, so the default is 0;
        useful with a fixed ``center``.
    contrast : (float, float)
        Range of the contrast factor (drawn log-uniformly), applied about the tile mean.
    brightness : float
        Brightness offset drawn uniformly from ``[-brightness, brightness]``, as a
        fraction of the tile's value range (max - min), so it means the same for images
        in [0, 255], [0, 1] or normalised to zero mean.
    gamma : (float, float)
        Range of the gamma exponent (drawn log-uniformly), applied to the tile rescaled
        to [0, 1] by its own min and max and mapped back.
    enabled : bool
        ``False``: a plain random mirrored crop (integer placement, no rotation, flip,
        shift, deformation or gray-value change), e.g. for validation tiles.
    interpolation : {"bicubic", "spline"}
        Image interpolation, see the module docstring.
    """

    elastic_sigma: float = 10.0
    elastic_points: int = 3
    rotate: bool = True
    flip: bool = True
    max_shift: float = 0.0
    contrast: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.1
    gamma: tuple[float, float] = (0.8, 1.25)
    enabled: bool = True
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.elastic_sigma) and self.elastic_sigma >= 0):
            raise ValueError(f"elastic_sigma must be >= 0, got {self.elastic_sigma!r}")
        points = self.elastic_points
        if not isinstance(points, (int, np.integer)) or isinstance(points, bool) or points < 1:
            raise ValueError(f"elastic_points must be a positive integer, got {points!r}")
        if not (math.isfinite(self.max_shift) and self.max_shift >= 0):
            raise ValueError(f"max_shift must be >= 0, got {self.max_shift!r}")
        if not (math.isfinite(self.brightness) and self.brightness >= 0):
            raise ValueError(f"brightness must be >= 0, got {self.brightness!r}")
        for name in ("contrast", "gamma"):
            _check_range(name, getattr(self, name))
            # lists (e.g. from a JSON config) become tuples: hashable and comparable
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        _check_interpolation(self.interpolation)


@dataclass(frozen=True, eq=False)
class AugmentParams:
    """Every choice for one tile, drawn once by :func:`make_params`.

    Attributes
    ----------
    image_shape : (int, int)
        ``(H, W)`` of the source image the parameters were drawn for.
    size : int
        Side of the square output tile.
    center : (float, float)
        Source pixel shown by the tile's centre pixel (index ``size // 2``), shift included.
    angle : float
        Rotation in degrees, counter-clockwise as displayed.
    flip_y, flip_x : bool
        Flip the tile up-down / left-right (after the rotation).
    elastic : np.ndarray, optional
        ``(2, points, points)`` float64 coarse-grid displacements ``(dy, dx)`` in pixels
        (``None`` or all zero: no elastic deformation). Stored as a read-only copy.
    contrast, brightness, gamma : float
        Gray-value change of the image (1, 0, 1: none); see :func:`apply`.
    interpolation : {"bicubic", "spline"}
        Image interpolation.
    """

    image_shape: tuple[int, int]
    size: int
    center: tuple[float, float]
    angle: float = 0.0
    flip_y: bool = False
    flip_x: bool = False
    elastic: np.ndarray | None = None
    contrast: float = 1.0
    brightness: float = 0.0
    gamma: float = 1.0
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", _check_shape(self.image_shape))
        _check_size(self.size)
        cy, cx = (float(v) for v in self.center)
        if not (math.isfinite(cy) and math.isfinite(cx)):
            raise ValueError(f"center must be finite, got {self.center!r}")
        object.__setattr__(self, "center", (cy, cx))
        if not math.isfinite(self.angle):
            raise ValueError(f"angle must be finite, got {self.angle!r}")
        elastic = np.zeros((2, 1, 1)) if self.elastic is None else self.elastic
        elastic = np.array(elastic, dtype=np.float64)  # private, read-only copy
        if elastic.ndim != 3 or elastic.shape[0] != 2 or elastic.shape[1] != elastic.shape[2]:
            raise ValueError(f"elastic must have shape (2, points, points), got {elastic.shape}")
        elastic.setflags(write=False)
        object.__setattr__(self, "elastic", elastic)
        if not (self.contrast > 0 and self.gamma > 0 and math.isfinite(self.brightness)):
            raise ValueError(
                "contrast and gamma must be > 0 and brightness finite, got "
                f"{self.contrast!r}, {self.gamma!r}, {self.brightness!r}"
            )
        _check_interpolation(self.interpolation)

    @property
    def is_integral(self) -> bool:
        """True when every output pixel shows exactly one source pixel (no interpolation)."""
        return (
            float(self.angle) % 90.0 == 0.0
            and not self.elastic.any()
            and all(float(c).is_integer() for c in self.center)
        )


def _check_shape(image_shape: tuple[int, ...]) -> tuple[int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"image_shape must be (H, W) with H, W >= 1, got {image_shape!r}")
    return shape  # type: ignore[return-value]


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")


# ------------------------------------------------------------------- drawing params
def make_params(
    image_shape: tuple[int, int],
    size: int,
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),  # noqa: B008  (frozen, immutable)
    center: tuple[float, float] | None = None,
) -> AugmentParams:
    """Draw the random parameters of one training tile.

    Parameters
    ----------
    image_shape : (int, int)
        ``(H, W)`` of the source image.
    size : int
        Side of the square output tile (e.g. 572, the paper network's input).
    rng : np.random.Generator
        Source of all randomness.
    config : AugmentConfig
        Which augmentations and how strong.
    center : (float, float), optional
        Source pixel at the tile's centre. ``None``: an integer pixel drawn uniformly from
        the image, so every part of the image is equally likely to be the tile centre
        (context beyond the border is mirrored).

    Returns
    -------
    AugmentParams

    Examples
    --------
    >>> p = make_params((100, 80), 64, np.random.default_rng(0))
    >>> p.size, p.elastic.shape
    (64, (2, 3, 3))
    """
    h, w = _check_shape(image_shape)
    _check_size(size)
    if center is None:
        cy, cx = float(rng.integers(h)), float(rng.integers(w))
    else:
        cy, cx = (float(v) for v in center)
    if not config.enabled:
        return AugmentParams((h, w), int(size), (cy, cx), interpolation=config.interpolation)
    if config.max_shift > 0:
        dy, dx = rng.uniform(-config.max_shift, config.max_shift, size=2)
        cy, cx = cy + float(dy), cx + float(dx)
    angle = float(rng.uniform(0.0, 360.0)) if config.rotate else 0.0
    flip_y = flip_x = False
    if config.flip:
        flip_y, flip_x = (bool(b) for b in rng.random(2) < 0.5)
    points = int(config.elastic_points)
    if config.elastic_sigma > 0:
        elastic = rng.normal(0.0, config.elastic_sigma, size=(2, points, points))
    else:
        elastic = np.zeros((2, points, points))
    contrast = _log_uniform(rng, config.contrast)
    brightness = float(rng.uniform(-config.brightness, config.brightness))
    gamma = _log_uniform(rng, config.gamma)
    return AugmentParams(
        (h, w), int(size), (cy, cx), angle=angle, flip_y=flip_y, flip_x=flip_x,
        elastic=elastic, contrast=contrast, brightness=brightness, gamma=gamma,
        interpolation=config.interpolation,
    )


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return math.exp(rng.uniform(lo, hi)) if hi > lo else float(bounds[0])


def identity_params(
    image_shape: tuple[int, int], size: int, center: tuple[float, float] | None = None
) -> AugmentParams:
    """Parameters of a plain mirrored crop: no rotation, flip, deformation or gray change.

    ``center`` defaults to the image centre ``(H // 2, W // 2)``. With an integer centre
    the tile is exactly ``np.pad(image, ..., mode="reflect")`` cropped at
    ``center - size // 2``.

    Examples
    --------
    >>> img = np.arange(20.0).reshape(4, 5)
    >>> apply(identity_params(img.shape, 3, (1, 1)), img)[0]
    array([[ 0.,  1.,  2.],
           [ 5.,  6.,  7.],
           [10., 11., 12.]])
    """
    h, w = _check_shape(image_shape)
    if center is None:
        center = (h // 2, w // 2)
    return AugmentParams((h, w), size, center)


# --------------------------------------------------------------- coordinate maps
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
    _check_size(size)
    m = _spline_matrix(int(size), _check_coarse(coarse).shape[1])  # (size, points)
    return np.einsum("ciq,jq->cij", np.einsum("ip,cpq->ciq", m, coarse), m)


def _fold(x: np.ndarray, n: int) -> None:
    """Mirror coordinates into [0, n - 1] in place (no edge duplication, period 2(n-1))."""
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


def _coordinate_factors(params: AugmentParams) -> tuple[np.ndarray, np.ndarray]:
    """``(rows (2, size, k), cols (k, size))``: the coordinate map is ``rows @ cols``."""
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
    if float(params.angle) % 90.0 == 0.0:  # exact for quarter turns
        cos, sin = float(round(cos)), float(round(sin))
    # src = c + R @ flipped v + elastic, R = [[cos, sin], [-sin, cos]] (counter-clockwise).
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
        Mirror coordinates outside the image back into ``[0, H-1] x [0, W-1]``.

    Returns
    -------
    np.ndarray
        ``(2, size, size)`` float64.
    """
    size = params.size
    rows, cols = _coordinate_factors(params)
    coords = np.empty((2, size, size))
    np.einsum("cik,kj->cij", rows, cols, out=coords)
    if fold:
        h, w = params.image_shape
        _fold(coords[0], h)
        _fold(coords[1], w)
    return coords


# ------------------------------------------------------------------- resampling
def _crop_box(coords: np.ndarray, shape: tuple[int, int], margin: int) -> tuple[int, ...]:
    """Source rows r0:r1 and columns c0:c1 covering (folded) ``coords`` plus ``margin``."""
    (h, w) = shape
    r0 = max(int(math.floor(coords[0].min())) - margin, 0)
    r1 = min(int(math.ceil(coords[0].max())) + margin + 1, h)
    c0 = max(int(math.floor(coords[1].min())) - margin, 0)
    c1 = min(int(math.ceil(coords[1].max())) + margin + 1, w)
    return r0, r1, c0, c1


def _padded(crop: np.ndarray) -> torch.Tensor:
    """(C, h, w) -> (1, C, h + 4, w + 4) float32, mirrored like scipy's "mirror" mode."""
    crop = np.asarray(crop, dtype=np.float32)
    padded = np.pad(crop, ((0, 0), (_PAD, _PAD), (_PAD, _PAD)), mode="reflect")
    return torch.from_numpy(padded)[None]


def _grid(y: np.ndarray, x: np.ndarray, origin: tuple[int, int],
          shape: tuple[int, int]) -> torch.Tensor:
    """Source positions -> ``grid_sample`` grid (1, ..., 2) of (x, y) in [-1, 1].

    ``origin`` is the source pixel at index ``_PAD`` of the padded crop of ``shape``
    (``align_corners=True``: -1 and 1 are the centres of the first and last pixels).
    """
    grid = np.empty(y.shape + (2,), dtype=np.float32)
    for k, (pos, o, n) in enumerate(((x, origin[1], shape[1]), (y, origin[0], shape[0]))):
        scale = 2.0 / (n - 1)
        np.multiply(pos, scale, out=grid[..., k], casting="same_kind")
        grid[..., k] += (_PAD - o) * scale - 1.0
    return torch.from_numpy(grid)[None]


def _sample(values: torch.Tensor, grid: torch.Tensor, mode: str) -> np.ndarray:
    """``grid_sample`` of (1, C, h, w) at a (1, H, W, 2) grid -> (C, H, W) float32."""
    out = F.grid_sample(values, grid, mode=mode, padding_mode="border", align_corners=True)
    return out[0].numpy()


def _spline_taps(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the 4 cubic B-spline taps along one axis into 2 linear-interpolation taps.

    With ``t = x - floor(x)`` the taps ``floor(x) - 1 .. floor(x) + 2`` have weights
    ``w0..w3``; ``w0 c[-1] + w1 c[0] = g0 * lerp(c[-1], c[0], w1 / g0)`` with
    ``g0 = w0 + w1`` (>= 1/6, never 0), and likewise for ``w2, w3`` with weight
    ``1 - g0``. So one bicubic B-spline sample is four bilinear samples (Sigg &
    Hadwiger 2005, in the module's references).

    Returns the two linear-tap positions (in source pixels, float64) and ``g0`` (float32).
    """
    f = np.floor(pos)
    t = (pos - f).astype(np.float32)
    g0 = t * np.float32(1.0 / 3.0)  # w0 + w1 = ((t/3 - 1/2) t - 1/2) t + 5/6
    g0 -= 0.5
    g0 *= t
    g0 -= 0.5
    g0 *= t
    g0 += np.float32(5.0 / 6.0)
    t2 = t * t
    h0 = t * np.float32(0.5)  # w1 / g0, w1 = (t/2 - 1) t^2 + 2/3
    h0 -= 1.0
    h0 *= t2
    h0 += np.float32(2.0 / 3.0)
    h0 /= g0
    h1 = t2 * t  # w3 / (1 - g0), w3 = t^3 / 6
    h1 /= 6.0 - 6.0 * g0
    p0 = f - 1.0
    p0 += h0
    f += 1.0
    f += h1
    return p0, f, g0


def _spline_sample(coef: torch.Tensor, coords: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
    """Evaluate the cubic B-spline with padded coefficients ``coef`` (1, C, h, w)."""
    size_y, size_x = coords.shape[1:]
    shape = tuple(coef.shape[-2:])
    py0, py1, gy = _spline_taps(coords[0])
    px0, px1, gx = _spline_taps(coords[1])
    # the four bilinear taps (py0, px0), (py0, px1), (py1, px0), (py1, px1) side by side
    ys = np.stack((py0, py0, py1, py1))
    xs = np.stack((px0, px1, px0, px1))
    taps = _sample(coef, _grid(ys, xs, origin, shape).view(1, 4 * size_y, size_x, 2),
                   "bilinear").reshape(coef.shape[1], 4, size_y, size_x)
    row0 = taps[:, 1] + gx * (taps[:, 0] - taps[:, 1])  # the two taps at py0 along x
    row1 = taps[:, 3] + gx * (taps[:, 2] - taps[:, 3])  # ... and at py1
    row0 -= row1
    row0 *= gy
    row0 += row1
    return row0


def _spline_coefficients(crop: np.ndarray) -> torch.Tensor:
    """Cubic B-spline coefficients (mirror boundary) of each channel, padded by ``_PAD``."""
    coef = ndi.spline_filter1d(np.asarray(crop, dtype=np.float64), 3, axis=-1, mode="mirror")
    coef = ndi.spline_filter1d(coef, 3, axis=-2, mode="mirror", output=np.float32)
    return _padded(coef)


# ---------------------------------------------------------------------- applying
def _check_arrays(
    params: AugmentParams,
    image: np.ndarray,
    target: np.ndarray | None,
    weights: np.ndarray | None,
) -> np.ndarray:
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (C, H, W), got shape {image.shape}")
    hw = tuple(image.shape[-2:])
    if hw != params.image_shape:
        raise ValueError(
            f"image spatial shape {hw} does not match the params' image_shape "
            f"{params.image_shape}"
        )
    for name, arr in (("target", target), ("weights", weights)):
        if arr is not None and tuple(arr.shape) != hw:
            raise ValueError(f"{name} must have shape {hw} (the image's), got {arr.shape}")
    return image if image.ndim == 3 else image[None]


def _float_dtype(arr: np.ndarray) -> np.dtype:
    return arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.dtype(np.float32)


def _integral_take(params: AugmentParams) -> Callable[[np.ndarray], np.ndarray]:
    """For integral params: a function cropping (..., H, W) arrays exactly, without a map.

    The mirrored crop is indexed with two folded 1-D index vectors, then turned by
    ``np.rot90`` and flipped, which is what :func:`source_coordinates` describes for a
    quarter turn (tested against the interpolating path).
    """
    (h, w), size = params.image_shape, params.size
    index = []
    for c, n in zip(params.center, (h, w), strict=True):
        pos = np.arange(size, dtype=np.float64) + (int(c) - size // 2)
        _fold(pos, n)
        index.append(pos.astype(np.intp))
    turns = int(round(params.angle / 90.0)) % 4

    def take(arr: np.ndarray) -> np.ndarray:
        out = arr[..., index[0][:, None], index[1][None, :]]  # (..., size, size), fresh
        out = np.rot90(out, turns, axes=(-2, -1))
        if params.flip_y:
            out = out[..., ::-1, :]
        if params.flip_x:
            out = out[..., ::-1]
        return np.ascontiguousarray(out)

    return take


def _apply_resampled(
    params: AugmentParams,
    img3: np.ndarray,
    target: np.ndarray | None,
    weights: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The general path: one coordinate map, interpolated per array (float32 results)."""
    h, w = params.image_shape
    coords = source_coordinates(params)  # (2, size, size), folded into the image
    out_target = None
    if target is not None:
        # nearest source pixel; folded coordinates are >= 0, so + 0.5 and truncate rounds
        flat = (coords[0] + 0.5).astype(np.intp)
        flat *= w
        flat += (coords[1] + 0.5).astype(np.intp)
        out_target = target.reshape(-1)[flat]

    spline = params.interpolation == "spline"
    r0, r1, c0, c1 = _crop_box(coords, (h, w), SPLINE_MARGIN if spline else _PAD)
    shape = (r1 - r0 + 2 * _PAD, c1 - c0 + 2 * _PAD)  # of the padded crops
    grid = None
    if weights is not None or not spline:
        grid = _grid(coords[0], coords[1], (r0, c0), shape)
    if spline:
        coef = _spline_coefficients(img3[:, r0:r1, c0:c1])
        out_image = _spline_sample(coef, coords, (r0, c0))
    else:
        out_image = _sample(_padded(img3[:, r0:r1, c0:c1]), grid, "bicubic")
    out_weights = None
    if weights is not None:
        out_weights = _sample(_padded(weights[None, r0:r1, c0:c1]), grid, "bilinear")[0]
    return out_image, out_target, out_weights


def apply(
    params: AugmentParams,
    image: np.ndarray,
    target: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Resample image, target and weight map with the same parameters.

    Parameters
    ----------
    params : AugmentParams
        From :func:`make_params` or :func:`identity_params`.
    image : np.ndarray
        ``(C, H, W)`` or ``(H, W)``, floating point (float32 in training). Integer images
        are returned as float32.
    target : np.ndarray, optional
        ``(H, W)`` labels, any dtype; nearest neighbour, so no new values appear.
    weights : np.ndarray, optional
        ``(H, W)`` weight map; linear interpolation, so values stay within the input's
        range (in particular >= 0) and sharp ridges between cells are only slightly
        widened. Integer weights are returned as float32.

    Returns
    -------
    image, target, weights : np.ndarray
        Tiles ``(..., size, size)``; the image keeps its ndim and (floating) dtype, the
        others their dtype; ``None`` stays ``None``. Gray-value changes (gamma on the
        tile rescaled to [0, 1] by its min and max, then contrast about the tile mean,
        then the brightness offset times the value range) touch the image only.
    """
    image = np.asarray(image)
    target = None if target is None else np.asarray(target)
    weights = None if weights is None else np.asarray(weights)
    img3 = _check_arrays(params, image, target, weights)  # (C, H, W)
    if params.is_integral:
        take = _integral_take(params)
        out_image = take(img3).astype(_float_dtype(image), copy=False)
        out_target = None if target is None else take(target)
        out_weights = None
        if weights is not None:
            out_weights = take(weights).astype(_float_dtype(weights), copy=False)
    else:
        out_image, out_target, out_weights = _apply_resampled(params, img3, target, weights)
        out_image = out_image.astype(_float_dtype(image), copy=False)
        if out_weights is not None:
            out_weights = out_weights.astype(_float_dtype(weights), copy=False)

    _gray(out_image, params)
    if image.ndim == 2:
        out_image = out_image[0]
    return out_image, out_target, out_weights


def _gray(tile: np.ndarray, params: AugmentParams) -> None:
    """In place: gamma (on the tile rescaled to [0, 1]), contrast about the mean, offset.

    One set of factors for all channels; the tile's min, max and mean are taken over
    all channels too.
    """
    if params.gamma == 1.0 and params.contrast == 1.0 and params.brightness == 0.0:
        return
    lo, hi = float(tile.min()), float(tile.max())
    span = hi - lo
    if span > 0 and params.gamma != 1.0:
        tile -= lo
        tile *= 1.0 / span
        np.clip(tile, 0.0, 1.0, out=tile)
        np.power(tile, params.gamma, out=tile)
        tile *= span
        tile += lo
    if params.contrast != 1.0:
        mean = float(tile.mean(dtype=np.float64))
        tile *= params.contrast
        tile += mean * (1.0 - params.contrast)
    if params.brightness != 0.0:
        tile += params.brightness * span


# ------------------------------------------------------------- on the device
class DeviceImage:
    """A training image, its target and weight map held on a torch device for
    :func:`apply_on_device`: the image and the weights mirrored by two pixels once
    (as :func:`apply` does per crop), the target as int64.

    Parameters
    ----------
    image : np.ndarray
        ``(C, H, W)`` float.
    target, weights : np.ndarray
        ``(H, W)``.
    device : torch.device or str
    """

    def __init__(self, image: np.ndarray, target: np.ndarray, weights: np.ndarray,
                 device: torch.device | str) -> None:
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 3:
            raise ValueError(f"image must be (C, H, W), got shape {image.shape}")
        self.shape = image.shape[1:]
        if np.shape(target) != self.shape or np.shape(weights) != self.shape:
            raise ValueError(f"target {np.shape(target)} and weights {np.shape(weights)} "
                             f"must have the image's shape {self.shape}")
        self.image = _padded(image).to(device)  # (1, C, H + 4, W + 4)
        self.weights = _padded(np.asarray(weights, np.float32)[None]).to(device)
        self.target = torch.as_tensor(np.asarray(target, dtype=np.int64)).to(device)


def _fold_torch(x: torch.Tensor, n: int) -> torch.Tensor:
    """:func:`_fold` on a tensor (without the data-dependent shortcuts: no device sync)."""
    if n == 1:
        return torch.zeros_like(x)
    period = 2.0 * (n - 1)
    x = torch.remainder(x, period)
    return torch.where(x > n - 1, period - x, x)


def apply_on_device(params: AugmentParams, src: DeviceImage
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`apply` for an image held on a torch device; the tiles stay there.

    The same coordinate map (in float64) and the same interpolation as :func:`apply`
    (bicubic image, bilinear weights, nearest target, then the gray-value change), so
    the tiles agree with the NumPy path to float32 rounding (~1e-5 of the value range).
    On a GPU this is many times faster than one CPU core makes tiles
    (``benchmarks/RESULTS.md``, "The data pipeline on its own").
    Only ``interpolation="bicubic"`` is implemented here.

    Returns
    -------
    image (C, size, size) float32, target (size, size) int64, weights (size, size) float32
    """
    if params.interpolation != "bicubic":
        raise ValueError(f"apply_on_device supports interpolation='bicubic' only, got "
                         f"{params.interpolation!r}")
    if tuple(params.image_shape) != tuple(src.shape):
        raise ValueError(f"params were drawn for shape {params.image_shape}, the image "
                         f"is {tuple(src.shape)}")
    dev = src.image.device
    h, w = src.shape
    rows, cols = _coordinate_factors(params)
    both = torch.from_numpy(np.concatenate([rows.ravel(), cols.ravel()])).to(dev)  # one copy
    rows_t, cols_t = both[: rows.size].view(rows.shape), both[rows.size :].view(cols.shape)
    coords = torch.einsum("cik,kj->cij", rows_t, cols_t)  # (2, size, size) float64
    y, x = _fold_torch(coords[0], h), _fold_torch(coords[1], w)
    target = src.target[(y + 0.5).long(), (x + 0.5).long()]  # nearest source pixel
    hp, wp = h + 2 * _PAD, w + 2 * _PAD
    grid = torch.stack([(x + _PAD) * (2.0 / (wp - 1)) - 1.0,
                        (y + _PAD) * (2.0 / (hp - 1)) - 1.0], dim=-1).float()[None]
    image = F.grid_sample(src.image, grid, mode="bicubic", padding_mode="border",
                          align_corners=True)[0]
    weights = F.grid_sample(src.weights, grid, mode="bilinear", padding_mode="border",
                            align_corners=True)[0, 0]
    return _gray_torch(image, params), target, weights


def _gray_torch(tile: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """:func:`_gray` on a tensor, without device syncs."""
    if params.gamma == 1.0 and params.contrast == 1.0 and params.brightness == 0.0:
        return tile
    lo, hi = torch.aminmax(tile)
    span = hi - lo
    if params.gamma != 1.0:
        safe = torch.where(span > 0, span, torch.ones_like(span))
        scaled = ((tile - lo) / safe).clamp(0.0, 1.0).pow(params.gamma)
        tile = torch.where(span > 0, scaled * span + lo, tile)
    if params.contrast != 1.0:
        mean = tile.double().mean().float()
        tile = tile * params.contrast + mean * (1.0 - params.contrast)
    if params.brightness != 0.0:
        tile = tile + params.brightness * span
    return tile


def augment_tile(
    image: np.ndarray,
    target: np.ndarray | None,
    weights: np.ndarray | None,
    *,
    size: int,
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),  # noqa: B008  (frozen, immutable)
    center: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Draw parameters and resample one training tile triple: ``apply(make_params(...))``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> img = rng.random((1, 50, 60), dtype=np.float32)
    >>> lab = (img[0] > 0.5).astype(np.int64)
    >>> x, y, w = augment_tile(img, lab, np.ones((50, 60), np.float32), size=32, rng=rng)
    >>> x.shape, y.shape, w.shape, x.dtype, y.dtype
    ((1, 32, 32), (32, 32), (32, 32), dtype('float32'), dtype('int64'))
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (C, H, W), got shape {image.shape}")
    params = make_params(tuple(image.shape[-2:]), size, rng, config, center)
    return apply(params, image, target, weights)
