"""The U-Net loss weight map (paper eq. 2).

The paper trains with a pixel-wise weight map

.. math::

    w(x) = w_c(x) + w_0 \\exp\\left(-\\frac{(d_1(x) + d_2(x))^2}{2\\sigma^2}\\right)

where :math:`w_c` balances the class frequencies and :math:`d_1`, :math:`d_2` are the
distances to the nearest and the second-nearest cell. It is computed on the cells of
:mod:`tileunet.targets.instances`, pulled apart by their separation borders, so the large
weights concentrate on the gaps between touching cells::

    mask ──separated_cells──▶ separated cells ──weight_map──▶ w(x), float32

Cutoff of the fast weight map
    The border term is dropped (set to exactly 0) where ``d1 + d2 > T`` with
    ``T = sigma * sqrt(2 ln(1 / 1e-6))`` (about ``5.26 sigma``, 26.3 px for the paper's
    sigma = 5), i.e. where the term is below ``1e-6 * w0`` -- at the resolution of the
    float32 result. Only background pixels carry the term, and a background pixel is at
    least 1 px from every cell, so ``d1 + d2 <= T`` implies ``d2 <= T - 1``: both of
    its nearest cells lie within ``T - 1``. Each cell's distance transform is therefore
    computed only inside its bounding box grown by ``m = floor(T - 1)`` px (25 px for
    sigma = 5), clipped to the image. Distances inside that crop are exact, because
    the crop holds *every* pixel of the cell (the Euclidean distance to a pixel set
    does not depend on what lies in between), and every pixel within ``T - 1`` of the
    cell is inside the crop (its row and column offsets from the box are at most
    ``m``). Pixels outside the crop cannot belong to a non-negligible pair, so
    ``|weight_map - weight_map_reference| <= 1e-6 * w0`` plus float32 rounding.
    The running smallest and second-smallest squared distances are kept as integers,
    so the fast path is exact below the cutoff.

References
----------
.. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
   Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597, eq. (2).
.. [2] C. R. Maurer, R. Qi, V. Raghavan, "A linear time algorithm for computing exact
   Euclidean distance transforms of binary images in arbitrary dimensions", IEEE
   TPAMI 25(2), 2003 (the algorithm behind ``scipy.ndimage.distance_transform_edt``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from tileunet.targets.instances import separate_touching, separated_cells

__all__ = [
    "CUTOFF_RELATIVE",
    "border_cutoff",
    "border_term",
    "class_weight_map",
    "weight_map",
    "weight_map_reference",
]

#: The border term is treated as zero once it falls below this fraction of ``w0``.
CUTOFF_RELATIVE: float = 1e-6


# ----------------------------------------------------------------------- class weights
def class_weight_map(
    target: np.ndarray,
    class_weights: str | Sequence[float] | None = "balanced",
    num_classes: int = 2,
) -> np.ndarray:
    """Per-pixel class weight :math:`w_c(x)` of paper eq. (2).

    Parameters
    ----------
    target : numpy.ndarray
        Integer (or boolean) class index per pixel, values in ``[0, num_classes)``.
    class_weights : {"balanced"} or sequence of float or None, default "balanced"
        ``None``: all ones. ``"balanced"``: inversely proportional to each class's
        pixel count in ``target``, ``w[k] = N / (K * n_k)`` with ``N`` pixels and
        ``K`` classes present. This normalisation makes the mean of ``w_c`` over the
        image exactly 1, so the class-weighted loss stays on the scale of the plain
        loss and ``w0`` of the border term keeps its meaning relative to it. A
        sequence of ``num_classes`` non-negative numbers is used as given.
    num_classes : int, default 2
        Number of classes.

    Returns
    -------
    numpy.ndarray
        ``float32`` array with the shape of ``target``.

    Raises
    ------
    ValueError
        For an unknown string, a sequence of the wrong length or with negative or
        non-finite values, or target values outside ``[0, num_classes)``.

    Examples
    --------
    >>> import numpy as np
    >>> class_weight_map(np.array([[0, 0, 0, 1]]))
    array([[0.6666667, 0.6666667, 0.6666667, 2.       ]], dtype=float32)
    >>> class_weight_map(np.array([[0, 1]]), [1.0, 3.0])
    array([[1., 3.]], dtype=float32)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    target = np.asarray(target)
    if target.dtype != bool and target.dtype.kind not in "iu":
        raise ValueError(f"expected an integer class-index target, got dtype {target.dtype}")
    if target.size and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(
            f"expected target values in [0, {num_classes}), "
            f"got range [{target.min()}, {target.max()}]"
        )
    target = target.astype(np.intp, copy=False)
    if class_weights is None:
        return np.ones(target.shape, dtype=np.float32)
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(
                f"class_weights must be 'balanced', None or a sequence of {num_classes} "
                f"numbers, got {class_weights!r}"
            )
        counts = np.bincount(target.ravel(), minlength=num_classes).astype(np.float64)
        present = counts > 0
        table = np.ones(num_classes, dtype=np.float64)
        table[present] = target.size / (present.sum() * counts[present])
    else:
        try:
            table = np.asarray(class_weights, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"class_weights must be 'balanced', None or a sequence of {num_classes} "
                f"numbers, got {class_weights!r}"
            ) from err
        if table.shape != (num_classes,):
            raise ValueError(
                f"class_weights must hold one weight per class ({num_classes}), "
                f"got shape {table.shape}"
            )
        if not np.all(np.isfinite(table)) or np.any(table < 0):
            raise ValueError(f"class_weights must be finite and >= 0, got {table.tolist()}")
    return table.astype(np.float32)[target]


# ------------------------------------------------------------------------ weight map
def border_cutoff(sigma: float) -> float:
    """Distance sum ``T`` beyond which the border term is below ``CUTOFF_RELATIVE * w0``.

    ``T = sigma * sqrt(2 ln(1 / CUTOFF_RELATIVE))``, about ``5.26 * sigma``.

    Examples
    --------
    >>> round(border_cutoff(5.0), 2)
    26.28
    """
    return float(sigma) * math.sqrt(2.0 * math.log(1.0 / CUTOFF_RELATIVE))


def _check_params(w0: float, sigma: float) -> tuple[float, float]:
    try:
        w0, sigma = float(w0), float(sigma)
    except (TypeError, ValueError) as err:
        raise ValueError(f"w0 and sigma must be numbers, got {w0!r} and {sigma!r}") from err
    if not math.isfinite(w0) or w0 < 0:
        raise ValueError(f"w0 must be finite and >= 0, got {w0}")
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be finite and > 0, got {sigma}")
    return w0, sigma


def weight_map(
    labels: np.ndarray,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: str | Sequence[float] | None = "balanced",
) -> np.ndarray:
    """The U-Net loss weight map, paper eq. (2), computed locally per cell.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))`` on
    ``separate_touching(labels)``, with ``d1``, ``d2`` the Euclidean distances to the
    nearest and second-nearest cell. The border term applies to background pixels only
    (separation borders included) and is 0 when there are fewer than two cells; ``w_c``
    comes from :func:`class_weight_map` on the
    :func:`~tileunet.targets.instances.training_target`. The border term is cut to 0
    where ``d1 + d2`` exceeds :func:`border_cutoff` (``1e-6 * w0``), which lets each
    cell's distance transform run on its bounding box grown by about that cutoff; the
    result matches :func:`weight_map_reference` to ``1e-6 * w0`` (see the module notes).

    Parameters
    ----------
    labels : numpy.ndarray
        2-D instance labels or binary mask, see
        :func:`~tileunet.targets.instances.to_instances`.
    w0 : float, default 10.0
        Weight of the border term (paper: 10).
    sigma : float, default 5.0
        Width of the border term in pixels (paper: about 5).
    class_weights : {"balanced"} or sequence of float or None, default "balanced"
        See :func:`class_weight_map` (index 0 = background, 1 = cell).

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(H, W)``.

    References
    ----------
    .. [1] O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for
       Biomedical Image Segmentation", MICCAI 2015, arXiv:1505.04597, eq. (2).

    Examples
    --------
    Two one-pixel cells six pixels apart: half-way between them d1 = d2 = 3.

    >>> import numpy as np
    >>> labels = np.zeros((5, 9), dtype=int)
    >>> labels[2, 1], labels[2, 7] = 1, 2
    >>> w = weight_map(labels, class_weights=None)
    >>> bool(np.isclose(w[2, 4], 1 + 10 * np.exp(-36 / 50)))
    True
    >>> float(w[2, 1])  # a cell pixel: class weight only
    1.0
    """
    w0, sigma = _check_params(w0, sigma)
    cells, _ = separated_cells(labels)
    weights = class_weight_map(cells > 0, class_weights, num_classes=2)
    if w0 > 0:
        weights += _border_term_local(cells, w0, sigma)
    return weights


def border_term(labels: np.ndarray, *, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """The border term of eq. (2) alone: ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2))`` on
    the background between the cells of ``labels`` (separation borders included), 0 on
    the cells and where there are fewer than two; :func:`weight_map` without ``w_c``.

    >>> import numpy as np
    >>> labels = np.zeros((5, 9), dtype=int)
    >>> labels[2, 1], labels[2, 7] = 1, 2
    >>> bool(np.isclose(border_term(labels)[2, 4], 10 * np.exp(-36 / 50)))
    True
    """
    w0, sigma = _check_params(w0, sigma)
    cells, _ = separated_cells(labels)
    if w0 == 0:
        return np.zeros(cells.shape, np.float32)
    return _border_term_local(cells, w0, sigma)


def _border_term_local(cells: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """Border term from per-cell distance transforms on cropped windows.

    ``cells`` holds separated cells with compact ids ``0..K`` (some may be empty).
    """
    term = np.zeros(cells.shape, dtype=np.float32)
    boxes = [(index, box) for index, box in enumerate(ndi.find_objects(cells), 1) if box]
    if len(boxes) < 2:
        return term
    h, w = cells.shape
    cutoff = border_cutoff(sigma)
    # a background pixel with d1 + d2 <= T has d1 >= 1, so d2 <= T - 1 (module notes)
    margin = max(math.floor(cutoff - 1.0), 0)
    # squared distances are integers: keep them exact, and wide enough for the image
    dtype = np.int32 if (h * h + w * w) < np.iinfo(np.int32).max else np.int64
    far = np.iinfo(dtype).max
    nearest = np.full((h, w), far, dtype=dtype)  # squared d1
    second = np.full((h, w), far, dtype=dtype)  # squared d2
    rows = np.arange(h, dtype=dtype)[:, None]
    cols = np.arange(w, dtype=dtype)[None, :]
    for index, box in boxes:
        r0, r1 = max(box[0].start - margin, 0), min(box[0].stop + margin, h)
        c0, c1 = max(box[1].start - margin, 0), min(box[1].stop + margin, w)
        window = cells[r0:r1, c0:c1]
        # feature transform: coordinates of the nearest pixel of this cell (in the crop,
        # which holds the whole cell, so the distances are exact)
        feature = ndi.distance_transform_edt(
            window != index, return_distances=False, return_indices=True
        ).astype(dtype, copy=False)  # (2, h, w): row and column of the nearest cell pixel
        feature[0] -= rows[: r1 - r0]
        feature[1] -= cols[:, : c1 - c0]
        feature *= feature
        squared = feature[0]
        squared += feature[1]
        near = nearest[r0:r1, c0:c1]
        sec = second[r0:r1, c0:c1]
        larger = np.maximum(near, squared)
        np.minimum(near, squared, out=near)
        np.minimum(sec, larger, out=sec)
    # the term can only exceed the cutoff where d2 <= T (and d1 <= d2): look there only
    candidates = (cells == 0) & (second <= int(cutoff * cutoff))
    total = np.sqrt(nearest[candidates]) + np.sqrt(second[candidates])
    values = w0 * np.exp(-(total * total) / (2.0 * sigma * sigma))
    values[total > cutoff] = 0.0
    term[candidates] = values
    return term


def weight_map_reference(
    labels: np.ndarray,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: str | Sequence[float] | None = "balanced",
) -> np.ndarray:
    """Naive :func:`weight_map`: one full-image distance transform per cell, no cutoff.

    Slow (time grows with cells x pixels); it exists to check the fast path.

    Parameters
    ----------
    labels, w0, sigma, class_weights
        As in :func:`weight_map`.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(H, W)``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((5, 9), dtype=int)
    >>> labels[2, 1], labels[2, 7] = 1, 2
    >>> bool(np.allclose(weight_map_reference(labels), weight_map(labels), atol=1e-4))
    True
    """
    w0, sigma = _check_params(w0, sigma)
    separated = separate_touching(labels)
    target = (separated > 0).astype(np.uint8)
    weights = class_weight_map(target, class_weights, num_classes=2)
    ids = np.unique(separated)
    ids = ids[ids != 0]
    if len(ids) < 2 or w0 == 0:
        return weights
    d1 = np.full(separated.shape, np.inf)
    d2 = np.full(separated.shape, np.inf)
    for cell in ids:
        d = ndi.distance_transform_edt(separated != cell)
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    term = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma * sigma))
    weights += np.where(target == 0, term, 0.0).astype(np.float32)
    return weights
