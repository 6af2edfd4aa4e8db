"""The napari plugin without a display: its manifest, the function behind its widget, and
its reader of prediction stores."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tileunet import UNet, predict
from tileunet.checkpoint import save_model
from tileunet.inference.postprocess import instances_from_probability
from tileunet.io.normalization import Normalization
from tileunet.napari.plugin import get_reader, read_output, segment_layer

MANIFEST = Path(__file__).resolve().parents[2] / "src" / "tileunet" / "napari" / "napari.yaml"


def test_manifest_is_valid_and_its_commands_import():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManifest.from_file(MANIFEST)
    assert pm.name == "tileunet"
    assert [w.command for w in pm.contributions.widgets] == ["tileunet.segment", "tileunet.train"]
    assert [r.command for r in pm.contributions.readers] == ["tileunet.read_output"]
    pm.validate_imports()  # every python_name resolves


def test_the_package_declares_the_manifest():
    text = (MANIFEST.parents[3] / "pyproject.toml").read_text()
    assert '[project.entry-points."napari.manifest"]' in text
    assert 'tileunet = "tileunet.napari:napari.yaml"' in text
    assert '"tileunet.napari" = ["napari.yaml"]' in text  # shipped as package data


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
    # an image this small is cheap to predict 8 times: "auto" averages the flips/rotations
    want = predict(net, Normalization()(data), tta=True, progress=False)[1]
    np.testing.assert_array_equal(prob, want)
    np.testing.assert_array_equal(labels, instances_from_probability(want, threshold=0.5))
    assert (pkind, lkind) == ("image", "labels")
    assert pmeta["scale"] == lmeta["scale"] == (0.5, 0.25)
    assert pmeta["name"] == "cells probability" and lmeta["name"] == "cells instances"
    # both name their image: the Train widget pairs corrected instances with it
    assert pmeta["metadata"] == lmeta["metadata"] == {"tileunet_image": "cells"}


def test_widget_function_segments_a_pyramid_at_full_resolution(model, rng):
    net, path = model
    data = (rng.random((64, 48)) * 4000).astype(np.uint16)
    layer = SimpleNamespace(data=[data, data[::2, ::2]], multiscale=True, name="pyr",
                            scale=(1.0, 1.0), rgb=False)
    (prob, _, _), (labels, _, _) = segment_layer(layer, path, tta=False)
    want = predict(net, Normalization()(data), progress=False)[1]
    np.testing.assert_array_equal(prob, want)
    assert labels.shape == (64, 48)


def test_widget_function_rejects_a_tta_it_does_not_know(model):
    _, path = model
    layer = SimpleNamespace(data=np.zeros((30, 30)), name="c", scale=(1, 1), rgb=False)
    with pytest.raises(ValueError, match="tta must be True, False or 'auto'"):
        segment_layer(layer, path, tta="yes")


def test_widget_function_rejects_a_layer_that_does_not_fit(model):
    _, path = model
    layer = SimpleNamespace(data=np.zeros((2, 30, 30)), name="two", scale=(1, 1, 1), rgb=False)
    with pytest.raises(ValueError, match="layer 'two': shape \\(2, 30, 30\\)"):
        segment_layer(layer, path)


@pytest.mark.parametrize("name", ["out.zarr", "out.ome.zarr"])
def test_reader_opens_prediction_stores_lazily_at_their_pixel_size(model, rng, tmp_path, name):
    pytest.importorskip("zarr")
    tifffile = pytest.importorskip("tifffile")
    from tileunet.inference.blockwise import segment_to_zarr

    _, path = model
    img = (rng.random((50, 40)) * 4000).astype(np.uint16)
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, img, resolution=(1 / 0.25, 1 / 0.5),
                     imagej=True, metadata={"unit": "um"})  # pixel 0.5 x 0.25 um
    out = segment_to_zarr(path, src, tmp_path / name, block=24, tile=44, progress=False)
    assert get_reader(str(out)) is read_output
    assert get_reader([str(out)]) is read_output
    (prob, pmeta, pkind), (labels, lmeta, lkind), (mask, mmeta, mkind) = read_output(out)
    assert (pkind, lkind, mkind) == ("image", "labels", "labels")
    assert all(hasattr(a, "dask") for d in (prob, labels, mask)  # not read yet
               for a in (d if isinstance(d, list) else [d]))
    import zarr

    g = zarr.open_group(str(out), mode="r")
    if name == "out.ome.zarr":  # every level of the pyramid (50x40 -> 25x20)
        assert pmeta["multiscale"] and lmeta["multiscale"] and mmeta["multiscale"]
        assert [a.shape for a in prob] == [a.shape for a in labels] == [(50, 40), (25, 20)]
        np.testing.assert_array_equal(prob[0].compute(), g["0"][0])
        np.testing.assert_array_equal(prob[1].compute(), g["1"][0])
        np.testing.assert_array_equal(labels[1].compute(), g["labels/instances/1"][...])
        labels = labels[0]
        assert pmeta["scale"] == lmeta["scale"] == mmeta["scale"] == (0.5, 0.25)
        assert pmeta["units"] == "micrometer"
    else:  # a plain store: one level, no pixel size
        assert not pmeta["multiscale"]
        np.testing.assert_array_equal(prob.compute(), g["probability"][...])
        np.testing.assert_array_equal(mask.compute(), g["mask"][...])
        assert pmeta["scale"] == (1.0, 1.0) and "units" not in pmeta
    assert lmeta["name"] == "out instances" and mmeta["name"] == "out mask"
    assert labels.compute().max() > 0


def test_reader_declines_what_it_did_not_write(tmp_path):
    zarr = pytest.importorskip("zarr")
    zarr.create_array(str(tmp_path / "other.zarr"), shape=(4, 4), dtype="uint8")
    (tmp_path / "folder.zarr").mkdir()
    (tmp_path / "bad.zarr").mkdir()
    (tmp_path / "bad.zarr" / "zarr.json").write_text("{not json")
    for p in ("other.zarr", "folder.zarr", "bad.zarr", "missing.zarr"):
        assert get_reader(str(tmp_path / p)) is None
    assert get_reader([str(tmp_path / "other.zarr")] * 2) is None
