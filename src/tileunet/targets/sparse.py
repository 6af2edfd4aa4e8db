"""Sparse annotation: a few strokes, and whole cells where they are painted.

Painting every pixel of every training image is what makes new data expensive. A
sparse annotation marks only some pixels, in one label image with this convention:

======  ===============================================================================
label   meaning
======  ===============================================================================
0       not annotated: the loss ignores the pixel (weight 0)
1       a background stroke: between cells (in EM, on a membrane)
2       a cell stroke: inside a cell
3, ...  whole cells, one id each, painted completely
======  ===============================================================================

Strokes teach the two classes and get the class weights only (balanced over the
annotated pixels). Where whole cells are painted, the paper's method applies as on a
dense mask: touching cells are parted by the separation border, and the border term
of the weight map (eq. 2) weights the background between them. Pixels no stroke or
cell covers never count, so an annotation can start with a few strokes and grow.

>>> import numpy as np
>>> strokes = np.zeros((4, 6), dtype=np.int32)
>>> strokes[0, :3] = 1                        # background stroke
>>> strokes[3, 3:] = 2                        # cell stroke
>>> target, weights, cells = sparse_targets(strokes)
>>> target[0, :3].tolist(), target[3, 3:].tolist(), bool(cells.any())
([0, 0, 0], [1, 1, 1], False)
>>> float(weights[1, 1])                      # not annotated
0.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tileunet.targets.instances import training_target
from tileunet.targets.weightmap import border_term, class_weight_map

#: label of a background stroke
BACKGROUND = 1
#: label of a cell stroke
CELL = 2
#: the first id of a whole painted cell
FIRST_CELL = 3


def check_sparse(labels: np.ndarray) -> np.ndarray:
    """``labels`` as a 2-D integer array of the convention (no negative label)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"sparse labels must be 2-D, got shape {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"sparse labels must be integers, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"sparse labels must be >= 0, got {labels.min()}")
    return labels


def painted_cells(labels: np.ndarray) -> np.ndarray:
    """The whole painted cells of a sparse annotation, as instance labels (ids >= 3
    kept, every other pixel 0)."""
    labels = check_sparse(labels)
    return np.where(labels >= FIRST_CELL, labels, 0).astype(np.int32)


def sparse_targets(labels: np.ndarray, *, w0: float = 10.0, sigma: float = 5.0,
                   class_weights: str | Sequence[float] | None = "balanced"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training target, weight map and painted cells of a sparse annotation.

    Parameters
    ----------
    labels : numpy.ndarray
        2-D labels of the convention above.
    w0, sigma : float
        The border term of the weight map, between painted cells only.
    class_weights : {"balanced"} or sequence of float or None
        As in :func:`~tileunet.targets.weightmap.class_weight_map`, over the annotated
        pixels only.

    Returns
    -------
    target : numpy.ndarray
        ``uint8`` (H, W): 1 = cell, 0 = background (and unannotated pixels).
    weights : numpy.ndarray
        ``float32`` (H, W): 0 where nothing is annotated.
    cells : numpy.ndarray
        ``int32`` (H, W): the whole painted cells (for instance scores).
    """
    labels = check_sparse(labels)
    annotated = labels > 0
    cells = painted_cells(labels)
    target = (labels == CELL).astype(np.uint8)
    if cells.any():
        inside = cells > 0
        target[inside] = training_target(cells)[inside]
    weights = np.zeros(labels.shape, np.float32)
    if annotated.any():
        weights[annotated] = class_weight_map(target[annotated], class_weights, num_classes=2)
    if cells.any() and w0 > 0:
        weights += np.where(annotated, border_term(cells, w0=w0, sigma=sigma), 0)
    return target, weights.astype(np.float32), cells


def sparse_classes(labels: np.ndarray) -> set[int]:
    """The classes (0 background, 1 cell) that a sparse annotation teaches."""
    labels = check_sparse(labels)
    present = set()
    if (labels == BACKGROUND).any():
        present.add(0)
    if ((labels == CELL) | (labels >= FIRST_CELL)).any():
        present.add(1)
    return present


__all__ = ["BACKGROUND", "CELL", "FIRST_CELL", "check_sparse", "painted_cells",
           "sparse_classes", "sparse_targets"]
