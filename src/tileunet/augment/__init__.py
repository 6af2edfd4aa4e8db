"""Data augmentation for training tiles: placement, rotation, flips, elastic
deformation and gray values.

``tileunet.augment`` was a module in tileunet 0.1; its names are still read from here, through
:mod:`tileunet.augment.transforms`, for one release.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """A name of the old module ``tileunet.augment``, now in :mod:`tileunet.augment.transforms`."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return getattr(importlib.import_module("tileunet.augment.transforms"), name)
    except AttributeError:
        raise AttributeError(f"module 'tileunet.augment' has no attribute {name!r}") from None
