"""A simulated person annotating with strokes while tileunet trains live: quality against
effort, next to a random-forest pixel classifier given the same strokes.

    python benchmarks/live_annotation.py --dataset dic-hela [--minutes 5] [--per-minute 4]
    python benchmarks/live_annotation.py --dataset isbi2012

The person is simulated from the ground truth of the training images only. They paint
whole cells (outline and fill: 2 strokes) and background strokes: along the middle of
the background, or along a line where two cells touch (a "gap" stroke, as a person
parts touching cells), ``--length`` pixels long; background strokes are ``--brush`` px
wide and stay 2 px off the cells, gap strokes are 3 px wide. At the start each training
image gets one whole cell and one background stroke. Then, every simulated minute (one
minute of wall-clock training on this machine, ``tileunet train --live`` with the
sparse annotation), the person adds ``--per-minute`` strokes, either where the current
prediction of the training images is most wrong or uncertain ("uncertain": the pixel
of the middle lines of cells, background and gaps with the highest entropy plus error,
away from what is painted; in a cell, the person paints that whole cell), or at random
points of those lines ("random").
Both runs start from the same strokes and seed; each of ``--seeds`` (strokes, tiles,
initial weights) is one such pair of sessions. ``--init RUN`` starts the network from a
model (for example one trained on the built-in synthetic cells by ``tileunet demo``), as
the Train widget's *start from* does.

At the end of every simulated minute the latest weights predict the validation images
(DIC-HeLa: the four frames of dic_hela.py's fold 0, trained on the other four; ISBI
2012: slices 20-24, trained on 0-19), which are scored after training: SEG for
DIC-HeLa, pixel error and V_rand for ISBI 2012. DIC-HeLa's instances are drawn with the
separation chosen on the whole cells painted by then, from the same weights' prediction
of the training images (``tileunet.inference.separation``, as a run chooses it when it
ends), and also with the default separation. The random forest (scikit-learn, 100
trees, on scikit-image's multiscale intensity, edge and texture features, sigma 1-16)
is trained on exactly the strokes each run had at that minute, and scored the same way.

Writes ``table.md``, ``metrics.json`` and ``quality_vs_strokes.png`` under ``--out``
(default ``benchmarks/out/live_annotation_<dataset>``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from paper_common import default_data, hela_pair, machine
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

import tileunet
from tileunet.evaluation.isbi import pixel_error, v_rand_v_info
from tileunet.evaluation.scores import seg_score
from tileunet.inference.postprocess import instances_from_probability
from tileunet.inference.scale import predict_at_scale
from tileunet.inference.separation import choose_separation
from tileunet.inference.uncertainty import entropy
from tileunet.io.images import read_image, save_image
from tileunet.io.normalization import Normalization
from tileunet.model import UNet
from tileunet.targets.instances import separation_border, to_instances, training_target
from tileunet.targets.sparse import BACKGROUND, CELL, FIRST_CELL, painted_cells
from tileunet.training.loop import Hooks

HELA_TRAIN = ("005", "031", "034", "054")  # dic_hela.py fold 0 trains on these
HELA_VAL = ("002", "021", "033", "039")


@dataclass
class Image:
    """A training or validation image with its ground truth."""

    name: str
    raw: np.ndarray  # as read
    cells: np.ndarray  # instance labels, 0 = background (ISBI: membranes)
    lines: dict[int, np.ndarray] = field(default_factory=dict)  # stroke class -> middle line


def load(dataset: str, data: Path) -> tuple[list[Image], list[Image]]:
    """Training and validation images with their instance ground truth."""
    if dataset == "dic-hela":
        root = data / "dic-hela" / "01"

        def hela(t: str) -> Image:
            img, mask = hela_pair(root, t)
            return Image(f"t{t}", read_image(img), to_instances(read_image(mask)))
        return [hela(t) for t in HELA_TRAIN], [hela(t) for t in HELA_VAL]
    root = data / "isbi2012" / "train"

    def isbi(i: int) -> Image:
        return Image(f"{i:02d}", read_image(root / "images" / f"{i:02d}.png"),
                     to_instances(read_image(root / "labels" / f"{i:02d}.png")))
    return [isbi(i) for i in range(20)], [isbi(i) for i in range(20, 25)]


#: a background stroke along the line where two cells touch (painted as BACKGROUND)
GAP = -1
#: strokes a whole cell costs: its outline, then a fill
WHOLE_COST = 2


def middle_lines(image: Image) -> None:
    """Where a person draws: the middle lines of the cells (eroded by 2 px) and of the
    background, and the lines where two cells touch."""
    fg = ndi.binary_erosion(image.cells > 0, iterations=2)
    image.lines = {CELL: skeletonize(fg), BACKGROUND: skeletonize(image.cells == 0)}
    gaps = separation_border(image.cells)
    if gaps.any():
        image.lines[GAP] = gaps


def stroke(image: Image, kind: int, y: int, x: int, length: int, brush: int) -> np.ndarray:
    """The pixels of a background stroke through (y, x): the middle line of ``kind``
    (background or gap) within ``length / 2`` of it; along the background ``brush`` px
    wide and 2 px off the cells, along a gap 3 px wide."""
    line = image.lines[kind]
    yy, xx = np.ogrid[: line.shape[0], : line.shape[1]]
    near = line & ((yy - y) ** 2 + (xx - x) ** 2 <= (length / 2) ** 2)
    if kind == GAP:
        return ndi.binary_dilation(near, iterations=1)
    inside = ndi.binary_erosion(image.cells == 0, iterations=2, border_value=1)
    return ndi.binary_dilation(near, iterations=max(1, brush // 2)) & inside


@dataclass
class Person:
    """The simulated annotator: strokes and whole cells per image, where to paint next.
    A whole cell costs :data:`WHOLE_COST` strokes (its outline, then a fill)."""

    images: list[Image]
    length: int
    brush: int
    rng: np.random.Generator
    painted: list[np.ndarray] = field(default_factory=list)
    strokes: int = 0

    def __post_init__(self) -> None:
        self.painted = [np.zeros(im.cells.shape, np.uint8) for im in self.images]

    def draw(self, i: int, kind: int, y: int, x: int) -> None:
        """A stroke of ``kind`` through (y, x); of a cell stroke, the whole cell."""
        if kind == CELL:
            self.fill(i, int(self.images[i].cells[y, x]))
            return
        pixels = stroke(self.images[i], kind, y, x, self.length, self.brush)
        self.painted[i][pixels] = BACKGROUND
        self.strokes += 1

    def fill(self, i: int, cell: int) -> None:
        """The whole cell ``cell`` painted with an id of its own (background strokes
        already there are kept)."""
        painted = self.painted[i]
        painted[(self.images[i].cells == cell) & (painted != BACKGROUND)] = (
            max(FIRST_CELL, int(painted.max()) + 1))
        self.strokes += WHOLE_COST

    def random_point(self, i: int, kind: int) -> tuple[int, int]:
        ys, xs = np.nonzero(self.images[i].lines[kind])
        k = self.rng.integers(len(ys))
        return int(ys[k]), int(xs[k])

    def start(self) -> None:
        """A whole cell and a background stroke in each image."""
        for i in range(len(self.images)):
            for kind in (CELL, BACKGROUND):
                self.draw(i, kind, *self.random_point(i, kind))

    def add(self, count: int, where: str, probs: list[np.ndarray] | None) -> None:
        """``count`` strokes more (a whole cell counts :data:`WHOLE_COST`), at random
        or where the prediction is worst."""
        goal = self.strokes + count
        while self.strokes < goal:
            if where == "random" or probs is None:
                i = int(self.rng.integers(len(self.images)))
                kind = int(self.rng.choice(list(self.images[i].lines)))
                self.draw(i, kind, *self.random_point(i, kind))
                continue
            self.draw(*self.worst(probs))

    def worst(self, probs: list[np.ndarray]) -> tuple[int, int, int, int]:
        """The image, kind and point of the lines with the highest entropy plus error
        (against the target with touching cells parted), away from what is painted
        (a stroke's length from strokes; outside whole cells)."""
        best = (-1.0, 0, CELL, 0, 0)
        for i, (im, p) in enumerate(zip(self.images, probs, strict=True)):
            truth = training_target(im.cells).astype(np.float32)
            score = entropy(p) + np.abs(p - truth)
            far = ndi.distance_transform_edt(self.painted[i] == 0) > self.length
            for kind in im.lines:
                free = self.painted[i] < FIRST_CELL if kind == CELL else far
                s = np.where(im.lines[kind] & free, score, -1.0)
                k = int(np.argmax(s))
                if s.flat[k] > best[0]:
                    best = (float(s.flat[k]), i, kind, *np.unravel_index(k, s.shape))
        return best[1], best[2], int(best[3]), int(best[4])


def write_strokes(person: Person, folder: Path) -> None:
    """The sparse masks and their images, each file written whole."""
    for im, painted in zip(person.images, person.painted, strict=True):
        save_image(folder / "images" / f"{im.name}.tif", im.raw)
        save_image(folder / "masks" / f"{im.name}.tif", painted)


def predict_all(run: Path, weights: dict, images: list[Image]) -> list[np.ndarray]:
    """Foreground probability of each image with these weights of the run."""
    config = json.loads((run / "config.json").read_text())
    net = UNet.from_config(config["model"])
    net.load_state_dict(weights)
    norm, scale = Normalization.from_dict(config["normalization"]), config.get("scale", 1.0)
    return [predict_at_scale(net, norm(im.raw), scale, channels=[1], progress=False)[0]
            for im in images]


def live_run(args: argparse.Namespace, train: list[Image], val: list[Image], where: str,
             seed: int, out: Path) -> list[dict]:
    """One simulated session: strokes, live training, predictions each minute."""
    person = Person(train, args.length, args.brush, np.random.default_rng(seed))
    person.start()
    folder, run = out / where / "strokes", out / where / "run"
    for d in (folder, run):
        shutil.rmtree(d, ignore_errors=True)
    write_strokes(person, folder)
    latest: dict = {}
    hooks = Hooks(stop=threading.Event(), weights_every=2.0,
                  on_weights=lambda w, it: latest.update(weights=w, it=it))
    request = tileunet.TrainRequest(
        images=str(folder / "images"), masks=str(folder / "masks"), out=str(run),
        minutes=args.minutes, settings={"annotation": "sparse", "val_fraction": 0.0,
                                        "keep": "last", "seed": seed},
        init=None if args.init is None else str(args.init), live=True, progress=False)
    trainer = threading.Thread(target=tileunet.train, args=(request, hooks))
    t0 = time.perf_counter()
    trainer.start()
    levels = []
    for minute in range(1, int(args.minutes) + 1):
        time.sleep(max(0.0, t0 + 60 * minute - time.perf_counter()))
        if "weights" not in latest:
            continue
        probs = predict_all(run, latest["weights"], val)
        train_probs = predict_all(run, latest["weights"], train)
        levels.append({"minute": minute, "strokes": person.strokes, "step": latest["it"],
                       "painted_px": int(sum((p > 0).sum() for p in person.painted)),
                       "painted": [p.copy() for p in person.painted], "probs": probs,
                       "train_probs": train_probs})
        if minute < args.minutes:
            person.add(args.per_minute, where, train_probs)
            write_strokes(person, folder)
    hooks.stop.set()
    trainer.join()
    return levels


def forest(train: list[Image], painted: list[np.ndarray], val: list[Image],
           features: dict[str, np.ndarray], seed: int
           ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A random forest on the painted pixels' features; foreground probability of the
    training and of the validation images."""
    from sklearn.ensemble import RandomForestClassifier

    xs, ys = [], []
    for im, p in zip(train, painted, strict=True):
        cls = np.where(p == BACKGROUND, 0, 1)
        keep = p > 0
        xs.append(features[im.name][keep])
        ys.append(cls[keep])
    x, y = np.concatenate(xs), np.concatenate(ys)
    rng = np.random.default_rng(seed)
    if len(y) > 50_000:
        pick = rng.choice(len(y), 50_000, replace=False)
        x, y = x[pick], y[pick]
    rf = RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=seed).fit(x, y)
    out = []
    for im in [*train, *val]:
        f = features[im.name]
        p = rf.predict_proba(f.reshape(-1, f.shape[-1]))
        out.append(p[:, list(rf.classes_).index(1)].reshape(f.shape[:2]) if 1 in rf.classes_
                   else np.zeros(f.shape[:2], np.float32))
    return out[: len(train)], out[len(train):]


def pixel_features(images: list[Image]) -> dict[str, np.ndarray]:
    from skimage.feature import multiscale_basic_features

    out = {}
    for im in images:
        x = Normalization()(im.raw)
        x = x if x.ndim == 2 else x[0]  # the first channel
        out[im.name] = multiscale_basic_features(x, sigma_min=1, sigma_max=16).astype(
            np.float32)
    return out


def chosen(dataset: str, train_probs: list[np.ndarray], painted: list[np.ndarray]
           ) -> dict | None:
    """The separation chosen on the whole cells painted (DIC-HeLa; None for ISBI 2012,
    scored on probabilities)."""
    if dataset != "dic-hela":
        return None
    cells = [painted_cells(p) for p in painted]
    return choose_separation(train_probs, cells, progress=False).options


def score(dataset: str, probs: list[np.ndarray], val: list[Image], last: bool,
          separation: dict | None = None) -> dict[str, float]:
    """SEG (DIC-HeLa; with the ``separation`` chosen on the paint, and with the default
    one) or pixel error, and at the ``last`` minute V_rand at p = 0.5 (ISBI 2012; it
    takes seconds a slice), mean over the validation images."""
    if dataset == "dic-hela":
        return {name: float(np.mean([seg_score(instances_from_probability(p, **opts),
                                                im.cells)
                                     for p, im in zip(probs, val, strict=True)]))
                for name, opts in (("SEG", separation or {}), ("SEG, default", {}))}
    scores = {"pixel error": float(np.mean([pixel_error(1 - p, im.cells == 0)["error"]
                                            for p, im in zip(probs, val, strict=True)]))}
    scores["V_rand"] = float(np.mean([v_rand_v_info(p < 0.5, im.cells)["v_rand"]
                                      for p, im in zip(probs, val, strict=True)])
                             ) if last else float("nan")
    return scores


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("dic-hela", "isbi2012"), default="dic-hela")
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--out", type=Path)
    ap.add_argument("--minutes", type=int, default=5, help="simulated minutes (default 5)")
    ap.add_argument("--per-minute", type=int, default=4,
                    help="strokes the person adds per minute (default 6)")
    ap.add_argument("--length", type=int, default=40, help="stroke length in px")
    ap.add_argument("--brush", type=int, default=9,
                    help="brush width of background strokes in px (gaps: 3)")
    ap.add_argument("--where", choices=("uncertain", "random", "both"), default="both")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--init", type=Path,
                    help="start every session from this model (a run folder or model "
                         "file, e.g. of tileunet demo) instead of He initialisation")
    args = ap.parse_args()
    if not (args.data / ("dic-hela" if args.dataset == "dic-hela" else "isbi2012")).is_dir():
        print(f"live_annotation: no {args.dataset} under {args.data}")
        return 2
    out = args.out or Path("benchmarks/out") / f"live_annotation_{args.dataset}"
    out.mkdir(parents=True, exist_ok=True)
    train, val = load(args.dataset, args.data)
    for im in train:
        middle_lines(im)
    wheres = ("uncertain", "random") if args.where == "both" else (args.where,)
    sessions = {(w, seed): live_run(args, train, val, w, seed, out / f"seed{seed}")
                for seed in args.seeds for w in wheres}
    report(args, out, train, val, sessions)
    return 0


def report(args: argparse.Namespace, out: Path, train: list[Image], val: list[Image],
           sessions: dict[tuple[str, int], list[dict]]) -> None:
    """Scores of every session and minute, for tileunet and the forest on its strokes;
    the table gives the mean over seeds and their range."""
    features = pixel_features([*train, *val])
    payload = []
    for (where, seed), levels in sessions.items():
        for lv in levels:
            last = lv is levels[-1]
            rf_train, rf_val = forest(train, lv["painted"], val, features, seed)
            ours = score(args.dataset, lv["probs"], val, last,
                         chosen(args.dataset, lv["train_probs"], lv["painted"]))
            rf = score(args.dataset, rf_val, val, last,
                       chosen(args.dataset, rf_train, lv["painted"]))
            payload.append({"where": where, "seed": seed, **{k: lv[k] for k in
                            ("minute", "strokes", "painted_px", "step")},
                            "tileunet": ours, "random forest": rf})
    names = list(payload[0]["tileunet"]) if payload else []
    (out / "metrics.json").write_text(json.dumps(
        {"levels": payload, "machine": machine(), "args": vars(args) | {"data": "",
                                                                           "out": ""}},
        indent=2, default=str) + "\n")
    lines = table(payload, names)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    figure(out, args.dataset, payload, names[0] if names else "")


def spread(values: list[float]) -> str:
    """Mean, and the range when there is more than one value."""
    v = [x for x in values if np.isfinite(x)]
    if not v:
        return "-"
    return f"{np.mean(v):.3f}" + (f" ({min(v):.3f}-{max(v):.3f})" if len(v) > 1 else "")


def table(payload: list[dict], names: list[str]) -> list[str]:
    """One row per way of placing strokes and minute, over the seeds."""
    header = ["strokes placed", "minute", "strokes", "painted px", "steps",
              *(f"tileunet {n}" for n in names), *(f"forest {n}" for n in names)]
    rows = []
    for where, minute in dict.fromkeys((p["where"], p["minute"]) for p in payload):
        pts = [p for p in payload if p["where"] == where and p["minute"] == minute]
        rows.append([where, str(minute), f"{np.mean([p['strokes'] for p in pts]):.0f}",
                     f"{np.mean([p['painted_px'] for p in pts]):.0f}",
                     f"{np.mean([p['step'] for p in pts]):.0f}",
                     *(spread([p["tileunet"][n] for p in pts]) for n in names),
                     *(spread([p["random forest"][n] for p in pts]) for n in names)])
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def figure(out: Path, dataset: str, payload: list[dict], metric: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for where in dict.fromkeys(p["where"] for p in payload):
        minutes = sorted({p["minute"] for p in payload if p["where"] == where})
        for who, style in (("tileunet", "o-"), ("random forest", "s--")):
            x, y, lo, hi = [], [], [], []
            for m in minutes:
                pts = [p for p in payload if p["where"] == where and p["minute"] == m]
                v = [p[who][metric] for p in pts]
                x.append(np.mean([p["strokes"] for p in pts]))
                y.append(np.mean(v))
                lo.append(np.mean(v) - min(v))
                hi.append(max(v) - np.mean(v))
            ax.errorbar(x, y, yerr=[lo, hi], fmt=style, capsize=2,
                        label=f"{who}, strokes where {where}")
    ax.set_xlabel("strokes")
    ax.set_ylabel(f"{metric} ({dataset} validation)")
    ax.legend(fontsize=7)
    FigureCanvasAgg(fig).print_png(str(out / "quality_vs_strokes.png"))


if __name__ == "__main__":
    raise SystemExit(main())
