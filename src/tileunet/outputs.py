"""Existing outputs: replaced only with ``--overwrite``, and only when the tool wrote them.

A user's ``-o`` may name a folder that holds their own work, or the input itself;
``--overwrite`` must not delete that. Each writer knows how to recognise its own output
(a marker, metadata, a file layout) and passes that test here, before any work starts.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from glob import escape
from pathlib import Path

from tileunet.data import DataError


def refuse_existing(path: str | Path, overwrite: bool,
                    ours: Callable[[Path], bool] | None = None, what: str = "") -> None:
    """Raise unless ``path`` may be written: it does not exist, or ``overwrite`` is set
    and ``ours(path)`` recognises it as the tool's own ``what`` (any file when ``ours``
    is None)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not overwrite:
        raise FileExistsError(f"{path}: already exists (use --overwrite to replace it)")
    if ours is not None and not ours(path):
        raise DataError(f"{path}: exists and is not {what}; --overwrite replaces only "
                        "what tileunet wrote: choose another output")


def is_temporary(path: Path) -> bool:
    """A temporary file or folder of the tool's atomic writes (``.NAME.XXXX.tmp``)."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def clear_temporaries(folder: Path) -> None:
    """Remove every temporary file that killed writes left in ``folder``, a folder that
    only the tool writes to (a run directory, its cache)."""
    for tmp in folder.glob(".*.tmp"):
        if tmp.is_file() or tmp.is_symlink():
            tmp.unlink(missing_ok=True)


def clear_stale(path: str | Path) -> None:
    """Remove what killed writes of ``path`` left beside it: the hidden temporary files
    and folders (``.NAME.XXXX.tmp``, ``.NAME.XXXX.old``) that the tool's atomic writes
    make and rename (a write that ends normally or by an exception removes its own)."""
    path = Path(path)
    for pattern in (f".{escape(path.name)}.*.tmp", f".{escape(path.name)}.*.old"):
        for stale in path.parent.glob(pattern):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


__all__ = ["clear_stale", "clear_temporaries", "is_temporary", "refuse_existing"]
