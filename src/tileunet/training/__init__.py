"""Training: the configuration, the plan fitted to a budget, the loop, the data
pipeline of training tiles, and training in several processes.

``tileunet.training`` was a module in tileunet 0.1; its names are still read from here, through
:mod:`tileunet.training.loop`, :mod:`tileunet.training.config` and
:mod:`tileunet.training.samples`, for one release.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """A name of the old module ``tileunet.training``, now in one of its parts."""
    if not name.startswith("__"):
        for part in ("loop", "config", "samples"):
            module = importlib.import_module(f"tileunet.training.{part}")
            if name in vars(module):
                return vars(module)[name]
    raise AttributeError(f"module 'tileunet.training' has no attribute {name!r}")
