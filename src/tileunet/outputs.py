"""Existing outputs: replaced only with ``--overwrite``, and only when the tool wrote them.

A user's ``-o`` may name a folder that holds their own work, or the input itself;
``--overwrite`` must not delete that. Each writer knows how to recognise its own output
(a marker, metadata, a file layout) and passes that test here, before any work starts.
"""

from __future__ import annotations

from collections.abc import Callable
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


__all__ = ["refuse_existing"]
