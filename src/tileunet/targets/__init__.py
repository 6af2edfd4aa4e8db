"""What the network is trained to output: instance masks, the separation borders
between touching cells, and the paper's loss weight map (eq. 2).

``tileunet.weights`` of tileunet 0.1 is now :mod:`tileunet.targets.instances` (instances,
separation borders, the training target) and :mod:`tileunet.targets.weightmap`; its
public names are still read from here, for one release (``tileunet.compat``).
"""

from __future__ import annotations

import importlib
from typing import Any

_PARTS = ("instances", "weightmap")


def __getattr__(name: str) -> Any:
    """A public name of 0.1's ``tileunet.weights``, from the module that holds it now."""
    if not name.startswith("_"):
        for part in _PARTS:
            module = importlib.import_module(f"tileunet.targets.{part}")
            if name in module.__all__:
                return getattr(module, name)
    raise AttributeError(f"module 'tileunet.targets' has no attribute {name!r}")
