"""A simulated correction loop on DIC-HeLa: correct the worst frame, fine-tune, repeat.

    python benchmarks/correction_loop.py --start RUN_OR_MODEL [--rounds 4] [--minutes 3]

What a user of the napari Train widget does, without the viewer: a model trained
elsewhere (default: the demo's network on the built-in synthetic cells) segments the
frames; the frame it segments worst is "corrected" (its ground truth stands in for the
hand-corrected labels) and the model is fine-tuned for ``--minutes`` on every frame
corrected so far, starting from the previous round's model; then again. Each round goes
through the widget's own path (``tileunet.napari.annotations`` and ``tileunet.napari.runs``: the
same run folders and command lines). Frames to correct come from fold 1 of
``dic_hela.py`` (005, 031, 034, 054); the score is SEG on fold 0 (002, 021, 033, 039),
which is never trained on. Writes ``table.md``, ``metrics.json`` and ``loop.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from bench_common import pyplot, save_figure, trained_demo_model
from paper_common import hela_pair, locate, parser, predict_split, write_results

from tileunet.evaluation.scores import pixel_iou, seg_score
from tileunet.inference.postprocess import instances_from_probability
from tileunet.io.images import read_image
from tileunet.napari.annotations import annotated
from tileunet.napari.runs import start_run
from tileunet.targets.instances import to_instances

POOL = ("005", "031", "034", "054")  # frames the loop may correct
TEST = ("002", "021", "033", "039")  # scored, never trained on


def frames(root: Path, names: tuple[str, ...]) -> dict[str, tuple[Path, np.ndarray]]:
    out = {}
    for t in names:
        image, mask = hela_pair(root, t)
        out[t] = (image, to_instances(read_image(mask)))
    return out


def scores(run: Path, data: dict, out: Path, args) -> dict[str, tuple[float, float]]:
    """(SEG, foreground IoU) per frame of ``data`` for the model of ``run``."""
    probs = predict_split(run, [p for p, _ in data.values()], out, tta=False,
                          device=args.device, progress=not args.quiet,
                          precision=args.precision)
    result = {}
    for t, (path, truth) in data.items():
        inst = instances_from_probability(probs[path.stem])
        result[t] = (seg_score(inst, truth), pixel_iou(inst > 0, truth > 0))
    return result


def layer_pair(t: str, path: Path, truth: np.ndarray) -> tuple:
    image = SimpleNamespace(name=f"t{t}", data=read_image(path), metadata={})
    return image, SimpleNamespace(name=f"t{t} corrected", data=truth, metadata={})


def run_loop(args, root: Path, out: Path) -> tuple[list[list[str]], list[dict]]:
    pool, test = frames(root, POOL), frames(root, TEST)
    model = trained_demo_model(args.start, 2000, args.device)
    rounds, corrected, minutes = [], [], 0.0
    for r in range(args.rounds + 1):
        if r:
            left = {t: s for t, s in rounds[-1]["pool"].items() if t not in corrected}
            corrected.append(min(left, key=lambda t: left[t][0]))  # the worst frame
            items = [annotated(*layer_pair(t, *pool[t])) for t in corrected]
            run = start_run(out / "runs", items, args.minutes, init=model,
                            extra=f"--precision {args.precision} --seed {args.seed}"
                                  + (f" --iterations {args.iterations}"
                                     if args.iterations else ""))
            t0 = time.perf_counter()
            res = run.train()
            minutes += (time.perf_counter() - t0) / 60
            model, iterations = run.run, res.iterations
        else:
            iterations = 0
        where = out / f"round{r}"
        row = {"round": r, "corrected": list(corrected), "model": str(model),
               "minutes": round(minutes, 2), "iterations": iterations,
               "pool": scores(model, pool, where / "pool", args),
               "test": scores(model, test, where / "test", args)}
        row["seg"] = float(np.mean([s for s, _ in row["test"].values()]))
        row["iou"] = float(np.mean([i for _, i in row["test"].values()]))
        rounds.append(row)
        print(f"round {r}: corrected {corrected}, {minutes:.1f} min, test SEG "
              f"{row['seg']:.3f}", file=sys.stderr)
    table = [[str(x["round"]), ", ".join(f"t{t}" for t in x["corrected"]) or "none",
              f"{x['minutes']:.1f}", str(x["iterations"]), f"{x['seg']:.3f}",
              f"{x['iou']:.3f}"] for x in rounds]
    return table, rounds


def figure(rounds: list[dict], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    n = [len(x["corrected"]) for x in rounds]
    ax.plot(n, [x["seg"] for x in rounds], "o-", label="SEG (held-out frames)")
    ax.plot(n, [x["iou"] for x in rounds], "s--", label="foreground IoU")
    for x, k in zip(rounds, n, strict=True):  # cumulative minutes, under each point
        ax.annotate(f"{x['minutes']:.0f} min", (k, x["seg"]), textcoords="offset points",
                    xytext=(12, -14 if x["seg"] > 0.1 else 6), ha="center", fontsize=8)
    ax.set_xlabel("frames corrected")
    ax.set_ylabel("score on 4 unseen frames")
    ax.set_xticks(n)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    ax.set_title("DIC-HeLa: correct the worst frame, fine-tune, repeat")
    save_figure(fig, path)


def main() -> int:
    ap = parser(__doc__.splitlines()[0], minutes=3)
    ap.add_argument("--start", type=Path, help="the model of round 0 (default: the demo's "
                    "network trained on synthetic cells, made once)")
    ap.add_argument("--rounds", type=int, default=4, choices=range(1, len(POOL) + 1))
    args = ap.parse_args()
    found = locate(args, "dic-hela/01", "correction_loop")
    if found is None:
        return 2
    root, out = found
    table, rounds = run_loop(args, root, out)
    figure(rounds, out / "loop.png")
    write_results(out, "DIC-HeLa: a simulated correction loop",
                  ["round", "frames corrected", "CPU minutes (all rounds)", "steps",
                   "SEG (4 unseen frames)", "foreground IoU"], table,
                  {"rounds": rounds, "minutes_per_round": args.minutes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
