"""A working resolution below the image's: train and predict on resampled images.

Objects many pixels across (HeLa cells are 40-80 px wide) do not need every pixel to be
found: at half scale a training step covers four times the area, and the network's
context doubles when counted in image pixels. A model trained at ``scale`` stores it
(``extra["scale"]``); :func:`predict_at_scale` then resamples each new image to that
scale, runs the overlap-tile prediction there, and brings the probabilities back to the
image's own size, so outputs always match the input pixel for pixel.

Images are resampled with anti-aliasing (linear interpolation after a Gaussian of the
scale's width), instance labels by nearest neighbour (so ids stay ids; the weight map is
then computed at the working scale, where its sigma is counted), and probabilities by
bilinear interpolation, which keeps them in [0, 1] and summing to 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from skimage.transform import resize

from tileunet.inference.overlap import predict
from tileunet.model import UNet


def check_scale(scale: float) -> float:
    """``scale`` as a float in (0, 1], or a ValueError."""
    s = float(scale)
    if not (math.isfinite(s) and 0.0 < s <= 1.0):
        raise ValueError(f"scale must be in (0, 1] (1 = the images' resolution), got {scale!r}")
    return s


def working_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """The (H, W) of an image of ``shape`` at ``scale`` (at least 1 x 1)."""
    return tuple(max(1, round(n * scale)) for n in shape)  # type: ignore[return-value]


def image_to_scale(image: np.ndarray, scale: float) -> np.ndarray:
    """A ``(C, H, W)`` image at ``scale``, float32, anti-aliased."""
    if scale == 1.0:
        return image
    h, w = working_shape(image.shape[1:], scale)
    out = resize(image.astype(np.float32, copy=False), (image.shape[0], h, w), order=1,
                 anti_aliasing=True, preserve_range=True)
    return out.astype(np.float32, copy=False)


def labels_to_scale(labels: np.ndarray, scale: float) -> np.ndarray:
    """An ``(H, W)`` label (or mask) image at ``scale``, by nearest neighbour."""
    if scale == 1.0:
        return labels
    shape = working_shape(labels.shape, scale)
    return resize(labels, shape, order=0, anti_aliasing=False,
                  preserve_range=True).astype(labels.dtype, copy=False)


def probabilities_to_shape(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(K, h, w)`` probabilities resized to ``(K, *shape)`` bilinearly (float32)."""
    if probs.shape[1:] == tuple(shape):
        return probs
    out = resize(probs, (probs.shape[0], *shape), order=1, anti_aliasing=False,
                 preserve_range=True)
    return out.astype(np.float32, copy=False)


def predict_at_scale(net: UNet, image: np.ndarray, scale: float = 1.0, *,
                     out: Any = None, **kwargs: Any) -> np.ndarray:
    """:func:`tileunet.inference.overlap.predict` at a working ``scale``, returned at the image's
    size: ``(K, H, W)`` float32 (or written into ``out``). ``kwargs`` go to ``predict``
    (``tile``, ``tta``, ``channels``, ...); ``context`` needs ``scale=1``."""
    scale = check_scale(scale)
    if scale == 1.0:
        return predict(net, image, out=out, **kwargs)
    if kwargs.get("context"):
        raise ValueError("context=True needs scale 1 (block-wise prediction of a model "
                         "trained at another scale is not supported)")
    x = np.asarray(image)
    x3 = x[None] if x.ndim == 2 else x
    if x3.ndim != 3:  # predict says what is expected
        return predict(net, image, out=out, **kwargs)
    small = predict(net, image_to_scale(x3, scale), **kwargs)
    full = probabilities_to_shape(small, x3.shape[1:])
    if out is None:
        return full
    out[...] = full
    return out


__all__ = ["check_scale", "image_to_scale", "labels_to_scale", "predict_at_scale",
           "probabilities_to_shape", "working_shape"]
