"""Prediction of part of an image: the tiles that cover a box, as the whole image's
prediction has them there.

A viewer shows part of an image; predicting only that part, again and again while a
network trains, is what makes a live view cheap. :func:`predict_region` cuts the box's
input with its context (``net.margin`` pixels, mirrored only where the image ends) and
predicts it as one block (:func:`~tileunet.inference.overlap.predict` with
``context=True``). The box is first moved out to a multiple of ``net.size_step``
(:func:`aligned_box`): valid convolutions then give the same numbers as the prediction
of the whole image, whatever the tiles.

>>> from tileunet.model import UNet
>>> net = UNet(depth=3, width=4, dropout=0.0)
>>> image = np.random.default_rng(0).random((60, 70), dtype=np.float32)
>>> probs, box = predict_region(net, image, (10, 30, 15, 50), progress=False)
>>> box, probs.shape   # the grid of this network: multiples of 4 pixels
((8, 32, 12, 52), (2, 24, 40))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tileunet.inference.overlap import predict
from tileunet.inference.tiling import reflect_indices
from tileunet.model import UNet

Box = tuple[int, int, int, int]  # y0, y1, x0, x1: rows y0..y1-1, columns x0..x1-1


def aligned_box(box: Box, shape: tuple[int, int], step: int) -> Box:
    """``box`` clipped to an image of ``shape`` and moved out to multiples of ``step``
    (the ends stop at the image's edge)."""
    y0, y1, x0, x1 = (int(v) for v in box)
    h, w = shape
    y0, x0 = max(0, min(y0, h - 1)), max(0, min(x0, w - 1))
    y1, x1 = min(h, max(y1, y0 + 1)), min(w, max(x1, x0 + 1))
    y0, x0 = y0 - y0 % step, x0 - x0 % step
    y1 = min(h, -(-y1 // step) * step)
    x1 = min(w, -(-x1 // step) * step)
    return y0, y1, x0, x1


def predict_region(net: UNet, image: np.ndarray, box: Box, **kwargs: Any
                   ) -> tuple[np.ndarray, Box]:
    """Class probabilities of the part ``box`` of ``image`` (moved out to the tile grid).

    Parameters
    ----------
    net : UNet
        A network with valid padding.
    image : np.ndarray
        ``(H, W)`` or ``(C, H, W)``, the whole image.
    box : (y0, y1, x0, x1)
        The part wanted; any box inside (or partly outside) the image.
    **kwargs
        For :func:`~tileunet.inference.overlap.predict` (``precision``, ``tile``,
        ``channels``, ``progress``, ...; not ``tta``).

    Returns
    -------
    probs : np.ndarray
        ``(K, y1 - y0, x1 - x0)`` float32, equal to that part of the whole image's
        prediction.
    box : (y0, y1, x0, x1)
        The part predicted: ``box`` moved out to multiples of ``net.size_step``.
    """
    if net.config.padding != "valid":
        raise ValueError("predict_region needs a network with valid padding")
    if kwargs.get("tta"):
        raise ValueError("predict_region does not average flips (tta)")
    x = np.asarray(image)
    x = x[None] if x.ndim == 2 else x
    if x.ndim != 3:
        raise ValueError(f"image must be (H, W) or (C, H, W), got shape {x.shape}")
    step, m = net.size_step, net.margin
    y0, y1, x0, x1 = aligned_box(box, x.shape[1:], step)
    # where the box ends at the image's edge off the grid, the tiles of the whole
    # image's prediction go on into its mirror image: so do the block's
    y_end, x_end = -(-y1 // step) * step, -(-x1 // step) * step
    rows = reflect_indices(x.shape[1], m, m + y_end - y1)[y0:y_end + 2 * m]
    cols = reflect_indices(x.shape[2], m, m + x_end - x1)[x0:x_end + 2 * m]
    probs = predict(net, x[:, rows][:, :, cols], context=True, **kwargs)
    return probs[:, :y1 - y0, :x1 - x0], (y0, y1, x0, x1)


__all__ = ["Box", "aligned_box", "predict_region"]
