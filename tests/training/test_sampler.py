from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from tileunet.augment.params import AugmentConfig
from tileunet.training.sampler import WeightedCentres, default_workers, tile_batches


@dataclass
class Img:
    image: np.ndarray
    target: np.ndarray
    weights: np.ndarray


def images() -> list[Img]:
    rng = np.random.default_rng(0)
    out = []
    for h, w in ((40, 50), (33, 61)):
        out.append(Img(rng.random((1, h, w), dtype=np.float32),
                       (rng.random((h, w)) > 0.5).astype(np.uint8),
                       rng.random((h, w), dtype=np.float32) + 0.5))
    return out


def first(n: int, **kw) -> list[tuple[torch.Tensor, ...]]:
    it = tile_batches(images(), 36, AugmentConfig(), 3, **kw)
    out = [next(it) for _ in range(n)]
    it.close()
    return out


def test_in_process_batches_follow_the_generator():
    a = first(2, rng=np.random.default_rng(5))
    b = first(2, rng=np.random.default_rng(5))
    x, y, w = a[0]
    assert x.shape == (3, 1, 36, 36) and x.dtype == torch.float32
    assert y.shape == (3, 36, 36) and y.dtype == torch.int64
    assert w.shape == (3, 36, 36) and bool((w >= 0.5).all())
    assert set(torch.unique(y).tolist()) <= {0, 1}
    for p, q in zip(a, b, strict=True):
        assert all(torch.equal(s, t) for s, t in zip(p, q, strict=True))
    c = first(1, rng=np.random.default_rng(6))
    assert not torch.equal(a[0][0], c[0][0])


def test_worker_batches_are_reproducible_for_a_seed():
    a = first(3, rng=np.random.default_rng(0), workers=2, seed=1, start=0)
    b = first(3, rng=np.random.default_rng(0), workers=2, seed=1, start=0)
    assert a[0][0].shape == (3, 1, 36, 36)
    for p, q in zip(a, b, strict=True):
        assert all(torch.equal(s, t) for s, t in zip(p, q, strict=True))
    assert not torch.equal(a[0][0], a[1][0])  # the two workers draw differently


@pytest.mark.parametrize("cores, want", [(1, 0), (2, 1), (4, 3), (16, 6), (None, 0)])
def test_default_workers_beside_a_gpu(cores, want, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert default_workers(torch.device("cuda")) == want  # a device object needs no GPU
    assert default_workers(torch.device("cpu")) == 0  # the network needs the cores


def test_defaults_and_bad_input():
    assert default_workers(torch.device("cpu")) == 0
    with pytest.raises(ValueError, match="workers"):
        first(1, rng=np.random.default_rng(0), workers=-1)


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_device_batches_equal_the_in_process_ones(share):
    from tileunet.training.sampler import device_tile_batches

    centres = WeightedCentres(images(), share)
    for cfg in (AugmentConfig(), AugmentConfig(enabled=False)):
        cpu = tile_batches(images(), 36, cfg, 3, rng=np.random.default_rng(7),
                           centres=centres)
        dev = device_tile_batches(images(), 36, cfg, 3, rng=np.random.default_rng(7),
                                  device="cpu", centres=centres)
        for _ in range(3):
            (x, y, w), (xd, yd, wd) = next(cpu), next(dev)
            assert xd.shape == x.shape and xd.dtype == x.dtype and yd.dtype == torch.int64
            torch.testing.assert_close(xd, x, rtol=0, atol=1e-4)
            torch.testing.assert_close(wd, w, rtol=0, atol=1e-4)
            assert torch.equal(yd, y)


def spotted(h: int = 30, w: int = 40) -> list[Img]:
    """One image whose weight map is 1 except two spots: excess 1 at (5, 6), 3 at (20, 30)."""
    weights = np.ones((h, w), np.float32)
    weights[5, 6], weights[20, 30] = 2.0, 4.0
    return [Img(np.zeros((1, h, w), np.float32), np.zeros((h, w), np.uint8), weights)]


def test_weighted_centres_follow_the_weight_maps_excess():
    centres = WeightedCentres(spotted(), 1.0)
    rng = np.random.default_rng(0)
    drawn = [centres(0, rng) for _ in range(4000)]
    assert set(drawn) == {(5, 6), (20, 30)}  # only where the map rises above its minimum
    share = drawn.count((20, 30)) / len(drawn)
    assert 0.72 < share < 0.78  # excess 3 against 1: three quarters


def test_weighted_centres_share_mixes_with_uniform_tiles():
    rng = np.random.default_rng(1)
    half = [WeightedCentres(spotted(), 0.5)(0, rng) for _ in range(4000)]
    assert 0.46 < half.count(None) / len(half) < 0.54  # None: make_params draws uniformly
    flat = Img(np.zeros((1, 8, 8), np.float32), np.zeros((8, 8), np.uint8),
               np.full((8, 8), 2.0, np.float32))
    assert WeightedCentres([flat], 1.0)(0, rng) is None  # nothing to prefer
    with pytest.raises(ValueError, match="share"):
        WeightedCentres(spotted(), 1.5)


def test_weighted_tiles_are_centred_on_the_spots():
    cfg = AugmentConfig(enabled=False)
    it = tile_batches(spotted(), 9, cfg, 64, rng=np.random.default_rng(2),
                      centres=WeightedCentres(spotted(), 1.0))
    _, _, w = next(it)
    assert set(w[:, 4, 4].tolist()) <= {2.0, 4.0}  # the centre pixel is a spot


def test_no_share_leaves_the_uniform_stream_as_it_was():
    plain = first(2, rng=np.random.default_rng(3))
    it = tile_batches(images(), 36, AugmentConfig(), 3, rng=np.random.default_rng(3),
                      centres=WeightedCentres(images(), 0.0))
    for p in plain:
        assert all(torch.equal(s, t) for s, t in zip(p, next(it), strict=True))
