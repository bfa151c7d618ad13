"""Both writers spell attributes the same way (virtualizarr.attributes), and xarray reads it back.

A variable with ``missing_value = [NaN, -999]`` (netCDF allows a list): NaN entries are
dropped (NaN already reads as missing; a string "NaN" among numbers would break xarray's
masking), other non-finite floats become "NaN"/"Infinity"/"-Infinity" strings. Values
read back through kerchunk JSON and through Icechunk equal netCDF4's decoding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from virtualizarr import open_virtual_dataset
from virtualizarr.attributes import json_attrs

netCDF4 = pytest.importorskip("netCDF4")
pytest.importorskip("h5py")
pytest.importorskip("fsspec")

VALUES = np.array([1.5, -999.0, np.nan, 4.0, -999.0, 6.25], dtype="f4")


@pytest.fixture
def nc_file(tmp_path: Path) -> Path:
    path = tmp_path / "mv.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("x", VALUES.size)
        v = nc.createVariable("v", "f4", ("x",), chunksizes=(3,), zlib=True)
        v.set_auto_maskandscale(False)
        v.missing_value = np.array([np.nan, -999.0], dtype="f4")
        v.valid_max = np.float32(np.inf)
        v[:] = VALUES
        nc.nan_attr = np.nan
    return path


def _expected(nc_file: Path) -> np.ndarray:
    with xr.open_dataset(nc_file, engine="netcdf4") as ds:
        got = ds["v"].values
    assert np.isnan(got[[1, 2, 4]]).all()  # netCDF4/xarray mask both -999 and NaN
    return got


def test_json_attrs_drops_nan_from_missing_value() -> None:
    assert json_attrs({"missing_value": [np.float32(np.nan), -999.0]}) == {
        "missing_value": [-999.0]
    }
    assert json_attrs({"missing_value": float("nan")}) == {}
    assert json_attrs({"a": [float("inf"), 1.0]}) == {"a": ["Infinity", 1.0]}


def test_kerchunk_json(nc_file: Path, tmp_path: Path) -> None:
    ds = open_virtual_dataset(str(nc_file), loadable_variables=[])
    out = tmp_path / "refs.json"
    ds.vz.to_kerchunk(str(out), format="json")
    refs = json.loads(out.read_text())["refs"]
    zattrs = json.loads(refs["v/.zattrs"])
    assert zattrs["missing_value"] == [-999.0]
    assert zattrs["valid_max"] == "Infinity"
    assert json.loads(refs[".zattrs"])["nan_attr"] == "NaN"
    back = xr.open_dataset(
        "reference://",
        engine="zarr",
        consolidated=False,
        zarr_format=2,
        backend_kwargs={"storage_options": {"fo": str(out)}},
    )
    np.testing.assert_array_equal(back["v"].values, _expected(nc_file))


def test_icechunk(nc_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("icechunk")
    from virtualizarr.readers import open_icechunk

    ds = open_virtual_dataset(str(nc_file), loadable_variables=[])
    repo = tmp_path / "repo"
    ds.vz.to_icechunk(str(repo))
    back = open_icechunk(repo)
    assert back["v"].encoding["missing_value"] == [-999.0]  # the zarr.json attribute, decoded
    np.testing.assert_array_equal(back["v"].values, _expected(nc_file))
