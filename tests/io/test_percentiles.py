"""Exact percentiles of an image block by block: the numbers np.percentile gives."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dask")

from tileunet.inference.blockwise import Runner  # noqa: E402
from tileunet.io.normalization import Normalization  # noqa: E402
from tileunet.io.percentiles import channel_ranges, linear_percentiles  # noqa: E402


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 12345])
def test_linear_percentiles_match_numpy(rng, n):
    x = (rng.normal(size=n) * 100).astype(np.float32)
    s = np.sort(x)
    got = linear_percentiles(n, [1.0, 99.8, 50.0, 0.0, 100.0], lambda r: s[r])
    np.testing.assert_array_equal(got, np.percentile(x, [1.0, 99.8, 50.0, 0.0, 100.0]))


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int16])
def test_normalisation_statistics_are_exact(rng, dtype):
    img = (rng.normal(size=(2, 97, 61)) * 300).astype(dtype)
    import dask.array as da

    arr = da.from_array(img, chunks=(2, 30, 25))
    for method in ("percentile", "minmax"):
        norm = Normalization(method)
        ranges = channel_ranges(arr, norm, Runner(None, progress=False))
        for c, (lo, hi) in enumerate(ranges):
            ch = img[c].astype(np.float32)
            if method == "percentile":
                want = [float(v) for v in np.percentile(ch, [norm.low, norm.high])]
            else:
                want = [float(ch.min()), float(ch.max())]
            assert (lo, hi) == tuple(want)
