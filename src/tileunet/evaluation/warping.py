"""The warping error of the ISBI 2012 challenge: the disagreements between a
prediction and the ground truth that no topology-preserving warp of the ground truth
removes. The warp flips only simple points, pixels whose flip changes no topology,
found by a lookup table of the topological numbers of their 3x3 neighbourhood.

Masks are membrane masks (True = membrane) in the conventions of
:mod:`tileunet.evaluation.isbi`: membrane 8-connected, cells 4-connected, and outside
the image counts as membrane.
"""

from __future__ import annotations

import numpy as np

from tileunet.evaluation.isbi import check_mask

__all__ = ["simple_points", "warping_error"]

# The 8 neighbours of a pixel, clockwise from the top-left; bit k of a
# neighbourhood code is neighbour k.
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _ring_components(members: list[tuple[int, int]], adjacency: int) -> list[set]:
    """Connected components of a set of ring offsets (4- or 8-adjacency)."""
    left = set(members)
    comps = []
    while left:
        stack = [left.pop()]
        comp = set(stack)
        while stack:
            y, x = stack.pop()
            for q in list(left):
                dy, dx = abs(q[0] - y), abs(q[1] - x)
                if (dy + dx == 1) if adjacency == 4 else max(dy, dx) == 1:
                    left.discard(q)
                    comp.add(q)
                    stack.append(q)
        comps.append(comp)
    return comps


def _build_simple_lut() -> np.ndarray:
    """Whether the centre of each of the 256 neighbourhoods is a simple point.

    Foreground 8-connected, background 4-connected. With ``N`` the 8 neighbours,
    the topological numbers are ``T8`` = the number of 8-components of the
    foreground in ``N``, and ``T4`` = the number of 4-components of the background
    in ``N`` that are 4-adjacent to the centre; the centre is simple (flipping it,
    either way, changes no topology) iff ``T8 == 1`` and ``T4 == 1``.
    """
    lut = np.zeros(256, bool)
    edge_neighbours = {(-1, 0), (0, 1), (1, 0), (0, -1)}
    for code in range(256):
        fg = [o for k, o in enumerate(_RING) if code >> k & 1]
        bg = [o for k, o in enumerate(_RING) if not code >> k & 1]
        t8 = len(_ring_components(fg, 8))
        t4 = sum(1 for c in _ring_components(bg, 4) if c & edge_neighbours)
        lut[code] = t8 == 1 and t4 == 1
    return lut


_SIMPLE_LUT = _build_simple_lut()


def _codes_at(padded: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Neighbourhood codes at (ys, xs), coordinates of the unpadded image."""
    code = np.zeros(ys.shape, np.uint8)
    for k, (dy, dx) in enumerate(_RING):
        code |= padded[ys + 1 + dy, xs + 1 + dx].astype(np.uint8) << k
    return code


def simple_points(mask: np.ndarray) -> np.ndarray:
    """Pixels whose flip changes no topology of a membrane mask.

    The foreground (True, membrane) is 8-connected and the background (cells)
    4-connected; outside the image counts as foreground, i.e. the image border is
    a membrane that closes the cells. A pixel is simple when flipping it neither
    creates nor deletes a component or a hole, nor splits or merges any: by the
    local test on its 3x3 neighbourhood with the topological numbers ``T8`` of the
    foreground and ``T4`` of the background, both of which must be 1.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` boolean mask.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool, True where the pixel is simple (whatever its value).

    References
    ----------
    .. [1] G. Bertrand, "Simple points, topological numbers and geodesic
       neighborhoods in cubic grids", Pattern Recognit. Lett. 15, 1003-1011 (1994).

    Examples
    --------
    >>> import numpy as np
    >>> line = np.zeros((3, 3), bool); line[:, 1] = True   # cuts the cells in two
    >>> bool(simple_points(line)[1, 1])
    False
    >>> end = np.zeros((3, 3), bool); end[:2, 1] = True    # end of a membrane
    >>> bool(simple_points(end)[1, 1])
    True
    """
    m = check_mask(mask, "mask")
    padded = np.pad(m, 1, constant_values=True)
    ys, xs = np.indices(m.shape)
    return _SIMPLE_LUT[_codes_at(padded, ys, xs)]


def warping_error(
    pred_binary: np.ndarray, gt_binary: np.ndarray, *, max_iter: int | None = None
) -> float:
    """Warping error: the disagreements that no topology-preserving warp removes.

    The ground-truth membrane is warped towards the prediction by flipping only
    simple points (see :func:`simple_points`; membrane 8-connected, cells
    4-connected, image border = membrane), and only pixels where the two disagree,
    so that every flip lowers the disagreement by one. The pixels are visited in
    four interleaved sub-grids (row and column parity): two pixels of one sub-grid
    are never neighbours, so all simple disagreeing pixels of a sub-grid flip at
    once, exactly as if one after the other. Sweeps over the four sub-grids repeat
    until one flips nothing (or ``max_iter`` sweeps). The pixels that still
    disagree are non-simple -- each belongs to a split, a merger, an added or
    deleted object, or a hole -- and their count over the number of pixels is the
    warping error. A boundary that is only displaced scores 0.

    The greedy order is one valid choice; a different order can leave a different
    (equally topological) set of pixels.

    Parameters
    ----------
    pred_binary, gt_binary : numpy.ndarray
        ``(H, W)`` boolean membrane masks (True = membrane), e.g. ``prob > 0.5``
        and ``gt == 0`` for ISBI 2012 labels.
    max_iter : int, optional
        Most sweeps; None runs to convergence (at most one sweep per initially
        disagreeing pixel, since every sweep but the last flips at least one).

    Returns
    -------
    float
        In ``[0, 1]``; 0 when the prediction matches the ground truth up to a
        topology-preserving warp.

    References
    ----------
    .. [1] V. Jain et al., "Boundary learning by optimization with topological
       constraints", CVPR 2010, 2488-2495.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.zeros((6, 6), bool); gt[:, 2] = True
    >>> shifted = np.zeros((6, 6), bool); shifted[:, 3] = True
    >>> warping_error(shifted, gt)
    0.0
    >>> gap = gt.copy(); gap[3, 2] = False          # merges the two cells
    >>> warping_error(gap, gt) == 1 / 36
    True
    """
    pred = check_mask(pred_binary, "pred_binary")
    gt = check_mask(gt_binary, "gt_binary", pred.shape)
    if max_iter is not None and (int(max_iter) != max_iter or max_iter < 0):
        raise ValueError(f"max_iter must be a non-negative integer or None, "
                         f"got {max_iter!r}")
    if pred.size == 0:
        return 0.0
    warped = np.pad(gt, 1, constant_values=True)  # the border frame stays membrane
    inner = warped[1:-1, 1:-1]  # view: writes go into `warped`
    sweeps = 0
    while max_iter is None or sweeps < max_iter:
        flipped = 0
        for oy in (0, 1):
            for ox in (0, 1):
                diff = inner[oy::2, ox::2] != pred[oy::2, ox::2]
                sy, sx = np.nonzero(diff)
                if sy.size == 0:
                    continue
                ys, xs = 2 * sy + oy, 2 * sx + ox
                simple = _SIMPLE_LUT[_codes_at(warped, ys, xs)]
                ys, xs = ys[simple], xs[simple]
                inner[ys, xs] = ~inner[ys, xs]
                flipped += ys.size
        sweeps += 1
        if flipped == 0:
            break
    return float(np.count_nonzero(inner != pred)) / pred.size
