"""Quick runs of the speed and memory benchmarks, so that they keep working.

The figures they print here mean nothing (tiny sizes, a busy machine); the real runs and
their figures are in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tileunet import UNet
from tileunet.checkpoint import save_model

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
pytestmark = pytest.mark.slow


@pytest.fixture()
def env(tmp_path):
    return {**os.environ, "TILEUNET_BENCH_DIR": str(tmp_path / "bench")}


@pytest.fixture()
def tiny_model(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    save_model(path, UNet(depth=3, width=4, dropout=0.0))
    return path


def run(script: str, args: list[str], env: dict) -> str:
    res = subprocess.run([sys.executable, str(BENCH / script), *args], env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_bench_predict(env, tiny_model, tmp_path):
    out = run("bench_predict.py", ["--size", "300", "--repeats", "1", "--scaling", "256",
                                   "--model", str(tiny_model), "--guard-size", "64"], env)
    assert "speed-up" in out and "of matmul peak" in out and "accuracy guard" in out
    result = json.loads((tmp_path / "bench" / "out" / "bench_predict_cpu.json").read_text())
    assert result["speed"]["naive_tiles"] == 1 and result["speed"]["speedup"] > 0
    assert 0.99 < result["guard"]["auto_same_class"] <= 1.0
    assert [r["size"] for r in result["scaling"]] == [256]
    assert (tmp_path / "bench" / "figures" / "predict_scaling_cpu.png").stat().st_size > 0


def test_bench_train(env, tmp_path):
    out = run("bench_train.py", ["--width", "4", "--depth", "3", "--steps", "1", "--repeats",
                                 "1", "--iterations", "3", "--tiles", "3", "--images", "2",
                                 "--pipeline-workers", "0"], env)
    assert "speed-up" in out and "data pipeline" in out
    result = json.loads((tmp_path / "bench" / "out" / "bench_train_cpu.json").read_text())
    assert len(result["convergence"]["baseline"]["losses"]) == 3
    assert set(result["pipeline"]["tiles_per_s"]) == {"workers=0", "device"}
    assert (tmp_path / "bench" / "figures" / "train_loss_cpu.png").stat().st_size > 0


def test_bench_memory(env, tiny_model, tmp_path):
    out = run("bench_memory.py", ["--size", "600", "--model", str(tiny_model),
                                  "--limit-gb", "4"], env)
    assert "peak resident memory" in out and "under the 4 GB limit" in out
    saved = tmp_path / "bench" / "out" / "bench_memory_600_given-model.json"
    result = json.loads(saved.read_text())
    assert result["peak_rss"] > 0 and len(result["outputs"]) == 4


def test_bench_blockwise(env, tmp_path):
    torch.manual_seed(0)
    model = tmp_path / "tiny_norm.safetensors"
    save_model(model, UNet(depth=3, width=4, dropout=0.0),
               {"normalization": {"method": "percentile", "low": 1.0, "high": 99.8}})
    out = run("bench_blockwise.py", ["--size", "600", "--block", "200", "--model", str(model),
                                     "--workers", "2", "--limit-gb", "4"], env)
    assert "peak resident memory of a worker" in out and "under the 4 GB limit" in out
    result = json.loads((tmp_path / "bench" / "out" / "bench_blockwise_600_w2.json").read_text())
    assert result["peak_rss"] > 0 and result["worker_peak_rss"] > 0 and result["objects"] >= 0


def test_measured_child_peak_excludes_the_callers_pages(tmp_path):
    """A child started from a process holding 400 MB must not report those 400 MB
    (Linux carries the resident high-water mark across exec)."""
    script = f"""
import sys
sys.path.insert(0, {str(BENCH)!r})
import numpy as np
from bench_memory import run_measured
held = np.ones(400 * 2**20 // 8)  # 400 MiB resident here
code, seconds, peak, samples = run_measured(
    [sys.executable, "-c", "import numpy as np; a = np.ones(50 * 2**20 // 8); a.sum()"])
print(code, peak, len(samples), held[-1])
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, check=True)
    code, peak, n_samples, _ = res.stdout.split()
    assert int(code) == 0 and int(n_samples) >= 1
    # 50 MiB array + Python and NumPy (~40 MB); never the caller's 400 MiB
    assert 50 * 2**20 < int(peak) < 250 * 2**20


def test_correction_loop(env, tiny_model, tmp_path, shared_data):
    out = tmp_path / "loop"
    run("correction_loop.py", ["--data", str(shared_data), "--out", str(out), "--start",
                               str(tiny_model), "--rounds", "1", "--minutes", "1",
                               "--iterations", "4", "--precision", "fp32", "--quiet"], env)
    result = json.loads((out / "metrics.json").read_text())
    first, second = result["rounds"]
    assert first["corrected"] == [] and len(second["corrected"]) == 1
    # the frame corrected is the one the start model segmented worst
    worst = min(first["pool"], key=lambda t: first["pool"][t][0])
    assert second["corrected"] == [worst] and second["iterations"] == 4
    assert set(second["test"]) == {"002", "021", "033", "039"}
    assert all(0 <= s <= 1 for s, _ in second["test"].values())
    layers = json.loads((out / "runs" / "run-001" / "annotations" / "layers.json").read_text())
    assert layers["start_model"] == str(tiny_model) and "--init" in layers["command"]
    assert (out / "loop.png").stat().st_size > 0 and "| 1 | t" in (out / "table.md").read_text()


def test_tile_consistency(env, tmp_path):
    """The tiling changes nothing without normalisation layers, and does with group norm."""
    from tileunet.io.images import save_image

    image = tmp_path / "img.tif"
    save_image(image, np.random.default_rng(0).random((150, 130)).astype(np.float32))
    figures = {}
    for norm in ("none", "group"):
        torch.manual_seed(0)
        path = tmp_path / f"{norm}.safetensors"
        save_model(path, UNet(depth=3, width=8, dropout=0.0, norm=norm).eval())
        out = run("tile_consistency.py", [str(path), str(image), "--tiles", "44", "92"], env)
        row = out.strip().splitlines()[-1].split("|")
        figures[norm] = float(row[3])
    assert figures["none"] < 1e-5 < figures["group"]


def test_isbi_errors_puts_a_one_pixel_shift_on_the_membrane_edge(env, tmp_path):
    """Labels shifted by one column: every wrong pixel is 1 px from a labelled edge;
    an invented membrane blob inside a cell is >= 5 px from one."""
    from tileunet.io.images import save_image

    label = np.full((64, 64), 255, np.uint8)
    label[:, 30:34] = 0  # a vertical membrane 4 px wide
    (tmp_path / "pred").mkdir()
    (tmp_path / "lab").mkdir()
    save_image(tmp_path / "lab" / "a.png", label)
    prob = np.roll(label > 0, 1, axis=1).astype(np.float32)  # edges 1 px to the right
    prob[5:9, 5:9] = 0.0  # a 4 x 4 membrane invented 21 px from the edge
    save_image(tmp_path / "pred" / "a_prob.tif", prob)
    out = run("isbi_errors.py", [str(tmp_path / "pred"), "--labels", str(tmp_path / "lab")],
              env)
    head = [h.strip() for h in out.splitlines()[0].split("|")[2:-1]]
    row = dict(zip(head, map(float, out.splitlines()[2].split("|")[2:-1]), strict=True))
    n = 64 * 64
    assert row["misclassified"] == pytest.approx((2 * 64 + 16) / n, abs=1e-4)
    assert row["1 px"] == pytest.approx(2 * 64 / n, abs=1e-4)
    assert row[">= 5 px"] == pytest.approx(16 / n, abs=1e-4)
    assert row["missed"] == pytest.approx(64 / n, abs=1e-4)
    assert row["invented"] == pytest.approx((64 + 16) / n, abs=1e-4)
    assert row["finer grid"] == row["misclassified"] and row["threshold"] == 0.0
    # two folders: their mean probability (the shift averaged with the labels: half-way)
    (tmp_path / "exact").mkdir()
    save_image(tmp_path / "exact" / "a_prob.tif", (label > 0).astype(np.float32))
    out = run("isbi_errors.py", [str(tmp_path / "pred"), str(tmp_path / "exact"),
                                 "--labels", str(tmp_path / "lab")], env)
    mean = dict(zip(head, map(float, out.splitlines()[2].split("|")[2:-1]), strict=True))
    assert mean["misclassified"] < row["misclassified"]


def test_bench_evaluate_on_one_slice(env, tmp_path, shared_data):
    out = run("bench_evaluate.py", ["--data", str(shared_data), "--slices", "1",
                                    "--repeats", "1"], env)
    assert "| rand_error |" in out and "the challenge's figure" in out
    result = json.loads((tmp_path / "bench" / "out" / "bench_evaluate.json").read_text())
    assert result["slices"] == 1 and result["total"]["after"] > 0
    assert set(result["seconds_per_slice"]) == {"pixel_error, misclassified", "rand_error",
                                                 "v_rand, v_info", "warping_error"}
    assert 0 < result["scores"]["stack_v_rand"] <= 1


def test_bench_throughput(env, tmp_path):
    """The quick run times every variant of its tiny networks and writes the tables."""
    out = run("bench_throughput.py", ["--quick"], env)
    assert "of limit" in out and "End to end" in out
    folder = tmp_path / "bench" / "out" / "bench_throughput"
    table = (folder / "table.md").read_text()
    headers = [[h.strip() for h in line.split("|")[1:-1]] for line in table.splitlines()
               if line.startswith("| network |")]  # limits, throughput, batches, end to end
    assert ["network", "size", "precision", "layout", "TTA", "tiles / batch",
            "seconds, median (min)", "Mpx/s", "limit Mpx/s", "of limit", "GFLOP/s",
            "of peak"] in headers
    assert "MFLOP per output px" in table and "predict s" in table and "instances s" in table
    result = json.loads((folder / "metrics.json").read_text())
    rows = result["throughput"]
    precisions = {"fp32", "bf16"} if result["bf16_native"] else {"fp32"}
    assert result["auto"] == ("bf16" if result["bf16_native"] else "fp32")
    assert set(result["peaks"]) == precisions == {r["precision"] for r in rows}
    assert {(r["layout"], r["tta"]) for r in rows} == {
        ("channels-last", False), ("NCHW", False), ("channels-last", True)}
    assert len(rows) == 2 * 3 * len(precisions)  # two tiny networks
    assert all(r["mpx_s"] > 0 and r["of_peak"] > 0 and r["limit_mpx_s"] > 0 for r in rows)
    first = result["end_to_end"][0]
    assert first["precision"].startswith("auto") and first["objects"] > 0
    assert first["total_s"] >= first["predict_s"] > 0 and result["seconds"] > 0


def test_bench_int8(env, tmp_path):
    """int8 through ONNX Runtime is timed against PyTorch and its changed pixels counted."""
    torch.manual_seed(0)
    model = tmp_path / "tiny_tile.safetensors"
    save_model(model, UNet(depth=3, width=4, dropout=0.0), {"tile": 92})
    out = run("bench_int8.py", ["--model", str(model), "--images", "2", "--size", "96",
                                "--repeats", "1"], env)
    assert "ONNX Runtime int8" in out and "qualif" in out
    result = json.loads((tmp_path / "bench" / "out" / "bench_int8.json").read_text())
    rows = {r["runtime"]: r for r in result["rows"]}
    assert set(rows) == {"PyTorch fp32", "PyTorch bf16", "ONNX Runtime fp32",
                         "ONNX Runtime int8"}
    assert rows["PyTorch fp32"]["changed"] == 0.0  # the reference
    assert rows["ONNX Runtime fp32"]["changed"] < 0.01  # the same network
    assert all(r["tiles_per_s"] > 0 for r in rows.values())
    assert result["qualifies"] == (rows["ONNX Runtime int8"]["changed"] <= 0.001 and
                                   rows["ONNX Runtime int8"]["tiles_per_s"]
                                   > rows["PyTorch bf16"]["tiles_per_s"])


#: every planned setting given: the accuracy benchmarks skip the plan's probe
TINY_NETWORK = ["--width", "4", "--depth", "3", "--tile", "92", "--batch-size", "1",
                "--optimizer", "adamw", "--lr", "0.001", "--momentum", "0.9",
                "--weight-decay", "0.0001", "--norm", "none", "--dropout", "0",
                "--weighted-tiles", "0", "--precision", "fp32", "--quiet"]


def test_dic_hela_time_split_trains_as_the_default_command(env, tmp_path, shared_data):
    """Leave-out by time with the default command's validation (one training frame in
    five held out, the best weights kept), the magnification augmentation and the moving
    average of the weights (the last step's own weights scored beside it), with the
    gray-value augmentation's ranges given."""
    out = tmp_path / "hela"
    run("dic_hela.py", ["--data", str(shared_data), "--out", str(out), "--split", "time",
                        "--validation", "holdout", "--zoom", "0.8", "1.25", "--ema", "0.9",
                        "--contrast", "0.5", "2", "--gamma", "0.7", "1.4",
                        "--brightness", "0.2", "--scale", "0.25",
                        "--iterations", "4", "--val-every", "2", *TINY_NETWORK,
                        "--ablation", "full", "--ablation", "no-tta"], env)
    result = json.loads((out / "metrics.json").read_text())
    assert result["validation"] == "holdout"
    for name in ("full", "no-tta"):
        folds = result["results"][name]["folds"]
        assert [f["val_frames"] for f in folds] == [["039", "054"], ["002", "005", "021"]]
        assert all(0 <= s <= 1 for f in folds
                   for s in (*f["seg"], *f["seg_chosen"], *f["seg_chosen_last"]))
    for k in (0, 1):
        run_dir = out / f"time{k}" / "full" / "run"
        train = json.loads((run_dir / "config.json").read_text())["train"]
        assert train["val_images"] is None and train["keep"] == "best"
        assert train["augment"]["zoom"] == [0.8, 1.25] and train["ema"] == 0.9
        assert (train["augment"]["contrast"], train["augment"]["gamma"],
                train["augment"]["brightness"]) == ([0.5, 2.0], [0.7, 1.4], 0.2)
        assert "val_seg" in (run_dir / "metrics.csv").read_text()  # the held-out frame
    assert "validation: holdout" in (out / "table.md").read_text()


def test_dic_hela_runs_one_fold_alone(env, tmp_path, shared_data):
    out = tmp_path / "hela"
    run("dic_hela.py", ["--data", str(shared_data), "--out", str(out), "--split", "time",
                        "--fold", "1", "--validation", "none", "--scale", "0.25",
                        "--iterations", "2", *TINY_NETWORK], env)
    folds = json.loads((out / "metrics.json").read_text())["results"]["full"]["folds"]
    assert [f["val_frames"] for f in folds] == [["002", "005", "021"]]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["time1"]
    assert "fold 1 (time split" in (out / "table.md").read_text()


def test_isbi2012_without_validation_trains_on_every_slice(env, tmp_path, shared_data):
    """The reverse fold: slices 5-24 train (all of them: no validation), 0-4 are scored."""
    out = tmp_path / "isbi"
    run("isbi2012.py", ["--data", str(shared_data), "--out", str(out), "--validation",
                        "none", "--fold", "1", "--scale", "0.5", "--iterations", "3",
                        *TINY_NETWORK], env)
    result = json.loads((out / "metrics.json").read_text())
    assert result["validation"] == "none" and result["scored_slices"] == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in (out / "data" / "val" / "images").iterdir()) == [
        f"{i:02d}.png" for i in range(5)]
    assert len(list((out / "data" / "train" / "images").iterdir())) == 20
    assert len(result["results"]["full"]["per_image"]["v_rand"]) == 5
    train = json.loads((out / "full" / "run" / "config.json").read_text())["train"]
    assert (train["val_images"], train["val_fraction"], train["keep"]) == (None, 0.0, "last")
    assert 0 < result["results"]["full"]["stack"]["v_rand"] <= 1
