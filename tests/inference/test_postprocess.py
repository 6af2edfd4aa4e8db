"""From probabilities to labels (tileunet.inference.postprocess)."""

from __future__ import annotations

import numpy as np
import pytest

from tileunet.evaluation.scores import seg_score, touching_pairs_separated
from tileunet.inference.postprocess import instances_from_probability, label_mask
from tileunet.synthetic import synthetic_cells


def _touching_squares() -> tuple[np.ndarray, np.ndarray]:
    """GT: two 12x12 squares sharing an edge; prediction: the same with a 1-px gap."""
    gt = np.zeros((20, 32), np.int32)
    gt[4:16, 4:16] = 1
    gt[4:16, 16:28] = 2
    prob = np.where(gt > 0, 0.9, 0.1)
    prob[:, 16] = 0.2  # the network drew the border between them as background
    return gt, prob


def test_touching_squares_come_out_as_two_of_original_size():
    gt, prob = _touching_squares()
    labels = instances_from_probability(prob)
    assert labels.dtype == np.int32
    assert np.unique(labels).tolist() == [0, 1, 2]
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.sum() == 2 * 144  # the gap was given back, nothing else
    assert np.all(np.abs(sizes - 144) <= 12)  # each within one column of its own size
    assert np.array_equal(labels > 0, gt > 0)
    assert touching_pairs_separated(labels, gt) == (1, 1)
    assert seg_score(labels, gt) > 0.9


def test_grow_modes_on_an_isolated_cell():
    prob = np.zeros((30, 30))
    prob[10:20, 10:20] = 1.0
    gaps = instances_from_probability(prob, grow=2)
    assert (gaps > 0).sum() == 100  # nothing to separate: outline stays put
    grown = instances_from_probability(prob, grow=2, grow_mode="all")
    assert (grown > 0).sum() == 14 * 14 - 12  # grown by two pixels (Euclidean corners)
    none = instances_from_probability(prob, grow=0)
    assert (none > 0).sum() == 100


def test_grow_never_merges():
    gt, prob = _touching_squares()
    labels = instances_from_probability(prob, grow=5, grow_mode="all")
    assert np.unique(labels).tolist() == [0, 1, 2]


def test_min_size_and_threshold():
    prob = np.zeros((20, 20))
    prob[2:8, 2:8] = 0.8
    prob[15, 15] = 0.8  # speck
    assert instances_from_probability(prob).max() == 1
    assert instances_from_probability(prob, min_size=0).max() == 2
    assert instances_from_probability(prob, threshold=0.85).max() == 0
    assert not instances_from_probability(np.zeros((5, 5))).any()


def test_watershed_splits_merged_discs():
    yy, xx = np.mgrid[:40, :60]
    fg = ((yy - 20) ** 2 + (xx - 18) ** 2 < 12**2) | ((yy - 20) ** 2 + (xx - 40) ** 2 < 12**2)
    prob = fg.astype(float)
    assert instances_from_probability(prob).max() == 1
    split = instances_from_probability(prob, watershed=True, grow=0)
    assert split.max() == 2
    assert np.array_equal(split > 0, fg)
    assert split[20, 18] != split[20, 40]


def test_on_synthetic_ground_truth():
    _, gt = synthetic_cells((128, 128), rng=np.random.default_rng(5))
    # a perfect network: cells with a one-pixel background line between touching ones
    border = np.zeros(gt.shape, bool)
    edge = (gt[:, :-1] != gt[:, 1:]) & (gt[:, :-1] > 0) & (gt[:, 1:] > 0)
    border[:, 1:] |= edge
    edge = (gt[:-1] != gt[1:]) & (gt[:-1] > 0) & (gt[1:] > 0)
    border[1:] |= edge
    prob = ((gt > 0) & ~border).astype(np.float32)
    labels = instances_from_probability(prob, min_size=4)
    separated, total = touching_pairs_separated(labels, gt)
    assert total > 0 and separated >= total - 1
    assert seg_score(labels, gt) > 0.9


def test_validation():
    with pytest.raises(ValueError, match="2-D"):
        instances_from_probability(np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match="threshold"):
        instances_from_probability(np.zeros((5, 5)), threshold=1.5)
    with pytest.raises(ValueError, match="grow_mode"):
        instances_from_probability(np.zeros((5, 5)), grow_mode="some")
    with pytest.raises(ValueError, match="grow"):
        instances_from_probability(np.zeros((5, 5)), grow=-1)


def test_label_mask():
    prob = np.zeros((3, 2, 2), np.float32)
    prob[0, 0, 0] = prob[1, 0, 1] = prob[2, 1, 0] = prob[2, 1, 1] = 1.0
    out = label_mask(prob)
    assert out.dtype == np.uint8 and out.tolist() == [[0, 1], [2, 2]]
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        label_mask(np.zeros((4, 4)))


def test_seeded_flooding_splits_cells_where_the_probability_dips():
    # two cells touching along column 10; the network's probability dips to 0.7 there
    p = np.zeros((20, 21), np.float32)
    p[4:16, 2:19] = 0.97
    p[4:16, 10] = 0.7
    split = instances_from_probability(p, min_size=1)
    assert split.max() == 2
    assert set(np.unique(split[4:16, 2:10])) == {1} and set(np.unique(split[4:16, 11:19])) == {2}
    assert (split > 0).sum() == (p > 0.5).sum()  # flooding keeps the whole foreground
    merged = instances_from_probability(p, min_size=1, seed_threshold=None)
    assert merged.max() == 1
    # a cell the network is never sure about (no core) stays one object
    q = np.zeros((10, 10), np.float32)
    q[2:8, 2:8] = 0.6
    assert instances_from_probability(q, min_size=1).max() == 1
    with pytest.raises(ValueError, match="seed_threshold"):
        instances_from_probability(p, threshold=0.5, seed_threshold=0.3)


# ------------------------------------------------------ large images in groups
def _noisy_cells(shape, seed=0):
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(seed)
    _, truth = synthetic_cells(shape, rng=rng)
    p = (truth > 0).astype(np.float32)
    p[find_boundaries(truth)] = 0.3  # the network's dip between touching cells
    p = ndi.gaussian_filter(p, 1.2) + rng.normal(0, 0.08, p.shape)
    return np.clip(p, 0, 1).astype(np.float32)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renumbering the objects."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[a > 0]]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


@pytest.mark.parametrize("opts", [{}, {"seed_threshold": None}, {"grow_mode": "all"},
                                  {"grow": 0}])
def test_groups_of_objects_give_the_whole_image_result(opts):
    prob = _noisy_cells((300, 260))
    whole = instances_from_probability(prob, **opts)
    assert whole.max() > 10
    for band in (1, 23, 100):
        parts = instances_from_probability(prob, band_rows=band, **opts)
        assert _same_partition(whole, parts), band
        assert np.unique(parts).tolist() == list(range(whole.max() + 1))  # 0..N, no gaps


def test_groups_change_the_distance_watershed_only_at_group_seams():
    prob = _noisy_cells((300, 260), seed=1)
    whole = instances_from_probability(prob, watershed=True)
    parts = instances_from_probability(prob, watershed=True, band_rows=23)
    assert seg_score(parts, whole) > 0.98


def test_groups_read_a_memory_map(tmp_path):
    prob = _noisy_cells((120, 90), seed=2)
    np.save(tmp_path / "p.npy", prob)
    mm = np.load(tmp_path / "p.npy", mmap_mode="r")
    np.testing.assert_array_equal(instances_from_probability(mm, band_rows=16),
                                  instances_from_probability(prob, band_rows=16))


@pytest.mark.parametrize("band", [0, -3, 2.5])
def test_band_rows_must_be_positive(band):
    with pytest.raises(ValueError, match="band_rows"):
        instances_from_probability(np.zeros((5, 5)), band_rows=band)


def test_flooding_from_seed_rims_equals_flooding_from_whole_seeds():
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    from tileunet.inference.postprocess import _seed_rims

    for seed in range(3):
        prob = _noisy_cells((120, 140), seed=seed)
        fg = prob > 0.5
        seeds, _ = ndi.label(prob > 0.8)
        want = watershed(-prob, seeds, mask=fg)
        rims = seeds.copy()
        _seed_rims(rims)
        assert 0 < np.count_nonzero(rims) < np.count_nonzero(seeds)
        np.testing.assert_array_equal(watershed(-prob, rims, mask=fg), want)


def test_flooding_only_components_with_several_seeds_equals_flooding_all():
    """A component with one seed comes out as that seed whole, so only components with
    several seeds are flooded; the labels are those of flooding everything."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    from tileunet.inference.postprocess import _flood

    for seed in range(4):
        prob = _noisy_cells((150, 160), seed=seed)
        fg = prob > 0.5
        components, _ = ndi.label(fg)
        seeds, _ = ndi.label(prob > 0.8)
        seeds[seeds == 1] = 0  # a removed (small) seed leaves a gap in the ids
        want = watershed(-prob, seeds, mask=fg)
        got = _flood(prob, seeds, components, fg)
        np.testing.assert_array_equal(got, want)
        counts = np.array([len(np.unique(seeds[(components == c) & (seeds > 0)]))
                           for c in range(1, components.max() + 1)])
        assert (counts == 1).any() and (counts > 1).any()  # both kinds are there
