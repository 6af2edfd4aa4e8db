from __future__ import annotations

import importlib
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tileunet.augment.params import AugmentConfig
from tileunet.checkpoint import load_model
from tileunet.io.images import save_image
from tileunet.synthetic import synthetic_cells, write_synthetic_dataset
from tileunet.training.config import RUNTIME_SETTINGS, ConfigError, Runtime, TrainConfig
from tileunet.training.loop import Hooks, Validation, lr_at, train
from tileunet.training.samples import split_samples

# the module, not the function that tileunet/__init__ exports under the same name
train_mod = importlib.import_module("tileunet.training.loop")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    return write_synthetic_dataset(tmp_path_factory.mktemp("d"), n_images=3, shape=(80, 72),
                                   rng=np.random.default_rng(3))


def tiny(data, out, **kw) -> TrainConfig:
    images, masks = data
    base = dict(images=str(images), masks=str(masks), out=str(out), iterations=6, width=4,
                depth=3, tile=92, dropout=0.0, val_every=3, val_fraction=0.2)
    base.update(kw)
    return TrainConfig.from_settings(**base)


def tiny_run(data, out, hooks=None, **kw):
    """Train the tiny configuration of ``kw``; its runtime options (``resume``,
    ``progress``, ``checkpoint_minutes``) say how (no progress bars by default)."""
    runtime = Runtime(**{"progress": False,
                         **{k: kw.pop(k) for k in RUNTIME_SETTINGS if k in kw}})
    return train(tiny(data, out, **kw), hooks, runtime)


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="iterations or minutes"):
        TrainConfig(images="a", masks="b", out="c")
    with pytest.raises(ValueError, match="val_fraction"):
        TrainConfig(images="a", masks="b", out="c", iterations=1, val_fraction=1.0)
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(images="a", masks="b", out="c", iterations=1, precision="fp8")
    with pytest.raises(ValueError, match="norm"):
        TrainConfig.from_settings(images="a", masks="b", out="c", iterations=1, norm="layer")


def test_config_round_trips_through_json(data, tmp_path):
    cfg = tiny(data, tmp_path / "r", class_weights=(1.0, 2.0))
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    # a run written before `norm` had a name (batch_norm: bool), with the network's
    # fields and the runtime options flat among the settings, still resumes
    old = {k: v for k, v in cfg.settings().items() if k != "norm"}
    old.update(batch_norm=True, device="auto", resume=False, progress=True,
               checkpoint_minutes=5.0, augment=cfg.to_dict()["augment"],
               normalization=cfg.to_dict()["normalization"])
    assert TrainConfig.from_dict(json.loads(json.dumps(old))) == replace(
        cfg, network=replace(cfg.network, norm="batch"))


def test_split_holds_out_at_least_one_never_all():
    items = list(range(5))
    train_s, val_s = split_samples(items, 0.2, seed=0)
    assert len(val_s) == 1 and sorted(train_s + val_s) == items
    assert split_samples(items, 0.0, 0) == (items, [])
    assert split_samples([1], 0.5, 0) == ([1], [])
    assert len(split_samples(items, 0.9, 0)[0]) == 1


def test_learning_rate_warms_up_and_decays(tmp_path):
    cfg = TrainConfig(images="a", masks="b", out="c", iterations=100, lr=0.01, warmup=10)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(0.001)
    assert lr_at(cfg, 9, 0.09) == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 0.09)))
    assert lr_at(cfg, 50, 0.5) == pytest.approx(0.005)
    assert lr_at(cfg, 99, 1.0) == 0.0  # annealed to zero exactly at the budget's end
    lrs = [lr_at(cfg, i, i / 100) for i in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_run_directory_and_model_file(data, tmp_path):
    res = tiny_run(data, tmp_path / "r")
    assert res.iterations == 6 and not res.interrupted
    assert res.val_iou is not None and 0.0 <= res.val_iou <= 1.0
    net, extra = load_model(tmp_path / "r")
    assert net.config.width == 4 and net.config.depth == 3
    assert extra["normalization"]["method"] == "percentile"
    assert extra["train"]["iterations"] == 6
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["model"] == net.config.to_dict()
    # the configuration holds the network it trained, and no runtime option
    assert cfg["train"]["network"] == net.config.to_dict()
    assert not set(RUNTIME_SETTINGS) & set(cfg["train"])
    # weight maps were cached once per image
    assert len(list((tmp_path / "r" / "cache").glob("*.npz"))) == 3


def test_loss_falls_when_overfitting_one_image(tmp_path):
    image, labels = synthetic_cells((64, 64), rng=np.random.default_rng(0))
    save_image(tmp_path / "i" / "a.tif", (image * 255).astype(np.uint8))
    save_image(tmp_path / "m" / "a.tif", labels.astype(np.uint16))
    cfg = TrainConfig.from_settings(
        images=str(tmp_path / "i"), masks=str(tmp_path / "m"), out=str(tmp_path / "r"),
        iterations=60, width=8, depth=2, tile=68, dropout=0.0, val_fraction=0.0,
        augment=AugmentConfig(enabled=False), warmup=5)
    train(cfg, runtime=Runtime(progress=False))
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()[1:]
    losses = [float(r.split(",")[2]) for r in rows]
    assert losses[-1] < 0.8 * losses[0], losses


class _InterruptAt:
    """Stands in for the loss and raises KeyboardInterrupt on its n-th call."""

    def __init__(self, n: int) -> None:
        self.n, self.calls, self.real = n, 0, train_mod.weighted_cross_entropy

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


def test_interrupted_and_resumed_run_equals_one_run(data, tmp_path, monkeypatch):
    tiny_run(data, tmp_path / "straight", iterations=6)
    monkeypatch.setattr(train_mod, "weighted_cross_entropy", _InterruptAt(4))
    assert tiny_run(data, tmp_path / "split", iterations=6).iterations == 3
    monkeypatch.undo()
    assert tiny_run(data, tmp_path / "split", iterations=6, resume=True).iterations == 6
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


def test_ctrl_c_saves_a_checkpoint_that_resumes(data, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "weighted_cross_entropy", _InterruptAt(3))
    res = tiny_run(data, tmp_path / "r", iterations=10)
    assert res.interrupted and res.iterations == 2
    assert (tmp_path / "r" / "checkpoint.safetensors").exists()
    assert (tmp_path / "r" / "model.safetensors").exists()
    monkeypatch.undo()
    res = tiny_run(data, tmp_path / "r", iterations=5, resume=True)
    assert res.iterations == 5 and not res.interrupted


def test_a_stop_request_stops_after_the_step_and_the_run_resumes_exactly(data, tmp_path):
    import threading

    tiny_run(data, tmp_path / "straight", iterations=20, val_every=10)
    stop, seen = threading.Event(), []

    def on_row(row):
        seen.append(row)
        if row["iteration"] == 10:
            stop.set()  # as a GUI's Stop button does, from the row of step 10
    res = tiny_run(data, tmp_path / "split", iterations=20, val_every=10,
                   hooks=Hooks(stop=stop, on_row=on_row))
    assert res.interrupted and res.iterations == 10
    assert [r["iteration"] for r in seen] == [10] and "val_iou" in seen[0]
    assert (tmp_path / "split" / "checkpoint.safetensors").exists()
    res = tiny_run(data, tmp_path / "split", iterations=20, val_every=10, resume=True,
                   hooks=Hooks(on_row=seen.append))
    assert not res.interrupted and res.iterations == 20
    assert [r["iteration"] for r in seen] == [10, 20]
    a = load_file(str(tmp_path / "straight" / "last.safetensors"))
    b = load_file(str(tmp_path / "split" / "last.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


def test_resume_without_checkpoint_and_existing_run_are_refused(data, tmp_path):
    with pytest.raises(ValueError, match="no checkpoint"):
        tiny_run(data, tmp_path / "new", resume=True)
    tiny_run(data, tmp_path / "r", iterations=1)
    with pytest.raises(ValueError, match="already holds"):
        tiny_run(data, tmp_path / "r", iterations=1)
    with pytest.raises(ValueError, match="another configuration"):
        cfg = tiny(data, tmp_path / "r", iterations=2)
        train(replace(cfg, network=replace(cfg.network, width=8)),
              runtime=Runtime(resume=True, progress=False))


class _CrashAt(_InterruptAt):
    """Stands in for the loss and fails on its n-th call as a killed process would:
    nothing after that point runs (no final save)."""

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise RuntimeError("power cut")
        return self.real(*args, **kwargs)


def test_periodic_checkpoints_let_a_crashed_run_resume_exactly(data, tmp_path, monkeypatch):
    tiny_run(data, tmp_path / "straight", iterations=8)
    monkeypatch.setattr(train_mod, "weighted_cross_entropy", _CrashAt(6))
    with pytest.raises(RuntimeError, match="power cut"):
        tiny_run(data, tmp_path / "crash", iterations=8, checkpoint_minutes=1e-9)
    monkeypatch.undo()
    run = tmp_path / "crash"
    assert not (run / "model.safetensors").exists()  # the end was never reached
    from tileunet.checkpoint import read_metadata

    state = json.loads(read_metadata(run / "checkpoint.safetensors")["state"])
    assert state["iteration"] == 5  # saved after every step here; step 6 crashed
    assert tiny_run(data, run, iterations=8, resume=True).iterations == 8
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


def test_no_periodic_checkpoint_before_its_time(data, tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod, "weighted_cross_entropy", _CrashAt(6))
    with pytest.raises(RuntimeError):
        tiny_run(data, tmp_path / "r", iterations=8)  # default: every 5 minutes
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()


def test_sigterm_saves_a_checkpoint_like_ctrl_c(data, tmp_path, monkeypatch):
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)

    class TermAt(_InterruptAt):
        def __call__(self, *args, **kwargs):
            self.calls += 1
            if self.calls == self.n:
                os.kill(os.getpid(), signal.SIGTERM)
            return self.real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "weighted_cross_entropy", TermAt(3))
    res = tiny_run(data, tmp_path / "r", iterations=10)
    assert res.interrupted and res.iterations in (2, 3)
    assert (tmp_path / "r" / "checkpoint.safetensors").exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is given back
    monkeypatch.undo()
    assert tiny_run(data, tmp_path / "r", iterations=5, resume=True).iterations == 5


def test_a_start_stopped_before_any_weights_can_be_started_again(data, tmp_path,
                                                                 monkeypatch):
    def stop(*a, **k):
        raise KeyboardInterrupt  # Ctrl-C after the weight maps, before training

    monkeypatch.setattr(train_mod, "make_optimizer", stop)
    run = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        tiny_run(data, run, iterations=2)
    monkeypatch.undo()
    assert (run / "cache").is_dir() and train_mod.unstarted_run(run)
    (run / ".model.safetensors.x1.tmp").write_bytes(b"half")  # left by a kill -9
    with pytest.raises(ValueError, match="start it again without --resume"):
        tiny_run(data, run, iterations=2, resume=True)
    assert tiny_run(data, run, iterations=2).iterations == 2
    assert not list(run.glob(".*.tmp")) and not train_mod.unstarted_run(run)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("not the tool's")
    assert not train_mod.unstarted_run(tmp_path / "mine")
    with pytest.raises(ValueError, match="already holds files"):
        tiny_run(data, tmp_path / "mine", iterations=1)


def test_checkpoint_minutes_must_be_positive():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="checkpoint_minutes"):
            Runtime(checkpoint_minutes=bad)


def test_auto_precision_trains_in_the_branch_of_the_hardware(data, tmp_path, cpu_bf16):
    res = tiny_run(data, tmp_path / "r", iterations=2, val_every=2)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train"]["precision"] == "auto"
    assert config["precision_used"] == ("bf16" if cpu_bf16 else "fp32")
    assert math.isfinite(res.val_loss) and res.iterations == 2
    assert 0.0 <= res.val_seg <= 1.0  # two classes: the kept model is chosen by SEG
    rows = _read_rows(tmp_path / "r")
    assert rows[-1]["val_seg"] != "" and float(rows[-1]["val_seg"]) == res.val_seg


class FakeClock:
    """A perf_counter that moves ``tick`` seconds each time it is read."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 1000.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


def test_time_budget_stops_training(data, tmp_path, monkeypatch):
    clock = FakeClock(tick=0.25)
    monkeypatch.setattr(train_mod, "time", clock)
    res = tiny_run(data, tmp_path / "r", iterations=None, minutes=0.05, val_every=1000)
    # the loop reads the clock a few times a step: it stops at the first step past 3 s
    assert 3.0 <= res.seconds <= 3.0 + 4 * clock.tick
    assert 1 <= res.iterations < 3.0 / clock.tick
    rows = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert rows[-1].split(",")[0] == str(res.iterations)


def test_exclude_leaves_images_out(data, tmp_path):
    tiny_run(data, tmp_path / "r", iterations=1, exclude=("synth_001",))
    _, extra = load_model(tmp_path / "r")
    names = extra["train_images"] + extra["val_images"]
    assert sorted(names) == ["synth_000", "synth_002"]
    with pytest.raises(ValueError, match="matches no image"):
        tiny_run(data, tmp_path / "r2", iterations=1, exclude=("t999",))
    with pytest.raises(ValueError, match="leaves no image"):
        tiny_run(data, tmp_path / "r3", iterations=1, exclude=("synth_*",))


def test_ignore_regions_get_zero_weight(data, tmp_path):
    from tileunet.io.normalization import Normalization
    from tileunet.io.pairs import load_samples
    from tileunet.training.samples import prepare_samples, read_ignore_masks

    images, masks = data
    ignore_dir = tmp_path / "ignore"
    region = np.zeros((80, 72), np.uint8)
    region[:40] = 255  # top half of synth_001 is not annotated
    save_image(ignore_dir / "synth_001.png", region)
    samples = load_samples(images, masks, Normalization())
    ignore = read_ignore_masks(str(images), str(ignore_dir), samples)
    assert list(ignore) == ["synth_001"]
    cfg = tiny(data, tmp_path / "r")
    prepared = {p.name: p for p in prepare_samples(samples, cfg, None, ignore=ignore)}
    w = prepared["synth_001"].weights
    assert np.all(w[:40] == 0) and np.all(w[40:] > 0)
    assert np.all(prepared["synth_000"].weights > 0)
    # and a whole run accepts it
    res = tiny_run(data, tmp_path / "r", iterations=2, ignore=str(ignore_dir))
    assert res.iterations == 2


def test_explicit_validation_set(data, tmp_path):
    images, masks = data
    val = write_synthetic_dataset(tmp_path / "val", n_images=1, shape=(64, 64),
                                  rng=np.random.default_rng(9))
    res = tiny_run(data, tmp_path / "r", iterations=3, val_images=str(val[0]),
                     val_masks=str(val[1]))
    _, extra = load_model(tmp_path / "r")
    assert extra["val_images"] == ["synth_000"] and len(extra["train_images"]) == 3
    assert res.val_iou is not None
    with pytest.raises(ValueError, match="both val_images and val_masks"):
        tiny(data, tmp_path / "x", val_images=str(val[0]))


def test_training_with_worker_processes(data, tmp_path):
    res = tiny_run(data, tmp_path / "r", iterations=4, workers=2)
    assert res.iterations == 4 and not res.interrupted
    with pytest.raises(ValueError, match="workers"):
        tiny(data, tmp_path / "x", workers=-1)


def test_training_with_tiles_made_on_the_device(data, tmp_path):
    res = tiny_run(data, tmp_path / "r", iterations=4, augment_on="device")
    assert res.iterations == 4 and not res.interrupted
    with pytest.raises(ValueError, match="augment_on"):
        tiny(data, tmp_path / "x", augment_on="gpu")
    with pytest.raises(ValueError, match="bicubic"):
        tiny(data, tmp_path / "x", augment_on="device",
             augment=AugmentConfig(interpolation="spline"))
    cuda = torch.device("cuda")
    assert train_mod.augment_on_device(tiny(data, tmp_path / "x"), cuda)
    assert not train_mod.augment_on_device(tiny(data, tmp_path / "x", workers=2), cuda)
    assert not train_mod.augment_on_device(tiny(data, tmp_path / "x"), torch.device("cpu"))


# ----------------------------------------------------- optimiser, kept model, init
def _read_rows(run: Path) -> list[dict[str, str]]:
    import csv

    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_the_kept_model_is_the_best_validation(data, tmp_path, monkeypatch):
    scores = iter([0.3, 0.9, 0.5, 0.4])  # validations at iterations 2, 4, 6, 8

    def fake_validate(net, *args, **kwargs):
        return Validation(1.0, 0.5, next(scores))

    monkeypatch.setattr(train_mod, "validate", fake_validate)
    res = tiny_run(data, tmp_path / "r", iterations=8, val_every=2)
    assert res.kept_iteration == 4 and res.val_seg == 0.9 and res.iterations == 8
    rows = _read_rows(tmp_path / "r")
    assert [r["iteration"] for r in rows if r["kept"] == "yes"] == ["4"]
    kept, last = load_file(tmp_path / "r" / "model.safetensors"), load_file(
        tmp_path / "r" / "last.safetensors")
    assert any(not torch.equal(kept[k], last[k]) for k in kept)
    _, extra = load_model(tmp_path / "r")
    assert extra["iteration"] == 4
    for k, v in res.net.state_dict().items():  # the returned network is the kept one
        assert torch.equal(v.cpu(), kept[k])


def test_keep_last_and_no_validation_keep_the_last_step(data, tmp_path):
    res = tiny_run(data, tmp_path / "a", iterations=4, keep="last")
    assert res.kept_iteration == 4
    res = tiny_run(data, tmp_path / "b", iterations=4, val_fraction=0.0)
    assert res.kept_iteration == 4 and res.val_iou is None
    a = load_file(tmp_path / "b" / "model.safetensors")
    b = load_file(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_moving_average_is_the_model_and_resumes_exactly(data, tmp_path, monkeypatch):
    """--ema: the average watches the training without steering it (the last step's own
    weights are a plain run's), is the model, and comes back from a checkpoint."""
    kw = dict(iterations=6, keep="last", val_fraction=0.0)
    steps = []
    plain = tiny_run(data, tmp_path / "plain", **kw, hooks=Hooks(
        on_weights=lambda w, it: steps.append(w), weights_every=0.0))
    averaged = tiny_run(data, tmp_path / "whole", ema=0.5, **kw)
    steps.append(plain.net.state_dict())  # steps 1 to 5 shared, then the last
    assert len(steps) == 6
    last = load_file(tmp_path / "whole" / "last.safetensors")
    model = load_file(tmp_path / "whole" / "model.safetensors")
    expected = {k: v.clone() for k, v in steps[0].items()}  # the first step is copied
    for w in steps[1:]:
        for k in expected:
            expected[k] = 0.5 * expected[k] + 0.5 * w[k].cpu()
    for k, v in plain.net.state_dict().items():
        torch.testing.assert_close(last[k], v.cpu(), rtol=0, atol=0)
        torch.testing.assert_close(model[k], expected[k], rtol=1e-5, atol=1e-7)
        assert torch.equal(averaged.net.state_dict()[k].cpu(), model[k])
    assert any(not torch.equal(model[k], last[k]) for k in model)
    monkeypatch.setattr(train_mod, "weighted_cross_entropy", _InterruptAt(4))
    assert tiny_run(data, tmp_path / "parts", ema=0.5, **kw).iterations == 3
    monkeypatch.undo()
    assert tiny_run(data, tmp_path / "parts", ema=0.5, resume=True, **kw).iterations == 6
    resumed = load_file(tmp_path / "parts" / "model.safetensors")
    for k in model:
        torch.testing.assert_close(resumed[k], model[k], rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="ema"):
        tiny(data, tmp_path / "bad", ema=1.0)


def test_adamw_trains_and_resumes_exactly(data, tmp_path, monkeypatch):
    adamw = dict(iterations=6, optimizer="adamw", lr=1e-3, weight_decay=1e-4, keep="last")
    whole = tiny_run(data, tmp_path / "whole", **adamw)
    monkeypatch.setattr(train_mod, "weighted_cross_entropy", _InterruptAt(4))
    assert tiny_run(data, tmp_path / "parts", **adamw).iterations == 3
    monkeypatch.undo()
    parts = tiny_run(data, tmp_path / "parts", resume=True, **adamw)
    assert parts.iterations == 6
    # Adam's moments and step count come back from the checkpoint: the same weights
    for k, v in whole.net.state_dict().items():
        torch.testing.assert_close(parts.net.state_dict()[k], v, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="trained with AdamW, not SGD"):
        tiny_run(data, tmp_path / "parts", iterations=8, keep="last", resume=True)


def test_progress_bars_do_not_change_the_weights(data, tmp_path):
    # with dropout, the masks come from the global generator: nothing on the way
    # (building a config, checking a tile) may draw from it, shown bars or not
    kw = dict(iterations=4, dropout=0.5, keep="last")
    quiet = tiny_run(data, tmp_path / "quiet", **kw)
    shown = tiny_run(data, tmp_path / "shown", progress=True, **kw)
    for k, v in quiet.net.state_dict().items():
        assert torch.equal(shown.net.state_dict()[k], v), k
    state = torch.get_rng_state()
    tiny(data, tmp_path / "x", tile=92)
    assert torch.equal(torch.get_rng_state(), state)


def test_weighted_tiles_train_resume_exactly_and_change_the_tiles(data, tmp_path,
                                                                   monkeypatch):
    kw = dict(iterations=5, weighted_tiles=0.7, keep="last")
    whole = tiny_run(data, tmp_path / "whole", **kw)
    monkeypatch.setattr(train_mod, "weighted_cross_entropy", _InterruptAt(3))
    assert tiny_run(data, tmp_path / "parts", **kw).iterations == 2
    monkeypatch.undo()
    parts = tiny_run(data, tmp_path / "parts", resume=True, **kw)
    for k, v in whole.net.state_dict().items():
        torch.testing.assert_close(parts.net.state_dict()[k], v, rtol=1e-4, atol=1e-6)
    uniform = tiny_run(data, tmp_path / "uniform", iterations=5, keep="last")
    assert any(not torch.equal(uniform.net.state_dict()[k], v)
               for k, v in whole.net.state_dict().items())
    with pytest.raises(ConfigError, match="weighted_tiles"):
        tiny(data, tmp_path / "bad", iterations=5, weighted_tiles=1.5)


def test_the_best_weights_survive_a_resume(data, tmp_path, monkeypatch):
    scores = iter([0.8, 0.1, 0.2, 0.3])
    monkeypatch.setattr(train_mod, "validate", lambda *a, **k: Validation(1.0, next(scores)))
    tiny_run(data, tmp_path / "r", iterations=4, val_every=2)  # best at 2
    res = tiny_run(data, tmp_path / "r", iterations=8, val_every=2, resume=True)
    assert res.kept_iteration == 2 and res.val_iou == 0.8 and res.val_seg is None


def test_init_starts_from_a_trained_model(data, tmp_path):
    first = tiny_run(data, tmp_path / "a", iterations=3, keep="last")
    res = tiny_run(data, tmp_path / "b", iterations=1, init=str(tmp_path / "a"), lr=1e-9,
                     keep="last")
    for k, v in first.net.state_dict().items():  # one step at lr 1e-9 moves nothing
        torch.testing.assert_close(res.net.state_dict()[k], v, rtol=0, atol=1e-6)


def test_init_with_other_classes_replaces_the_last_layer(data, tmp_path):
    from tileunet.checkpoint import load_start_weights
    from tileunet.model import UNet

    first = tiny_run(data, tmp_path / "a", iterations=1)
    torch.manual_seed(5)
    net = UNet(depth=3, width=4, dropout=0.0, num_classes=3)
    head = net.head.weight.detach().clone()
    msg = load_start_weights(net, tmp_path / "a")
    assert "replaced" in msg and "3 classes" in msg
    mine, theirs = net.state_dict(), first.net.state_dict()
    assert torch.equal(mine["head.weight"], head)  # the new head keeps its He init
    assert all(torch.equal(mine[k], theirs[k].cpu()) for k in theirs if not k.startswith("head."))


def test_init_refuses_another_network_with_one_line(data, tmp_path):
    tiny_run(data, tmp_path / "a", iterations=1)
    with pytest.raises(ValueError) as err:
        tiny_run(data, tmp_path / "b", iterations=1, init=str(tmp_path / "a"), width=8)
    msg = str(err.value)
    assert "\n" not in msg and "width 4" in msg and "width 8" in msg and "model.safetensors" in msg
    with pytest.raises(ValueError, match="exclude each other"):
        tiny_run(data, tmp_path / "a", iterations=1, init="x", resume=True)
    with pytest.raises(ValueError, match="optimizer"):
        tiny(data, tmp_path / "a", optimizer="adam")


def test_the_weights_are_shared_as_copies_while_a_run_trains(data, tmp_path):
    shared = []
    hooks = Hooks(on_weights=lambda w, it: shared.append((it, w)), weights_every=0.0)
    res = tiny_run(data, tmp_path / "r", iterations=4, keep="last", hooks=hooks)
    assert [it for it, _ in shared] == [1, 2, 3]  # after every step but the last
    first, third = shared[0][1], shared[2][1]
    assert all(w.device.type == "cpu" for w in first.values())
    assert any(not torch.equal(first[k], third[k]) for k in first)  # copies, not views
    net = res.net.state_dict()
    assert any(not torch.equal(third[k], net[k].cpu()) for k in third)  # one step behind


def test_a_run_stops_on_a_signal_whose_interrupt_was_swallowed(data, tmp_path):
    """A signal whose KeyboardInterrupt is swallowed (as inside a finaliser) still stops
    the run at the next step, with a checkpoint."""
    import os
    import signal
    import time

    def swallow(weights, it):
        if it == 2:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass

    hooks = Hooks(on_weights=swallow, weights_every=0.0)
    res = tiny_run(data, tmp_path / "r", iterations=50, keep="last", hooks=hooks)
    assert res.interrupted and res.iterations == 3  # at the check after the next step
    assert (tmp_path / "r" / "checkpoint.safetensors").is_file()
