"""Fault tests: training killed by a signal at several moments, then resumed.

The processes are real (``python -m tileunet train``), so the signals are too: SIGTERM
is what ``timeout``, SLURM and ``docker stop`` send; SIGKILL is the out-of-memory killer
or a power cut, after which only what is on disk counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tileunet.checkpoint import read_metadata
from tileunet.synthetic import write_synthetic_dataset

TINY = ["--width", "4", "--depth", "3", "--tile", "92", "--val-every", "5",
        "--precision", "fp32", "--seed", "1", "--iterations", "40"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    return write_synthetic_dataset(tmp_path_factory.mktemp("data"), n_images=3,
                                   shape=(96, 80), rng=np.random.default_rng(5))


def train_cmd(dataset, out: Path, *extra: str) -> list[str]:
    images, masks = dataset
    return [sys.executable, "-m", "tileunet", "-q", "train", "--images", str(images),
            "--masks", str(masks), "--out", str(out), *TINY, *extra]


def checkpoint_iteration(run: Path) -> int | None:
    try:
        meta = read_metadata(run / "checkpoint.safetensors")
    except (OSError, ValueError):
        return None
    return int(json.loads(meta["state"])["iteration"])


def start_and_signal(cmd: list[str], run: Path, sig: int, after_iteration: int
                     ) -> subprocess.CompletedProcess:
    """Start training, wait until a checkpoint at ``after_iteration`` or later is on
    disk, then send ``sig``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while (checkpoint_iteration(run) or 0) < after_iteration:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory) -> dict[str, torch.Tensor]:
    run = tmp_path_factory.mktemp("runs") / "straight"
    subprocess.run(train_cmd(dataset, run), check=True, capture_output=True)
    return load_file(str(run / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:  # float rounding of the resumed arithmetic order at most
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


@pytest.mark.parametrize("at", [3, 25])
def test_kill_9_then_resume_equals_an_uninterrupted_run(dataset, straight, tmp_path, at):
    run = tmp_path / "run"
    # a checkpoint after every step (0.01 s apart), so a kill can land anywhere
    done = start_and_signal(train_cmd(dataset, run, "--checkpoint-minutes", "1e-9"), run,
                            signal.SIGKILL, at)
    assert done.returncode == -signal.SIGKILL
    assert checkpoint_iteration(run) >= at
    resumed = subprocess.run(train_cmd(dataset, run, "--resume"), capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "40 iterations" in resumed.stdout
    assert_same_weights(straight, load_file(str(run / "model.safetensors")))
    assert not list(run.glob(".*.tmp"))


def test_sigterm_saves_and_says_how_to_resume(dataset, straight, tmp_path):
    run = tmp_path / "run"
    done = start_and_signal(train_cmd(dataset, run, "--checkpoint-minutes", "1e-9"), run,
                            signal.SIGTERM, 10)
    assert done.returncode == 130, done.stderr
    assert "--resume" in done.stderr and "Traceback" not in done.stderr
    assert (run / "model.safetensors").exists()  # the weights so far, usable at once
    resumed = subprocess.run(train_cmd(dataset, run, "--resume"), capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(straight, load_file(str(run / "model.safetensors")))


def test_kill_9_before_the_first_checkpoint_can_be_started_again(dataset, straight,
                                                                 tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(dataset, run), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (run / "config.json").exists():  # the weight maps are cached by now
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if (run / "checkpoint.safetensors").exists():
        pytest.skip("the run got to its end before the kill")  # (a very fast machine)
    again = subprocess.run(train_cmd(dataset, run), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert_same_weights(straight, load_file(str(run / "model.safetensors")))


# ------------------------------------------------------------------ prediction
def predict_cmd(run: Path, images: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tileunet", "-q", "predict", str(run), str(images),
            "-o", str(out), "--precision", "fp32", *extra]


@pytest.fixture(scope="module")
def model_and_images(dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    subprocess.run(train_cmd(dataset, root / "run", "--iterations", "3"), check=True,
                   capture_output=True)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    from tileunet.io.images import save_image
    from tileunet.synthetic import synthetic_cells

    for i in range(6):
        image, _ = synthetic_cells((300, 260), rng=rng)
        save_image(images / f"img{i}.tif", (image * 255).astype(np.uint8))
    straight = root / "straight"
    subprocess.run(predict_cmd(root / "run", images, straight), check=True,
                   capture_output=True)
    return root / "run", images, straight


def outputs_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# after two whole images (the third begun), or in the middle of the fourth image's set
# (its probability map, the first of its four files, is written)
@pytest.mark.parametrize("sig, after", [(signal.SIGKILL, "img1_overlay.png"),
                                        (signal.SIGTERM, "img1_overlay.png"),
                                        (signal.SIGKILL, "img3_prob.tif")])
def test_a_killed_prediction_is_finished_by_skip_existing(model_and_images, tmp_path, sig,
                                                          after):
    run, images, straight = model_and_images
    out = tmp_path / "out"
    proc = subprocess.Popen(predict_cmd(run, images, out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / after).exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    done_before = {p.name: p.stat().st_mtime_ns for p in out.glob("img0_*")}
    (out / ".img4_mask.png.x1y2.tmp").write_bytes(b"half")  # as a kill -9 leaves it
    refused = subprocess.run(predict_cmd(run, images, out), capture_output=True, text=True)
    assert refused.returncode == 2 and "--skip-existing" in refused.stderr
    again = subprocess.run(predict_cmd(run, images, out, "--skip-existing"),
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert outputs_of(out) == outputs_of(straight)  # all 6 x 4 files, byte for byte
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("img0_*")} == done_before


def test_a_signal_inside_a_deferred_block_is_raised_after_it():
    """A training step's update and its counters happen whole: a SIGTERM or Ctrl-C that
    arrives in between is held and raised when the block ends."""
    from tileunet.interrupt import interrupts_deferred, terminate_as_interrupt

    done = []
    before = signal.getsignal(signal.SIGINT)
    with terminate_as_interrupt(), pytest.raises(KeyboardInterrupt, match="signal 15"):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler has run by now; the block goes on
            done.append("rest of the step")
    assert done == ["rest of the step"]
    assert signal.getsignal(signal.SIGINT) is before  # handlers put back
    with interrupts_deferred():
        done.append("no signal, no interrupt")
    assert len(done) == 2


def test_an_interrupt_dropped_inside_a_finaliser_is_raised_again():
    """Python drops a KeyboardInterrupt raised in a finaliser ("Exception ignored");
    the signal is noted, so the loop's next check raises it."""
    from tileunet.interrupt import interrupts_noted

    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler raises in here, and Python drops it

    before = signal.getsignal(signal.SIGTERM)
    with interrupts_noted() as noted:
        Finalised()  # collected at once, its interrupt dropped
        assert noted.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt, match="signal 15"):
            noted.raise_if_any()
    assert signal.getsignal(signal.SIGTERM) is before
    with interrupts_noted() as quiet:
        quiet.raise_if_any()  # nothing noted, nothing raised
