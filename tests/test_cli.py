"""The command line end to end, and every bad input named in the core issue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tileunet.cli import main
from tileunet.io.images import save_image
from tileunet.synthetic import write_synthetic_dataset

TINY = ["--width", "4", "--depth", "3", "--tile", "92", "--val-every", "3"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    return write_synthetic_dataset(root, n_images=3, shape=(96, 80),
                                   rng=np.random.default_rng(1))


@pytest.fixture(scope="module")
def run_dir(dataset, tmp_path_factory) -> Path:
    images, masks = dataset
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["-q", "train", "--images", str(images), "--masks", str(masks), "--out",
                 str(out), "--iterations", "4", *TINY]) == 0
    return out


def error_of(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    full = capsys.readouterr().err
    assert "Traceback" not in full
    err = full.strip().replace("\r", "\n").splitlines()[-1]
    assert err.startswith("tileunet: error: ")
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------ happy paths
@pytest.mark.slow  # a real probe and 572-px training tiles: ~20 s
def test_a_time_budget_alone_is_planned_on_this_machine(dataset, tmp_path, capsys):
    """A real probe: the plan's table is printed and stored, and the run follows it."""
    images, masks = dataset
    out = tmp_path / "run"
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(out),
                 "--minutes", "0.05", "--iterations", "3"]) == 0
    printed = capsys.readouterr().out
    assert "plan  network" in printed and "plan  why" in printed
    cfg = json.loads((out / "config.json").read_text())
    plan = cfg["train"]["plan"]
    assert plan["probed"] and all(v > 0 for v in plan["probed"].values())
    # 3 s cannot hold the target steps of any network: the smallest, and it says so
    assert "even the smallest" in plan["reason"]
    for key in ("width", "depth", "norm"):
        assert cfg["model"][key] == plan["settings"][key]
    assert cfg["train"]["optimizer"] == plan["settings"]["optimizer"]


def test_train_writes_the_run_directory(run_dir):
    for name in ("config.json", "model.safetensors", "checkpoint.safetensors",
                 "metrics.csv", "loss.png"):
        assert (run_dir / name).is_file(), name
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["model"]["width"] == 4 and cfg["model"]["depth"] == 3
    assert cfg["normalization"]["method"] == "percentile"
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("iteration,seconds,train_loss")
    assert len(lines) >= 2
    assert not list(run_dir.glob(".*.tmp"))
    # the separation chosen on the training images, in the config and the model file
    from tileunet.checkpoint import load_model
    from tileunet.inference.separation import Separation

    chosen = Separation.from_dict(cfg["separation"])
    assert 0.0 <= chosen.seg <= 1.0
    assert load_model(run_dir)[1]["separation"] == cfg["separation"]


def test_resume_continues_from_checkpoint(dataset, run_dir, tmp_path):
    import shutil

    images, masks = dataset
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert main(["-q", "train", "--images", str(images), "--masks", str(masks), "--out",
                 str(run), "--iterations", "6", "--resume", *TINY]) == 0
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[-1].split(",")[0] == "6"


def test_predict_writes_four_outputs_per_image(dataset, run_dir, tmp_path, capsys):
    images, _ = dataset
    out = tmp_path / "pred"
    assert main(["-q", "predict", str(run_dir), str(images), "-o", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    stems = sorted(p.stem for p in images.iterdir())
    expected = sorted(f"{s}_{k}" for s in stems
                      for k in ("mask.png", "prob.tif", "instances.tif", "overlay.png"))
    assert names == expected
    prob = tifffile.imread(out / f"{stems[0]}_prob.tif")
    assert prob.shape == (96, 80) and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    assert tifffile.memmap(out / f"{stems[0]}_prob.tif", mode="r").shape == (96, 80)
    mask = np.asarray(Image.open(out / f"{stems[0]}_mask.png"))
    assert set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, prob > 0.5)  # the instances' foreground
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries
    overlay = np.asarray(Image.open(out / f"{stems[0]}_overlay.png"))
    assert overlay.shape == (96, 80, 3)
    # a second run refuses to overwrite, and names the file
    err = error_of(capsys, ["-q", "predict", str(run_dir), str(images), "-o", str(out)])
    assert "already exists" in err and "--overwrite" in err
    assert main(["-q", "predict", str(run_dir), str(images), "-o", str(out),
                 "--overwrite", "--tta"]) == 0


def test_predict_accepts_the_model_file_itself(dataset, run_dir, tmp_path):
    images, _ = dataset
    one = sorted(images.iterdir())[0]
    out = tmp_path / "p"
    assert main(["-q", "predict", str(run_dir / "model.safetensors"), str(one), "-o",
                 str(out), "--tile", "100"]) == 0
    assert (out / f"{one.stem}_instances.tif").exists()


@pytest.mark.parametrize("method", ["auto", "components", "watershed"])
def test_predict_instance_method(dataset, run_dir, tmp_path, method):
    from tileunet.checkpoint import load_model
    from tileunet.inference.postprocess import instance_options, instances_from_probability
    from tileunet.inference.separation import model_separation

    images, _ = dataset
    one = sorted(images.iterdir())[0]
    out = tmp_path / method
    spacing = ["--min-distance", "3"] if method == "watershed" else []
    assert main(["-q", "predict", str(run_dir), str(one), "-o", str(out), "--instances",
                 method, *spacing]) == 0
    prob = tifffile.imread(out / f"{one.stem}_prob.tif")
    options = (model_separation(load_model(run_dir)[1]).options if method == "auto"
               else instance_options(method, 3))
    want = instances_from_probability(prob, **options)
    got = tifffile.imread(out / f"{one.stem}_instances.tif")
    np.testing.assert_array_equal(got, want)


def test_predict_instance_choices_match_the_library(capsys, dataset, run_dir, tmp_path):
    from tileunet.cli import build_parser
    from tileunet.inference.separation import SEPARATIONS

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    action = next(a for a in sub.choices["predict"]._actions if a.dest == "instances")
    assert tuple(action.choices) == SEPARATIONS
    images, _ = dataset
    out = tmp_path / "bad"
    err = error_of(capsys, ["-q", "predict", str(run_dir), str(images), "-o", str(out),
                            "--instances", "watershed", "--min-distance", "-1"])
    assert "min_distance" in err and not out.exists()


def test_weights_command_writes_png(dataset, tmp_path, capsys):
    _, masks = dataset
    out = tmp_path / "w.png"
    assert main(["weights", str(sorted(masks.iterdir())[0]), "-o", str(out)]) == 0
    assert Image.open(out).format == "PNG"
    error_of(capsys, ["weights", str(sorted(masks.iterdir())[0]), "-o", str(out)])


def test_sizes_table(capsys):
    assert main(["sizes", "--depth", "5", "--max", "600"]) == 0
    out = capsys.readouterr().out
    assert "   572 ->    388   keeps 384" in out
    assert "   188 ->      4   too small to tile" in out


def test_console_script_runs_as_module():
    res = subprocess.run([sys.executable, "-m", "tileunet", "sizes", "--max", "200"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "188" in res.stdout


# ------------------------------------------------------------------- bad input
def test_missing_path(capsys, tmp_path):
    err = error_of(capsys, ["train", "--images", str(tmp_path / "nope"), "--masks",
                            str(tmp_path), "--out", str(tmp_path / "r"), "--iterations", "1"])
    assert "nope" in err


def test_not_an_image(capsys, dataset, tmp_path):
    images, masks = _copy_dataset(dataset, tmp_path)
    victim = sorted(images.iterdir())[0]
    victim.write_bytes(b"this is not a tiff")
    err = error_of(capsys, ["train", "--images", str(images), "--masks", str(masks), "--out",
                            str(tmp_path / "r"), "--iterations", "1"])
    assert victim.name in err and "not a readable image" in err


def _copy_dataset(dataset, tmp_path) -> tuple[Path, Path]:
    import shutil

    images, masks = dataset
    return (Path(shutil.copytree(images, tmp_path / "images")),
            Path(shutil.copytree(masks, tmp_path / "masks")))


def test_image_without_mask_and_mask_without_image(capsys, dataset, tmp_path):
    images, masks = _copy_dataset(dataset, tmp_path)
    victim = sorted(masks.iterdir())[0]
    victim.rename(tmp_path / victim.name)
    err = error_of(capsys, ["train", "--images", str(images), "--masks", str(masks),
                            "--out", str(tmp_path / "r"), "--iterations", "1"])
    assert victim.stem in err and "mask" in err
    (tmp_path / victim.name).rename(victim)
    img = sorted(images.iterdir())[0]
    img.unlink()
    err = error_of(capsys, ["train", "--images", str(images), "--masks", str(masks),
                            "--out", str(tmp_path / "r"), "--iterations", "1"])
    assert img.stem in err


def test_size_mismatch(capsys, dataset, tmp_path):
    images, masks = _copy_dataset(dataset, tmp_path)
    m = sorted(masks.iterdir())[0]
    save_image(m, np.zeros((50, 50), np.uint16))
    err = error_of(capsys, ["train", "--images", str(images), "--masks", str(masks),
                            "--out", str(tmp_path / "r"), "--iterations", "1"])
    assert m.name in err and "50x50" in err


def test_mask_with_more_classes_than_num_classes(capsys, dataset, tmp_path):
    images, masks = _copy_dataset(dataset, tmp_path)
    for m in masks.iterdir():  # semantic class maps 0..2
        save_image(m, np.random.default_rng(0).integers(0, 3, (96, 80)).astype(np.uint16))
    m = sorted(masks.iterdir())[1]
    save_image(m, np.full((96, 80), 7, np.uint16))
    err = error_of(capsys, ["train", "--images", str(images), "--masks", str(masks),
                            "--out", str(tmp_path / "r"), "--iterations", "1",
                            "--num-classes", "3"])
    assert m.name in err and "class value 7" in err


def test_empty_folder(capsys, tmp_path):
    (tmp_path / "i").mkdir()
    (tmp_path / "m").mkdir()
    err = error_of(capsys, ["train", "--images", str(tmp_path / "i"), "--masks",
                            str(tmp_path / "m"), "--out", str(tmp_path / "r"),
                            "--iterations", "1"])
    assert str(tmp_path / "i") in err or "no image" in err


def test_model_file_that_is_not_ours(capsys, dataset, tmp_path):
    images, _ = dataset
    junk = tmp_path / "model.safetensors"
    junk.write_bytes(b"\x00" * 64)
    err = error_of(capsys, ["predict", str(junk), str(images), "-o", str(tmp_path / "o")])
    assert "model.safetensors" in err
    import torch
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(other), metadata={"format": "pt"})
    err = error_of(capsys, ["predict", str(other), str(images), "-o", str(tmp_path / "o")])
    assert "not a tileunet model" in err
    assert not (tmp_path / "o").exists()


def test_model_built_with_another_configuration(capsys, run_dir, dataset, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(run_dir / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["model"])
    cfg["width"] = 8
    meta["model"] = json.dumps(cfg)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    images, _ = dataset
    err = error_of(capsys, ["predict", str(bad), str(images), "-o", str(tmp_path / "o")])
    assert "bad.safetensors" in err and "configuration" in err


def test_wrong_channel_count_is_refused_before_writing(capsys, run_dir, tmp_path):
    rgb = tmp_path / "rgb.png"
    save_image(rgb, np.zeros((3, 40, 40), np.uint8))
    err = error_of(capsys, ["predict", str(run_dir), str(rgb), "-o", str(tmp_path / "o")])
    assert "rgb.png" in err and "channel" in err
    assert not (tmp_path / "o").exists()


def test_train_refuses_an_existing_run_without_resume(capsys, dataset, run_dir):
    images, masks = dataset
    err = error_of(capsys, ["train", "--images", str(images), "--masks", str(masks),
                            "--out", str(run_dir), "--iterations", "1"])
    assert "--resume" in err


def test_invalid_tile_size_names_neighbours(capsys, run_dir, dataset, tmp_path):
    images, _ = dataset
    err = error_of(capsys, ["predict", str(run_dir), str(images), "-o", str(tmp_path / "o"),
                            "--tile", "93"])
    assert "got 93; the nearest are 92 and 96" in err


def test_streamed_probability_file_equals_in_memory_predict(dataset, run_dir, tmp_path):
    from tileunet.checkpoint import load_model
    from tileunet.inference.overlap import predict
    from tileunet.io.images import read_image
    from tileunet.io.normalization import Normalization

    images, _ = dataset
    one = sorted(images.iterdir())[0]
    out = tmp_path / "p"
    assert main(["-q", "predict", str(run_dir), str(one), "-o", str(out), "--tta"]) == 0
    net, extra = load_model(run_dir)
    x = Normalization.from_dict(extra["normalization"])(read_image(one))
    want = predict(net, x, tta=True, progress=False)[1]
    np.testing.assert_array_equal(tifffile.imread(out / f"{one.stem}_prob.tif"), want)


@pytest.mark.parametrize("flags, averaged", [([], True), (["--no-tta"], False)])
def test_predict_averages_flips_where_cheap_unless_told_not_to(flags, averaged, dataset,
                                                              run_dir, tmp_path, capsys):
    from tileunet.checkpoint import load_model
    from tileunet.inference.overlap import predict
    from tileunet.io.images import read_image
    from tileunet.io.normalization import Normalization

    images, _ = dataset
    one = sorted(images.iterdir())[0]
    out = tmp_path / "p"
    assert main(["predict", str(run_dir), str(one), "-o", str(out), *flags]) == 0
    net, extra = load_model(run_dir)
    x = Normalization.from_dict(extra["normalization"])(read_image(one))
    want = predict(net, x, tta=averaged, progress=False)[1]
    np.testing.assert_array_equal(tifffile.imread(out / f"{one.stem}_prob.tif"), want)
    # what "auto" chose is said; an explicit choice needs no word
    said = capsys.readouterr()
    assert ("test-time augmentation on" in said.out + said.err) is (not flags)


def test_predict_refuses_tta_block_by_block(capsys, dataset, run_dir, tmp_path):
    images, _ = dataset
    one = sorted(images.iterdir())[0]
    err = error_of(capsys, ["predict", str(run_dir), str(one), "-o",
                            str(tmp_path / "o.zarr"), "--tta"])
    assert "--tta is not available for block-wise" in err
