"""Runs started from a viewer, without the viewer: run folders, the command line each
run records (the same training as the CLI's), stop and resume, ignored regions."""

from __future__ import annotations

import json
import shlex
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tileunet.cli import main
from tileunet.napari.annotations import annotated
from tileunet.napari.runs import checked, extra_flags, next_run_folder, start_run
from tileunet.synthetic import synthetic_cells

TINY = "--iterations 8 --width 4 --depth 3 --tile 92 --val-every 4 --recipe paper --seed 3"


def layer(name, data):
    return SimpleNamespace(name=name, data=data, metadata={})


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(1)
    out = []
    for i in range(3):
        image, labels = synthetic_cells((96, 96), rng=rng)
        out.append((layer(f"frame{i}", image), layer(f"frame{i} labels", labels)))
    return out


def items_of(pairs, **kw):
    return [annotated(im, lab, **kw) for im, lab in pairs]


def weights(run):
    return load_file(str(run / "last.safetensors"))


def test_run_folders_count_up(tmp_path):
    assert next_run_folder(tmp_path / "none") == tmp_path / "none" / "run-001"
    for name in ("run-001", "run-007", "run-x", "other"):
        (tmp_path / name).mkdir()
    assert next_run_folder(tmp_path) == tmp_path / "run-008"


def test_extra_flags_are_split_and_the_viewers_own_refused():
    assert extra_flags("--width 32  --scale 0.5") == ["--width", "32", "--scale", "0.5"]
    for own in ("--out x", "--init=m.safetensors", "--resume", "--images a"):
        with pytest.raises(ValueError, match="set by the viewer"):
            extra_flags(own)
    with pytest.raises(ValueError, match="No closing quotation"):
        extra_flags("--exclude 'a")


def test_a_viewer_run_is_its_recorded_command_line(pairs, tmp_path):
    run = start_run(tmp_path / "runs", items_of(pairs), minutes=5, extra=TINY)
    assert run.run == tmp_path / "runs" / "run-001"
    res = run.train()
    assert res.iterations == 8 and not res.interrupted
    record = json.loads((run.run / "annotations" / "layers.json").read_text())
    assert record["command"] == run.command
    assert [x["labels"] for x in record["layers"]] == [f"frame{i} labels" for i in range(3)]
    argv = shlex.split(run.command)[1:]
    argv[argv.index("--out") + 1] = str(tmp_path / "cli")
    assert main(["-q", *argv]) == 0
    a, b = weights(run.run), weights(tmp_path / "cli")
    assert all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((run.run / "config.json").read_text())
    assert config["train"]["images"] == str(run.run / "annotations" / "images")


def test_a_stopped_viewer_run_resumes_to_the_same_weights(pairs, tmp_path):
    flags = TINY + " --val-fraction 0.4"  # validations (and their rows) at steps 4 and 8
    straight = start_run(tmp_path / "a", items_of(pairs), minutes=5, extra=flags)
    straight.train()
    run = start_run(tmp_path / "b", items_of(pairs), minutes=5, extra=flags)

    def stop_at_4(row):
        if row["iteration"] == 4:
            run.stop.set()
    first = run.train(stop_at_4)
    assert first.interrupted and first.iterations == 4
    second = run.train()
    assert not second.interrupted and second.iterations == 8
    a, b = weights(straight.run), weights(run.run)
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)


def test_fine_tuning_records_the_start_model_and_resumes_without_it(pairs, tmp_path):
    base = start_run(tmp_path / "runs", items_of(pairs), minutes=5, extra=TINY)
    base.train()
    tuned = start_run(tmp_path / "runs", items_of(pairs[:1]), minutes=5, init=base.run,
                      extra=TINY.replace("--recipe paper ", ""))
    record = json.loads((tuned.run / "annotations" / "layers.json").read_text())
    assert record["start_model"] == str(base.run) and "--init" in record["command"]
    assert "--init" not in tuned.resume_argv() and tuned.resume_argv()[-1] == "--resume"
    assert tuned.train().iterations == 8
    config = json.loads((tuned.run / "config.json").read_text())
    assert config["train"]["init"] == str(base.run)


def test_unannotated_regions_have_no_effect_on_training(pairs, tmp_path):
    """Two annotations that differ only where the ignore layer says 'not annotated'
    train to the same weights, bit for bit; outside it they do not."""
    (image, labels), rest = pairs[0], pairs[1:]
    region = np.zeros(labels.data.shape, np.uint8)
    region[10:60, 20:70] = 1
    other = labels.data.copy()
    other[10:60, 20:70] = np.random.default_rng(0).integers(0, 40, (50, 50))
    runs = []
    for lab in (labels.data, other):
        first = annotated(image, layer("frame0 labels", lab), layer("ignore", region))
        run = start_run(tmp_path / "runs", [first, *items_of(rest)], minutes=5, extra=TINY)
        run.train()
        runs.append(weights(run.run))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    outside = annotated(image, layer("frame0 labels", other))  # the same, not ignored
    run = start_run(tmp_path / "runs", [outside, *items_of(rest)], minutes=5, extra=TINY)
    run.train()
    assert not all(torch.equal(runs[0][k], weights(run.run)[k]) for k in runs[0])


def test_every_image_is_trained_on_unless_the_flags_say_otherwise(pairs, tmp_path):
    run = start_run(tmp_path / "runs", items_of(pairs + pairs[:2]), minutes=5)
    assert checked(run.argv).setting("val_fraction") == 0.0
    asked = start_run(tmp_path / "runs", items_of(pairs[:2]), minutes=5,
                      extra="--val-fraction=0.5")
    assert checked(asked.argv).setting("val_fraction") == 0.5


def test_bad_extra_flags_write_nothing(pairs, tmp_path):
    with pytest.raises(ValueError, match="--out is set by the viewer"):
        start_run(tmp_path / "runs", items_of(pairs), minutes=5, extra="--out x")
    with pytest.raises(ValueError, match="argument --width: invalid int value: 'x'"):
        start_run(tmp_path / "runs", items_of(pairs), minutes=5, extra="--width x")
    with pytest.raises(ValueError, match="--lr must be > 0"):
        start_run(tmp_path / "runs", items_of(pairs), minutes=5, extra="--lr -1")
    with pytest.raises(ValueError, match="no such model file"):
        start_run(tmp_path / "runs", items_of(pairs), minutes=5, init=tmp_path / "none")
    with pytest.raises(ValueError, match="minutes must be > 0"):
        start_run(tmp_path / "runs", items_of(pairs), minutes=0)
    assert not (tmp_path / "runs").exists()


def test_a_viewer_run_of_strokes_records_the_sparse_annotation(pairs, tmp_path):
    strokes = []
    for im, lab in pairs:
        sparse = np.zeros(lab.data.shape, np.int32)
        sparse[:3] = 1  # a background stroke along the top rows
        sparse[lab.data == lab.data.max()] = 3  # one cell painted whole
        strokes.append((im, layer(lab.name, sparse)))
    run = start_run(tmp_path / "runs", items_of(strokes), minutes=5, extra=TINY,
                    annotation="sparse")
    assert run.argv[run.argv.index("--annotation") + 1] == "sparse"
    assert run.train().iterations == 8
    config = json.loads((run.run / "config.json").read_text())
    assert config["train"]["annotation"] == "sparse"
    with pytest.raises(ValueError, match="set by the viewer"):
        extra_flags("--annotation dense")


def test_updating_a_run_rewrites_its_annotations_and_keeps_its_ignore_layers(pairs, tmp_path):
    run = start_run(tmp_path / "runs", items_of(pairs), minutes=5, extra=TINY, live=True)
    assert run.live and "--live" in run.argv
    masks = run.run / "annotations" / "masks"
    assert len(list(masks.glob("*.tif"))) == 3
    run.update(items_of(pairs[:2]))  # a layer dropped: its files go
    assert sorted(f.name for f in masks.glob("*.tif")) == ["frame0.tif", "frame1.tif"]
    assert len(list((run.run / "annotations" / "images").glob("*.tif"))) == 2
    with pytest.raises(ValueError, match="other ignore layers"):
        run.update(items_of(pairs, unlabelled=int(pairs[0][1].data.max())))
