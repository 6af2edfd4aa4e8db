"""The demo and real data, end to end (slow: run by `make test-all` and CI)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from tileunet.cli import main
from tileunet.demo import run_demo


@pytest.mark.slow
def test_demo_end_to_end_small(tmp_path):
    lines: list[str] = []
    res = run_demo(tmp_path / "demo", minutes=0.2, size=300, n_images=3,
                   train_shape=(96, 96), progress=False, say=lines.append)
    for name in ("large-overlay.png", "overlay-crop.png", "weight-map.png", "loss.png",
                 "large-prob.tif", "large-instances.tif", "run/model.safetensors"):
        assert (tmp_path / "demo" / name).is_file(), name
    assert 0.0 <= res.pixel_iou <= 1.0 and 0 <= res.separated <= res.touching
    assert res.touching > 0
    assert any("pixel IoU" in line for line in lines)
    prob = tifffile.imread(tmp_path / "demo" / "large-prob.tif")
    assert prob.shape == (300, 300)
    # a second run refuses to replace the folder unless told to
    with pytest.raises(FileExistsError):
        run_demo(tmp_path / "demo", minutes=0.1, size=64, n_images=2, train_shape=(96, 96),
                 progress=False, say=lines.append)


@pytest.mark.slow
def test_demo_with_iterations_and_a_seed_repeats_exactly(tmp_path):
    from safetensors.numpy import load_file

    for name in ("a", "b"):
        assert main(["--quiet", "demo", "--out", str(tmp_path / name), "--iterations", "3",
                     "--size", "96", "--seed", "4"]) == 0
    a, b = (load_file(tmp_path / n / "run" / "model.safetensors") for n in ("a", "b"))
    assert a.keys() == b.keys()
    for k in a:  # the same draws and steps; bf16 kernels may round a last bit apart
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-9, err_msg=k)
    pa, pb = (tifffile.imread(tmp_path / n / "large-prob.tif") for n in ("a", "b"))
    np.testing.assert_allclose(pa, pb, atol=1e-5)
    la, lb = (tifffile.imread(tmp_path / n / "large-instances.tif") for n in ("a", "b"))
    assert (la == lb).mean() > 0.999
    rows = (tmp_path / "a" / "run" / "metrics.csv").read_text().splitlines()
    assert rows[-1].split(",")[0] == "3"  # stopped at the third step


@pytest.mark.slow
@pytest.mark.data
def test_train_and_predict_on_dic_hela(shared_data, tmp_path):
    hela = shared_data / "dic-hela" / "01"
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for t in ("002", "005", "021"):
        (images / f"t{t}.tif").symlink_to(hela / "images" / f"t{t}.tif")
        (masks / f"man_seg{t}.tif").symlink_to(hela / "masks" / f"man_seg{t}.tif")
    run = tmp_path / "run"
    assert main(["-q", "train", "--images", str(images), "--masks", str(masks), "--out",
                 str(run), "--iterations", "3", "--width", "4", "--depth", "3",
                 "--tile", "188", "--val-every", "3"]) == 0
    out = tmp_path / "pred"
    assert main(["-q", "predict", str(run), str(images / "t002.tif"), "-o", str(out)]) == 0
    prob = tifffile.imread(out / "t002_prob.tif")
    assert prob.shape == (512, 512) and np.isfinite(prob).all()
    gt = tmp_path / "gt"
    gt.mkdir()
    (gt / "man_seg002.tif").symlink_to(hela / "masks" / "man_seg002.tif")
    assert main(["-q", "evaluate", "--pred", str(out), "--gt", str(gt)]) == 0
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["image"] for r in rows] == ["t002", "mean", "stack"]
    assert {"seg", "det", "iou", "separated"} <= set(rows[1])
    assert rows[-1]["seg"] == rows[0]["seg"] and rows[-1]["det"] == rows[0]["det"]


@pytest.mark.slow
@pytest.mark.data
def test_train_predict_evaluate_on_isbi2012(shared_data, tmp_path):
    isbi = shared_data / "isbi2012" / "train"
    run = tmp_path / "run"
    assert main(["-q", "train", "--images", str(isbi / "images"), "--masks",
                 str(isbi / "labels"), "--out", str(run), "--iterations", "2", "--width", "4",
                 "--depth", "3", "--tile", "188", "--val-every", "2"]) == 0
    out, gt = tmp_path / "pred", tmp_path / "gt"
    gt.mkdir()
    for name in ("20.png", "24.png"):
        (gt / name).symlink_to(isbi / "labels" / name)
    assert main(["-q", "predict", str(run), str(isbi / "images" / "20.png"),
                 str(isbi / "images" / "24.png"), "-o", str(out)]) == 0
    assert main(["-q", "evaluate", "--pred", str(out), "--gt", str(gt), "--metric",
                 "isbi"]) == 0
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["image"] for r in rows] == ["20", "24", "mean", "stack"]
    mean = {k: v for k, v in rows[-2].items() if k != "image"}
    assert set(mean) == {"pixel_error", "misclassified", "rand_error", "warping_error",
                         "v_rand", "v_info"}
    assert all(0.0 <= v <= 1.0 for v in mean.values())
    stack = rows[-1]  # the challenge's figures: one threshold for both slices
    assert 0.0 <= stack["v_rand"] <= mean["v_rand"] and 0.0 <= stack["v_info"] <= 1.0
    assert stack["v_rand_threshold"] in [round(0.1 * k, 1) for k in range(10)] + [1 - 2**-53]


@pytest.mark.slow
def test_ctrl_c_on_the_command_line_saves_and_resumes(tmp_path):
    """A real SIGINT: exit status 130, a checkpoint, and --resume continues from it."""
    import signal
    import subprocess
    import sys
    import time

    from tileunet.synthetic import write_synthetic_dataset

    images, masks = write_synthetic_dataset(tmp_path / "d", n_images=2, shape=(64, 64),
                                            rng=np.random.default_rng(0))
    run = tmp_path / "run"
    args = [sys.executable, "-m", "tileunet", "-q", "train", "--images", str(images),
            "--masks", str(masks), "--out", str(run), "--width", "4", "--depth", "3",
            "--tile", "92", "--val-every", "5"]
    # a shell that runs this suite in the background hands SIGINT down as ignored;
    # a person's Ctrl-C reaches a foreground process with the default disposition
    proc = subprocess.Popen([*args, "--iterations", "100000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (run / "metrics.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in out and "--resume" in err
    assert (run / "checkpoint.safetensors").is_file() and (run / "model.safetensors").is_file()
    stopped_at = int(out.split("interrupted: ")[1].split()[0])
    assert stopped_at >= 5
    target = stopped_at + 3
    done = subprocess.run([*args, "--iterations", str(target), "--resume"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[-1].split(",")[0] == str(target)
