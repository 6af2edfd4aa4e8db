"""Gray-value changes of a training tile: gamma, contrast and brightness.

The paper augments with "gray value variations" besides the geometry [1]_. Here a tile's
gray values change in three steps, with one set of factors for all channels (the tile's
min, max and mean are taken over all channels too):

1. gamma: the tile rescaled to [0, 1] by its own min and max, raised to ``gamma`` and
   mapped back (so the range stays, whatever the image's scale);
2. contrast: multiplied by ``contrast`` about the tile mean (so the mean stays);
3. brightness: ``brightness`` times the tile's value range (max - min) added.

:func:`adjust_gray` does this to a NumPy tile (:func:`tileunet.augment.resample.apply`),
:func:`adjust_gray_torch` the same to a tensor on a device
(:func:`tileunet.augment.on_device.apply_on_device`); the two are side by side so that
they stay the same computation. Target and weight map are never touched.

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
   Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597, Sec. 3.1.
"""

from __future__ import annotations

import numpy as np
import torch

from tileunet.augment.params import AugmentParams

__all__ = ["adjust_gray", "adjust_gray_torch"]


def _unchanged(params: AugmentParams) -> bool:
    return params.gamma == 1.0 and params.contrast == 1.0 and params.brightness == 0.0


def adjust_gray(tile: np.ndarray, params: AugmentParams) -> None:
    """In place: gamma (on the tile rescaled to [0, 1]), contrast about the mean, offset.

    Parameters
    ----------
    tile : np.ndarray
        ``(C, size, size)`` floating point; overwritten.
    params : AugmentParams
        Its ``gamma``, ``contrast`` and ``brightness`` are used.

    Examples
    --------
    >>> tile = np.array([[[0.0, 1.0], [2.0, 4.0]]])
    >>> adjust_gray(tile, AugmentParams((2, 2), 2, (1, 1), contrast=2.0, brightness=0.25))
    >>> tile  # mean 1.75 kept, spread doubled, then + 0.25 * range 4
    array([[[-0.75,  1.25],
            [ 3.25,  7.25]]])
    """
    if _unchanged(params):
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


def adjust_gray_torch(tile: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """:func:`adjust_gray` on a tensor, without device syncs; returns the changed tile.

    Examples
    --------
    >>> tile = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])
    >>> adjust_gray_torch(tile, AugmentParams((2, 2), 2, (1, 1), contrast=2.0,
    ...                                       brightness=0.25))
    tensor([[[-0.7500,  1.2500],
             [ 3.2500,  7.2500]]])
    """
    if _unchanged(params):
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
