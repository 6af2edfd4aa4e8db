"""Tests for the working resolution (tileunet.inference.scale) and the models trained at one."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile
import torch

from tileunet.checkpoint import load_model, save_model
from tileunet.inference.overlap import predict
from tileunet.inference.scale import (
    check_scale,
    image_to_scale,
    labels_to_scale,
    predict_at_scale,
    probabilities_to_shape,
    working_shape,
)
from tileunet.model import UNet


def tiny() -> UNet:
    torch.manual_seed(0)
    return UNet(depth=3, width=4, dropout=0.0).eval()


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, math.nan, math.inf])
def test_bad_scales_are_refused(bad):
    with pytest.raises(ValueError, match=r"scale must be in \(0, 1\]"):
        check_scale(bad)
    assert check_scale(1) == 1.0 and check_scale(0.25) == 0.25


def test_shapes_at_a_scale():
    assert working_shape((512, 511), 0.5) == (256, 256)
    assert working_shape((3, 1), 0.1) == (1, 1)
    img = np.full((2, 40, 30), 7.0, np.float32)
    small = image_to_scale(img, 0.5)
    assert small.shape == (2, 20, 15) and small.dtype == np.float32
    np.testing.assert_allclose(small, 7.0, rtol=1e-6)  # a flat image stays flat
    assert image_to_scale(img, 1.0) is img


def test_labels_keep_their_ids_and_type():
    labels = np.zeros((64, 64), np.int32)
    labels[4:30, 4:30] = 3
    labels[30:60, 10:50] = 9
    small = labels_to_scale(labels, 0.5)
    assert small.shape == (32, 32) and small.dtype == np.int32
    assert set(np.unique(small)) == {0, 3, 9}
    assert labels_to_scale(labels > 0, 0.5).dtype == bool


def test_probabilities_come_back_summing_to_one(rng):
    p = rng.random((1, 10, 12)).astype(np.float32)
    probs = np.concatenate([p, 1 - p])
    full = probabilities_to_shape(probs, (21, 25))
    assert full.shape == (2, 21, 25) and full.dtype == np.float32
    np.testing.assert_allclose(full.sum(axis=0), 1.0, atol=1e-6)
    assert full.min() >= 0 and full.max() <= 1


def test_predict_at_scale(rng):
    net = tiny()
    image = rng.normal(size=(37, 50)).astype(np.float32)
    np.testing.assert_array_equal(predict_at_scale(net, image, 1.0, progress=False),
                                  predict(net, image, progress=False))
    half = predict_at_scale(net, image, 0.5, progress=False)
    assert half.shape == (2, 37, 50)
    np.testing.assert_allclose(half.sum(axis=0), 1.0, atol=1e-5)
    # at half scale the network sees the resampled image: the same as predicting that
    small = predict(net, image_to_scale(image[None], 0.5), progress=False)
    np.testing.assert_array_equal(probabilities_to_shape(small, (37, 50)), half)
    out = np.zeros((1, 37, 50), np.float32)
    assert predict_at_scale(net, image, 0.5, channels=[1], out=out, progress=False) is out
    np.testing.assert_array_equal(out[0], half[1])
    with pytest.raises(ValueError, match="context=True needs scale 1"):
        predict_at_scale(net, image, 0.5, context=True, progress=False)


@pytest.fixture
def half_scale_model(tmp_path):
    path = tmp_path / "half.safetensors"
    save_model(path, tiny(), {"scale": 0.5, "normalization": {"method": "none"}})
    return path


def test_cli_predict_of_a_half_scale_model_gives_full_size_outputs(half_scale_model,
                                                                      tmp_path, rng):
    from tileunet.cli import main

    img = (rng.random((70, 90)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", img)
    assert main(["-q", "predict", str(half_scale_model), str(tmp_path / "a.tif"), "-o",
                 str(tmp_path / "out"), "--no-tta"]) == 0
    prob = tifffile.imread(tmp_path / "out" / "a_prob.tif")
    assert prob.shape == (70, 90)
    net, _ = load_model(half_scale_model)
    want = predict_at_scale(net, img.astype(np.float32), 0.5, channels=[1], progress=False)
    np.testing.assert_allclose(prob, want[0], atol=1e-6)


def test_exports_and_blocks_refuse_a_model_at_another_scale(half_scale_model, tmp_path):
    from tileunet.export.onnx import export_onnx
    from tileunet.inference.blockwise import segment_to_zarr

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="scale 1 only"):
        segment_to_zarr(half_scale_model, tmp_path / "a.tif", tmp_path / "o.zarr")
    with pytest.raises(ValueError, match="scale 1 only"):
        export_onnx(half_scale_model, tmp_path / "m.onnx")


def test_training_at_half_scale(tmp_path):
    from tileunet.synthetic import write_synthetic_dataset
    from tileunet.training.config import Runtime, TrainConfig
    from tileunet.training.loop import train

    images, masks = write_synthetic_dataset(tmp_path / "d", n_images=3, shape=(120, 112),
                                            rng=np.random.default_rng(3))
    res = train(TrainConfig.from_settings(images=str(images), masks=str(masks),
                                          out=str(tmp_path / "r"), iterations=2, width=4,
                                          depth=3, tile=92, dropout=0.0, scale=0.5),
                runtime=Runtime(progress=False))
    assert res.iterations == 2
    _, extra = load_model(tmp_path / "r")
    assert extra["scale"] == 0.5
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["scale"] == 0.5 and config["train"]["scale"] == 0.5
    with pytest.raises(ValueError, match="scale"):
        TrainConfig(images="a", masks="b", out="c", iterations=1, scale=2.0)
