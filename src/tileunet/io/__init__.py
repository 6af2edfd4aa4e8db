"""Reading and writing: images and masks, lazy readers for images larger than memory,
exact percentiles of such images, and safe writing (temporary name, then rename).

``tileunet.data`` of tileunet 0.1 is now :mod:`tileunet.io.images` (image files),
:mod:`tileunet.io.pairs` (images paired with masks, training samples) and
:mod:`tileunet.io.normalization`; its public names are still read from here, for one
release (``tileunet.compat``).
"""

from __future__ import annotations

import importlib
from typing import Any

#: the modules of 0.1's ``tileunet.data``; ``DataError`` was read from it as well
_PARTS = ("images", "pairs", "normalization")


def __getattr__(name: str) -> Any:
    """A public name of 0.1's ``tileunet.data``, from the module that holds it now."""
    if name == "DataError":
        return importlib.import_module("tileunet.errors").DataError
    if not name.startswith("_"):
        for part in _PARTS:
            module = importlib.import_module(f"tileunet.io.{part}")
            if name in module.__all__:
                return getattr(module, name)
    raise AttributeError(f"module 'tileunet.io' has no attribute {name!r}")
