"""Synthetic cells (tileunet.synthetic)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from tileunet.evaluation.scores import touching_pairs
from tileunet.io.images import read_image
from tileunet.io.pairs import load_samples, pair_images_masks
from tileunet.synthetic import synthetic_cells, write_synthetic_dataset


@pytest.fixture(scope="module")
def cells() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_cells((256, 256), rng=np.random.default_rng(7))


def test_shapes_dtypes_and_ranges(cells):
    image, labels = cells
    assert image.shape == labels.shape == (256, 256)
    assert image.dtype == np.float32 and labels.dtype == np.int32
    assert 0.0 <= image.min() and image.max() <= 1.0
    ids = np.unique(labels)
    assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, ids.size))  # 1..N
    assert ids.size - 1 >= 15
    assert 0.15 < (labels > 0).mean() < 0.5

    image, labels = synthetic_cells((40, 90), rng=np.random.default_rng(0))
    assert image.shape == labels.shape == (40, 90)


def test_cells_touch_and_some_stand_alone(cells):
    _, labels = cells
    pairs = touching_pairs(labels)
    assert len(pairs) >= 5
    in_pairs = {i for p in pairs for i in p}
    alone = set(range(1, labels.max() + 1)) - in_pairs
    assert len(alone) >= 3


def test_each_cell_is_one_piece(cells):
    _, labels = cells
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        _, n = ndi.label(labels[box] == i, structure=np.ones((3, 3)))
        assert n == 1, f"cell {i} is in {n} pieces"


def test_contact_line_is_darker_but_faint(cells):
    image, labels = cells
    contact = np.zeros(labels.shape, bool)
    edge = (labels[:, :-1] != labels[:, 1:]) & (labels[:, :-1] > 0) & (labels[:, 1:] > 0)
    contact[:, :-1] |= edge
    contact[:, 1:] |= edge
    edge = (labels[:-1] != labels[1:]) & (labels[:-1] > 0) & (labels[1:] > 0)
    contact[:-1] |= edge
    contact[1:] |= edge
    inner = ndi.binary_erosion(labels > 0, iterations=3) & ~ndi.binary_dilation(
        contact, iterations=3)
    touching = np.isin(labels, list({i for p in touching_pairs(labels) for i in p}))
    drop = image[inner & touching].mean() - image[contact].mean()
    assert 0.02 < drop < 0.2


def test_not_separable_by_one_global_threshold():
    image, labels = synthetic_cells((256, 256), rng=np.random.default_rng(3))
    gt = labels > 0
    best = max(((image > t) & gt).sum() / ((image > t) | gt).sum()
               for t in np.linspace(0.0, 1.0, 101))
    assert best < 0.95


def test_seeded_reproducibility():
    a = synthetic_cells((128, 160), rng=np.random.default_rng(42))
    b = synthetic_cells((128, 160), rng=np.random.default_rng(42))
    c = synthetic_cells((128, 160), rng=np.random.default_rng(43))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_n_cells_and_validation():
    _, labels = synthetic_cells((128, 128), n_cells=0, rng=np.random.default_rng(0))
    assert labels.max() == 0
    _, labels = synthetic_cells((128, 128), n_cells=3, rng=np.random.default_rng(0))
    assert 1 <= labels.max() <= 3
    with pytest.raises(ValueError, match="at least"):
        synthetic_cells((8, 128), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="Generator"):
        synthetic_cells((64, 64), rng=0)
    with pytest.raises(ValueError, match="n_cells"):
        synthetic_cells((64, 64), n_cells=-1, rng=np.random.default_rng(0))


@pytest.mark.slow
def test_large_image():
    image, labels = synthetic_cells((2048, 2048), rng=np.random.default_rng(0))
    assert image.shape == labels.shape == (2048, 2048)
    assert np.isfinite(image).all() and labels.max() > 100


def test_write_synthetic_dataset(tmp_path):
    images_dir, masks_dir = write_synthetic_dataset(
        tmp_path / "synth", n_images=3, shape=(64, 80), rng=np.random.default_rng(0))
    assert images_dir == tmp_path / "synth" / "images"
    pairs = pair_images_masks(images_dir, masks_dir)
    assert [p[0].name for p in pairs] == ["synth_000.tif", "synth_001.tif", "synth_002.tif"]
    image, mask = read_image(pairs[0][0]), read_image(pairs[0][1])
    assert image.dtype == np.uint8 and mask.dtype == np.uint16 and image.shape == (64, 80)
    assert not [p for p in (tmp_path / "synth").rglob(".*")]  # no temporary files left
    samples = load_samples(images_dir, masks_dir)
    assert len(samples) == 3 and samples[0].labels.max() == mask.max()
    with pytest.raises(ValueError, match="n_images"):
        write_synthetic_dataset(tmp_path, n_images=0, shape=(64, 64),
                                rng=np.random.default_rng(0))
