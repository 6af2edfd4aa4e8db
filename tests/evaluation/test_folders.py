from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tileunet.cli import main
from tileunet.evaluation.folders import evaluate, pair_predictions
from tileunet.io.images import save_image


def two_cells() -> np.ndarray:
    gt = np.zeros((20, 20), np.uint16)
    gt[2:10, 2:10] = 1
    gt[2:10, 10:18] = 2  # touches cell 1
    gt[12:18, 4:12] = 5  # non-contiguous id
    return gt


@pytest.fixture
def folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    g = two_cells()
    save_image(gt / "man_seg002.tif", g)
    save_image(pred / "t002_instances.tif", g)  # perfect
    merged = g.copy()
    merged[merged == 2] = 1  # the two touching cells merged
    save_image(gt / "man_seg005.tif", g)
    save_image(pred / "t005_instances.tif", merged)
    return pred, gt


def test_pairs_by_ctc_number(folders):
    pred, gt = folders
    pairs = pair_predictions(pred, gt, "instances")
    assert [(n, p.name, g.name) for n, p, g in pairs] == [
        ("t002", "t002_instances.tif", "man_seg002.tif"),
        ("t005", "t005_instances.tif", "man_seg005.tif")]


def test_scores_of_a_perfect_and_a_merged_prediction(folders):
    pred, gt = folders
    rows = evaluate(pred, gt, progress=False, jobs=1)
    perfect, merged, mean, stack = rows
    assert perfect["seg"] == 1.0 and perfect["f1"] == 1.0 and perfect["separated"] == 1.0
    assert perfect["det"] == 1.0
    # the merge: cell 1 (64 px) is more than half covered by the merged object (128 px):
    # J = 64/128; cell 2 likewise 0.5; cell 5 is exact -> SEG = (0.5 + 0.5 + 1) / 3
    assert merged["seg"] == pytest.approx(2 / 3)
    assert merged["separated"] == 0.0
    assert merged["iou"] == 1.0
    # one object over two: one split (5) against 3 objects built from nothing (30)
    assert merged["det"] == pytest.approx(1 - 5 / 30)
    assert mean["image"] == "mean" and mean["seg"] == pytest.approx((1 + 2 / 3) / 2)
    # over both frames, as the Cell Tracking Challenge: sums before normalising
    assert stack["image"] == "stack"
    assert stack["det"] == pytest.approx(1 - 5 / 60)
    assert (stack["det_ns"], stack["det_fn"], stack["det_fp"], stack["det_gt"]) == (1, 0, 0, 6)
    assert stack["seg"] == pytest.approx((3 + 2) / 6) and stack["seg_objects"] == 6
    assert math.isnan(stack["f1"])  # no figure over all images


def test_images_scored_in_parallel_give_the_same_rows(folders):
    pred, gt = folders
    one = evaluate(pred, gt, progress=False, jobs=1)
    two = evaluate(pred, gt, progress=False, jobs=2)
    assert json.dumps(one) == json.dumps(two)
    with pytest.raises(ValueError, match="jobs must be a positive whole number, got 0"):
        evaluate(pred, gt, progress=False, jobs=0)


def test_an_error_in_a_worker_reaches_the_caller(folders):
    pred, gt = folders
    save_image(pred / "t005_instances.tif", np.zeros((8, 8), np.uint16))  # wrong size
    with pytest.raises(ValueError, match="t005_instances.tif: size 8x8 does not match"):
        evaluate(pred, gt, progress=False, jobs=2)


def test_missing_prediction_names_the_file(folders):
    pred, gt = folders
    (pred / "t005_instances.tif").unlink()
    with pytest.raises(ValueError, match="man_seg005.tif: no prediction"):
        evaluate(pred, gt, progress=False)


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(".", ".", metrics=["nope"], progress=False)


def test_cli_writes_csv_and_json_and_refuses_to_overwrite(folders, capsys):
    pred, gt = folders
    assert main(["-q", "evaluate", "--pred", str(pred), "--gt", str(gt), "--metric", "seg",
                 "--metric", "separated"]) == 0
    out = capsys.readouterr().out
    assert "seg" in out and "mean" in out
    data = json.loads((pred / "metrics.json").read_text())
    assert [r["image"] for r in data] == ["t002", "t005", "mean", "stack"]
    assert math.isclose(data[0]["seg"], 1.0) and data[-1]["separated"] is None
    assert data[-1]["seg_objects"] == 6  # how the figure was reached: JSON only
    lines = (pred / "metrics.csv").read_text().splitlines()
    assert lines[0] == "image,seg,separated" and lines[-1].startswith("stack,")
    assert "stack: all images together" in out
    assert main(["-q", "evaluate", "--pred", str(pred), "--gt", str(gt)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_isbi_metrics_on_a_perfect_and_a_merged_probability_map(tmp_path, capsys):
    gt = np.full((24, 24), 255, np.uint8)
    gt[:, 11:13] = 0  # a membrane splits two cells
    save_image(tmp_path / "gt" / "00.png", gt)
    save_image(tmp_path / "pred" / "00_prob.tif", (gt / 255.0).astype(np.float32))
    leaky = (gt / 255.0).astype(np.float32)
    leaky[10:13, 11:13] = 1.0  # a gap in the membrane merges the two cells
    save_image(tmp_path / "gt" / "01.png", gt)
    save_image(tmp_path / "pred" / "01_prob.tif", leaky)
    assert main(["-q", "evaluate", "--pred", str(tmp_path / "pred"), "--gt",
                 str(tmp_path / "gt"), "--metric", "isbi", "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    rows = json.loads((tmp_path / "pred" / "metrics.json").read_text())
    perfect, merged, mean, stack = rows
    assert perfect["pixel_error"] == 0 and perfect["rand_error"] == 0
    assert perfect["warping_error"] == 0 and perfect["v_rand"] == pytest.approx(1.0)
    assert perfect["v_info"] == pytest.approx(1.0)
    assert merged["rand_error"] > 0.3 and merged["warping_error"] > 0
    assert merged["pixel_error"] < merged["rand_error"]  # few pixels, big topological error
    # the gap (p = 1) joins the two cells at every threshold: one segment over both
    assert merged["v_rand"] == pytest.approx(2 / 3) and merged["v_info"] == 0.0
    # the stack: best threshold of the mean over both images
    assert stack["v_rand"] == pytest.approx((1 + 2 / 3) / 2)
    assert stack["v_info"] == pytest.approx(0.5)
    assert stack["v_rand_threshold"] == 0.0 and stack["pixel_error"] is None
    assert "v_rand" in out and "cell probability > 0.0" in out


def test_the_official_v_rand_is_the_mean_at_one_threshold_not_the_mean_of_maxima(tmp_path):
    """Two slices whose best thresholds differ: the stack figure takes one threshold for
    both, below the mean of the per-image maxima."""
    gt = np.full((24, 24), 255, np.uint8)
    gt[:, 11:13] = 0
    # cells at p = 0.35, membrane 0.05: right at t = 0.1 ... 0.3; cells at 0.95,
    # membrane 0.8: right at t = 0.9 only; elsewhere the two cells are one segment
    for name, cell, membrane in (("00", 0.35, 0.05), ("01", 0.95, 0.8)):
        prob = np.where(gt > 0, cell, membrane).astype(np.float32)
        save_image(tmp_path / "gt" / f"{name}.png", gt)
        save_image(tmp_path / "pred" / f"{name}_prob.tif", prob)
    rows = evaluate(tmp_path / "pred", tmp_path / "gt", metrics=["v_rand", "v_rand_thin"],
                    progress=False, jobs=1)
    first, second, mean, stack = rows
    assert first["v_rand"] == second["v_rand"] == 1.0  # each at its own threshold
    assert mean["v_rand"] == 1.0
    assert stack["v_rand"] == pytest.approx((1 + 2 / 3) / 2)  # one threshold for both
    assert stack["v_rand_threshold"] == 0.1
    assert first["v_rand_thin"] < 1.0 and second["v_rand_thin"] < 1.0  # p = 0.5 only
