"""Tests for tileunet.augment.on_device: the same tiles as on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from tileunet.augment.on_device import DeviceImage, apply_on_device
from tileunet.augment.params import AugmentConfig, make_params
from tileunet.augment.resample import apply


@pytest.mark.parametrize("config", [AugmentConfig(), AugmentConfig(enabled=False),
                                    AugmentConfig(elastic_sigma=0.0, rotate=False),
                                    AugmentConfig(contrast=(2.0, 2.0), gamma=(0.5, 0.5)),
                                    AugmentConfig(weights="nearest"),
                                    AugmentConfig(zoom=(0.7, 1.4))])
def test_device_path_equals_the_numpy_path(config):
    rng = np.random.default_rng(4)
    img = rng.random((2, 70, 50), dtype=np.float32)
    tgt = rng.integers(0, 3, (70, 50))
    w = rng.random((70, 50), dtype=np.float32)
    src = DeviceImage(img, tgt, w, "cpu")
    for size in (30, 120):  # smaller and larger than the image
        p = make_params((70, 50), size, rng, config)
        x, y, ww = apply(p, img, tgt, w)
        xd, yd, wd = apply_on_device(p, src)
        np.testing.assert_allclose(xd.numpy(), x, rtol=0, atol=1e-4)
        np.testing.assert_allclose(wd.numpy(), ww, rtol=0, atol=1e-4)
        np.testing.assert_array_equal(yd.numpy(), y)


def test_device_path_refuses_what_it_cannot_do():
    img = np.zeros((1, 20, 20), np.float32)
    src = DeviceImage(img, np.zeros((20, 20)), np.ones((20, 20)), "cpu")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="bicubic"):
        apply_on_device(make_params((20, 20), 8, rng, AugmentConfig(interpolation="spline")),
                        src)
    with pytest.raises(ValueError, match="drawn for shape"):
        apply_on_device(make_params((21, 20), 8, rng), src)
    with pytest.raises(ValueError, match="must have the image's shape"):
        DeviceImage(img, np.zeros((20, 19)), np.ones((20, 20)), "cpu")
