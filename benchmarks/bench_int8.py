"""int8 prediction through ONNX Runtime against PyTorch fp32 and bf16: tiles per second
and the share of output pixels whose class changes.

    python benchmarks/bench_int8.py [--model RUN] [--images 6] [--repeats 5]

The model (default: the demo's network trained on synthetic cells, see
``bench_common.trained_demo_model``) is exported to ONNX at the tile it was trained
with (``tileunet export``), and quantised statically to int8 by ONNX Runtime (QDQ
format, weights per output channel, activations calibrated on the tiles of the first
image). Every tile of ``--images`` synthetic images the model never saw (cut ``stride``
apart, mirrored at the borders, as ``predict`` cuts them) goes through four runtimes:
PyTorch fp32 (the reference), PyTorch bf16 autocast, ONNX Runtime fp32 and ONNX Runtime
int8, in batches of ``--batch`` tiles, on this machine's threads. Reported: tiles per
second (median of ``--repeats`` passes over all tiles, after a warm-up), and the share
of output pixels whose most probable class differs from the reference. int8 would be
offered behind an option only if it is faster than bf16 and changes at most 0.1 % of
the pixels.

Writes ``benchmarks/out/bench_int8.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_common import OUT, announce, synthetic_image, timings, trained_demo_model

from tileunet.checkpoint import load_model
from tileunet.export.onnx import export_onnx
from tileunet.inference.overlap import tile_geometry
from tileunet.io.normalization import Normalization

#: the most pixels int8 may change, as a share of the output pixels
MAX_CHANGED = 0.001


def tiles_of(image: np.ndarray, tile: int, stride: int, margin: int) -> np.ndarray:
    """``(N, 1, tile, tile)`` float32 input tiles covering ``image``, ``stride`` apart,
    the image mirrored by ``margin`` (and up to a whole number of strides)."""
    image = image.reshape(image.shape[-2:])  # one channel
    h, w = image.shape
    ny, nx = -(-h // stride), -(-w // stride)
    past = tile - stride - margin  # past the last tile's start, beyond the strides
    pad = ((margin, past + ny * stride - h), (margin, past + nx * stride - w))
    padded = np.pad(image, pad, mode="symmetric")
    return np.stack([padded[None, y * stride:y * stride + tile, x * stride:x * stride + tile]
                     for y in range(ny) for x in range(nx)]).astype(np.float32)


def quantised(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    """``fp32`` quantised to int8 (QDQ, per-channel weights), activations calibrated on
    ``calibration`` tiles."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Tiles(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(calibration[i:i + 1] for i in range(len(calibration)))

        def get_next(self) -> dict | None:
            batch = next(self.left, None)
            return None if batch is None else {"image": batch}

    prepared = out.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(str(prepared), str(out), Tiles(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return out


def torch_runner(net: torch.nn.Module, bf16: bool) -> Callable[[np.ndarray], np.ndarray]:
    net = net.eval().to(memory_format=torch.channels_last)

    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            return torch.softmax(net(x).float(), dim=1).numpy()
    return run


def onnx_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"image": batch})[0]


def measure(run: Callable[[np.ndarray], np.ndarray], tiles: np.ndarray, batch: int,
            repeats: int) -> tuple[np.ndarray, float]:
    """The outputs of all tiles, and tiles per second (median pass)."""
    def all_tiles() -> np.ndarray:
        return np.concatenate([run(tiles[i:i + batch]) for i in range(0, len(tiles), batch)])
    out = all_tiles()
    median, _ = timings(all_tiles, repeats, warmup=0)
    return out, len(tiles) / median


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="a trained model (default: the demo's)")
    ap.add_argument("--images", type=int, default=6, help="synthetic test images")
    ap.add_argument("--size", type=int, default=512, help="their side")
    ap.add_argument("--batch", type=int, default=2, help="tiles per forward pass")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    _, where = announce(torch.device("cpu"))
    model = trained_demo_model(args.model, 2000, "cpu")
    net, extra = load_model(model)
    tile = int(extra.get("tile", 572))
    stride = tile_geometry(net, tile)[1]
    norm = Normalization.from_dict(extra.get("normalization", {}))
    tiles = np.concatenate([tiles_of(norm(synthetic_image(args.size, seed=100 + i)[0]),
                                     tile, stride, net.margin)
                            for i in range(args.images)])
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        export_onnx(model, fp32, tile=tile)
        n_calibration = len(tiles) // args.images  # the first image's tiles
        int8 = quantised(fp32, Path(tmp) / "int8.onnx", tiles[:n_calibration])
        runners = {"PyTorch fp32": torch_runner(net, False),
                   "PyTorch bf16": torch_runner(net, True),
                   "ONNX Runtime fp32": onnx_runner(fp32), "ONNX Runtime int8": onnx_runner(int8)}
        rows, reference = [], None
        for name, run in runners.items():
            out, rate = measure(run, tiles, args.batch, args.repeats)
            classes = out.argmax(1)
            reference = classes if reference is None else reference
            rows.append({"runtime": name, "tiles_per_s": rate,
                         "changed": float(np.mean(classes != reference))})
    base = next(r["tiles_per_s"] for r in rows if r["runtime"] == "PyTorch bf16")
    print(f"{len(tiles)} tiles of {tile} px ({args.images} images of {args.size} px), "
          f"batches of {args.batch}\n")
    print("| runtime | tiles/s | against PyTorch bf16 | pixels of another class than fp32 |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['runtime']} | {r['tiles_per_s']:.2f} | {r['tiles_per_s'] / base:.2f}× "
              f"| {100 * r['changed']:.3f} % |")
    int8_row = rows[-1]
    offer = int8_row["tiles_per_s"] > base and int8_row["changed"] <= MAX_CHANGED
    print(f"\nint8 {'qualifies' if offer else 'does not qualify'} "
          f"(faster than bf16 and at most {100 * MAX_CHANGED:.1f} % of pixels changed)")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_int8.json").write_text(json.dumps(
        {"machine": where, "tile": tile, "tiles": len(tiles), "rows": rows,
         "qualifies": offer}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
