"""ONNX export (tileunet.export.onnx, ``tileunet export``): onnxruntime against PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tileunet import UNet
from tileunet.checkpoint import load_model, save_model
from tileunet.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "model.safetensors"
    save_model(path, UNet(depth=3, width=4, dropout=0.0),
               {"tile": 92, "normalization": {"method": "percentile", "low": 1.0,
                                              "high": 99.8}})
    return path


def test_onnxruntime_gives_the_probabilities_of_pytorch(model, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(model), "-o", str(out)]) == 0
    assert "margin" in capsys.readouterr().out
    net, _ = load_model(model)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for n in (1, 3):  # the batch size is free
        x = rng.random((n, 1, 92, 92), dtype=np.float32)
        got = session.run(None, {"image": x})[0]
        with torch.no_grad():
            want = torch.softmax(net.eval()(torch.from_numpy(x)), dim=1).numpy()
        assert got.shape == want.shape == (n, 2, net.output_size(92), net.output_size(92))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert meta["tileunet.tile"] == 92 and meta["tileunet.margin"] == net.margin
    assert meta["tileunet.normalization"]["method"] == "percentile"


def test_export_refuses_a_bad_tile_and_an_existing_file(model, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(model), "-o", str(out), "--tile", "93"]) == 2
    assert "tile must be a usable input size" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written
    out.write_bytes(b"x")
    assert main(["export", str(model), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_overwrite_replaces_only_an_onnx_file_of_ours(model, tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()  # before: 6 s of work, then an errno message with a temporary path
    (folder / "keep.txt").write_text("mine")
    assert main(["-q", "export", str(model), "-o", str(folder), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"tileunet: error: {folder}: exists and is not an ONNX model that "
                       "tileunet exported; --overwrite replaces only what tileunet wrote: "
                       "choose another output")
    assert (folder / "keep.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1
    other = tmp_path / "other.onnx"
    other.write_bytes(b"someone else's model")
    assert main(["-q", "export", str(model), "-o", str(other), "--overwrite"]) == 2
    assert other.read_bytes() == b"someone else's model"
    ours = tmp_path / "m.onnx"
    assert main(["-q", "export", str(model), "-o", str(ours)]) == 0
    assert main(["-q", "export", str(model), "-o", str(ours), "--overwrite"]) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
