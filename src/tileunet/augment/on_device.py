"""Resampling a training tile on a torch device: :func:`apply_on_device`, the
:func:`tileunet.augment.resample.apply` of an image held there (:class:`DeviceImage`).

The same coordinate map (:mod:`tileunet.augment.geometry`, computed in float64 on the
device from its two small factors), the same interpolation (bicubic image, bilinear
weights, nearest target, on the image mirrored by :data:`~tileunet.augment.resample.PAD`
pixels) and the same gray values (:func:`tileunet.augment.gray.adjust_gray_torch`) as on
the CPU, so the tiles agree with the NumPy path to float32 rounding. The tiles stay on
the device, and nothing waits for it (no device syncs), so a training step on a GPU need
not wait for tiles made by CPU workers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tileunet.augment.geometry import coordinate_factors, fold_tensor
from tileunet.augment.gray import adjust_gray_torch
from tileunet.augment.params import AugmentParams
from tileunet.augment.resample import PAD, padded

__all__ = ["DeviceImage", "apply_on_device"]


class DeviceImage:
    """A training image, its target and weight map held on a torch device for
    :func:`apply_on_device`: the image and the weights mirrored by
    :data:`~tileunet.augment.resample.PAD` pixels once (as
    :func:`~tileunet.augment.resample.apply` does per crop), the target as int64.

    Parameters
    ----------
    image : np.ndarray
        ``(C, H, W)`` float.
    target, weights : np.ndarray
        ``(H, W)``.
    device : torch.device or str

    Examples
    --------
    >>> src = DeviceImage(np.zeros((2, 30, 40)), np.zeros((30, 40)), np.ones((30, 40)), "cpu")
    >>> src.shape, tuple(src.image.shape), src.target.dtype
    ((30, 40), (1, 2, 34, 44), torch.int64)
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
        self.image = padded(image).to(device)  # (1, C, H + 2 PAD, W + 2 PAD)
        self.weights = padded(np.asarray(weights, np.float32)[None]).to(device)
        self.target = torch.as_tensor(np.asarray(target, dtype=np.int64)).to(device)


def apply_on_device(params: AugmentParams, src: DeviceImage
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`~tileunet.augment.resample.apply` for an image held on a torch device; the
    tiles stay there.

    The same coordinate map (in float64) and the same interpolation as
    :func:`~tileunet.augment.resample.apply`
    (bicubic image, bilinear weights, nearest target, then the gray-value change), so
    the tiles agree with the NumPy path to float32 rounding (~1e-5 of the value range).
    On a GPU this is many times faster than one CPU core makes tiles
    (``benchmarks/RESULTS.md``, "The data pipeline on its own").
    Only ``interpolation="bicubic"`` is implemented here.

    Returns
    -------
    image (C, size, size) float32, target (size, size) int64, weights (size, size) float32

    Examples
    --------
    >>> from tileunet.augment.params import make_params
    >>> src = DeviceImage(np.ones((1, 30, 40)), np.zeros((30, 40)), np.ones((30, 40)), "cpu")
    >>> x, y, w = apply_on_device(make_params(src.shape, 16, np.random.default_rng(0)), src)
    >>> tuple(x.shape), tuple(y.shape), tuple(w.shape), x.device.type
    ((1, 16, 16), (16, 16), (16, 16), 'cpu')
    """
    if params.interpolation != "bicubic":
        raise ValueError(f"apply_on_device supports interpolation='bicubic' only, got "
                         f"{params.interpolation!r}")
    if tuple(params.image_shape) != tuple(src.shape):
        raise ValueError(f"params were drawn for shape {params.image_shape}, the image "
                         f"is {tuple(src.shape)}")
    dev = src.image.device
    h, w = src.shape
    rows, cols = coordinate_factors(params)
    both = torch.from_numpy(np.concatenate([rows.ravel(), cols.ravel()])).to(dev)  # one copy
    rows_t, cols_t = both[: rows.size].view(rows.shape), both[rows.size :].view(cols.shape)
    coords = torch.einsum("cik,kj->cij", rows_t, cols_t)  # (2, size, size) float64
    y, x = fold_tensor(coords[0], h), fold_tensor(coords[1], w)
    target = src.target[(y + 0.5).long(), (x + 0.5).long()]  # nearest source pixel
    hp, wp = h + 2 * PAD, w + 2 * PAD
    grid = torch.stack([(x + PAD) * (2.0 / (wp - 1)) - 1.0,
                        (y + PAD) * (2.0 / (hp - 1)) - 1.0], dim=-1).float()[None]
    image = F.grid_sample(src.image, grid, mode="bicubic", padding_mode="border",
                          align_corners=True)[0]
    if params.weights == "nearest":  # the pixel the target comes from
        weights = src.weights[0, 0, (y + 0.5).long() + PAD, (x + 0.5).long() + PAD]
    else:
        weights = F.grid_sample(src.weights, grid, mode="bilinear", padding_mode="border",
                                align_corners=True)[0, 0]
    return adjust_gray_torch(image, params), target, weights

