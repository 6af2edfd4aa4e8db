from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from tileunet.augment import AugmentConfig
from tileunet.sampler import default_workers, tile_batches


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


def test_device_batches_equal_the_in_process_ones():
    from tileunet.sampler import device_tile_batches

    for cfg in (AugmentConfig(), AugmentConfig(enabled=False)):
        cpu = tile_batches(images(), 36, cfg, 3, rng=np.random.default_rng(7))
        dev = device_tile_batches(images(), 36, cfg, 3, rng=np.random.default_rng(7),
                                  device="cpu")
        for _ in range(3):
            (x, y, w), (xd, yd, wd) = next(cpu), next(dev)
            assert xd.shape == x.shape and xd.dtype == x.dtype and yd.dtype == torch.int64
            torch.testing.assert_close(xd, x, rtol=0, atol=1e-4)
            torch.testing.assert_close(wd, w, rtol=0, atol=1e-4)
            assert torch.equal(yd, y)
