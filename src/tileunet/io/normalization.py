"""Intensity normalisation: the gray values the network sees of an image.

:class:`Normalization` maps each channel of an image to roughly ``[0, 1]``, with the
image's own percentiles or min-max range (or only casts to float32); a model stores it
(``config.json``) so that prediction normalises as training did. :func:`rescale` is its
arithmetic, which images larger than memory share (:mod:`tileunet.inference.blockwise`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["NORMALIZATION_METHODS", "Normalization", "rescale"]

NORMALIZATION_METHODS = ("percentile", "minmax", "none")


@dataclass(frozen=True)
class Normalization:
    """Per-image intensity normalisation to roughly ``[0, 1]``, as float32.

    Parameters
    ----------
    method : {"percentile", "minmax", "none"}
        ``"percentile"``: ``(x - p_low) / (p_high - p_low)`` with the ``low`` and
        ``high`` percentiles of this image (robust to hot pixels; values beyond the
        percentiles fall slightly outside ``[0, 1]`` and are *not* clipped).
        ``"minmax"``: ``(x - min) / (max - min)``. ``"none"``: only cast to float32.
    low, high : float
        Percentiles for ``"percentile"`` (``0 <= low < high <= 100``).

    Notes
    -----
    The range always comes from the data, never from the dtype: 8-bit data stored
    in 16 bits (values 0..235) is stretched like any other. Multi-channel images
    ``(C, H, W)`` are normalised per channel. A channel whose percentile range is
    zero falls back to its min-max range; a constant channel becomes all zeros.

    Examples
    --------
    >>> import numpy as np
    >>> Normalization("minmax")(np.array([[100, 300]], dtype=np.uint16))
    array([[0., 1.]], dtype=float32)
    """

    method: str = "percentile"
    low: float = 1.0
    high: float = 99.8

    def __post_init__(self) -> None:
        if self.method not in NORMALIZATION_METHODS:
            raise ValueError(f"method must be one of {NORMALIZATION_METHODS}, "
                             f"got {self.method!r}")
        if not 0.0 <= float(self.low) < float(self.high) <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, "
                             f"got low={self.low!r}, high={self.high!r}")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Normalise ``(H, W)`` or ``(C, H, W)``; returns float32 of the same shape."""
        image = np.asarray(image)
        if image.ndim not in (2, 3):
            raise ValueError(f"expected an image (H, W) or (C, H, W), got shape {image.shape}")
        if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
            raise ValueError(f"expected a numeric image, got dtype {image.dtype}")
        x = image.astype(np.float32, copy=True)
        if self.method == "none":
            return x
        channels = x if x.ndim == 3 else x[None]
        ranges = []
        for c in channels:
            lo, hi = float(c.min()), float(c.max())
            if self.method == "percentile" and hi > lo:
                p_lo, p_hi = np.percentile(c, [self.low, self.high])
                if p_hi > p_lo:
                    lo, hi = float(p_lo), float(p_hi)
            ranges.append((lo, hi))
        rescale(channels, ranges)
        return x

    def to_dict(self) -> dict:
        """Plain dict for ``config.json``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(d) - {"method", "low", "high"}
        if unknown:
            raise ValueError(f"unknown normalization keys {sorted(unknown)}, "
                             f"expected method, low, high")
        return cls(**d)


def rescale(channels: np.ndarray, ranges: list[tuple[float, float]]) -> None:
    """In place: channel ``c`` of float32 ``(C, H, W)`` to ``(c - lo) / (hi - lo)``, or to
    zeros where ``hi <= lo``; the arithmetic of :class:`Normalization`, shared with the
    block-wise path (:mod:`tileunet.inference.blockwise`), which finds the ranges on a whole image
    larger than memory.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[[2.0, 4.0]], [[5.0, 5.0]]], dtype=np.float32)
    >>> rescale(x, [(2.0, 4.0), (5.0, 5.0)])
    >>> x.tolist()
    [[[0.0, 1.0]], [[0.0, 0.0]]]
    """
    for c, (lo, hi) in zip(channels, ranges, strict=True):
        if hi > lo:
            c -= lo
            c /= hi - lo
        else:
            c[...] = 0.0
