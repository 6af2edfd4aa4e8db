"""The module paths of tileunet 0.1, kept working for one release.

tileunet 0.1 kept every module in one flat folder (``tileunet.weights``,
``tileunet.metrics``, ...). The modules now live in subpackages by what they are for
(``docs/design.md``, "The package tree"). Importing an old path gives the module at its
new path, with a :class:`DeprecationWarning` that names it. ``tileunet.augment``,
``tileunet.training`` and ``tileunet.export`` are packages now and keep their old public
names themselves.

>>> import warnings
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     from tileunet.weights import weight_map
>>> weight_map.__module__
'tileunet.targets.weightmap'
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

#: old module path -> new module path
MOVED = {
    "tileunet.annotations": "tileunet.napari.annotations",
    "tileunet.blockwise": "tileunet.inference.blockwise",
    "tileunet.data": "tileunet.io",
    "tileunet.ddp": "tileunet.training.ddp",
    "tileunet.evaluate": "tileunet.evaluation.folders",
    "tileunet.lazyio": "tileunet.io.lazy",
    "tileunet.metrics": "tileunet.evaluation",
    "tileunet.napari_plugin": "tileunet.napari.plugin",
    "tileunet.napari_train": "tileunet.napari.train_widget",
    "tileunet.outputs": "tileunet.io.outputs",
    "tileunet.percentiles": "tileunet.io.percentiles",
    "tileunet.plan": "tileunet.training.plan",
    "tileunet.postprocess": "tileunet.inference.postprocess",
    "tileunet.predict": "tileunet.inference.overlap",
    "tileunet.retrain": "tileunet.napari.runs",
    "tileunet.sampler": "tileunet.training.sampler",
    "tileunet.scale": "tileunet.inference.scale",
    "tileunet.segment": "tileunet.inference.segment",
    "tileunet.tiling": "tileunet.inference.tiling",
    "tileunet.weights": "tileunet.targets",
    "tileunet.zoo": "tileunet.export.bioimageio",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and loads it as the module at its new path."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} is now {new}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """The module at the new path is already executed."""


def names_from(package: str, parts: Sequence[str], elsewhere: dict[str, str] | None = None
               ) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: a public name of the 0.1 module that
    the package's ``parts`` (module names in it) now hold, or of a module named in
    ``elsewhere`` (name -> module). Nothing is imported until a name is asked for."""
    def getattr_(name: str) -> Any:
        if name in (elsewhere or {}):
            return getattr(importlib.import_module(elsewhere[name]), name)
        if not name.startswith("_"):
            for part in parts:
                module = vars(importlib.import_module(f"{package}.{part}"))
                if name in module:
                    return module[name]
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return getattr_


def install() -> None:
    """Serve the old paths (once per process).

    ``tileunet.predict`` is also the package's function: its old module path is
    registered at once, so that importing it never rebinds the function's name.
    """
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
    sys.modules.setdefault("tileunet.predict", importlib.import_module(MOVED["tileunet.predict"]))


__all__ = ["MOVED", "install", "names_from"]
