"""The contract every parser keeps, checked on each one with a small file made here.

* a small valid file -> a ``ManifestStore`` whose arrays read back the values written;
* garbage bytes -> an error from ``virtualizarr.errors`` naming the file;
* a missing path -> ``FileNotFoundError`` naming it;
* the parser pickles (``parallel="processes"`` ships it to workers) and keeps its options.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from virtualizarr import parsers
from virtualizarr.errors import VirtualiZarrError
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

VALUES = np.arange(24, dtype="<f4").reshape(4, 6)


def _netcdf4(path: Path) -> Path:
    netCDF4 = pytest.importorskip("netCDF4")
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("y", 4)
        nc.createDimension("x", 6)
        v = nc.createVariable("v", "f4", ("y", "x"), chunksizes=(2, 3), zlib=True)
        v[:] = VALUES
    return path


def make_hdf5(tmp: Path) -> Path:
    return _netcdf4(tmp / "a.nc")


def make_netcdf3(tmp: Path) -> Path:
    netCDF4 = pytest.importorskip("netCDF4")
    path = tmp / "a3.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("y", 4)
        nc.createDimension("x", 6)
        nc.createVariable("v", "f4", ("y", "x"))[:] = VALUES
    return path


def make_tiff(tmp: Path) -> Path:
    tifffile = pytest.importorskip("tifffile")
    path = tmp / "a.tif"
    tifffile.imwrite(path, VALUES)
    return path


def make_fits(tmp: Path) -> Path:
    fits = pytest.importorskip("astropy.io.fits")
    path = tmp / "a.fits"
    fits.PrimaryHDU(VALUES.astype(">f4")).writeto(path)
    return path


def make_grib(tmp: Path) -> Path:
    eccodes = pytest.importorskip("eccodes")
    path = tmp / "a.grib2"
    h = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
    try:
        eccodes.codes_set(h, "Ni", 6)
        eccodes.codes_set(h, "Nj", 4)
        eccodes.codes_set_values(h, VALUES.ravel().astype("f8"))
        with open(path, "wb") as f:
            eccodes.codes_write(h, f)
    finally:
        eccodes.codes_release(h)
    return path


def make_dmrpp(tmp: Path) -> Path:
    from tests.test_parsers.dmrpp_writer import write_dmrpp

    nc = _netcdf4(tmp / "d.nc")
    out = tmp / "d.nc.dmrpp"
    write_dmrpp(nc, out)
    return out


def make_zarr(tmp: Path) -> Path:
    path = tmp / "a.zarr"
    arr = zarr.create_array(
        str(path), shape=VALUES.shape, chunks=(2, 3), dtype="f4", dimension_names=("y", "x")
    )
    arr[:] = VALUES
    return path


def _kerchunk(tmp: Path, fmt: str) -> Path:
    from virtualizarr import open_virtual_dataset

    nc = _netcdf4(tmp / "k.nc")
    out = tmp / ("refs.json" if fmt == "json" else "refs.parq")
    open_virtual_dataset(str(nc), loadable_variables=[]).vz.to_kerchunk(str(out), format=fmt)
    return out


def make_kerchunk_json(tmp: Path) -> Path:
    return _kerchunk(tmp, "json")


def make_kerchunk_parquet(tmp: Path) -> Path:
    pytest.importorskip("pyarrow")
    return _kerchunk(tmp, "parquet")


def _garbage_file(tmp: Path) -> Path:
    path = tmp / "garbage.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def _garbage_dir(marker: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "garbage.d"
        path.mkdir()
        (path / marker).write_bytes(b"\x00\xff not json \x01" * 10)
        return path

    return make


# parser name -> (valid file maker, garbage maker)
CASES: dict[str, tuple[Callable[[Path], Path], Callable[[Path], Path]]] = {
    "HDFParser": (make_hdf5, _garbage_file),
    "NetCDF3Parser": (make_netcdf3, _garbage_file),
    "TIFFParser": (make_tiff, _garbage_file),
    "FITSParser": (make_fits, _garbage_file),
    "GRIBParser": (make_grib, _garbage_file),
    "DMRPPParser": (make_dmrpp, _garbage_file),
    "ZarrParser": (make_zarr, _garbage_dir("zarr.json")),
    "KerchunkJSONParser": (make_kerchunk_json, _garbage_file),
    "KerchunkParquetParser": (make_kerchunk_parquet, _garbage_dir(".zmetadata")),
}


def test_every_parser_is_covered() -> None:
    names = {n for n in parsers.__all__ if n.endswith("Parser") and n != "Parser"}
    assert names == set(CASES)


def _parser(name: str) -> type:
    try:
        return getattr(parsers, name)
    except ImportError as e:  # its optional dependency is not installed
        pytest.skip(f"{name}: {e}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_valid_file_gives_a_store_with_the_values(name: str, tmp_path: Path) -> None:
    path = CASES[name][0](tmp_path)
    store = _parser(name)()(str(path), ObjectStoreRegistry())
    assert isinstance(store, ManifestStore)
    node, group = store.group, None  # GRIB puts its arrays in a group per level type
    while not node.arrays and node.groups:
        sub = next(iter(node.groups))
        node, group = node.groups[sub], f"{group}/{sub}" if group else sub
    ds = xr.open_zarr(store, group=group, consolidated=False, zarr_format=3)
    # GRIB adds length-1 time/level axes: compare the variable holding VALUES.size values
    var = next(v for v in ds.data_vars.values() if v.size == VALUES.size)
    # GRIB packs values (16 bits here), every other format stores them exactly
    atol = 1e-3 if name == "GRIBParser" else 0
    np.testing.assert_allclose(var.values.astype("f4").ravel(), VALUES.ravel(), atol=atol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_garbage_raises_a_named_error(name: str, tmp_path: Path) -> None:
    path = CASES[name][1](tmp_path)
    with pytest.raises(VirtualiZarrError) as info:
        _parser(name)()(str(path), ObjectStoreRegistry())
    assert path.name in str(info.value)


@pytest.mark.parametrize("name", sorted(CASES))
def test_missing_path_raises_file_not_found(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist.dat"
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        _parser(name)()(str(missing), ObjectStoreRegistry())


@pytest.mark.parametrize("name", sorted(CASES))
def test_parser_pickles(name: str) -> None:
    parser = _parser(name)()
    back = pickle.loads(pickle.dumps(parser))
    assert type(back) is type(parser)
    assert repr(back) == repr(parser)
