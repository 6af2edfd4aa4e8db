"""Layers (anything with data and name) to a training folder: checks, pairing, files."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tileunet.errors import DataError
from tileunet.io.images import read_image
from tileunet.io.pairs import load_samples
from tileunet.napari.annotations import (
    IMAGE_KEY,
    annotated,
    file_stems,
    image_for,
    layer_array,
    write_annotations,
)


def layer(name, data, **kw):
    return SimpleNamespace(name=name, data=data, metadata=kw.pop("metadata", {}), **kw)


@pytest.fixture
def cells():
    labels = np.zeros((40, 30), np.int32)
    labels[5:15, 5:15], labels[20:30, 10:25] = 1, 2
    image = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    return layer("cells", image), layer("cells labels", labels)


def test_unlabelled_value_and_ignore_layer_mark_unannotated_pixels(cells):
    image, labels = cells
    labels.data[0:4, :] = 7  # painted "not annotated"
    ignore = layer("cells ignore", np.zeros((40, 30), np.uint8))
    ignore.data[:, 28:] = 1
    a = annotated(image, labels, ignore, unlabelled=7)
    assert a.ignore[0:4].all() and a.ignore[:, 28:].all() and not a.ignore[10, 10]
    assert (a.labels[a.ignore] == 0).all() and set(np.unique(a.labels)) == {0, 1, 2}
    assert a.sources == {"image": "cells", "labels": "cells labels", "unlabelled": 7,
                         "ignore": "cells ignore"}
    assert annotated(image, labels).ignore is None  # 0: every pixel annotated


@pytest.mark.parametrize("change, message", [
    (lambda im, lab: setattr(lab, "data", lab.data[:20]), "does not match image layer"),
    (lambda im, lab: setattr(lab, "data", lab.data - 1), "non-negative integers"),
    (lambda im, lab: setattr(lab, "data", lab.data.astype(float)), "non-negative integers"),
    (lambda im, lab: im.data.__setitem__((3, 3), np.nan), "NaN or infinite"),
    (lambda im, lab: setattr(im, "data", np.zeros((2, 2, 40, 30))), "is not an image"),
])
def test_bad_layers_are_refused_with_the_layer_named(cells, change, message):
    image, labels = cells
    change(image, labels)
    with pytest.raises(DataError, match=message):
        annotated(image, labels)


def test_nothing_annotated_is_refused(cells, tmp_path):
    image, labels = cells
    with pytest.raises(DataError, match="'cells labels': no pixel is annotated"):
        annotated(image, labels, layer("all", np.ones((40, 30), np.uint8)))
    empty = annotated(image, layer("empty", np.zeros((40, 30), np.int32)))
    with pytest.raises(DataError, match="hold no objects"):
        write_annotations(tmp_path / "a", [empty], [])
    assert not (tmp_path / "a").exists()  # refused before the first file


def test_written_folder_is_what_train_reads(cells, tmp_path):
    image, labels = cells
    labels.data[0:4, :] = 9
    items = [annotated(image, labels, unlabelled=9),
             annotated(layer("cells", image.data * 2), labels)]
    argv = write_annotations(tmp_path / "a", items, ["--minutes", "1"], {"start_model": None})
    assert argv == ["--images", str(tmp_path / "a/images"), "--masks",
                    str(tmp_path / "a/masks"), "--ignore", str(tmp_path / "a/ignore"),
                    "--minutes", "1"]
    samples = load_samples(tmp_path / "a/images", tmp_path / "a/masks")
    assert [s.name for s in samples] == ["cells", "cells_2"]
    np.testing.assert_array_equal(samples[1].labels, labels.data)
    np.testing.assert_array_equal(read_image(tmp_path / "a/images/cells_2.tif"),
                                  image.data * 2)
    assert read_image(tmp_path / "a/ignore/cells.tif")[0:4].all()
    assert not (tmp_path / "a/ignore/cells_2.tif").exists()  # fully annotated
    record = json.loads((tmp_path / "a/layers.json").read_text())
    assert record["layers"][0] == {"file": "cells.tif", "image": "cells",
                                   "labels": "cells labels", "unlabelled": 9}
    assert record["command"].startswith("tileunet train --images ")
    assert record["start_model"] is None


def test_image_for_pairs_by_metadata_then_name_then_shape():
    a, b = layer("a", np.zeros((10, 10))), layer("b", np.zeros((10, 12)))
    prob = layer("a probability", np.zeros((10, 10)), metadata={IMAGE_KEY: "a"})
    images = [a, b, prob]
    assert image_for(layer("x", np.zeros((10, 10)), metadata={IMAGE_KEY: "b"}), images) is b
    assert image_for(layer("b labels", np.zeros((10, 10))), images) is b  # by name
    assert image_for(layer("Labels", np.zeros((10, 12))), images) is b  # by shape
    # the prediction beside "a" is not a second candidate of its shape
    assert image_for(layer("Labels", np.zeros((10, 10))), images) is a
    with pytest.raises(DataError, match="'Labels': several image layers of shape"):
        image_for(layer("Labels", np.zeros((10, 10))), [a, layer("c", np.zeros((10, 10)))])
    with pytest.raises(DataError, match="no image layers of shape \\(5, 5\\)"):
        image_for(layer("Labels", np.zeros((5, 5))), images)
    assert image_for(layer("ab labels", np.zeros((10, 12))), images) is b  # not "a"


def test_layer_array_takes_full_resolution_and_rgb_as_channels():
    rgb = layer("rgb", np.zeros((8, 6, 3)), rgb=True)
    assert layer_array(rgb).shape == (3, 8, 6)
    pyramid = layer("p", [np.zeros((8, 6)), np.zeros((4, 3))], multiscale=True)
    assert layer_array(pyramid).shape == (8, 6)


def test_file_stems_are_safe_and_distinct():
    assert file_stems(["cells 1", "cells/1", "..", "cells_1"]) == [
        "cells_1", "cells_1_2", "layer", "cells_1_3"]
