"""open_virtual_datatree / group= on a NetCDF4 file with nested groups, values checked with netCDF4."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("virtualizarr.parsers.hdf5")
netCDF4 = pytest.importorskip("netCDF4")

from virtualizarr import open_virtual_dataset, open_virtual_datatree
from virtualizarr.manifests import ManifestArray


@pytest.fixture
def grouped(tmp_path):
    path = tmp_path / "groups.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.title = "root"
        nc.createDimension("x", 4)
        nc.createVariable("x", "i4", ("x",))[:] = np.arange(4)
        nc.createVariable("top", "f4", ("x",))[:] = np.arange(4) * 1.5
        a = nc.createGroup("a")
        a.createDimension("y", 3)
        a.createVariable("y", "f8", ("y",))[:] = [10.0, 20.0, 30.0]
        v = a.createVariable("v", "i2", ("y",), zlib=True)
        v[:] = [1, 2, 3]
        v.units = "m"
        b = a.createGroup("b")
        w = b.createVariable("w", "f4", ("x",), fill_value=-1.0)  # dimension from an ancestor
        w[:] = np.ma.masked_array([1, 2, 3, 4], mask=[0, 1, 0, 0])
    return path


def test_datatree_has_every_group_with_values(grouped):
    tree = open_virtual_datatree(grouped)
    assert set(tree.groups) == {"/", "/a", "/a/b"}
    assert tree.attrs["title"] == "root"
    assert isinstance(tree["/a"].ds["v"].variable.data, ManifestArray)
    np.testing.assert_array_equal(tree["/a"].ds["y"].values, [10.0, 20.0, 30.0])
    with netCDF4.Dataset(grouped) as nc:
        for path, name in [("/", "top"), ("/a", "v"), ("/a/b", "w")]:
            node = tree[path].to_dataset()
            back = xr.open_zarr(node.vz.to_store(), consolidated=False, zarr_format=3)
            expected = nc[path.lstrip("/") + "/" + name if path != "/" else name][:]
            np.testing.assert_array_equal(
                back[name].values, np.ma.filled(expected.astype("f8"), np.nan)
            )


def test_group_option_selects_one_group(grouped):
    ds = open_virtual_dataset(grouped, group="/a")
    assert set(ds.variables) == {"y", "v"}
    assert ds["v"].attrs["units"] == "m"
    with pytest.raises(KeyError, match="no group"):
        open_virtual_dataset(grouped, group="/nope")
