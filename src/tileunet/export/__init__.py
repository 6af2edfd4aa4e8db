"""Export of trained models for other runtimes: ONNX and BioImage Model Zoo packages.

``tileunet.export`` was a module in tileunet 0.1; its names are still read from here, through
:mod:`tileunet.export.onnx`, for one release.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """A name of the old module ``tileunet.export``, now in :mod:`tileunet.export.onnx`."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return getattr(importlib.import_module("tileunet.export.onnx"), name)
    except AttributeError:
        raise AttributeError(f"module 'tileunet.export' has no attribute {name!r}") from None
