"""The live view of a training run: the part of an image in view, predicted with the
run's latest weights.

While a live run trains, the trainer hands a copy of its weights every few seconds
(:class:`~tileunet.training.loop.Hooks` ``on_weights``) to a :class:`LivePreview`,
which predicts the box in view with them (:func:`~tileunet.inference.region.
predict_region`: only the tiles that cover it), with the run's normalisation and
working scale. The viewer asks in a thread of its own and puts the result in a layer;
when the view moves on, the prediction stops after the batch of tiles it is on.
Nothing here needs napari.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tileunet.inference.region import Box, predict_region
from tileunet.inference.scale import image_to_scale, probabilities_to_shape
from tileunet.io.normalization import Normalization
from tileunet.model import UNet
from tileunet.training.loop import CONFIG_FILE


class LivePreview:
    """The latest weights of the run in ``run``, and predictions with them, ``batch_size``
    tiles of ``tile`` px at a time (default: as many and as large as the memory budget
    allows)."""

    def __init__(self, run: str | Path, tile: int | None = None,
                 batch_size: int | None = None) -> None:
        self.run, self.tile, self.batch_size = Path(run), tile, batch_size
        self.lock = threading.Lock()
        self.weights: dict[str, torch.Tensor] | None = None
        self.iteration = -1  # of the weights offered last
        self.shown = -1  # of the weights predicted with last
        self.net: UNet | None = None  # built once, from the run's config.json
        self.normalization, self.scale = Normalization(), 1.0

    def offer(self, weights: dict[str, torch.Tensor], iteration: int) -> None:
        """Keep these weights (called in the training thread)."""
        with self.lock:
            self.weights, self.iteration = weights, iteration

    def has_new(self) -> bool:
        """Weights newer than those of the last prediction?"""
        with self.lock:
            return self.weights is not None and self.iteration > self.shown

    def predict(self, image: np.ndarray, box: Box,
                wanted: Callable[[], bool] | None = None
                ) -> tuple[np.ndarray, Box, int] | None:
        """The foreground probability of ``box`` of ``image`` (raw, as in the viewer),
        the box predicted (moved out to the network's grid) and the step of the weights;
        None before the first weights, and when ``wanted()`` turned false after a batch
        of tiles (the view moved on: the rest of the tiles are not predicted)."""
        with self.lock:
            weights, iteration = self.weights, self.iteration
        if weights is None or (wanted is not None and not wanted()):
            return None
        if self.net is None:  # the run's config.json, written before its first step
            config = json.loads((self.run / CONFIG_FILE).read_text())
            self.net = UNet.from_config(config["model"])
            self.normalization = Normalization.from_dict(config["normalization"])
            self.scale = float(config.get("scale", 1.0))
        self.net.load_state_dict(weights)
        x = self.normalization(np.asarray(image))
        try:
            probs, box = _predict_at(self.net, x, box, self.scale, tile=self.tile,
                                     batch_size=self.batch_size, progress=False if wanted is None
                                     else _until_unwanted(wanted))
        except ViewMoved:
            return None
        self.shown = iteration
        return probs, box, iteration


class ViewMoved(Exception):
    """A live view's prediction is no longer wanted."""


def _until_unwanted(wanted: Callable[[], bool]) -> type:
    """A progress class for :func:`~tileunet.inference.overlap.predict` that shows
    nothing and stops the prediction (:class:`ViewMoved`) once ``wanted()`` is false;
    predict calls ``update`` after each batch of tiles."""
    class Watch:
        def __init__(self, *_: Any, **__: Any) -> None:
            pass

        def update(self, n: int = 1) -> None:
            if not wanted():
                raise ViewMoved

        def close(self) -> None:
            pass
    return Watch


def _predict_at(net: UNet, x: np.ndarray, box: Box, scale: float, **kwargs: Any
                ) -> tuple[np.ndarray, Box]:
    """:func:`predict_region` at the working ``scale``, returned at the image's size;
    ``kwargs`` go to it (``tile``, ``batch_size``, ``progress``)."""
    if scale == 1.0:
        probs, box = predict_region(net, x, box, channels=[1], **kwargs)
        return probs[0], box
    h, w = x.shape[-2:]
    small = image_to_scale(x if x.ndim == 3 else x[None], scale)
    sbox = tuple(int(v * scale) for v in box)
    probs, (y0, y1, x0, x1) = predict_region(net, small, sbox, channels=[1], **kwargs)
    full = (round(y0 / scale), min(h, round(y1 / scale)),
            round(x0 / scale), min(w, round(x1 / scale)))
    shape = (full[1] - full[0], full[3] - full[2])
    return probabilities_to_shape(probs, shape)[0], full


__all__ = ["LivePreview", "ViewMoved"]
