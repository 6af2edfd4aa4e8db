"""Export a trained model for other runtimes: ONNX (what ``tileunet export`` does).

The exported graph takes a batch of input tiles ``(N, C, tile, tile)`` (N free, the
tile side fixed at export) and returns the softmax probabilities of the valid output
``(N, K, out, out)``, ``out = net.output_size(tile)``. A consumer tiles an image itself:
mirror-pad it by ``margin`` pixels and cut input tiles ``stride`` apart (the numbers are
stored in the file's metadata, with the intensity normalisation the model expects).
Exporting needs the optional packages ``onnx`` and ``onnxscript``
(``pip install tileunet[onnx]``); running the file needs ``onnxruntime``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from tileunet.checkpoint import load_model
from tileunet.inference.overlap import tile_geometry
from tileunet.io.outputs import atomic_write

__all__ = ["export_onnx"]


class _Probabilities(nn.Module):
    """The network followed by the softmax over classes."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, T, T) -> (N, K, t, t)
        return torch.softmax(self.net(x), dim=1)


def is_own_onnx(path: Path) -> bool:
    """An ONNX file this module wrote (it carries ``tileunet.*`` metadata)."""
    if not Path(path).is_file():
        return False
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX, unreadable, or onnx is not installed
        return False
    return any(p.key.startswith("tileunet.") for p in proto.metadata_props)


def export_onnx(model: str | Path, out: str | Path, *, tile: int | None = None) -> dict:
    """Write a trained model as an ONNX file (atomically).

    Parameters
    ----------
    model : str or path-like
        Run directory or ``model.safetensors``.
    out : str or path-like
        The ``.onnx`` file to write.
    tile : int, optional
        Input tile side of the exported graph; default the tile the model was trained
        with (572 for the paper's network). Must be a usable tile
        (:func:`tileunet.inference.overlap.tile_geometry`).

    Returns
    -------
    dict
        The metadata stored in the file: ``tile``, ``output`` (output tile side),
        ``margin``, ``stride``, ``classes`` and ``normalization``.
    """
    try:
        import onnx
    except ImportError as err:  # an optional extra
        raise RuntimeError("ONNX export needs the packages onnx and onnxscript: "
                           "pip install 'tileunet[onnx]'") from err
    net, extra = load_model(model, device="cpu")
    if extra.get("scale", 1.0) != 1.0:
        raise ValueError(f"{model}: trained at scale {extra['scale']}; the ONNX export "
                         "covers models trained at scale 1 only")
    net.eval()
    tile = int(extra.get("tile", 572) if tile is None else tile)
    out_tile, stride = tile_geometry(net, tile)  # a clear error for a bad tile
    meta = {"tile": tile, "output": out_tile, "margin": net.margin, "stride": stride,
            "classes": net.config.num_classes,
            "normalization": extra.get("normalization", {})}
    x = torch.zeros(2, net.config.in_channels, tile, tile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter
        program = torch.onnx.export(_Probabilities(net).eval(), (x,), dynamo=True,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    input_names=["image"], output_names=["probabilities"],
                                    verbose=False)
    proto = program.model_proto
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"tileunet.{key}", json.dumps(value)
    atomic_write(Path(out), lambda tmp: onnx.save(proto, str(tmp)))
    return meta
