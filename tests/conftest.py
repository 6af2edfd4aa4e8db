"""Shared fixtures: tiny, fast, deterministic."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

DATA_DIR = Path(os.environ.get("TILEUNET_DATA",
                               Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _torch_seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def shared_data() -> Path:
    """Path to ../shared/data (or $TILEUNET_DATA); skips the test when it is absent."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"shared data not found at {DATA_DIR}")
    return DATA_DIR.resolve()


# ------------------------------------------------- the hardware that tests see
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-bf16", choices=("detect", "yes", "no", "flip"), default="detect",
        help="what tileunet.device.cpu_has_native_bf16() answers in this test run: the "
             "real detection, a CPU with native bf16, one without, or the opposite of "
             "this machine (to run the other branch of precision='auto')")


def _real_cpu_bf16() -> bool:
    import tileunet.device

    return tileunet.device.detect_cpu_bf16()


def pytest_report_header(config: pytest.Config) -> str:
    mode = config.getoption("--cpu-bf16")
    return (f"tileunet: this CPU has native bf16: {_real_cpu_bf16()}; "
            f"tests see: {_seen_cpu_bf16(mode)}")


def _seen_cpu_bf16(mode: str) -> bool:
    return {"detect": _real_cpu_bf16(), "yes": True, "no": False,
            "flip": not _real_cpu_bf16()}[mode]


# Own MonkeyPatch instances: a test's `monkeypatch.undo()` must not give the real
# hardware back in the middle of the test.
@pytest.fixture(autouse=True)
def _cpu_bf16_as_asked(request: pytest.FixtureRequest):
    """Apply --cpu-bf16 to every test (in this process)."""
    import tileunet.device

    mode = request.config.getoption("--cpu-bf16")
    with pytest.MonkeyPatch.context() as mp:
        if mode != "detect":
            seen = _seen_cpu_bf16(mode)
            mp.setattr(tileunet.device, "cpu_has_native_bf16", lambda: seen)
        yield


@pytest.fixture(params=[True, False], ids=["cpu-with-bf16", "cpu-without-bf16"])
def cpu_bf16(request: pytest.FixtureRequest, _cpu_bf16_as_asked) -> Iterator[bool]:
    """Run the test twice: as on a CPU with native bf16 and as on one without.

    bf16 autocast works on every CPU (emulated where the instructions are missing, and
    slower), so both branches of ``precision="auto"`` run on any machine; use tiny
    networks.
    """
    import tileunet.device

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tileunet.device, "cpu_has_native_bf16", lambda: request.param)
        yield request.param
