"""The training data pipeline: random, augmented tiles, in this process, in workers,
or on the GPU.

Each training step takes ``batch_size`` tiles: an image chosen at random, a tile
centre (uniform over the image, or where the weight map is high:
:class:`WeightedCentres`), and one draw of :mod:`tileunet.augment` applied to image,
target and weight map alike. On a GPU a step of the paper's network is quicker than
augmenting one tile on one CPU core (``benchmarks/RESULTS.md``, "The data pipeline on
its own"), so there the training images live on the GPU and the tiles are resampled
there too (:func:`device_tile_batches`); worker processes (PyTorch ``DataLoader``) are
the alternative. On a CPU the cores are busy with the network, and tiles are made in
the training process between steps.

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

from tileunet.augment.on_device import DeviceImage, apply_on_device
from tileunet.augment.params import AugmentConfig, make_params
from tileunet.augment.resample import augment_tile

Tile = tuple[np.ndarray, np.ndarray, np.ndarray]  # image (C, T, T), target, weights (T, T)


class TrainingImage(Protocol):
    image: np.ndarray  # (C, H, W) float32
    target: np.ndarray  # (H, W) integer
    weights: np.ndarray  # (H, W) float32


class WeightedCentres:
    """Tile centres drawn where the loss weighs most.

    With probability ``share`` a tile's centre is a pixel drawn in proportion to its
    weight map's excess over the map's minimum (the borders between touching objects,
    thin membranes, the rarer class); otherwise the centre is left to
    :func:`tileunet.augment.params.make_params` (uniform over the image). ``share=0`` draws
    nothing from the generator, so the uniform stream of tiles stays as it was.
    """

    def __init__(self, samples: list[TrainingImage], share: float) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be in [0, 1], got {share}")
        self.share = float(share)
        self.cdfs: list[np.ndarray | None] = []
        self.widths: list[int] = []
        for s in samples if share > 0 else ():
            excess = np.asarray(s.weights, np.float64)
            excess = (excess - excess.min()).ravel()
            cdf = np.cumsum(excess)
            self.cdfs.append(cdf if cdf[-1] > 0 else None)  # a flat map: uniform
            self.widths.append(int(s.weights.shape[-1]))

    def __call__(self, index: int, rng: np.random.Generator) -> tuple[int, int] | None:
        """The centre ``(row, col)`` of a tile from image ``index``, or None (uniform)."""
        if self.share == 0.0 or rng.random() >= self.share:
            return None
        cdf = self.cdfs[index]
        if cdf is None:
            return None
        k = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
        return divmod(min(k, cdf.size - 1), self.widths[index])


def draw_tile(samples: list[TrainingImage], tile: int, augment: AugmentConfig,
              rng: np.random.Generator, centres: WeightedCentres | None = None) -> Tile:
    """One augmented training tile from an image chosen at random, centred where
    ``centres`` says (None: anywhere)."""
    i = int(rng.integers(len(samples)))
    s = samples[i]
    centre = centres(i, rng) if centres is not None else None
    x, y, w = augment_tile(s.image, s.target, s.weights, size=tile, rng=rng, config=augment,
                           center=centre)
    return x, y.astype(np.int64), w


class _TileStream(IterableDataset):
    def __init__(self, samples: list[TrainingImage], tile: int, augment: AugmentConfig,
                 seed: int, start: int, centres: WeightedCentres | None) -> None:
        self.samples, self.tile, self.augment = samples, tile, augment
        self.seed, self.start, self.centres = seed, start, centres

    def __iter__(self) -> Iterator[Tile]:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, self.start, info.id if info else 0])
        while True:
            yield draw_tile(self.samples, self.tile, self.augment, rng, self.centres)


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
                 seed: int = 0, start: int = 0, pin_memory: bool = False,
                 centres: WeightedCentres | None = None
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Endless batches ``(x (N, C, T, T), target (N, T, T) int64, weights (N, T, T))``.

    ``workers=0`` draws from ``rng`` in this process; otherwise ``workers`` processes
    draw from generators seeded with ``(seed, start, worker id)``. ``centres`` places
    the tiles (:class:`WeightedCentres`; None: uniformly).
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        while True:
            tiles = [draw_tile(samples, tile, augment, rng, centres)
                     for _ in range(batch_size)]
            yield tuple(torch.from_numpy(np.stack(a)) for a in zip(*tiles, strict=True))
        return
    loader = DataLoader(_TileStream(samples, tile, augment, seed, start, centres),
                        batch_size=batch_size, num_workers=workers, pin_memory=pin_memory,
                        worker_init_fn=_quiet_worker, prefetch_factor=4,
                        persistent_workers=False)
    yield from loader


def device_tile_batches(samples: list[TrainingImage], tile: int, augment: AugmentConfig,
                        batch_size: int, *, rng: np.random.Generator,
                        device: torch.device | str, centres: WeightedCentres | None = None
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Endless batches like :func:`tile_batches` with ``workers=0`` (the same random
    draws), resampled on ``device`` from images held there
    (:func:`tileunet.augment.on_device.apply_on_device`; bicubic interpolation only)."""
    held = [DeviceImage(s.image, s.target, s.weights, device) for s in samples]
    while True:
        tiles = []
        for _ in range(batch_size):
            i = int(rng.integers(len(held)))
            centre = centres(i, rng) if centres is not None else None
            params = make_params(tuple(held[i].shape), tile, rng, augment, centre)
            tiles.append(apply_on_device(params, held[i]))
        yield tuple(torch.stack(a) for a in zip(*tiles, strict=True))
