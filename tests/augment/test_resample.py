"""Tests for tileunet.augment.resample: one coordinate map, mirrored borders, labels stay
labels, image, target and weights stay aligned."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage as ndi

from tileunet.augment.geometry import source_coordinates
from tileunet.augment.params import AugmentConfig, AugmentParams, identity_params, make_params
from tileunet.augment.resample import apply, augment_tile


def reflect_crop(image: np.ndarray, center: tuple[int, int], size: int) -> np.ndarray:
    """The reference: np.pad(mode="reflect") crop whose pixel size // 2 is ``center``."""
    pad = 3 * size
    padded = np.pad(image, [(0, 0)] * (image.ndim - 2) + [(pad, pad), (pad, pad)],
                    mode="reflect")
    top, left = center[0] - size // 2 + pad, center[1] - size // 2 + pad
    return padded[..., top : top + size, left : left + size]


def blocks(shape: tuple[int, int], block: int, rng: np.random.Generator,
           values: tuple[int, ...] = (0, 1, 2, 5, 9)) -> np.ndarray:
    """A piecewise-constant label image of ``block`` x ``block`` squares."""
    ny, nx = -(-shape[0] // block), -(-shape[1] // block)
    coarse = rng.choice(np.array(values), size=(ny, nx))
    return np.kron(coarse, np.ones((block, block), dtype=coarse.dtype))[: shape[0], : shape[1]]


# ------------------------------------------------------------------ identity crops
def test_identity_interior_is_exact_slice(rng):
    image = rng.random((2, 40, 50), dtype=np.float32)
    target = rng.integers(0, 4, (40, 50))
    weights = rng.random((40, 50), dtype=np.float32)
    size, center = 16, (20, 25)
    top, left = center[0] - size // 2, center[1] - size // 2
    x, y, w = apply(identity_params(image.shape[1:], size, center), image, target, weights)
    assert np.array_equal(x, image[:, top : top + size, left : left + size])
    assert np.array_equal(y, target[top : top + size, left : left + size])
    assert np.array_equal(w, weights[top : top + size, left : left + size])
    assert x.dtype == np.float32 and y.dtype == target.dtype and w.dtype == np.float32


@pytest.mark.parametrize(
    ("shape", "size", "center"),
    [
        ((30, 40), 16, (0, 0)),  # overlaps the top-left border
        ((30, 40), 17, (29, 39)),  # odd size, bottom-right
        ((30, 40), 100, (15, 3)),  # tile larger than the image: repeated mirroring
        ((7, 5), 33, (3, 4)),  # much larger
        ((1, 9), 12, (0, 4)),  # a one-pixel-high image: mirror of length 1 is constant
        ((6, 1), 9, (2, 0)),
    ],
)
def test_identity_matches_reflect_pad(rng, shape, size, center):
    image = rng.random(shape, dtype=np.float32)
    target = rng.integers(0, 5, shape).astype(np.uint8)
    x, y, w = apply(identity_params(shape, size, center), image, target, image)
    assert x.shape == (size, size)
    assert np.array_equal(x, reflect_crop(image, center, size))
    assert np.array_equal(y, reflect_crop(target, center, size))
    assert np.array_equal(w, reflect_crop(image, center, size))


def test_disabled_config_is_a_plain_random_crop(rng):
    image = rng.random((1, 25, 31), dtype=np.float32)
    config = AugmentConfig(enabled=False)
    for _ in range(5):
        p = make_params(image.shape[1:], 20, rng, config)
        assert p.is_integral and p.angle == 0 and not (p.flip_x or p.flip_y)
        assert (p.contrast, p.brightness, p.gamma) == (1.0, 0.0, 1.0)
        center = tuple(int(c) for c in p.center)
        assert 0 <= center[0] < 25 and 0 <= center[1] < 31
        x, _, _ = apply(p, image)
        assert np.array_equal(x, reflect_crop(image, center, 20))


# ------------------------------------------------- interpolation vs. whole-image references
CASES = [((60, 70), 48, None), ((60, 70), 48, (1, 68)), ((20, 24), 64, (10, 3)),
         ((1, 30), 16, (0, 5))]


def keys_reference(image: np.ndarray, coords: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Cubic convolution (Keys) of the np.pad-mirrored image at *unfolded* coordinates."""
    pad = int(np.abs(coords).max()) + 4
    padded = np.pad(image.astype(np.float64), pad, mode="reflect")
    fy, fx = np.floor(coords[0]), np.floor(coords[1])

    def kernel(s: np.ndarray) -> np.ndarray:
        s = np.abs(s)
        inner = ((a + 2) * s - (a + 3)) * s * s + 1
        outer = ((a * s - 5 * a) * s + 8 * a) * s - 4 * a
        return np.where(s <= 1, inner, np.where(s < 2, outer, 0.0))

    out = np.zeros(coords.shape[1:])
    for i in range(-1, 3):
        for j in range(-1, 3):
            weight = kernel(coords[0] - fy - i) * kernel(coords[1] - fx - j)
            out += weight * padded[(fy + i).astype(int) + pad, (fx + j).astype(int) + pad]
    return out


@pytest.mark.parametrize(("shape", "size", "center"), CASES)
def test_bicubic_matches_cubic_convolution_of_the_mirrored_image(shape, size, center,
                                                                  geometry_only):
    rng = np.random.default_rng(3)
    image = ndi.gaussian_filter(rng.random(shape), 1.0).astype(np.float32) * 10
    weights = rng.random(shape).astype(np.float32)
    for _ in range(4):
        p = make_params(shape, size, rng, geometry_only, center=center)
        assert p.interpolation == "bicubic"
        unfolded = source_coordinates(p, fold=False)
        folded = source_coordinates(p)
        ref_w = ndi.map_coordinates(weights.astype(np.float64), folded, order=1, mode="mirror")
        x, _, w = apply(p, image, None, weights)
        np.testing.assert_allclose(x, keys_reference(image, unfolded),
                                   atol=1e-3 * float(np.ptp(image)))
        np.testing.assert_allclose(w, ref_w, atol=1e-4)


@pytest.mark.parametrize(("shape", "size", "center"), CASES)
def test_spline_matches_map_coordinates_on_whole_image(shape, size, center, geometry_only):
    rng = np.random.default_rng(3)
    image = ndi.gaussian_filter(rng.random(shape), 1.0).astype(np.float32) * 10
    weights = rng.random(shape).astype(np.float32)
    config = dataclasses.replace(geometry_only, interpolation="spline")
    for _ in range(4):
        p = make_params(shape, size, rng, config, center=center)
        coords = source_coordinates(p)  # folded into the image
        ref = ndi.map_coordinates(image.astype(np.float64), coords, order=3, mode="mirror")
        ref_w = ndi.map_coordinates(weights.astype(np.float64), coords, order=1, mode="mirror")
        x, _, w = apply(p, image, None, weights)
        np.testing.assert_allclose(x, ref, atol=2e-3 * float(np.ptp(image)))
        np.testing.assert_allclose(w, ref_w, atol=1e-4)


# ------------------------------------------------------------- rotations and flips
@pytest.mark.parametrize("size", [10, 11])
@pytest.mark.parametrize("k", [0, 1, 2, 3])
@pytest.mark.parametrize(("flip_y", "flip_x"), [(False, False), (True, False), (False, True)])
def test_quarter_turns_match_rot90(rng, size, k, flip_y, flip_x):
    image = rng.random((30, 32), dtype=np.float32)
    center = (14, 17)
    p = AugmentParams(image.shape, size, center, angle=90.0 * k, flip_y=flip_y, flip_x=flip_x)
    expected = np.rot90(image[center[0] - size // 2 :, center[1] - size // 2 :][:size, :size], k)
    if flip_y:
        expected = np.flipud(expected)
    if flip_x:
        expected = np.fliplr(expected)
    x, y, _ = apply(p, image, (image * 100).astype(np.int32))
    assert np.array_equal(x, expected)
    assert np.array_equal(y, (expected * 100).astype(np.int32))


@pytest.mark.parametrize("k", [0, 1, 2, 3, -1, 6])
@pytest.mark.parametrize(("flip_y", "flip_x"), [(False, False), (True, True), (False, True)])
def test_exact_crops_follow_the_coordinate_map(rng, k, flip_y, flip_x):
    image = rng.random((9, 13), dtype=np.float32)
    for size, center in [(6, (0, 12)), (7, (4, 6)), (20, (8, 1))]:
        p = AugmentParams(image.shape, size, center, angle=90.0 * k, flip_y=flip_y,
                          flip_x=flip_x)
        assert p.is_integral
        coords = source_coordinates(p)
        assert np.array_equal(coords, np.round(coords))
        expected = image[coords[0].astype(int), coords[1].astype(int)]
        assert np.array_equal(apply(p, image)[0], expected)


@pytest.mark.parametrize("interpolation", ["bicubic", "spline"])
def test_interpolating_path_uses_the_same_rotation_convention(rng, interpolation):
    image = ndi.gaussian_filter(rng.random((40, 40)), 1.5).astype(np.float32)
    size, center = 20, (20, 20)
    tiny = np.full((2, 3, 3), 1e-9)  # forces the interpolating path, moves nothing visible
    p = AugmentParams(image.shape, size, center, angle=90.0, elastic=tiny,
                      interpolation=interpolation)
    assert not p.is_integral
    x, _, _ = apply(p, image)
    np.testing.assert_allclose(x, np.rot90(reflect_crop(image, center, size)), atol=1e-4)


@pytest.mark.parametrize("interpolation", ["bicubic", "spline"])
def test_rotated_tile_near_corner_has_no_black_corners(rng, interpolation):
    image = (1.0 + rng.random((3, 50, 60))).astype(np.float32)  # all values in [1, 2)
    weights = image[0].copy()
    target = np.ones((50, 60), dtype=np.int64)
    for center, size in [((0, 0), 40), ((49, 59), 40), ((25, 30), 120)]:
        p = AugmentParams((50, 60), size, center, angle=45.0, interpolation=interpolation)
        x, y, w = apply(p, image, target, weights)
        assert x.shape == (3, size, size)
        assert x.min() > 0.5 and w.min() >= 1.0 and (y == 1).all()


@pytest.mark.parametrize("interpolation", ["bicubic", "spline"])
def test_tiny_and_thin_images_do_not_crash(rng, interpolation, geometry_only):
    config = dataclasses.replace(geometry_only, interpolation=interpolation)
    for shape in [(1, 1), (1, 7), (7, 1), (2, 3)]:
        image = rng.random(shape, dtype=np.float32) + 1
        x, y, w = augment_tile(image, np.ones(shape, np.int64), image, size=9, rng=rng,
                               config=config)
        assert x.shape == y.shape == w.shape == (9, 9)
        assert np.isfinite(x).all() and x.min() > 0.5


# --------------------------------------------------------- labels stay labels, aligned
def test_label_set_never_changes_under_strong_deformation(rng):
    target = rng.choice(np.array([0, 3, 7, 250], dtype=np.uint8), size=(64, 64))
    image = rng.random((64, 64), dtype=np.float32)
    config = AugmentConfig(elastic_sigma=40.0, max_shift=7.5)
    for _ in range(10):
        _, y, _ = augment_tile(image, target, None, size=80, rng=rng, config=config)
        assert y.dtype == np.uint8
        assert set(np.unique(y)) <= {0, 3, 7, 250}


@pytest.mark.parametrize("interpolation", ["bicubic", "spline"])
def test_image_target_and_weights_stay_aligned(rng, interpolation, geometry_only):
    labels = blocks((96, 96), 12, rng)
    image = labels.astype(np.float32)
    weights = labels.astype(np.float32)
    # distance (source pixels) of each source pixel to the nearest block edge
    flat = ndi.minimum_filter(labels, 3) == ndi.maximum_filter(labels, 3)
    edge_distance = ndi.distance_transform_edt(flat)
    config = dataclasses.replace(geometry_only, elastic_sigma=15.0, max_shift=0.5,
                                 interpolation=interpolation)
    for _ in range(6):
        p = make_params(labels.shape, 72, rng, config)
        x, y, w = apply(p, image, labels, weights)
        inner = ndi.map_coordinates(edge_distance, source_coordinates(p), order=1) >= 2
        assert inner.mean() > 0.3
        # two or more source pixels away from a block edge all three show the same block
        assert np.abs(x - y)[inner].max() < 0.25  # cubic ringing of a step of up to 9
        assert np.abs(w - y)[inner].max() < 1e-3
        # and overall most pixels agree (edges are a thin band)
        assert np.mean(np.rint(w) == y) > 0.85


# ------------------------------------------------------------------ reproducibility
def test_same_seed_same_tiles_different_seed_different(rng):
    image = rng.random((1, 50, 50), dtype=np.float32)
    target = rng.integers(0, 3, (50, 50))
    weights = rng.random((50, 50), dtype=np.float32)

    def run(seed: int):
        return augment_tile(image, target, weights, size=40, rng=np.random.default_rng(seed))

    a, b, c = run(7), run(7), run(8)
    for u, v in zip(a, b, strict=True):
        assert np.array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_elastic_moves_pixels_by_the_field():
    coarse = np.zeros((2, 3, 3))
    coarse[1] = 3.0  # every pixel shows the source 3 columns to the right
    p = AugmentParams((40, 40), 20, (20, 15), elastic=coarse)
    image = np.tile(np.arange(40, dtype=np.float32), (40, 1))
    x, _, _ = apply(p, image)
    np.testing.assert_allclose(x, reflect_crop(image, (20, 18), 20), atol=1e-3)


def test_zoom_magnifies_about_the_tile_centre():
    """zoom 2: a tile pixel spans half a source pixel (a ramp climbs half as fast) and a
    disc's area in the target grows fourfold; zoom 0.5 the reverse."""
    image = np.tile(np.arange(60, dtype=np.float32), (60, 1))
    yy, xx = np.mgrid[:60, :60]
    disc = ((yy - 30) ** 2 + (xx - 30) ** 2 <= 36).astype(np.int64)
    for zoom in (2.0, 0.5):
        p = AugmentParams((60, 60), 21, (30, 30), zoom=zoom)
        x, y, _ = apply(p, image, disc)
        np.testing.assert_allclose(np.diff(x[10, 8:13]), 1.0 / zoom, atol=1e-3)
        assert x[10, 10] == pytest.approx(30.0, abs=1e-3)  # the centre stays
        assert y.sum() == pytest.approx(disc.sum() * zoom**2, rel=0.15)


# ------------------------------------------------------------- shapes and dtypes
def test_shapes_and_dtypes(rng):
    image64 = rng.random((20, 22))
    x, y, w = augment_tile(image64, None, None, size=12, rng=rng)
    assert x.shape == (12, 12) and x.dtype == np.float64 and y is None and w is None
    xi, yb, _ = augment_tile((image64 * 255).astype(np.uint8), image64 > 0.5, None,
                             size=12, rng=rng)
    assert xi.dtype == np.float32 and yb.dtype == bool


# ------------------------------------------------------------------ bad inputs
def test_bad_arrays_raise_value_error(rng):
    image = rng.random((1, 20, 20), dtype=np.float32)
    p = make_params((20, 20), 16, rng)
    with pytest.raises(ValueError, match="target must have shape"):
        apply(p, image, np.zeros((20, 21), np.int64))
    with pytest.raises(ValueError, match="weights must have shape"):
        apply(p, image, None, np.zeros((19, 20), np.float32))
    with pytest.raises(ValueError, match="does not match"):
        apply(p, rng.random((1, 21, 20)))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(C, H, W\)"):
        apply(p, image[None])
    for size in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="size must be a positive integer"):
            augment_tile(image, None, None, size=size, rng=rng)


def test_nearest_weights_come_from_the_pixel_the_target_comes_from(rng):
    """A sparse annotation: each output pixel has the weight of its target's source, so
    a stroke's weight never spills onto an unannotated neighbour."""
    target = rng.integers(0, 1000, (60, 70))  # every pixel its own value
    weights = (target % 7).astype(np.float32)
    image = rng.random((1, 60, 70), dtype=np.float32)
    config = AugmentConfig(weights="nearest")
    for _ in range(10):
        p = make_params((60, 70), 40, rng, config)
        _, y, w = apply(p, image, target, weights)
        np.testing.assert_array_equal(w, (y % 7).astype(np.float32))
    linear = make_params((60, 70), 40, np.random.default_rng(1), AugmentConfig())
    _, y, w = apply(linear, image, target, weights)
    assert not np.array_equal(w, (y % 7).astype(np.float32))  # bilinear: blended
    with pytest.raises(ValueError, match="weights must be one of"):
        AugmentConfig(weights="cubic")
