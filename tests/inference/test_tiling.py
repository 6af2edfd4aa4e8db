"""Tests for the overlap-tile geometry (tileunet.inference.tiling)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tileunet.inference.tiling import (
    DIHEDRAL,
    dihedral,
    mirror_pad,
    reflect_indices,
    tile_layout,
    tiled_apply,
)

SIZES = [(1, 1), (1, 7), (7, 1), (3, 700), (700, 3), (5, 5), (100, 37), (64, 64)]


def crop_by(m: int):
    """The identity predictor: a centre crop by the margin."""
    return lambda x: x[..., m:-m, m:-m] if m else x


# ---------------------------------------------------------------- mirroring
def test_reflect_indices_small_golden():
    assert reflect_indices(3, 2, 2).tolist() == [2, 1, 0, 1, 2, 1, 0]
    assert reflect_indices(2, 3, 3).tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert reflect_indices(1, 2, 3).tolist() == [0] * 6
    assert reflect_indices(4, 0, 0).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("before, after", [(0, 0), (1, 2), (7, 3), (20, 31)])
def test_reflect_indices_match_numpy_reflect(n, before, after):
    # numpy reflects repeatedly for pads larger than the axis, and repeats a single pixel
    expected = np.pad(np.arange(n), (before, after), mode="reflect")
    np.testing.assert_array_equal(reflect_indices(n, before, after), expected)


def test_reflect_indices_rejects_bad_arguments():
    with pytest.raises(ValueError, match="axis length"):
        reflect_indices(0, 1, 1)
    with pytest.raises(ValueError, match="pads must be >= 0"):
        reflect_indices(3, -1, 0)


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (4, 3), (2, 9, 5)])
def test_mirror_pad_numpy_and_torch_agree_with_np_pad(shape, rng):
    img = rng.normal(size=shape)
    before, after = (5, 2), (3, 11)
    width = [(0, 0)] * (img.ndim - 2) + list(zip(before, after, strict=True))
    expected = np.pad(img, width, mode="reflect")
    got = mirror_pad(img, before, after)
    np.testing.assert_array_equal(got, expected)
    got_t = mirror_pad(torch.from_numpy(img), before, after)
    assert isinstance(got_t, torch.Tensor)
    np.testing.assert_array_equal(got_t.numpy(), expected)


def test_mirror_pad_int_pads_and_errors():
    img = np.arange(6).reshape(2, 3)
    assert mirror_pad(img, 1, 0).shape == (3, 4)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        mirror_pad(np.arange(3), 1, 1)
    with pytest.raises(ValueError, match="at least 1x1"):
        mirror_pad(np.zeros((0, 3)), 1, 1)
    with pytest.raises(ValueError, match="pad_before must be >= 0"):
        mirror_pad(img, -1, 1)
    with pytest.raises(ValueError, match="pair"):
        mirror_pad(img, (1, 2, 3), 1)


# ------------------------------------------------------------------ layout
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize("in_tile, margin, stride", [(9, 3, None), (30, 4, 16), (12, 0, 5)])
def test_layout_output_tiles_cover_the_image_once(hw, in_tile, margin, stride):
    out_tile = in_tile - 2 * margin
    layout = tile_layout(hw, in_tile=in_tile, out_tile=out_tile, margin=margin, stride=stride)
    count = np.zeros(hw, int)
    for y, x in layout.origins():
        count[y : y + layout.stride, x : x + layout.stride] += 1
    assert (count == 1).all()
    assert len(layout) == len(layout.origins())
    assert all(p >= margin for p in layout.pad_after)
    for n, b, a, p in zip(hw, layout.pad_before, layout.pad_after, layout.padded_hw,
                          strict=True):
        assert b + n + a == p
    # the last tile ends exactly at the padded border
    y, x = layout.origins()[-1]
    assert (y + in_tile, x + in_tile) == layout.padded_hw


def test_layout_paper_numbers():
    layout = tile_layout((1024, 1024), in_tile=572, out_tile=388, margin=92, stride=384)
    assert layout.grid == (3, 3)
    assert layout.pad_before == (92, 92)
    assert layout.padded_hw == (2 * 384 + 572,) * 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(in_tile=10, out_tile=6, margin=3), "in_tile must be at least"),
        (dict(in_tile=10, out_tile=4, margin=3, stride=5), "stride must be in"),
        (dict(in_tile=10, out_tile=4, margin=3, stride=0), "stride must be in"),
        (dict(in_tile=10, out_tile=0, margin=3), "out_tile must be >= 1"),
        (dict(in_tile=10, out_tile=4, margin=-1), "margin must be >= 0"),
    ],
)
def test_layout_rejects_inconsistent_geometry(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tile_layout((5, 5), **kwargs)


def test_layout_rejects_empty_image():
    with pytest.raises(ValueError, match="at least 1x1"):
        tile_layout((0, 5), in_tile=9, out_tile=5, margin=2)


# ------------------------------------------------------------ the identity
@pytest.mark.parametrize("hw", SIZES)
@pytest.mark.parametrize(
    "margin, in_tile, stride",
    [
        (3, 8, None),  # output tile (2) far smaller than the image
        (5, 15, 4),  # keep only part of each output tile
        (92, 572, 384),  # the paper's geometry: one tile larger than most images here
        (0, 4, None),  # no context at all
        (20, 1000, None),  # one tile much larger than every image
    ],
)
@pytest.mark.parametrize("batch_size", [1, 5])
def test_identity_predictor_returns_the_input_exactly(hw, margin, in_tile, stride,
                                                      batch_size, rng):
    img = rng.normal(size=(2, *hw))
    out = tiled_apply(crop_by(margin), img, margin=margin, in_tile=in_tile,
                      out_tile=in_tile - 2 * margin, stride=stride, batch_size=batch_size)
    assert out.shape == img.shape
    assert out.dtype == img.dtype
    assert np.array_equal(out, img)


@pytest.mark.parametrize("hw", [(1, 1), (3, 70), (33, 20)])
def test_identity_predictor_on_torch_tensors(hw):
    img = torch.randn(3, *hw, generator=torch.Generator().manual_seed(1))
    out = tiled_apply(crop_by(4), img, margin=4, in_tile=13, out_tile=5, batch_size=3,
                      out_channels=3)
    assert isinstance(out, np.ndarray)
    assert np.array_equal(out, img.numpy())


def test_integer_images_stay_exact():
    img = np.arange(3 * 17 * 11, dtype=np.int64).reshape(3, 17, 11)
    out = tiled_apply(crop_by(2), img, margin=2, in_tile=9, out_tile=5, batch_size=2)
    assert out.dtype == np.int64
    assert np.array_equal(out, img)


def box3(x: np.ndarray) -> np.ndarray:
    """Sum over each valid 3x3 window: (N, C, h, w) -> (N, C, h - 2, w - 2)."""
    h, w = x.shape[-2:]
    return sum(x[..., i : i + h - 2, j : j + w - 2] for i in range(3) for j in range(3))


@pytest.mark.parametrize("hw", [(1, 1), (2, 9), (40, 23)])
@pytest.mark.parametrize("in_tile", [5, 12])
def test_context_comes_from_the_mirrored_image(hw, in_tile, rng):
    # a local filter with one pixel of context equals the filter on the mirrored image
    img = rng.normal(size=(1, *hw))
    out = tiled_apply(box3, img, margin=1, in_tile=in_tile, out_tile=in_tile - 2,
                      batch_size=4)
    expected = box3(np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="reflect")[None])[0]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_fn_with_several_output_channels():
    img = np.arange(20.0).reshape(1, 4, 5)

    def two(x):
        x = x[..., 1:-1, 1:-1]
        return np.concatenate([x, -x], axis=1)

    out = tiled_apply(two, img, margin=1, in_tile=4, out_tile=2, out_channels=2)
    np.testing.assert_array_equal(out, np.concatenate([img, -img]))


def test_wrong_fn_output_shape_is_reported():
    img = np.zeros((1, 8, 8))
    with pytest.raises(ValueError, match=r"fn must map a batch of shape \(1, 1, 6, 6\)"):
        tiled_apply(lambda x: x, img, margin=1, in_tile=6, out_tile=4)
    with pytest.raises(ValueError, match=r"to \(2, 3, 4, 4\)"):
        tiled_apply(crop_by(1), img, margin=1, in_tile=6, out_tile=4, batch_size=2,
                    out_channels=3)


def test_rejects_bad_image_and_batch_size():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        tiled_apply(crop_by(1), np.zeros((8, 8)), margin=1, in_tile=6, out_tile=4)
    with pytest.raises(ValueError, match="batch_size"):
        tiled_apply(crop_by(1), np.zeros((1, 8, 8)), margin=1, in_tile=6, out_tile=4,
                    batch_size=0)


def test_callback_counts_every_tile_once():
    done = []
    img = np.zeros((1, 10, 7))
    tiled_apply(crop_by(1), img, margin=1, in_tile=5, out_tile=3, batch_size=4,
                callback=done.append)
    assert done == [4, 4, 4]  # 4 x 3 = 12 tiles in batches of 4


# ------------------------------------------------------------- transforms
def weighted_3x3(x):
    """A valid 3x3 filter with distinct weights: any wrong orientation shows."""
    x = np.asarray(x, dtype=np.float64)
    w = np.arange(1.0, 10.0).reshape(3, 3)
    h, wd = x.shape[-2] - 2, x.shape[-1] - 2
    return sum(w[a, b] * x[..., a : a + h, b : b + wd] for a in range(3) for b in range(3))


def test_dihedral_matches_numpy():
    img = np.arange(12).reshape(3, 4)
    assert len(set(DIHEDRAL)) == 8
    for k, flip in DIHEDRAL:
        want = np.rot90(np.fliplr(img) if flip else img, k)
        np.testing.assert_array_equal(dihedral(img, k, flip), want)
        np.testing.assert_array_equal(dihedral(torch.from_numpy(img), k, flip).numpy(), want)


@pytest.mark.parametrize("hw", [(1, 1), (7, 11), (13, 5), (1, 9), (20, 20)])
@pytest.mark.parametrize("as_torch", [False, True])
def test_transformed_tiles_equal_tiling_the_transformed_image(hw, as_torch, rng):
    img = rng.random((2,) + hw)
    src = torch.from_numpy(img) if as_torch else img
    for k, flip in DIHEDRAL:
        ref = tiled_apply(weighted_3x3, np.ascontiguousarray(dihedral(img, k, flip)),
                          margin=1, in_tile=6, out_tile=4)
        ref = np.rot90(ref, -k, axes=(1, 2))  # undo: rotate back, then unflip
        ref = ref[..., ::-1] if flip else ref
        got = tiled_apply(weighted_3x3, src, margin=1, in_tile=6, out_tile=4,
                          batch_size=3, transform=(k, flip))
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12, err_msg=f"{k=} {flip=}")


def test_out_and_add_accumulate_in_place(rng):
    img = rng.random((1, 9, 14))
    out = np.zeros((1, 9, 14))
    got = tiled_apply(crop_by(2), img, margin=2, in_tile=8, out_tile=4, out=out)
    assert got is out
    tiled_apply(crop_by(2), img, margin=2, in_tile=8, out_tile=4, out=out, add=True,
                transform=(2, True))
    np.testing.assert_allclose(out, 2 * img)
    with pytest.raises(ValueError, match="out must have shape"):
        tiled_apply(crop_by(2), img, margin=2, in_tile=8, out_tile=4, out=np.zeros((1, 9, 9)))
    with pytest.raises(ValueError, match="add=True needs"):
        tiled_apply(crop_by(2), img, margin=2, in_tile=8, out_tile=4, add=True)


def test_no_padded_copy_of_a_memory_mapped_image(tmp_path, rng):
    """Tiles are read from a memory map as they are needed."""
    img = rng.random((1, 50, 60)).astype(np.float32)
    path = tmp_path / "img.npy"
    np.save(path, img)
    mm = np.load(path, mmap_mode="r")
    out = tiled_apply(crop_by(3), mm, margin=3, in_tile=16, out_tile=10, batch_size=4)
    np.testing.assert_array_equal(out, img)
