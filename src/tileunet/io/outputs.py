"""Writing outputs safely: never half-written, and replaced only when the tool wrote them.

Files are written to a hidden temporary name beside their place, flushed to disk and
renamed (:func:`atomic_write`); folders and zarr stores are built aside and swapped in
whole (:func:`staged`). Readers see the old output or the complete new one, and a killed
write leaves only hidden temporaries, which the next write of the same output clears
(:func:`clear_stale`).

A user's ``-o`` may name a folder that holds their own work, or the input itself;
``--overwrite`` must not delete that. Each writer knows how to recognise its own output
(a marker, metadata, a file layout) and passes that test to :func:`refuse_existing`
before any work starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from glob import escape
from pathlib import Path

from tileunet.errors import DataError


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


def _file_mode() -> int:
    """The permissions a new file gets here (``0o666`` less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


#: read once: os.umask can only be read by setting it, which is not safe in threads
FILE_MODE = _file_mode()


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, flush it to disk, then
    rename it to ``path``.

    On any error (Ctrl-C included) the temporary file is removed and ``path`` is as it
    was. Missing parent folders are created; the file gets the permissions of any new
    file (:data:`FILE_MODE`), not a temporary file's private ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staged(out: str | Path) -> Iterator[Path]:
    """Build an output (a file or a folder) aside and swap it in whole.

    Yields the path to build it at (named like ``out``, in a hidden temporary folder
    beside it; its folder may hold other scratch files).
    When the block ends normally the new output takes ``out``'s place and the previous
    one (if any) is removed only then; on an exception ``out`` is left as it was. The
    temporary folder goes either way.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (root / "new").mkdir()
        built = root / "new" / out.name
        yield built
        if not built.exists():
            raise FileNotFoundError(f"{out}: nothing was built to put in its place")
        old = root / "old"
        had = out.exists() or out.is_symlink()
        if had:
            out.rename(old)
        try:
            built.rename(out)
        except BaseException:
            if had:
                old.rename(out)
            raise
    finally:
        shutil.rmtree(root, ignore_errors=True)


def write_json(path: str | Path, obj: dict) -> None:
    """``obj`` as indented JSON, written atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


__all__ = ["atomic_write", "clear_stale", "clear_temporaries", "is_temporary",
           "refuse_existing", "staged", "write_json"]
