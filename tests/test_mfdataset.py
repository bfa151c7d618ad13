"""open_virtual_mfdataset on real NetCDF4 files: equal to xr.open_mfdataset, every parallel option."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("virtualizarr.parsers.hdf5")
netCDF4 = pytest.importorskip("netCDF4")

from virtualizarr import open_virtual_dataset, open_virtual_mfdataset
from virtualizarr.errors import ManifestConcatError
from virtualizarr.manifests import ManifestArray

N_FILES, STEPS = 24, 2


def write_file(
    path: Path, i: int, *, scale: float = 0.01, zlib: bool = True, chunks=(1, 4, 8)
) -> None:
    rng = np.random.default_rng(i)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", 8)
        nc.createDimension("lon", 16)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 2000-01-01", "standard"
        t[:] = np.arange(i * STEPS, (i + 1) * STEPS)
        nc.createVariable("lat", "f4", ("lat",))[:] = np.linspace(-70, 70, 8)
        nc.createVariable("lon", "f4", ("lon",))[:] = np.arange(0, 360, 22.5)
        air = nc.createVariable(
            "air", "f4", ("time", "lat", "lon"), zlib=zlib, shuffle=zlib, chunksizes=chunks
        )
        air.units = "K"
        air[:] = 280 + rng.normal(size=(STEPS, 8, 16))
        pr = nc.createVariable(
            "pr", "i2", ("time", "lat", "lon"), zlib=True, fill_value=-999, chunksizes=(1, 8, 16)
        )
        pr.scale_factor, pr.add_offset = scale, 1.0
        vals = rng.uniform(0, 50, size=(STEPS, 8, 16))
        pr[:] = np.ma.masked_array(vals, mask=np.arange(vals.size).reshape(vals.shape) == 0)
        nc.createVariable("mask", "i1", ("lat", "lon"))[:] = np.arange(128).reshape(8, 16) % 2


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("mf")
    paths = [d / f"f{i:02d}.nc" for i in range(N_FILES)]
    for i, p in enumerate(paths):
        write_file(p, i)
    return paths


@pytest.fixture(scope="module")
def expected(files) -> xr.Dataset:
    with xr.open_mfdataset(
        files,
        engine="netcdf4",
        combine="by_coords",
        data_vars="minimal",
        coords="minimal",
        compat="override",
    ) as ds:
        return ds.load()


def assert_reads_as(virtual: xr.Dataset, expected: xr.Dataset) -> None:
    assert isinstance(virtual["air"].data, ManifestArray)
    got = xr.open_zarr(virtual.vz.to_store(), consolidated=False, zarr_format=3).load()
    for name in ("air", "pr", "mask"):
        np.testing.assert_array_equal(got[name].values, expected[name].values, err_msg=name)
    np.testing.assert_array_equal(got["time"].values, expected["time"].values)


@pytest.mark.parametrize("parallel", [False, "threads", "processes", "dask", "executor"])
def test_by_coords_equals_open_mfdataset(files, expected, parallel):
    if parallel == "executor":
        with ThreadPoolExecutor(2) as ex:
            ds = open_virtual_mfdataset([str(f) for f in files[::-1]], parallel=ex)
    else:
        ds = open_virtual_mfdataset([str(f) for f in files[::-1]], parallel=parallel)
    assert ds["air"].shape == (N_FILES * STEPS, 8, 16)
    assert len(ds["air"].data.manifest.used_paths()) == N_FILES
    assert_reads_as(ds, expected)


def test_glob_and_nested(files, expected):
    pattern = str(files[0].parent / "f*.nc")
    assert_reads_as(open_virtual_mfdataset(pattern), expected)
    nested = open_virtual_mfdataset([str(f) for f in files], combine="nested", concat_dim="time")
    assert_reads_as(nested, expected)


def test_preprocess_and_kwargs(files):
    ds = open_virtual_mfdataset(
        files[:3],
        combine="nested",
        concat_dim="time",
        preprocess=lambda d: d.drop_vars("mask"),
        loadable_variables=["time"],
    )
    assert "mask" not in ds
    assert isinstance(ds["lat"].variable.data, ManifestArray)
    assert ds["time"].dtype.kind == "M"
    assert ds.sizes["time"] == 3 * STEPS


@pytest.mark.dask
def test_dask_distributed_cluster(files, expected):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        ds = open_virtual_mfdataset([str(f) for f in files], parallel=client.get_executor())
        assert_reads_as(ds, expected)
        ds2 = open_virtual_mfdataset([str(f) for f in files], parallel="dask")
        assert ds2["air"].data.manifest == ds["air"].data.manifest


def test_different_packing_is_refused(tmp_path):
    write_file(tmp_path / "a.nc", 0, scale=0.01)
    write_file(tmp_path / "b.nc", 1, scale=0.02)
    with pytest.raises(ManifestConcatError, match=r"'pr'.*'scale_factor'.*0\.01.*0\.02"):
        open_virtual_mfdataset([tmp_path / "a.nc", tmp_path / "b.nc"])
    # plain xarray concat is refused at the array level too
    a, b = (open_virtual_dataset(tmp_path / n) for n in ("a.nc", "b.nc"))
    with pytest.raises(ManifestConcatError, match="scale_factor"):
        xr.concat([a, b], dim="time", coords="minimal", compat="override", data_vars="minimal")


def test_different_codecs_name_the_mismatch(tmp_path):
    write_file(tmp_path / "a.nc", 0, zlib=True)
    write_file(tmp_path / "b.nc", 1, zlib=False)
    with pytest.raises(ManifestConcatError, match="codecs differs"):
        open_virtual_mfdataset([tmp_path / "a.nc", tmp_path / "b.nc"])


def test_different_chunking_names_the_mismatch(tmp_path):
    write_file(tmp_path / "a.nc", 0, chunks=(1, 4, 8))
    write_file(tmp_path / "b.nc", 1, chunks=(1, 8, 8))
    with pytest.raises(ManifestConcatError, match=r"chunk shape differs: \(1, 4, 8\).*\(1, 8, 8\)"):
        open_virtual_mfdataset([tmp_path / "a.nc", tmp_path / "b.nc"])


def test_values_needed_error_names_the_option(files):
    a, b = (open_virtual_dataset(f) for f in files[:2])
    with pytest.raises(Exception, match="compat='override'"):
        xr.concat([a, b], dim="time", coords="minimal", compat="equals", data_vars="minimal")
