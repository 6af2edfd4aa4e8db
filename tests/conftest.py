"""Shared fixtures: tiny, fast, deterministic."""

from __future__ import annotations

import os
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
