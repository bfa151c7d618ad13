"""virtualizarr.conversion: one-chunk inlined arrays and Dataset <-> ManifestGroup, read back with zarr."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr

from virtualizarr.conversion import (
    dataset_from_group,
    dataset_to_group,
    inline_array,
    single_chunk_manifest,
    variable_to_array,
)
from virtualizarr.manifests import ManifestGroup
from virtualizarr.store import ManifestStore


def read_back(arrays: dict, attrs: dict | None = None) -> zarr.Group:
    store = ManifestStore(ManifestGroup(arrays=arrays, attributes=attrs or {}))
    return zarr.open_group(store, mode="r", zarr_format=3)


@pytest.mark.parametrize(
    "values",
    [
        np.arange(5, dtype=">f8"),
        np.arange(12, dtype="<i4").reshape(3, 4),
        np.linspace(0, 1, 40_000),  # > 64 KiB: shuffled + zlib
        np.array(3.5),
    ],
)
def test_inline_array_reads_back(values):
    dims = [f"d{i}" for i in range(values.ndim)]
    arr = inline_array(values, dims, {"units": "m"})
    got = read_back({"v": arr})["v"][...]
    np.testing.assert_array_equal(got, values)
    assert arr.metadata.dimension_names == tuple(dims)
    assert arr.metadata.attributes == {"units": "m"}
    codecs = [c.to_dict()["name"] for c in arr.codecs]
    assert ("numcodecs.zlib" in codecs) == (values.nbytes > 1 << 16)
    # the default fill value is one no coordinate holds
    assert np.isnan(arr.fill_value) if values.dtype.kind == "f" else True


def test_inline_array_fill_and_compression_options():
    ints = inline_array(np.arange(3, dtype="i2"), "x")
    assert ints.fill_value == np.iinfo("i2").min
    plain = inline_array(np.zeros(20_000), "x", fill_value=None, compress_above=None)
    assert plain.fill_value == 0
    assert [c.to_dict()["name"] for c in plain.codecs] == ["bytes"]


def test_single_chunk_manifest_empty_and_missing():
    assert single_chunk_manifest((0, 3), b"").shape_chunk_grid == (0, 1)
    missing = single_chunk_manifest((2,), None)
    assert missing.get_entry((0,)) is None
    assert len(missing) == 0


def test_variable_to_array_encodes_times_and_text():
    times = xr.Variable("t", np.array(["2000-01-01", "2000-01-03"], dtype="datetime64[ns]"))
    names = xr.Variable("t", np.array(["a", "bcd"], dtype=object))
    group = read_back(
        {"time": variable_to_array("time", times), "name": variable_to_array("name", names)}
    )
    ds = xr.open_zarr(
        ManifestStore(
            ManifestGroup(
                arrays={
                    "time": variable_to_array("time", times),
                    "name": variable_to_array("name", names),
                }
            )
        ),
        consolidated=False,
        zarr_format=3,
    )
    np.testing.assert_array_equal(ds["time"].values, times.values)
    assert list(ds["name"].values) == ["a", "bcd"]
    assert "units" in group["time"].attrs
    with pytest.raises(TypeError, match="'bad'"):
        variable_to_array("bad", xr.Variable("t", np.array([1, "a"], dtype=object)))


def test_group_round_trip():
    x = inline_array(np.arange(4.0), "x", fill_value=None, compress_above=None)
    data = inline_array(np.arange(8.0).reshape(4, 2), ["x", "y"], {"coordinates": "lat"})
    lat = inline_array(np.arange(4.0) * 10, "x")
    loaded = {"x": xr.Variable("x", np.arange(4.0))}
    ds = dataset_from_group({"x": x, "data": data, "lat": lat}, {"title": "t"}, loaded, source="s")
    assert set(ds.coords) == {"x", "lat"}
    assert list(ds.data_vars) == ["data"]
    assert "x" in ds.indexes
    assert "lat" not in ds.indexes
    assert ds.encoding["source"] == "s"
    assert ds.attrs == {"title": "t"}
    group = dataset_to_group(ds)
    assert group.arrays["data"].metadata.attributes["coordinates"] == "lat"
    back = xr.open_zarr(ManifestStore(group), consolidated=False, zarr_format=3).load()
    np.testing.assert_array_equal(back["data"].values, np.arange(8.0).reshape(4, 2))
    np.testing.assert_array_equal(back["lat"].values, np.arange(4.0) * 10)
    assert back.attrs == {"title": "t"}
