"""Images paired with masks and loaded as training samples (tileunet.io.pairs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from io_helpers import one_line, png, tif

from tileunet.errors import DataError
from tileunet.io.images import read_image
from tileunet.io.normalization import Normalization
from tileunet.io.pairs import check_labels, load_samples, pair_images_masks


# ------------------------------------------------------------------------- pairing
def _make(tmp_path: Path, images: list[str], masks: list[str], size=(8, 8)) -> None:
    for n in images:
        png(tmp_path / "images" / n, np.zeros(size, np.uint8))
    for n in masks:
        png(tmp_path / "masks" / n, np.zeros(size, np.uint8))


def test_pair_by_stem_with_different_suffixes(tmp_path):
    _make(tmp_path, ["a.png", "b.png"], [])
    tif(tmp_path / "masks" / "a.tif", np.zeros((8, 8), np.uint16))
    tif(tmp_path / "masks" / "b.tif", np.zeros((8, 8), np.uint16))
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
        tif(tmp_path / "01" / f"t{t}.tif", np.zeros((8, 8), np.uint16))
    for t in ("002", "013"):
        tif(tmp_path / "01_GT" / "SEG" / f"man_seg{t}.tif", np.ones((8, 8), np.uint16))
    with caplog.at_level("WARNING", logger="tileunet.io.pairs"):
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
    assert one_line(exc) == f"{Path('images/c.png')}: no mask for this image in masks"
    # for prediction-style use the unmatched image can be skipped
    assert len(pair_images_masks("images", "masks", skip_unmatched_images=True)) == 1

    png(tmp_path / "masks" / "d.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError) as exc:
        pair_images_masks("images", "masks", skip_unmatched_images=True)
    assert one_line(exc) == f"{Path('masks/d.png')}: mask has no matching image in images"

    png(tmp_path / "images" / "a.jpg", np.zeros((8, 8), np.uint8))
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
    png(tmp_path / "images" / "b.png", np.zeros((512, 512), np.uint8))
    png(tmp_path / "masks" / "b.png", np.zeros((256, 256), np.uint8))
    with pytest.raises(DataError) as exc:
        load_samples("images", "masks")
    assert one_line(exc) == (
        f"{Path('masks/b.png')}: size 256x256 does not match image "
        f"{Path('images/b.png')} (512x512)")


def test_load_samples_expands_stacks_and_makes_instances(tmp_path):
    rng = np.random.default_rng(1)
    stack = rng.integers(100, 4000, (3, 16, 20)).astype(np.uint16)
    masks = np.zeros((3, 16, 20), np.uint8)
    masks[:, 2:6, 2:6] = 255
    masks[:, 9:14, 10:18] = 255  # binary mask, two separate blobs
    tif(tmp_path / "images" / "s.tif", stack, photometric="minisblack")
    tif(tmp_path / "masks" / "s.tif", masks, photometric="minisblack")
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

    tif(tmp_path / "masks" / "s.tif", masks[:2], photometric="minisblack")
    with pytest.raises(DataError, match="has 2 page"):
        load_samples(tmp_path / "images", tmp_path / "masks")


def test_load_samples_channel_and_label_checks(tmp_path):
    png(tmp_path / "images" / "a.png", np.zeros((8, 8), np.uint8))
    png(tmp_path / "images" / "b.png", np.zeros((8, 8, 3), np.uint8))
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 5
    png(tmp_path / "masks" / "a.png", mask)
    png(tmp_path / "masks" / "b.png", mask)
    with pytest.raises(DataError, match="b.png: has 3 channel"):
        load_samples(tmp_path / "images", tmp_path / "masks")
    png(tmp_path / "images" / "b.png", np.zeros((8, 8), np.uint8))
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
