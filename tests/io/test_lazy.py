"""Lazy readers of zarr, OME-Zarr and TIFF images, and the pixel sizes stored with them."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")
import tifffile  # noqa: E402

from tileunet.errors import DataError  # noqa: E402
from tileunet.io.lazy import image_scale, open_image  # noqa: E402


def _zarr(path, a, chunks):
    z = zarr.open_array(str(path), mode="w", shape=a.shape, chunks=chunks, dtype=a.dtype)
    z[...] = a
    return path


def test_open_image_reads_zarr_ome_zarr_and_tiled_tiff(tmp_path, rng):
    img = rng.integers(0, 4000, (90, 70), dtype=np.uint16)
    a = open_image(_zarr(tmp_path / "a.zarr", img, (32, 32)))
    np.testing.assert_array_equal(a.compute(), img[None])
    tifffile.imwrite(tmp_path / "t.tif", img, tile=(32, 32), bigtiff=True)
    np.testing.assert_array_equal(open_image(tmp_path / "t.tif").compute(), img[None])
    rgb = rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, tile=(32, 32))
    np.testing.assert_array_equal(open_image(tmp_path / "rgb.tif").compute(),
                                  rgb.transpose(2, 0, 1))
    # OME-Zarr (NGFF 0.4 layout): a group with multiscales metadata, TCZYX
    g = zarr.open_group(str(tmp_path / "o.ome.zarr"), mode="w", zarr_format=2)
    g.attrs["multiscales"] = [{"version": "0.4", "datasets": [{"path": "0"}],
                               "axes": [{"name": n} for n in "tczyx"]}]
    z = g.create_array("0", shape=(1, 1, 1, 90, 70), chunks=(1, 1, 1, 32, 32),
                       dtype="uint16")
    z[...] = img[None, None, None]
    np.testing.assert_array_equal(open_image(tmp_path / "o.ome.zarr").compute(), img[None])


def test_open_image_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        open_image(tmp_path / "missing.zarr")
    (tmp_path / "x.tif").write_bytes(b"not a tiff")
    with pytest.raises(DataError, match=r"x\.tif: not a readable TIFF"):
        open_image(tmp_path / "x.tif")
    z = zarr.open_array(str(tmp_path / "stack.zarr"), mode="w", shape=(3, 2, 20, 20),
                        dtype="uint8")
    with pytest.raises(DataError, match="stack.zarr"):
        open_image(tmp_path / "stack.zarr")
    del z


def test_image_scale_from_tiff_and_ome_zarr(tmp_path):
    img = np.zeros((20, 30), np.uint8)
    tifffile.imwrite(tmp_path / "ij.tif", img, imagej=True, resolution=(1 / 0.5, 1 / 0.25),
                     metadata={"unit": "um"})
    sy, sx, unit = image_scale(tmp_path / "ij.tif")
    assert (sy, sx, unit) == (pytest.approx(0.25), pytest.approx(0.5), "micrometer")
    tifffile.imwrite(tmp_path / "plain.tif", img)
    assert image_scale(tmp_path / "plain.tif") == (1.0, 1.0, None)
    tifffile.imwrite(tmp_path / "cm.tif", img, resolution=(1e4, 2e4), resolutionunit="CENTIMETER")
    sy, sx, unit = image_scale(tmp_path / "cm.tif")
    assert (sy, sx, unit) == (pytest.approx(0.5), pytest.approx(1.0), "micrometer")
