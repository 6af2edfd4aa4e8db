"""Tests for tileunet.augment.gray: gray values change the image only, as documented."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tileunet.augment.params import identity_params, make_params
from tileunet.augment.resample import apply


def test_gray_value_changes_touch_only_the_image(rng, geometry_only):
    image = rng.normal(size=(1, 40, 40)).astype(np.float32)  # normalised: negative values
    target = rng.integers(0, 3, (40, 40))
    weights = rng.random((40, 40), dtype=np.float32)
    base = make_params(image.shape[1:], 32, rng, geometry_only)
    gray = dataclasses.replace(base, contrast=1.2, brightness=0.05, gamma=0.8)
    x0, y0, w0 = apply(base, image, target, weights)
    x1, y1, w1 = apply(gray, image, target, weights)
    assert np.array_equal(y0, y1) and np.array_equal(w0, w1)
    assert not np.allclose(x0, x1)
    assert np.isfinite(x1).all() and x1.dtype == np.float32


def test_gamma_keeps_the_range_contrast_keeps_the_mean(rng):
    image = rng.normal(size=(30, 30)).astype(np.float32) - 3.0  # all negative-ish
    crop = dataclasses.replace(identity_params(image.shape, 30, (15, 15)))
    x0, _, _ = apply(crop, image)
    xg, _, _ = apply(dataclasses.replace(crop, gamma=1.25), image)
    assert xg.min() == pytest.approx(x0.min(), abs=1e-5)
    assert xg.max() == pytest.approx(x0.max(), abs=1e-5)
    assert xg.mean() < x0.mean()  # gamma > 1 darkens
    xc, _, _ = apply(dataclasses.replace(crop, contrast=1.5), image)
    assert xc.mean() == pytest.approx(x0.mean(), abs=1e-4)
    assert xc.std() == pytest.approx(1.5 * x0.std(), rel=1e-4)
    xb, _, _ = apply(dataclasses.replace(crop, brightness=0.1), image)
    np.testing.assert_allclose(xb - x0, 0.1 * np.ptp(x0), atol=1e-5)
