"""Training: the configuration, the plan fitted to a budget, the loop, the data
pipeline of training tiles, and training in several processes.

``tileunet.training`` was a module in tileunet 0.1; its names are still read from here, through
:mod:`tileunet.training.loop`, for one release.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """A name of the old module ``tileunet.training``, now in :mod:`tileunet.training.loop`."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return getattr(importlib.import_module("tileunet.training.loop"), name)
    except AttributeError:
        raise AttributeError(f"module 'tileunet.training' has no attribute {name!r}") from None
