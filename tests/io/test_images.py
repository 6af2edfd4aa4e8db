"""Reading, listing and writing image files (tileunet.io.images)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from io_helpers import one_line, png, tif

from tileunet.errors import DataError
from tileunet.io import images, normalization, pairs
from tileunet.io.images import image_stem, list_images, read_image, read_pages, save_image


# ------------------------------------------------------------------------- reading
def test_read_png_grey_rgb_rgba_16bit(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(read_image(png(tmp_path / "g.png", grey)), grey)

    rgb = np.random.default_rng(0).integers(0, 255, (3, 4, 3), dtype=np.uint8)
    out = read_image(png(tmp_path / "rgb.png", rgb))
    assert out.shape == (3, 3, 4)  # channels first
    assert np.array_equal(out, np.moveaxis(rgb, -1, 0))

    rgba = np.concatenate([rgb, np.full((3, 4, 1), 255, np.uint8)], axis=-1)
    assert read_image(png(tmp_path / "rgba.png", rgba)).shape == (3, 3, 4)  # alpha dropped

    deep = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    out = read_image(png(tmp_path / "d.png", deep))
    assert out.dtype == np.uint16 and np.array_equal(out, deep)


def test_16bit_lzw_tiff_round_trip(tmp_path):
    labels = np.zeros((40, 50), dtype=np.uint16)
    labels[5:20, 5:20] = 1
    labels[20:35, 10:45] = 60000
    path = tif(tmp_path / "m.tif", labels, compression="lzw")
    with tifffile.TiffFile(path) as stored:
        assert stored.pages[0].compression == tifffile.COMPRESSION.LZW
    out = read_image(path)
    assert out.dtype == np.uint16 and np.array_equal(out, labels)

    save_image(tmp_path / "copy.tif", out)
    again = read_image(tmp_path / "copy.tif")
    assert again.dtype == np.uint16 and np.array_equal(again, labels)


def test_multipage_tiff_is_a_list_of_pages_and_channels_stay_channels(tmp_path):
    stack = np.arange(3 * 8 * 10, dtype=np.uint16).reshape(3, 8, 10)
    path = tif(tmp_path / "stack.tif", stack, photometric="minisblack")
    pages = read_pages(path)
    assert len(pages) == 3 and all(p.shape == (8, 10) for p in pages)
    assert np.array_equal(pages[2], stack[2])
    with pytest.raises(DataError, match="stack of 3 pages"):
        read_image(path)

    save_image(tmp_path / "chan.tif", stack)  # 3-D defaults to channels (C, H, W)
    assert [p.shape for p in read_pages(tmp_path / "chan.tif")] == [(3, 8, 10)]
    save_image(tmp_path / "z.tif", stack, axes="ZYX")
    assert len(read_pages(tmp_path / "z.tif")) == 3

    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 1] = 7
    out = read_image(tif(tmp_path / "rgb.tif", rgb, photometric="rgb"))
    assert out.shape == (3, 8, 10) and out[1].max() == 7


def test_read_errors_name_the_file(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"this is not a png at all \x00\x01\x02")
    with pytest.raises(DataError) as exc:
        read_image(bad)
    assert one_line(exc).startswith(f"{bad}: not a readable image")

    bad_tif = tmp_path / "y.tif"
    bad_tif.write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError, match="y.tif: not a readable image"):
        read_image(bad_tif)

    with pytest.raises(DataError, match="missing.png: no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="is a folder"):
        read_image(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unsupported suffix '.txt'"):
        read_image(tmp_path / "notes.txt")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_pixels_are_refused_with_the_file_and_the_count(tmp_path, bad):
    image = np.ones((40, 30), np.float32)
    image[5:15, 5:15] = bad  # before: normalisation went NaN and blanked the image
    tifffile.imwrite(tmp_path / "float.tif", image)
    kind = "100 NaN, 0 infinite" if np.isnan(bad) else "0 NaN, 100 infinite"
    with pytest.raises(DataError, match=rf"float\.tif: 100 of 1200 pixels are not finite "
                                        rf"\({kind}\)"):
        read_image(tmp_path / "float.tif")
    tifffile.imwrite(tmp_path / "ok.tif", np.ones((4, 4), np.float32))
    assert read_image(tmp_path / "ok.tif").shape == (4, 4)  # finite floats pass


# ------------------------------------------------------------------------- listing
def test_list_images_natural_order_and_filters(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    for name in ["t10.png", "t2.png", "t1.TIF", ".hidden.png"]:
        png(tmp_path / name, img) if name.endswith(".png") else tif(tmp_path / name, img)
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["t1.TIF", "t2.png", "t10.png"]
    assert list_images(tmp_path / "t2.png") == [tmp_path / "t2.png"]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as exc:
        list_images(empty)
    assert "folder has no image files" in one_line(exc) and str(empty) in str(exc.value)
    with pytest.raises(DataError, match="no such file or folder"):
        list_images(tmp_path / "nope")


# -------------------------------------------------------------------------- writing
def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_save_image_png_conversions(tmp_path):
    labels = np.array([[0, 1], [300, 65535]], dtype=np.int64)
    save_image(tmp_path / "l.png", labels)
    out = read_image(tmp_path / "l.png")
    assert out.dtype == np.uint16 and np.array_equal(out, labels)

    save_image(tmp_path / "small.png", np.array([[0, 3]], np.int32))
    assert read_image(tmp_path / "small.png").dtype == np.uint8

    save_image(tmp_path / "b.png", np.array([[True, False]]))
    assert read_image(tmp_path / "b.png").tolist() == [[255, 0]]

    save_image(tmp_path / "p.png", np.array([[0.0, 0.5, 1.0]], np.float32))
    assert read_image(tmp_path / "p.png").tolist() == [[0, 128, 255]]

    save_image(tmp_path / "rgb.png", np.zeros((3, 4, 5), np.uint8))
    assert read_image(tmp_path / "rgb.png").shape == (3, 4, 5)

    for bad, why in [(np.array([[1.5]]), "floats only as values in"),
                     (np.array([[-1, 2]]), "negative"),
                     (np.array([[70000]]), "cannot store value 70000")]:
        with pytest.raises(DataError, match=why):
            save_image(tmp_path / "bad.png", bad)
    assert not (tmp_path / "bad.png").exists()
    assert _leftovers(tmp_path) == []


def test_save_image_tiff_float_and_subfolder(tmp_path):
    prob = np.random.default_rng(0).random((2, 6, 7), dtype=np.float32)
    save_image(tmp_path / "out" / "deep" / "prob.tiff", prob)
    out = read_image(tmp_path / "out" / "deep" / "prob.tiff")
    assert out.dtype == np.float32 and np.array_equal(out, prob)


def test_save_image_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "m.tif"
    save_image(target, np.ones((4, 4), np.uint16))
    assert _leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~umask  # not a private temp file

    def broken(file, *args, **kwargs):
        Path(file).write_bytes(b"II*\x00half")
        raise OSError("disk full")

    monkeypatch.setattr(images.tifffile, "imwrite", broken)
    with pytest.raises(OSError, match="disk full"):
        save_image(target, np.full((4, 4), 9, np.uint16))
    monkeypatch.undo()
    assert np.array_equal(read_image(target), np.ones((4, 4), np.uint16))  # old file intact
    assert _leftovers(tmp_path) == []


def test_save_image_refuses_unknown_suffix(tmp_path):
    for name in ("x.jpg", "x.npy", "x"):
        with pytest.raises(DataError, match="cannot write suffix"):
            save_image(tmp_path / name, np.zeros((2, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, stem", [
    ("cells.tif", "cells"), ("cells.ome.tif", "cells"), ("cells.ome.zarr", "cells"),
    ("a.b.png", "a.b"), ("plain", "plain"), (".ome.zarr", ".ome"), ("x.OME.TIFF", "x")])
def test_image_stem_names_outputs_without_format_suffixes(name, stem):
    assert image_stem(name) == stem

# ------------------------------------------------------------------ the 0.1 path
def test_the_old_module_path_reads_the_names_of_the_new_modules(monkeypatch):
    """``tileunet.data`` of 0.1 held images, pairs and normalisation, for one release."""
    monkeypatch.delitem(sys.modules, "tileunet.data", raising=False)
    with pytest.warns(DeprecationWarning, match="tileunet.data is now tileunet.io"):
        from tileunet.data import DataError as OldDataError
        from tileunet.data import Normalization, load_samples
        from tileunet.data import read_image as old_read_image
    assert old_read_image is read_image
    assert load_samples is pairs.load_samples
    assert Normalization is normalization.Normalization
    assert OldDataError is DataError
    with pytest.raises(AttributeError, match="no attribute '_fail'"):
        sys.modules["tileunet.data"]._fail  # noqa: B018
