"""Tests for the hardware decisions (tileunet.device): both branches of each, on any
machine, with the hardware faked."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import tileunet.device as device_mod
from tileunet.device import (
    autocast_dtype,
    bf16_from_cpu_flags,
    inference_channels_last,
    resolve_device,
    strict_fp32,
    training_memory_format,
)
from tileunet.inference.overlap import predict
from tileunet.model import UNet

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a cuda device object needs no GPU


@pytest.mark.parametrize("gpu", [True, False])
def test_auto_device_is_the_gpu_when_pytorch_sees_one(gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    want = torch.device("cuda" if gpu else "cpu")
    assert resolve_device(None) == resolve_device("auto") == want
    assert resolve_device("cpu") == CPU and resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cpu")) == CPU


@pytest.mark.parametrize("flags, onednn, want", [
    ({"fpu", "avx2", "avx512f"}, True, False),       # AVX-512 without its bf16 extension
    ({"avx2", "avx512_bf16"}, True, True),            # Zen 4, Cooper Lake
    ({"amx_tile", "amx_bf16"}, True, True),           # Sapphire Rapids
    ({"fp", "asimd", "bf16"}, True, True),            # Arm (Graviton 3, Neoverse V1)
    ({"avx512_bf16"}, False, False),                  # a PyTorch build whose oneDNN cannot
])
def test_native_bf16_from_the_cpu_flags(flags, onednn, want):
    assert bf16_from_cpu_flags(frozenset(flags), onednn) is want


def test_detection_is_read_once_and_is_a_bool():
    assert isinstance(device_mod.detect_cpu_bf16(), bool)
    assert device_mod.detect_cpu_bf16.cache_info().currsize == 1


def test_auto_precision_on_a_cpu_follows_native_bf16(cpu_bf16):
    assert autocast_dtype("auto", CPU) == (torch.bfloat16 if cpu_bf16 else None)
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) == torch.bfloat16


@pytest.mark.parametrize("supported", [True, False])
def test_auto_precision_on_cuda_follows_the_gpu(supported, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert autocast_dtype("auto", CUDA) == (torch.bfloat16 if supported else None)
    assert autocast_dtype("fp32", CUDA) is None
    assert autocast_dtype("bf16", CUDA) == torch.bfloat16


def test_forced_bf16_warns_only_where_it_is_emulated(cpu_bf16, caplog):
    with caplog.at_level(logging.WARNING, logger="tileunet.device"):
        autocast_dtype("bf16", CPU)
    assert ("far slower" in caplog.text) is (not cpu_bf16)


def test_precision_errors():
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype("fp16", CPU)
    with pytest.raises(ValueError, match="needs a cpu or cuda device"):
        autocast_dtype("bf16", torch.device("meta"))
    assert autocast_dtype("auto", torch.device("meta")) is None


def test_memory_layouts():
    assert training_memory_format(CUDA) == torch.channels_last
    assert training_memory_format(CUDA, torch.bfloat16) == torch.channels_last
    assert training_memory_format(CPU) == torch.contiguous_format  # fp32
    assert training_memory_format(CPU, torch.bfloat16) == torch.channels_last
    for dev in (CPU, CUDA):
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            assert inference_channels_last(dev, dtype)
        assert not inference_channels_last(dev, torch.float64)
    assert not inference_channels_last(torch.device("meta"), torch.float32)


def test_fp32_switches_tf32_off_on_cuda_and_restores_it():
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    with strict_fp32(CUDA):  # only sets flags: runs without a GPU
        assert conv.fp32_precision == "ieee"
    assert conv.fp32_precision == before
    with strict_fp32(CPU):
        assert conv.fp32_precision == before


def test_predict_auto_takes_the_branch_of_the_hardware(cpu_bf16, rng):
    """``auto`` gives exactly what the precision it resolves to gives."""
    torch.manual_seed(0)
    net = UNet(depth=2, width=2, dropout=0.0).eval()
    image = rng.normal(size=(20, 24)).astype(np.float32)
    auto = predict(net, image, precision="auto", progress=False)
    same = predict(net, image, precision="bf16" if cpu_bf16 else "fp32", progress=False)
    other = predict(net, image, precision="fp32" if cpu_bf16 else "bf16", progress=False)
    np.testing.assert_array_equal(auto, same)
    assert np.abs(auto - other).max() > 0  # the two branches really differ


def test_available_memory_reads_the_kernel_and_falls_back_to_physical_memory(monkeypatch):
    import os

    have = device_mod.available_memory(torch.device("cpu"))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < have <= total

    class Unreadable:
        def __init__(self, *a) -> None:
            pass

        def read_text(self) -> str:
            raise OSError("no /proc here")

    monkeypatch.setattr(device_mod, "Path", Unreadable)
    assert device_mod.available_memory(torch.device("cpu")) == total
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d: (123, 456))
    assert device_mod.available_memory(torch.device("cuda")) == 123
