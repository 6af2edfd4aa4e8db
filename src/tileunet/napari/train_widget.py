"""napari's Train widget: labels painted or corrected in the viewer, trained on in place.

``Plugins > tileunet > Train (U-Net)`` takes Labels layers (painted by hand, or the
*instances* of the Segment widget corrected by hand), pairs each with its image layer
(:func:`tileunet.napari.annotations.image_for`), and trains a U-Net on them in a worker thread
for a time budget, from scratch or from a model (fine-tuning). The loss and the
validation score are drawn as they come; Stop saves a checkpoint and Resume continues
it. Each start writes a new run folder (:mod:`tileunet.napari.runs`) whose
``annotations/layers.json`` holds the layers used, the start model, and the
``tileunet train`` command that repeats the run; when it ends, the Segment widget is
given the run. Needs napari (``pip install 'tileunet[napari]'``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.qt.threading import create_worker

from tileunet.inference.uncertainty import entropy, rank_tiles
from tileunet.napari.annotations import annotated, image_for
from tileunet.napari.preview import LivePreview
from tileunet.napari.runs import start_run

__all__ = ["TrainWidget"]

SCRATCH, FROM_MODEL = "scratch (He init)", "the model below"
#: a live run gets the annotations this long after the last brush stroke
LIVE_DELAY_MS = 1000
#: a live run's view is predicted again this often (with weights this recent)
PREVIEW_MS = 3000
#: the squares a live view proposes to annotate next: their side and number
LOOK_TILE, LOOK_COUNT = 64, 3
#: what the labels layers hold -> the run's annotation setting
ANNOTATION_CHOICES = {"whole masks": "dense", "strokes (sparse)": "sparse"}


class TrainWidget(Container):
    """Labels layers, a budget and a start model in; a run folder out (see the module).
    napari makes it (``napari.yaml``) and hands it the viewer."""

    def __init__(self, napari_viewer: Any) -> None:
        viewer = napari_viewer
        labels_of = functools.partial(_layers_of, viewer, Labels)
        fields = {
            "label_layers": Select(label="labels layers", choices=labels_of),
            "ignore_layers": Select(label="ignore layers", choices=labels_of,
                             tooltip="non-zero pixels are not annotated"),
            "unlabelled": SpinBox(label="unannotated label", value=0, min=0, max=2**31 - 1,
                                  tooltip="pixels of this label value are not annotated "
                                          "(0: every pixel is)"),
            "label_kind": ComboBox(label="labels are", choices=list(ANNOTATION_CHOICES),
                                   tooltip="strokes: 0 not annotated, 1 background, "
                                           "2 inside a cell, 3 and up whole cells (one "
                                           "id each); only painted pixels count"),
            "minutes": FloatSpinBox(label="minutes", value=5.0, min=0.05, max=10080),
            "live": CheckBox(text="live: what you paint joins the run while it trains",
                             value=False),
            "start": ComboBox(label="start from", choices=[SCRATCH, FROM_MODEL]),
            "model": FileEdit(label="model", mode="r", filter="*.safetensors"),
            "runs": FileEdit(label="runs folder", mode="d",
                             value=Path.cwd() / "tileunet-runs"),
            "extra": LineEdit(label="extra flags", tooltip="more `tileunet train` flags, "
                              "e.g. --width 32 --scale 0.5"),
            "train_button": PushButton(text="Train"),
            "stop_button": PushButton(text="Stop", enabled=False),
            "resume_button": PushButton(text="Resume", enabled=False),
            "status": Label(value=""),
        }
        for name, w in fields.items():
            w.name = name  # the container finds its widgets by name: self.minutes, ...
        super().__init__(widgets=list(fields.values()))
        self.viewer, self.session, self.worker = viewer, None, None
        self.plot = _LossPlot()
        self.native.layout().addWidget(self.plot.canvas)
        self.relay = _row_relay(self.plot.add)
        self.train_button.changed.connect(self.start_training)
        self.stop_button.changed.connect(self.stop)
        self.resume_button.changed.connect(self.resume)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(lambda *_: self.reset_choices())
        self.sender = _Debounced(LIVE_DELAY_MS, self.send_annotations)
        self.preview, self.previewing = None, False
        self.preview_timer = _Repeating(PREVIEW_MS, self.preview_view)

    def painted(self, *_: Any) -> None:
        """A labels layer changed: a live run gets it after a short pause in painting."""
        if self.session is not None and self.session.live and self.worker is not None:
            self.sender.call()

    def send_annotations(self) -> None:
        """Write the layers into the live run's folder (its trainer reads them)."""
        if self.session is None or self.worker is None:
            return
        try:
            self.session.update(self.items())
        except (ValueError, OSError) as e:
            self.status.value = f"not sent: {e}"
            return
        self.status.value = f"training live: annotations sent; {self.session.run}"

    def items(self) -> list[Any]:
        """The selected layers as annotated images (checked, nothing written)."""
        images = _layers_of(self.viewer, Image)
        ignore = {image_for(ly, images).name: ly for ly in self.ignore_layers.value}
        out = []
        for labels in self.label_layers.value:
            image = image_for(labels, images)
            out.append(annotated(image, labels, ignore.get(image.name),
                                 self.unlabelled.value))
        return out

    def start_training(self, *_: Any) -> None:
        try:
            init = self.model.value if self.start.value == FROM_MODEL else None
            self.session = start_run(self.runs.value, self.items(), self.minutes.value,
                                     init, self.extra.value,
                                     ANNOTATION_CHOICES[self.label_kind.value],
                                     live=self.live.value)
        except (ValueError, OSError) as e:
            self.status.value = f"not started: {e}"
            return
        self.plot.clear()
        self._launch()

    def resume(self, *_: Any) -> None:
        if self.session is not None:
            self._launch()

    def stop(self, *_: Any) -> None:
        if self.session is not None:
            self.session.stop.set()
            self.status.value = "stopping after this step ..."

    def preview_view(self) -> None:
        """Predict the part of the first labels layer's image in view with the latest
        weights, in a thread; the result goes to the layer *IMAGE live*."""
        if self.previewing or self.preview is None or not self.preview.has_new():
            return
        layers = self.label_layers.value
        if not layers:
            return
        image = image_for(layers[0], _layers_of(self.viewer, Image))
        box = _in_view(image)
        self.previewing = True
        # the worker reads where the view is after each batch of tiles, and stops when
        # it moved (a read of the layer's corner pixels, which napari's thread sets)
        worker = create_worker(self.preview.predict, np.asarray(image.data), box,
                               lambda: _in_view(image) == box,
                               _start_thread=False, _ignore_errors=True)
        worker.returned.connect(functools.partial(self._show_preview, image, box))
        worker.errored.connect(self._preview_failed)
        worker.start()

    def _show_preview(self, image: Any, asked: tuple, result: Any) -> None:
        self.previewing = False
        if result is None or _in_view(image) != asked:  # the view moved on: drop it
            return
        probs, (y0, y1, x0, x1), iteration = result
        for name, values, colormap in ((f"{image.name} live", probs, "magma"),
                                       (f"{image.name} uncertainty", entropy(probs),
                                        "viridis")):
            layer = self._map_layer(image, name, colormap)
            layer.data[y0:y1, x0:x1] = values
            layer.metadata["tileunet_step"] = iteration
            layer.refresh()
        ranked = rank_tiles(layer.data[y0:y1, x0:x1], tile=LOOK_TILE, count=LOOK_COUNT,
                            offset=(y0, x0))
        self._look_next(image, [box for _, box in ranked])
        self.status.value = (f"training live: view of step {iteration}; look next at "
                             + ", ".join(f"({b[0]}, {b[2]})" for _, b in ranked))

    def _map_layer(self, image: Any, name: str, colormap: str) -> Any:
        """The layer ``name`` over ``image`` (made once, with zeros)."""
        if name not in self.viewer.layers:
            self.viewer.add_image(np.zeros(image.data.shape[-2:], np.float32), name=name,
                                  colormap=colormap, opacity=0.5, blending="additive",
                                  contrast_limits=(0.0, 1.0), scale=image.scale[-2:],
                                  translate=image.translate[-2:], visible=(
                                      colormap == "magma"))
        return self.viewer.layers[name]

    def _look_next(self, image: Any, boxes: list[tuple]) -> None:
        """Squares around the most uncertain tiles in view, in the layer *IMAGE look
        next*."""
        rects = [np.array([[y0, x0], [y1, x1]], float) for y0, y1, x0, x1 in boxes]
        name = f"{image.name} look next"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = rects
            self.viewer.layers[name].shape_type = ["rectangle"] * len(rects)
        else:
            self.viewer.add_shapes(rects, shape_type="rectangle", name=name,
                                   edge_color="yellow", face_color="transparent",
                                   edge_width=2, scale=image.scale[-2:],
                                   translate=image.translate[-2:])

    def _preview_failed(self, error: BaseException) -> None:
        self.previewing = False
        self.status.value = f"live view: {error}"

    def _launch(self) -> None:
        self.status.value = f"training: {self.session.run}"
        if self.session.live:
            self.preview = LivePreview(self.session.run)
            self.preview_timer.start()
            for layer in self.label_layers.value:
                for name in ("paint", "data"):
                    event = getattr(layer.events, name, None)
                    if event is not None:
                        event.connect(self.painted)
        on_weights = self.preview.offer if self.session.live else None
        self.worker = create_worker(self.session.train, self.relay.emit, on_weights,
                                    PREVIEW_MS / 1000, _start_thread=False,
                                    _ignore_errors=True)
        self.worker.returned.connect(self._done)
        self.worker.errored.connect(self._failed)
        self._buttons(running=True)
        self.worker.start()

    def _buttons(self, running: bool, resumable: bool = False) -> None:
        self.train_button.enabled = not running
        self.stop_button.enabled = running
        self.resume_button.enabled = resumable and not running

    def _failed(self, error: BaseException) -> None:
        self.worker = None
        self.preview_timer.stop()
        self._buttons(running=False)
        self.status.value = f"failed: {str(error).splitlines()[0] if str(error) else error!r}"

    def _done(self, res: Any) -> None:
        self.worker = None
        self.preview_timer.stop()
        self._buttons(running=False, resumable=res.interrupted)
        what = "stopped (Resume continues)" if res.interrupted else "trained"
        score = "" if res.val_iou is None else f", validation IoU {res.val_iou:.3f}"
        if res.val_seg is not None:
            score += f", SEG {res.val_seg:.3f}"
        self.status.value = f"{what}: {res.iterations} steps{score}; {res.run_dir}"
        if not res.interrupted:
            self._hand_to_segment(res.run_dir)

    def _hand_to_segment(self, run: Path) -> None:
        _, segment = self.viewer.window.add_plugin_dock_widget("tileunet",
                                                               "Segment (U-Net)")
        segment.model.value = run



def _layers_of(viewer: Any, kind: type, *_: Any) -> list[Any]:
    return [ly for ly in viewer.layers if isinstance(ly, kind)]


class _Debounced:
    """Calls ``action`` once, ``ms`` after the last of a burst of :meth:`call` (in Qt's
    main thread)."""

    def __init__(self, ms: int, action: Any) -> None:
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setSingleShot(True)
        self.timer.setInterval(ms)
        self.timer.timeout.connect(action)

    def call(self) -> None:
        self.timer.start()  # restarts a pending one


class _Repeating(_Debounced):
    """Calls ``action`` every ``ms`` while started (in Qt's main thread)."""

    def __init__(self, ms: int, action: Any) -> None:
        super().__init__(ms, action)
        self.timer.setSingleShot(False)

    def start(self) -> None:
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()


def _in_view(layer: Any) -> tuple[int, int, int, int]:
    """The box of ``layer``'s data in view: (y0, y1, x0, x1), from the corner pixels
    napari keeps for each layer."""
    (y0, x0), (y1, x1) = np.asarray(layer.corner_pixels)[:, -2:].astype(int)
    return int(y0), int(y1) + 1, int(x0), int(x1) + 1


def _row_relay(receive: Any) -> Any:
    """An object whose ``emit(row)``, called in the training thread, calls ``receive(row)``
    in Qt's main thread (widgets live there only)."""
    from qtpy.QtCore import QObject, Signal

    class Relay(QObject):
        row = Signal(object)

        def emit(self, row: dict) -> None:
            self.row.emit(row)

    relay = Relay()
    relay.row.connect(receive)
    return relay


class _LossPlot:
    """A small live figure: training loss, and the validation score (SEG, or pixel IoU
    without instances) on a right-hand axis once there is one, against steps."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3.2, 2.2), layout="constrained")
        self.loss_ax = fig.add_subplot()
        self.val_ax = self.loss_ax.twinx()
        self.loss_ax.set_xlabel("step")
        self.loss_ax.set_ylabel("training loss", color="tab:blue")
        self.val_ax.set_ylabel("validation", color="tab:orange")
        self.loss_line, = self.loss_ax.plot([], [], color="tab:blue")
        self.val_line, = self.val_ax.plot([], [], "o-", color="tab:orange")
        self.canvas = FigureCanvasQTAgg(fig)
        self.canvas.setMinimumHeight(200)  # a dock may squeeze it to nothing otherwise
        self.clear()

    def clear(self) -> None:
        self.rows: list[dict] = []
        self.loss_line.set_data([], [])
        self.val_line.set_data([], [])
        self.val_ax.set_visible(False)
        self.canvas.draw_idle()

    def add(self, row: dict) -> None:
        self.rows.append(row)
        steps = [r["iteration"] for r in self.rows]
        self.loss_line.set_data(steps, [r["train_loss_ema"] for r in self.rows])
        val = [(r["iteration"], r["val_iou"] if r.get("val_seg") in ("", None)
                else r["val_seg"]) for r in self.rows if "val_iou" in r]
        self.val_line.set_data([v[0] for v in val], [v[1] for v in val])
        self.val_ax.set_visible(bool(val))
        for ax in (self.loss_ax, self.val_ax):
            ax.relim()
            ax.autoscale_view()
        self.canvas.draw_idle()
