"""Tests for tileunet.napari.preview: the part of an image in view predicted with a live
run's latest weights (no viewer needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tileunet.inference.overlap import predict
from tileunet.inference.scale import predict_at_scale
from tileunet.io.normalization import Normalization
from tileunet.model import UNet
from tileunet.napari.preview import LivePreview


def a_run(tmp_path, scale: float = 1.0):
    """A run folder as the trainer writes it before its first step, and weights."""
    torch.manual_seed(1)
    net = UNet(depth=3, width=4, dropout=0.0).eval()
    (tmp_path / "config.json").write_text(json.dumps(
        {"model": net.config.to_dict(), "normalization": Normalization().to_dict(),
         "scale": scale}))
    return net, {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_the_view_is_predicted_as_the_whole_image_is_there(tmp_path, scale):
    net, weights = a_run(tmp_path, scale)
    preview = LivePreview(tmp_path)
    raw = (np.random.default_rng(2).random((90, 100)) * 200).astype(np.uint8)
    assert not preview.has_new() and preview.predict(raw, (0, 10, 0, 10)) is None
    preview.offer(weights, 7)
    assert preview.has_new()
    probs, (y0, y1, x0, x1), step = preview.predict(raw, (20, 50, 30, 61))
    assert step == 7 and not preview.has_new()
    assert y0 <= 20 and y1 >= 50 and x0 <= 30 and x1 >= 61
    x = Normalization()(raw)
    whole = (predict(net, x, channels=[1], progress=False) if scale == 1.0 else
             predict_at_scale(net, x, scale, channels=[1], progress=False))[0]
    inner = (slice(y0 - y0 + 2, y1 - y0 - 2), slice(2, x1 - x0 - 2))  # away from the
    if scale == 1.0:  # resampled box's edges, where interpolation reads outside it
        inner = (slice(None), slice(None))
    np.testing.assert_allclose(probs[inner], whole[y0:y1, x0:x1][inner], atol=1e-4)
    preview.offer(weights, 8)
    assert preview.has_new()


def test_a_view_that_moved_on_stops_its_prediction(tmp_path):
    _, weights = a_run(tmp_path)
    preview = LivePreview(tmp_path, tile=76, batch_size=1)  # 36 px out: 16 tiles of the view
    preview.offer(weights, 3)
    raw = (np.random.default_rng(4).random((200, 200)) * 200).astype(np.uint8)
    box = (0, 120, 0, 120)
    asked = []

    def moved_after_the_first_batch() -> bool:
        asked.append(1)
        return len(asked) < 3
    assert preview.predict(raw, box, moved_after_the_first_batch) is None
    assert len(asked) == 3  # before the first batch, after it, and it stopped there
    assert preview.has_new()  # nothing shown: the next view is predicted again
    assert preview.predict(raw, box, lambda: False) is None  # moved before it began
    counted = []
    wanted = preview.predict(raw, box, lambda: counted.append(1) or True)
    assert len(counted) > 3  # several batches, each followed by a look at the view
    plain = LivePreview(tmp_path, tile=76, batch_size=1)
    plain.offer(weights, 3)
    np.testing.assert_array_equal(wanted[0], plain.predict(raw, box)[0])
