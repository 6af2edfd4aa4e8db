"""Tests for training requests (tileunet.training.request) and their command-line form
(tileunet.training.flags): one resolution for the command line, the viewer and Python."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import tileunet
import tileunet.training.plan as plan_mod
from tileunet.augment.params import AugmentConfig
from tileunet.cli import main
from tileunet.training.config import TRAIN_ZOOM, ConfigError, Runtime
from tileunet.training.flags import parse_train_argv
from tileunet.training.request import SPARSE_WEIGHTED_TILES, TrainRequest, resolve


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tileunet.synthetic import write_synthetic_dataset

    images, masks = write_synthetic_dataset(tmp_path_factory.mktemp("d"), n_images=2,
                                            shape=(64, 64), rng=np.random.default_rng(0))
    return str(images), str(masks)


@pytest.fixture
def slow_machine(monkeypatch):
    """The probe on a fake, deterministic machine: a step costs its tile area (the same
    plan every time, as a real probe on a noisy machine would not guarantee)."""
    def step_seconds(net, *args, **kwargs):
        return 3.0 * (net.width / 64) ** 2 * net.tile ** 2 / 572 ** 2 * net.batch_size
    monkeypatch.setattr(plan_mod, "probe_step", step_seconds)


def stored(run) -> dict:
    config = json.loads((run / "config.json").read_text())
    return {"plan": config["train"]["plan"],
            "train": {k: v for k, v in config["train"].items() if k != "out"}}


def test_the_command_line_and_python_make_the_same_plan(data, slow_machine, tmp_path):
    images, masks = data
    budget = ["--minutes", "30", "--iterations", "2", "--val-every", "2"]
    assert main(["-q", "train", "--images", images, "--masks", masks,
                 "--out", str(tmp_path / "cli"), *budget]) == 0
    res = tileunet.train(TrainRequest(images=images, masks=masks, out=str(tmp_path / "py"),
                                      minutes=30, iterations=2, settings={"val_every": 2},
                                      progress=False))
    assert res.iterations == 2
    cli, py = stored(tmp_path / "cli"), stored(tmp_path / "py")
    assert cli["plan"] is not None and cli["plan"]["settings"]["width"] < 64
    assert cli == py
    a = load_file(tmp_path / "cli" / "last.safetensors")
    b = load_file(tmp_path / "py" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_flags_parse_to_the_request_python_would_make(data):
    images, masks = data
    request = parse_train_argv(["--images", images, "--masks", masks, "--out", "o",
                                "--minutes", "5", "--width", "24", "--lr", "0.01",
                                "--exclude", "t067", "--recipe", "paper"])
    assert request == TrainRequest(images=images, masks=masks, out="o", minutes=5,
                                   recipe="paper",
                                   settings={"width": 24, "lr": 0.01, "exclude": ("t067",)})
    config = resolve(request).config
    assert (config.network.width, config.lr, config.exclude, config.network.depth) == (
        24, 0.01, ("t067",), 5)


def test_zoom_becomes_the_augmentation_and_is_refused_without_one(data, capsys):
    images, masks = data
    base = ["--images", images, "--masks", masks, "--out", "o", "--iterations", "2"]
    assert resolve(parse_train_argv(base)).config.augment.zoom == TRAIN_ZOOM == (0.8, 1.25)
    request = parse_train_argv([*base, "--zoom", "0.9", "1.1"])
    assert request.settings == {"augment": AugmentConfig(zoom=(0.9, 1.1))}
    assert resolve(request).config.augment.zoom == (0.9, 1.1)
    off = resolve(parse_train_argv([*base, "--zoom", "1", "1"])).config.augment
    assert off == AugmentConfig() and off.zoom == (1.0, 1.0)
    for extra, message in ((["--zoom", "0.8", "1.25", "--no-augment"],
                            "--zoom needs augmentation: leave out --no-augment"),
                           (["--zoom", "1.25", "0.8"], "--zoom must be 0 < LOW <= HIGH, "
                                                       "got 1.25 0.8")):
        assert main(["train", *base, *extra]) == 2
        assert capsys.readouterr().err.strip() == f"tileunet: error: {message}"


def test_every_image_trains_unless_images_are_held_out(data):
    images, masks = data
    base = ["--images", images, "--masks", masks, "--out", "o", "--iterations", "2"]
    assert resolve(parse_train_argv(base)).config.val_fraction == 0.0
    held = resolve(parse_train_argv([*base, "--val-fraction", "0.2"])).config
    assert held.val_fraction == 0.2 and held.keep == "best"


def test_ema_is_a_setting_with_its_range(data, capsys):
    images, masks = data
    base = ["--images", images, "--masks", masks, "--out", "o", "--iterations", "2"]
    assert parse_train_argv([*base, "--ema", "0.999"]).settings == {"ema": 0.999}
    assert main(["train", *base, "--ema", "1"]) == 2
    assert capsys.readouterr().err.strip() == "tileunet: error: --ema must be in [0, 1), got 1.0"


def test_library_errors_name_the_setting_and_the_command_line_its_flag(data, capsys):
    images, masks = data
    with pytest.raises(ConfigError, match=r"^lr must be > 0, got -1$"):
        resolve(TrainRequest(images=images, masks=masks, out="o", iterations=2,
                             settings={"lr": -1}))
    assert main(["train", "--images", images, "--masks", masks, "--out", "o",
                 "--iterations", "2", "--lr", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "tileunet: error: --lr must be > 0, got -1.0"


def test_a_planned_tile_that_fits_no_depth_names_its_flag(data, slow_machine, capsys):
    images, masks = data
    assert main(["train", "--images", images, "--masks", masks, "--out", "o",
                 "--minutes", "5", "--tile", "250"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tileunet: error: --tile must be a usable input size, got 250: "
                          "250 is not a valid input")


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give minutes or iterations"),
    ({"minutes": 5, "recipe": "fast"}, "recipe must be auto or paper, got fast"),
    ({"minutes": 5, "settings": {"widht": 8}}, "unknown training setting 'widht'"),
    ({"minutes": 5, "settings": {"out": "x"}}, "unknown training setting 'out'"),
])
def test_a_request_is_checked_when_it_is_made(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainRequest(images="i", masks="m", out="o", **kwargs)


def test_tileunet_train_still_trains_a_config_as_it_is(data, tmp_path):
    images, masks = data
    config = tileunet.TrainConfig(images=images, masks=masks, out=str(tmp_path / "run"),
                                  iterations=2, network=tileunet.UNetConfig(width=4, depth=3),
                                  tile=92, val_every=2)
    res = tileunet.train(config, runtime=Runtime(progress=False))
    assert res.iterations == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["plan"] is None


def test_a_sparse_request_centres_its_tiles_on_the_strokes(data, slow_machine):
    images, masks = data
    request = TrainRequest(images=images, masks=masks, out="o", iterations=2,
                           settings={"annotation": "sparse"})
    assert resolve(request).config.weighted_tiles == SPARSE_WEIGHTED_TILES == 1.0
    given = TrainRequest(images=images, masks=masks, out="o", iterations=2,
                         settings={"annotation": "sparse", "weighted_tiles": 0.3})
    assert resolve(given).config.weighted_tiles == 0.3
    dense = TrainRequest(images=images, masks=masks, out="o", iterations=2)
    assert resolve(dense).config.weighted_tiles == 0.0


def test_the_plan_of_strokes_sizes_objects_by_the_painted_cells_only(tmp_path, slow_machine,
                                                                     monkeypatch):
    from tileunet.io.images import save_image

    seen = []
    real = plan_mod.object_sizes
    monkeypatch.setattr(plan_mod, "object_sizes", lambda m: seen.append(list(m)) or real(m))
    labels = np.zeros((96, 96), np.uint16)
    labels[:3] = 1  # a background stroke
    labels[40:42, 10:80] = 2  # a long cell stroke: no object's size
    image = np.random.default_rng(0).integers(0, 255, (96, 96)).astype(np.uint8)
    save_image(tmp_path / "i" / "a.tif", image)
    save_image(tmp_path / "m" / "a.tif", labels)
    request = TrainRequest(images=str(tmp_path / "i"), masks=str(tmp_path / "m"), out="o",
                           minutes=30, settings={"annotation": "sparse"})
    assert resolve(request).config.scale == 1.0 and not seen  # no painted cell: no sizes
    labels[60:90, 20:50] = 3  # a whole cell
    save_image(tmp_path / "m" / "a.tif", labels)
    resolve(request)
    assert seen and set(np.unique(seen[0][0])) == {0, 3}
