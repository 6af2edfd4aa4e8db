"""Fixtures shared by the tests of the ISBI 2012 metrics and of the warping error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage


def _isbi_gt(shape=(24, 24), width=2):
    """Membrane grid of ``width`` px splitting the image into 4 cells (+ border)."""
    mem = np.zeros(shape, bool)
    mem[:, shape[1] // 2 : shape[1] // 2 + width] = True
    mem[shape[0] // 2 : shape[0] // 2 + width, :] = True
    labels, n = ndimage.label(~mem)
    assert n == 4
    return mem, labels


@pytest.fixture
def isbi_gt():
    """``isbi_gt(shape=(24, 24), width=2)`` -> ``(membrane, labels)``: a membrane cross
    of ``width`` px splitting the image into 4 cells."""
    return _isbi_gt
