"""Touching cells for the tests of the training targets and the weight map.

The generators are fixtures that return the function, so that a test calls it with the
shape, count and random generator it needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy import ndimage as ndi


def voronoi_cells(
    shape: tuple[int, int], count: int, rng: np.random.Generator, fill: float = 0.6
) -> np.ndarray:
    """Touching cells: Voronoi regions of random seeds, cut to discs, random large ids."""
    seeds = np.ones(shape, dtype=bool)
    ys, xs = rng.integers(0, shape[0], count), rng.integers(0, shape[1], count)
    seeds[ys, xs] = False
    distance, (iy, ix) = ndi.distance_transform_edt(seeds, return_indices=True)
    ids = np.zeros(shape, dtype=np.int64)
    ids[ys, xs] = rng.choice(np.arange(1, 10**6), size=count, replace=False)
    labels = ids[iy, ix]
    labels[distance > fill * math.sqrt(shape[0] * shape[1] / count)] = 0
    return labels


def random_disks(shape: tuple[int, int], count: int, rng: np.random.Generator) -> np.ndarray:
    """Overlapping discs painted one over another: touching cells of varied shape."""
    labels = np.zeros(shape, dtype=np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for cell_id in rng.choice(np.arange(3, 5000, 7), size=count, replace=False):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        radius = rng.uniform(2.0, 9.0)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = cell_id
    return labels


@pytest.fixture(name="voronoi_cells")
def voronoi_cells_fixture() -> Callable[..., np.ndarray]:
    """:func:`voronoi_cells`, for a test to call."""
    return voronoi_cells


@pytest.fixture(name="random_disks")
def random_disks_fixture() -> Callable[..., np.ndarray]:
    """:func:`random_disks`, for a test to call."""
    return random_disks
