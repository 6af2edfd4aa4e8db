"""Tests for tileunet.compat: the module paths of release 0.1 still import, for one release."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

import tileunet
from tileunet.compat import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_old_path_imports_the_module_at_its_new_path(old, monkeypatch):
    if old != "tileunet.predict":  # registered when the package is imported
        monkeypatch.delitem(sys.modules, old, raising=False)
        with pytest.warns(DeprecationWarning, match=f"{old} is now {MOVED[old]}"):
            module = importlib.import_module(old)
    else:
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])


def test_the_old_predict_module_leaves_the_predict_function_alone():
    from tileunet.predict import tile_geometry  # the 0.1 module

    assert callable(tileunet.predict) and tileunet.predict.__name__ == "predict"
    assert tile_geometry is importlib.import_module("tileunet.inference.overlap").tile_geometry


def test_the_old_packages_keep_their_names():
    import tileunet.augment
    import tileunet.export
    import tileunet.training

    assert tileunet.training.TrainConfig is tileunet.TrainConfig
    assert tileunet.training.prepare_samples.__module__ == "tileunet.training.samples"
    assert tileunet.augment.AugmentConfig is tileunet.AugmentConfig
    assert tileunet.export.export_onnx.__module__ == "tileunet.export.onnx"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        tileunet.training.nothing  # noqa: B018


def test_exported_bioimageio_packages_find_their_architecture(monkeypatch):
    monkeypatch.delitem(sys.modules, "tileunet.zoo", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from tileunet.zoo import MirroredUNet
    assert MirroredUNet.__module__ == "tileunet.export.bioimageio"


def test_new_paths_are_not_served_by_the_aliases():
    assert not any(new in MOVED for new in MOVED.values())
