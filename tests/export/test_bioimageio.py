"""bioimage.io export: a package that the format's own validation and test-run pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tileunet import UNet, predict
from tileunet.cli import main
from tileunet.export.bioimageio import MirroredUNet, input_sizes


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_input_sizes_are_accepted_and_keep_their_size(depth):
    net = UNet(depth=depth, width=2, dropout=0.0)
    lo, step = input_sizes(net)
    assert step == net.size_step and lo > 2 * net.margin
    for n in (lo, lo + step, lo + 3 * step):
        assert net.valid_input_size(n + 2 * net.margin) == n + 2 * net.margin
    m = net.margin
    assert all(net.valid_input_size(n + 2 * m) != n + 2 * m for n in range(2 * m + 1, lo))


def test_mirrored_unet_equals_predict_on_an_accepted_size(rng):
    torch.manual_seed(0)
    net = UNet(depth=3, width=4, dropout=0.0).eval()
    wrapped = MirroredUNet(**net.config.to_dict()).eval()
    wrapped.load_state_dict(net.state_dict())
    lo, step = input_sizes(net)
    x = rng.random((1, lo + step, lo + 2 * step)).astype(np.float32)
    with torch.inference_mode():
        got = wrapped(torch.from_numpy(x[None]))[0].numpy()
    # tileunet's own overlap-tile prediction, in the wrapper's float32
    want = predict(net, x, precision="fp32", progress=False)
    # float32 sums in another order (one padded pass against tiles): a few ulp of a logit
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.shape == (2, *x.shape[1:])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tileunet.synthetic import write_synthetic_dataset
    from tileunet.training.config import Runtime, TrainConfig
    from tileunet.training.loop import train

    root = tmp_path_factory.mktemp("zoo")
    images, masks = write_synthetic_dataset(root / "d", n_images=2, shape=(80, 80),
                                            rng=np.random.default_rng(1))
    train(TrainConfig.from_settings(images=str(images), masks=str(masks),
                                    out=str(root / "run"), iterations=4, width=4, depth=3,
                                    tile=92, dropout=0.0, val_fraction=0.0),
          runtime=Runtime(progress=False))
    return root / "run"


def test_package_passes_bioimageio_core_test_model(trained, tmp_path, capsys):
    pytest.importorskip("bioimageio.spec")
    core = pytest.importorskip("bioimageio.core")
    out = tmp_path / "pkg"
    assert main(["-q", "export", str(trained), "--format", "bioimageio", "-o", str(out),
                 "--author", "A. Tester", "--tile", "64"]) == 0
    assert "bioimage.io model format 0.5" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "rdf.yaml", "test_input.npy", "test_output.npy",
                     "weights.onnx", "weights.pt", "weights_torchscript.pt"]
    summary = core.test_model(out / "rdf.yaml")
    failed = [d.name for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    ran = " ".join(d.name for d in summary.details)
    for fmt in ("pytorch_state_dict", "torchscript", "onnx"):
        assert f"Reproduce test outputs from test inputs ({fmt})" in ran
    rdf = (out / "rdf.yaml").read_text()
    assert "10.1007/978-3-319-24574-4_28" in rdf and "scale_range" in rdf
    margin = UNet(depth=3, width=4).margin
    assert rdf.count(f"halo: {margin}") == 2  # y and x of the output
    x = np.load(out / "test_input.npy")
    y = np.load(out / "test_output.npy")
    assert x.shape[2:] == y.shape[2:] and x.std() > 0 and 0 < y[0, 1].mean() < 1
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)


def test_export_refuses_an_existing_folder(trained, tmp_path, capsys):
    pytest.importorskip("bioimageio.spec")
    (tmp_path / "pkg").mkdir()
    assert main(["-q", "export", str(trained), "--format", "bioimageio", "-o",
                 str(tmp_path / "pkg")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_overwrite_replaces_only_a_package_of_ours(trained, tmp_path, capsys):
    pytest.importorskip("bioimageio.spec")
    user = tmp_path / "thesis"
    (user / "chapters").mkdir(parents=True)
    (user / "thesis.txt").write_text("years of work")
    argv = ["-q", "export", str(trained), "--format", "bioimageio", "--tile", "64", "-o"]
    assert main([*argv, str(user), "--overwrite"]) == 2
    assert "is not a bioimage.io package that tileunet exported" in capsys.readouterr().err
    assert (user / "thesis.txt").read_text() == "years of work" and (user / "chapters").is_dir()
    pkg = tmp_path / "pkg"
    assert main([*argv, str(pkg)]) == 0
    assert main([*argv, str(pkg), "--overwrite"]) == 0  # its own export: replaced
    (pkg / "notes.txt").write_text("added by the user")
    assert main([*argv, str(pkg), "--overwrite"]) == 2  # no longer only the package
    assert (pkg / "notes.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
