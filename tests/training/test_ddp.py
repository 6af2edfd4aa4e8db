"""Training in two processes with DistributedDataParallel (gloo, on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tileunet.io.images import save_image
from tileunet.synthetic import synthetic_cells
from tileunet.training import ddp

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this PyTorch has no torch.distributed")

# run under torchrun: trains, then each rank saves the weights it ended with
RANK_SCRIPT = """
import os, sys
from safetensors.torch import save_file
from tileunet.augment.params import AugmentConfig
from tileunet.training.config import Runtime, TrainConfig
from tileunet.training.loop import train
images, masks, out, iterations = sys.argv[1:5]
cfg = TrainConfig.from_settings(images=images, masks=masks, out=out,
                                iterations=int(iterations), width=8, depth=2, tile=68,
                                dropout=0.0, val_fraction=0.0,
                                augment=AugmentConfig(enabled=False), warmup=5, seed=1)
res = train(cfg, runtime=Runtime(progress=False))
rank = os.environ["RANK"]
save_file({k: v.contiguous() for k, v in res.net.state_dict().items()},
          os.path.join(out, f"rank{rank}.safetensors"))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def one_image(tmp_path) -> tuple[Path, Path]:
    image, labels = synthetic_cells((64, 64), rng=np.random.default_rng(0))
    save_image(tmp_path / "i" / "a.tif", (image * 255).astype(np.uint8))
    save_image(tmp_path / "m" / "a.tif", labels.astype(np.uint16))
    return tmp_path / "i", tmp_path / "m"


def _losses(run: Path) -> list[float]:
    rows = (run / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("train_loss")
    return [float(r.split(",")[col]) for r in rows[1:]]


def test_ranks_from_the_environment(monkeypatch):
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert ddp.from_environment() == ddp.Ranks(0, 1, 0)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    r = ddp.from_environment()
    assert (r.rank, r.world, r.local, r.main, r.distributed) == (3, 4, 1, False, True)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK=4, WORLD_SIZE=4"):
        ddp.from_environment()


def test_each_rank_draws_its_own_tiles_and_rank_0_keeps_the_seed():
    seeds = [ddp.Ranks(r, 3).seed(7) for r in range(3)]
    assert seeds[0] == 7 and len(set(seeds)) == 3
    assert ddp.Ranks(1, 3).seed(7) == ddp.Ranks(1, 2).seed(7)  # depends on seed and rank


def test_two_processes_end_with_identical_weights_and_the_loss_falls(tmp_path, one_image):
    images, masks = one_image
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(images), str(masks), str(out), "60"],
        env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = load_file(str(out / "rank0.safetensors"))
    w1 = load_file(str(out / "rank1.safetensors"))
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # rank 0 alone wrote the run; its model is the weights both ranks hold
    saved = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(saved[k], w0[k]) for k in w0)
    assert json.loads((out / "config.json").read_text())["processes"] == 2
    losses = _losses(out)  # averaged over the two ranks
    assert losses[-1] < 0.8 * losses[0], losses
    ck = json.loads(_metadata(out / "checkpoint.safetensors")["state"])
    assert ck["iteration"] == 60 and len(ck["rng_ranks"]) == 2
    assert ck["rng_ranks"][0] != ck["rng_ranks"][1]  # different tiles on each rank


def _metadata(path: Path) -> dict[str, str]:
    from tileunet.checkpoint import read_metadata

    return read_metadata(path)


@pytest.mark.slow
def test_cli_devices_2_trains_and_resumes(tmp_path, one_image):
    images, masks = one_image
    out = tmp_path / "run"
    base = [sys.executable, "-m", "tileunet", "-q", "train", "--images", str(images),
            "--masks", str(masks), "--out", str(out), "--width", "4", "--depth", "2",
            "--tile", "68", "--val-fraction", "0", "--devices", "2"]
    first = subprocess.run(base + ["--iterations", "6"], env=_env(), capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("trained: 6 iterations") == 1  # rank 0 alone reports
    again = subprocess.run(base + ["--iterations", "10", "--resume"], env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trained: 10 iterations" in again.stdout
    state = json.loads(_metadata(out / "checkpoint.safetensors")["state"])
    assert state["iteration"] == 10 and len(state["rng_ranks"]) == 2
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[-1].startswith("10,")
