"""``tileunet demo``: the whole job on built-in synthetic cells, no downloads.

1. writes a small synthetic training set of touching, textured cells;
2. trains a small U-Net (valid convolutions, weight map, elastic augmentation) for a
   few minutes on the CPU;
3. segments a large synthetic image with overlap-tile prediction;
4. writes ``demo-output/`` and prints pixel IoU, SEG and how many touching cells came
   out separated.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tileunet.checkpoint import load_model
from tileunet.device import resolve_device
from tileunet.errors import DataError
from tileunet.evaluation.scores import pixel_iou, seg_score, touching_pairs_separated
from tileunet.inference.overlap import predict
from tileunet.inference.postprocess import instances_from_probability
from tileunet.io.images import save_image
from tileunet.io.normalization import Normalization
from tileunet.model import UNetConfig
from tileunet.plots import overlay_rgb, save_weight_map_figure
from tileunet.synthetic import synthetic_cells, write_synthetic_dataset
from tileunet.targets.instances import to_instances
from tileunet.targets.weightmap import weight_map
from tileunet.training.config import Runtime, TrainConfig
from tileunet.training.loop import train

MARKER = ".tileunet-demo"

# A small U-Net that learns the synthetic cells in minutes on two CPU cores. The
# paper's network (width 64, depth 5) is the default of `tileunet train`.
DEMO_NET = {"width": 16, "depth": 4, "dropout": 0.1}
DEMO_TILE = 252  # input tile: 252 -> 164 output for depth 4


@dataclass
class DemoResult:
    out: Path
    seconds: float
    train_seconds: float
    iterations: int
    pixel_iou: float
    seg: float
    separated: int
    touching: int


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out}: already exists (use --overwrite to replace it)")
        if not (out / MARKER).exists():
            raise DataError(f"{out}: not a folder written by tileunet demo; refusing to "
                            "delete it, choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by tileunet demo\n")


def run_demo(out: str | Path = "demo-output", *, minutes: float = 5.0, size: int = 2048,
             seed: int = 0, device: str = "auto", overwrite: bool = False,
             progress: bool = True, n_images: int = 12, train_shape: tuple[int, int] = (256, 256),
             iterations: int | None = None, say=print) -> DemoResult:
    """Run the demo; see the module docstring. Returns the figures it reports.

    ``say`` receives the human-readable report lines (the CLI passes ``print``).
    """
    if size < 16:
        raise ValueError(f"--size must be at least 16, got {size}")
    t0 = time.perf_counter()
    out = Path(out)
    _prepare_out(out, overwrite)
    rng = np.random.default_rng(seed)

    say(f"[1/4] writing {n_images} synthetic {train_shape[0]}x{train_shape[1]} training "
        f"images to {out / 'data'}")
    images, masks = write_synthetic_dataset(out / "data", n_images=n_images,
                                            shape=train_shape, rng=rng)
    say(f"[2/4] training a U-Net (width {DEMO_NET['width']}, depth {DEMO_NET['depth']}) "
        f"for {minutes:g} min on {resolve_device(device)}")
    cfg = TrainConfig(images=str(images), masks=str(masks), out=str(out / "run"),
                      val_fraction=0.17, minutes=minutes, iterations=iterations,
                      tile=DEMO_TILE, val_every=100, seed=seed,
                      network=UNetConfig(**DEMO_NET))
    res = train(cfg, runtime=Runtime(device=device, progress=progress))

    say(f"[3/4] segmenting a new {size}x{size} synthetic image with overlap-tile prediction")
    image, truth = synthetic_cells((size, size), rng=rng)
    save_image(out / "large-image.tif", (image * 255).astype(np.uint8))
    save_image(out / "large-truth.tif", truth.astype(np.uint16))
    net, extra = load_model(out / "run", device=resolve_device(device))
    norm = Normalization.from_dict(extra["normalization"])
    x = norm((image * 255).astype(np.uint8))
    t1 = time.perf_counter()
    probs = predict(net, x, progress=progress)
    predict_s = time.perf_counter() - t1
    instances = instances_from_probability(probs[1])

    say(f"[4/4] writing pictures to {out}")
    save_image(out / "large-prob.tif", probs[1].astype(np.float32))
    save_image(out / "large-instances.tif", instances.astype(np.uint16))
    save_image(out / "large-overlay.png", overlay_rgb(x, instances))
    c = min(512, size)
    save_image(out / "overlay-crop.png", overlay_rgb(x[:c, :c], instances[:c, :c]))
    labels = to_instances(truth[:c, :c])
    save_weight_map_figure(labels, weight_map(labels), out / "weight-map.png",
                           title="weight map w(x) of a synthetic mask (w0=10, sigma=5)")
    shutil.copyfile(out / "run" / "loss.png", out / "loss.png")

    iou = pixel_iou(instances > 0, truth > 0)
    seg = seg_score(instances, truth)
    sep, total = touching_pairs_separated(instances, truth)
    seconds = time.perf_counter() - t0
    say("")
    say(f"demo finished in {seconds / 60:.1f} min ({res.iterations} training iterations in "
        f"{res.seconds / 60:.1f} min; prediction of {size}x{size} took {predict_s:.1f} s)")
    say(f"pixel IoU {iou:.3f}   SEG {seg:.3f}   touching cells separated: {sep} of {total} "
        f"pairs ({100 * sep / max(total, 1):.0f}%)")
    say(f"outputs: {out}/ (large-overlay.png, overlay-crop.png, weight-map.png, loss.png, "
        "run/model.safetensors)")
    return DemoResult(out, seconds, res.seconds, res.iterations, iou, seg, sep, total)
