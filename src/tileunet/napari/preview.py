"""The live view of a training run: the part of an image in view, predicted with the
run's latest weights.

While a live run trains, the trainer hands a copy of its weights every few seconds
(:class:`~tileunet.training.loop.Hooks` ``on_weights``) to a :class:`LivePreview`,
which predicts the box in view with them (:func:`~tileunet.inference.region.
predict_region`: only the tiles that cover it), with the run's normalisation and
working scale. The viewer asks in a thread of its own and puts the result in a layer.
Nothing here needs napari.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import torch

from tileunet.inference.region import Box, predict_region
from tileunet.inference.scale import image_to_scale, probabilities_to_shape
from tileunet.io.normalization import Normalization
from tileunet.model import UNet
from tileunet.training.loop import CONFIG_FILE


class LivePreview:
    """The latest weights of the run in ``run``, and predictions with them."""

    def __init__(self, run: str | Path) -> None:
        self.run = Path(run)
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

    def predict(self, image: np.ndarray, box: Box) -> tuple[np.ndarray, Box, int] | None:
        """The foreground probability of ``box`` of ``image`` (raw, as in the viewer),
        the box predicted (moved out to the network's grid) and the step of the weights;
        None before the first weights."""
        with self.lock:
            weights, iteration = self.weights, self.iteration
        if weights is None:
            return None
        if self.net is None:  # the run's config.json, written before its first step
            config = json.loads((self.run / CONFIG_FILE).read_text())
            self.net = UNet.from_config(config["model"])
            self.normalization = Normalization.from_dict(config["normalization"])
            self.scale = float(config.get("scale", 1.0))
        self.net.load_state_dict(weights)
        x = self.normalization(np.asarray(image))
        probs, box = _predict_at(self.net, x, box, self.scale)
        self.shown = iteration
        return probs, box, iteration


def _predict_at(net: UNet, x: np.ndarray, box: Box, scale: float
                ) -> tuple[np.ndarray, Box]:
    """:func:`predict_region` at the working ``scale``, returned at the image's size."""
    if scale == 1.0:
        probs, box = predict_region(net, x, box, channels=[1], progress=False)
        return probs[0], box
    h, w = x.shape[-2:]
    small = image_to_scale(x if x.ndim == 3 else x[None], scale)
    sbox = tuple(int(v * scale) for v in box)
    probs, (y0, y1, x0, x1) = predict_region(net, small, sbox, channels=[1],
                                             progress=False)
    full = (round(y0 / scale), min(h, round(y1 / scale)),
            round(x0 / scale), min(w, round(x1 / scale)))
    shape = (full[1] - full[0], full[3] - full[2])
    return probabilities_to_shape(probs, shape)[0], full


__all__ = ["LivePreview"]
