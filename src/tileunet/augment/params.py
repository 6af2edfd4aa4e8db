"""The random parameters of one training tile: what to draw (:class:`AugmentConfig`),
what was drawn (:class:`AugmentParams`) and the drawing (:func:`make_params`).

The paper trains on few annotated images and leans on augmentation: shifts, rotations,
gray-value variations and, above all, *elastic deformations* -- "random displacement
vectors on a coarse 3 by 3 grid [...] sampled from a Gaussian distribution with 10
pixels standard deviation" [1]_.

Random parameters are drawn once per tile (:func:`make_params`) and then applied to
image, target and weight map alike (:func:`tileunet.augment.resample.apply`, or
:func:`tileunet.augment.on_device.apply_on_device`), so they can never drift apart. What
the parameters mean geometrically (centre, rotation, flips, the elastic grid) is
described in :mod:`tileunet.augment.geometry`; the gray values in
:mod:`tileunet.augment.gray`.

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
   Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597, Sec. 3.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "INTERPOLATIONS",
    "WEIGHT_INTERPOLATIONS",
    "AugmentConfig",
    "AugmentParams",
    "check_size",
    "identity_params",
    "make_params",
]

#: Image interpolations :func:`tileunet.augment.resample.apply` knows (see
#: :mod:`tileunet.augment.resample`).
INTERPOLATIONS = ("bicubic", "spline")


# ------------------------------------------------------------------------- checks
def check_size(size: int) -> None:
    """Raise ``ValueError`` unless ``size`` (the side of a tile) is a positive integer.

    Examples
    --------
    >>> check_size(572)
    >>> check_size(2.5)
    Traceback (most recent call last):
    ...
    ValueError: size must be a positive integer, got 2.5
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")


def _check_shape(image_shape: tuple[int, ...]) -> tuple[int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"image_shape must be (H, W) with H, W >= 1, got {image_shape!r}")
    return shape  # type: ignore[return-value]


def _check_range(name: str, value: tuple[float, float]) -> None:
    if not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi):
        raise ValueError(f"{name} must satisfy 0 < low <= high, got {value!r}")


#: weight map interpolations (see AugmentConfig)
WEIGHT_INTERPOLATIONS = ("linear", "nearest")


def _check_weights(weights: str) -> None:
    if weights not in WEIGHT_INTERPOLATIONS:
        raise ValueError(f"weights must be one of {WEIGHT_INTERPOLATIONS}, got {weights!r}")


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")


# --------------------------------------------------------------------- the config
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
    zoom : (float, float)
        Range of the magnification (drawn log-uniformly): 1.25 shows the objects a
        quarter larger than in the image, 0.8 smaller, for cells whose size differs from
        the annotated ones'. ``(1, 1)`` (the default) draws nothing, so the other draws
        stay those of a run without it.
    enabled : bool
        ``False``: a plain random mirrored crop (integer placement, no rotation, flip,
        shift, deformation or gray-value change), e.g. for validation tiles.
    interpolation : {"bicubic", "spline"}
        Image interpolation, see :mod:`tileunet.augment.resample`.
    weights : {"linear", "nearest"}
        Weight map interpolation: ``"linear"`` (smooth maps), or ``"nearest"``, where
        each pixel takes the weight of the pixel its target comes from (a sparse
        annotation: a stroke's weight never spills onto unannotated neighbours).

    Examples
    --------
    >>> AugmentConfig(contrast=[0.9, 1.1]).contrast  # a JSON list becomes a tuple
    (0.9, 1.1)
    """

    elastic_sigma: float = 10.0
    elastic_points: int = 3
    rotate: bool = True
    flip: bool = True
    max_shift: float = 0.0
    contrast: tuple[float, float] = (0.8, 1.25)
    brightness: float = 0.1
    gamma: tuple[float, float] = (0.8, 1.25)
    zoom: tuple[float, float] = (1.0, 1.0)
    enabled: bool = True
    interpolation: str = "bicubic"
    weights: str = "linear"

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
        for name in ("contrast", "gamma", "zoom"):
            _check_range(name, getattr(self, name))
            # lists (e.g. from a JSON config) become tuples: hashable and comparable
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        _check_interpolation(self.interpolation)
        _check_weights(self.weights)


# --------------------------------------------------------------------- the params
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
        Gray-value change of the image (1, 0, 1: none); see :mod:`tileunet.augment.gray`.
    zoom : float
        Magnification: a tile pixel spans ``1 / zoom`` source pixels (1: none).
    interpolation : {"bicubic", "spline"}
        Image interpolation.
    weights : {"linear", "nearest"}
        Weight map interpolation (see :class:`AugmentConfig`).

    Examples
    --------
    >>> p = AugmentParams((40, 50), 16, (20, 25), angle=90.0)
    >>> p.center, p.elastic.shape, p.is_quarter_turn, p.is_integral
    ((20.0, 25.0), (2, 1, 1), True, True)
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
    zoom: float = 1.0
    interpolation: str = "bicubic"
    weights: str = "linear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_shape", _check_shape(self.image_shape))
        check_size(self.size)
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
        if not (math.isfinite(self.zoom) and self.zoom > 0):
            raise ValueError(f"zoom must be finite and > 0, got {self.zoom!r}")
        _check_interpolation(self.interpolation)
        _check_weights(self.weights)

    @property
    def is_quarter_turn(self) -> bool:
        """True when the angle is a multiple of 90 degrees (no rounding in the rotation)."""
        return float(self.angle) % 90.0 == 0.0

    @property
    def is_integral(self) -> bool:
        """True when every output pixel shows exactly one source pixel (no interpolation)."""
        return (
            self.is_quarter_turn
            and self.zoom == 1.0
            and not self.elastic.any()
            and all(float(c).is_integer() for c in self.center)
        )


# ------------------------------------------------------------------------ drawing
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
    check_size(size)
    if center is None:
        cy, cx = float(rng.integers(h)), float(rng.integers(w))
    else:
        cy, cx = (float(v) for v in center)
    if not config.enabled:
        return AugmentParams((h, w), int(size), (cy, cx), interpolation=config.interpolation,
                             weights=config.weights)
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
    zoom = _log_uniform(rng, config.zoom)  # drawn last: without it the draws are unchanged
    return AugmentParams(
        (h, w), int(size), (cy, cx), angle=angle, flip_y=flip_y, flip_x=flip_x,
        elastic=elastic, contrast=contrast, brightness=brightness, gamma=gamma, zoom=zoom,
        interpolation=config.interpolation, weights=config.weights,
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
    >>> p = identity_params((4, 5), 3, (1, 1))
    >>> p.center, p.angle, p.is_integral
    ((1.0, 1.0), 0.0, True)
    >>> from tileunet.augment.resample import apply
    >>> apply(p, np.arange(20.0).reshape(4, 5))[0]
    array([[ 0.,  1.,  2.],
           [ 5.,  6.,  7.],
           [10., 11., 12.]])
    """
    h, w = _check_shape(image_shape)
    if center is None:
        center = (h // 2, w // 2)
    return AugmentParams((h, w), size, center)
