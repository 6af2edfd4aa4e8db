"""Where the network is unsure: the places a person should annotate next.

The uncertainty of a pixel is the binary entropy of its foreground probability, in
bits: 0 where the network is sure (p near 0 or 1), 1 where it cannot tell (p = 0.5).
With test-time augmentation (the mean over the eight flips and rotations) it also
counts where the transformed predictions disagree, since their mean then sits near
0.5. :func:`rank_tiles` turns the map into a short list of squares to look at.

>>> import numpy as np
>>> entropy(np.array([0.0, 0.5, 1.0])).round(3).tolist()
[0.0, 1.0, 0.0]
>>> u = np.zeros((64, 64), np.float32)
>>> u[40:50, 10:20] = 1.0
>>> [box for _, box in rank_tiles(u, tile=16, count=2)]
[(32, 48, 0, 16), (32, 48, 16, 32)]
"""

from __future__ import annotations

import numpy as np

from tileunet.inference.region import Box


def entropy(probability: np.ndarray) -> np.ndarray:
    """Binary entropy in bits of a foreground probability (any shape), float32."""
    p = np.clip(np.asarray(probability, np.float64), 1e-7, 1 - 1e-7)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).astype(np.float32)


def rank_tiles(uncertainty: np.ndarray, *, tile: int = 128, count: int = 5,
               offset: tuple[int, int] = (0, 0)) -> list[tuple[float, Box]]:
    """The ``count`` squares of side ``tile`` (on a grid) with the highest mean
    uncertainty, best first, as (mean, (y0, y1, x0, x1)); ``offset`` is added to the
    boxes (for a map of part of an image). Squares at the edge may be smaller."""
    u = np.asarray(uncertainty, np.float32)
    if u.ndim != 2:
        raise ValueError(f"uncertainty must be 2-D, got shape {u.shape}")
    if tile < 1 or count < 1:
        raise ValueError(f"tile and count must be >= 1, got {tile} and {count}")
    h, w = u.shape
    oy, ox = offset
    scored = []
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            part = u[y:y + tile, x:x + tile]
            box = (oy + y, oy + min(h, y + tile), ox + x, ox + min(w, x + tile))
            scored.append((float(part.mean()), box))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return scored[:count]


__all__ = ["entropy", "rank_tiles"]
