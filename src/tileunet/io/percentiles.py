"""Exact per-channel percentiles of an image too large for memory.

:class:`tileunet.io.normalization.Normalization` finds its ranges with ``np.percentile`` on the
whole image in memory. Block-wise, the same numbers are found exactly in two passes
over the blocks: a histogram of the top 16 bits of each float32 value (as a key that
sorts like the value), then, within the few 16-bit prefixes that hold the wanted ranks,
a histogram of the low 16 bits. The order statistics so found go through NumPy's
``"linear"`` interpolation step by step (:func:`linear_percentiles`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tileunet.errors import DataError
from tileunet.io.normalization import Normalization


def _float_keys(x: np.ndarray) -> np.ndarray:
    """float32 values as uint32 keys that sort like the values (finite values only)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    neg = (bits >> 31).astype(bool)
    return np.where(neg, ~bits, bits | np.uint32(0x80000000))


def _keys_to_float(keys: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.uint32)
    neg = (keys >> 31) == 0
    return np.where(neg, ~keys, keys & np.uint32(0x7FFFFFFF)).view(np.float32)


def linear_percentiles(n: int, q: Sequence[float], kth: Callable[[np.ndarray], np.ndarray]
                       ) -> np.ndarray:
    """``np.percentile(x, q)`` of ``n`` values from a function that returns order statistics.

    ``kth(ranks)`` must return the ``ranks``-th smallest values (0-based, float32).
    The arithmetic is NumPy's default ``"linear"`` method step by step, so the result is
    the same float64 number ``np.percentile`` gives (tested against it).
    """
    quantiles = np.true_divide(np.asarray(q, dtype=np.float64), 100)
    virtual = (n - 1) * quantiles
    prev = np.floor(virtual)
    nxt = prev + 1
    prev_i, next_i = prev.astype(np.intp), nxt.astype(np.intp)
    above = virtual >= n - 1
    prev_i[above] = n - 1
    next_i[above] = n - 1
    below = virtual < 0
    prev_i[below] = 0
    next_i[below] = 0
    next_i = np.minimum(next_i, n - 1)
    gamma = np.asarray(virtual - prev, dtype=virtual.dtype)
    a, b = kth(prev_i), kth(next_i)
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe")
    return out


def channel_ranges(image: Any, norm: Normalization, run: Callable) -> list[tuple[float, float]]:
    """Per-channel ``(lo, hi)`` exactly as :class:`Normalization` finds them in memory."""
    c = image.shape[0]
    if norm.method == "none":
        return [(0.0, 1.0)] * c
    want_pct = norm.method == "percentile"

    def first(block: np.ndarray, _loc: tuple) -> list:
        x = block.astype(np.float32, copy=False)
        out = []
        for ch in x:
            bad = ch.size - int(np.count_nonzero(np.isfinite(ch)))
            hist = (np.bincount((_float_keys(ch) >> 16).ravel(), minlength=1 << 16)
                    if want_pct and not bad else None)
            out.append((float(ch.min()), float(ch.max()), bad, hist))
        return out

    parts = run(image, first, "image statistics")
    stats, ranges = [], []
    for ch in range(c):
        lo = min(p[ch][0] for p in parts)
        hi = max(p[ch][1] for p in parts)
        bad = sum(p[ch][2] for p in parts)
        if bad:
            raise DataError(f"{bad} pixels of channel {ch} are NaN or infinite; fill or "
                            "crop them before using the image")
        stats.append(sum(p[ch][3] for p in parts) if want_pct else None)
        ranges.append((lo, hi))
    if not want_pct:
        return ranges
    n = int(np.prod(image.shape[1:]))
    quantiles = np.true_divide(np.asarray([norm.low, norm.high], dtype=np.float64), 100)
    virtual = (n - 1) * quantiles
    ranks = np.unique(np.clip(np.concatenate([np.floor(virtual), np.floor(virtual) + 1]),
                              0, n - 1).astype(np.int64))
    # the top 16 bits of each wanted rank's key, from the first histogram
    prefixes = []
    for hist in stats:
        cum = np.cumsum(hist)
        prefixes.append({int(r): int(np.searchsorted(cum, r, side="right")) for r in ranks})
    wanted = [sorted(set(p.values())) for p in prefixes]

    def second(block: np.ndarray, _loc: tuple) -> list:
        x = block.astype(np.float32, copy=False)
        out = []
        for ch, pre in zip(x, wanted, strict=True):
            keys = _float_keys(ch).ravel()
            top = keys >> 16
            out.append({p: np.bincount((keys[top == p] & 0xFFFF), minlength=1 << 16)
                        for p in pre})
        return out

    parts2 = run(image, second, "image percentiles")
    result = []
    for ch, (lo, hi) in enumerate(ranges):
        if not hi > lo:
            result.append((lo, hi))
            continue
        cum_top = np.concatenate([[0], np.cumsum(stats[ch])])
        low16 = {p: sum(part[ch][p] for part in parts2) for p in wanted[ch]}

        def kth(r: np.ndarray, ch: int = ch, cum_top=cum_top, low16=low16) -> np.ndarray:
            vals = []
            for rank in np.atleast_1d(r):
                p = prefixes[ch][int(rank)]
                within = int(rank) - int(cum_top[p])
                j = int(np.searchsorted(np.cumsum(low16[p]), within, side="right"))
                vals.append((p << 16) | j)
            return _keys_to_float(np.array(vals, dtype=np.uint32))

        p_lo, p_hi = linear_percentiles(n, [norm.low, norm.high], kth)
        if p_hi > p_lo:
            lo, hi = float(p_lo), float(p_hi)
        result.append((lo, hi))
    return result



__all__ = ["channel_ranges", "linear_percentiles"]
