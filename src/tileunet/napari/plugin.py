"""napari plugin: run a trained tileunet model on an image layer, open its outputs.

The widget (``Plugins > tileunet > Segment (U-Net)``, declared in ``napari.yaml``) takes
the selected image layer and a run folder or model file, and adds two layers at the
image's scale: the foreground probability (an image) and the instances (labels),
drawn exactly as ``tileunet predict`` draws them. The work runs in a thread, so the
viewer stays responsive; its progress (tiles predicted) shows in napari's activity
panel. The reader opens the ``.zarr`` / ``.ome.zarr`` stores ``tileunet predict``
writes, lazily, as the same two layers plus the mask. Install with
``pip install 'tileunet[napari]'``.

:func:`segment_layer` and :func:`read_output` are plain functions; they need neither
napari nor a display, which is how most tests call them.
"""

import collections
import contextlib
import itertools
import json
from pathlib import Path
from typing import Any

from tileunet.checkpoint import load_model
from tileunet.device import resolve_device
from tileunet.inference.postprocess import instances_from_probability
from tileunet.inference.scale import predict_at_scale
from tileunet.inference.separation import (
    SEPARATIONS,
    check_separation_request,
    separation_options,
)
from tileunet.inference.tta import check_tta, use_tta
from tileunet.io.normalization import Normalization
from tileunet.napari.annotations import IMAGE_KEY, layer_array

__all__ = ["get_reader", "read_output", "segment_layer", "segment_widget"]

# the widget's choices for test-time augmentation, as segment_layer's tta
TTA_CHOICES = {"auto": "auto", "on": True, "off": False}


def _bar_class():
    """napari's progress bar where napari is installed (shown in the viewer), else tqdm."""
    try:
        from napari.utils import progress
    except ImportError:
        from tqdm.auto import tqdm as progress
    return progress


def segment_layer(image: Any, model: str | Path, threshold: float = 0.5,
                  instances: str = "auto", tta: bool | str = "auto",
                  progress: Any = None, device: str = "auto") -> list[tuple]:
    """Probability and instance layers for an image layer (napari ``LayerDataTuple`` s).

    Parameters
    ----------
    image : napari.layers.Image (or anything with ``data``, ``name``, ``scale``, ``rgb``)
        A 2-D image, ``(C, H, W)`` for multi-channel models, or RGB ``(H, W, 3)``; of a
        multiscale layer, the full-resolution level.
    model : path
        Run folder or model file written by ``tileunet train``.
    threshold, instances, tta
        As for ``tileunet predict``.
    progress : tqdm-like class, optional
        The progress bars' class; default napari's where napari is installed, else tqdm.
    device : str
        ``"auto"`` (a GPU when PyTorch sees one), ``"cpu"``, ``"cuda:1"``, ...
    """
    check_separation_request(instances)  # a clear error before the model is read
    check_tta(tta)
    dev = resolve_device(device)
    net, extra = load_model(model, dev)
    split = separation_options(instances, extra=extra, source=model)
    norm = Normalization.from_dict(extra.get("normalization", {}))
    data = layer_array(image)  # a pyramid's full resolution; RGB as (3, H, W)
    chans = 1 if data.ndim == 2 else data.shape[0]
    if data.ndim not in (2, 3) or chans != net.config.in_channels:
        raise ValueError(f"layer {image.name!r}: shape {data.shape} does not fit a "
                         f"model with {net.config.in_channels} input channel(s)")
    scale = tuple(getattr(image, "scale", (1.0, 1.0)))[-2:]
    bar = progress or _bar_class()
    at = extra.get("scale", 1.0)
    averaged = use_tta(tta, net.config, data.shape, at, dev)
    probs = predict_at_scale(net, norm(data), at, tta=averaged, progress=bar)
    fg = probs[1] if probs.shape[0] == 2 else 1.0 - probs[0]
    with contextlib.closing(bar(total=0, desc="instances")):  # no count: a busy bar
        labels = instances_from_probability(fg, threshold=threshold, **split)
    name = image.name
    # the instances are editable: corrected by hand, the Train widget takes them as labels
    # of this image (the metadata names it)
    return [(fg, {"name": f"{name} probability", "scale": scale, "colormap": "magma",
                  "contrast_limits": (0.0, 1.0), "blending": "additive",
                  "metadata": {IMAGE_KEY: name}}, "image"),
            (labels, {"name": f"{name} instances", "scale": scale,
                      "metadata": {IMAGE_KEY: name}}, "labels")]


def _relayed_bars() -> type:
    """A tqdm-like class whose bars, made and updated in a worker thread, appear as napari
    progress bars made and updated in the main thread (Qt widgets live there only)."""
    from napari.utils import progress
    from qtpy.QtCore import QObject, Signal, Slot

    class Relay(QObject):
        # (what, bar id, description, total or step); one signal keeps them in order
        message = Signal(str, int, str, int)

        def __init__(self) -> None:
            super().__init__()
            self.bars: dict[int, Any] = {}
            self.pending: collections.deque = collections.deque()
            self.busy = False
            self.message.connect(self.receive)

        @Slot(str, int, str, int)
        def receive(self, *msg: Any) -> None:
            # napari's bars process Qt events while they draw, which can deliver the next
            # message inside this slot: queue it, and handle messages one at a time
            self.pending.append(msg)
            if self.busy:
                return
            self.busy = True
            try:
                while self.pending:
                    what, key, desc, n = self.pending.popleft()
                    if what == "open":
                        self.bars[key] = progress(total=n or None, desc=desc)
                    elif what == "step":
                        self.bars[key].update(n)
                    else:
                        self.bars.pop(key).close()
            finally:
                self.busy = False

    relay = Relay()  # made here, in the main thread: its slots run there
    keys = itertools.count()

    class Bar:
        """The part of tqdm's interface the predictor uses."""

        def __init__(self, total: int = 0, desc: str = "", disable: bool = False,
                     **_: Any) -> None:
            self.key, self.disable = next(keys), disable
            if not disable:
                relay.message.emit("open", self.key, f"tileunet: {desc}", int(total or 0))

        def update(self, n: int = 1) -> None:
            if not self.disable:
                relay.message.emit("step", self.key, "", int(n))

        def close(self) -> None:
            if not self.disable:
                self.disable = True
                relay.message.emit("close", self.key, "", 0)

    Bar.relay = relay  # kept alive as long as the class
    return Bar


def _start_soon(worker: Any) -> None:
    """Start a thread worker once control is back in Qt's event loop, after napari has
    connected the worker's ``returned`` signal to the code that adds its layers."""
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, worker.start)


_IDLE, _BUSY = "Segment", "Segmenting\u2026"


def _busy_while_running(gui: Any) -> None:
    """Grey out the button while a run is under way, so one click makes one run."""
    def running(worker: Any) -> None:
        gui.call_button.enabled, gui.call_button.text = False, _BUSY

        def done() -> None:
            gui.call_button.enabled, gui.call_button.text = True, _IDLE

        worker.finished.connect(done)

    gui.called.connect(running)


def _make_widget():
    from magicgui import magic_factory
    from napari.layers import Image
    from napari.qt.threading import FunctionWorker, create_worker
    from napari.types import LayerDataTuple

    def segment(image: Image, model: Path = Path("."), threshold: float = 0.5,
                instances: str = "auto", tta: str = "auto"
                ) -> FunctionWorker[list[LayerDataTuple]]:
        # napari shows a worker's error as a notification; not re-raising it here keeps
        # Qt from aborting the application where no exception hook is installed
        worker = create_worker(segment_layer, image, model, threshold, instances,
                               TTA_CHOICES[tta],
                               _relayed_bars(), _start_thread=False, _ignore_errors=True)
        _start_soon(worker)
        return worker

    return magic_factory(
        segment, call_button=_IDLE, widget_init=_busy_while_running,
        model={"label": "model (.safetensors, or a run folder)", "mode": "r",
               "filter": "*.safetensors"},
        threshold={"min": 0.0, "max": 0.99, "step": 0.05},
        instances={"choices": list(SEPARATIONS)},
        tta={"label": "average 8 flips/rotations (auto: where cheap)",
             "choices": list(TTA_CHOICES)})


def segment_widget(*args: Any, **kwargs: Any):
    """The widget napari shows (a magicgui widget built around :func:`segment_layer`)."""
    return _make_widget()(*args, **kwargs)


# ----------------------------------------------------------------------------- reader
def _is_output(path: Path) -> bool:
    for meta in (".zattrs", "zarr.json"):
        f = path / meta
        if f.is_file():
            with contextlib.suppress(OSError, ValueError):
                attrs = json.loads(f.read_text())
                return "tileunet" in attrs.get("attributes", attrs)
    return False


def read_output(path: str | Path) -> list[tuple]:
    """The layers of a store written by ``tileunet predict -o OUT.zarr`` (or
    ``.ome.zarr``): probability (image), instances and mask (labels), as lazy dask
    arrays at the store's pixel size (all levels of an OME-Zarr pyramid), so outputs
    larger than memory open too."""
    import dask.array as da
    import zarr

    from tileunet.io.lazy import OME_PATHS, PLAIN_PATHS, image_scale, level_path, ngff_multiscales

    path = Path(path)
    root = zarr.open_group(str(path), mode="r")
    ms = ngff_multiscales(dict(root.attrs))
    paths = OME_PATHS if ms else PLAIN_PATHS
    sy, sx, unit = image_scale(path) if ms else (1.0, 1.0, None)
    levels = len(ms[0]["datasets"]) if ms else 1
    name = path.name.split(".")[0]

    def data(key: str) -> Any:
        arrays = [da.from_zarr(root[level_path(paths[key], n) if ms else paths[key]])
                  for n in range(levels)]
        if key == "probability" and ms and arrays[0].shape[0] == 1:  # one class: no c axis
            arrays = [a[0] for a in arrays]
        return arrays if levels > 1 else arrays[0]

    def meta(ndim: int, **kw: Any) -> dict:
        m = {"scale": (1.0,) * (ndim - 2) + (sy, sx), "multiscale": levels > 1, **kw}
        return {**m, "units": unit} if unit else m

    prob = data("probability")
    ndim = (prob[0] if levels > 1 else prob).ndim
    layers = [(prob, meta(ndim, name=f"{name} probability", colormap="magma",
                          contrast_limits=(0.0, 1.0), blending="additive"), "image")]
    for key, label in (("labels", "instances"), ("mask", "mask")):
        layers.append((data(key), meta(2, name=f"{name} {label}", visible=key == "labels"),
                       "labels"))
    return layers


def get_reader(path: str | list[str]) -> Any:
    """napari's reader hook: :func:`read_output` for a tileunet output store, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    return read_output if p.is_dir() and p.suffix == ".zarr" and _is_output(p) else None
