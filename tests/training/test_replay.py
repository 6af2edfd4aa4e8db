"""Tests for tileunet.training.replay: a live run trained again from its snapshots."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
import torch

from tileunet.cli import main
from tileunet.errors import DataError
from tileunet.io.images import read_image, save_image
from tileunet.synthetic import write_synthetic_dataset
from tileunet.training.config import Runtime, TrainConfig
from tileunet.training.live import SNAPSHOTS_FILE, SnapshotLog
from tileunet.training.loop import Hooks, train
from tileunet.training.replay import Schedule, Version, replay_config, versions
from tileunet.training.request import replay

STEPS, SWITCH = 8, 3


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """A run as a live one leaves it: version 0 from step 0, version 1 (one mask
    changed) from step SWITCH, STEPS steps in metrics.csv."""
    root = tmp_path_factory.mktemp("live")
    images, masks = write_synthetic_dataset(root / "d", n_images=2, shape=(80, 80),
                                            rng=np.random.default_rng(5))
    run = root / "run"
    cfg = TrainConfig.from_settings(images=str(images), masks=str(masks), out=str(run),
                                    iterations=STEPS, width=4, depth=3, tile=92,
                                    dropout=0.0, val_fraction=0.0, val_every=10_000)
    train(cfg, runtime=Runtime(progress=False, live=True))  # records version 0
    first = sorted(masks.iterdir())[0]
    changed = read_image(first).astype(np.uint16)
    changed[:, :40] = 0  # half the image's cells taken back
    save_image(first, changed)
    SnapshotLog(run, [images, masks]).add(SWITCH)
    return run, images, masks, first.name


def weights(res) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in res.net.state_dict().items()}


def same(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_the_versions_and_the_replay_configuration(live_run, tmp_path):
    run, images, masks, _ = live_run
    found = versions(run)
    assert [v.iteration for v in found] == [0, SWITCH]
    assert found[1].masks.endswith(f"001/1-{masks.name}") and found[1].ignore is None
    cfg, later = replay_config(run, tmp_path / "r")
    assert cfg.iterations == STEPS and cfg.minutes is None and cfg.masks == found[0].masks
    assert later == found[1:]
    assert replay_config(run, tmp_path / "r", iterations=SWITCH)[1] == []  # never reached


def test_a_schedule_gives_each_version_once_at_its_step():
    v = [Version(3, "i", "m1", None), Version(5, "i", "m2", None)]
    schedule = Schedule(list(v))
    assert [schedule.due(s) for s in (1, 2, 3, 4)] == [False, False, True, False]
    assert schedule.current == v[0]
    assert Schedule(list(v)).due(7)  # a resumed run reaches both at once, the last wins
    late = Schedule(list(v))
    late.due(7)
    assert late.current == v[1]


def test_a_replay_switches_at_the_recorded_step_and_repeats_itself(live_run, tmp_path):
    run, images, masks, changed = live_run
    one = replay(run, tmp_path / "one", runtime=Runtime(progress=False))
    two = replay(run, tmp_path / "two", runtime=Runtime(progress=False))
    assert one.iterations == STEPS and not one.interrupted
    assert same(weights(one), weights(two))  # by steps, not the clock: the same weights
    record = json.loads((tmp_path / "one" / SNAPSHOTS_FILE).read_text())["snapshots"]
    assert [e["iteration"] for e in record] == [0, SWITCH]
    kept = tmp_path / "one" / "snapshots" / "001" / f"1-1-{masks.name}" / changed
    np.testing.assert_array_equal(read_image(kept), read_image(masks / changed))
    # without the switch (version 0 throughout) the weights differ
    cfg, _ = replay_config(run, tmp_path / "v0")
    alone = train(cfg, runtime=Runtime(progress=False))
    assert not same(weights(one), weights(alone))


def test_a_stopped_replay_resumes_on_the_version_it_had_reached(live_run, tmp_path):
    run = live_run[0]
    stop = threading.Event()

    def on_weights(w, step):  # as a GUI's Stop button does, after step SWITCH + 1
        if step >= SWITCH + 1:
            stop.set()
    first = replay(run, tmp_path / "r",
                   hooks=Hooks(stop=stop, on_weights=on_weights, weights_every=0.0),
                   runtime=Runtime(progress=False))
    assert first.interrupted and SWITCH < first.iterations < STEPS
    done = replay(run, tmp_path / "r", runtime=Runtime(progress=False, resume=True))
    assert done.iterations == STEPS and not done.interrupted
    straight = replay(run, tmp_path / "straight", runtime=Runtime(progress=False))
    assert same(weights(done), weights(straight))  # stopping and resuming change nothing
    record = json.loads((tmp_path / "r" / SNAPSHOTS_FILE).read_text())["snapshots"]
    # the version reached before the stop is read again, and recorded once, on resume
    assert [e["iteration"] for e in record] == [0, SWITCH, first.iterations]
    assert record[-1]["sources"][1].endswith(f"001/1-{live_run[2].name}")


def test_replay_refusals_name_the_file(live_run, tmp_path, capsys):
    run = live_run[0]
    plain = tmp_path / "plain"
    shutil.copytree(run, plain, ignore=shutil.ignore_patterns("snapshots*"))
    with pytest.raises(DataError, match="snapshots.json"):
        versions(plain)
    assert main(["-q", "replay", str(plain), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "snapshots.json" in err and "\n" not in err
    with pytest.raises(ValueError, match="a new run"):
        replay_config(run, run)
    with pytest.raises(ValueError, match="exclude each other"):
        Runtime(live=True, replay=str(run))
    assert not (tmp_path / "x").exists()


def test_the_replay_command(live_run, tmp_path, capsys):
    run = live_run[0]
    assert main(["-q", "replay", str(run), "--out", str(tmp_path / "c"),
                 "--iterations", str(SWITCH + 1)]) == 0
    assert f"trained: {SWITCH + 1} iterations" in capsys.readouterr().out
    assert (tmp_path / "c" / "model.safetensors").is_file()
