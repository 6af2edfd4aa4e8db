"""The napari plugin in a real viewer: found by napari through its entry point, the widget
run on an image layer in a worker thread with progress bars, and the reader opening a
prediction store. Needs napari with a Qt binding and a display: a running X server
(``DISPLAY``) or Xvfb, started here; skipped where either is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tileunet import UNet
from tileunet.checkpoint import save_model
from tileunet.io.normalization import Normalization
from tileunet.napari.plugin import segment_layer

pytest.importorskip("napari")
pytest.importorskip("qtpy")


@pytest.fixture(scope="module")
def display():
    """A display for Qt: the one in ``DISPLAY``, else a private Xvfb server."""
    if os.environ.get("DISPLAY"):
        _qt_starts()
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        pytest.skip("no display and no Xvfb")
    # -displayfd: Xvfb picks a free display number and writes it to the pipe when ready
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x900x24",
                             "-nolisten", "tcp"], pass_fds=(write,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        pytest.skip("Xvfb did not start")
    os.environ["DISPLAY"] = f":{number}"
    try:
        _qt_starts()
        yield os.environ["DISPLAY"]
    finally:
        proc.terminate()
        proc.wait(10)
        del os.environ["DISPLAY"]


def _qt_starts() -> None:
    """Skip unless Qt can open a window on the display: a missing system library (say
    libxcb-cursor0) makes Qt abort the process, so try in a child process first."""
    probe = subprocess.run([sys.executable, "-c", "from qtpy.QtWidgets import QApplication, "
                            "QWidget; app = QApplication([]); QWidget().show()"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        lines = (probe.stderr.strip() or "no message").splitlines()
        why = next((ln for ln in lines if "could not" in ln.lower()), lines[-1])
        pytest.skip(f"Qt cannot start on this display: {why.strip()}")


@pytest.fixture
def viewer(display, monkeypatch):
    """A napari viewer; an exception raised in a Qt slot fails the test (without a hook,
    PyQt aborts the whole process)."""
    import napari

    raised: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda typ, exc, tb: raised.append(exc))
    v = napari.Viewer(show=False)
    yield v
    v.close()
    assert not raised, f"exception in a Qt slot: {raised[0]!r}"


def _wait(cond, seconds: float = 120.0) -> None:
    from qtpy.QtWidgets import QApplication

    app, end = QApplication.instance(), time.monotonic() + seconds
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError("the viewer did not get there in time")
        app.processEvents()
        time.sleep(0.01)


@pytest.fixture
def model(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    save_model(path, UNet(depth=3, width=4, dropout=0.0).eval(),
               {"normalization": Normalization().to_dict()})
    return path


def test_widget_segments_the_selected_layer_in_a_thread_with_progress(viewer, model, rng):
    from napari.utils import progress

    data = (rng.random((90, 70)) * 4000).astype(np.uint16)
    viewer.add_image(data, name="cells", scale=(0.5, 0.25))
    _, widget = viewer.window.add_plugin_dock_widget("tileunet", "Segment (U-Net)")
    bars: list[tuple[str, int | None]] = []
    progress._all_instances.events.changed.connect(
        lambda e: bars.extend((b.desc, b.total) for b in e.added))
    widget.image.value = viewer.layers["cells"]
    widget.model.value = model
    worker = widget()  # returns at once; the network runs in a worker thread
    assert worker is not None
    assert not widget.call_button.enabled  # one click, one run
    _wait(lambda: len(viewer.layers) == 3 and not progress._all_instances)
    _wait(lambda: widget.call_button.enabled)
    assert widget.call_button.text == "Segment"

    (want_prob, _, _), (want_labels, _, _) = segment_layer(viewer.layers["cells"], model,
                                                           progress=progress)
    prob, labels = viewer.layers["cells probability"], viewer.layers["cells instances"]
    assert type(prob).__name__ == "Image" and type(labels).__name__ == "Labels"
    np.testing.assert_array_equal(prob.data, want_prob)
    np.testing.assert_array_equal(labels.data, want_labels)
    assert labels.data.max() > 0
    np.testing.assert_array_equal(prob.scale, [0.5, 0.25])
    np.testing.assert_array_equal(labels.scale, [0.5, 0.25])
    # napari bars for the tiles (with their count) and for the instance step
    tiles = [total for desc, total in bars if desc == "tileunet: predict"]
    assert len(tiles) == 1 and tiles[0] >= 1
    assert ("tileunet: instances", 0) in bars  # no count: a busy bar


def test_widget_reports_a_layer_that_does_not_fit_and_adds_nothing(viewer, model):
    viewer.add_image(np.zeros((3, 40, 40), np.float32), name="stack")
    _, widget = viewer.window.add_plugin_dock_widget("tileunet", "Segment (U-Net)")
    widget.image.value = viewer.layers["stack"]
    widget.model.value = model
    errors: list[BaseException] = []
    worker = widget()
    worker.errored.connect(errors.append)
    _wait(lambda: bool(errors))
    assert "layer 'stack': shape (3, 40, 40) does not fit" in str(errors[0])
    _wait(lambda: widget.call_button.enabled)  # ready for another try
    assert len(viewer.layers) == 1


@pytest.fixture
def ome_store(model, rng, tmp_path) -> Path:
    """``predict -o pred.ome.zarr`` of a 60x50 TIFF with 0.5 um pixels (2 levels)."""
    tifffile = pytest.importorskip("tifffile")
    from tileunet.inference.blockwise import segment_to_zarr

    img = (rng.random((60, 50)) * 4000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "img.tif", img, resolution=(2.0, 2.0), imagej=True,
                     metadata={"unit": "um"})
    return segment_to_zarr(model, tmp_path / "img.tif", tmp_path / "pred.ome.zarr",
                           block=24, tile=44, progress=False)


def test_viewer_opens_a_prediction_store_with_the_reader(viewer, ome_store):
    layers = viewer.open(str(ome_store), plugin="tileunet")
    assert [ly.name for ly in layers] == ["pred probability", "pred instances", "pred mask"]
    assert [type(ly).__name__ for ly in layers] == ["Image", "Labels", "Labels"]
    np.testing.assert_array_equal(layers[1].scale, [0.5, 0.5])
    assert layers[1].multiscale and [d.shape for d in layers[1].data] == [(60, 50), (30, 25)]
    assert np.asarray(layers[1].data[0]).max() > 0


def test_napari_ome_zarr_opens_the_ome_zarr_output(viewer, ome_store):
    """An independent NGFF reader (the napari-ome-zarr plugin) finds the image, both
    label images, the pyramid and the pixel size in what ``predict`` writes."""
    pytest.importorskip("napari_ome_zarr")
    layers = viewer.open(str(ome_store), plugin="napari-ome-zarr")
    kinds = sorted((type(ly).__name__, ly.name.rsplit("/", 1)[-1]) for ly in layers)
    assert kinds == [("Image", "probability: foreground"), ("Labels", "instances"),
                     ("Labels", "mask")]
    for ly in layers:
        assert ly.multiscale and [d.shape[-2:] for d in ly.data] == [(60, 50), (30, 25)]
        np.testing.assert_array_equal(ly.scale[-2:], [0.5, 0.5])
        assert [str(u) for u in ly.units[-2:]] == ["micrometer", "micrometer"]


# ------------------------------------------------------------------ the Train widget
TINY_FLAGS = "--iterations 60 --width 4 --depth 3 --tile 92 --val-every 20 --recipe paper"


def paint(viewer, name: str, seed: int) -> None:
    """A synthetic image and a Labels layer painted cell by cell, as a hand would."""
    from tileunet.synthetic import synthetic_cells

    image, truth = synthetic_cells((96, 96), rng=np.random.default_rng(seed))
    viewer.add_image(image, name=name)
    layer = viewer.add_labels(np.zeros(truth.shape, np.int32), name=f"{name} labels")
    for k in range(1, truth.max() + 1):
        layer.data_setitem(np.nonzero(truth == k), k)
    assert np.array_equal(layer.data, truth)


@pytest.fixture
def painted(viewer):
    paint(viewer, "cells", 4)
    return viewer


def _train_widget(viewer, tmp_path):
    _, widget = viewer.window.add_plugin_dock_widget("tileunet", "Train (U-Net)")
    widget.runs.value = tmp_path / "runs"
    widget.extra.value = TINY_FLAGS
    return widget


def _finished(widget) -> bool:
    return widget.train_button.enabled and not widget.stop_button.enabled


def test_train_widget_trains_stops_resumes_and_hands_the_run_to_segment(painted, tmp_path):
    viewer = painted
    paint(viewer, "cells 2", 5)
    paint(viewer, "cells 3", 6)
    widget = _train_widget(viewer, tmp_path)
    widget.extra.value += " --val-fraction 0.3"  # three images: one is held out
    widget.label_layers.value = [viewer.layers[f"{name} labels"]
                                 for name in ("cells", "cells 2", "cells 3")]
    stops = []

    def stop_once(row):  # the Stop button, pressed once the first rows are drawn
        if not stops:
            stops.append(row["iteration"])
            widget.stop_button.clicked.emit()
    widget.relay.row.connect(stop_once)
    widget.train_button.clicked.emit()
    assert not widget.train_button.enabled and widget.stop_button.enabled
    _wait(lambda: _finished(widget))
    run = tmp_path / "runs" / "run-001"
    assert "stopped" in widget.status.value, widget.status.value
    assert widget.resume_button.enabled and (run / "checkpoint.safetensors").exists()
    stopped_at = len(widget.plot.rows)
    assert stops and 1 <= stopped_at < 6  # rows come every 10 of 60 steps
    widget.relay.row.disconnect(stop_once)
    widget.resume_button.clicked.emit()
    _wait(lambda: _finished(widget) and not widget.resume_button.enabled)
    assert widget.status.value.startswith("trained: 60 steps"), widget.status.value
    assert [r["iteration"] for r in widget.plot.rows][-1] == 60
    assert widget.plot.val_line.get_xdata()[-1] == 60  # validation drawn as it comes
    assert widget.plot.val_ax.get_visible() and "SEG" in widget.status.value
    record = json.loads((run / "annotations" / "layers.json").read_text())
    assert [(x["image"], x["labels"]) for x in record["layers"]] == [
        ("cells", "cells labels"), ("cells 2", "cells 2 labels"), ("cells 3", "cells 3 labels")]
    assert record["start_model"] is None
    segment = viewer.window.add_plugin_dock_widget("tileunet", "Segment (U-Net)")[1]
    assert Path(segment.model.value) == run  # the result, ready to segment with


def test_predict_correct_and_train_again_from_the_model(painted, tmp_path):
    viewer = painted
    widget = _train_widget(viewer, tmp_path)
    widget.label_layers.value = [viewer.layers["cells labels"]]
    widget.train_button.clicked.emit()
    _wait(lambda: _finished(widget) and widget.status.value.startswith("trained"))
    first = tmp_path / "runs" / "run-001"
    segment = viewer.window.add_plugin_dock_widget("tileunet", "Segment (U-Net)")[1]
    segment.image.value = viewer.layers["cells"]
    segment()
    _wait(lambda: "cells instances" in viewer.layers and segment.call_button.enabled)
    instances = viewer.layers["cells instances"]
    truth = viewer.layers["cells labels"].data
    instances.data_setitem(np.nonzero(truth == 1), instances.data.max() + 1)  # a correction
    viewer.layers.remove("cells labels")  # the corrected prediction is the only labels
    widget.label_layers.value = [instances]
    widget.start.value = "the model below"
    widget.model.value = first / "model.safetensors"
    widget.train_button.clicked.emit()
    _wait(lambda: _finished(widget) and "run-002" in widget.status.value)
    assert widget.status.value.startswith("trained"), widget.status.value
    second = tmp_path / "runs" / "run-002"
    record = json.loads((second / "annotations" / "layers.json").read_text())
    assert record["layers"][0] == {"file": "cells.tif", "image": "cells",
                                   "labels": "cells instances", "unlabelled": 0}
    assert record["start_model"] == str(first / "model.safetensors")
    from tileunet.io.images import read_image
    np.testing.assert_array_equal(read_image(second / "annotations/masks/cells.tif"),
                                  instances.data)


def test_train_widget_says_why_it_did_not_start_and_writes_nothing(viewer, tmp_path):
    viewer.add_image(np.zeros((40, 40), np.float32), name="blank")
    viewer.add_labels(np.zeros((40, 40), np.int32), name="blank labels")
    widget = _train_widget(viewer, tmp_path)
    widget.label_layers.value = [viewer.layers["blank labels"]]
    widget.train_button.clicked.emit()
    assert widget.status.value == ("not started: the labels layers hold no objects: paint "
                                   "or correct some first")
    assert widget.train_button.enabled and not (tmp_path / "runs").exists()


def test_strokes_painted_during_a_live_run_reach_the_trainer(viewer, tmp_path, monkeypatch):
    """Strokes (the sparse convention) painted while a tiny network trains live are
    written into the run and read by its trainer: its snapshot record says so."""
    import tileunet.napari.train_widget as train_widget
    import tileunet.training.live as live
    from tileunet.synthetic import synthetic_cells

    monkeypatch.setattr(live, "CHECK_SECONDS", 0.2)
    monkeypatch.setattr(train_widget, "LIVE_DELAY_MS", 100)
    image, truth = synthetic_cells((96, 96), rng=np.random.default_rng(8))
    viewer.add_image(image, name="cells")
    strokes = viewer.add_labels(np.zeros(truth.shape, np.int32), name="cells labels")
    strokes.data_setitem(np.nonzero(truth[:4] == 0), 1)  # a background stroke, top rows
    cell = np.nonzero(truth == truth.max())
    strokes.data_setitem((cell[0][:5], cell[1][:5]), 2)  # a cell stroke
    widget = _train_widget(viewer, tmp_path)
    widget.extra.value = "--width 4 --depth 3 --tile 92 --recipe paper"
    widget.minutes.value = 2.0
    widget.label_kind.value = "strokes (sparse)"
    widget.live.value = True
    widget.label_layers.value = [strokes]
    widget.train_button.clicked.emit()
    run = tmp_path / "runs" / "run-001"
    record = run / "snapshots.json"
    _wait(lambda: record.exists())
    second = np.nonzero(truth == truth.max() - 1)  # another cell, painted whole as id 3
    strokes.data_setitem(second, 3)
    _wait(lambda: len(json.loads(record.read_text())["snapshots"]) >= 2)
    widget.stop_button.clicked.emit()
    _wait(lambda: _finished(widget))
    entries = json.loads(record.read_text())["snapshots"]
    assert entries[1]["iteration"] > 0
    kept = run / "snapshots" / entries[1]["snapshot"] / "1-masks" / "cells.tif"
    from tileunet.io.images import read_image

    assert (read_image(kept)[second] == 3).all()
    assert "--annotation sparse" in widget.session.command and "--live" in widget.session.command


def test_a_live_run_shows_the_view_predicted_with_its_latest_weights(viewer, tmp_path,
                                                                     monkeypatch):
    import tileunet.napari.train_widget as train_widget

    monkeypatch.setattr(train_widget, "PREVIEW_MS", 200)
    paint(viewer, "cells", 9)
    widget = _train_widget(viewer, tmp_path)
    widget.extra.value = "--width 4 --depth 3 --tile 92 --recipe paper --val-fraction 0"
    widget.minutes.value = 2.0
    widget.live.value = True
    widget.label_layers.value = [viewer.layers["cells labels"]]
    widget.train_button.clicked.emit()
    _wait(lambda: "cells live" in viewer.layers)
    layer = viewer.layers["cells live"]
    first = layer.metadata["tileunet_step"]
    _wait(lambda: layer.metadata["tileunet_step"] > first)  # again, with newer weights
    assert "look next at" in widget.status.value
    widget.stop_button.clicked.emit()
    _wait(lambda: _finished(widget))
    assert layer.data.shape == viewer.layers["cells"].data.shape
    assert 0.0 <= layer.data.min() and layer.data.max() <= 1.0 and layer.data.max() > 0
    uncertain = viewer.layers["cells uncertainty"].data
    assert 0.0 <= uncertain.min() and uncertain.max() <= 1.0 and uncertain.max() > 0
    squares = viewer.layers["cells look next"].data
    assert 1 <= len(squares) <= train_widget.LOOK_COUNT
