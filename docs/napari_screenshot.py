"""Draw docs/napari.png: the plugin's widget run on a synthetic image in a real viewer.

    xvfb-run -a -s "-screen 0 1400x900x24" python docs/napari_screenshot.py RUN [IMAGE]

RUN is a run folder or model file (``make demo`` trains one in demo-output/run); IMAGE
defaults to a fresh synthetic cell image. Needs ``tileunet[napari]`` and a display.

The picture must show no path of this machine: the viewer runs in a fresh temporary
folder laid out like a user's project (RUN appears there as ``runs/run-001``), and the
widgets' path fields show paths relative to it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

#: where the model given on the command line appears in the project folder
START_RUN = Path("runs", "run-001")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("image", type=Path, nargs="?")
    ap.add_argument("-o", "--out", type=Path,
                    default=Path(__file__).resolve().parent / "napari.png")
    args = ap.parse_args()

    import napari
    import tifffile
    from qtpy.QtWidgets import QApplication

    from tileunet.synthetic import synthetic_cells

    if args.image is None:
        img, _ = synthetic_cells((384, 384), rng=np.random.default_rng(3))
        data = (img * 4000).astype(np.uint16)
    else:
        data = tifffile.imread(args.image)
    out = args.out.resolve()
    with project_folder(args.model) as model:
        viewer = napari.Viewer(title="tileunet in napari")
        viewer.window.resize(1300, 800)
        viewer.add_image(data, name="cells", colormap="gray")
        _, widget = viewer.window.add_plugin_dock_widget("tileunet", "Segment (U-Net)")
        widget.image.value = viewer.layers["cells"]
        show_path(widget.model, model)
        widget()
        app, end = QApplication.instance(), time.monotonic() + 600
        while len(viewer.layers) < 3:
            if time.monotonic() > end:
                raise SystemExit("the widget did not finish in 10 minutes")
            app.processEvents()
            time.sleep(0.02)
        viewer.layers["cells probability"].visible = False
        viewer.layers["cells instances"].contour = 0
        viewer.layers["cells instances"].opacity = 0.45
        viewer.layers.selection.active = viewer.layers["cells instances"]
        viewer.reset_view()
        for _ in range(50):
            app.processEvents()
            time.sleep(0.02)
        save_screenshot(viewer, out)
        viewer.close()


@contextlib.contextmanager
def project_folder(model: Path) -> Iterator[Path]:
    """Work in a fresh temporary folder standing for a user's project, ``model`` linked
    into it as ``runs/run-001``; yields that relative path. The working directory is
    restored and the folder removed afterwards."""
    model = model.resolve()
    if not model.exists():
        raise SystemExit(f"{model.name}: no such run folder or model file")
    before, tmp = Path.cwd(), Path(tempfile.mkdtemp(prefix="tileunet-screenshot-"))
    try:
        os.chdir(tmp)
        if model.is_dir():
            START_RUN.parent.mkdir()
            START_RUN.symlink_to(model, target_is_directory=True)
        else:
            START_RUN.mkdir(parents=True)
            (START_RUN / "model.safetensors").symlink_to(model)
        yield START_RUN
    finally:
        os.chdir(before)
        shutil.rmtree(tmp, ignore_errors=True)


def show_path(field, path: str | Path) -> None:
    """Put ``path`` in a magicgui FileEdit as it is: setting ``field.value`` would make
    it absolute (a path of this machine); relative, it reads against the project folder.
    An absolute path inside the working directory is shown relative to it."""
    path = Path(path)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())
    field.line_edit.value = str(path)


def save_screenshot(viewer, out: Path) -> None:
    """The whole window as a 256-colour PNG (a third the size), written atomically."""
    from PIL import Image

    fd, tmp = tempfile.mkstemp(suffix=".png", dir=out.parent)
    os.close(fd)
    viewer.screenshot(tmp, canvas_only=False, flash=False)
    Image.open(tmp).convert("RGB").quantize(256).save(tmp, optimize=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
