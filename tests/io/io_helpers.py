"""Small file writers and checks shared by the tests of tileunet.io."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image


def png(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as a PNG (folders made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def tif(path: Path, array: np.ndarray, **kwargs) -> Path:
    """Write ``array`` as a TIFF (folders made); ``kwargs`` go to tifffile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, **kwargs)
    return path


def one_line(exc: pytest.ExceptionInfo) -> str:
    """The message of a raised error, which must be one line."""
    text = str(exc.value)
    assert "\n" not in text
    return text
