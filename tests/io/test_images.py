"""Reading, pairing, normalising and writing images (tileunet.io.images)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tileunet.io import images as data
from tileunet.io.images import (
    DataError,
    Normalization,
    check_labels,
    list_images,
    load_samples,
    pair_images_masks,
    read_image,
    read_pages,
    save_image,
)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _tif(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, **kwargs)
    return path


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------------- reading
def test_read_png_grey_rgb_rgba_16bit(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(read_image(_png(tmp_path / "g.png", grey)), grey)

    rgb = np.random.default_rng(0).integers(0, 255, (3, 4, 3), dtype=np.uint8)
    out = read_image(_png(tmp_path / "rgb.png", rgb))
    assert out.shape == (3, 3, 4)  # channels first
    assert np.array_equal(out, np.moveaxis(rgb, -1, 0))

    rgba = np.concatenate([rgb, np.full((3, 4, 1), 255, np.uint8)], axis=-1)
    assert read_image(_png(tmp_path / "rgba.png", rgba)).shape == (3, 3, 4)  # alpha dropped

    deep = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    out = read_image(_png(tmp_path / "d.png", deep))
    assert out.dtype == np.uint16 and np.array_equal(out, deep)


def test_16bit_lzw_tiff_round_trip(tmp_path):
    labels = np.zeros((40, 50), dtype=np.uint16)
    labels[5:20, 5:20] = 1
    labels[20:35, 10:45] = 60000
    path = _tif(tmp_path / "m.tif", labels, compression="lzw")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.LZW
    out = read_image(path)
    assert out.dtype == np.uint16 and np.array_equal(out, labels)

    save_image(tmp_path / "copy.tif", out)
    again = read_image(tmp_path / "copy.tif")
    assert again.dtype == np.uint16 and np.array_equal(again, labels)


def test_multipage_tiff_is_a_list_of_pages_and_channels_stay_channels(tmp_path):
    stack = np.arange(3 * 8 * 10, dtype=np.uint16).reshape(3, 8, 10)
    path = _tif(tmp_path / "stack.tif", stack, photometric="minisblack")
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
    out = read_image(_tif(tmp_path / "rgb.tif", rgb, photometric="rgb"))
    assert out.shape == (3, 8, 10) and out[1].max() == 7


def test_read_errors_name_the_file(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"this is not a png at all \x00\x01\x02")
    with pytest.raises(DataError) as exc:
        read_image(bad)
    assert _one_line(exc).startswith(f"{bad}: not a readable image")

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


# ------------------------------------------------------------------------- listing
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


def test_list_images_natural_order_and_filters(tmp_path):
    img = np.zeros((4, 4), np.uint8)
    for name in ["t10.png", "t2.png", "t1.TIF", ".hidden.png"]:
        _png(tmp_path / name, img) if name.endswith(".png") else _tif(tmp_path / name, img)
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["t1.TIF", "t2.png", "t10.png"]
    assert list_images(tmp_path / "t2.png") == [tmp_path / "t2.png"]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as exc:
        list_images(empty)
    assert "folder has no image files" in _one_line(exc) and str(empty) in str(exc.value)
    with pytest.raises(DataError, match="no such file or folder"):
        list_images(tmp_path / "nope")


# ------------------------------------------------------------------------- pairing
def _make(tmp_path: Path, images: list[str], masks: list[str], size=(8, 8)) -> None:
    for n in images:
        _png(tmp_path / "images" / n, np.zeros(size, np.uint8))
    for n in masks:
        _png(tmp_path / "masks" / n, np.zeros(size, np.uint8))


def test_pair_by_stem_with_different_suffixes(tmp_path):
    _make(tmp_path, ["a.png", "b.png"], [])
    _tif(tmp_path / "masks" / "a.tif", np.zeros((8, 8), np.uint16))
    _tif(tmp_path / "masks" / "b.tif", np.zeros((8, 8), np.uint16))
    pairs = pair_images_masks(tmp_path / "images", tmp_path / "masks")
    assert [(i.name, m.name) for i, m in pairs] == [("a.png", "a.tif"), ("b.png", "b.tif")]


def test_pair_cell_tracking_challenge_names(tmp_path):
    _make(tmp_path, ["t002.png", "t010.png"], ["man_seg010.png", "man_seg002.png"])
    pairs = pair_images_masks(tmp_path / "images", tmp_path / "masks")
    assert [(i.stem, m.stem) for i, m in pairs] == [
        ("t002", "man_seg002"), ("t010", "man_seg010")]


def test_cell_tracking_challenge_layout_uses_the_annotated_frames(tmp_path, caplog):
    """01/tNNN.tif with 01_GT/SEG/man_segNNN.tif: only some frames have a mask."""
    for t in ("000", "001", "002", "013"):
        _tif(tmp_path / "01" / f"t{t}.tif", np.zeros((8, 8), np.uint16))
    for t in ("002", "013"):
        _tif(tmp_path / "01_GT" / "SEG" / f"man_seg{t}.tif", np.ones((8, 8), np.uint16))
    with caplog.at_level("WARNING", logger="tileunet.io.images"):
        pairs = pair_images_masks(tmp_path / "01", tmp_path / "01_GT" / "SEG")
    assert [(i.name, m.name) for i, m in pairs] == [
        ("t002.tif", "man_seg002.tif"), ("t013.tif", "man_seg013.tif")]
    assert "skipping 2 without" in caplog.text
    with pytest.raises(DataError, match="no mask for this image"):
        pair_images_masks(tmp_path / "01", tmp_path / "01_GT" / "SEG",
                          skip_unmatched_images=False)


def test_pair_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _make(tmp_path, ["a.png", "c.png"], ["a.png"])
    with pytest.raises(DataError) as exc:
        pair_images_masks("images", "masks")
    assert _one_line(exc) == f"{Path('images/c.png')}: no mask for this image in masks"
    # for prediction-style use the unmatched image can be skipped
    assert len(pair_images_masks("images", "masks", skip_unmatched_images=True)) == 1

    _png(tmp_path / "masks" / "d.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError) as exc:
        pair_images_masks("images", "masks", skip_unmatched_images=True)
    assert _one_line(exc) == f"{Path('masks/d.png')}: mask has no matching image in images"

    _png(tmp_path / "images" / "a.jpg", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="same name stem"):
        pair_images_masks("images", "masks")

    (tmp_path / "nomasks").mkdir()
    with pytest.raises(DataError, match="folder has no image files"):
        pair_images_masks("images", "nomasks")


def test_pair_single_files(tmp_path):
    _make(tmp_path, ["img2d.png"], ["mask2d.png"])
    pairs = pair_images_masks(tmp_path / "images", tmp_path / "masks")
    assert [(i.name, m.name) for i, m in pairs] == [("img2d.png", "mask2d.png")]


# ---------------------------------------------------------------------- load_samples
def test_load_samples_size_mismatch_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _png(tmp_path / "images" / "b.png", np.zeros((512, 512), np.uint8))
    _png(tmp_path / "masks" / "b.png", np.zeros((256, 256), np.uint8))
    with pytest.raises(DataError) as exc:
        load_samples("images", "masks")
    assert _one_line(exc) == (
        f"{Path('masks/b.png')}: size 256x256 does not match image "
        f"{Path('images/b.png')} (512x512)")


def test_load_samples_expands_stacks_and_makes_instances(tmp_path):
    rng = np.random.default_rng(1)
    stack = rng.integers(100, 4000, (3, 16, 20)).astype(np.uint16)
    masks = np.zeros((3, 16, 20), np.uint8)
    masks[:, 2:6, 2:6] = 255
    masks[:, 9:14, 10:18] = 255  # binary mask, two separate blobs
    _tif(tmp_path / "images" / "s.tif", stack, photometric="minisblack")
    _tif(tmp_path / "masks" / "s.tif", masks, photometric="minisblack")
    samples = load_samples(tmp_path / "images", tmp_path / "masks", Normalization("minmax"))
    assert [s.name for s in samples] == ["s_page000", "s_page001", "s_page002"]
    for s, page in zip(samples, stack, strict=True):
        assert s.image.shape == (1, 16, 20) and s.image.dtype == np.float32
        assert s.labels.shape == (16, 20) and s.labels.dtype == np.int32
        assert set(np.unique(s.labels)) == {0, 1, 2}  # components, not 0/255
        assert s.source == tmp_path / "images" / "s.tif"
        assert s.image.min() == 0.0 and s.image.max() == 1.0
        assert np.argmax(s.image) == np.argmax(page)

    raw = load_samples(tmp_path / "images", tmp_path / "masks", binary_as_instances=False)
    assert set(np.unique(raw[0].labels)) == {0, 255}

    _tif(tmp_path / "masks" / "s.tif", masks[:2], photometric="minisblack")
    with pytest.raises(DataError, match="has 2 page"):
        load_samples(tmp_path / "images", tmp_path / "masks")


def test_load_samples_channel_and_label_checks(tmp_path):
    _png(tmp_path / "images" / "a.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "images" / "b.png", np.zeros((8, 8, 3), np.uint8))
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 5
    _png(tmp_path / "masks" / "a.png", mask)
    _png(tmp_path / "masks" / "b.png", mask)
    with pytest.raises(DataError, match="b.png: has 3 channel"):
        load_samples(tmp_path / "images", tmp_path / "masks")
    _png(tmp_path / "images" / "b.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="class value 5 but num_classes is 3"):
        load_samples(tmp_path / "images", tmp_path / "masks", num_classes=3)
    samples = load_samples(tmp_path / "images", tmp_path / "masks")
    assert len(samples) == 2 and samples[0].image.shape == (1, 8, 8)


def test_check_labels():
    check_labels(np.array([[0, 255]]), 2, "m.png")  # binary 0/255 is fine
    check_labels(np.array([[0, 1, 2]]), 3, "m.png")
    with pytest.raises(DataError, match="m.png: mask has class value 3"):
        check_labels(np.array([[0, 3]]), 3, "m.png")
    with pytest.raises(DataError, match="negative"):
        check_labels(np.array([[0, -1]]), 2, "m.png")
    with pytest.raises(DataError, match="integer labels"):
        check_labels(np.array([[0.5]]), 2, "m.png")
    with pytest.raises(ValueError, match="num_classes"):
        check_labels(np.array([[0]]), 1, "m.png")


# ------------------------------------------------------------------- normalisation
def test_normalization_uint16_small_range():
    rng = np.random.default_rng(0)
    x = rng.integers(1000, 1101, (64, 64)).astype(np.uint16)  # 8-ish bits in 16
    y = Normalization()(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert -0.05 < np.percentile(y, 1) < 0.05 and 0.95 < np.percentile(y, 99.8) < 1.05
    m = Normalization("minmax")(x)
    assert m.min() == 0.0 and m.max() == 1.0
    n = Normalization("none")(x)
    assert n.dtype == np.float32 and n.max() == x.max()


def test_normalization_constant_and_channels():
    for method in ("percentile", "minmax"):
        y = Normalization(method)(np.full((5, 5), 7, np.uint16))
        assert np.all(y == 0.0) and np.all(np.isfinite(y))
    # a sparse image whose percentile range is zero falls back to min-max
    sparse = np.zeros((100, 100), np.uint8)
    sparse[0, 0] = 200
    y = Normalization()(sparse)
    assert y.max() == 1.0 and y.min() == 0.0
    two = np.stack([np.linspace(0, 10, 100).reshape(10, 10),
                    np.linspace(500, 600, 100).reshape(10, 10)])
    y = Normalization("minmax")(two)
    assert y.shape == (2, 10, 10)
    assert np.allclose(y.min(axis=(1, 2)), 0) and np.allclose(y.max(axis=(1, 2)), 1)


def test_normalization_config_round_trip_and_validation():
    norm = Normalization("percentile", 2.0, 98.0)
    assert Normalization.from_dict(norm.to_dict()) == norm
    with pytest.raises(ValueError, match="method must be one of"):
        Normalization("zscore")
    with pytest.raises(ValueError, match="low < high"):
        Normalization(low=50, high=10)
    with pytest.raises(ValueError, match="unknown normalization keys"):
        Normalization.from_dict({"method": "minmax", "gamma": 2})


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

    monkeypatch.setattr(data.tifffile, "imwrite", broken)
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


# ----------------------------------------------------------------------- real data
@pytest.mark.data
def test_real_dic_hela_and_isbi(shared_data):
    hela = shared_data / "dic-hela" / "01"
    samples = load_samples(hela / "images", hela / "masks")
    assert [s.name for s in samples] == [
        "t002", "t005", "t021", "t031", "t033", "t034", "t039", "t054", "t067"]
    expected = [10, 10, 11, 13, 13, 12, 13, 13, 3]  # instances per mask (README)
    assert [np.unique(s.labels).size - 1 for s in samples] == expected
    for s in samples:
        assert s.image.shape == (1, 512, 512) and s.image.dtype == np.float32
        assert s.labels.shape == (512, 512) and s.labels.dtype == np.int32
        assert np.all(np.isfinite(s.image))

    isbi = shared_data / "isbi2012" / "train"
    pairs = pair_images_masks(isbi / "images", isbi / "labels")
    assert len(pairs) == 25 and pairs[7][0].name == "07.png" and pairs[7][1].name == "07.png"
    first = load_samples(isbi / "images", isbi / "labels")[0]
    assert first.labels.max() > 10  # 0/255 membranes -> one id per neurite region
    raw = read_image(pairs[0][1])
    assert np.array_equal(first.labels > 0, raw == 255)


@pytest.mark.data
def test_real_dsb_sample_non_contiguous_ids(shared_data):
    root = shared_data / "dsb2018-stardist-sample"
    (s,) = load_samples(root / "images", root / "masks")
    assert np.unique(s.labels).size - 1 == 125 and s.labels.max() == 183
    assert 0.9 < np.percentile(s.image, 99.8) < 1.1  # uint16 holding 0..235, not /65535


@pytest.mark.parametrize("name, stem", [
    ("cells.tif", "cells"), ("cells.ome.tif", "cells"), ("cells.ome.zarr", "cells"),
    ("a.b.png", "a.b"), ("plain", "plain"), (".ome.zarr", ".ome"), ("x.OME.TIFF", "x")])
def test_image_stem_names_outputs_without_format_suffixes(name, stem):
    from tileunet.io.images import image_stem

    assert image_stem(name) == stem
