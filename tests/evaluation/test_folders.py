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
    rows = evaluate(pred, gt, progress=False)
    perfect, merged, mean = rows
    assert perfect["seg"] == 1.0 and perfect["f1"] == 1.0 and perfect["separated"] == 1.0
    # the merge: cell 1 (64 px) is more than half covered by the merged object (128 px):
    # J = 64/128; cell 2 likewise 0.5; cell 5 is exact -> SEG = (0.5 + 0.5 + 1) / 3
    assert merged["seg"] == pytest.approx(2 / 3)
    assert merged["separated"] == 0.0
    assert merged["iou"] == 1.0
    assert mean["image"] == "mean" and mean["seg"] == pytest.approx((1 + 2 / 3) / 2)


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
    assert data[-1]["image"] == "mean" and math.isclose(data[0]["seg"], 1.0)
    assert (pred / "metrics.csv").read_text().splitlines()[0] == "image,seg,separated"
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
                 str(tmp_path / "gt"), "--metric", "isbi"]) == 0
    rows = json.loads((tmp_path / "pred" / "metrics.json").read_text())
    perfect, merged = rows[0], rows[1]
    assert perfect["pixel_error"] == 0 and perfect["rand_error"] == 0
    assert perfect["warping_error"] == 0 and perfect["v_rand"] == pytest.approx(1.0)
    assert merged["rand_error"] > 0.3 and merged["warping_error"] > 0
    assert merged["pixel_error"] < merged["rand_error"]  # few pixels, big topological error
