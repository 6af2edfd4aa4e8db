"""Block-wise prediction with dask into zarr: equal to the in-memory path, bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")
import tifffile  # noqa: E402

from tileunet import UNet, predict  # noqa: E402
from tileunet.checkpoint import save_model  # noqa: E402
from tileunet.cli import main  # noqa: E402
from tileunet.inference.blockwise import block_size, predict_blocks, segment_to_zarr  # noqa: E402
from tileunet.inference.postprocess import instances_from_probability  # noqa: E402
from tileunet.io.normalization import Normalization  # noqa: E402
from tileunet.synthetic import synthetic_cells  # noqa: E402


@pytest.fixture
def net() -> UNet:
    torch.manual_seed(0)
    return UNet(depth=3, width=4, dropout=0.0).eval()


def _zarr(path, a, chunks):
    z = zarr.open_array(str(path), mode="w", shape=a.shape, chunks=chunks, dtype=a.dtype)
    z[...] = a
    return path


# the same tiles in the same precision: the same arithmetic, bit for bit, in either
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("block", [8, 24, 40, 1000])  # 8 and 24 are below the 44 px tile
def test_blocks_equal_the_in_memory_prediction(net, rng, block, precision):
    img = rng.random((1, 150, 133)).astype(np.float32)
    full = predict(net, img, tile=64, batch_size=2, precision=precision, progress=False)
    lazy = predict_blocks(net, img, block=block, tile=64, batch_size=2, precision=precision)
    assert lazy.shape == full.shape and lazy.numblocks[1] >= 1
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), full)
    # dask's default scheduler runs blocks in threads that share the network
    np.testing.assert_array_equal(lazy.compute(scheduler="threads", num_workers=4), full)


def test_block_size_is_aligned_to_the_pooling_step(net):
    assert block_size(net, 8) % net.size_step == 0
    assert block_size(net, 8) >= net.margin + net.size_step
    assert block_size(net, 100) == 100
    assert block_size(net, 101) == 104
    with pytest.raises(ValueError, match="block"):
        block_size(net, 0)


@pytest.fixture
def cells_model(tmp_path, net):
    path = tmp_path / "model.safetensors"
    save_model(path, net, {"normalization": Normalization().to_dict()})
    return path


def _in_memory(net, img, precision="auto", **kw):
    x = Normalization()(img)
    prob = predict(net, x, tile=64, batch_size=2, precision=precision, progress=False)[1]
    return prob, instances_from_probability(prob, **kw)


@pytest.mark.parametrize("block, max_object", [(24, 200), (48, 24)])
def test_segment_to_zarr_equals_the_in_memory_outputs(tmp_path, rng, net, cells_model,
                                                      block, max_object):
    # a random network on cells gives a map with many small objects: a hard case
    img, _ = synthetic_cells((130, 110), rng=rng, cell_radius=8)
    src = _zarr(tmp_path / "img.zarr", (img * 1000).astype(np.uint16), (40, 40))
    out = segment_to_zarr(cells_model, src, tmp_path / "out.zarr", block=block, tile=64,
                          batch_size=2, max_object=max_object, progress=False)
    g = zarr.open_group(str(out), mode="r")
    prob, labels = _in_memory(net, (img * 1000).astype(np.uint16))
    np.testing.assert_array_equal(g["probability"][...], prob)
    np.testing.assert_array_equal(g["mask"][...], (prob > 0.5) * 255)
    meta = g.attrs["tileunet"]
    if meta["cut_objects"] == 0:
        np.testing.assert_array_equal(g["labels"][...], labels)
    else:  # objects reaching further than max_object may be cut at block borders
        assert np.mean((g["labels"][...] > 0) == (labels > 0)) > 0.99
    assert meta["objects"] >= labels.max() > 0
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_segment_on_a_local_cluster_of_two_workers(tmp_path, rng, net, cells_model):
    distributed = pytest.importorskip("distributed")
    img, _ = synthetic_cells((120, 100), rng=rng, cell_radius=8)
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, (img * 255).astype(np.uint8), tile=(32, 32))
    # the workers are other processes, which see the real hardware: pin the precision
    prob, labels = _in_memory(net, (img * 255).astype(np.uint8), precision="fp32")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            rc = main(["-q", "predict", str(cells_model), str(src), "-o",
                       str(tmp_path / "out.zarr"), "--block", "32", "--tile", "64",
                       "--batch-size", "2", "--precision", "fp32",
                       "--scheduler", cluster.scheduler_address])
            assert rc == 0
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 2
    g = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    # the workers run PyTorch on one thread each, so sums can round differently (1 ulp)
    np.testing.assert_allclose(g["probability"][...], prob, rtol=0, atol=1e-6)
    assert np.mean(g["labels"][...] == labels) > 0.999


def test_cli_zarr_output_errors(tmp_path, cells_model, capsys):
    img = np.zeros((40, 40), np.uint8)
    src = _zarr(tmp_path / "img.zarr", img, (20, 20))
    bad = tmp_path / "bad.zarr"
    bad.mkdir()  # a folder named like a store, with nothing in it
    assert main(["-q", "predict", str(cells_model), str(bad), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tileunet: error: {bad}") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
    assert main(["-q", "predict", str(cells_model), str(src), str(src), "-o",
                 str(tmp_path / "o.zarr")]) == 2
    assert "one input image" in capsys.readouterr().err
    (tmp_path / "o.zarr").mkdir()
    assert main(["-q", "predict", str(cells_model), str(src), "-o",
                 str(tmp_path / "o.zarr")]) == 2
    assert "already exists" in capsys.readouterr().err
    rgb = _zarr(tmp_path / "rgb.zarr", np.zeros((3, 40, 40), np.uint8), (3, 20, 20))
    assert main(["-q", "predict", str(cells_model), str(rgb), "-o",
                 str(tmp_path / "p.zarr")]) == 2
    err = capsys.readouterr().err
    assert "rgb.zarr: has 3 channel(s), the model expects 1" in err
    assert not (tmp_path / "p.zarr").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".p.zarr")]
    bad = np.ones((40, 40), np.float32)
    bad[3, 4] = np.nan
    src = _zarr(tmp_path / "nan.zarr", bad, (20, 20))
    assert main(["-q", "predict", str(cells_model), str(src), "-o",
                 str(tmp_path / "q.zarr")]) == 2
    assert "nan.zarr: 1 pixels of channel 0 are NaN or infinite" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".q.zarr")]


def test_overwrite_replaces_a_store_whole(tmp_path, rng, cells_model):
    src = _zarr(tmp_path / "img.zarr", rng.integers(0, 255, (50, 40), dtype=np.uint8),
                (25, 25))
    out = tmp_path / "o.zarr"
    for _ in range(2):
        assert main(["-q", "predict", str(cells_model), str(src), "-o", str(out),
                     "--overwrite", "--block", "24"]) == 0
    g = zarr.open_group(str(out), mode="r")
    assert sorted(g.keys()) == ["labels", "mask", "probability"]
    assert json.loads(json.dumps(g.attrs["tileunet"]))["block"] >= 24


def test_overwrite_never_replaces_the_input_or_a_store_of_someone_else(tmp_path, rng,
                                                                       cells_model, capsys):
    data = rng.integers(0, 255, (50, 40), dtype=np.uint8)
    src = _zarr(tmp_path / "img.zarr", data, (25, 25))
    assert main(["-q", "predict", str(cells_model), str(src), "-o", str(src),
                 "--overwrite"]) == 2
    assert "is the input image" in capsys.readouterr().err
    other = _zarr(tmp_path / "other.zarr", data, (25, 25))
    assert main(["-q", "predict", str(cells_model), str(src), "-o", str(other),
                 "--overwrite"]) == 2
    assert "is not a zarr store that tileunet predict wrote" in capsys.readouterr().err
    for store in (src, other):
        assert np.array_equal(zarr.open_array(str(store), mode="r")[:], data)


def _ome_image(path, img, scale=(0.4, 0.3), unit="micrometer"):
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.attrs["multiscales"] = [{
        "version": "0.4", "name": "img",
        "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": unit},
                 {"name": "x", "type": "space", "unit": unit}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, *scale]}]}]}]
    z = g.create_array("0", shape=(1, *img.shape), chunks=(1, 32, 32), dtype=img.dtype)
    z[...] = img[None]
    return path


def test_ome_zarr_in_and_out(tmp_path, rng, net, cells_model):
    models = pytest.importorskip("ome_zarr_models.v04")
    img, _ = synthetic_cells((90, 80), rng=rng, cell_radius=8)
    img = (img * 255).astype(np.uint8)
    src = _ome_image(tmp_path / "img.ome.zarr", img)
    assert main(["-q", "predict", str(cells_model), str(src), "-o",
                 str(tmp_path / "pred.ome.zarr"), "--block", "32", "--tile", "64",
                 "--batch-size", "2"]) == 0
    g = zarr.open_group(str(tmp_path / "pred.ome.zarr"), mode="r")
    image = models.Image.from_zarr(g)  # validates the NGFF 0.4 metadata
    # a pyramid: 90x80 halved while larger than a block (32) -> 45x40, 22x20
    datasets = image.attributes.multiscales[0].datasets
    assert [d.path for d in datasets] == ["0", "1", "2"]
    assert [list(d.coordinateTransformations[0].scale) for d in datasets] == [
        [1.0, 0.4, 0.3], [1.0, 0.8, 0.6], [1.0, 1.6, 1.2]]
    assert [g[d.path].shape for d in datasets] == [(1, 90, 80), (1, 45, 40), (1, 22, 20)]
    assert image.labels.attributes.labels == ["instances", "mask"]
    for name in ("instances", "mask"):
        label = models.ImageLabel.from_zarr(g[f"labels/{name}"])
        ms = label.attributes.multiscales[0]
        assert [list(d.coordinateTransformations[0].scale) for d in ms.datasets] == [
            [0.4, 0.3], [0.8, 0.6], [1.6, 1.2]]
        assert ms.axes[0].unit == "micrometer"
        full = g[f"labels/{name}/0"][...]  # labels keep their values: every other pixel
        np.testing.assert_array_equal(g[f"labels/{name}/1"][...], full[::2, ::2])
        np.testing.assert_array_equal(g[f"labels/{name}/2"][...], full[:88:4, :80:4])
    p0, p1, p2 = (g[str(n)][0].astype(np.float64) for n in range(3))  # probabilities: means
    np.testing.assert_allclose(p1, p0.reshape(45, 2, 40, 2).mean(axis=(1, 3)), atol=1e-6)
    np.testing.assert_allclose(p2, p1[:44].reshape(22, 2, 20, 2).mean(axis=(1, 3)),
                               atol=1e-6)
    prob, labels = _in_memory(net, img)
    np.testing.assert_array_equal(g["0"][0], prob)
    np.testing.assert_array_equal(g["labels/mask/0"][...], (prob > 0.5) * 255)
    if g.attrs["tileunet"]["cut_objects"] == 0:
        np.testing.assert_array_equal(g["labels/instances/0"][...], labels)


def test_ome_zarr_input_to_tiff_and_png_outputs(tmp_path, rng, net, cells_model):
    """An OME-Zarr (or zarr) image that fits in memory also gives the usual file outputs."""
    img, _ = synthetic_cells((70, 60), rng=rng, cell_radius=8)
    img = (img * 255).astype(np.uint8)
    src = _ome_image(tmp_path / "img.ome.zarr", img)
    assert main(["-q", "predict", str(cells_model), str(src), "-o", str(tmp_path / "out"),
                 "--tile", "64", "--batch-size", "2", "--no-tta"]) == 0
    prob, labels = _in_memory(net, img)  # one pass, as block by block
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "img_prob.tif"), prob)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "img_instances.tif"), labels)
    assert (tmp_path / "out" / "img_overlay.png").is_file()
