"""napari plugin: run a trained tileunet model on an image layer.

The widget (``Plugins > tileunet > Segment (U-Net)``, declared in ``napari.yaml``) takes
the selected image layer and a run folder or model file, and adds two layers at the
image's scale: the foreground probability (an image) and the instances (labels),
drawn exactly as ``tileunet predict`` draws them. Install with
``pip install 'tileunet[napari]'``.

:func:`segment_layer` is the plain function behind the widget; it needs neither napari
nor a display, which is how the tests call it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from tileunet.checkpoint import load_model
from tileunet.data import Normalization
from tileunet.postprocess import INSTANCE_METHODS, instance_options, instances_from_probability
from tileunet.predict import predict

__all__ = ["segment_layer", "segment_widget"]


def _steps(total: int, desc: str):
    """napari's progress bar where napari runs (a tqdm in the viewer), else a plain one."""
    try:
        from napari.utils import progress
    except ImportError:
        from tqdm.auto import tqdm as progress
    return progress(total=total, desc=desc)


def segment_layer(image: Any, model: str | Path, threshold: float = 0.5,
                  instances: str = "seeded", tta: bool = False) -> list[tuple]:
    """Probability and instance layers for an image layer (napari ``LayerDataTuple`` s).

    Parameters
    ----------
    image : napari.layers.Image (or anything with ``data``, ``name``, ``scale``, ``rgb``)
        A 2-D image, ``(C, H, W)`` for multi-channel models, or RGB ``(H, W, 3)``.
    model : path
        Run folder or model file written by ``tileunet train``.
    threshold, instances, tta
        As for ``tileunet predict``.
    """
    split = instance_options(instances)
    net, extra = load_model(model)
    norm = Normalization.from_dict(extra.get("normalization", {}))
    data = np.asarray(image.data)
    if getattr(image, "rgb", False) and data.ndim == 3:
        data = np.moveaxis(data, -1, 0)  # (H, W, 3) -> (3, H, W)
    chans = 1 if data.ndim == 2 else data.shape[0]
    if data.ndim not in (2, 3) or chans != net.config.in_channels:
        raise ValueError(f"layer {image.name!r}: shape {np.shape(image.data)} does not fit a "
                         f"model with {net.config.in_channels} input channel(s)")
    scale = tuple(getattr(image, "scale", (1.0, 1.0)))[-2:]
    with contextlib.closing(_steps(2, "tileunet")) as bar:
        bar.set_description("tileunet: predict")
        probs = predict(net, norm(data), tta=tta, progress=False)
        bar.update(1)
        fg = probs[1] if probs.shape[0] == 2 else 1.0 - probs[0]
        bar.set_description("tileunet: instances")
        labels = instances_from_probability(fg, threshold=threshold, **split)
        bar.update(1)
    name = image.name
    return [(fg, {"name": f"{name} probability", "scale": scale, "colormap": "magma",
                  "contrast_limits": (0.0, 1.0), "blending": "additive"}, "image"),
            (labels, {"name": f"{name} instances", "scale": scale}, "labels")]


def _make_widget():
    from magicgui import magic_factory

    def segment(image: "napari.layers.Image", model: Path = Path("."),  # noqa: F821, UP037
                threshold: float = 0.5, instances: str = "seeded", tta: bool = False
                ) -> "list[napari.types.LayerDataTuple]":  # noqa: F821, UP037
        return segment_layer(image, model, threshold, instances, tta)

    return magic_factory(
        segment, call_button="Segment",
        model={"label": "model (run folder or .safetensors)", "mode": "r"},
        threshold={"min": 0.0, "max": 0.99, "step": 0.05},
        instances={"choices": list(INSTANCE_METHODS)},
        tta={"label": "average 8 flips/rotations"})


def segment_widget(*args: Any, **kwargs: Any):
    """The widget napari shows (a magicgui widget built around :func:`segment_layer`)."""
    return _make_widget()(*args, **kwargs)
