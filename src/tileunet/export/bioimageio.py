"""Export a trained model as a BioImage Model Zoo package (bioimage.io, model format 0.5).

``tileunet export RUN --format bioimageio -o DIR`` writes a folder (or, for ``-o X.zip``,
a zip archive) that bioimage.io consumers (deepImageJ, ilastik, QuPath, napari plugins,
``bioimageio.core``) open without glue code: ``rdf.yaml``, the weights three ways
(``pytorch_state_dict`` with the architecture
``tileunet.export.bioimageio.MirroredUNet``, TorchScript
and ONNX traced from it), test input and output tensors, a README and the paper's
citation.

Valid convolutions and the format
---------------------------------
The paper's network returns less than it is given (572 -> 388). bioimage.io consumers
expect an output the size of the input, so the exported network first mirrors its
input by ``margin`` pixels on every side (the paper's mirrored border, inside the
model) and returns the softmax probabilities for every input pixel. The input sizes it
accepts are ``min + n * step``: ``step`` is the pooling step (16 for the paper's
network) and ``min`` the smallest size whose mirrored version is a valid input and is
larger than two halos. The output declares a halo of ``margin`` pixels: a consumer that
tiles a large image must crop that much from each tile, since near a tile's edge the
network sees mirrored rather than real context. (``tileunet predict`` itself needs none
of this: it cuts tiles from the whole mirrored image.)

The model's intensity normalisation becomes the format's ``scale_range`` preprocessing
(per channel, over y and x, with the same percentiles; the format adds ``eps = 1e-6`` to
the denominator).
"""

from __future__ import annotations

import getpass
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tileunet.checkpoint import load_model
from tileunet.errors import DataError
from tileunet.io.images import read_pages
from tileunet.io.normalization import Normalization
from tileunet.io.outputs import clear_stale, refuse_existing, staged
from tileunet.model import UNet

__all__ = ["MirroredUNet", "export_bioimageio", "input_sizes"]

PAPER_DOI = "10.1007/978-3-319-24574-4_28"
PAPER_TEXT = ("Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for "
              "Biomedical Image Segmentation. MICCAI 2015, LNCS 9351, 234-241.")


class MirroredUNet(UNet):
    """The U-Net with the paper's mirrored border inside: ``(N, C, n, n)`` in, softmax
    probabilities ``(N, K, n, n)`` out, for the sizes :func:`input_sizes` gives.

    Takes :class:`UNet`'s arguments; its weights are a :class:`UNet`'s.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.margin
        x = F.pad(x, (m, m, m, m), mode="reflect")  # (N, C, n + 2m, n + 2m)
        return torch.softmax(super().forward(x), dim=1)  # (N, K, n, n)


def input_sizes(net: UNet) -> tuple[int, int]:
    """``(min, step)`` of the input sizes a :class:`MirroredUNet` of ``net`` accepts."""
    if net.config.padding != "valid":
        raise ValueError("bioimage.io export needs a network with padding='valid'")
    m, step = net.margin, net.size_step
    n = max(1, 2 * m + 1)
    while net.valid_input_size(n + 2 * m) != n + 2 * m:
        n += 1
    return n, step


def _spec():
    try:
        from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder
        from bioimageio.spec.generic.v0_3 import Author, CiteEntry
        from bioimageio.spec.model import v0_5
    except ImportError as e:  # pragma: no cover - pinned for the tests
        raise ImportError(f"bioimage.io export needs bioimageio.spec ({e.name} is missing): "
                          "pip install 'tileunet[bioimageio]'") from None
    return v0_5, Author, CiteEntry, save_bioimageio_package, save_bioimageio_package_as_folder


def _sample(path: str | Path | None, channels: int, size: int) -> np.ndarray:
    """A ``(1, C, size, size)`` float32 crop of the sample image (or synthetic cells)."""
    if path is None:
        from tileunet.synthetic import synthetic_cells

        img, _ = synthetic_cells((size, size), rng=np.random.default_rng(0))
        img = np.repeat((img * 255).astype(np.float32)[None], channels, axis=0)
    else:
        img = read_pages(path)[0]
        img = img[None] if img.ndim == 2 else img
        if img.shape[0] != channels:
            raise DataError(f"{path}: has {img.shape[0]} channel(s), the model expects "
                            f"{channels}")
        if min(img.shape[1:]) < size:
            raise DataError(f"{path}: is {img.shape[1]}x{img.shape[2]}, smaller than the "
                            f"test tile {size}x{size}")
        y0, x0 = (img.shape[1] - size) // 2, (img.shape[2] - size) // 2
        img = img[:, y0 : y0 + size, x0 : x0 + size].astype(np.float32)
    return np.ascontiguousarray(img[None])


def _scale_range(x: np.ndarray, norm: Normalization, eps: float) -> np.ndarray:
    """The format's ``scale_range`` on ``(1, C, H, W)``, per channel over y and x."""
    lo_q, hi_q = (norm.low, norm.high) if norm.method == "percentile" else (0.0, 100.0)
    out = np.empty_like(x, dtype=np.float32)
    for c in range(x.shape[1]):
        lo, hi = np.percentile(x[0, c], [lo_q, hi_q])
        out[0, c] = (x[0, c] - lo) / (hi - lo + eps)
    return out


def is_own_package(path: Path) -> bool:
    """A package this module wrote: a zip or folder whose ``rdf.yaml`` carries the
    ``tileunet`` tag, the folder holding nothing but files that ``rdf.yaml`` names."""
    try:
        if path.is_file():
            with zipfile.ZipFile(path) as z:
                rdf = z.read("rdf.yaml").decode("utf-8")
            names: set[str] = set()
        else:
            rdf = (path / "rdf.yaml").read_text(encoding="utf-8")
            names = {p.name for p in path.iterdir() if p.name != "rdf.yaml"}
            if any(not (path / n).is_file() for n in names):
                return False
    except (OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile):
        return False
    return "- tileunet" in rdf and all(n in rdf for n in names)


def _write_weights(wrapped: torch.nn.Module, x: np.ndarray, y: np.ndarray,
                   stage: Path) -> None:
    """The test tensors and the weights in the three formats of the package."""
    np.save(stage / "test_input.npy", x)
    np.save(stage / "test_output.npy", y.astype(np.float32))
    torch.save(wrapped.state_dict(), stage / "weights.pt")
    example = torch.from_numpy(x)
    with warnings.catch_warnings(), torch.no_grad():
        # the size checks become constants of the trace; the sizes stay symbolic
        # (test_model runs it at three sizes and two batch sizes)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapped, example, check_trace=False)
    traced.save(str(stage / "weights_torchscript.pt"))
    _onnx(wrapped, example, stage / "weights.onnx")


def _tensor_descrs(v0_5: Any, net: UNet, norm: Normalization, stage: Path, lo: int,
                   step: int, eps: float) -> tuple[list, list]:
    """The input (raw image, with its scale-range preprocessing) and output (class
    probabilities, halo ``net.margin``) tensor descriptions."""
    k, c = net.config.num_classes, net.config.in_channels
    tid_in, tid_out = v0_5.TensorId("raw"), v0_5.TensorId("probabilities")
    y_id, x_id = v0_5.AxisId("y"), v0_5.AxisId("x")
    classes = ["background", "foreground"] if k == 2 else [f"class{i}" for i in range(k)]
    pre = []
    if norm.method != "none":
        lo_q, hi_q = (norm.low, norm.high) if norm.method == "percentile" else (0.0, 100.0)
        pre = [v0_5.ScaleRangeDescr(kwargs=v0_5.ScaleRangeKwargs(
            axes=[y_id, x_id], min_percentile=lo_q, max_percentile=hi_q, eps=eps))]
    inputs = [v0_5.InputTensorDescr(
        id=tid_in, description="raw image",
        axes=[v0_5.BatchAxis(),
              v0_5.ChannelAxis(channel_names=[v0_5.Identifier(f"channel{i}")
                                              for i in range(c)]),
              v0_5.SpaceInputAxis(id=y_id, size=v0_5.ParameterizedSize(min=lo, step=step)),
              v0_5.SpaceInputAxis(id=x_id, size=v0_5.ParameterizedSize(min=lo, step=step))],
        test_tensor=v0_5.FileDescr(source=stage / "test_input.npy"),
        preprocessing=pre)]
    m = net.margin
    outputs = [v0_5.OutputTensorDescr(
        id=tid_out, description="softmax class probabilities",
        axes=[v0_5.BatchAxis(),
              v0_5.ChannelAxis(channel_names=[v0_5.Identifier(n) for n in classes]),
              v0_5.SpaceOutputAxisWithHalo(
                  id=y_id, halo=m, size=v0_5.SizeReference(tensor_id=tid_in, axis_id=y_id)),
              v0_5.SpaceOutputAxisWithHalo(
                  id=x_id, halo=m, size=v0_5.SizeReference(tensor_id=tid_in, axis_id=x_id))],
        test_tensor=v0_5.FileDescr(source=stage / "test_output.npy"))]
    return inputs, outputs


def _weights_descr(v0_5: Any, stage: Path, cfg: dict) -> Any:
    """The state dict (with the architecture to build), TorchScript and ONNX weights."""
    version = v0_5.Version(torch.__version__.split("+")[0])
    return v0_5.WeightsDescr(
        pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
            source=stage / "weights.pt", pytorch_version=version,
            architecture=v0_5.ArchitectureFromLibraryDescr(
                import_from="tileunet.export.bioimageio", callable=v0_5.Identifier("MirroredUNet"),
                kwargs=cfg)),
        torchscript=v0_5.TorchscriptWeightsDescr(
            source=stage / "weights_torchscript.pt", pytorch_version=version,
            parent="pytorch_state_dict"),
        onnx=v0_5.OnnxWeightsDescr(source=stage / "weights.onnx", opset_version=17,
                                   parent="pytorch_state_dict"))


def export_bioimageio(model: str | Path, out: str | Path, *, sample: str | Path | None = None,
                      name: str | None = None, authors: list[str] | None = None,
                      license: str = "CC-BY-4.0", tile: int | None = None,
                      overwrite: bool = False) -> Path:
    """Write a bioimage.io model package (a folder, or a zip for ``out`` ending in ``.zip``).

    Parameters
    ----------
    model : path
        Run directory or model file.
    out : path
        Folder (or ``.zip``) to write; built under a temporary name and renamed.
    sample : path, optional
        Image to cut the test tile from (default: synthetic cells).
    name, authors, license
        Package metadata; ``authors`` defaults to this computer's user name.
    tile : int, optional
        Side of the test tile (rounded up to an accepted size; default ~256).
    """
    v0_5, Author, CiteEntry, save_zip, save_folder = _spec()
    out = Path(out).absolute()
    refuse_existing(out, overwrite, is_own_package, "a bioimage.io package that "
                    "tileunet exported")
    clear_stale(out)
    net, extra = load_model(model, device="cpu")
    if extra.get("scale", 1.0) != 1.0:
        raise ValueError(f"{model}: trained at scale {extra['scale']}; the bioimage.io "
                         "export covers models trained at scale 1 only")
    norm = Normalization.from_dict(extra.get("normalization", {}))
    cfg = net.config.to_dict()
    wrapped = MirroredUNet(**cfg).eval()
    wrapped.load_state_dict(net.state_dict())
    lo, step = input_sizes(net)
    size = lo + max(0, -(-((tile or 256) - lo) // step)) * step
    x = _sample(sample, net.config.in_channels, size)
    eps = 1e-6
    with torch.inference_mode():
        y = wrapped(torch.from_numpy(_scale_range(x, norm, eps))).numpy()
    run_name = Path(model).absolute().name
    title = name or f"tileunet U-Net {run_name}"
    title = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", title)[:64]
    if len(title) < 5:
        title = f"tileunet {title}"
    with staged(out) as built:
        stage = built.parent / "stage"
        stage.mkdir()
        _write_weights(wrapped, x, y, stage)
        (stage / "README.md").write_text(_readme(net, extra, norm, lo, step, title))
        inputs, outputs = _tensor_descrs(v0_5, net, norm, stage, lo, step, eps)
        descr = v0_5.ModelDescr(
            name=title,
            description=("U-Net (Ronneberger et al. 2015) trained with tileunet: valid "
                         "convolutions, mirrored borders, weighted cross-entropy; returns "
                         "class probabilities."),
            authors=[Author(name=a) for a in (authors or [getpass.getuser()])],
            cite=[CiteEntry(text=PAPER_TEXT, doi=PAPER_DOI)],
            license=license,
            documentation=v0_5.FileDescr(source=stage / "README.md"),
            tags=["unet", "segmentation", "2d", "tileunet", "pytorch"],
            inputs=inputs, outputs=outputs, weights=_weights_descr(v0_5, stage, cfg))
        if out.suffix.lower() == ".zip":
            save_zip(descr, output_path=built)
        else:
            save_folder(descr, output_path=built)
    return out


def _onnx(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX with free batch, height and width (PyTorch's TorchScript-based exporter: the
    crops of the valid network stay symbolic there)."""
    dyn = {0: "batch", 2: "y", 3: "x"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["raw"], output_names=["probabilities"],
                          dynamic_axes={"raw": dyn, "probabilities": dyn})


def _readme(net: UNet, extra: dict[str, Any], norm: Normalization, lo: int, step: int,
            title: str) -> str:
    cfg = net.config
    train = extra.get("train", {})
    return f"""# {title}

A U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) trained with tileunet.

- Network: depth {cfg.depth}, width {cfg.width}, {cfg.in_channels} input channel(s),
  {cfg.num_classes} classes, valid 3x3 convolutions with crop-and-concat.
- Input: `(batch, channel, y, x)`, y and x = {lo} + n * {step} pixels.
- Output: softmax probabilities `(batch, class, y, x)`, the size of the input.
- The network mirrors its input by {net.margin} pixels on every side, the context its
  valid convolutions need. When tiling a larger image, crop the declared halo of
  {net.margin} pixels from each output tile (there the model saw mirrored, not real,
  context), and place tiles a multiple of {step} pixels apart.
- Preprocessing: `scale_range` per channel over y and x, percentiles
  {norm.low if norm.method == 'percentile' else 0.0} and
  {norm.high if norm.method == 'percentile' else 100.0} (tileunet normalisation
  `{norm.method}`).
- Trained on: {', '.join(extra.get('train_images', [])) or 'not recorded'}
  ({train.get('iterations') or ''} iterations, tile {extra.get('tile', '')}).
"""
