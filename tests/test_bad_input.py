"""The bad-input corpus: each wrong option, file or folder gives exit code 2, one line
that names the flag or the file, and leaves the disk as it was.

Every case runs the real command line (``tileunet.cli.main``) against a small world of
files made once per module: training data, a trained run, images with NaN or infinite
pixels, a user's own folder. After each case the world and the output area are compared
byte for byte with their state before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tileunet.cli import main
from tileunet.io.images import save_image
from tileunet.synthetic import write_synthetic_dataset

TINY = ["--width", "4", "--depth", "3", "--tile", "92", "--val-every", "3"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    images, masks = write_synthetic_dataset(root / "data", n_images=3, shape=(96, 80),
                                            rng=np.random.default_rng(2))
    assert main(["-q", "train", "--images", str(images), "--masks", str(masks), "--out",
                 str(root / "run"), "--iterations", "2", *TINY]) == 0
    first = sorted(images.iterdir())[0]
    image = tifffile.imread(first).astype(np.float32)
    for name, bad in (("nan", np.nan), ("inf", np.inf)):
        folder = root / f"{name}_images"
        folder.mkdir()
        for f in sorted(images.iterdir()):
            a = tifffile.imread(f).astype(np.float32)
            if f == first:
                a[10:20, 10:20] = bad
            tifffile.imwrite(folder / f.name, a)
    tifffile.imwrite(root / "nan.tif", np.where(np.arange(image.size).reshape(image.shape)
                                                 < 7, np.nan, image).astype(np.float32))
    save_image(root / "rgb.png", np.zeros((3, 40, 40), np.uint8))
    empty_masks = root / "empty_masks"
    full_masks = root / "full_masks"
    for m in sorted(masks.iterdir()):
        shape = tifffile.imread(m).shape
        save_image(empty_masks / m.name, np.zeros(shape, np.uint16))
        save_image(full_masks / m.name, np.ones(shape, np.uint16))
    (root / "not_a_model.safetensors").write_text("hello")
    (root / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    mine = root / "mine"
    (mine / "chapters").mkdir(parents=True)
    (mine / "thesis.txt").write_text("years of work")
    (root / "pred").mkdir()
    for name in ("metrics.csv", "metrics.json"):
        (root / "pred" / name).write_text("earlier results")
    (root / "an_image.png").write_bytes((root / "rgb.png").read_bytes())
    return root


def snapshot(*roots: Path) -> dict[str, str]:
    state = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            state[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
                             else "dir")
    return state


W = "{w}"  # the world folder
D = f"{W}/data"
TRAIN = ["train", "--images", f"{D}/images", "--masks", f"{D}/masks", "--out", "{o}/run",
         "--iterations", "2", *TINY]
PREDICT = ["predict", f"{W}/run", f"{D}/images", "-o", "{o}/pred"]

# (id, argv, what the one line must contain)
CASES = [
    # ---- train: options
    ("train-width-0", [*TRAIN, "--width", "0"], "--width must be a whole number >= 1, got 0"),
    ("train-depth-0", [*TRAIN, "--depth", "0"], "--depth must be between 1 and 8"),
    ("train-depth-9", [*TRAIN, "--depth", "9"], "--depth must be between 1 and 8"),
    ("train-lr-negative", [*TRAIN, "--lr", "-1"], "--lr must be > 0, got -1"),
    ("train-lr-nan", [*TRAIN, "--lr", "nan"], "--lr must be > 0, got nan"),
    ("train-momentum-1", [*TRAIN, "--momentum", "1"], "--momentum must be in [0, 1)"),
    ("train-dropout-1", [*TRAIN, "--dropout", "1"], "--dropout must be in [0, 1)"),
    ("train-weight-decay", [*TRAIN, "--weight-decay", "-1"], "--weight-decay must be >= 0"),
    ("train-sigma-0", [*TRAIN, "--sigma", "0"], "--sigma must be > 0, got 0"),
    ("train-sigma-nan", [*TRAIN, "--sigma", "nan"], "--sigma must be > 0, got nan"),
    ("train-w0-negative", [*TRAIN, "--w0", "-1"], "--w0 must be >= 0"),
    ("train-weighted-tiles-2", [*TRAIN, "--weighted-tiles", "2"],
     "--weighted-tiles must be in [0, 1], got 2"),
    ("train-class-weights-negative", [*TRAIN, "--class-weights", "1,-2"],
     "--class-weights must be 2 numbers >= 0, not all 0, got 1.0,-2.0"),
    ("train-class-weights-count", [*TRAIN, "--class-weights", "1,2,3"],
     "--class-weights must be 2 numbers"),
    ("train-class-weights-zero", [*TRAIN, "--class-weights", "0,0"], "not all 0"),
    ("train-class-weights-text", [*TRAIN, "--class-weights", "abc"],
     "--class-weights: expected 'balanced', 'none' or numbers"),
    ("train-minutes-nan", [*TRAIN, "--minutes", "nan"], "--minutes must be > 0, got nan"),
    ("train-minutes-negative", [*TRAIN, "--minutes", "-5"], "--minutes must be > 0"),
    ("train-minutes-inf", [*TRAIN, "--minutes", "inf"], "--minutes must be > 0, got inf"),
    ("train-iterations-0", [*TRAIN, "--iterations", "0"], "--iterations must be >= 1"),
    ("train-tile-61", [*TRAIN, "--tile", "61"],
     "--tile must be a usable input size, got 61: 61 is not a valid input for depth 3"),
    ("train-tile-10", [*TRAIN, "--tile", "10"], "--tile must be a usable input size, got 10"),
    ("train-tiles-beyond-memory", [*TRAIN, "--tile", "20004", "--batch-size", "64"],
     "training tiles of 20004 px, 64 per step, need about"),
    ("train-batch-size-0", [*TRAIN, "--batch-size", "0"], "--batch-size must be >= 1"),
    ("train-val-every-0", [*TRAIN, "--val-every", "0"], "--val-every must be >= 1"),
    ("train-val-fraction-1", [*TRAIN, "--val-fraction", "1"], "--val-fraction must be in [0, 1)"),
    ("train-checkpoint-minutes-0", [*TRAIN, "--checkpoint-minutes", "0"],
     "--checkpoint-minutes must be > 0"),
    ("train-scale-0", [*TRAIN, "--scale", "0"], "scale must be in (0, 1]"),
    ("train-devices-0", [*TRAIN, "--devices", "0"], "--devices must be >= 1"),
    ("train-no-budget", TRAIN[:-10] + TINY[:-2], "give --minutes or --iterations"),
    # ---- train: files
    ("train-images-missing", [*TRAIN, "--images", f"{W}/nothing"], "nothing"),
    ("train-masks-missing", [*TRAIN, "--masks", f"{W}/nothing"], "nothing"),
    ("train-nan-image", [*TRAIN, "--images", f"{W}/nan_images"],
     "nan_images/synth_000.tif: 100 of 7680 pixels are not finite (100 NaN, 0 infinite)"),
    ("train-inf-image", [*TRAIN, "--images", f"{W}/inf_images"], "(0 NaN, 100 infinite)"),
    ("train-masks-are-images", [*TRAIN, "--masks", f"{D}/images"],
     "is the images folder too"),
    ("train-masks-empty", [*TRAIN, "--masks", f"{W}/empty_masks"],
     "no mask has an object: nothing to learn"),
    ("train-masks-full", [*TRAIN, "--masks", f"{W}/full_masks"],
     "every mask is one class everywhere: nothing to learn"),
    ("train-init-missing", [*TRAIN, "--init", f"{W}/nothing"], "nothing: no such model file"),
    ("train-init-not-a-model", [*TRAIN, "--init", f"{W}/not_a_model.safetensors"],
     "not_a_model.safetensors: not a safetensors model file"),
    ("train-init-other-network", [*TRAIN, "--init", f"{W}/run", "--width", "8"],
     "the start model has width 4; the request asks for width 8"),
    ("train-resume-nothing", [*TRAIN, "--resume"], "no checkpoint to resume from"),
    ("train-out-users-folder", [*TRAIN, "--out", f"{W}/mine"], "mine: already holds files"),
    ("train-empty-images", [*TRAIN, "--images", f"{W}/empty"], "empty"),
    # ---- predict
    ("predict-threshold-2", [*PREDICT, "--threshold", "2"], "threshold must be in [0, 1), got 2"),
    ("predict-threshold-nan", [*PREDICT, "--threshold", "nan"], "threshold must be in [0, 1)"),
    ("predict-tile-61", [*PREDICT, "--tile", "61"], "got 61; the nearest are 60 and 64"),
    ("predict-tile-huge", [*PREDICT, "--tile", "100004"], "tile 100004 needs about"),
    ("predict-model-missing", ["predict", f"{W}/nothing", f"{D}/images", "-o", "{o}/p"],
     "nothing"),
    ("predict-model-not-a-model", ["predict", f"{W}/not_a_model.safetensors",
                                   f"{D}/images", "-o", "{o}/p"], "not a safetensors model"),
    ("predict-nan-image", ["predict", f"{W}/run", f"{W}/nan.tif", "-o", "{o}/p"],
     "nan.tif: 7 of 7680 pixels are not finite (7 NaN, 0 infinite)"),
    ("predict-image-missing", ["predict", f"{W}/run", f"{W}/nothing.tif", "-o", "{o}/p"],
     "nothing.tif"),
    ("predict-not-an-image", ["predict", f"{W}/run", f"{W}/notes.txt", "-o", "{o}/p"],
     "notes.txt"),
    ("predict-empty-folder", ["predict", f"{W}/run", f"{W}/empty", "-o", "{o}/p"], "empty"),
    ("predict-rgb-to-grey-model", ["predict", f"{W}/run", f"{W}/rgb.png", "-o", "{o}/p"],
     "rgb.png: has 3 channel(s), the model expects 1"),
    ("predict-batch-size-0", [*PREDICT, "--batch-size", "0"], "batch_size must be a positive"),
    ("predict-min-distance-0", [*PREDICT, "--instances", "watershed", "--min-distance", "0"],
     "min_distance must be a positive integer"),
    ("predict-min-distance-without-watershed", [*PREDICT, "--min-distance", "9"],
     "min_distance is for instances='watershed'"),
    ("predict-out-is-a-file", ["predict", f"{W}/run", f"{D}/images", "-o",
                               f"{W}/notes.txt"], "notes.txt: exists and is not a folder"),
    ("predict-zarr-two-inputs", [*PREDICT[:-2], f"{W}/rgb.png", "-o", "{o}/x.zarr"],
     "a .zarr output takes one input image"),
    # ---- evaluate
    ("evaluate-pred-missing", ["evaluate", "--pred", f"{W}/nothing", "--gt", f"{D}/masks",
                               "-o", "{o}/e"], "nothing"),
    ("evaluate-gt-missing", ["evaluate", "--pred", f"{W}/pred", "--gt", f"{W}/nothing",
                             "-o", "{o}/e"], "nothing"),
    ("evaluate-results-exist", ["evaluate", "--pred", f"{W}/pred", "--gt", f"{D}/masks"],
     "metrics.csv: already exists (use --overwrite to replace it)"),
    ("evaluate-jobs-0", ["evaluate", "--pred", f"{W}/pred", "--gt", f"{D}/masks", "-o",
                         "{o}/e", "--jobs", "0"], "--jobs must be >= 1, got 0"),
    # ---- weights
    ("weights-mask-missing", ["weights", f"{W}/nothing.tif", "-o", "{o}/w.png"],
     "nothing.tif"),
    ("weights-sigma-0", ["weights", f"{D}/masks/synth_000.tif", "-o", "{o}/w.png",
                         "--sigma", "0"], "sigma must be finite and > 0"),
    ("weights-rgb-mask", ["weights", f"{W}/rgb.png", "-o", "{o}/w.png"],
     "expected a 2-D mask"),
    ("weights-out-exists", ["weights", f"{D}/masks/synth_000.tif", "-o",
                            f"{W}/an_image.png"], "an_image.png: already exists"),
    ("weights-out-is-a-folder", ["weights", f"{D}/masks/synth_000.tif", "-o", f"{W}/mine",
                                 "--overwrite"], "mine: exists and is not a file"),
    # ---- export
    ("export-model-missing", ["export", f"{W}/nothing", "-o", "{o}/m.onnx"], "nothing"),
    ("export-tile-93", ["export", f"{W}/run", "-o", "{o}/m.onnx", "--tile", "93"],
     "tile must be a usable input size"),
    ("export-onnx-over-users-folder", ["export", f"{W}/run", "-o", f"{W}/mine",
                                       "--overwrite"],
     "mine: exists and is not an ONNX model that tileunet exported"),
    ("export-onnx-exists", ["export", f"{W}/run", "-o", f"{W}/notes.txt"],
     "notes.txt: already exists"),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_disk_unchanged(world, tmp_path, capsys, argv, expected):
    if argv[0] == "export":
        pytest.importorskip("onnx")
    out = tmp_path / "out"
    out.mkdir()
    args = [a.replace(W, str(world)).replace("{o}", str(out)) for a in argv]
    before = snapshot(world, tmp_path)
    assert main(["-q", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback, no bars
    assert err[0].startswith("tileunet: error: ") and expected in err[0], err[0]
    assert snapshot(world, tmp_path) == before  # nothing written, nothing changed


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 50 and len({c[0] for c in CASES}) == len(CASES)
    assert {c[1][0] for c in CASES} == {"train", "predict", "evaluate", "weights", "export"}
