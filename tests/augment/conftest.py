"""Fixtures shared by the tests of tileunet.augment."""

from __future__ import annotations

import pytest

from tileunet.augment.params import AugmentConfig


@pytest.fixture
def geometry_only() -> AugmentConfig:
    """The default augmentation without gray-value changes."""
    return AugmentConfig(contrast=(1.0, 1.0), brightness=0.0, gamma=(1.0, 1.0))
