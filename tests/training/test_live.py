"""Tests for tileunet.training.live: a run that reads its training set again while it
trains, and keeps each version it trained on."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

import tileunet.training.live as live
from tileunet.io.images import read_image, save_image
from tileunet.synthetic import write_synthetic_dataset
from tileunet.training.config import Runtime, TrainConfig
from tileunet.training.flags import parse_train_argv
from tileunet.training.live import SNAPSHOTS_FILE, SnapshotLog, Watch, fingerprint
from tileunet.training.loop import Hooks, train


def test_the_fingerprint_sees_changes_and_not_temporary_files(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"1")
    before = fingerprint([tmp_path, tmp_path / "missing"])
    (tmp_path / ".a.tif.x1.tmp").write_bytes(b"half written")
    assert fingerprint([tmp_path]) == before
    (tmp_path / "b.tif").write_bytes(b"2")
    assert fingerprint([tmp_path]) != before
    assert fingerprint([tmp_path / "a.tif"]) == ((str(tmp_path / "a.tif"), 1,
                                                  (tmp_path / "a.tif").stat().st_mtime_ns),)


def test_a_watch_says_each_change_once_and_looks_at_most_every_few_seconds(tmp_path):
    watch = Watch([tmp_path])
    (tmp_path / "a.tif").write_bytes(b"1")
    assert watch.changed(now=100.0)
    assert not watch.changed(now=100.0 + 2 * live.CHECK_SECONDS)  # nothing new
    (tmp_path / "b.tif").write_bytes(b"2")
    assert not watch.changed(now=100.0 + 2.5 * live.CHECK_SECONDS)  # too soon
    assert watch.changed(now=100.0 + 4 * live.CHECK_SECONDS)


def test_the_snapshot_log_keeps_each_version_and_goes_on_after_a_resume(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "a.tif").write_bytes(b"old")
    run = tmp_path / "run"
    log = SnapshotLog(run, [masks])
    log.add(0)
    (masks / ".a.tif.tmp").write_bytes(b"new")
    (masks / ".a.tif.tmp").replace(masks / "a.tif")  # written whole, as the viewer does
    assert log.add(40).name == "001"
    assert (run / "snapshots" / "000" / "0-masks" / "a.tif").read_bytes() == b"old"
    assert (run / "snapshots" / "001" / "0-masks" / "a.tif").read_bytes() == b"new"
    again = SnapshotLog(run, [masks])
    assert [e["iteration"] for e in again.entries] == [0, 40]
    assert again.add(50).name == "002"
    record = json.loads((run / SNAPSHOTS_FILE).read_text())["snapshots"]
    assert [e["snapshot"] for e in record] == ["000", "001", "002"]


def test_the_live_flag_is_a_runtime_option():
    request = parse_train_argv(["--images", "a", "--masks", "b", "--out", "c",
                                "--minutes", "5", "--live"])
    assert request.live and request.runtime().live
    assert "live" not in request.settings


def test_masks_written_while_a_run_trains_join_it(tmp_path, monkeypatch):
    monkeypatch.setattr(live, "CHECK_SECONDS", 0.2)
    images, masks = write_synthetic_dataset(tmp_path / "d", n_images=2, shape=(80, 80),
                                            rng=np.random.default_rng(5))
    run = tmp_path / "run"
    cfg = TrainConfig.from_settings(images=str(images), masks=str(masks), out=str(run),
                                    minutes=2, width=4, depth=3, tile=92, dropout=0.0,
                                    val_fraction=0.0, val_every=10_000)
    stop, result = threading.Event(), {}
    trainer = threading.Thread(target=lambda: result.update(res=train(
        cfg, Hooks(stop=stop), Runtime(progress=False, live=True))))
    trainer.start()
    try:
        record = wait_for(lambda: snapshots(run), 1)
        first = sorted(masks.iterdir())[0]
        new = read_image(first).astype(np.uint16)
        new[:10, :10] = new.max() + 1  # one more cell, painted in the corner
        save_image(first, new)  # written whole, under a temporary name first
        record = wait_for(lambda: snapshots(run), 2)
    finally:
        stop.set()
        trainer.join(timeout=60)
    res = result["res"]
    assert res.interrupted and res.iterations > record[1]["iteration"] > 0
    kept = run / "snapshots" / record[1]["snapshot"] / f"1-{masks.name}" / first.name
    np.testing.assert_array_equal(read_image(kept), new)
    old = run / "snapshots" / record[0]["snapshot"] / f"1-{masks.name}" / first.name
    assert not np.array_equal(read_image(old), new)
    assert "live" not in json.loads((run / "config.json").read_text())["train"]


def snapshots(run) -> list[dict]:
    path = run / SNAPSHOTS_FILE
    return json.loads(path.read_text())["snapshots"] if path.exists() else []


def wait_for(get, count: int, timeout: float = 60.0) -> list[dict]:
    """The record once it has ``count`` entries (the training thread writes it)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        record = get()
        if len(record) >= count:
            return record
        time.sleep(0.05)
    pytest.fail(f"no snapshot {count} within {timeout} s: {get()}")
