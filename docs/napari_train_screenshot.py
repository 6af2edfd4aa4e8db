"""Draw docs/napari_train.png: one turn of the correct-and-retrain loop in a real viewer.

    xvfb-run -a -s "-screen 0 1400x1080x24" python docs/napari_train_screenshot.py MODEL

MODEL is a run folder or model file (``make demo`` trains one in demo-output/run). A
synthetic image is segmented with it (Segment widget), the instances are corrected
(here: replaced by the image's true cells inside a box, the rest of the image marked
unannotated with an ignore layer), and the Train widget fine-tunes MODEL on them; the
picture is taken when the run has ended. Needs ``tileunet[napari]`` and a display.

The picture must show no path of this machine: the viewer runs in a fresh temporary
folder laid out like a user's project (MODEL appears there as ``runs/run-001``, the new
run is ``runs/run-002``), and the widgets' path fields show paths relative to it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from napari_screenshot import project_folder, save_screenshot, show_path  # beside this


def wait(app, done, what: str, seconds: float = 900) -> None:
    end = time.monotonic() + seconds
    while not done():
        if time.monotonic() > end:
            raise SystemExit(f"{what} did not finish in {seconds:.0f} s")
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--flags", default="--iterations 300",
                    help="extra flags of the Train widget (default: 300 steps)")
    ap.add_argument("-o", "--out", type=Path,
                    default=Path(__file__).resolve().parent / "napari_train.png")
    args = ap.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from tileunet.synthetic import synthetic_cells

    img, truth = synthetic_cells((384, 384), rng=np.random.default_rng(8))
    out = args.out.resolve()
    with project_folder(args.model) as model:
        viewer = napari.Viewer(title="tileunet in napari: correct and retrain")
        viewer.window.resize(1400, 1040)
        viewer.add_image((img * 4000).astype(np.uint16), name="cells", colormap="gray")
        app = QApplication.instance()
        _, segment = viewer.window.add_plugin_dock_widget("tileunet", "Segment (U-Net)")
        segment.image.value = viewer.layers["cells"]
        show_path(segment.model, model)
        segment()
        wait(app, lambda: "cells instances" in viewer.layers
             and segment.call_button.enabled, "segmenting")
        instances = viewer.layers["cells instances"]
        box = (slice(40, 230), slice(60, 300))
        corrected = instances.data.copy()
        corrected[box] = truth[box] + np.where(truth[box] > 0, corrected.max(), 0)
        instances.data = corrected  # a hand's corrections, inside the box
        ignore = np.ones(truth.shape, np.uint8)
        ignore[box] = 0
        viewer.add_labels(ignore, name="cells not checked", opacity=0.25)
        viewer.layers["cells probability"].visible = False
        instances.contour, instances.opacity = 0, 0.45
        _, train = viewer.window.add_plugin_dock_widget("tileunet", "Train (U-Net)")
        train.label_layers.value = [instances]
        train.ignore_layers.value = [viewer.layers["cells not checked"]]
        train.start.value = "the model below"
        show_path(train.model, model)
        show_path(train.runs, model.parent)
        train.extra.value = args.flags
        train.train_button.clicked.emit()
        wait(app, lambda: train.train_button.enabled and train.status.value.startswith(
            ("trained", "failed", "not started")), "training")
        print(train.status.value)
        # the finished run is handed to the Segment widget as an absolute path
        show_path(segment.model, segment.model.value)
        viewer.layers.selection.active = instances
        viewer.reset_view()
        for _ in range(50):  # let the viewer draw
            app.processEvents()
            time.sleep(0.02)
        save_screenshot(viewer, out)
        viewer.close()


if __name__ == "__main__":
    main()
