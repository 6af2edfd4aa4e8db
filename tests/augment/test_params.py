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


def test_zoom_is_drawn_last_and_only_when_asked():
    """Without a zoom range nothing more is drawn (a seed gives the tiles it gave before);
    with one, every other parameter is the same and the zoom lies in the range."""
    plain = [make_params((90, 90), 32, np.random.default_rng(3)) for _ in range(1)][0]
    same = make_params((90, 90), 32, np.random.default_rng(3), AugmentConfig(zoom=(1.0, 1.0)))
    zoomed = make_params((90, 90), 32, np.random.default_rng(3), AugmentConfig(zoom=(0.8, 1.25)))
    for p in (same, zoomed):
        assert (p.center, p.angle, p.contrast, p.gamma) == (
            plain.center, plain.angle, plain.contrast, plain.gamma)
        np.testing.assert_array_equal(p.elastic, plain.elastic)
    assert plain.zoom == same.zoom == 1.0
    rng = np.random.default_rng(0)
    draws = [make_params((9, 9), 4, rng, AugmentConfig(zoom=(0.8, 1.25))).zoom
             for _ in range(400)]
    assert 0.8 <= min(draws) < 0.85 and 1.2 < max(draws) <= 1.25
    assert abs(np.mean(np.log(draws))) < 0.03  # log-uniform about 1


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
    for zoom in (0.0, -1.0, np.inf):
        with pytest.raises(ValueError, match="zoom must be finite and > 0"):
            AugmentParams((5, 5), 3, (1, 1), zoom=zoom)


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
        {"zoom": (0.0, 1.25)},
        {"zoom": (1.25, 0.8)},
        {"interpolation": "linear"},
    ],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError):
        AugmentConfig(**kwargs)


def test_config_from_json_lists_becomes_tuples():
    config = AugmentConfig(contrast=[0.9, 1.1], gamma=[0.9, 1.1], zoom=[0.8, 1.25])
    assert config.contrast == (0.9, 1.1) and config.gamma == (0.9, 1.1)
    assert config.zoom == (0.8, 1.25)
    assert hash(config) == hash(AugmentConfig(contrast=(0.9, 1.1), gamma=(0.9, 1.1),
                                              zoom=(0.8, 1.25)))


# ----------------------------------------------------------------- properties
def test_quarter_turns_are_recognised():
    assert AugmentParams((5, 5), 3, (1, 1), angle=-270.0).is_quarter_turn
    assert not AugmentParams((5, 5), 3, (1, 1), angle=45.0).is_quarter_turn
    assert not AugmentParams((5, 5), 3, (1, 1.5), angle=90.0).is_integral
    assert not AugmentParams((5, 5), 3, (1, 1), zoom=2.0).is_integral
