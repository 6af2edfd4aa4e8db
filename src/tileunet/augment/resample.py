"""Resampling a training tile on the CPU: image, target and weight map at the coordinate
map of :mod:`tileunet.augment.geometry`, then the gray values (:mod:`tileunet.augment.gray`).

Each array is resampled once, at the same (folded) source positions:

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
  OpenCV and most image editors) [1]_, 4 x 4 taps, interpolating, no prefilter.
  Evaluated by ``torch.nn.functional.grid_sample`` on the bounding box of the needed
  source pixels, mirrored by :data:`PAD` pixels (:func:`padded`).
* ``"spline"``: cubic B-spline interpolation, the same numbers as
  ``scipy.ndimage.map_coordinates(order=3, mode="mirror")`` on the whole image (to
  float32 rounding, ~1e-4 of the value range) but several times cheaper: the spline
  prefilter runs only on the bounding box plus :data:`SPLINE_MARGIN` pixels, and the
  spline is evaluated as four bilinear ``grid_sample`` taps per pixel [2]_.

Both are computed in float32. Tiles that need no interpolation (identity, quarter turns
and flips at an integer centre, no elastic deformation) are exact copies of source pixels.

References
----------
.. [1] R. Keys, "Cubic convolution interpolation for digital image processing",
   IEEE Trans. ASSP 29(6), 1981.
.. [2] C. Sigg, M. Hadwiger, "Fast third-order texture filtering", GPU Gems 2, ch. 20,
   2005.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from tileunet.augment.geometry import fold_into, source_coordinates
from tileunet.augment.gray import adjust_gray
from tileunet.augment.params import AugmentConfig, AugmentParams, make_params

__all__ = [
    "PAD",
    "SPLINE_MARGIN",
    "apply",
    "augment_tile",
    "padded",
]

#: Extra source pixels around the needed bounding box on which the cubic B-spline
#: prefilter runs (``interpolation="spline"``). The prefilter's influence decays as
#: 0.268**k with distance k, so 12 pixels hide the crop's artificial border (< 2e-7).
SPLINE_MARGIN = 12

#: Mirrored pixels around every crop, so that all taps of a cubic kernel
#: (floor(x) - 1 ... floor(x) + 2) lie inside the array, also at the image border.
PAD = 2


# ------------------------------------------------------------------- resampling
def _crop_box(coords: np.ndarray, shape: tuple[int, int], margin: int) -> tuple[int, ...]:
    """Source rows r0:r1 and columns c0:c1 covering (folded) ``coords`` plus ``margin``."""
    (h, w) = shape
    r0 = max(int(math.floor(coords[0].min())) - margin, 0)
    r1 = min(int(math.ceil(coords[0].max())) + margin + 1, h)
    c0 = max(int(math.floor(coords[1].min())) - margin, 0)
    c1 = min(int(math.ceil(coords[1].max())) + margin + 1, w)
    return r0, r1, c0, c1


def padded(crop: np.ndarray) -> torch.Tensor:
    """(C, h, w) -> (1, C, h + 2 PAD, w + 2 PAD) float32, mirrored like scipy's "mirror" mode.

    Mirrored without edge duplication (``np.pad(mode="reflect")``), as :func:`apply`
    folds coordinates; the batch axis is what ``grid_sample`` wants.

    Examples
    --------
    >>> padded(np.array([[[1.0, 2.0, 3.0]]]))[0, 0, PAD]
    tensor([3., 2., 1., 2., 3., 2., 1.])
    """
    crop = np.asarray(crop, dtype=np.float32)
    out = np.pad(crop, ((0, 0), (PAD, PAD), (PAD, PAD)), mode="reflect")
    return torch.from_numpy(out)[None]


def _grid(y: np.ndarray, x: np.ndarray, origin: tuple[int, int],
          shape: tuple[int, int]) -> torch.Tensor:
    """Source positions -> ``grid_sample`` grid (1, ..., 2) of (x, y) in [-1, 1].

    ``origin`` is the source pixel at index ``PAD`` of the padded crop of ``shape``
    (``align_corners=True``: -1 and 1 are the centres of the first and last pixels).
    """
    grid = np.empty(y.shape + (2,), dtype=np.float32)
    for k, (pos, o, n) in enumerate(((x, origin[1], shape[1]), (y, origin[0], shape[0]))):
        scale = 2.0 / (n - 1)
        np.multiply(pos, scale, out=grid[..., k], casting="same_kind")
        grid[..., k] += (PAD - o) * scale - 1.0
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
    """Cubic B-spline coefficients (mirror boundary) of each channel, padded by ``PAD``."""
    coef = ndi.spline_filter1d(np.asarray(crop, dtype=np.float64), 3, axis=-1, mode="mirror")
    coef = ndi.spline_filter1d(coef, 3, axis=-2, mode="mirror", output=np.float32)
    return padded(coef)


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
        fold_into(pos, n)
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
    nearest = params.weights == "nearest" and weights is not None
    if target is not None or nearest:
        # nearest source pixel; folded coordinates are >= 0, so + 0.5 and truncate rounds
        flat = (coords[0] + 0.5).astype(np.intp)
        flat *= w
        flat += (coords[1] + 0.5).astype(np.intp)
        out_target = None if target is None else target.reshape(-1)[flat]

    spline = params.interpolation == "spline"
    r0, r1, c0, c1 = _crop_box(coords, (h, w), SPLINE_MARGIN if spline else PAD)
    shape = (r1 - r0 + 2 * PAD, c1 - c0 + 2 * PAD)  # of the padded crops
    grid = None
    if (weights is not None and not nearest) or not spline:
        grid = _grid(coords[0], coords[1], (r0, c0), shape)
    if spline:
        coef = _spline_coefficients(img3[:, r0:r1, c0:c1])
        out_image = _spline_sample(coef, coords, (r0, c0))
    else:
        out_image = _sample(padded(img3[:, r0:r1, c0:c1]), grid, "bicubic")
    out_weights = None
    if nearest:
        out_weights = weights.reshape(-1)[flat].astype(np.float32)
    elif weights is not None:
        out_weights = _sample(padded(weights[None, r0:r1, c0:c1]), grid, "bilinear")[0]
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
        From :func:`~tileunet.augment.params.make_params` or
        :func:`~tileunet.augment.params.identity_params`.
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
        others their dtype; ``None`` stays ``None``. Gray-value changes
        (:func:`tileunet.augment.gray.adjust_gray`) touch the image only.

    Examples
    --------
    >>> from tileunet.augment.params import identity_params
    >>> image = np.arange(20.0).reshape(4, 5)
    >>> tile, labels, _ = apply(identity_params((4, 5), 3, (0, 4)), image, image > 9)
    >>> tile  # mirrored at the top and right borders
    array([[8., 9., 8.],
           [3., 4., 3.],
           [8., 9., 8.]])
    >>> labels.dtype
    dtype('bool')
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

    adjust_gray(out_image, params)
    if image.ndim == 2:
        out_image = out_image[0]
    return out_image, out_target, out_weights


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
