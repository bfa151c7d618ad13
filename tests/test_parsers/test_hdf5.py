"""HDFParser: what zarr/xarray read through the ManifestStore equals h5py's and h5netcdf's reads.

Real files (``../shared/data/real/netcdf4_hdf5``) are checked against ``ground_truth.json``
and ``xr.open_dataset(path, engine="h5netcdf")``; feature files are written in
``tmp_path`` with netCDF4-python and h5py. Filters are tested in ``test_hdf5_filters.py``.

Every test that parses takes ``hdf_parse`` (``tests/conftest.py``) and so runs with our HDF5
reader (``engine="own"``, failing if it fell back to h5py unless the test names the fallback)
and with ``engine="h5py"``; where the engines differ the test says so with a strict xfail.
"""

from __future__ import annotations

import contextlib
import functools
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

from tests._support import http_served
from tests.conftest import HDF5_ENGINES, HDFParse, HTTPServer, real_files
from virtualizarr.errors import (
    CorruptFileError,
    ParserError,
    VariableSkippedWarning,
    VirtualiZarrWarning,
)
from virtualizarr.manifests.metadata import to_json_safe
from virtualizarr.parsers import HDFParser, detect_parser
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore
from virtualizarr.testing.ground_truth import assert_values_match, ground_truth, real_file

h5py = pytest.importorskip("h5py")
netCDF4 = pytest.importorskip("netCDF4")
pytest.importorskip("h5netcdf")
# the reference readers (h5py, h5netcdf) need HDF5's plugin filters (bitshuffle, lz4...);
# the parser's default engine reads metadata without h5py, so it no longer loads them
with contextlib.suppress(ImportError):
    import hdf5plugin  # noqa: F401

# netCDF char variables are Zarr 'null_terminated_bytes', which zarr-python flags as unstable
pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")

NOT_A_VARIABLE = b"This is a netCDF dimension but not a netCDF variable."


# -- helpers ---------------------------------------------------------------------------------


def open_store(store: ManifestStore, *, decode_cf: bool = False) -> xr.Dataset:
    return xr.open_dataset(
        store, engine="zarr", consolidated=False, zarr_format=3, decode_cf=decode_cf, chunks=None
    )


def open_h5netcdf(
    path: str | Path, *, group: str | None = None, decode_cf: bool = False
) -> xr.Dataset:
    return xr.open_dataset(
        path, engine="h5netcdf", group=group, decode_cf=decode_cf, phony_dims="access"
    )


def zarr_array(store: ManifestStore, name: str) -> np.ndarray:
    return zarr.open_group(store, mode="r", zarr_format=3)[name][...]


def comparable_attrs(attrs: dict[str, Any]) -> str:
    """JSON text (NaN == NaN), without the ``_nc*`` attributes xarray's Zarr backend hides."""
    kept = {k: v for k, v in to_json_safe(dict(attrs)).items() if not k.lower().startswith("_nc")}
    return json.dumps(kept, sort_keys=True)


def assert_same_dataset(ours: xr.Dataset, ref: xr.Dataset, *, skip: set[str] = frozenset()) -> None:
    """Same variables, dims, values (NaN == NaN) and attributes.

    Decoded floats may differ in width: an attribute such as ``scale_factor`` keeps its
    float32 type in HDF5 but is a plain number in Zarr's JSON, so xarray decodes to float64.
    """
    assert set(ours.variables) == set(ref.variables) - skip
    for name in ours.variables:
        a, b = ours[name], ref[name]
        assert a.dims == b.dims, name
        if b.dtype.kind in "OU" or a.dtype.kind == "T":  # vlen strings: h5netcdf gives objects
            assert [str(x) for x in a.values.ravel()] == [str(x) for x in b.values.ravel()], name
        elif b.dtype.kind == "V" and b.dtype.names is None:  # h5netcdf: compounds as raw bytes
            assert a.dtype.names, name  # values: see the h5py tests
            assert a.shape == b.shape, name
        elif a.dtype.kind == "f" and b.dtype.kind == "f" and a.dtype != b.dtype:
            # the narrower computation rounds at its own precision: allow a few of its ulps
            eps = np.finfo(min(a.dtype, b.dtype, key=lambda d: d.itemsize)).eps
            scale = float(np.nanmax(np.abs(b.values))) if b.size else 0.0
            np.testing.assert_allclose(
                a.values, b.values, rtol=4 * eps, atol=4 * eps * scale, err_msg=str(name)
            )
        else:
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a.values, b.values, err_msg=str(name))
        if a.dtype.names:  # the parser drops a struct _FillValue, which xarray cannot decode
            b = b.copy()
            b.attrs.pop("_FillValue", None)
        assert comparable_attrs(a.attrs) == comparable_attrs(b.attrs), name
    assert comparable_attrs(ours.attrs) == comparable_attrs(ref.attrs)


def parse_warned(hdf_parse: HDFParse, path: Path, **options: Any) -> tuple[ManifestStore, str]:
    """``hdf_parse(path, **options)`` and the text of the VirtualiZarrWarnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VirtualiZarrWarning)
        store = hdf_parse(path, **options)
    text = " ".join(str(w.message) for w in caught if issubclass(w.category, VirtualiZarrWarning))
    return store, text


def assert_same_as_h5netcdf(
    hdf_parse: HDFParse, path: Path, *, group: str | None = None, **options: Any
) -> None:
    store = hdf_parse(path, group=group, **options)
    for decode_cf in (False, True):
        ref = open_h5netcdf(path, group=group, decode_cf=decode_cf)
        assert_same_dataset(open_store(store, decode_cf=decode_cf), ref)


def assert_same_as_h5py(store: ManifestStore, path: Path, *, skip: set[str] = frozenset()) -> None:
    """Every array of the store (but ``skip``) holds h5py's values of the same dataset."""
    group = zarr.open_group(store, mode="r", zarr_format=3)
    with h5py.File(path, "r") as f:
        for name, arr in group.arrays():
            if name in skip:
                continue
            expected = f[name][()]
            got = arr[...]
            if expected.dtype.kind == "O":
                assert [str(x) for x in got.ravel()] == [x.decode() for x in expected.ravel()], name
            elif expected.dtype.names:
                assert got.tolist() == expected.tolist(), name
            else:
                assert got.dtype == expected.dtype.newbyteorder("="), name
                np.testing.assert_array_equal(got, expected, err_msg=name)


# -- real files ------------------------------------------------------------------------------

REAL = real_files("netcdf4_hdf5")
# datasets the parser leaves out, with the reason it gives
EXPECTED_SKIPS = {
    "netcdf4_hdf5/NEONDSTowerTemperatureData.hdf5": "compound (struct) records",
    "netcdf4_hdf5/vlen2.h5": "compound type with nested, array or variable-length members",
}


COMPAT1 = "netcdf4_hdf5/ref_hdf5_compat1.nc"  # 2,001 variables: by far the slowest file to compare


def real_cases(*, slow: bool = False) -> list[Any]:
    """``(rel, hdf_engine)`` for every real file and engine, but ``ref_hdf5_compat1.nc`` with
    our reader only: test_hdf5_reader shows the h5py engine gives the very same ManifestGroup
    for it, so reading its 2,001 variables again would test nothing new. ``slow``: mark it so."""
    marks = [pytest.mark.slow] if slow else []
    return [
        pytest.param(
            rel, engine, id=f"{rel.split('/')[-1]}-{engine}", marks=marks * (rel == COMPAT1)
        )
        for rel in REAL
        for engine in HDF5_ENGINES
        if rel != COMPAT1 or engine == "own"
    ]


def _is_dimension_only(record: dict[str, Any]) -> bool:
    return NOT_A_VARIABLE.decode() in str(record.get("attrs", {}).get("NAME", ""))


@pytest.mark.parametrize(("rel", "hdf_engine"), real_cases())
def test_real_file_values_match_ground_truth(hdf_parse: HDFParse, rel: str) -> None:
    record = ground_truth()[rel]["result"]
    store, skipped = parse_warned(hdf_parse, real_file(rel))
    group = zarr.open_group(store, mode="r", zarr_format=3)
    for name, ds in record.get("datasets", {}).items():
        if _is_dimension_only(ds):
            assert name.split("/")[-1] not in group, f"{name} is a netCDF dimension, not a variable"
            continue
        if "raw" not in ds:  # ref_tst_dims.nc: 4.5e9 never-written values, not read
            assert store.group[name].manifest.missing.all()
            continue
        if name not in group:
            assert f"'{name}' skipped: {EXPECTED_SKIPS[rel]}" in skipped, name
            continue
        values = group[name][...]
        if isinstance(ds["dtype"], str) and ds["dtype"].startswith(
            ("<", ">", "|", "int", "uint", "float")
        ):
            meta_dtype = store.group[name].metadata.data_type.to_native_dtype()
            assert meta_dtype == np.dtype(ds["dtype"]), f"{name}: byte order/type kept"
        if np.asarray(values).dtype.names or ds["dtype"] == "object":
            # ground truth hashes structs and vlen strings its own way: compare with h5py
            with h5py.File(real_file(rel), "r") as f:
                h5 = f[name].asstr()[()] if ds["dtype"] == "object" else f[name][()]
                assert values.tolist() == h5.tolist(), name
        else:
            assert_values_match(values, ds["raw"], name=f"{rel}:{name}")


# compat1: 2,001 variables read twice by xarray through two backends, about two minutes
@functools.lru_cache(maxsize=4)
def real_h5netcdf(path: str, group: str | None) -> xr.Dataset:
    """h5netcdf's undecoded view of a (read-only) real file, opened once for both engines:
    h5netcdf takes ~50 ms a variable to open (its dimension lookups), the bulk of the test."""
    return open_h5netcdf(path, group=group)


@pytest.mark.parametrize(("rel", "hdf_engine"), real_cases(slow=True))
def test_real_file_matches_h5netcdf(hdf_parse: HDFParse, rel: str) -> None:
    path = real_file(rel)
    skip = {"vlen_str"} if rel.endswith("vlen2.h5") else set()
    store, _ = parse_warned(hdf_parse, path)
    groups = [p for p, node in store.group.walk() if not hasattr(node, "manifest")]
    refused = []
    for group in groups:
        sub = parse_warned(hdf_parse, path, group=group)[0] if group else store
        for decode_cf in (False, True):
            try:
                ref = real_h5netcdf(str(path), group or None)
                ref = xr.decode_cf(ref) if decode_cf else ref
            except (ValueError, KeyError, OSError, TypeError) as e:  # h5netcdf's own limits
                refused.append(f"group {group!r}, decode_cf={decode_cf}: {e}")
                continue
            ours = open_store(sub, decode_cf=decode_cf)
            gone = {
                n for n in ref.variables if n not in ours.variables and ref[n].dtype.kind == "V"
            }
            assert_same_dataset(ours, ref, skip=skip | gone)
    if len(refused) == 2 * len(groups):
        pytest.skip(f"h5netcdf cannot open {rel}: {refused}")


@pytest.mark.skipif(not REAL, reason="real sample data not available")
def test_huge_dimension_without_variable_is_hidden(hdf_parse: HDFParse) -> None:
    """A 4.5e9-long netCDF dimension with no variable: nothing to read, nothing shown."""
    store = hdf_parse(real_file("netcdf4_hdf5/ref_tst_dims.nc"))
    assert not store.group.arrays


def test_huge_unwritten_variable_is_all_missing(hdf_parse: HDFParse, tmp_path: Path) -> None:
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v", shape=(4_500_000_000,), dtype=">f4", fillvalue=1.5)
    arr = hdf_parse(path).group["v"]
    assert arr.shape == (4_500_000_000,)
    assert arr.manifest.missing.all()
    assert arr.metadata.data_type.to_native_dtype() == np.dtype(">f4")
    assert arr.metadata.fill_value == 1.5


@pytest.mark.skipif(not REAL, reason="real sample data not available")
def test_large_compound_tables_are_skipped_with_a_warning(hdf_parse: HDFParse) -> None:
    path = real_file("netcdf4_hdf5/NEONDSTowerTemperatureData.hdf5")
    with pytest.warns(VariableSkippedWarning, match=r"min_1/boom_1/temperature' skipped: compound"):
        store = hdf_parse(path)
    assert "temperature" not in store.group["Domain_03/OSBS/min_1/boom_1"].arrays
    small = "Domain_03/OSBS/min_30/boom_1/temperature"
    with h5py.File(path, "r") as f:  # 147 records: small enough to inline
        assert zarr_array(store, small).tolist() == f[small][()].tolist()


# -- netCDF-4 files written by netCDF4-python --------------------------------------------------


@pytest.fixture
def kitchen_nc(tmp_path: Path) -> Path:
    """A netCDF-4 file with most features: unlimited dim with a partial last chunk, a
    shorter record variable, groups, scalars, strings, enums, fill values, big-endian."""
    path = tmp_path / "kitchen.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.title = "kitchen"
        nc.ints = np.arange(3, dtype="i2")
        nc.one = np.array([5.5])
        nc.createDimension("time", None)
        nc.createDimension("x", 5)
        nc.createDimension("empty", 0)
        nc.createDimension("nchar", 4)
        t = nc.createVariable("time", "f8", ("time",), chunksizes=(4,))
        t.units = "days since 2000-01-01"
        t[:] = np.arange(10)
        v = nc.createVariable(
            "temp",
            "f4",
            ("time", "x"),
            zlib=True,
            shuffle=True,
            chunksizes=(4, 5),
            fill_value=-999.0,
        )
        v.scale_factor, v.add_offset, v.long_name = 0.5, 1.0, "temperature"
        v[:9] = np.arange(45).reshape(9, 5)  # one record short of the dimension
        nc.createVariable("big", ">i4", ("x",), endian="big")[:] = np.arange(5) * 1000
        nc.createVariable("scalar", "f8")[...] = 3.25
        nc.createVariable("empty_var", "f4", ("empty",))
        chars = np.array(["ab", "cde", "", "fghi", "j"], "S4")
        nc.createVariable("chars", "S1", ("x", "nchar"))[:] = netCDF4.stringtochar(chars)
        names = np.array(["alpha", "béta", "", "delta", "e"], dtype=object)
        nc.createVariable("names", str, ("x",))[:] = names
        nc.createVariable("unwritten", "i2", ("x",), fill_value=-7)
        nc.createVariable("u64", "u8", ("x",))[:] = np.arange(5, dtype="u8") * 2**60
        cloud_t = nc.createEnumType("u1", "cloud_t", {"clear": 0, "cumulus": 1, "stratus": 2})
        nc.createVariable("cloud", cloud_t, ("x",), fill_value=2)[:] = np.array(
            [0, 1, 2, 1, 0], "u1"
        )
        g = nc.createGroup("forecast")
        g.createDimension("lead", 3)
        g.createVariable("lead", "i4", ("lead",))[:] = [6, 12, 18]
        g.createVariable("temp", "f4", ("time", "lead", "x"), zlib=True)[:] = np.ones((10, 3, 5))
        g.createGroup("deep").createVariable("v", "f8", ("lead",))[:] = [1, 2, 3]
    return path


@pytest.mark.parametrize("group", [None, "forecast", "/forecast/deep"])
def test_netcdf4_file_matches_h5netcdf(
    hdf_parse: HDFParse, kitchen_nc: Path, group: str | None
) -> None:
    assert_same_as_h5netcdf(hdf_parse, kitchen_nc, group=group)


def test_netcdf4_file_details(hdf_parse: HDFParse, kitchen_nc: Path) -> None:
    store = hdf_parse(kitchen_nc)
    temp = store.group["temp"]
    assert temp.shape == (10, 5)  # padded to the unlimited dimension, as netCDF reads it
    assert temp.metadata.fill_value == -999.0
    assert temp.metadata.attributes["_FillValue"] == -999.0
    assert temp.manifest.inlined.sum() == 1  # the chunk straddling the variable's end
    np.testing.assert_array_equal(zarr_array(store, "temp")[9], -999.0)
    assert store.group["big"].metadata.to_dict()["codecs"][0]["configuration"]["endian"] == "big"
    assert store.group["unwritten"].manifest.missing.all()
    np.testing.assert_array_equal(zarr_array(store, "unwritten"), -7)
    assert store.group["scalar"].shape == ()
    assert store.group["empty_var"].shape == (0,)
    assert store.group["cloud"].metadata.data_type.to_native_dtype() == np.dtype("u1")
    assert "_NCProperties" not in store.group.attributes
    for _, node in store.group.walk():
        if hasattr(node, "manifest"):
            assert node.metadata.dimension_names is not None
            assert not {"DIMENSION_LIST", "_Netcdf4Dimid", "CLASS", "NAME"} & set(
                node.metadata.attributes
            )


def test_datatree_matches_h5netcdf(hdf_parse: HDFParse, kitchen_nc: Path) -> None:
    ours = xr.open_datatree(hdf_parse(kitchen_nc), engine="zarr", consolidated=False, zarr_format=3)
    ref = xr.open_datatree(kitchen_nc, engine="h5netcdf")
    assert set(ours.groups) == set(ref.groups)
    for path in ref.groups:
        assert_same_dataset(ours[path].to_dataset(), ref[path].to_dataset())


def test_netcdf_dimension_only_scales_and_renamed_variables(
    hdf_parse: HDFParse, tmp_path: Path
) -> None:
    path = tmp_path / "dims.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("x", 3)
        nc.createDimension("y", 2)
        nc.createVariable("v", "f4", ("x", "y"))[:] = np.ones((3, 2))
        nc.createVariable("y", "i4", ("x",))[:] = [7, 8, 9]  # not y's coordinate: renamed in HDF5
    with h5py.File(path, "r") as f:
        assert "_nc4_non_coord_y" in f
        assert "x" in f
    store = hdf_parse(path)
    assert set(store.group.arrays) == {"v", "y"}  # x: a dimension only; y: its real name
    assert store.group["y"].metadata.dimension_names == ("x",)
    assert_same_as_h5netcdf(hdf_parse, path)


def test_netcdf4_classic_and_nofill(hdf_parse: HDFParse, tmp_path: Path) -> None:
    path = tmp_path / "classic.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as nc:
        nc.set_fill_off()
        nc.createDimension("t", None)
        nc.createDimension("x", 3)
        nc.createVariable("a", "i2", ("t", "x"), chunksizes=(2, 3))[:] = np.arange(9).reshape(3, 3)
        nc.createVariable("b", "f8", ("t",), chunksizes=(2,))[:] = [1.0, 2.0]  # shorter than t
    assert_same_as_h5netcdf(hdf_parse, path)


# -- layouts, written with h5py ----------------------------------------------------------------


def create_compact(f: Any, name: str, data: np.ndarray) -> None:
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    space = h5py.h5s.create_simple(data.shape) if data.shape else h5py.h5s.create(h5py.h5s.SCALAR)
    h5py.h5d.create(f.id, name.encode(), h5py.h5t.py_create(data.dtype), space, dcpl=dcpl)
    f[name][...] = data


@pytest.fixture
def layouts_h5(tmp_path: Path) -> Path:
    path = tmp_path / "layouts.h5"
    with h5py.File(path, "w") as f:
        f["contiguous"] = np.arange(12, dtype=">f8").reshape(3, 4)
        f["scalar"] = np.int16(-3)
        create_compact(f, "compact", np.arange(6, dtype="<u2").reshape(2, 3))
        create_compact(f, "compact_scalar", np.array(2.5, ">f4"))
        f.create_dataset("unallocated", shape=(4, 5), dtype="i4", fillvalue=42)
        f.create_dataset(
            "unallocated_chunked", shape=(4, 5), dtype="i4", chunks=(2, 2), fillvalue=-1
        )
        partly = f.create_dataset(
            "partly", shape=(6, 6), dtype="<f4", chunks=(4, 4), fillvalue=np.nan
        )
        partly[:2, :2] = 1.0  # one chunk written, three never
        grow = f.create_dataset("grow", shape=(5,), maxshape=(None,), chunks=(1024,), dtype="<i8")
        grow[:] = np.arange(5)
        rows = f.create_dataset(
            "rows", data=np.arange(15.0).reshape(3, 5), maxshape=(None, 5), chunks=(64, 5)
        )
        rows.attrs["units"] = "m"
        cols = f.create_dataset(
            "cols", data=np.arange(15).reshape(3, 5), maxshape=(3, None), chunks=(3, 64)
        )
        cols.attrs["note"] = "not trimmed: a row-prefix is not a chunk-prefix"
        f.create_dataset(
            "grow_gz", data=np.arange(5), maxshape=(None,), chunks=(1024,), compression="gzip"
        )
        f.create_dataset("zero_len", shape=(0, 3), maxshape=(None, 3), chunks=(2, 3), dtype="f4")
        f["zero_len_contiguous"] = np.zeros((0,), "u1")
    return path


def test_layouts_read_like_h5py(hdf_parse: HDFParse, layouts_h5: Path) -> None:
    assert_same_as_h5py(hdf_parse(layouts_h5), layouts_h5)


def test_layout_references(hdf_parse: HDFParse, layouts_h5: Path) -> None:
    store = hdf_parse(layouts_h5)
    g = store.group
    with h5py.File(layouts_h5, "r") as f:
        entry = g["contiguous"].manifest.get_entry((0, 0))
        assert entry["offset"] == f["contiguous"].id.get_offset()
        assert entry["length"] == 96
    assert g["contiguous"].chunks == (3, 4)
    assert g["compact"].manifest.inlined.all()
    assert g["compact_scalar"].manifest.inlined.all()
    assert g["unallocated"].manifest.missing.all()
    assert g["unallocated"].metadata.fill_value == 42
    assert g["unallocated_chunked"].manifest.missing.all()
    assert g["partly"].manifest.missing.sum() == 3
    # unfiltered chunks longer than the array are cut to it when the kept part is a prefix
    assert g["grow"].chunks == (5,)
    assert g["grow"].manifest.lengths.tolist() == [40]
    assert g["rows"].chunks == (3, 5)
    assert g["cols"].chunks == (3, 64)
    assert g["grow_gz"].chunks == (1024,)  # compressed: the whole chunk must be decoded
    assert g["zero_len"].manifest.shape_chunk_grid == (0, 1)


def test_user_block(hdf_parse: HDFParse, tmp_path: Path) -> None:
    """A file with a user block before the superblock: offsets are absolute file offsets."""
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=1024) as f:
        f["c"] = np.arange(100, dtype="<i8")
        f.create_dataset(
            "k", data=np.arange(100, dtype=">i8") * 3, chunks=(10,), compression="gzip"
        )
    store = hdf_parse(path)
    assert store.group["c"].manifest.get_entry((0,))["offset"] > 1024
    assert_same_as_h5py(store, path)


def test_unallocated_reads_fill_value(hdf_parse: HDFParse, layouts_h5: Path) -> None:
    store = hdf_parse(layouts_h5)
    np.testing.assert_array_equal(zarr_array(store, "unallocated"), 42)
    np.testing.assert_array_equal(zarr_array(store, "unallocated_chunked"), -1)


def write_chunk_indexes(path: Path, *, unlimited_not_first: bool = False) -> Path:
    """One dataset per chunk index of layout version 4 (``libver="latest"``), partly written."""
    data = np.arange(2000, dtype="<f4").reshape(50, 40)
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("single", data=data, chunks=(50, 40), compression="gzip")
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((7, 9))
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # early and unfiltered: implicit
        space = h5py.h5s.create_simple(data.shape)
        h5py.h5d.create(f.id, b"implicit", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)
        f["implicit"][:20] = data[:20]
        f.create_dataset("fixed", data=data, chunks=(7, 9), compression="gzip")
        ext = f.create_dataset(
            "ext", shape=(50, 40), chunks=(7, 9), maxshape=(None, 40), dtype="<f4", fillvalue=-1
        )
        ext[10:30] = data[10:30]
        f.create_dataset("bt2", data=data, chunks=(7, 9), maxshape=(None, None), shuffle=True)
        if unlimited_not_first:
            d = f.create_dataset(
                "ext_axis1",
                shape=(30, 20),
                chunks=(7, 1),
                maxshape=(30, None),
                dtype="<i2",
                compression="gzip",
            )
            d[:, 15:19] = np.arange(4, dtype="<i2")
            d[:, 3] = 1
    return path


def test_chunk_indexes_read_like_h5py(hdf_parse: HDFParse, tmp_path: Path) -> None:
    path = write_chunk_indexes(tmp_path / "idx.h5")
    store = hdf_parse(path)
    assert_same_as_h5py(store, path)
    assert store.group["implicit"].manifest.missing.sum() == 0  # allocated early: all there
    assert store.group["ext"].manifest.missing.any()


@pytest.mark.parametrize(
    "hdf_engine",
    [
        "own",
        pytest.param(
            "h5py",
            marks=pytest.mark.xfail(
                h5py.version.hdf5_version_tuple >= (2, 0, 0),
                strict=True,
                reason="HDF5 2.0's chunk_iter reports element numbers as chunk positions for "
                "extensible-array datasets whose unlimited axis is not the first: the h5py "
                "engine misplaces or drops chunks (see test_hdf5_chunk_index.py)",
            ),
        ),
    ],
)
def test_extensible_array_unlimited_axis_not_first(hdf_parse: HDFParse, tmp_path: Path) -> None:
    path = write_chunk_indexes(tmp_path / "idx.h5", unlimited_not_first=True)
    assert_same_as_h5py(hdf_parse(path, drop_variables=["single", "fixed", "bt2"]), path)


# -- types -----------------------------------------------------------------------------------


@pytest.fixture
def types_h5(tmp_path: Path) -> Path:
    path = tmp_path / "types.h5"
    with h5py.File(path, "w") as f:
        for dt in ["<i1", ">i2", "<u4", ">u8", ">f2", "<f4", ">f8", "<c8", ">c16", "|b1"]:
            data = np.arange(-3, 3).astype(dt) if dt != "|b1" else np.array([True, False] * 3)
            f.create_dataset(
                dt.replace("<", "le").replace(">", "be").replace("|", ""), data=data, chunks=(4,)
            )
        f["fixed_str"] = np.array([b"a", b"bcd", b"efghijk"], dtype="S7")
        enum = h5py.enum_dtype({"RED": 0, "GREEN": 1, "BLUE": 42}, basetype="i2")
        f.create_dataset("enum", data=np.array([0, 42, 1], "i2"), dtype=enum)
        f.create_dataset(
            "vlen_str", data=np.array(["x", "yy", "zzz é"], dtype=object), dtype=h5py.string_dtype()
        )
        f.create_dataset("vlen_bytes_str", data=[b"ab", b"c"], dtype=h5py.string_dtype("ascii"))
        f.create_dataset(
            "compound", data=np.array([(1, 2.5), (3, 4.5)], dtype=[("a", ">i4"), ("b", "<f8")])
        )
    return path


def test_types_read_like_h5py(hdf_parse: HDFParse, types_h5: Path) -> None:
    store = hdf_parse(types_h5)
    assert_same_as_h5py(store, types_h5)
    meta = {
        name: arr.metadata.data_type.to_native_dtype() for name, arr in store.group.arrays.items()
    }
    assert meta["bei2"] == np.dtype(">i2")
    assert meta["bef8"] == np.dtype(">f8")
    assert meta["bec16"] == np.dtype(">c16")
    assert meta["enum"] == np.dtype("<i2")
    assert meta["b1"] == np.dtype(bool)
    assert not store.group["bei2"].manifest.inlined.any()  # referenced, not read
    assert store.group["vlen_str"].manifest.inlined.all()
    assert zarr_array(store, "vlen_str").tolist() == ["x", "yy", "zzz é"]


def test_unrepresentable_types_are_skipped(hdf_parse: HDFParse, tmp_path: Path) -> None:
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f["target"] = np.arange(3)
        refs = f.create_dataset("refs", shape=(2,), dtype=h5py.ref_dtype)
        refs[0] = f["target"].ref
        ragged = f.create_dataset("ragged", shape=(2,), dtype=h5py.vlen_dtype("i4"))
        ragged[0], ragged[1] = [1, 2, 3], [4]
        f.create_dataset(
            "big_strings", data=np.array(["s"] * 10_000, dtype=object), dtype=h5py.string_dtype()
        )
    store, messages = parse_warned(hdf_parse, path)
    assert "'refs' skipped: HDF5 object/region references" in messages
    assert "'ragged' skipped: variable-length sequences" in messages
    assert "'big_strings' skipped: variable-length strings" in messages
    assert "inline_threshold" in messages
    assert set(store.group.arrays) == {"target"}
    with pytest.warns(VariableSkippedWarning):
        assert "big_strings" in hdf_parse(path, inline_threshold=10**6).group.arrays


# -- dimensions and groups -------------------------------------------------------------------


@pytest.fixture
def phony_h5(tmp_path: Path) -> Path:
    """Datasets with and without dimension scales, in nested groups."""
    path = tmp_path / "phony.h5"
    with h5py.File(path, "w") as f:
        f["a"], f["b"], f["c"], f["s"] = np.zeros((3, 4)), np.zeros((4, 4, 5)), np.arange(5.0), 1.0
        f["x"] = np.arange(3.0)
        f["x"].make_scale("x")
        f["c"].make_scale("c")
        f["d"] = np.zeros((3, 3))
        f["lab"] = np.zeros((3, 5))
        f["lab"].dims[0].attach_scale(f["x"])
        f["lab"].dims[1].attach_scale(f["c"])
        g = f.create_group("g")
        g["a"], g["b"] = np.zeros((7, 3)), np.zeros((7, 7))
        g.create_group("h")["z"] = np.zeros((2, 2))
        f.create_group("g2")["q"] = np.zeros((9,))
    return path


@pytest.mark.parametrize("group", [None, "g", "g/h", "/g2"])
def test_phony_dimension_names_match_h5netcdf(
    hdf_parse: HDFParse, phony_h5: Path, group: str | None
) -> None:
    assert_same_as_h5netcdf(hdf_parse, phony_h5, group=group)


def test_phony_dimension_names_in_datatree(hdf_parse: HDFParse, phony_h5: Path) -> None:
    ours = xr.open_datatree(hdf_parse(phony_h5), engine="zarr", consolidated=False, zarr_format=3)
    ref = xr.open_datatree(phony_h5, engine="h5netcdf", phony_dims="access")
    for path in ref.groups:
        assert {k: v.dims for k, v in ours[path].variables.items()} == {
            k: v.dims for k, v in ref[path].variables.items()
        }


def test_partly_labeled_dataset_gets_scale_and_phony_names(
    hdf_parse: HDFParse, tmp_path: Path
) -> None:
    """h5netcdf refuses such datasets; the parser names what it can."""
    path = tmp_path / "mixed.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3.0)
        f["x"].make_scale("x")
        f["v"] = np.zeros((3, 4))
        f["v"].dims[0].attach_scale(f["x"])
    store = hdf_parse(path)
    assert store.group["v"].metadata.dimension_names == ("x", "phony_dim_0")
    assert open_store(store)["v"].dims == ("x", "phony_dim_0")


def test_group_and_drop_variables(hdf_parse: HDFParse, kitchen_nc: Path) -> None:
    store = hdf_parse(kitchen_nc, group="/forecast", drop_variables=["temp", "deep/v"])
    assert set(store.group.arrays) == {"lead"}
    assert set(store.group.groups) == {"deep"}
    assert not store.group["deep"].arrays
    with pytest.raises(
        ParserError, match=r"Group 'nope' does not exist in .*kitchen\.nc.*forecast"
    ):
        hdf_parse(kitchen_nc, group="nope")
    with pytest.raises(ParserError, match="is not a group"):
        hdf_parse(kitchen_nc, group="temp")


def test_links(hdf_parse: HDFParse, tmp_path: Path) -> None:
    (tmp_path / "other.h5").write_bytes(b"")
    path = tmp_path / "links.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(4)
        f["alias"] = h5py.SoftLink("/data")
        f["outside"] = h5py.ExternalLink("other.h5", "/x")
        f.create_group("g")["up"] = h5py.SoftLink("/")
        f["dangling"] = h5py.SoftLink("/nowhere")
    store, messages = parse_warned(hdf_parse, path)
    assert "'outside' skipped: it is an external link to 'other.h5'" in messages
    assert "'g/up' skipped: it is a soft link to the group '/'" in messages
    assert "'dangling' skipped: its link cannot be followed" in messages
    np.testing.assert_array_equal(zarr_array(store, "alias"), np.arange(4))


def test_attributes_as_h5netcdf_shows_them(hdf_parse: HDFParse, tmp_path: Path) -> None:
    path = tmp_path / "attrs.h5"
    with h5py.File(path, "w") as f:
        f["v"] = np.arange(3)
        a = f["v"].attrs
        a["one_element"] = np.array([7.5])
        a["many"] = np.arange(3, dtype=">i4")
        a["fixed"] = np.bytes_("fixed-length")
        a["fixed_list"] = np.array([b"ab", b"cd"], dtype="S2")
        a["vlen"] = "unicode é"
        a["vlen_list"] = np.array(["p", "q"], dtype=h5py.string_dtype())
        a["empty"] = h5py.Empty("f4")
        a["nan"] = np.float32("nan")
        a["flag"] = np.bool_(True)
        a.create("ref", data=f["v"].ref, dtype=h5py.ref_dtype)
        a["complex"] = np.complex64(1 + 2j)
        f.attrs["title"] = "t"
    with pytest.warns(VirtualiZarrWarning, match="attribute 'ref' left out"):
        store = hdf_parse(path)
    attrs = store.group["v"].metadata.attributes
    assert attrs["one_element"] == 7.5
    assert attrs["many"] == [0, 1, 2]
    assert attrs["fixed"] == "fixed-length"
    assert attrs["fixed_list"] == ["ab", "cd"]
    assert attrs["vlen"] == "unicode é"
    assert attrs["vlen_list"] == ["p", "q"]
    assert attrs["empty"] == []
    assert np.isnan(attrs["nan"])
    assert attrs["flag"] is True
    assert "ref" not in attrs
    assert "complex" not in attrs
    assert store.group.attributes == {"title": "t"}


# -- structures our reader leaves to h5py (docs/formats/hdf5.md lists them) ------------------


def create_raw(f: Any, name: str, h5type: Any, data: np.ndarray) -> None:
    """A dataset of an HDF5 type numpy has no name for, written from ``data``'s bytes."""
    did = h5py.h5d.create(f.id, name.encode(), h5type, h5py.h5s.create_simple(data.shape))
    did.write(h5py.h5s.ALL, h5py.h5s.ALL, data, mtype=h5type)


def _bitfield(f: Any) -> None:
    create_raw(f, "bits", h5py.h5t.STD_B8LE, np.array([1, 2, 4, 8], "u1"))


def _region_references(f: Any) -> None:
    refs = f.create_dataset("regions", shape=(2,), dtype=h5py.regionref_dtype)
    refs[0] = f["v"].regionref[2:5]


FALLBACKS = {  # what is in the file, and what our reader names falling back to h5py
    "bitfield type": (_bitfield, r"datatype class 4 \(bitfield\)"),
    "region references": (_region_references, r"region references"),
}


@pytest.mark.parametrize("case", list(FALLBACKS))
def test_structures_left_to_h5py(hdf_parse: HDFParse, tmp_path: Path, case: str) -> None:
    write, fallback = FALLBACKS[case]
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["v"] = np.arange(10)
        write(f)
    store, skipped = parse_warned(hdf_parse, path, fallback=fallback)
    if case == "region references":
        assert "'regions' skipped: HDF5 object/region references" in skipped
        assert set(store.group.arrays) == {"v"}
    assert_same_as_h5py(store, path)


def test_null_dataspace_is_skipped(hdf_parse: HDFParse, tmp_path: Path) -> None:
    """A dataset with a null dataspace (``h5py.Empty``) holds no values: skipped on both
    engines (as a scalar without a chunk it read back as an invented 0.0)."""
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["v"] = np.arange(10)
        f.create_dataset("empty", data=h5py.Empty("f4"))
    with h5py.File(path, "r") as f:
        assert f["empty"].shape is None  # h5py's view of a null dataspace
    store, skipped = parse_warned(hdf_parse, path)
    assert "f.h5: variable 'empty' skipped: null dataspace: it holds no values" in skipped
    assert set(store.group.arrays) == {"v"}
    assert_same_as_h5py(store, path)


def test_integer_of_three_bytes_is_skipped(hdf_parse: HDFParse, tmp_path: Path) -> None:
    """numpy has no 3-byte integer: the variable is skipped, naming file, variable and reason
    (it was a bare TypeError from h5py's dtype); our reader leaves the file to h5py."""
    path = tmp_path / "i24.h5"
    with h5py.File(path, "w") as f:
        f["v"] = np.arange(10)
        i24 = h5py.h5t.STD_I32LE.copy()
        i24.set_size(3)
        i24.set_precision(24)
        h5py.h5d.create(f.id, b"i24", i24, h5py.h5s.create_simple((4,)))
    store, skipped = parse_warned(hdf_parse, path, fallback=r"an integer type of 3 bytes")
    assert "i24.h5: variable 'i24' skipped" in skipped
    assert "an integer type of 3 bytes has no numpy or Zarr data type" in skipped
    assert "i24" not in store.group
    assert "v" in store.group
    assert_same_as_h5py(store, path)


# -- reading through the registry -------------------------------------------------------------


def test_reads_through_the_registry(hdf_parse: HDFParse, kitchen_nc: Path) -> None:
    """A file in an in-memory object store: metadata and chunks both go through obstore."""
    from obstore.store import MemoryStore

    memory = MemoryStore()
    memory.put("data/kitchen.nc", kitchen_nc.read_bytes())
    registry = ObjectStoreRegistry({"memory://bucket": memory})
    store = hdf_parse("memory://bucket/data/kitchen.nc", registry)
    assert store.group["temp"].manifest.used_paths() == ["memory://bucket/data/kitchen.nc"]
    assert_same_dataset(open_store(store), open_h5netcdf(kitchen_nc))


def served(http_server: HTTPServer, path: Path) -> list[str | None]:
    """The Range headers of the GETs of ``path`` the loopback server answered so far."""
    name = f"/{path.relative_to(http_server.root).as_posix()}"
    return [r for method, p, r in http_server.requests if method == "GET" and p == name]


def test_reads_over_http(hdf_parse: HDFParse, kitchen_nc: Path, http_server: HTTPServer) -> None:
    """Over HTTP with Range requests: the values h5netcdf reads, the small file in 1 request."""
    path = http_server.mkdir() / "kitchen.nc"
    path.write_bytes(kitchen_nc.read_bytes())
    store = hdf_parse(http_server.url_for(path))
    assert len(served(http_server, path)) == 1  # the first MiB holds the whole file
    assert_same_dataset(open_store(store), open_h5netcdf(kitchen_nc))


def test_five_mb_netcdf4_in_four_requests(hdf_parse: HDFParse, http_server: HTTPServer) -> None:
    path = http_server.mkdir() / "five.nc"
    rng = np.random.default_rng(0)
    with netCDF4.Dataset(path, "w") as nc:  # random values: 5.2 MB whatever zlib does
        nc.createDimension("time", None)
        nc.createDimension("lat", 90)
        nc.createDimension("lon", 180)
        for name in ("t2m", "u10", "v10", "sp"):
            v = nc.createVariable(
                name, "f4", ("time", "lat", "lon"), zlib=True, chunksizes=(1, 45, 90)
            )
            v[:] = rng.standard_normal((22, 90, 180)).astype("f4")
    assert 5_000_000 < path.stat().st_size < 5_500_000
    store = hdf_parse(http_server.url_for(path))
    assert len(store.group["t2m"].manifest.used_paths()) == 1
    requests = served(http_server, path)
    assert len(requests) <= 4, requests
    assert http_served(http_server, path)[1] <= 1.1 * path.stat().st_size + 64 * 1024


@pytest.mark.parametrize("hdf_engine", ["own"])
def test_continuation_chain_in_one_request(hdf_parse: HDFParse, http_server: HTTPServer) -> None:
    """netCDF-4 adds a chain of continuation blocks to a variable's header after its data,
    next to each other and just after the variable's chunk-index root: over HTTP the chain
    and the root come in one request (16 KiB around each block), not a round trip each."""
    path = http_server.mkdir() / "chain.nc"
    lat, lon = np.linspace(-89.5, 89.5, 180), np.linspace(0.5, 359.5, 360)
    with netCDF4.Dataset(path, "w") as nc:  # the layout of benchmarks/remote.py's first file
        nc.createDimension("time", 24)
        nc.createDimension("lat", 180)
        nc.createDimension("lon", 360)
        nc.createVariable("time", "f8", ("time",))[:] = np.arange(24)
        nc.createVariable("lat", "f4", ("lat",))[:] = lat
        nc.createVariable("lon", "f4", ("lon",))[:] = lon
        base = np.cos(np.deg2rad(lat))[:, None] * np.sin(np.deg2rad(lon))[None, :]
        for k, name in enumerate(("t2m", "u10", "v10")):
            v = nc.createVariable(
                name, "f4", ("time", "lat", "lon"), zlib=True, shuffle=True, chunksizes=(1, 90, 180)
            )
            v[:] = (base[None] * (k + 1) + np.arange(24)[:, None, None] * 0.01).astype("f4")
    store = hdf_parse(http_server.url_for(path))
    # the first MiB, the continuation chain with u10's index root, and the other 4 index
    # nodes (more than 256 KiB apart, between the chunks): 8 requests when read exactly
    assert len(served(http_server, path)) <= 6, served(http_server, path)
    assert_same_as_h5py(store, path)


def test_chunk_index_fallback_agrees_with_chunk_iter(tmp_path: Path) -> None:
    from virtualizarr.parsers.hdf5.chunks import read_chunk_index_by_number, read_chunk_index_iter

    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("x", shape=(50, 40), chunks=(7, 6), dtype="f4", compression="gzip")
        d[3:30, 10:] = 1.0
    with h5py.File(path, "r") as f:
        a = read_chunk_index_iter(f["x"].id, 2)
        b = read_chunk_index_by_number(f["x"].id, 2)
    assert len(a) == 30  # rows 3-29 and columns 10-39 touch 5 x 6 chunks
    for field in ("coords", "addresses", "sizes", "masks"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_detect_parser_picks_hdf(kitchen_nc: Path) -> None:
    assert isinstance(detect_parser(str(kitchen_nc), ObjectStoreRegistry()), HDFParser)


# -- clear errors ----------------------------------------------------------------------------


def test_not_an_hdf5_file(hdf_parse: HDFParse, tmp_path: Path) -> None:
    text = tmp_path / "notes.nc"
    text.write_text("hello, not HDF5")
    with pytest.raises(
        ParserError, match=r"notes\.nc is not an HDF5/NetCDF4 file: it starts with b'hello, n'"
    ):
        hdf_parse(text)
    nc3 = tmp_path / "classic.nc"
    with netCDF4.Dataset(nc3, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("x", 2)
    with pytest.raises(ParserError, match="NetCDF3 files start with b'CDF'"):
        hdf_parse(nc3)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(ParserError, match="it is empty"):
        hdf_parse(empty)


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.6, 0.95])
def test_truncated_file(
    hdf_parse: HDFParse, kitchen_nc: Path, tmp_path: Path, fraction: float
) -> None:
    data = kitchen_nc.read_bytes()
    cut = tmp_path / "cut.nc"
    cut.write_bytes(data[: int(len(data) * fraction)])
    # our reader finds the damage itself, then lets h5py have the last word (a file h5py
    # reads is not corrupt), whose error is raised
    ours = r"our HDF5 reader failed \(.*cut\.nc: HDF5 .* lie outside the file; truncated\?"
    with pytest.raises(CorruptFileError, match=r"cut\.nc.*truncated"):
        hdf_parse(cut, fallback=ours)


def test_missing_file_and_directory(hdf_parse: HDFParse, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothere\.nc"):
        hdf_parse(tmp_path / "nothere.nc")
    with pytest.raises(FileNotFoundError, match=str(tmp_path.name)):
        hdf_parse(tmp_path)


def test_parser_options() -> None:
    parser = HDFParser(group="/a", drop_variables="x")
    assert parser.drop_variables == frozenset({"x"})
    assert "group='/a'" in repr(parser)
    with pytest.raises(ValueError, match="inline_threshold"):
        HDFParser(inline_threshold=-1)
