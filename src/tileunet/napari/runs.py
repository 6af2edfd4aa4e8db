"""Training runs started from a viewer: annotate or correct, train, predict, repeat.

Each start makes a new run folder under a parent folder (``run-001``, ``run-002``, ...)
holding the annotations it trains on (:mod:`tileunet.napari.annotations`) and, once
trained, an ordinary run (``model.safetensors``, ``config.json``, ``metrics.csv``). The run
trains with exactly the request of its recorded command line
(:func:`tileunet.training.flags.parse_train_argv`, resolved as ``tileunet train``
resolves it), so a loop started in the viewer can be repeated and scripted. A run can
be stopped (a checkpoint is saved) and resumed.

Nothing here needs napari; the widget (:mod:`tileunet.napari.train_widget`) is a thin
layer.
"""

from __future__ import annotations

import re
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tileunet.checkpoint import CHECKPOINT_FILE, read_model_config
from tileunet.napari.annotations import (
    ANNOTATIONS_DIR,
    Annotated,
    data_flags,
    write_annotation_files,
    write_annotations,
)
from tileunet.training.flags import flag_error, parse_train_argv
from tileunet.training.loop import Hooks, TrainResult
from tileunet.training.request import TrainRequest, check, train

#: flags the viewer sets itself; extra flags may not repeat them
OWN_FLAGS = ("--images", "--masks", "--ignore", "--out", "--resume", "--devices", "--init",
             "--annotation", "--live")
RUN_NAME = re.compile(r"run-(\d+)$")


def next_run_folder(parent: str | Path) -> Path:
    """``parent/run-NNN`` with NNN one above the highest there (``run-001`` first)."""
    parent = Path(parent)
    taken = [int(m.group(1)) for p in (parent.iterdir() if parent.is_dir() else ())
             if (m := RUN_NAME.match(p.name))]
    return parent / f"run-{max(taken, default=0) + 1:03d}"


def extra_flags(text: str) -> list[str]:
    """The extra ``tileunet train`` flags typed in the viewer (e.g. ``--width 32``),
    split as a shell would; the viewer's own flags are refused."""
    try:
        flags = shlex.split(text)
    except ValueError as e:
        raise ValueError(f"extra flags {text!r}: {e}") from None
    own = [f for f in flags if f.split("=", 1)[0] in OWN_FLAGS]
    if own:
        raise ValueError(f"extra flags: {own[0]} is set by the viewer's own fields")
    return flags


@dataclass
class ViewerRun:
    """One run of the loop: its folder, its command line, and a stop switch."""

    run: Path
    argv: list[str]  # the arguments of `tileunet train`
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def command(self) -> str:
        return shlex.join(["tileunet", "train", *self.argv])

    def resume_argv(self) -> list[str]:
        """The arguments that continue this run from its checkpoint (a start model is
        only read at the start; :func:`start_run` writes it as ``--init PATH``)."""
        argv = list(self.argv)
        if "--init" in argv:
            i = argv.index("--init")
            del argv[i:i + 2]
        return [*argv, "--resume"]

    @property
    def live(self) -> bool:
        return "--live" in self.argv

    def update(self, items: list[Annotated]) -> None:
        """Write the annotations again into the run's folder: a live run trains on them
        from a step within seconds (a run that is not live, when it starts again)."""
        folder = self.run / ANNOTATIONS_DIR
        flags = data_flags(folder, items)
        if flags != self.argv[:len(flags)]:
            raise ValueError("the run was started with other ignore layers: start a new "
                             "run to add or drop them")
        write_annotation_files(folder, items)

    def train(self, on_row: Callable[[dict[str, Any]], None] | None = None,
              on_weights: Callable[[dict[str, Any], int], None] | None = None,
              weights_every: float = Hooks.weights_every) -> TrainResult:
        """Train, or resume once the run has a checkpoint, until the budget is spent or
        :attr:`stop` is set. Runs in the calling thread; ``on_row``, ``on_weights`` and
        ``weights_every`` as in :class:`~tileunet.training.loop.Hooks`."""
        self.stop.clear()
        resume = (self.run / CHECKPOINT_FILE).exists()
        request = checked(self.resume_argv() if resume else self.argv)
        try:
            return train(request, Hooks(stop=self.stop, on_row=on_row,
                                        on_weights=on_weights, weights_every=weights_every))
        except ValueError as e:
            raise flag_error(e) from None


def checked(argv: list[str]) -> TrainRequest:
    """The request of ``tileunet train ARGV``, every setting checked (no file read,
    nothing planned); an error names the flag."""
    request = parse_train_argv(argv)
    try:
        check(request)
    except ValueError as e:
        raise flag_error(e) from None
    return request


def start_run(parent: str | Path, items: list[Annotated], minutes: float,
              init: str | Path | None = None, extra: str = "",
              annotation: str = "dense", live: bool = False) -> ViewerRun:
    """Write ``items`` into a new run folder under ``parent`` and return the run, ready
    to :meth:`ViewerRun.train` for ``minutes`` from ``init`` (None: He init);
    ``annotation="sparse"``: the labels are strokes (:mod:`tileunet.targets.sparse`);
    ``live``: the run reads its annotations again when :meth:`ViewerRun.update` writes
    them (:mod:`tileunet.training.live`)."""
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    flags = extra_flags(extra)  # checked before anything is written
    run = next_run_folder(parent)
    own = ["--out", str(run), "--minutes", f"{minutes:g}"]
    if init is not None:
        own += ["--init", str(init)]
    if annotation != "dense":
        own += ["--annotation", annotation]
    if live:
        own += ["--live"]
    checked(["--images", "-", "--masks", "-", *own, *flags])  # before writing
    if init is not None:
        read_model_config(init)  # a start model that cannot be read: refused here too
    argv = write_annotations(run / ANNOTATIONS_DIR, items, [*own, *flags],
                             {"start_model": None if init is None else str(init)})
    return ViewerRun(run, argv)


__all__ = ["OWN_FLAGS", "ViewerRun", "checked", "extra_flags", "next_run_folder", "start_run"]
