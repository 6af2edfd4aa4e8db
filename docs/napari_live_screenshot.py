"""Draw docs/napari_live.png: the live loop in a real viewer — strokes painted, a network
training on them, its view of the image and the squares it would have annotated next.

    xvfb-run -a -s "-screen 0 1400x1080x24" python docs/napari_live_screenshot.py

A synthetic image gets a few strokes (the sparse convention: 1 background, 2 inside a
cell, 3 a whole cell); the Train widget starts a live run from scratch; more strokes
are painted while it trains, and the picture is taken once the live view has been
drawn with weights that learnt from them. Needs ``tileunet[napari]`` and a display.

The picture shows no path of this machine: the viewer runs in a fresh temporary folder
standing for a user's project, and the runs folder is shown as ``runs``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from napari_screenshot import save_screenshot, show_path  # beside this
from scipy import ndimage as ndi


def wait(app, done, what: str, seconds: float = 600) -> None:
    end = time.monotonic() + seconds
    while not done():
        if time.monotonic() > end:
            raise SystemExit(f"{what} did not happen in {seconds:.0f} s")
        app.processEvents()
        time.sleep(0.02)


def strokes(truth: np.ndarray, rng: np.random.Generator, cells: int, lines: int
            ) -> np.ndarray:
    """A hand's strokes: a short line inside each of ``cells`` cells, ``lines`` lines
    through the background, 3 px wide."""
    out = np.zeros(truth.shape, np.int32)
    ids = rng.choice(np.unique(truth[truth > 0]), cells, replace=False)
    for k in ids:
        inside = ndi.binary_erosion(truth == k, iterations=3)
        ys, xs = np.nonzero(inside)
        row = ys[len(ys) // 2]
        out[row - 1:row + 2][:, xs[ys == row]] = 2
    background = ndi.binary_erosion(truth == 0, iterations=3)
    for _ in range(lines):
        y, x = (int(v) for v in rng.integers(20, truth.shape[0] - 20, 2))
        seg = np.zeros(truth.shape, bool)
        seg[y - 1:y + 2, max(0, x - 25):x + 25] = True
        out[seg & background] = 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("-o", "--out", type=Path,
                    default=Path(__file__).resolve().parent / "napari_live.png")
    args = ap.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from tileunet.synthetic import synthetic_cells

    out, before = args.out.resolve(), Path.cwd()
    project = Path(tempfile.mkdtemp(prefix="tileunet-screenshot-"))
    os.chdir(project)
    try:
        rng = np.random.default_rng(3)
        img, truth = synthetic_cells((384, 384), rng=np.random.default_rng(11))
        viewer = napari.Viewer(title="tileunet in napari: paint while it trains")
        viewer.window.resize(1400, 1040)
        viewer.add_image((img * 4000).astype(np.uint16), name="cells", colormap="gray")
        painted = strokes(truth, rng, cells=6, lines=6)
        layer = viewer.add_labels(painted, name="cells strokes", opacity=0.9)
        app = QApplication.instance()
        _, train = viewer.window.add_plugin_dock_widget("tileunet", "Train (U-Net)")
        train.label_layers.value = [layer]
        train.label_kind.value = "strokes (sparse)"
        train.live.value = True
        train.minutes.value = args.minutes
        show_path(train.runs, "runs")
        train.train_button.clicked.emit()
        wait(app, lambda: "cells live" in viewer.layers, "the first live view")
        more = strokes(truth, rng, cells=6, lines=4)
        whole = int(rng.choice(np.unique(truth[truth > 0])))
        more[truth == whole] = 3  # one cell painted whole
        layer.data = np.where(more > 0, more, layer.data)  # painted while it trains
        first = viewer.layers["cells live"].metadata["tileunet_step"]
        wait(app, lambda: viewer.layers["cells live"].metadata["tileunet_step"]
             > first + 300, "a live view after the new strokes")
        viewer.layers.selection.active = layer
        for _ in range(50):  # let the viewer draw
            app.processEvents()
            time.sleep(0.02)
        save_screenshot(viewer, out)
        train.stop_button.clicked.emit()
        wait(app, lambda: train.train_button.enabled, "stopping")
        print(train.status.value.replace(str(project), "."))
        viewer.close()
    finally:
        os.chdir(before)
        shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
