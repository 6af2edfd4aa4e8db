"""Tests for the training plan (tileunet.training.plan) and how a training request
(tileunet.training.request) applies it."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import tileunet.training.plan as plan_mod
from tileunet.augment.params import AugmentConfig
from tileunet.model import UNet
from tileunet.training.config import TrainConfig
from tileunet.training.flags import parse_train_argv, settings_as_flags
from tileunet.training.plan import (
    CANDIDATES,
    PAPER,
    PLANNED,
    SMALL_NETWORK_OPTIMISER,
    TARGET_STEPS,
    Network,
    choose,
    choose_scale,
    fit_tile,
    fix_network,
    fix_tiles,
    object_sizes,
    probe_step,
)
from tileunet.training.request import TrainRequest, planned_settings, resolve

PAPER_NET = Network(64, 5, 572)


def cost(n: Network) -> float:
    """Relative cost of a step: the paper's network is 1.0."""
    return (n.width / 64) ** 2 * n.tile**2 / 572**2 * n.batch_size * (0.8 if n.depth < 5 else 1)


def fake_machine(paper_step_s: float):
    calls = []

    def step_seconds(n: Network) -> float:
        calls.append(n)
        return paper_step_s * cost(n)
    return step_seconds, calls


def test_a_fast_machine_gets_the_papers_recipe():
    step, _ = fake_machine(0.01)  # a GPU: 100 steps a second
    p = choose(30 * 60, step)
    assert {k: p.settings[k] for k in PLANNED} == PAPER
    assert p.expected_steps >= TARGET_STEPS and "largest network fits" in p.reason


def test_a_slow_machine_gets_a_smaller_network_with_adamw():
    step, calls = fake_machine(3.1)  # a 2-core CPU with bf16
    p = choose(30 * 60, step)
    s = p.settings
    assert (s["width"], s["depth"]) < (64, 5)
    assert {k: s[k] for k in SMALL_NETWORK_OPTIMISER} == SMALL_NETWORK_OPTIMISER
    assert s["optimizer"] == "adamw" and "adamw" in p.table()
    assert {k: s[k] for k in ("norm", "dropout")} == {
        k: PAPER[k] for k in ("norm", "dropout")}
    assert p.step_seconds * TARGET_STEPS <= 30 * 60
    # timing stopped at the first candidate that does not fit: never the paper's network
    assert PAPER_NET not in calls and len(calls) < len(CANDIDATES)
    assert s["val_every"] == max(20, p.expected_steps // plan_mod.VALIDATIONS)


def test_a_very_slow_machine_gets_the_smallest_network_and_says_why():
    step, calls = fake_machine(100.0)
    p = choose(30 * 60, step)
    assert (p.settings["width"], p.settings["depth"]) == (CANDIDATES[0].width,
                                                          CANDIDATES[0].depth)
    assert "even the smallest" in p.reason and len(calls) == 1
    assert "plan  network" in p.table() and "why" in p.table()


def test_shorter_budgets_get_smaller_tiles_before_fewer_steps():
    step, _ = fake_machine(3.1)
    long, short = choose(120 * 60, step), choose(30 * 60, step)
    assert long.settings["tile"] == 572 and long.expected_steps >= TARGET_STEPS
    assert short.settings["tile"] < 572 and short.expected_steps >= TARGET_STEPS
    assert (short.settings["width"], short.settings["depth"]) == (16, 4)
    assert short.settings["batch_size"] == 2


def test_larger_budgets_never_get_smaller_networks():
    step, _ = fake_machine(3.1)
    widths = [choose(m * 60, step).settings["width"] * 10 + choose(m * 60, step).settings[
        "depth"] for m in (5, 30, 120, 600)]
    assert widths == sorted(widths)


@pytest.mark.parametrize("budget", [0, -1, math.nan])
def test_bad_budgets(budget):
    with pytest.raises(ValueError, match="budget"):
        choose(budget, fake_machine(1.0)[0])


def test_probe_times_a_real_step():
    secs = probe_step(Network(4, 2, 44, 2), 1, 2, torch.device("cpu"), "fp32")
    assert 0 < secs < math.inf
    secs = probe_step(Network(4, 2, 44, 2), 1, 2, torch.device("cpu"), "fp32", norm="group")
    assert 0 < secs < math.inf


# ------------------------------------------------------------------ the CLI
DATA: list[str] = []


@pytest.fixture(autouse=True, scope="module")
def _dataset(tmp_path_factory):
    from tileunet.synthetic import write_synthetic_dataset

    images, masks = write_synthetic_dataset(tmp_path_factory.mktemp("d"), n_images=2,
                                            shape=(64, 64), rng=np.random.default_rng(0))
    DATA[:] = [str(images), str(masks)]


def args_of(*argv: str) -> TrainRequest:
    """The request of these ``tileunet train`` flags, on the test data."""
    return parse_train_argv(["--images", DATA[0], "--masks", DATA[1], "--out", "o", *argv])


def training_settings(request: TrainRequest) -> tuple[dict, dict | None]:
    """The planned settings of a request, and its plan as config.json stores it."""
    settings, plan = planned_settings(request)
    return settings, None if plan is None else plan.to_dict()


@pytest.fixture
def planned(monkeypatch):
    """make_plan on a fake slow machine (no probe); the masks are read as in real use."""
    step, _ = fake_machine(3.1)
    made = []

    def fake(minutes, masks=None, **kw):
        assert masks and all(m.ndim == 2 for m in masks)
        made.append(kw)
        fixed = kw.get("fixed") or {}
        return choose(minutes * 60, step, fix_tiles(fix_network(CANDIDATES, fixed), fixed))
    monkeypatch.setattr(plan_mod, "make_plan", fake)
    return made


def test_a_budget_without_network_flags_is_planned(planned):
    settings, plan = planned_settings(args_of("--minutes", "30"))
    assert planned and plan is not None and settings == plan.settings
    assert settings["width"] < 64
    assert "plan  network" in plan.table()


def test_explicit_flags_win_over_the_plan(planned):
    settings, plan = training_settings(args_of("--minutes", "30", "--width", "24",
                                               "--norm", "group", "--lr", "0.01",
                                               "--val-every", "7"))
    assert plan is not None
    assert settings["width"] == 24 and settings["norm"] == "group"
    assert settings["lr"] == 0.01 and settings["val_every"] == 7
    assert settings["depth"] == plan["settings"]["depth"]


def test_recipe_paper_equals_the_papers_config_field_by_field(planned):
    settings, plan = training_settings(args_of("--minutes", "30", "--recipe", "paper"))
    assert plan is None and not planned
    default = TrainConfig(images="i", masks="m", out="o", minutes=30).settings()
    assert {k: default[k] for k in settings} == settings
    assert set(PLANNED) <= set(settings)


def test_no_plan_without_a_time_budget_or_with_every_flag(planned):
    settings, plan = training_settings(args_of("--iterations", "10"))
    assert plan is None and settings["width"] == 64
    flags = settings_as_flags({k: v for k, v in settings.items() if k != "val_every"})
    settings2, plan2 = training_settings(args_of("--minutes", "30", *flags))
    assert plan2 is None and not planned and settings2 == settings


def test_flags_of_settings_parse_back(planned):
    settings, _ = training_settings(args_of("--minutes", "30"))
    again, plan = training_settings(args_of("--minutes", "30", *settings_as_flags(settings)))
    assert again == settings and plan is None


def test_the_plan_keeps_the_network_flags_given(planned):
    settings, plan = training_settings(args_of("--minutes", "30", "--width", "24"))
    assert plan["settings"]["width"] == 24  # planned with width 24, not overridden after
    assert all(key.startswith("24x") for key in plan["probed"])
    settings, plan = training_settings(args_of("--minutes", "30", "--width", "64",
                                               "--depth", "5"))
    assert list(plan["probed"]) == ["64x5@572/1"]  # one candidate: the paper's network


def test_fix_network_sets_the_fixed_fields_and_keeps_each_candidate_once():
    assert fix_network(CANDIDATES, {}) == CANDIDATES
    assert fix_network(CANDIDATES, {"width": 64, "depth": 5}) == (PAPER_NET,)
    assert fix_network(CANDIDATES, {"depth": 4, "norm": "batch"}) == (
        Network(16, 4, 252, 2), Network(16, 4, 572), Network(32, 4, 572),
        Network(64, 4, 572))
    assert fix_network(CANDIDATES, {"width": 24}) == (Network(24, 4, 572),
                                                      Network(24, 5, 572))


def test_fix_tiles_sets_the_fixed_tiles_and_drops_the_depths_they_do_not_fit():
    assert fix_tiles(CANDIDATES, {"width": 24}) == CANDIDATES
    assert fix_tiles(CANDIDATES, {"tile": 252, "batch_size": 2}) == (
        Network(16, 4, 252, 2), Network(32, 4, 252, 2), Network(32, 5, 252, 2),
        Network(64, 5, 252, 2))
    # 260 px is a valid input for depth 4 (steps of 8) but not for depth 5 (steps of 16)
    assert fix_tiles(CANDIDATES, {"tile": 260}) == (
        Network(16, 4, 260, 2), Network(16, 4, 260), Network(32, 4, 260))
    assert fix_tiles(CANDIDATES, {"batch_size": 3})[0] == Network(16, 4, 252, 3)
    with pytest.raises(ValueError, match=r"^tile must be a usable input size, got 250: 250 is "
                                         r"not a valid input"):
        fix_tiles(CANDIDATES, {"tile": 250})


def test_the_probe_times_the_tiles_and_scale_given(monkeypatch):
    step, calls = fake_machine(3.1)
    monkeypatch.setattr(plan_mod, "probe_step", lambda n, *a, **k: step(n))
    fixed = {"width": 32, "depth": 4, "tile": 252, "batch_size": 2}
    p = plan_mod.make_plan(30, in_channels=1, num_classes=2, device=torch.device("cpu"),
                           precision="fp32", masks=[disks(radius=40, gap=60)], fixed=fixed)
    assert calls == [Network(32, 4, 252, 2)] and list(p.probed) == ["32x4@252/2"]
    assert p.step_seconds == pytest.approx(step(Network(32, 4, 252, 2)), abs=1e-4)
    assert {k: p.settings[k] for k in fixed} == fixed
    # at the plan's half scale the 560 px image is 280 px and the 572 tiles shrink to
    # fit it; at a fixed full scale they stay
    p = plan_mod.make_plan(30, in_channels=1, num_classes=2, device=torch.device("cpu"),
                           precision="fp32", masks=[disks(radius=40, gap=60)],
                           fixed={"scale": 1.0})
    assert {int(k.split("@")[1].split("/")[0]) for k in p.probed} == {252, 572}
    assert p.settings["scale"] == 1.0 and "scale 1 as given" in p.reason
    assert "scale 0.5 as" not in p.reason and "images at scale" not in p.table()


def save_start_model(path, **network):
    from tileunet.checkpoint import save_model

    save_model(path, UNet(**{"width": 8, "depth": 3, **network}))
    return str(path)


def test_init_fixes_the_network_of_the_start_model(planned, tmp_path):
    start = save_start_model(tmp_path / "start.safetensors", width=8, depth=3)
    settings, plan = training_settings(args_of("--minutes", "30", "--init", start))
    assert (settings["width"], settings["depth"], settings["norm"]) == (8, 3, "none")
    assert plan["settings"]["width"] == 8
    assert plan["probed"] and all(key.startswith("8x3@") for key in plan["probed"])
    settings, plan = training_settings(args_of("--iterations", "5", "--init", start))
    assert plan is None and (settings["width"], settings["depth"]) == (8, 3)
    grouped = save_start_model(tmp_path / "grouped.safetensors", norm="group")
    settings, _ = training_settings(args_of("--iterations", "5", "--init", grouped))
    assert settings["norm"] == "group"


def test_init_refuses_flags_that_ask_for_another_network(planned, tmp_path):
    start = save_start_model(tmp_path / "start.safetensors", width=8, depth=3)
    with pytest.raises(ValueError, match=r"start model has width 8; the request asks for "
                                         r"width 16$"):
        training_settings(args_of("--minutes", "30", "--init", start, "--width", "16"))
    with pytest.raises(ValueError, match="no such model file"):
        training_settings(args_of("--minutes", "30", "--init", str(tmp_path / "nope")))


def resumed(run: Path, *flags: str) -> TrainConfig:
    """The configuration ``train --resume`` trains with in ``run`` (nothing is read but
    its config.json)."""
    return resolve(parse_train_argv(["--images", "i", "--masks", "m", "--out", str(run),
                                     "--minutes", "30", "--resume", *flags])).config


def test_a_resumed_run_keeps_its_settings(planned, tmp_path):
    import json

    run = tmp_path / "run"
    run.mkdir()
    stored = {**PAPER, "width": 20, "depth": 3, "val_every": 9}
    (run / "config.json").write_text(json.dumps({"train": stored}))
    config = resumed(run)
    assert not planned
    assert (config.network.width, config.network.depth, config.val_every) == (20, 3, 9)
    # as runs store it now: the network nested, its in_channels the images'
    config = TrainConfig.from_settings(images="i", masks="m", out=str(run), minutes=30,
                                       **{**stored, "norm": "group"})
    config = replace(config, network=replace(config.network, in_channels=3))
    (run / "config.json").write_text(json.dumps({"train": config.to_dict()}))
    config = resumed(run)
    assert (config.network.width, config.network.depth, config.network.norm) == (
        20, 3, "group")
    assert config.network.in_channels == 1  # the images decide it when training starts


def test_a_resumed_run_keeps_the_settings_no_plan_chooses(planned, tmp_path):
    """--zoom, --ema, --w0... left off the resuming command are the run's own, not the
    defaults; a setting given again wins."""
    import json

    run = tmp_path / "run"
    run.mkdir()
    config = TrainConfig.from_settings(
        images="i", masks="m", out=str(run), minutes=30, **PAPER, ema=0.999, w0=4.0,
        class_weights=None, exclude=("t067",), augment=AugmentConfig(zoom=(0.8, 1.25)))
    (run / "config.json").write_text(json.dumps({"train": config.to_dict()}))
    again = resumed(run)
    assert (again.ema, again.w0, again.class_weights, again.exclude) == (
        0.999, 4.0, None, ("t067",))
    assert again.augment == AugmentConfig(zoom=(0.8, 1.25))
    assert again.lr == PAPER["lr"] and not planned
    changed = resumed(run, "--ema", "0.99", "--lr", "0.5")
    assert (changed.ema, changed.lr, changed.w0) == (0.99, 0.5, 4.0)


# ------------------------------------------------------------ working scale
def disks(radius: int, gap: int, n: int = 4) -> np.ndarray:
    """n x n disks of ``radius`` whose edges are ``gap`` px apart, as instance labels."""
    step = 2 * radius + gap
    yy, xx = np.mgrid[: n * step, : n * step]
    labels = np.zeros(yy.shape, np.int32)
    for i in range(n):
        for j in range(n):
            cy, cx = radius + i * step + gap // 2, radius + j * step + gap // 2
            labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i * n + j + 1
    return labels


def test_object_sizes_and_the_scale_they_allow():
    small, gap = object_sizes([disks(radius=40, gap=60)])
    assert 78 <= small <= 82 and gap > 40
    assert choose_scale(small, gap) == 0.5  # cells ~80 px wide: half scale keeps 40 px
    small, gap = object_sizes([disks(radius=6, gap=4)])  # EM-like: small, thin gaps
    assert choose_scale(small, gap) == 1.0
    assert choose_scale(400.0, 200.0) == 0.25
    with pytest.raises(ValueError, match="no objects"):
        object_sizes([np.zeros((8, 8), np.int32)])


def test_the_plan_takes_the_scale_from_the_masks(monkeypatch):
    step, _ = fake_machine(3.1)
    monkeypatch.setattr(plan_mod, "probe_step", lambda n, *a, **k: step(n))
    p = plan_mod.make_plan(30, in_channels=1, num_classes=2, device=torch.device("cpu"),
                           precision="fp32", masks=[disks(radius=40, gap=60)])
    assert p.settings["scale"] == 0.5 and "scale 0.5" in p.reason
    assert "images at scale 0.5" in p.table()
    # 4 x 4 disks of 80 px, 140 px apart: a 560 px image, 280 px at half scale; the tile
    # shrinks to one whose output covers 280 px, with more tiles per step
    assert p.settings["tile"] < 572 and p.settings["batch_size"] > 1
    fast, _ = fake_machine(0.01)  # the paper's network keeps the paper's scale
    monkeypatch.setattr(plan_mod, "probe_step", lambda n, *a, **k: fast(n))
    p = plan_mod.make_plan(30, in_channels=1, num_classes=2, device=torch.device("cpu"),
                           precision="fp32", masks=[disks(radius=40, gap=60)])
    assert p.settings["scale"] == 1.0


def test_a_fixed_papers_network_keeps_the_papers_scale_and_tile(monkeypatch):
    step, _ = fake_machine(3.1)  # slow: alone, the plan would choose a small network
    monkeypatch.setattr(plan_mod, "probe_step", lambda n, *a, **k: step(n))
    p = plan_mod.make_plan(30, in_channels=1, num_classes=2, device=torch.device("cpu"),
                           precision="fp32", masks=[disks(radius=40, gap=60)],
                           fixed={"width": 64, "depth": 5})
    assert {k: p.settings[k] for k in PLANNED} == PAPER
    assert "only" in p.reason  # and it says that the budget gets fewer steps


def test_a_fixed_norm_is_probed_and_shown(monkeypatch):
    step, _ = fake_machine(3.1)
    norms = []

    def probe(n, *a, norm="none", **k):
        norms.append(norm)
        return step(n)
    monkeypatch.setattr(plan_mod, "probe_step", probe)
    p = plan_mod.make_plan(30, in_channels=1, num_classes=2, device=torch.device("cpu"),
                           precision="fp32", fixed={"norm": "group", "lr": 0.003})
    assert norms and set(norms) == {"group"}  # group norm's cost is in the timing
    assert p.settings["norm"] == "group" and p.settings["lr"] == 0.003
    assert "group norm" in p.table() and "lr 0.003" in p.table()


def test_fit_tile_covers_the_image_with_the_same_output_area():
    cand = Network(16, 4, 572)
    assert fit_tile(cand, 600) == cand  # a large image keeps the tile
    small = fit_tile(cand, 256)
    net = UNet(depth=4, width=1)
    assert net.output_size(small.tile) >= 256 > net.output_size(small.tile - 8)
    assert small.batch_size == int((484 / net.output_size(small.tile)) ** 2)
