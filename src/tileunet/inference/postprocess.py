"""From predicted probabilities to label images.

The paper's network separates touching cells by predicting the thin border between
them as *background* (the weight map makes those pixels expensive to get wrong).
Instances then follow from plain connected components of the thresholded foreground;
the border pixels they lost are given back afterwards.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels
from skimage.segmentation import watershed as _watershed

__all__ = ["GROW_MODES", "INSTANCE_METHODS", "check_threshold", "distance_seeds", "foreground",
           "grow_labels",
           "instance_options", "instances_from_probability", "label_mask"]

GROW_MODES = ("gaps", "all")
INSTANCE_METHODS = ("seeded", "components", "watershed")


def check_threshold(threshold: float) -> None:
    """A foreground threshold is a probability in ``[0, 1)`` (NaN is refused too)."""
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")


def instance_options(method: str = "seeded", min_distance: int = 5) -> dict:
    """Keyword arguments of :func:`instances_from_probability` for a named method.

    ``"seeded"`` (the default) floods the cores where the network is sure over the
    foreground; ``"components"`` takes plain connected components of the threshold;
    ``"watershed"`` splits on the distance map with seeds about ``min_distance``
    pixels apart (about the radius of the smallest cell), which also splits cells the
    network merged.

    Examples
    --------
    >>> instance_options("watershed", 15)
    {'watershed': True, 'min_distance': 15}
    """
    if method not in INSTANCE_METHODS:
        raise ValueError(f"instance method must be one of {INSTANCE_METHODS}, got {method!r}")
    if int(min_distance) != min_distance or min_distance < 1:
        raise ValueError(f"min_distance must be a positive integer, got {min_distance!r}")
    if method == "components":
        return {"seed_threshold": None}
    if method == "watershed":
        return {"watershed": True, "min_distance": int(min_distance)}
    return {}


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber the non-zero ids to ``1..N`` in order of first id (int32)."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, dtype=np.int32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[labels]


def _fill_gaps(labels: np.ndarray, grow: int) -> np.ndarray:
    """Give short background gaps between two different objects to the nearer one.

    A background pixel is in a gap when, along one of the four directions
    (horizontal, vertical, two diagonals), the nearest object on one side differs
    from the nearest object on the other side and the two are at most ``2 * grow``
    steps apart in total, i.e. the gap is at most ``2 * grow - 1`` pixels wide. The
    pixel goes to the nearer of the two (over all qualifying directions; on a tie,
    the lower id). Pixels
    that merely sit near two objects, such as the open end of a separation line,
    stay background.
    """
    reach = 2 * grow
    near_fg = ndi.maximum_filter(labels > 0, size=2 * grow + 1)
    ys, xs = np.nonzero(near_fg & (labels == 0))
    padded = np.pad(labels, reach)
    ys, xs = ys + reach, xs + reach
    best = np.zeros(ys.size, dtype=labels.dtype)
    best_steps = np.full(ys.size, reach + 1, dtype=np.int16)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        sides = []
        for sign in (1, -1):
            nearest = np.zeros(ys.size, dtype=labels.dtype)
            steps = np.full(ys.size, reach + 1, dtype=np.int16)
            for k in range(reach, 0, -1):  # far to near: the nearest object wins
                found = padded[ys + sign * k * dy, xs + sign * k * dx]
                hit = found > 0
                nearest[hit] = found[hit]
                steps[hit] = k
            sides.append((nearest, steps))
        (a, da), (b, db) = sides
        gap = (a > 0) & (b > 0) & (a != b) & (da + db <= reach)
        label = np.where(da < db, a, np.where(db < da, b, np.minimum(a, b)))  # tie: lower id
        dist = np.minimum(da, db)
        better = gap & (dist < best_steps)
        best[better] = label[better]
        best_steps[better] = dist[better]
    out = labels.copy()
    out[ys - reach, xs - reach] = best
    return out


def distance_seeds(distance: np.ndarray, fg: np.ndarray, min_distance: int) -> np.ndarray:
    """The seeds of the distance watershed, numbered: the maxima of ``distance`` over
    the ``min_distance`` neighbourhood (Chebyshev) in ``fg``, where maxima less than
    about ``min_distance`` apart (a plateau, a ridge, two near peaks) make one seed.

    Image filters only: a k-d tree over the candidate maxima (the spacing step of
    :func:`skimage.feature.peak_local_max`) recurses deeply on the many flat maxima of
    a noisy map, past the small stacks of a GUI's worker threads.

    >>> fg = np.zeros((9, 17), bool); fg[1:8, 1:8] = fg[1:8, 9:16] = True
    >>> fg[4, 8] = True  # two squares joined by a pixel
    >>> seeds = distance_seeds(ndi.distance_transform_edt(fg), fg, 2)
    >>> int(seeds.max()), int(seeds[4, 4]), int(seeds[4, 12])
    (2, 1, 2)
    """
    reach = max(1, int(min_distance))
    peaks = fg & (distance >= ndi.maximum_filter(distance, size=2 * reach + 1))
    side = reach - 1 + reach % 2  # odd: a dilation as far on each side
    near = ndi.binary_dilation(peaks, structure=np.ones((side, side), bool)) & fg
    seeds, _ = ndi.label(near, structure=np.ones((3, 3), bool))
    return seeds.astype(np.int32, copy=False)


def instances_from_probability(
    prob_fg: np.ndarray,
    *,
    threshold: float = 0.5,
    min_size: int = 8,
    grow: int = 2,
    grow_mode: str = "gaps",
    watershed: bool = False,
    min_distance: int = 5,
    seed_threshold: float | None = 0.9,
    band_rows: int = 1024,
) -> np.ndarray:
    """Instance labels from a foreground-probability map.

    1. Threshold: foreground where ``prob_fg > threshold``.
    2. Connected components (4-connectivity, so a one-pixel diagonal background line
       still separates two cells). With ``seed_threshold``, the cores where the
       network is sure (``prob_fg > seed_threshold``) are the seeds instead and are
       flooded over the foreground in order of decreasing probability, so touching
       cells part where the network's probability dips towards the separation
       border even when the dip stays above ``threshold``; a component without a
       core stays one object. With ``watershed=True`` a watershed on the distance
       transform instead, which also splits cells the network merged.
    3. Drop components smaller than ``min_size`` pixels.
    4. Grow the objects back by up to ``grow`` pixels into background pixels; each
       such pixel goes to its nearest object, so objects never merge or overlap
       (``grow_mode="all"`` is :func:`skimage.segmentation.expand_labels`).

    Parameters
    ----------
    prob_fg : numpy.ndarray
        ``(H, W)`` probability of the cell class (e.g. ``probs[1]`` of
        :func:`tileunet.inference.overlap`).
    threshold : float
        Foreground threshold in ``[0, 1)``.
    min_size : int
        Smallest object kept, in pixels (0 keeps all).
    grow : int
        How far objects are grown back, in pixels (0 disables it).
    grow_mode : {"gaps", "all"}
        ``"gaps"`` (default) grows only into background gaps between two different
        objects that are at most ``2 * grow - 1`` pixels wide along a row, column
        or diagonal, i.e. the separation lines the network drew between touching
        cells; outlines facing real background stay where the network put them.
        ``"all"`` grows every outline by ``grow`` pixels (use it when a model
        systematically predicts cells too small).
    watershed : bool
        Split merged cells with a watershed on the distance map, seeded at its
        local maxima (:func:`distance_seeds`).
    min_distance : int
        Watershed only: about the smallest distance between two seeds, in pixels;
        smaller values split more.
    seed_threshold : float or None
        Probability above which pixels form the seeds of the probability flooding
        (default 0.9); ``None`` uses plain connected components of the threshold.
        Seeds smaller than ``min_size`` are ignored.
    band_rows : int
        Images taller than this are processed a group of objects at a time: the
        objects whose first row lies within ``band_rows`` rows, cropped to the box that
        holds them, so memory beyond the image and its labels stays small at any size
        (``benchmarks/RESULTS.md``, "Memory: an 8192×8192 image to files"). Each
        object is found from its own
        pixels as on the whole image; only the distance watershed's seeds can differ,
        where two objects of different groups lie within ``min_distance`` of each other.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` int32, 0 = background, objects numbered ``1..N`` in the raster order
        of their first pixel.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.zeros((6, 9)); p[1:5, 1:4] = 1; p[1:5, 5:8] = 1  # two cells, 1-px gap
    >>> instances_from_probability(p, min_size=1, grow=1)[2]
    array([0, 1, 1, 1, 1, 2, 2, 2, 0], dtype=int32)
    """
    prob = np.asarray(prob_fg)
    if prob.ndim != 2:
        raise ValueError(f"prob_fg must be 2-D (H, W), got shape {prob.shape}")
    if not np.issubdtype(prob.dtype, np.number) and prob.dtype != bool:
        raise ValueError(f"prob_fg must be numeric, got dtype {prob.dtype}")
    check_threshold(threshold)
    for name, value in (("min_size", min_size), ("grow", grow), ("min_distance", min_distance)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if grow_mode not in GROW_MODES:
        raise ValueError(f"grow_mode must be one of {GROW_MODES}, got {grow_mode!r}")

    if seed_threshold is not None and not threshold <= float(seed_threshold) < 1.0:
        raise ValueError(f"seed_threshold must be in [threshold, 1), got {seed_threshold!r}")
    if int(band_rows) != band_rows or band_rows < 1:
        raise ValueError(f"band_rows must be a positive integer, got {band_rows!r}")

    fg = foreground(prob, float(threshold))
    components, n = ndi.label(fg)  # 4-connectivity
    del fg
    opts = dict(min_size=int(min_size), watershed=watershed, min_distance=int(min_distance),
                seed_threshold=seed_threshold)
    if n == 0:
        return np.zeros(prob.shape, dtype=np.int32)
    if prob.shape[0] <= band_rows:
        labels = _objects(prob, components, 1, n, **opts)
    else:  # a group of objects at a time, so memory stays bounded on large images
        labels = np.zeros(prob.shape, dtype=np.int32)
        top = 0
        boxes = ndi.find_objects(components)
        for lo, hi, rows, cols in _object_groups(boxes, band_rows, prob.shape):
            sub = _objects(prob[rows, cols], components[rows, cols], lo, hi, **opts)
            hit = sub > 0
            labels[rows, cols][hit] = sub[hit] + top
            top += int(sub.max())
    del components
    labels = _raster_order(labels)
    if grow > 0 and labels.max() > 0:
        labels = grow_labels(labels, int(grow), grow_mode, band_rows)
    return labels


def _raster_order(labels: np.ndarray) -> np.ndarray:
    """Renumber objects ``1..N`` in the raster order of their first pixel.

    A numbering that depends on the objects alone, not on how they were found, so a
    block-wise labelling (:mod:`tileunet.inference.blockwise`) can reproduce it, growth ties
    (which go to the lower id) included.
    """
    n = int(labels.max()) if labels.size else 0
    if n < 2:
        return labels
    w = labels.shape[1]
    first = np.full(n + 1, np.iinfo(np.int64).max, dtype=np.int64)
    for k, box in enumerate(ndi.find_objects(labels), start=1):
        if box is not None:
            r0, cols = box[0].start, box[1]
            first[k] = r0 * w + cols.start + int(np.argmax(labels[r0, cols] == k))
    order = np.argsort(first[1:], kind="stable") + 1  # ids by first pixel
    lut = np.zeros(n + 1, dtype=labels.dtype)
    lut[order] = np.arange(1, n + 1, dtype=labels.dtype)
    if np.array_equal(lut[1:], np.arange(1, n + 1)):
        return labels
    return lut[labels]


def foreground(prob: np.ndarray, threshold: float, rows: int = 1024) -> np.ndarray:
    """``prob > threshold`` as a bool array, computed a band of rows at a time, so a
    memory-mapped map is read in pieces and no full-size temporary is made.

    Examples
    --------
    >>> foreground(np.array([[0.2, 0.7]]), 0.5)
    array([[False,  True]])
    """
    out = np.empty(prob.shape, dtype=bool)
    for y in range(0, prob.shape[0], rows):
        np.greater(prob[y : y + rows], threshold, out=out[y : y + rows])
    return out


def _flood(prob: np.ndarray, seeds: np.ndarray, components: np.ndarray, fg: np.ndarray
           ) -> np.ndarray:
    """The seeds flooded over the foreground ``fg`` in order of decreasing probability
    (a seed's label; 0 where a component has no seed).

    Each seed lies inside one component, and a flood never crosses from one component to
    another; a component with a single seed therefore comes out as that seed, whole, and
    only the components with several seeds (touching cells) are flooded.
    """
    has = seeds > 0
    comp_of = np.zeros(int(seeds.max()) + 1, dtype=np.int64)
    comp_of[seeds[has]] = components[has]
    kept = np.flatnonzero(comp_of)  # seeds still there (small ones were removed)
    per_comp = np.bincount(comp_of[kept], minlength=int(components.max()) + 1)
    seed_of = np.zeros(per_comp.size, dtype=np.int32)
    seed_of[comp_of[kept]] = kept  # the seed of a one-seed component
    labels = np.where(fg & (per_comp == 1)[components], seed_of[components], 0)
    labels = labels.astype(np.int32, copy=False)
    several = fg & (per_comp > 1)[components]
    if several.any():
        inner = np.where(several, seeds, 0)
        _seed_rims(inner)
        flood = np.negative(prob, dtype=np.float32)
        labels[several] = _watershed(flood, inner, mask=several)[several]
    return labels


def _seed_rims(seeds: np.ndarray) -> None:
    """In place: keep only the seed pixels with a 4-neighbour outside their own seed.

    The flooding starts from every labelled pixel, and scikit-image keeps all of them in
    its priority queue (32 bytes each). A seed's inner pixels are enclosed by its rim,
    so they can only ever be reached from it and come out with the seed's label anyway;
    flooding from the rims alone gives the same labels with a far shorter queue.
    """
    inner = seeds > 0
    inner[1:] &= seeds[1:] == seeds[:-1]
    inner[:-1] &= seeds[:-1] == seeds[1:]
    inner[:, 1:] &= seeds[:, 1:] == seeds[:, :-1]
    inner[:, :-1] &= seeds[:, :-1] == seeds[:, 1:]
    inner[0] = inner[-1] = False  # pixels on the border keep flooding along it
    inner[:, 0] = inner[:, -1] = False
    seeds[inner] = 0


def _object_groups(boxes: list, band_rows: int, shape: tuple[int, int]):
    """Runs of consecutive component ids whose top rows lie within ``band_rows`` of each
    other (ids follow the raster order of their first pixel), with the crop that holds
    them all plus one pixel of background around: ``(lo, hi, rows, cols)``."""
    h, w = shape
    i = 0
    while i < len(boxes):
        r0 = boxes[i][0].start
        r1, c0, c1 = boxes[i][0].stop, boxes[i][1].start, boxes[i][1].stop
        j = i + 1
        while j < len(boxes) and boxes[j][0].start < r0 + band_rows:
            r1 = max(r1, boxes[j][0].stop)
            c0, c1 = min(c0, boxes[j][1].start), max(c1, boxes[j][1].stop)
            j += 1
        yield (i + 1, j, slice(max(0, r0 - 1), min(h, r1 + 1)),
               slice(max(0, c0 - 1), min(w, c1 + 1)))
        i = j


def _objects(prob: np.ndarray, components: np.ndarray, lo: int, hi: int, *, min_size: int,
             watershed: bool, min_distance: int, seed_threshold: float | None) -> np.ndarray:
    """Instances (not grown) of the components with ids ``lo..hi``, numbered ``1..N``."""
    fg = (components >= lo) & (components <= hi)
    if seed_threshold is not None and not watershed:
        seeds, _ = ndi.label(fg & (prob > seed_threshold))
        if min_size > 0 and seeds.max() > 0:
            small = np.bincount(seeds.ravel()) < min_size
            small[0] = False
            seeds[small[seeds]] = 0
        if seeds.max() > 0:
            labels = _flood(prob, seeds, components, fg)
        else:  # no cores: every component is an orphan
            labels = np.zeros(fg.shape, dtype=np.int32)
        del seeds
    elif watershed:
        distance = ndi.distance_transform_edt(fg)
        markers = distance_seeds(distance, fg, min_distance)
        labels = _watershed(-distance, markers, mask=fg).astype(np.int32, copy=False)
        del distance, markers
    else:
        labels = np.where(fg, components, 0).astype(np.int32, copy=False)
    if seed_threshold is not None or watershed:
        orphan = fg & (labels == 0)  # a component without a seed keeps its own id
        if orphan.any():
            labels[orphan] = components[orphan] + int(labels.max())
    labels = _relabel_sequential(labels)
    if min_size > 0 and labels.max() > 0:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        if small.any():
            labels = _relabel_sequential(np.where(small[labels], 0, labels))
    return labels


def grow_labels(labels: np.ndarray, grow: int, mode: str, band_rows: int) -> np.ndarray:
    """Grow the objects (see :func:`instances_from_probability`), a band of rows at a
    time with enough rows of context that every band comes out as on the whole image."""
    def one(part: np.ndarray) -> np.ndarray:
        if mode == "gaps":
            return _fill_gaps(part, grow)
        return expand_labels(part, distance=grow).astype(np.int32, copy=False)

    h = labels.shape[0]
    if h <= band_rows:
        return one(labels)
    halo = 2 * grow + 1
    out = np.empty_like(labels)
    for y0 in range(0, h, band_rows):
        y1 = min(h, y0 + band_rows)
        a, b = max(0, y0 - halo), min(h, y1 + halo)
        out[y0:y1] = one(labels[a:b])[y0 - a : y1 - a]
    return out


def label_mask(prob: np.ndarray) -> np.ndarray:
    """Class map from class probabilities (argmax over classes).

    Parameters
    ----------
    prob : numpy.ndarray
        ``(K, H, W)`` per-class probabilities (or logits), ``K <= 256``.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` uint8 class index ``0..K-1``.

    Examples
    --------
    >>> import numpy as np
    >>> label_mask(np.array([[[0.9, 0.2]], [[0.1, 0.8]]]))
    array([[0, 1]], dtype=uint8)
    """
    prob = np.asarray(prob)
    if prob.ndim != 3:
        raise ValueError(f"prob must be (K, H, W), got shape {prob.shape}")
    if not 1 <= prob.shape[0] <= 256:
        raise ValueError(f"prob must have 1 to 256 classes, got {prob.shape[0]}")
    return np.argmax(prob, axis=0).astype(np.uint8)
