"""The napari plugin without a display: its manifest, and the function behind its widget."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tileunet import UNet, predict
from tileunet.checkpoint import save_model
from tileunet.data import Normalization
from tileunet.napari_plugin import segment_layer
from tileunet.postprocess import instances_from_probability

MANIFEST = Path(__file__).resolve().parents[1] / "src" / "tileunet" / "napari.yaml"


def test_manifest_is_valid_and_its_commands_import():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManifest.from_file(MANIFEST)
    assert pm.name == "tileunet"
    assert [w.command for w in pm.contributions.widgets] == ["tileunet.segment"]
    pm.validate_imports()  # every python_name resolves


def test_the_package_declares_the_manifest():
    text = (MANIFEST.parents[2] / "pyproject.toml").read_text()
    assert '[project.entry-points."napari.manifest"]' in text
    assert 'tileunet = "tileunet:napari.yaml"' in text
    assert 'tileunet = ["napari.yaml"]' in text  # shipped as package data


@pytest.fixture
def model(tmp_path) -> tuple[UNet, Path]:
    torch.manual_seed(0)
    net = UNet(depth=3, width=4, dropout=0.0).eval()
    path = tmp_path / "m.safetensors"
    save_model(path, net, {"normalization": Normalization().to_dict()})
    return net, path


def test_widget_function_adds_probability_and_instances(model, rng):
    net, path = model
    data = (rng.random((70, 60)) * 4000).astype(np.uint16)
    layer = SimpleNamespace(data=data, name="cells", scale=(0.5, 0.25), rgb=False)
    (prob, pmeta, pkind), (labels, lmeta, lkind) = segment_layer(layer, path, threshold=0.5)
    want = predict(net, Normalization()(data), progress=False)[1]
    np.testing.assert_array_equal(prob, want)
    np.testing.assert_array_equal(labels, instances_from_probability(want, threshold=0.5))
    assert (pkind, lkind) == ("image", "labels")
    assert pmeta["scale"] == lmeta["scale"] == (0.5, 0.25)
    assert pmeta["name"] == "cells probability" and lmeta["name"] == "cells instances"


def test_widget_function_rejects_a_layer_that_does_not_fit(model):
    _, path = model
    layer = SimpleNamespace(data=np.zeros((2, 30, 30)), name="two", scale=(1, 1, 1), rgb=False)
    with pytest.raises(ValueError, match="layer 'two': shape \\(2, 30, 30\\)"):
        segment_layer(layer, path)
