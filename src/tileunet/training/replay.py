"""Replaying a live run: its settings, trained on the versions of the training set it saw.

A live run (:mod:`tileunet.training.live`) keeps every version of its images, masks and
ignore masks under ``RUN/snapshots/NNN/``, with the step each joined at in
``RUN/snapshots.json``. A replay trains a new run with the live run's settings and
seed on version 0 and switches to each later version at the step it joined at, for as
many steps as the live run made (or ``iterations``). It runs by steps, not by the clock,
so two replays of a run are the same computation; the live run itself is not repeated
bit for bit: its learning rate followed the wall clock and its versions joined when
their files were seen.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

from tileunet.errors import DataError
from tileunet.training.config import TrainConfig
from tileunet.training.live import SNAPSHOTS_DIR, SNAPSHOTS_FILE


@dataclass(frozen=True)
class Version:
    """One version of a live run's training set and the step it joined at."""

    iteration: int
    images: str
    masks: str
    ignore: str | None


def versions(run: Path) -> list[Version]:
    """The versions a live run trained on, in order (a DataError names what is
    missing)."""
    record = run / SNAPSHOTS_FILE
    try:
        entries = json.loads(record.read_text())["snapshots"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{record}: not the record of a live run ({e})") from None
    out = []
    for entry in entries:
        folder = run / SNAPSHOTS_DIR / entry["snapshot"]
        kept = [folder / f"{i}-{Path(src).name}" for i, src in enumerate(entry["sources"])]
        missing = [p for p in kept if not p.exists()]
        if missing:
            raise DataError(f"{missing[0]}: a version of the live run is missing")
        out.append(Version(int(entry["iteration"]), str(kept[0]), str(kept[1]),
                           str(kept[2]) if len(kept) > 2 else None))
    if not out or out[0].iteration != 0:
        raise DataError(f"{record}: no version from step 0 (a live run records its "
                        "first version when it starts)")
    return out


def steps_made(run: Path) -> int:
    """The last step in a run's ``metrics.csv``."""
    path = run / "metrics.csv"
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return int(rows[-1]["iteration"])
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise DataError(f"{path}: no step recorded ({e})") from None


def replay_config(run: str | Path, out: str | Path, iterations: int | None = None
                  ) -> tuple[TrainConfig, list[Version]]:
    """The configuration of a replay of the live run ``run`` into ``out`` (its settings,
    seed and start weights, version 0's files, a budget of ``iterations`` steps or as
    many as it made) and the versions to switch to."""
    run = Path(run)
    path = run / "config.json"
    try:
        cfg = TrainConfig.from_dict(json.loads(path.read_text())["train"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: no training configuration ({e})") from None
    if Path(out).resolve() == run.resolve():
        raise ValueError(f"{out}: a replay writes a new run, not the one it replays")
    found = versions(run)
    steps = steps_made(run) if iterations is None else iterations
    first = found[0]
    cfg = replace(cfg, images=first.images, masks=first.masks, ignore=first.ignore,
                  out=str(out), minutes=None, iterations=steps)
    return cfg, [v for v in found[1:] if v.iteration < steps]


@dataclass
class Schedule:
    """The versions still to come; ``due`` says when a step reaches the next one."""

    pending: list[Version]
    current: Version | None = None

    def due(self, iteration: int) -> bool:
        """True when versions joined by ``iteration`` (the latest becomes ``current``;
        a resumed run reaches several at once)."""
        reached = False
        while self.pending and self.pending[0].iteration <= iteration:
            self.current, reached = self.pending.pop(0), True
        return reached


__all__ = ["Schedule", "Version", "replay_config", "steps_made", "versions"]
