"""Overlap counts of a segmentation and ground-truth cells, over the ground truth's
foreground: the contingency table that the Rand and information scores of the ISBI 2012
challenge are computed from.

The ground truth is prepared once (:class:`GroundTruthCells`) and then counted against
any number of segmentations, e.g. one per threshold: each count is one
:func:`numpy.bincount` over combined ids, so its cost grows with the number of pixels,
never with the product of the numbers of cells and segments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tileunet.evaluation.scores import as_labels

__all__ = ["Contingency", "GroundTruthCells", "harmonic_mean", "plogp_sum"]


@dataclass(frozen=True)
class Contingency:
    """Overlap counts over the pixels where the ground truth is not 0.

    Attributes
    ----------
    n : int
        Number of those pixels.
    pairs : numpy.ndarray
        Non-zero overlaps ``n_ij`` of ground-truth cell ``i`` and segment ``j`` (int64),
        segments of one pixel each (``singles``) not included.
    gt_sizes : numpy.ndarray
        Non-zero ground-truth cell sizes ``a_i``.
    seg_sizes : numpy.ndarray
        Non-zero segment sizes ``b_j`` counted inside the foreground, ``singles`` not
        included.
    singles : int
        Pixels that are each a segment of their own (segment 0 when counted with
        ``zero_singletons=True``, e.g. the one-pixel borders of a thinned
        segmentation).
    """

    n: int
    pairs: np.ndarray
    gt_sizes: np.ndarray
    seg_sizes: np.ndarray
    singles: int

    def sum_squares(self) -> tuple[int, int, int]:
        """``(sum n_ij^2, sum a_i^2, sum b_j^2)``, each single pixel adding 1 to the
        first and the last; exact (int64)."""
        pairs = int(self.pairs @ self.pairs) + self.singles
        return pairs, int(self.gt_sizes @ self.gt_sizes), (
            int(self.seg_sizes @ self.seg_sizes) + self.singles)

    def entropies(self) -> tuple[float, float, float]:
        """``(H(gt, seg), H(gt), H(seg))`` in nats, over the ``n`` pixels.

        A single pixel has probability ``1 / n`` and adds ``log(n) / n`` to ``H(seg)``
        and to the joint entropy.
        """
        if self.n == 0:
            return float("nan"), float("nan"), float("nan")
        log_n = float(np.log(self.n))
        return (log_n - plogp_sum(self.pairs) / self.n,
                log_n - plogp_sum(self.gt_sizes) / self.n,
                log_n - plogp_sum(self.seg_sizes) / self.n)


def harmonic_mean(a: float, b: float) -> float:
    """The harmonic mean of a split and a merge score (an F-score), 0 when both are 0.

    Examples
    --------
    >>> harmonic_mean(1.0, 0.5)
    0.6666666666666666
    """
    return 2.0 * a * b / (a + b) if a + b > 0 else 0.0


def plogp_sum(counts: np.ndarray) -> float:
    """``sum c log c`` over the counts (natural log; ``0 log 0 = 0``).

    Examples
    --------
    >>> round(plogp_sum(np.array([1, 2, 0, 4])), 6)
    6.931472
    """
    c = np.asarray(counts, np.float64)
    c = c[c > 1]  # 1 log 1 = 0 log 0 = 0
    return float(c @ np.log(c))


class GroundTruthCells:
    """A ground-truth label image prepared for counting segmentations against it.

    Parameters
    ----------
    gt_labels : numpy.ndarray
        Integer cell labels of any shape, 0 on the boundary (left out of all counts);
        ids need not be contiguous.

    Examples
    --------
    >>> gt = GroundTruthCells(np.array([[1, 1, 0, 7, 7]]))
    >>> c = gt.count(np.array([[3, 3, 3, 0, 5]]), zero_singletons=True)
    >>> c.n, c.pairs.tolist(), c.singles, c.sum_squares()
    (4, [2, 1], 1, (6, 8, 6))
    """

    def __init__(self, gt_labels: np.ndarray) -> None:
        flat = as_labels(gt_labels, "gt_labels")
        self.shape = np.shape(gt_labels)
        self.foreground = np.flatnonzero(flat)
        ids, inverse = np.unique(flat[self.foreground], return_inverse=True)
        self.index = inverse.astype(np.int64).ravel()  # contiguous cell index per pixel
        self.n_cells = int(ids.size)
        self.gt_sizes = np.bincount(self.index, minlength=self.n_cells).astype(np.int64)

    @property
    def n(self) -> int:
        """Number of foreground (counted) pixels."""
        return int(self.foreground.size)

    def count(self, seg: np.ndarray, *, zero_singletons: bool = False) -> Contingency:
        """Overlap counts of ``seg`` with the cells, over the foreground.

        Parameters
        ----------
        seg : numpy.ndarray
            Integer segment labels of the ground truth's shape (ids >= 0).
        zero_singletons : bool
            Count each pixel of segment 0 as a segment of its own (the challenge's
            reading of border pixels), instead of segment 0 as an ordinary segment.
        """
        s_img = np.asarray(seg)
        if s_img.shape != self.shape:
            raise ValueError(f"seg must have shape {self.shape}, got {s_img.shape}")
        s = as_labels(s_img, "seg")[self.foreground]
        singles = 0
        g = self.index
        if zero_singletons:
            keep = s > 0
            singles = int(s.size - np.count_nonzero(keep))
            if singles:
                s, g = s[keep], g[keep]
        if s.size == 0:
            empty = np.zeros(0, np.int64)
            return Contingency(self.n, empty, self.gt_sizes, empty, singles)
        # compact segment ids, so that the combined ids stay small
        width = int(s.max()) + 1
        if width > 4 * s.size + 1024:
            ids, s = np.unique(s, return_inverse=True)
            width = int(ids.size)
        key = g * width + s
        if self.n_cells * width <= 4 * key.size + 65536:
            counts = np.bincount(key, minlength=self.n_cells * width)
            pairs = counts[counts > 0]
            seg_sizes = counts.reshape(self.n_cells, width).sum(axis=0)
        else:
            pairs = np.unique(key, return_counts=True)[1]
            seg_sizes = np.bincount(s, minlength=width)
        return Contingency(self.n, pairs.astype(np.int64), self.gt_sizes,
                           seg_sizes[seg_sizes > 0].astype(np.int64), singles)
