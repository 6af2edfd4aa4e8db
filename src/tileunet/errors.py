"""The error of a file that cannot be used, and its one-line message."""

from __future__ import annotations

import os


class DataError(ValueError):
    """A file could not be used; the message (one line) names the file and the reason."""


def file_error(path: str | os.PathLike, reason: str) -> DataError:
    """The :class:`DataError` ``"<path>: <reason>"``, on one line.

    Parameters
    ----------
    path : str or path-like
        The file (or folder) that cannot be used.
    reason : str
        What is wrong with it; runs of white space, line breaks included, become one
        space.

    Returns
    -------
    DataError
        To be raised by the caller.

    Examples
    --------
    >>> str(file_error("masks/b.png", "size 256x256 does not match\\n image a.png"))
    'masks/b.png: size 256x256 does not match image a.png'
    """
    text = f"{os.fspath(path)}: {reason}"
    return DataError(" ".join(text.split()))


__all__ = ["DataError", "file_error"]
