"""Tests for tileunet.targets.weightmap (paper eq. 2) and the weight-map figure."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
from PIL import Image

from tileunet.plots import save_weight_map_figure
from tileunet.targets import instances, weightmap
from tileunet.targets.instances import training_target
from tileunet.targets.weightmap import (
    CUTOFF_RELATIVE,
    border_cutoff,
    class_weight_map,
    weight_map,
    weight_map_reference,
)


# ----------------------------------------------------------------------------- helpers
def two_pixel_cells() -> np.ndarray:
    labels = np.zeros((5, 9), dtype=np.int32)
    labels[2, 1] = 3
    labels[2, 7] = 8
    return labels


# ----------------------------------------------------------------------- class weights
def test_class_weight_map_balanced_golden() -> None:
    target = np.array([[0, 0, 0], [0, 1, 1]])
    w = class_weight_map(target, "balanced")
    assert w.dtype == np.float32
    # N = 6, K = 2: background 6 / (2 * 4) = 0.75, cells 6 / (2 * 2) = 1.5
    np.testing.assert_allclose(w, [[0.75, 0.75, 0.75], [0.75, 1.5, 1.5]])
    assert w.mean() == pytest.approx(1.0)


def test_class_weight_map_single_class_present_is_one() -> None:
    np.testing.assert_array_equal(class_weight_map(np.zeros((3, 3), np.uint8)), np.ones((3, 3)))


def test_class_weight_map_none_and_sequence() -> None:
    target = np.array([[0, 1], [2, 1]])
    np.testing.assert_array_equal(class_weight_map(target, None, num_classes=3), np.ones((2, 2)))
    np.testing.assert_allclose(
        class_weight_map(target, [0.5, 2.0, 4.0], num_classes=3), [[0.5, 2.0], [4.0, 2.0]]
    )
    balanced = class_weight_map(target, "balanced", num_classes=3)
    assert balanced.mean() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("target", "weights", "num_classes", "message"),
    [
        (np.array([[0, 1]]), "inverse", 2, "balanced"),
        (np.array([[0, 1]]), [1.0], 2, "one weight per class"),
        (np.array([[0, 1]]), ["a", "b"], 2, "sequence of 2 numbers"),
        (np.array([[-1, 1]]), None, 2, r"got range \[-1, 1\]"),
        (np.array([[0, 1]]), [1.0, -2.0], 2, ">= 0"),
        (np.array([[0, 1]]), [1.0, np.inf], 2, "finite"),
        (np.array([[0, 2]]), None, 2, r"\[0, 2\)"),
        (np.array([[0.0, 1.0]]), None, 2, "integer"),
        (np.array([[0, 1]]), None, 0, "at least 1"),
        (np.array([[0, 1]]), None, 2.0, "integer"),
    ],
)
def test_class_weight_map_rejects_bad_input(target, weights, num_classes, message) -> None:
    with pytest.raises(ValueError, match=message):
        class_weight_map(target, weights, num_classes=num_classes)


# -------------------------------------------------------------------------- weight map
def test_weight_map_two_pixel_cells_golden() -> None:
    labels = two_pixel_cells()
    w = weight_map(labels, class_weights=None)
    assert w.dtype == np.float32 and w.shape == labels.shape
    # half-way between the cells (6 px apart): d1 = d2 = 3
    assert w[2, 4] == pytest.approx(1 + 10 * math.exp(-36 / 50), abs=1e-6)
    # two rows up: d1 = d2 = sqrt(2**2 + 3**2), (d1 + d2)**2 = 4 * 13
    assert w[0, 4] == pytest.approx(1 + 10 * math.exp(-52 / 50), abs=1e-6)
    # next to cell 3: d1 = 1, d2 = 5
    assert w[2, 2] == pytest.approx(1 + 10 * math.exp(-36 / 50), abs=1e-6)
    # cell pixels: class weight only
    assert w[2, 1] == 1.0 and w[2, 7] == 1.0
    # other parameters
    w = weight_map(labels, w0=3.0, sigma=2.0, class_weights=None)
    assert w[2, 4] == pytest.approx(1 + 3 * math.exp(-36 / 8), abs=1e-6)


def test_weight_map_two_pixel_cells_balanced() -> None:
    labels = two_pixel_cells()
    w = weight_map(labels)
    # N = 45 pixels, 2 cell pixels, 43 background pixels, K = 2
    assert w[2, 1] == pytest.approx(45 / (2 * 2))
    assert w[2, 4] == pytest.approx(45 / (2 * 43) + 10 * math.exp(-36 / 50), abs=1e-6)
    # a binary version of the same mask gives the same map
    np.testing.assert_allclose(weight_map((labels > 0).astype(np.uint8) * 255), w, atol=1e-6)
    # an explicit sequence
    w = weight_map(labels, class_weights=[0.25, 4.0])
    assert w[2, 7] == pytest.approx(4.0)
    # corner pixel (4, 0): d1 = sqrt(2**2 + 1**2), d2 = sqrt(2**2 + 7**2)
    expected = 0.25 + 10 * math.exp(-((math.sqrt(5) + math.sqrt(53)) ** 2) / 50)
    assert w[4, 0] == pytest.approx(expected, abs=1e-6)


def test_weight_map_on_a_separation_border_pixel() -> None:
    labels = np.zeros((5, 7), dtype=np.int32)
    labels[1:4, 1:3] = 1
    labels[1:4, 3:6] = 2  # touches cell 1; the larger cell 2 gives up column 3
    w = weight_map(labels, class_weights=None)
    assert training_target(labels)[2, 3] == 0
    assert w[2, 3] == pytest.approx(1 + 10 * math.exp(-4 / 50), abs=1e-6)  # d1 = d2 = 1
    assert w[2, 4] == 1.0  # still a cell pixel


@pytest.mark.parametrize(
    "labels",
    [
        np.zeros((20, 30), dtype=np.int32),
        np.pad(np.full((5, 5), 7), 6),
        np.pad(np.full((5, 5), 255, dtype=np.uint8), 6),
    ],
    ids=["empty", "one-cell", "one-binary-cell"],
)
def test_weight_map_without_two_cells_has_no_border_term(labels: np.ndarray) -> None:
    w = weight_map(labels, class_weights=None)
    np.testing.assert_array_equal(w, np.ones(labels.shape, dtype=np.float32))
    w = weight_map(labels)
    assert np.all(np.isfinite(w))
    np.testing.assert_allclose(w, class_weight_map(training_target(labels)))
    np.testing.assert_allclose(weight_map_reference(labels), w)


def test_weight_map_w0_zero_is_class_weights(rng: np.random.Generator,
                                             voronoi_cells) -> None:
    labels = voronoi_cells((48, 48), 10, rng)
    np.testing.assert_allclose(
        weight_map(labels, w0=0.0), class_weight_map(training_target(labels)), atol=0
    )


def test_weight_map_cutoff_is_exact_zero() -> None:
    labels = np.zeros((3, 33), dtype=np.int32)
    labels[1, 2], labels[1, 30] = 1, 2  # 28 px apart: just beyond the cutoff for sigma = 5
    assert 26 < border_cutoff(5.0) < 28
    w = weight_map(labels, class_weights=None)
    np.testing.assert_array_equal(w, np.ones_like(w))  # exactly, though 10 exp(-28**2 / 50) > 0
    assert weight_map_reference(labels, class_weights=None)[1, 16] > 1.0
    assert 10 * math.exp(-(border_cutoff(5.0) ** 2) / 50) == pytest.approx(10 * CUTOFF_RELATIVE)


@pytest.mark.parametrize(
    ("seed", "kind", "sigma", "w0"),
    [
        (0, "voronoi", 5.0, 10.0),
        (1, "voronoi", 3.0, 10.0),
        (2, "voronoi", 12.0, 25.0),  # crops reach the image border
        (3, "disks", 5.0, 10.0),
        (4, "disks", 2.0, 5.0),
        (5, "sparse", 4.0, 10.0),  # cells far apart: many crops do not meet
    ],
)
def test_weight_map_matches_reference(seed: int, kind: str, sigma: float, w0: float,
                                      voronoi_cells, random_disks) -> None:
    rng = np.random.default_rng(seed)
    if kind == "voronoi":
        labels = voronoi_cells((90, 110), 25, rng)
    elif kind == "disks":
        labels = random_disks((100, 100), 70, rng)
    else:
        labels = voronoi_cells((120, 120), 12, rng, fill=0.12)
    fast = weight_map(labels, w0=w0, sigma=sigma)
    slow = weight_map_reference(labels, w0=w0, sigma=sigma)
    assert fast.dtype == slow.dtype == np.float32
    assert np.all(np.isfinite(fast))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-4)
    assert fast.max() > 1.5 * fast.min()  # the border term is really there


def test_weight_map_crop_margin_is_just_enough() -> None:
    # a background pixel next to one cell (d1 = 1) whose second cell is d2 = 19 away,
    # with d1 + d2 = 20 just inside the cutoff T = 20.5: the second cell's crop must
    # reach 19 px beyond its box
    sigma = 20.5 / math.sqrt(2 * math.log(1 / CUTOFF_RELATIVE))
    assert border_cutoff(sigma) == pytest.approx(20.5)
    labels = np.zeros((11, 31), dtype=np.int32)
    labels[5, 5], labels[5, 25] = 1, 2
    w = weight_map(labels, sigma=sigma, class_weights=[0.0, 0.0])
    expected = 10 * math.exp(-(20**2) / (2 * sigma**2))
    assert w[5, 6] == pytest.approx(expected, rel=1e-5)
    assert w[5, 24] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_weight_map_is_exact_below_the_cutoff(seed: int, voronoi_cells,
                                              random_disks) -> None:
    # with zero class weights the map is the border term alone: compare it relatively
    rng = np.random.default_rng(seed)
    labels = random_disks((80, 80), 40, rng) if seed else voronoi_cells((80, 80), 20, rng)
    fast = weight_map(labels, sigma=3.0, class_weights=[0.0, 0.0])
    slow = weight_map_reference(labels, sigma=3.0, class_weights=[0.0, 0.0])
    floor = 10.0 * CUTOFF_RELATIVE
    above, below = slow > floor * 1.001, slow < floor * 0.999
    assert above.sum() > 100 and below.sum() > 100
    np.testing.assert_allclose(fast[above], slow[above], rtol=1e-5)
    assert np.all(fast[below] == 0)


def test_weight_map_matches_reference_with_huge_and_split_ids() -> None:
    labels = np.zeros((60, 70), dtype=np.int64)
    labels[5:15, 5:15] = 2_000_000_000
    labels[5:15, 15:22] = 1_999_999_999  # touching
    labels[40:50, 8:14] = 2_000_000_000  # the same id far away: one cell in two pieces
    labels[30:38, 50:60] = 12
    fast = weight_map(labels, sigma=4.0)
    np.testing.assert_allclose(fast, weight_map_reference(labels, sigma=4.0), atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"w0": -1.0}, "w0"),
        ({"w0": float("inf")}, "w0"),
        ({"w0": "ten"}, "numbers"),
        ({"class_weights": "uniform"}, "balanced"),
        ({"class_weights": [1.0, 2.0, 3.0]}, "one weight per class"),
    ],
)
def test_weight_map_rejects_bad_parameters(kwargs: dict, message: str) -> None:
    for function in (weight_map, weight_map_reference):
        with pytest.raises(ValueError, match=message):
            function(two_pixel_cells(), **kwargs)


def test_weight_map_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="2-D"):
        weight_map(np.zeros((2, 4, 4), dtype=np.int32))


# ---------------------------------------------------------------------------- figure
def test_save_weight_map_figure_writes_a_png(tmp_path, rng: np.random.Generator,
                                            voronoi_cells) -> None:
    labels = voronoi_cells((64, 80), 12, rng)
    path = tmp_path / "weights.png"
    path.write_bytes(b"old")  # replaced, not appended to
    save_weight_map_figure(labels, weight_map(labels), path, title="test")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] > 100 and image.size[1] > 100
    assert os.listdir(tmp_path) == ["weights.png"]


def test_save_weight_map_figure_leaves_nothing_on_failure(tmp_path, monkeypatch) -> None:
    from matplotlib.figure import Figure

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_weight_map_figure(two_pixel_cells(), np.ones((5, 9)), tmp_path / "w.png")
    assert os.listdir(tmp_path) == []


def test_save_weight_map_figure_rejects_mismatched_shapes(tmp_path) -> None:
    with pytest.raises(ValueError, match="shape"):
        save_weight_map_figure(two_pixel_cells(), np.ones((4, 9)), tmp_path / "w.png")
    with pytest.raises(ValueError, match="finite"):
        save_weight_map_figure(two_pixel_cells(), np.full((5, 9), np.nan), tmp_path / "w.png")
    assert os.listdir(tmp_path) == []


def test_save_weight_map_figure_needs_an_existing_folder(tmp_path) -> None:
    with pytest.raises(ValueError, match="existing folder"):
        save_weight_map_figure(two_pixel_cells(), np.ones((5, 9)), tmp_path / "no" / "w.png")


# ------------------------------------------------------------------ the 0.1 path
def test_the_old_module_path_reads_the_names_of_the_new_modules(monkeypatch):
    """``tileunet.weights`` of 0.1 held instances and the weight map, for one release."""
    monkeypatch.delitem(sys.modules, "tileunet.weights", raising=False)
    with pytest.warns(DeprecationWarning, match="tileunet.weights is now tileunet.targets"):
        from tileunet.weights import to_instances
        from tileunet.weights import weight_map as old_weight_map
    assert old_weight_map is weightmap.weight_map is weight_map
    assert to_instances is instances.to_instances
    with pytest.raises(AttributeError, match="no attribute '_separate'"):
        sys.modules["tileunet.weights"]._separate  # noqa: B018
