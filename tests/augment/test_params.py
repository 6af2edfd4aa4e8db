"""Tests for tileunet.augment.params: the configuration and the random parameters drawn
once per tile."""

from __future__ import annotations

import numpy as np
import pytest

from tileunet.augment.params import AugmentConfig, AugmentParams, identity_params, make_params


# -------------------------------------------------------------------- drawing
def test_coarse_displacements_have_the_papers_statistics(rng):
    draws = np.stack([make_params((100, 100), 64, rng).elastic for _ in range(2000)])
    assert draws.shape == (2000, 2, 3, 3)
    assert abs(draws.std() - 10.0) < 0.3
    assert abs(draws.mean()) < 0.3
    sigma5 = np.stack(
        [make_params((10, 10), 8, rng, AugmentConfig(elastic_sigma=5.0, elastic_points=4)).elastic
         for _ in range(500)]
    )
    assert sigma5.shape[1:] == (2, 4, 4) and abs(sigma5.std() - 5.0) < 0.2
    assert not make_params((10, 10), 8, rng, AugmentConfig(elastic_sigma=0.0)).elastic.any()


def test_default_gray_changes_are_mild(rng):
    for _ in range(200):
        p = make_params((10, 10), 8, rng)
        assert 0.8 <= p.contrast <= 1.25 and 0.8 <= p.gamma <= 1.25
        assert abs(p.brightness) <= 0.1
        assert 0.0 <= p.angle < 360.0


# ------------------------------------------------------------------ bad inputs
def test_bad_params_raise_value_error(rng):
    with pytest.raises(ValueError, match="image_shape"):
        make_params((0, 5), 4, rng)
    with pytest.raises(ValueError, match="center must be finite"):
        identity_params((5, 5), 3, (np.nan, 1))
    with pytest.raises(ValueError, match=r"elastic must have shape"):
        AugmentParams((5, 5), 3, (1, 1), elastic=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="interpolation must be one of"):
        AugmentParams((5, 5), 3, (1, 1), interpolation="cubic")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"elastic_sigma": -1.0},
        {"elastic_points": 0},
        {"max_shift": -2.0},
        {"brightness": -0.1},
        {"contrast": (1.2, 0.8)},
        {"gamma": (0.0, 1.0)},
        {"gamma": (1.0,)},
        {"interpolation": "linear"},
    ],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError):
        AugmentConfig(**kwargs)


def test_config_from_json_lists_becomes_tuples():
    config = AugmentConfig(contrast=[0.9, 1.1], gamma=[0.9, 1.1])
    assert config.contrast == (0.9, 1.1) and config.gamma == (0.9, 1.1)
    assert hash(config) == hash(AugmentConfig(contrast=(0.9, 1.1), gamma=(0.9, 1.1)))


# ----------------------------------------------------------------- properties
def test_quarter_turns_are_recognised():
    assert AugmentParams((5, 5), 3, (1, 1), angle=-270.0).is_quarter_turn
    assert not AugmentParams((5, 5), 3, (1, 1), angle=45.0).is_quarter_turn
    assert not AugmentParams((5, 5), 3, (1, 1.5), angle=90.0).is_integral
