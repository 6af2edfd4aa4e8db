"""The training data pipeline: random, augmented tiles, in this process, in workers,
or on the GPU.

Each training step takes ``batch_size`` tiles: an image chosen at random, a random
tile position, and one draw of :mod:`tileunet.augment` applied to image, target and
weight map alike. On a GPU a step of the paper's network takes ~10 ms, less than
augmenting one tile on one CPU core (~20 ms). There the training images live on the
GPU and the tiles are resampled there too (:func:`device_tile_batches`: about 1 ms
per tile, mostly Python); worker processes (PyTorch ``DataLoader``) are the alternative.
On a CPU the cores are busy with the network, and tiles are made in the training
process between steps.

With ``workers=0`` and on the device the tiles come from the generator the caller
passes in, so a run that is interrupted and resumed with the same generator state
continues exactly (the same parameters as ``workers=0``; the device tiles equal the
CPU ones to float32 rounding). With
workers, each worker seeds its own generator from ``(seed, start, worker id)``:
reproducible for a given number of workers, but not bit-identical across a resume.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tileunet.augment import AugmentConfig, DeviceImage, apply_on_device, augment_tile, make_params

Tile = tuple[np.ndarray, np.ndarray, np.ndarray]  # image (C, T, T), target, weights (T, T)


class TrainingImage(Protocol):
    image: np.ndarray  # (C, H, W) float32
    target: np.ndarray  # (H, W) integer
    weights: np.ndarray  # (H, W) float32


def draw_tile(samples: list[TrainingImage], tile: int, augment: AugmentConfig,
              rng: np.random.Generator) -> Tile:
    """One augmented training tile from an image chosen at random."""
    s = samples[int(rng.integers(len(samples)))]
    x, y, w = augment_tile(s.image, s.target, s.weights, size=tile, rng=rng, config=augment)
    return x, y.astype(np.int64), w


class _TileStream(IterableDataset):
    def __init__(self, samples: list[TrainingImage], tile: int, augment: AugmentConfig,
                 seed: int, start: int) -> None:
        self.samples, self.tile, self.augment = samples, tile, augment
        self.seed, self.start = seed, start

    def __iter__(self) -> Iterator[Tile]:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, self.start, info.id if info else 0])
        while True:
            yield draw_tile(self.samples, self.tile, self.augment, rng)


def _quiet_worker(_: int) -> None:
    # Ctrl-C is the training process's to handle (it saves a checkpoint and stops the
    # workers); one thread per worker, the cores are shared.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def default_workers(device: torch.device) -> int:
    """0 on the CPU (the network needs the cores); up to 6 workers beside a GPU."""
    if device.type == "cpu":
        return 0
    return max(0, min(6, (os.cpu_count() or 1) - 1))


def tile_batches(samples: list[TrainingImage], tile: int, augment: AugmentConfig,
                 batch_size: int, *, rng: np.random.Generator, workers: int = 0,
                 seed: int = 0, start: int = 0, pin_memory: bool = False
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Endless batches ``(x (N, C, T, T), target (N, T, T) int64, weights (N, T, T))``.

    ``workers=0`` draws from ``rng`` in this process; otherwise ``workers`` processes
    draw from generators seeded with ``(seed, start, worker id)``.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        while True:
            tiles = [draw_tile(samples, tile, augment, rng) for _ in range(batch_size)]
            yield tuple(torch.from_numpy(np.stack(a)) for a in zip(*tiles, strict=True))
        return
    loader = DataLoader(_TileStream(samples, tile, augment, seed, start),
                        batch_size=batch_size, num_workers=workers, pin_memory=pin_memory,
                        worker_init_fn=_quiet_worker, prefetch_factor=4,
                        persistent_workers=False)
    yield from loader


def device_tile_batches(samples: list[TrainingImage], tile: int, augment: AugmentConfig,
                        batch_size: int, *, rng: np.random.Generator,
                        device: torch.device | str
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Endless batches like :func:`tile_batches` with ``workers=0`` (the same random
    draws), resampled on ``device`` from images held there
    (:func:`tileunet.augment.apply_on_device`; bicubic interpolation only)."""
    held = [DeviceImage(s.image, s.target, s.weights, device) for s in samples]
    while True:
        tiles = []
        for _ in range(batch_size):
            src = held[int(rng.integers(len(held)))]
            params = make_params(tuple(src.shape), tile, rng, augment)
            tiles.append(apply_on_device(params, src))
        yield tuple(torch.stack(a) for a in zip(*tiles, strict=True))
