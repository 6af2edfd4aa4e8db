"""The paper's loss: pixel-wise softmax and cross-entropy weighted by w(x) (eq. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tileunet.model import center_crop


def crop_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Centre-crop the last two dimensions of ``x`` to those of ``like``.

    With valid convolutions the network's output is smaller than its input tile by
    ``2 * margin``; labels and weights of the tile are cropped to the output with this
    one helper everywhere (training, validation, tests).
    """
    return center_crop(x, tuple(like.shape[-2:]))


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over pixels of ``w(x) * -log softmax(logits)[target(x)]``.

    Parameters
    ----------
    logits : Tensor (N, K, h, w)
        Network output.
    target : Tensor (N, H, W), integer
        Class of each pixel; when larger than the logits (valid convolutions) it is
        centre-cropped to them.
    weight : Tensor (N, H, W), optional
        The weight map w(x) (cropped like ``target``); ``None`` means w = 1, which
        equals ``F.cross_entropy``. Pixels of weight 0 do not contribute.

    Returns
    -------
    Tensor
        Scalar loss, computed in float32 whatever the dtype of ``logits``.

    Examples
    --------
    >>> logits = torch.zeros(1, 2, 4, 4)
    >>> target = torch.zeros(1, 6, 6, dtype=torch.long)
    >>> round(weighted_cross_entropy(logits, target).item(), 4)  # log 2
    0.6931
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (N, K, H, W), got shape {tuple(logits.shape)}")
    if target.ndim != 3 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target must be (N, H, W) with N={logits.shape[0]}, got {tuple(target.shape)}"
        )
    target = crop_to(target, logits).long()
    nll = F.cross_entropy(logits.float(), target, reduction="none")  # (N, h, w)
    if weight is None:
        return nll.mean()
    if weight.shape != target.shape and weight.ndim == 3:
        weight = crop_to(weight, logits)
    if weight.shape != nll.shape:
        raise ValueError(f"weight must have shape {tuple(nll.shape)} after cropping, "
                         f"got {tuple(weight.shape)}")
    return (weight.to(nll.dtype) * nll).mean()
