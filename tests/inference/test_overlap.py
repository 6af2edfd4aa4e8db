"""Tests for overlap-tile prediction (tileunet.inference.overlap)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tileunet.inference.overlap import choose_tile, predict, tile_geometry, tile_memory_bytes
from tileunet.model import UNet


def tiny(depth: int = 3, width: int = 4, dtype: torch.dtype = torch.float64, **kw) -> UNet:
    torch.manual_seed(depth * 10 + width)
    return UNet(depth=depth, width=width, dropout=0.0, **kw).to(dtype).eval()


def usable_tiles(net: UNet, count: int) -> list[int]:
    first = net.input_size_for_output(net.size_step)
    return [first + i * net.size_step for i in range(count)]


def whole_image(net: UNet, image: np.ndarray, amp: torch.dtype | None = None) -> np.ndarray:
    """One forward pass over the whole mirror-padded image (the reference), under
    autocast to ``amp`` when given."""
    x = image if image.ndim == 3 else image[None]
    _, h, w = x.shape
    m = net.margin
    nh, nw = net.valid_input_size(h + 2 * m), net.valid_input_size(w + 2 * m)
    padded = np.pad(x, ((0, 0), (m, nh - h - m), (m, nw - w - m)), mode="reflect")
    dtype = next(net.parameters()).dtype
    with torch.no_grad(), torch.autocast("cpu", dtype=amp or dtype, enabled=amp is not None):
        logits = net(torch.from_numpy(padded[None]).to(dtype)).to(dtype)
    return torch.softmax(logits, dim=1)[0, :, :h, :w].numpy()


# --------------------------------------------------------------- invariance
# depth 4: outputs are 4 px off the pooling step of 8, so tile placement matters
@pytest.mark.parametrize("depth, width", [(3, 4), (4, 2)])
@pytest.mark.parametrize("hw", [(1, 1), (5, 9), (3, 70), (70, 3), (41, 97)])
def test_result_does_not_depend_on_the_tile_size(depth, width, hw, rng):
    net = tiny(depth, width)
    image = rng.normal(size=hw)
    small, large = usable_tiles(net, 4)[0], usable_tiles(net, 4)[3]
    a = predict(net, image, tile=small, progress=False)
    b = predict(net, image, tile=large, progress=False)
    ref = whole_image(net, image)
    assert a.dtype == np.float32 and a.shape == (2, *hw)
    np.testing.assert_allclose(a, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(b, ref, rtol=0, atol=1e-6)


# bf16 keeps 8 significant bits: each rounding moves a value by up to 2**-8 of itself
BF16_UNIT = 2.0**-8


def logit_scale(net: UNet, image: np.ndarray) -> float:
    """max |logit| of the float32 network over the mirror-padded image."""
    x = image if image.ndim == 3 else image[None]
    m = net.margin
    size = [net.valid_input_size(n + 2 * m) for n in x.shape[1:]]
    padded = np.pad(x, ((0, 0), (m, size[0] - x.shape[1] - m), (m, size[1] - x.shape[2] - m)),
                    mode="reflect")
    with torch.no_grad():
        return net(torch.from_numpy(padded[None]).float()).abs().max().item()


def rounding_layers(net: UNet) -> int:
    """Layers whose inputs autocast rounds to bf16: every convolution and up-convolution."""
    return sum(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
               for m in net.modules())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("hw", [(2, 2), (37, 60), (64, 64)])
def test_tile_invariance_in_each_precision(hw, precision, rng):
    net = tiny(4, 4, dtype=torch.float32)
    image = rng.normal(size=hw).astype(np.float32)
    tiles = usable_tiles(net, 5)
    a = predict(net, image, tile=tiles[0], precision=precision, progress=False)
    b = predict(net, image, tile=tiles[4], precision=precision, progress=False)
    if precision == "fp32":
        ref = whole_image(net, image)
        # float32 sums in another order (oneDNN blocks by image size): a few ulp of a logit
        tol = 1e-5
    else:
        ref = whole_image(net, image, amp=torch.bfloat16)
        # the same bf16 roundings in tiles and in the whole image; another float32 summing
        # order may move one rounding of a logit to its neighbour (2**-8 relative), and
        # the softmax moves a probability by at most half the largest change of a logit
        tol = 0.5 * BF16_UNIT * logit_scale(net, image)
    np.testing.assert_allclose(a, ref, rtol=0, atol=tol)
    np.testing.assert_allclose(b, ref, rtol=0, atol=tol)


@pytest.mark.parametrize("depth, width, in_channels, num_classes",
                         [(2, 2, 1, 2), (4, 4, 1, 2), (3, 4, 3, 4)])
def test_bf16_is_close_to_fp32(depth, width, in_channels, num_classes, rng):
    net = tiny(depth, width, dtype=torch.float32, in_channels=in_channels,
               num_classes=num_classes)
    image = rng.normal(size=(in_channels, 37, 60)).astype(np.float32)
    fp32 = predict(net, image, precision="fp32", progress=False)
    bf16 = predict(net, image, precision="bf16", progress=False)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    np.testing.assert_allclose(bf16.sum(axis=0), 1.0, atol=1e-6)
    # each of the L layers rounds its inputs to bf16 once: logits move by up to
    # L * 2**-8 of their scale, probabilities by at most half of that
    tol = 0.5 * rounding_layers(net) * BF16_UNIT * logit_scale(net, image)
    np.testing.assert_allclose(bf16, fp32, rtol=0, atol=tol)
    assert np.abs(bf16 - fp32).max() > 0  # bf16 did run


def test_strides_are_multiples_of_the_pooling_step():
    assert tile_geometry(UNet(), 572) == (388, 384)
    net = tiny(4, 2)
    for tile in usable_tiles(net, 6):
        out, stride = tile_geometry(net, tile)
        assert out == net.output_size(tile)
        assert stride % net.size_step == 0 and 0 < out - stride < net.size_step


# ----------------------------------------------------------- shape and dtype
def test_shape_dtype_and_probabilities(rng):
    net = tiny(3, 4, dtype=torch.float32)
    image = rng.normal(size=(23, 31)).astype(np.float32)
    probs = predict(net, image, progress=False)
    assert probs.shape == (2, 23, 31)
    assert probs.dtype == np.float32
    assert np.isfinite(probs).all() and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-6)
    # (H, W) and (1, H, W) are the same image
    np.testing.assert_array_equal(predict(net, image[None], progress=False), probs)


def test_several_channels_and_classes(rng):
    net = tiny(3, 4, dtype=torch.float32, in_channels=3, num_classes=4)
    image = rng.normal(size=(3, 17, 12))
    probs = predict(net, image, precision="fp32", progress=False)
    assert probs.shape == (4, 17, 12)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-6)
    # float32 sums in another order: a few ulp of a logit
    np.testing.assert_allclose(probs, whole_image(net, image.astype(np.float32)), atol=1e-5)


def test_integer_images_are_fed_as_they_are(rng):
    net = tiny(3, 4, dtype=torch.float32)
    image = rng.integers(0, 255, size=(9, 14), dtype=np.uint8)
    np.testing.assert_array_equal(
        predict(net, image, progress=False),
        predict(net, image.astype(np.float32), progress=False),
    )


def test_float64_image_into_float32_net(rng):
    net = tiny(3, 4, dtype=torch.float32)
    image = rng.normal(size=(9, 14))
    np.testing.assert_array_equal(
        predict(net, image, progress=False),
        predict(net, image.astype(np.float32), progress=False),
    )


def test_same_padding_runs_for_any_size(rng):
    net = tiny(3, 4, dtype=torch.float32, padding="same")
    for hw in [(1, 1), (13, 29), (3, 70)]:
        image = rng.normal(size=hw).astype(np.float32)
        for tile in (None, 2 * net.margin + 2 * net.size_step):
            probs = predict(net, image, tile=tile, progress=False)
            assert probs.shape == (2, *hw) and probs.dtype == np.float32
            np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-6)
    # zero padding at each tile's border makes the result depend on the tile, a little:
    # misplaced tiles or seams would differ by far more
    image = rng.normal(size=(40, 70)).astype(np.float32)
    small = predict(net, image, tile=2 * net.margin + 2 * net.size_step, progress=False)
    whole = predict(net, image, tile=net.valid_input_size(70 + 2 * net.margin),
                    progress=False)
    assert np.abs(small - whole).max() < 0.05 and np.abs(small - whole).mean() < 0.005


# ---------------------------------------------------------------------- tta
def test_tta_commutes_with_rotations_and_flips(rng):
    net = tiny(3, 4, dtype=torch.float32)
    image = rng.normal(size=(19, 26)).astype(np.float32)
    probs = predict(net, image, tta=True, progress=False)
    assert probs.shape == (2, 19, 26)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    rotated = predict(net, np.rot90(image), tta=True, progress=False)
    np.testing.assert_allclose(rotated, np.rot90(probs, axes=(1, 2)), atol=1e-5)
    flipped = predict(net, image[::-1], tta=True, progress=False)
    np.testing.assert_allclose(flipped, probs[:, ::-1], atol=1e-5)
    # and it is not the plain prediction
    assert not np.allclose(probs, predict(net, image, progress=False), atol=1e-4)


# ----------------------------------------------------------------- batching
def test_batch_size_does_not_change_the_result(rng):
    net = tiny(3, 4, dtype=torch.float32)
    image = rng.normal(size=(40, 33)).astype(np.float32)
    tile = usable_tiles(net, 3)[2]  # 4 x 3 tiles
    one = predict(net, image, tile=tile, batch_size=1, progress=False)
    many = predict(net, image, tile=tile, batch_size=5, progress=False)
    auto = predict(net, image, tile=tile, progress=False)
    np.testing.assert_allclose(one, many, atol=1e-5)
    np.testing.assert_allclose(one, auto, atol=1e-5)


# -------------------------------------------------------------- choose_tile
@pytest.mark.parametrize("hw", [(1, 1), (3, 700), (100, 100), (2000, 1500)])
@pytest.mark.parametrize("budget", [10**7, 10**8, 10**9])
def test_choose_tile_is_usable_and_within_budget(hw, budget):
    net = UNet(depth=4, width=8)
    tile = choose_tile(net, hw, budget)
    tile_geometry(net, tile)  # usable: raises otherwise
    assert tile_memory_bytes(net, tile) <= budget
    # never larger than one tile covering the image
    if tile > usable_tiles(net, 1)[0]:
        _, smaller = tile_geometry(net, tile - net.size_step)
        assert smaller < max(hw)


def test_choose_tile_small_image_gets_the_smallest_covering_tile():
    net = UNet()
    tile = choose_tile(net, (100, 60), 2**30)
    _, stride = tile_geometry(net, tile)
    assert stride >= 100
    assert tile_geometry(net, tile - net.size_step)[1] < 100


def test_choose_tile_large_image_uses_the_budget():
    net = UNet()
    small = choose_tile(net, (5000, 5000), 2**28)
    large = choose_tile(net, (5000, 5000), 2**31)
    assert small < large
    assert tile_memory_bytes(net, large) <= 2**31
    # the paper's tile fits the default CPU budget of 1 GiB
    assert tile_memory_bytes(net, 572) <= 2**30


def test_choose_tile_tiny_budget_falls_back_to_the_smallest_tile():
    net = UNet(depth=3, width=4)
    assert choose_tile(net, (500, 500), 1) == usable_tiles(net, 1)[0]


def test_choose_tile_rejects_empty_images():
    with pytest.raises(ValueError, match="at least 1x1"):
        choose_tile(UNet(depth=3, width=4), (0, 3))


def test_memory_estimate_grows_with_the_tile():
    net = UNet()
    sizes = [tile_memory_bytes(net, t) for t in (204, 572, 1212)]
    assert sizes == sorted(sizes)
    assert tile_memory_bytes(net, 572, bytes_per_element=2) < sizes[1]


# ---------------------------------------------------------------- bad tiles
def test_invalid_tile_names_the_nearest_usable_sizes():
    net = UNet()
    with pytest.raises(ValueError, match="got 570; the nearest are 556 and 572"):
        predict(net, np.zeros((10, 10), np.float32), tile=570, progress=False)
    with pytest.raises(ValueError, match="got 188; the smallest is 204"):
        tile_geometry(net, 188)  # valid for the network, but its output is < 16 px
    with pytest.raises(ValueError, match="tile must be an integer"):
        tile_geometry(net, 572.0)


# ------------------------------------------------------------ state and device
@pytest.mark.parametrize("training", [True, False])
def test_training_mode_and_memory_format_are_restored(training, rng):
    net = UNet(depth=3, width=4, dropout=0.5).train(training)
    image = rng.normal(size=(12, 12)).astype(np.float32)
    a = predict(net, image, progress=False)
    b = predict(net, image, progress=False)
    np.testing.assert_array_equal(a, b)  # eval mode: dropout is off
    assert net.training is training
    assert all(p.is_contiguous() for p in net.parameters())
    assert not any(p.is_inference() for p in net.parameters())


def test_device_string_and_progress_bar(rng, capsys):
    net = tiny(3, 4, dtype=torch.float32)
    image = rng.normal(size=(8, 8)).astype(np.float32)
    probs = predict(net, image, device="cpu", progress=True)
    np.testing.assert_array_equal(probs, predict(net, image, progress=False))
    assert "predict" in capsys.readouterr().err  # the bar was drawn, on stderr
    counted = []

    class Bar:  # a tqdm-like class, as napari's progress
        def __init__(self, total, **kw):
            self.total = total

        def update(self, n):
            counted.append(n)

        def close(self):
            counted.append("closed")

    predict(net, image, progress=Bar)
    assert counted[-1] == "closed" and sum(counted[:-1]) >= 1


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros(5), r"\(H, W\) or \(C, H, W\)"),
        (np.zeros((1, 1, 4, 4)), r"\(H, W\) or \(C, H, W\)"),
        (np.zeros((3, 8, 8)), "must have 1 channel"),
        (np.zeros((0, 4)), "at least 1x1"),
        (np.array([[0.0, np.nan]]), "finite"),
        (np.array([[0.0, np.inf]]), "finite"),
        (np.zeros((2, 2), complex), "real numeric"),
        (np.array([["a"]]), "real numeric"),
    ],
)
def test_bad_images_are_rejected(image, match):
    with pytest.raises(ValueError, match=match):
        predict(tiny(), image, progress=False)


def test_channel_mismatch_names_expected_and_got():
    net = UNet(depth=2, width=2, in_channels=3)
    with pytest.raises(ValueError, match=r"3 channel\(s\).*got shape \(8, 8\)"):
        predict(net, np.zeros((8, 8)), progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(precision="fp16"), "precision must be one of"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(batch_size=2.5), "batch_size must be a positive integer"),
    ],
)
def test_bad_options_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        predict(tiny(), np.zeros((4, 4)), progress=False, **kwargs)


# ------------------------------------------------------ streaming into out
@pytest.mark.parametrize("tta", [False, True])
def test_channels_and_out_give_the_same_probabilities(tta, rng, tmp_path):
    net = tiny(3, 4, dtype=torch.float32)
    image = rng.normal(size=(45, 70)).astype(np.float32)
    full = predict(net, image, tile=60, tta=tta, progress=False)
    fg = predict(net, image, tile=60, tta=tta, channels=[1], progress=False)
    np.testing.assert_array_equal(fg[0], full[1])
    swapped = predict(net, image, tile=60, tta=tta, channels=[1, 0], progress=False)
    np.testing.assert_array_equal(swapped, full[::-1])
    mm = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.float32,
                                   shape=(1, 45, 70))
    got = predict(net, image, tile=60, tta=tta, channels=[1], out=mm, progress=False)
    assert got is mm
    mm.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy")[0], full[1])


def test_tta_equals_the_mean_over_transformed_images(rng):
    net = tiny(3, 4)
    image = rng.normal(size=(29, 41))
    tiles = usable_tiles(net, 2)
    want = np.zeros((2, 29, 41))
    for k in range(4):
        for flip in (False, True):
            x = np.rot90(image[:, ::-1] if flip else image, k)
            p = np.rot90(predict(net, np.ascontiguousarray(x), tile=tiles[0], progress=False),
                         -k, axes=(1, 2))
            want += p[..., ::-1] if flip else p
    got = predict(net, image, tile=tiles[1], tta=True, progress=False)
    np.testing.assert_allclose(got, want / 8, rtol=0, atol=1e-6)  # float32 output


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=[2]), "channels must be"),
    (dict(channels=[]), "channels must be"),
    (dict(channels=[0.5]), "channels must be"),
    (dict(out=np.zeros((2, 9, 9), np.float32)), r"out must have shape \(2, 8, 8\)"),
    (dict(channels=[1], out=np.zeros((2, 8, 8), np.float32)), r"out must have shape"),
])
def test_bad_channels_and_out_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        predict(tiny(), np.zeros((8, 8)), progress=False, **kwargs)
