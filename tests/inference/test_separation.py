"""Choosing the instance separation on a model's own training images."""

from __future__ import annotations

import numpy as np
import pytest

from tileunet.checkpoint import ModelFileError
from tileunet.inference.postprocess import instances_from_probability
from tileunet.inference.separation import (
    DEFAULT,
    Separation,
    candidates,
    choose_separation,
    model_separation,
    separation_options,
)


def two_touching_cells(dip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping discs of radius 15 parted by a line, and a probability that is
    high over both and over the line, or with a dip to 0.6 on it (``dip``)."""
    yy, xx = np.mgrid[:50, :80]
    left, right = (yy - 25) ** 2 + (xx - 26) ** 2 < 225, (yy - 25) ** 2 + (xx - 50) ** 2 < 225
    truth = np.where(left & (xx < 38), 1, np.where(right & (xx > 38), 2, 0)).astype(np.int32)
    prob = np.where(left | right, 0.98, 0.02)
    prob[(left | right) & (xx == 38)] = 0.6 if dip else 0.98
    return prob, truth


def test_a_merging_model_gets_the_distance_watershed():
    prob, truth = two_touching_cells(dip=False)
    assert len(np.unique(instances_from_probability(prob))) == 2  # merged: one object
    choice = choose_separation([prob], [truth], progress=False)
    assert choice.method == "watershed"
    assert choice.seg > 0.8  # merged, each cell scores about a half
    labels = instances_from_probability(prob, **choice.options)
    majority = [np.bincount(labels[truth == c]).argmax() for c in (1, 2)]
    assert 0 not in majority and majority[0] != majority[1]  # parted


def test_a_model_that_draws_the_borders_keeps_the_default():
    prob, truth = two_touching_cells(dip=True)
    choice = choose_separation([prob], [truth], progress=False)
    assert (choice.method, choice.min_distance, choice.min_size) == ("seeded", 5, 8)
    assert choice.seg > 0.9


def test_unannotated_images_are_skipped_and_nothing_annotated_gives_the_default():
    prob, truth = two_touching_cells(dip=False)
    empty = np.zeros_like(truth)
    assert choose_separation([prob], [empty], progress=False) == DEFAULT
    # an image without cells does not count against a candidate
    assert choose_separation([prob, prob], [truth, empty], progress=False) == \
        choose_separation([prob], [truth], progress=False)
    with pytest.raises(ValueError, match="2 probability maps for 1"):
        choose_separation([prob, prob], [truth])


def test_candidate_sizes_come_from_the_small_cells():
    _, truth = two_touching_cells(dip=False)
    small = 2 * np.sqrt((truth == 1).sum() / np.pi)  # the cells have the same size
    options = candidates([truth])
    assert options[0] == DEFAULT
    spacings = [c.min_distance for c in options if c.method == "watershed"]
    assert spacings == sorted({round(f * small) for f in (0.1, 0.2, 0.3, 0.45, 0.6)})
    assert {c.min_size for c in options[1:]} == {round(np.pi / 4 * small ** 2 / 16)}


def test_a_choice_at_half_scale_is_applied_at_full_size():
    half = Separation("watershed", 10, 50, 0.8)
    assert half.at_scale(0.5) == Separation("watershed", 20, 200, 0.8)
    assert "seeds 20 px apart" in half.at_scale(0.5).describe()
    assert Separation(seg=0.5).at_scale(0.5) == Separation(seg=0.5)  # the default stays


def test_stored_choices_are_read_back_and_broken_ones_named():
    chosen = Separation("components", 5, 90, 0.7)
    assert Separation.from_dict(chosen.to_dict()) == chosen
    assert model_separation({}) == DEFAULT
    assert model_separation({"separation": chosen.to_dict()}) == chosen
    for bad in ({"method": "magic"}, {"min_size": -1}, {"min_distance": 0},
                {"speed": 1}, "seeded"):
        with pytest.raises(ModelFileError, match="model.safetensors: broken separation"):
            model_separation({"separation": bad}, "model.safetensors")


def test_what_a_user_asks_for():
    stored = {"separation": Separation("watershed", 21, 300).to_dict()}
    assert separation_options("auto", extra=stored) == {
        "watershed": True, "min_distance": 21, "min_size": 300}
    assert separation_options("auto") == DEFAULT.options  # a model without a choice
    assert separation_options("watershed", extra=stored) == {
        "watershed": True, "min_distance": 5}  # asked by name: the library's default
    assert separation_options("seeded", extra=stored) == {}
    with pytest.raises(ValueError, match="min_distance is for instances='watershed'"):
        separation_options("auto", 9)
    with pytest.raises(ValueError, match="instances must be one of"):
        separation_options("magic")
