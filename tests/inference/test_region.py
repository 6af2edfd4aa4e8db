"""Tests for tileunet.inference.region: a part of an image predicted as the whole
image's prediction has it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tileunet.inference.overlap import predict
from tileunet.inference.region import aligned_box, predict_region
from tileunet.model import UNet


@pytest.fixture(scope="module")
def net() -> UNet:
    torch.manual_seed(0)
    return UNet(depth=3, width=4, dropout=0.0).eval()


def test_an_aligned_box_covers_the_box_on_the_tile_grid():
    assert aligned_box((10, 30, 15, 50), (60, 70), 8) == (8, 32, 8, 56)
    assert aligned_box((-5, 100, 60, 200), (60, 70), 8) == (0, 60, 56, 70)
    assert aligned_box((59, 59, 0, 1), (60, 70), 4) == (56, 60, 0, 4)


@pytest.mark.parametrize("box", [(10, 30, 15, 50), (0, 60, 0, 70), (41, 60, 0, 9),
                                 (0, 5, 60, 70), (-20, 13, 33, 34)])
@pytest.mark.parametrize("tile", [None, 44])
def test_a_region_equals_the_whole_images_prediction_there(net, box, tile):
    image = np.random.default_rng(3).random((2, 60, 70), dtype=np.float32)
    two = UNet(in_channels=2, depth=3, width=4, dropout=0.0).eval()
    whole = predict(two, image, precision="fp32", progress=False)
    part, (y0, y1, x0, x1) = predict_region(two, image, box, precision="fp32", tile=tile,
                                            progress=False)
    assert part.shape == (2, y1 - y0, x1 - x0)
    np.testing.assert_allclose(part, whole[:, y0:y1, x0:x1], rtol=0, atol=1e-5)


def test_a_region_is_refused_what_it_cannot_do(net):
    with pytest.raises(ValueError, match="tta"):
        predict_region(net, np.zeros((40, 40), np.float32), (0, 8, 0, 8), tta=True)
    same = UNet(depth=3, width=4, padding="same")
    with pytest.raises(ValueError, match="valid padding"):
        predict_region(same, np.zeros((40, 40), np.float32), (0, 8, 0, 8))
