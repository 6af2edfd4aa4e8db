"""Tests for tileunet.training.samples with sparse annotation: strokes and whole cells
as a run's training set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tileunet.errors import DataError
from tileunet.io.images import read_image, save_image
from tileunet.io.pairs import load_samples
from tileunet.synthetic import write_synthetic_dataset
from tileunet.targets.sparse import BACKGROUND, CELL
from tileunet.training.config import ConfigError, Runtime, TrainConfig
from tileunet.training.flags import parse_train_argv
from tileunet.training.loop import train
from tileunet.training.samples import check_masks, prepare_samples


def strokes_of(instances: np.ndarray) -> np.ndarray:
    """A sparse annotation made from a dense one: a background stroke along the top
    rows, a cell stroke through the first cell, the second cell painted whole."""
    labels = np.zeros(instances.shape, np.int32)
    labels[:2][instances[:2] == 0] = BACKGROUND
    ids = [i for i in np.unique(instances) if i > 0]
    ys, xs = np.nonzero(instances == ids[0])
    labels[ys[ys == ys[len(ys) // 2]], xs[ys == ys[len(ys) // 2]]] = CELL
    labels[instances == ids[1]] = 3
    return labels


@pytest.fixture(scope="module")
def sparse_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sparse")
    images, dense = write_synthetic_dataset(root, n_images=2, shape=(96, 96),
                                            rng=np.random.default_rng(4))
    masks = root / "strokes"
    for f in sorted(dense.iterdir()):
        save_image(masks / f.name, strokes_of(read_image(f).astype(np.int32)).astype(np.uint16))
    return images, masks


def config(data, out="o", **kw) -> TrainConfig:
    images, masks = data
    return TrainConfig.from_settings(images=str(images), masks=str(masks), out=str(out),
                                     iterations=4, width=4, depth=3, tile=92, dropout=0.0,
                                     val_fraction=0.0, val_every=2, annotation="sparse",
                                     **kw)


def test_a_sparse_training_set_weights_only_the_painted_pixels(sparse_data):
    cfg = config(sparse_data)
    samples = load_samples(*sparse_data, binary_as_instances=False)
    prepared = prepare_samples(samples, cfg, None)
    for s, p in zip(samples, prepared, strict=True):
        assert (p.weights[s.labels == 0] == 0).all() and (p.weights[s.labels > 0] > 0).all()
        assert (p.target[s.labels == CELL] == 1).all()
        assert (p.target[s.labels == BACKGROUND] == 0).all()
        assert set(np.unique(p.labels)) == {0, 3}  # SEG counts the whole painted cell


def test_a_run_trains_on_strokes(sparse_data, tmp_path):
    res = train(config(sparse_data, tmp_path / "run"), runtime=Runtime(progress=False))
    assert res.iterations == 4 and not res.interrupted
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert stored["annotation"] == "sparse"


def test_strokes_of_one_class_everywhere_teach_nothing(sparse_data, tmp_path):
    samples = load_samples(*sparse_data, binary_as_instances=False)
    for s in samples:
        s.labels[s.labels > 0] = BACKGROUND
    with pytest.raises(DataError, match="no mask has an object: nothing to learn"):
        check_masks(samples, "strokes", 2, sparse=True)
    check_masks(samples, "strokes", 2)  # read as a dense mask, these are objects
    for s in samples:
        s.labels[s.labels > 0] = CELL
    with pytest.raises(DataError, match="one class everywhere: nothing to learn"):
        check_masks(samples, "strokes", 2, sparse=True)


def test_the_annotation_setting_is_checked():
    with pytest.raises(ConfigError, match="annotation must be dense or sparse"):
        TrainConfig.from_settings(images="a", masks="b", out="c", iterations=1,
                                  annotation="scribbles")
    with pytest.raises(ConfigError, match="annotation must be dense with more than two"):
        TrainConfig.from_settings(images="a", masks="b", out="c", iterations=1,
                                  annotation="sparse", num_classes=3)
    request = parse_train_argv(["--images", "a", "--masks", "b", "--out", "c",
                                "--iterations", "1", "--annotation", "sparse"])
    assert request.settings["annotation"] == "sparse"
