"""Model files: safetensors weights plus a JSON config, never pickle.

A model file carries its own configuration in the safetensors metadata, so a single
``model.safetensors`` is enough to rebuild the network and its normalisation; the run
directory also has the same configuration as ``config.json`` for people to read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tileunet.errors import DataError
from tileunet.io.outputs import atomic_write
from tileunet.model import UNet, upgrade_network_fields

FORMAT = "tileunet"
FORMAT_VERSION = "1"
MODEL_FILE = "model.safetensors"
#: the weights of a run's last step, beside the kept (best-validating) model
LAST_FILE = "last.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file."""


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict) -> None:
    """``save_file`` to a temporary name in the same folder, then rename."""
    atomic_write(path, lambda tmp: save_file(
        {k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
        metadata={k: str(v) for k, v in metadata.items()}))


def save_training_state(path: Path, net: UNet, opt: torch.optim.Optimizer, state: dict,
                        rows: list[dict[str, Any]], best: dict,
                        best_weights: dict[str, torch.Tensor] | None,
                        averaged: torch.nn.Module | None = None) -> None:
    """A resumable checkpoint: the weights, the optimiser's per-parameter state (SGD's
    momentum, Adam's moments and step), the dropout generator (``state["dropout_rng"]``),
    the best weights so far, the moving average of the weights (``averaged``, if the run
    keeps one), and as JSON the run's ``state`` (step, clock, tile generator), metrics
    ``rows`` and ``best`` (its iteration and validation)."""
    state = dict(state)
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    if averaged is not None:
        tensors.update({f"average.{k}": v for k, v in averaged.state_dict().items()})
    if state.get("dropout_rng") is not None:
        tensors["rng.dropout"] = state.pop("dropout_rng")
    names = {id(p): n for n, p in net.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if torch.is_tensor(value):
                    tensors[f"optim.{names[id(p)]}.{key}"] = value
    if best_weights is not None:
        tensors.update({f"best.{k}": v for k, v in best_weights.items()})
    meta = {"format": FORMAT, "kind": "checkpoint", "model": json.dumps(net.config.to_dict()),
            "optimizer": type(opt).__name__, "state": json.dumps({**state, "best": best}),
            "rows": json.dumps(rows)}
    atomic_save_tensors(tensors, path, meta)


def load_training_state(path: Path, net: UNet, opt: torch.optim.Optimizer,
                        averaged: torch.nn.Module | None = None
                        ) -> tuple[dict, list[dict[str, Any]], dict, dict[str, torch.Tensor]]:
    """Load :func:`save_training_state`'s checkpoint into ``net``, ``opt`` (and the
    moving average ``averaged``); returns the run's state (with ``"dropout_rng"``), the
    metrics rows, the best's iteration and validation, and the best weights (empty when
    there are none)."""
    meta = read_metadata(path)
    if json.loads(meta["model"]) != net.config.to_dict():
        raise DataError(f"{path}: checkpoint was built with another configuration "
                        f"({meta['model']})")
    if meta.get("optimizer", "SGD") != type(opt).__name__:
        raise DataError(f"{path}: checkpoint was trained with {meta.get('optimizer', 'SGD')}, "
                        f"not {type(opt).__name__}")
    tensors = load_file(str(path))
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if averaged is not None:
        average = {k[8:]: v for k, v in tensors.items() if k.startswith("average.")}
        if not average:
            raise DataError(f"{path}: the checkpoint holds no moving average of the weights")
        averaged.load_state_dict(average)
    params = dict(net.named_parameters())
    for k, v in tensors.items():
        if k.startswith("momentum."):  # checkpoints written before optim.*
            opt.state[params[k[9:]]]["momentum_buffer"] = v.to(params[k[9:]].device)
        elif k.startswith("optim."):
            name, key = k[6:].rsplit(".", 1)
            opt.state[params[name]][key] = v if key == "step" else v.to(params[name].device)
    state = json.loads(meta["state"])
    if "rng.dropout" in tensors:
        state["dropout_rng"] = tensors["rng.dropout"]
    best = state.pop("best", {}) or {}
    weights = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    return state, json.loads(meta["rows"]), best, weights


def save_model(path: str | Path, net: UNet, extra: dict[str, Any] | None = None) -> None:
    """Write ``net``'s weights with its config (and ``extra``, e.g. normalisation)."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": json.dumps(net.config.to_dict()),
        "extra": json.dumps(extra or {}),
    }
    atomic_save_tensors(net.state_dict(), Path(path), meta)


def resolve_model_path(path: str | Path) -> Path:
    """A run directory or a ``.safetensors`` file -> the model file."""
    p = Path(path)
    if p.is_dir():
        p = p / MODEL_FILE
    if not p.exists():
        raise ModelFileError(f"{p}: no such model file")
    return p


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path}: not a safetensors model file ({e})") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a tileunet model (no tileunet metadata)")
    return meta


def read_model_config(path: str | Path) -> dict[str, Any]:
    """The network configuration of the model at ``path`` (a run directory or model
    file), read from its metadata without loading the weights."""
    p = resolve_model_path(path)
    try:
        config = json.loads(read_metadata(p)["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{p}: broken tileunet metadata ({e})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{p}: broken tileunet metadata (the model entry is not a dict)")
    try:
        return upgrade_network_fields(config)
    except ValueError as e:
        raise ModelFileError(f"{p}: broken tileunet metadata ({e})") from None


def load_start_weights(net: UNet, path: str | Path) -> str:
    """Copy the weights of the model at ``path`` (a run or model file) into ``net``.

    The start model must have ``net``'s architecture (in channels, depth, width,
    padding, normalisation); a different number of classes keeps everything but the last
    1x1 layer, which stays freshly initialised. Returns one line saying what was done.
    """
    start, _ = load_model(path)
    p = resolve_model_path(path)
    mine, theirs = net.config.to_dict(), start.config.to_dict()
    shape = ("in_channels", "depth", "width", "padding", "norm")
    if any(mine[k] != theirs[k] for k in shape):
        def fmt(c: dict) -> str:
            return ", ".join(f"{k} {c[k]}" for k in shape)
        raise ModelFileError(f"{p}: the start model's network ({fmt(theirs)}) does not "
                             f"match this one ({fmt(mine)})")
    state = start.state_dict()
    if mine["num_classes"] == theirs["num_classes"]:
        net.load_state_dict(state)
        return f"started from {p}"
    own = net.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    net.load_state_dict({**own, **state})
    return (f"started from {p}; its last layer ({theirs['num_classes']} classes) was "
            f"replaced by a new one for {mine['num_classes']} classes")


def load_model(path: str | Path, device: str | torch.device | None = None
               ) -> tuple[UNet, dict[str, Any]]:
    """Rebuild the network stored in ``path`` (a run directory or model file).

    Returns
    -------
    net : UNet
        In eval mode, on ``device`` (default CPU).
    extra : dict
        What the trainer stored beside the weights (normalisation, training config).
    """
    p = resolve_model_path(path)
    meta = read_metadata(p)
    try:
        net = UNet.from_config(json.loads(meta["model"]))
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{p}: broken tileunet metadata ({e})") from None
    state = load_file(str(p))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ModelFileError(
            f"{p}: weights do not match the stored configuration ({detail})"
        ) from None
    if device is not None:
        net.to(device)
    return net.eval(), extra
