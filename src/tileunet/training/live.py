"""Live training: the training set read again while the run goes on.

With ``live``, a run watches its images, masks and ignore masks. When their files
change (a person painted more strokes and the viewer wrote them), the trainer reads
them again between two steps, within :data:`CHECK_SECONDS`, and trains on the new set
without a restart. Each version it trains on is kept in the run folder: the files under
``snapshots/NNN/`` and, in ``snapshots.json``, the step from which it was used — so the
run can be followed, and repeated, from what it saw.

Files are compared by name, size and modification time; a version that cannot be read
yet (say, a mask written before its image) is skipped until the next change.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> watch = Watch([folder])
>>> watch.changed(now=0.0)
False
>>> _ = (folder / "a.tif").write_bytes(b"new")
>>> watch.changed(now=1.0), watch.changed(now=CHECK_SECONDS + 1)
(False, True)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tileunet.io.outputs import is_temporary, write_json

#: seconds between two looks at the files
CHECK_SECONDS = 2.0
#: the run's record of the versions it trained on
SNAPSHOTS_FILE = "snapshots.json"
#: the folder of the run that keeps them
SNAPSHOTS_DIR = "snapshots"


def fingerprint(paths: Sequence[Path]) -> tuple:
    """Name, size and modification time of every file of ``paths`` (folders, or single
    files), temporary files of atomic writes left out."""
    seen = []
    for path in paths:
        files = sorted(path.iterdir()) if path.is_dir() else [path] if path.exists() else []
        for f in files:
            if f.is_file() and not is_temporary(f):
                st = f.stat()
                seen.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(seen)


@dataclass
class Watch:
    """Says when the files of ``paths`` changed, looking at most every
    :data:`CHECK_SECONDS`."""

    paths: Sequence[Path]
    last: tuple = ()
    looked: float = float("-inf")

    def __post_init__(self) -> None:
        self.paths = [Path(p) for p in self.paths]
        self.last = fingerprint(self.paths)

    def changed(self, now: float) -> bool:
        """True once per change (the new state becomes the known one)."""
        if now - self.looked < CHECK_SECONDS:
            return False
        self.looked = now
        current = fingerprint(self.paths)
        if current == self.last:
            return False
        self.last = current
        return True


@dataclass
class SnapshotLog:
    """The versions of the training set a run trained on: ``run/snapshots/NNN/`` (one
    folder per watched path) and ``run/snapshots.json``."""

    run: Path
    paths: Sequence[Path]
    entries: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        record = self.run / SNAPSHOTS_FILE
        if record.exists():  # a resumed run goes on with its record
            self.entries = json.loads(record.read_text())["snapshots"]

    def add(self, iteration: int, paths: Sequence[Path] | None = None) -> Path:
        """Keep the files of every watched path (or of ``paths``) as the version used
        from ``iteration`` on; returns its folder."""
        paths = self.paths if paths is None else paths
        folder = self.run / SNAPSHOTS_DIR / f"{len(self.entries):03d}"
        for i, path in enumerate(paths):
            _keep(Path(path), folder / f"{i}-{Path(path).name}")
        self.entries.append({"snapshot": folder.name, "iteration": iteration,
                             "sources": [str(p) for p in paths]})
        write_json(self.run / SNAPSHOTS_FILE, {"snapshots": self.entries})
        return folder


@dataclass
class Live:
    """What a live run needs from its trainer: when to read the training set again
    (its files changed; in a replay, the step of the next version), the record, and how
    to read it and make tiles of it."""

    due: Callable[[int], bool]
    log: SnapshotLog
    #: the training and validation sets, read again (raises DataError when they cannot be)
    reload: Callable[[], tuple[list, list]]
    #: the files they are read from (what the record keeps)
    sources: Callable[[], Sequence[Path]]
    #: batches of tiles of a training set, from a step on
    stream: Callable[[list, int], Any]


def _keep(source: Path, dest: Path) -> None:
    """A copy of a file, or of a folder's files, at ``dest`` (hard links where the file
    system has them: the viewer replaces files whole, so a link keeps its version)."""
    if source.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        pairs = [(f, dest / f.name) for f in sorted(source.iterdir())
                 if f.is_file() and not is_temporary(f)]
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        pairs = [(source, dest)]
    for f, out in pairs:
        try:
            os.link(f, out)
        except OSError:
            shutil.copy2(f, out)


__all__ = ["CHECK_SECONDS", "SNAPSHOTS_DIR", "SNAPSHOTS_FILE", "Live", "SnapshotLog",
           "Watch", "fingerprint"]
