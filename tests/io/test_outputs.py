"""Tests for tileunet.io.outputs: atomic files, staged folders, what --overwrite may replace,
and stale temporaries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tileunet.errors import DataError
from tileunet.io.outputs import atomic_write, clear_stale, refuse_existing, staged


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


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write(path, lambda tmp: tmp.write_text("one"))
    mask = os.umask(0)
    os.umask(mask)
    assert path.read_text() == "one" and (path.stat().st_mode & 0o777) == 0o666 & ~mask

    def half(tmp: Path) -> None:
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half)
    assert path.read_text() == "one"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]  # no temporary left


def test_staged_swaps_a_folder_in_whole_and_only_at_the_end(tmp_path):
    out = tmp_path / "pkg"
    with staged(out) as built:
        built.mkdir()
        (built / "f").write_text("new")
        assert not out.exists()  # nothing at the output while it is built
    assert (out / "f").read_text() == "new"
    with pytest.raises(RuntimeError), staged(out) as built:
        built.mkdir()
        (built / "f").write_text("newer")
        raise RuntimeError
    assert (out / "f").read_text() == "new"  # a failed build changes nothing
    with staged(out) as built:  # a file may replace a folder (an output's own kind)
        built.write_text("file")
    assert out.read_text() == "file"
    with pytest.raises(FileNotFoundError, match="nothing was built"), staged(out):
        pass
    assert out.read_text() == "file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # temporaries gone
