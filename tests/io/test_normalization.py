"""Intensity normalisation (tileunet.io.normalization)."""

from __future__ import annotations

import numpy as np
import pytest

from tileunet.io.normalization import Normalization


def test_normalization_uint16_small_range():
    rng = np.random.default_rng(0)
    x = rng.integers(1000, 1101, (64, 64)).astype(np.uint16)  # 8-ish bits in 16
    y = Normalization()(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert -0.05 < np.percentile(y, 1) < 0.05 and 0.95 < np.percentile(y, 99.8) < 1.05
    m = Normalization("minmax")(x)
    assert m.min() == 0.0 and m.max() == 1.0
    n = Normalization("none")(x)
    assert n.dtype == np.float32 and n.max() == x.max()


def test_normalization_constant_and_channels():
    for method in ("percentile", "minmax"):
        y = Normalization(method)(np.full((5, 5), 7, np.uint16))
        assert np.all(y == 0.0) and np.all(np.isfinite(y))
    # a sparse image whose percentile range is zero falls back to min-max
    sparse = np.zeros((100, 100), np.uint8)
    sparse[0, 0] = 200
    y = Normalization()(sparse)
    assert y.max() == 1.0 and y.min() == 0.0
    two = np.stack([np.linspace(0, 10, 100).reshape(10, 10),
                    np.linspace(500, 600, 100).reshape(10, 10)])
    y = Normalization("minmax")(two)
    assert y.shape == (2, 10, 10)
    assert np.allclose(y.min(axis=(1, 2)), 0) and np.allclose(y.max(axis=(1, 2)), 1)


def test_normalization_config_round_trip_and_validation():
    norm = Normalization("percentile", 2.0, 98.0)
    assert Normalization.from_dict(norm.to_dict()) == norm
    with pytest.raises(ValueError, match="method must be one of"):
        Normalization("zscore")
    with pytest.raises(ValueError, match="low < high"):
        Normalization(low=50, high=10)
    with pytest.raises(ValueError, match="unknown normalization keys"):
        Normalization.from_dict({"method": "minmax", "gamma": 2})
