"""Tests for tileunet.outputs: what --overwrite may replace, and stale temporaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from tileunet.data import DataError
from tileunet.outputs import clear_stale, refuse_existing


def test_refuse_existing(tmp_path):
    new = tmp_path / "new.onnx"
    refuse_existing(new, overwrite=False)  # nothing there: fine
    new.write_text("x")
    with pytest.raises(FileExistsError, match=r"new\.onnx: already exists \(use --overwrite"):
        refuse_existing(new, overwrite=False)
    refuse_existing(new, overwrite=True)  # anything goes without a test of ownership
    refuse_existing(new, overwrite=True, ours=lambda p: p.read_text() == "x", what="ours")
    with pytest.raises(DataError, match=r"new\.onnx: exists and is not a model of ours; "
                                        r"--overwrite replaces only what tileunet wrote"):
        refuse_existing(new, overwrite=True, ours=lambda p: False, what="a model of ours")
    (tmp_path / "link").symlink_to(tmp_path / "gone")  # a dangling link exists too
    with pytest.raises(FileExistsError):
        refuse_existing(tmp_path / "link", overwrite=False)


def test_clear_stale_removes_only_the_leftovers_of_that_output(tmp_path):
    def touch(name: str, folder: bool = False) -> Path:
        p = tmp_path / name
        p.mkdir() if folder else p.write_text("x")
        return p

    gone = [touch(".m.onnx.k2j3.tmp"), touch(".o.zarr.ab12.tmp", folder=True),
            touch(".o.zarr.cd34.old", folder=True)]
    (gone[1] / "chunk").write_text("half")
    kept = [touch("m.onnx"), touch(".mm.onnx.x.tmp"), touch(".m.onnxx.tmp"),
            touch("notes.tmp"), touch(".o.zarr"), touch("[x].onnx")]
    clear_stale(tmp_path / "m.onnx")
    clear_stale(tmp_path / "o.zarr")
    clear_stale(tmp_path / "[x].onnx")  # glob characters in a name are taken literally
    assert not any(p.exists() for p in gone)
    assert all(p.exists() for p in kept)
