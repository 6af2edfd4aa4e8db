"""What the live view costs a live run: training steps per second with and without it,
and how long a view takes to come.

    python benchmarks/live_view_cost.py [--seconds 90] [--view 512]

A live run trains on the DIC-HeLa frames of dic_hela.py's fold 0 (dense masks; what
is painted does not change the cost) with the network the plan chooses for a 5-minute
live run on a 2-core CPU (width 16, depth 4, 252 px tiles, batches of 2), for
``--seconds`` of wall-clock time, once alone and once with the live view as the napari
widget runs it: the trainer hands its weights every 3 s
(:data:`tileunet.napari.train_widget.PREVIEW_MS`), and another thread predicts the box
in view (``--view`` px square) with each new copy (:class:`tileunet.napari.preview.
LivePreview`), as the widget's worker thread does. The two runs alternate ``--repeats``
times, so that a slower phase of the machine hits both. Reported: steps per second of
each, the share of training lost to the view, and the seconds per view.

Writes ``table.md`` and ``metrics.json`` under ``--out`` (default
``benchmarks/out/live_view_cost``).
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from pathlib import Path

import numpy as np
from paper_common import default_data, hela_pair, link_split, write_results

from tileunet.io.images import read_image
from tileunet.napari.preview import LivePreview
from tileunet.napari.train_widget import PREVIEW_MS
from tileunet.training.config import Runtime, TrainConfig
from tileunet.training.loop import Hooks, train

FRAMES = ("005", "031", "034", "054")  # dic_hela.py fold 0 trains on these
NETWORK = dict(width=16, depth=4, tile=252, batch_size=2, optimizer="adamw", lr=1e-3,
               dropout=0.5)


def viewer_thread(preview: LivePreview, image: np.ndarray, box: tuple, stop: threading.Event,
                  times: list[float]) -> None:
    """Predicts the box in view with each new copy of the weights, every 0.1 s at most
    (the widget asks every PREVIEW_MS; the weights come as often)."""
    while not stop.is_set():
        if preview.has_new():
            t0 = time.perf_counter()
            preview.predict(image, box)
            times.append(time.perf_counter() - t0)
        stop.wait(0.1)


def one_run(cfg: TrainConfig, with_view: bool, image: np.ndarray, view: int
            ) -> tuple[float, list[float]]:
    """Steps per second of one run, and the seconds of each view."""
    shutil.rmtree(cfg.out, ignore_errors=True)
    times: list[float] = []
    stop = threading.Event()
    preview = LivePreview(cfg.out)
    hooks = Hooks(on_weights=preview.offer if with_view else None,
                  weights_every=PREVIEW_MS / 1000)
    viewer = threading.Thread(target=viewer_thread, args=(
        preview, image, (0, view, 0, view), stop, times))
    if with_view:
        viewer.start()
    try:
        res = train(cfg, hooks, Runtime(progress=False))
    finally:
        stop.set()
        if with_view:
            viewer.join()
    return res.iterations / res.seconds, times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/live_view_cost"))
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--view", type=int, default=512, help="side of the box in view, px")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    root = args.data / "dic-hela" / "01"
    if not root.is_dir():
        print(f"live_view_cost: no DIC-HeLa under {args.data}")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    images, masks = link_split([hela_pair(root, t) for t in FRAMES], args.out / "data")
    image = read_image(hela_pair(root, "002")[0])
    cfg = TrainConfig.from_settings(images=str(images), masks=str(masks),
                                    out=str(args.out / "run"), minutes=args.seconds / 60,
                                    val_fraction=0.0, val_every=10**9, keep="last",
                                    **NETWORK)
    rates: dict[bool, list[float]] = {False: [], True: []}
    views: list[float] = []
    for _ in range(args.repeats):
        for with_view in (False, True):
            rate, times = one_run(cfg, with_view, image, args.view)
            rates[with_view].append(rate)
            views += times
    alone, viewed = np.median(rates[False]), np.median(rates[True])
    rows = [["alone", f"{alone:.2f}", "-", "-", "-"],
            ["with the live view", f"{viewed:.2f}", f"{100 * (1 - viewed / alone):.0f} %",
             f"{len(views)}", f"{np.median(views):.2f} ({min(views):.2f}-{max(views):.2f})"]]
    write_results(args.out, "The live view's cost to a live run",
                  ["run", "steps/s (median)", "training lost", "views", "s per view"],
                  rows, {"rates": {"alone": rates[False], "with view": rates[True]},
                         "view_seconds": views, "seconds": args.seconds, "view": args.view,
                         "repeats": args.repeats})
    print((args.out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
