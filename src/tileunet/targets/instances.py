"""Instance masks and the separation borders between touching cells (paper Fig. 3).

Touching cells are pulled apart by a thin *separation border* that is labelled
background, so the network has to learn the gaps between cells (and the weight map of
:mod:`tileunet.targets.weightmap` puts its large weights on exactly those gaps)::

    mask ──to_instances──▶ instance labels ──separate_touching──▶ separated cells
         ──training_target──▶ {0, 1} target

Separation border rule
    A pixel of cell ``a`` is a border pixel when one of its 8 neighbours belongs to a
    different cell ``b`` that *ranks lower* than ``a``, where cells are ranked by
    (area, id): of two touching cells, the larger one gives up a one-pixel line along
    the contact. Afterwards no two 8-adjacent pixels carry different cell ids, so the
    cells are disconnected under both 4- and 8-connectivity, and the smaller of two
    touching cells keeps every pixel (a thin cell pressed against a large one survives
    whole). Should the rule delete a cell entirely (a cell at most one pixel thick
    whose every pixel touches a smaller cell), that cell is moved to the front of the
    ranking and its neighbours yield instead. Cells that touch no other cell are never
    changed.

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
   Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597, Fig. 3.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "equivalent_diameters",
    "separate_touching",
    "separated_cells",
    "separation_border",
    "to_instances",
    "training_target",
]

logger = logging.getLogger(__name__)

_INT32_MAX = int(np.iinfo(np.int32).max)
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
# Offsets that visit every unordered pair of 8-neighbours exactly once.
_HALF_NEIGHBOURHOOD = ((0, 1), (1, 0), (1, 1), (1, -1))


# ----------------------------------------------------------------------------- masks
def equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    """The diameter of the disc of each object's area, in pixels (objects by id).

    >>> equivalent_diameters(np.array([[1, 1], [1, 1]])).round(2).tolist()
    [2.26]
    """
    areas = np.bincount(np.asarray(labels).ravel())[1:]
    return 2.0 * np.sqrt(areas[areas > 0] / np.pi)


def to_instances(mask: np.ndarray) -> np.ndarray:
    """Turn a mask into an instance label image (0 = background).

    Parameters
    ----------
    mask : numpy.ndarray
        2-D array, either

        * instance labels: 0 for background and any positive ids (not necessarily
          contiguous), kept as given; or
        * a binary mask: boolean, or exactly two values ``{0, v}`` (``{0, 1}``,
          ``{0, 255}``, ...), split into cells by 8-connected components. Note that an
          instance image holding a single cell is binary by this rule; its id then
          becomes 1 (and a cell made of separate pieces becomes several cells).

        Floating-point masks are accepted when every value is a whole number.

    Returns
    -------
    numpy.ndarray
        ``int32`` array of shape ``(H, W)``.

    Raises
    ------
    ValueError
        If the mask is not 2-D, is empty, has a non-numeric dtype, holds negative,
        non-finite or fractional values, or ids above the ``int32`` range.

    Examples
    --------
    >>> import numpy as np
    >>> to_instances(np.array([[255, 0, 255], [255, 0, 0]], dtype=np.uint8))
    array([[1, 0, 2],
           [1, 0, 0]], dtype=int32)
    >>> to_instances(np.array([[7, 7, 0, 3]])).tolist()
    [[7, 7, 0, 3]]
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask (H, W), got an array of shape {mask.shape}")
    if mask.size == 0:
        raise ValueError(f"expected a non-empty mask, got shape {mask.shape}")
    if mask.dtype == bool:
        return _components(mask)
    if mask.dtype.kind not in "iuf":
        raise ValueError(
            f"expected a boolean, integer or whole-valued float mask, got dtype {mask.dtype}"
        )
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)):
            raise ValueError("expected finite mask values, got NaN or infinity")
        if not np.array_equal(mask, np.floor(mask)):
            raise ValueError(
                "expected whole-numbered labels in a float mask, got fractional values "
                "(did you pass a probability map? threshold it first)"
            )
    low = mask.min()
    if low < 0:
        raise ValueError(f"expected labels >= 0 (0 = background), got minimum {low}")
    high = mask.max()
    if high > _INT32_MAX:
        raise ValueError(f"expected labels that fit in int32 (<= {_INT32_MAX}), got {high}")
    if high == 0:
        return np.zeros(mask.shape, dtype=np.int32)
    foreground = mask != 0
    if low == 0 and np.array_equal(foreground, mask == high):
        return _components(foreground)
    return mask.astype(np.int32)


def _components(foreground: np.ndarray) -> np.ndarray:
    labels, _ = ndi.label(foreground, structure=_EIGHT_CONNECTED)
    return labels.astype(np.int32, copy=False)


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relabel to ``0..K`` (0 stays background).

    Returns the relabelled ``int32`` image, the original id of each new label (``ids[0]
    = 0``) and the pixel count of each new label.
    """
    high = int(labels.max())
    if high <= labels.size + 65536:  # a lookup table is no larger than the image
        counts = np.bincount(labels.ravel(), minlength=high + 1)
        present = counts > 0
        present[0] = True
        lookup = np.cumsum(present, dtype=np.int32)
        lookup -= 1
        ids = np.flatnonzero(present)
        return lookup[labels], ids, counts[ids]
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if ids[0] != 0:
        ids = np.concatenate([[0], ids])
        counts = np.concatenate([[0], counts])
        inverse = inverse + 1
    return inverse.reshape(labels.shape).astype(np.int32), ids, counts


def _touching_pairs(cells: np.ndarray) -> tuple[np.ndarray, ...]:
    """All 8-adjacent pixel pairs of two different cells: ``(ya, xa, yb, xb)``."""
    h, w = cells.shape
    foreground = cells != 0
    found: list[tuple[np.ndarray, ...]] = []
    for dy, dx in _HALF_NEIGHBOURHOOD:
        # pixel a = (y, x) and its neighbour b = (y + dy, x + dx)
        x0 = max(-dx, 0)
        ya, yb = slice(0, h - dy), slice(dy, h)
        xa, xb = slice(x0, w - max(dx, 0)), slice(x0 + dx, w + min(dx, 0))
        conflict = cells[ya, xa] != cells[yb, xb]
        conflict &= foreground[ya, xa]
        conflict &= foreground[yb, xb]
        ys, xs = np.divmod(np.flatnonzero(conflict), conflict.shape[1])
        if len(ys):
            found.append((ys, xs + x0, ys + dy, xs + x0 + dx))
    if not found:
        return tuple(np.zeros(0, dtype=np.intp) for _ in range(4))
    return tuple(np.concatenate(part) for part in zip(*found, strict=True))


def _border_of_cells(cells: np.ndarray, ids: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Separation border of compact cells ``0..K`` with original ``ids`` and ``area``."""
    border = np.zeros(cells.shape, dtype=bool)
    count = len(ids) - 1
    if count < 2:
        return border
    ya, xa, yb, xb = _touching_pairs(cells)
    if len(ya) == 0:
        return border
    cell_a, cell_b = cells[ya, xa], cells[yb, xb]
    protected = np.zeros(count + 1, dtype=bool)
    while True:
        # rank 0 keeps its pixels against everyone: protected cells first, then by
        # (area, id), so that the larger of two touching cells gives up the line
        order = np.lexsort((ids, area, ~protected))
        rank = np.empty(count + 1, dtype=np.intp)
        rank[order] = np.arange(count + 1)
        a_loses = rank[cell_a] > rank[cell_b]
        border[:] = False
        border[ya[a_loses], xa[a_loses]] = True
        border[yb[~a_loses], xb[~a_loses]] = True
        left = area - np.bincount(cells[border], minlength=count + 1)
        vanished = (area > 0) & (left == 0) & ~protected
        vanished[0] = False
        if not vanished.any():
            break
        logger.debug("separation border: protecting %d cells it would delete", int(vanished.sum()))
        protected |= vanished
    lost = (area > 0) & (left == 0)
    lost[0] = False
    if lost.any():
        logger.warning(
            "separation border removes %d cell(s) entirely (ids %s): too thin to separate",
            int(lost.sum()),
            ids[lost][:10].tolist(),
        )
    return border


def separated_cells(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cells with the :func:`separation_border` set to background, numbered ``1..K``.

    Parameters
    ----------
    labels : numpy.ndarray
        2-D instance labels or binary mask, see :func:`to_instances`.

    Returns
    -------
    cells : numpy.ndarray
        ``int32`` array of shape ``(H, W)``: 0 for background and border, ``1..K`` for
        the cells in the order of their ids (a cell too thin to separate may have no
        pixel left).
    ids : numpy.ndarray
        The id of cell ``k`` in ``to_instances(labels)`` is ``ids[k]``; ``ids[0] = 0``.

    Examples
    --------
    >>> import numpy as np
    >>> cells, ids = separated_cells(np.array([[7, 7, 0, 9, 9, 9, 3]]))
    >>> cells
    array([[2, 2, 0, 3, 3, 0, 1]], dtype=int32)
    >>> ids.tolist()
    [0, 3, 7, 9]
    """
    cells, ids, area = _compact(to_instances(labels))
    border = _border_of_cells(cells, ids, area)
    if border.any():
        cells[border] = 0
    return cells, ids


def separation_border(labels: np.ndarray) -> np.ndarray:
    """Pixels that separate touching cells: a one-pixel line inside the larger cell.

    A pixel of cell ``a`` is on the border when one of its 8 neighbours belongs to a
    different cell ``b`` ranked below ``a``, where cells are ranked by (area, id). So
    of two touching cells the larger one loses the one-pixel line along the contact,
    and afterwards no two 8-adjacent pixels belong to different cells: the cells are
    disconnected under 4- and under 8-connectivity. The smaller cell keeps all its
    pixels; a cell that the rule would delete entirely is ranked first instead (its
    neighbours yield), and cells touching no other cell are untouched. Background
    gaps are never part of the border.

    Parameters
    ----------
    labels : numpy.ndarray
        2-D instance labels or binary mask, see :func:`to_instances`.

    Returns
    -------
    numpy.ndarray
        ``bool`` array of shape ``(H, W)``, True on the separation border.

    References
    ----------
    .. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
       Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597, Fig. 3.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[1, 1, 2, 2, 2],
    ...                    [1, 1, 2, 2, 2]])
    >>> separation_border(labels).astype(int)
    array([[0, 0, 1, 0, 0],
           [0, 0, 1, 0, 0]])
    """
    return _border_of_cells(*_compact(to_instances(labels)))


def separate_touching(labels: np.ndarray) -> np.ndarray:
    """Instance labels with the :func:`separation_border` set to background.

    Idempotent: on labels with no touching cells it returns them unchanged.

    Parameters
    ----------
    labels : numpy.ndarray
        2-D instance labels or binary mask, see :func:`to_instances`.

    Returns
    -------
    numpy.ndarray
        ``int32`` instance labels of shape ``(H, W)`` (ids as from :func:`to_instances`).

    Examples
    --------
    >>> import numpy as np
    >>> separate_touching(np.array([[1, 1, 2, 2, 2]]))
    array([[1, 1, 0, 2, 2]], dtype=int32)
    """
    cells, ids = separated_cells(labels)
    return ids.astype(np.int32)[cells]


def training_target(labels: np.ndarray) -> np.ndarray:
    """The two-class target of the paper: 1 = cell, 0 = background or separation border.

    Parameters
    ----------
    labels : numpy.ndarray
        2-D instance labels or binary mask, see :func:`to_instances`.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(H, W)`` with values in ``{0, 1}``.

    Examples
    --------
    >>> import numpy as np
    >>> training_target(np.array([[0, 1, 1, 2, 2, 2]]))
    array([[0, 1, 1, 0, 1, 1]], dtype=uint8)
    """
    cells, _ = separated_cells(labels)
    return (cells > 0).astype(np.uint8)
