"""to_kerchunk: dict / JSON / parquet references read back by fsspec + xarray and by our parser.

Source files are NetCDF4 files written with netCDF4 in ``tmp_path`` (and the real files
under ../shared/data/real); their virtual datasets are built from h5py's chunk index
(:func:`hdf5_virtual_dataset`) so these tests do not depend on any format parser.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests._support import h5py_chunk_index, h5py_codecs
from tests.conftest import requires_real_data
from tests.test_manifests.builders import virtual_array
from virtualizarr.errors import CodecNotSupportedError, WriterError
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.writers.kerchunk import inline_value, to_kerchunk

h5py = pytest.importorskip("h5py")
netCDF4 = pytest.importorskip("netCDF4")
pytest.importorskip("fsspec")
pytest.importorskip("pyarrow")

FORMATS = ["json", "parquet"]


# -- building virtual datasets over real NetCDF4 files ------------------------------------


def _hdf5_array(path: Path, name: str, attrs: dict, dims: tuple[str, ...]) -> ManifestArray:
    """A ManifestArray over an HDF5 dataset, from h5py's own chunk index (zlib/shuffle only)."""
    with h5py.File(path, "r") as f:
        d = f[name]
        chunks, written, offsets, lengths = h5py_chunk_index(d)
        paths = np.full(written.shape, "", dtype=object)
        paths[written] = str(path)
        meta = create_v3_array_metadata(
            shape=d.shape,
            data_type=d.dtype,
            chunk_shape=chunks,
            fill_value=d.fillvalue,
            codecs=h5py_codecs(d),
            attributes=attrs,
            dimension_names=dims,
        )
    manifest = ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths)
    return ManifestArray(meta, manifest)


def hdf5_virtual_dataset(path: Path, loadable: tuple[str, ...] = ()) -> xr.Dataset:
    """A virtual dataset of a NetCDF4 file; ``loadable`` variables are loaded (CF-decoded)."""
    loaded = xr.open_dataset(path, engine="netcdf4")
    variables = {}
    with netCDF4.Dataset(path) as nc:
        for name, v in nc.variables.items():
            if name in loadable:
                variables[name] = loaded[name].variable.load()
                continue
            attrs = {k: v.getncattr(k) for k in v.ncattrs()}
            variables[name] = xr.Variable(
                v.dimensions, _hdf5_array(path, name, attrs, v.dimensions), attrs
            )
        gattrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
    coord_names = [
        k for k, v in variables.items() if k in loadable or k == "lat2d" or (k,) == v.dims
    ]
    coords = {k: variables.pop(k) for k in coord_names}
    ds = xr.Dataset(
        variables, coords={k: v for k, v in coords.items() if k in loadable}, attrs=gattrs
    )
    virtual = {k: v for k, v in coords.items() if k not in loadable}
    return ds.assign_coords(xr.Coordinates(virtual, indexes={})) if virtual else ds


@pytest.fixture
def nc_file(tmp_path: Path) -> Path:
    """NetCDF4: zlib+shuffle chunks with unwritten ones, packed int16, big-endian, time."""
    path = tmp_path / "src.nc"
    rng = np.random.default_rng(1)
    with netCDF4.Dataset(path, "w") as nc:
        nc.title = "kerchunk writer test"
        nc.nan_attr = np.nan
        nc.createDimension("time", 6)
        nc.createDimension("lat", 10)
        nc.createDimension("lon", 12)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t.calendar = "standard"
        t[:] = np.arange(6) * 1.5
        nc.createVariable("lat", "f4", ("lat",))[:] = np.linspace(-45, 45, 10)
        nc.createVariable("lon", "f4", ("lon",))[:] = np.linspace(0, 330, 12)
        air = nc.createVariable(
            "air",
            "f4",
            ("time", "lat", "lon"),
            zlib=True,
            shuffle=True,
            chunksizes=(2, 5, 6),
            fill_value=-999.0,
        )
        air.units = "K"
        air.valid_max = np.inf
        air[:4] = (rng.random((4, 10, 12)) * 40 + 250).astype("f4")  # time 4-5 never written
        air[0, 0, :3] = -999.0  # masked values inside a written chunk
        packed = nc.createVariable("packed", "i2", ("time", "lat"), fill_value=-32767)
        packed.scale_factor = 0.01
        packed.add_offset = 10.0
        packed[:] = rng.integers(-1000, 1000, (6, 10))
        big = nc.createVariable("big", ">i4", ("lat", "lon"), endian="big")
        big[:] = np.arange(120).reshape(10, 12) - 60
        lat2d = nc.createVariable("lat2d", "f8", ("lat", "lon"), chunksizes=(5, 12), zlib=True)
        lat2d[:] = np.linspace(0, 1, 120).reshape(10, 12)
        air.coordinates = "lat2d"
    return path


def open_refs(fo: str | Path, **kw) -> xr.Dataset:
    """What fsspec's ReferenceFileSystem + xarray read (fsspec's defaults)."""
    return xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={"consolidated": False, "storage_options": {"fo": str(fo)}},
        **kw,
    ).load()


def assert_same_values(actual: xr.Dataset, expected: xr.Dataset) -> None:
    assert set(actual.variables) == set(expected.variables)
    for name in expected.variables:
        np.testing.assert_array_equal(actual[name].values, expected[name].values, err_msg=str(name))


def strict_json(text: str) -> dict:
    def refuse(c: str) -> None:
        raise AssertionError(f"non-RFC-8259 JSON constant {c}")

    return json.loads(text, parse_constant=refuse)


# -- structure -------------------------------------------------------------------------------


def test_dict_refs_are_kerchunk_v1(nc_file: Path) -> None:
    ds = hdf5_virtual_dataset(nc_file, loadable=("time", "lat", "lon"))
    refs = to_kerchunk(ds)
    assert refs["version"] == 1
    r = refs["refs"]
    assert json.loads(r[".zgroup"]) == {"zarr_format": 2}
    assert json.loads(r[".zattrs"])["title"] == "kerchunk writer test"
    zarray = json.loads(r["air/.zarray"])
    assert zarray["chunks"] == [2, 5, 6]
    assert zarray["dtype"] == "<f4"
    assert zarray["order"] == "C"
    assert zarray["filters"] == [{"id": "shuffle", "elementsize": 4}]
    assert zarray["compressor"]["id"] == "zlib"
    assert zarray["fill_value"] == -999.0  # CF _FillValue moves to fill_value (xarray's v2 mask)
    zattrs = json.loads(r["air/.zattrs"])
    assert zattrs["_ARRAY_DIMENSIONS"] == ["time", "lat", "lon"]
    assert "_FillValue" not in zattrs
    url, offset, length = r["air/0.0.0"]
    assert url == f"file://{nc_file}"
    assert offset > 0
    assert length > 0
    assert "air/2.0.0" not in r  # never-written chunks are absent
    assert json.loads(r["big/.zarray"])["dtype"] == ">i4"
    assert isinstance(r["time/0"], str)  # loaded variables are inlined
    assert json.loads(r["time/.zarray"])["chunks"] == [6]


@pytest.mark.parametrize("fmt", FORMATS)
def test_fsspec_reads_same_values_as_netcdf4(nc_file: Path, tmp_path: Path, fmt: str) -> None:
    ds = hdf5_virtual_dataset(nc_file, loadable=("time", "lat", "lon"))
    out = tmp_path / f"refs.{fmt}"
    assert to_kerchunk(ds, out, format=fmt, record_size=7) is None
    got = open_refs(out)
    expected = xr.open_dataset(nc_file).load()
    assert_same_values(got, expected)
    assert np.isnan(got.air.values[4:]).all()  # unwritten chunks: fill value, masked
    assert np.isnan(got.air.values[0, 0, :3]).all()
    assert got.time.dtype.kind == "M"
    assert "lat2d" in got.coords
    raw = open_refs(out, mask_and_scale=False, decode_times=False)
    np.testing.assert_array_equal(
        raw.packed.values, xr.open_dataset(nc_file, mask_and_scale=False).packed.values
    )


def test_json_is_strict_with_nan_fill_of_inlined_coordinate(nc_file: Path, tmp_path: Path) -> None:
    """virtualizarr 2.8 wrote bare NaN for the fill value of inlined float coordinates."""
    ds = hdf5_virtual_dataset(nc_file, loadable=("time", "lat", "lon"))
    ds.attrs["neg_inf"] = [1.0, -np.inf]
    out = tmp_path / "refs.json"
    to_kerchunk(ds, out, format="json")
    doc = strict_json(out.read_text())
    lat = json.loads(doc["refs"]["lat/.zarray"])
    assert lat["fill_value"] == "NaN"
    gattrs = json.loads(doc["refs"][".zattrs"])
    assert gattrs["nan_attr"] == "NaN"
    assert gattrs["neg_inf"] == [1.0, "-Infinity"]
    assert json.loads(doc["refs"]["air/.zattrs"])["valid_max"] == "Infinity"
    assert doc == json.loads(json.dumps(to_kerchunk(ds)))  # dict and JSON agree
    assert_same_values(open_refs(out), xr.open_dataset(nc_file).load())
    from virtualizarr.parsers.kerchunk import KerchunkJSONParser

    ours = xr.open_zarr(
        KerchunkJSONParser()(str(out), ObjectStoreRegistry()), consolidated=False, zarr_format=3
    )
    assert_same_values(ours.load(), xr.open_dataset(nc_file).load())


def test_parquet_first_reference_inlined(tmp_path: Path) -> None:
    """virtualizarr 2.8 wrote parquet that fsspec could not read when row 0 was inlined."""
    data = np.arange(40, dtype="<i4").reshape(8, 5)
    arr = virtual_array(
        tmp_path / "a.bin",
        data,
        (2, 5),
        inline=[(0, 0)],
        missing=[(2, 0)],
        fill_value=-1,
        dimension_names=("y", "x"),
    )
    ds = xr.Dataset({"a": xr.Variable(("y", "x"), arr)})
    out = tmp_path / "refs.parq"
    to_kerchunk(ds, out, format="parquet")
    expected = data.copy()
    expected[4:6] = -1
    from fsspec.implementations.reference import LazyReferenceMapper

    mapper = LazyReferenceMapper(str(out))  # fsspec's default engine
    assert isinstance(mapper["a/0.0"], bytes)
    got = open_refs(out, mask_and_scale=False)
    np.testing.assert_array_equal(got.a.values, expected)
    from virtualizarr.parsers.kerchunk import KerchunkParquetParser

    store = KerchunkParquetParser()(str(out), ObjectStoreRegistry())
    assert store.group["a"].manifest.inlined[0, 0]
    ours = xr.open_zarr(store, zarr_format=3, consolidated=False, mask_and_scale=False)
    np.testing.assert_array_equal(ours.a.values, expected)


def test_inline_values_text_or_base64() -> None:
    assert inline_value(b"hello") == "hello"
    assert inline_value(b"\x00\x01\xff").startswith("base64:")
    assert inline_value(b"base64:abc") == "base64:YmFzZTY0OmFiYw=="  # would be misread as base64


def test_inline_threshold_inlines_small_chunks(nc_file: Path, tmp_path: Path) -> None:
    ds = hdf5_virtual_dataset(nc_file)
    plain = to_kerchunk(ds)["refs"]
    refs = to_kerchunk(ds, inline_threshold=300)["refs"]
    sizes = {k: v[2] for k, v in plain.items() if isinstance(v, list)}
    assert min(sizes.values()) <= 300 < max(sizes.values())
    for key, size in sizes.items():
        assert isinstance(refs[key], str) == (size <= 300), key
    out = tmp_path / "refs.json"
    to_kerchunk(ds, out, format="json", inline_threshold=300)
    assert_same_values(open_refs(out), xr.open_dataset(nc_file).load())


def test_whole_file_reference_keeps_its_size(tmp_path: Path) -> None:
    data = np.arange(6, dtype="<f8")
    (tmp_path / "whole.bin").write_bytes(data.tobytes())
    meta = create_v3_array_metadata(
        shape=(6,), data_type="<f8", chunk_shape=(6,), dimension_names=("x",)
    )
    m = ChunkManifest({"0": {"path": str(tmp_path / "whole.bin"), "offset": 0, "length": 48}})
    ds = xr.Dataset({"w": (("x",), ManifestArray(meta, m))})
    assert to_kerchunk(ds)["refs"]["w/0"][1:] == [0, 48]
    for fmt in FORMATS:
        to_kerchunk(ds, tmp_path / f"w.{fmt}", format=fmt)
        np.testing.assert_array_equal(open_refs(tmp_path / f"w.{fmt}").w.values, data)


def test_fortran_order_from_transpose(tmp_path: Path) -> None:
    data = np.arange(12, dtype="<i2").reshape(3, 4)
    (tmp_path / "f.bin").write_bytes(np.asfortranarray(data).tobytes(order="F"))
    meta = create_v3_array_metadata(
        shape=(3, 4),
        data_type="<i2",
        chunk_shape=(3, 4),
        dimension_names=("y", "x"),
        codecs=[{"name": "transpose", "configuration": {"order": [1, 0]}}],
    )
    m = ChunkManifest({"0.0": {"path": str(tmp_path / "f.bin"), "offset": 0, "length": 24}})
    ds = xr.Dataset({"f": (("y", "x"), ManifestArray(meta, m))})
    assert json.loads(to_kerchunk(ds)["refs"]["f/.zarray"])["order"] == "F"
    to_kerchunk(ds, tmp_path / "f.json", format="json")
    np.testing.assert_array_equal(open_refs(tmp_path / "f.json").f.values, data)


def test_codec_without_v2_equivalent_names_variable_and_codec(tmp_path: Path) -> None:
    from zarr.codecs import BytesCodec, ShardingCodec

    meta = create_v3_array_metadata(
        shape=(4,),
        data_type="<i4",
        chunk_shape=(4,),
        dimension_names=("x",),
        codecs=[ShardingCodec(chunk_shape=(2,), codecs=[BytesCodec()])],
    )
    ds = xr.Dataset({"sharded": (("x",), ManifestArray(meta, ChunkManifest.empty((1,))))})
    with pytest.raises(CodecNotSupportedError, match=r"sharded.*sharding_indexed"):
        to_kerchunk(ds)


def test_conflicting_fill_value_and_missing_chunks_raise(tmp_path: Path) -> None:
    arr = virtual_array(
        tmp_path / "a.bin",
        np.arange(4.0),
        (2,),
        missing=[(1,)],
        fill_value=0.0,
        dimension_names=("x",),
        attributes={"_FillValue": -1.0},
    )
    ds = xr.Dataset({"a": xr.Variable(("x",), arr, {"_FillValue": -1.0})})
    with pytest.raises(WriterError, match=r"'a'.*_FillValue"):
        to_kerchunk(ds)


def test_nested_groups(tmp_path: Path) -> None:
    data = np.arange(10, dtype="<u2")
    arr = virtual_array(tmp_path / "g.bin", data, (4,), dimension_names=("x",))
    group = ManifestGroup(
        arrays={"top": arr},
        groups={"sub": ManifestGroup(arrays={"inner": arr}, attributes={"a": 1})},
    )
    refs = to_kerchunk(group)["refs"]
    assert json.loads(refs["sub/.zattrs"]) == {"a": 1}
    assert "sub/inner/2" in refs
    from virtualizarr.parsers.kerchunk import KerchunkJSONParser, KerchunkParquetParser

    for fmt, parser in (("json", KerchunkJSONParser), ("parquet", KerchunkParquetParser)):
        out = str(tmp_path / f"g.{fmt}")
        to_kerchunk(group, out, format=fmt)
        # fsspec's LazyReferenceMapper takes a subgroup for an array when it scans all refs for
        # URL protocols, so name the protocol (it is a reader limitation, see docs)
        opts = {"fo": out, "remote_protocol": "file"}
        sub = xr.open_dataset(
            "reference://",
            engine="zarr",
            group="sub",
            backend_kwargs={"consolidated": False, "storage_options": opts},
        )
        np.testing.assert_array_equal(sub.inner.values, data)
        ours = parser(group="sub")(out, ObjectStoreRegistry())
        assert ours.group.attributes == {"a": 1}
        np.testing.assert_array_equal(
            xr.open_zarr(ours, consolidated=False, zarr_format=3).inner, data
        )


# -- atomic writes ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_failed_write_keeps_previous_file_and_leaves_no_temp(
    nc_file: Path, tmp_path: Path, fmt: str
) -> None:
    good = hdf5_virtual_dataset(nc_file)
    out = tmp_path / "out" / f"refs.{fmt}"
    out.parent.mkdir()
    to_kerchunk(good, out, format=fmt)
    before = sorted(p.relative_to(out.parent) for p in out.parent.rglob("*"))
    # the last variable points at a file that is gone: reading it to inline fails mid-write
    gone = tmp_path / "gone.bin"
    bad_arr = virtual_array(gone, np.arange(4.0), (2,), dimension_names=("x",))
    gone.unlink()
    bad = good.assign(zzz=xr.Variable(("x",), bad_arr))
    with pytest.raises(WriterError, match=r"gone\.bin"):
        to_kerchunk(bad, out, format=fmt, inline_threshold=1000)
    assert sorted(p.relative_to(out.parent) for p in out.parent.rglob("*")) == before
    assert_same_values(open_refs(out), xr.open_dataset(nc_file).load())


def test_write_replaces_existing_parquet_directory(tmp_path: Path) -> None:
    a = virtual_array(tmp_path / "a.bin", np.arange(30.0), (1,), dimension_names=("x",))
    b = virtual_array(tmp_path / "b.bin", np.arange(3.0), (1,), dimension_names=("x",))
    out = tmp_path / "r.parq"
    to_kerchunk(xr.Dataset({"v": (("x",), a)}), out, format="parquet", record_size=10)
    assert (out / "v" / "refs.2.parq").exists()
    to_kerchunk(xr.Dataset({"v": (("x",), b)}), out, format="parquet", record_size=10)
    assert not (out / "v" / "refs.2.parq").exists()
    np.testing.assert_array_equal(open_refs(out).v.values, np.arange(3.0))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_to_object_store(nc_file: Path, fmt: str) -> None:
    from obstore.store import MemoryStore

    from virtualizarr.parsers.kerchunk import KerchunkJSONParser, KerchunkParquetParser

    store = MemoryStore()
    registry = ObjectStoreRegistry({"memory://bucket": store})
    ds = hdf5_virtual_dataset(nc_file, loadable=("time",))
    url = f"memory://bucket/refs/out.{fmt}"
    to_kerchunk(ds, url, format=fmt, registry=registry, record_size=5)
    to_kerchunk(
        ds, url, format=fmt, registry=registry, record_size=50
    )  # overwrite: no stale records
    keys = sorted(o["path"] for batch in __import__("obstore").list(store) for o in batch)
    assert all(k.startswith(f"refs/out.{fmt}") and ".tmp-" not in k for k in keys)
    parser = KerchunkJSONParser() if fmt == "json" else KerchunkParquetParser()
    got = xr.open_zarr(parser(url, registry), consolidated=False, zarr_format=3).load()
    assert_same_values(got, xr.open_dataset(nc_file).load())


# -- real files --------------------------------------------------------------------------------


@requires_real_data
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "rel", ["netcdf3/eraint_uvz.nc", "netcdf3/ref_nctest_classic.nc", "netcdf3/tiny.nc"]
)
def test_real_netcdf3_files_through_fsspec(rel: str, fmt: str, tmp_path: Path) -> None:
    from virtualizarr.testing.ground_truth import real_file
    from virtualizarr.xarray import open_virtual_dataset

    src = real_file(rel)
    ds = open_virtual_dataset(str(src))
    out = tmp_path / f"refs.{fmt}"
    to_kerchunk(ds, out, format=fmt, record_size=3)
    assert_same_values(open_refs(out), xr.open_dataset(src).load())


@requires_real_data
@pytest.mark.parametrize("rel", ["netcdf4_hdf5/air.nc", "netcdf4_hdf5/basin_mask.nc"])
def test_real_netcdf4_files_through_fsspec(rel: str, tmp_path: Path) -> None:
    from virtualizarr.testing.ground_truth import real_file

    src = real_file(rel)
    ds = hdf5_virtual_dataset(src, loadable=tuple(xr.open_dataset(src).dims))
    for fmt in FORMATS:
        to_kerchunk(ds, tmp_path / f"refs.{fmt}", format=fmt)
        assert_same_values(open_refs(tmp_path / f"refs.{fmt}"), xr.open_dataset(src).load())


HDF5_REAL = [
    "netcdf4_hdf5/air.nc",
    "netcdf4_hdf5/basin_mask.nc",
    "netcdf4_hdf5/test_gold.nc",
    "netcdf4_hdf5/issue671.nc",
    "netcdf4_hdf5/nctest_netcdf4_classic.nc",
    "netcdf4_hdf5/20171025_2056.Cloud_Top_Height.nc",
    "netcdf4_hdf5/ref_tst_irish_rover.nc",
    "netcdf4_hdf5/hdf5_mini_shuffle_zstd.h5",
    "netcdf4_hdf5/hdf5_mini_blosc.h5",
    "netcdf4_hdf5/ref_szip.h5",
]


@requires_real_data
@pytest.mark.parametrize("rel", HDF5_REAL)
def test_real_files_parsed_by_hdf_parser_through_fsspec(rel: str, tmp_path: Path) -> None:
    """open_virtual_dataset (HDFParser) -> kerchunk -> fsspec: the stored values, exactly.

    Decoded values can differ where a variable has unwritten chunks and no _FillValue: their
    fill value (netCDF's default) becomes the v2 fill_value, which xarray's Zarr v2 backend
    masks (as netCDF4-python does), while xarray's netCDF backend does not.
    """
    pytest.importorskip("virtualizarr.parsers.hdf5")
    from virtualizarr.testing.ground_truth import real_file
    from virtualizarr.xarray import open_virtual_dataset

    src = real_file(rel)
    ds = open_virtual_dataset(str(src))
    expected = xr.open_dataset(src, mask_and_scale=False, decode_times=False).load()
    for fmt in FORMATS:
        to_kerchunk(ds, tmp_path / f"refs.{fmt}", format=fmt, record_size=50)
        got = open_refs(tmp_path / f"refs.{fmt}", mask_and_scale=False, decode_times=False)
        assert_same_values(got, expected)


# -- many references (speed: benchmarks/kerchunk_write.py, not timed here) -------------------------


def test_json_for_140k_references(tmp_path: Path) -> None:
    grid = (8760, 16)
    n = math.prod(grid)
    ids = (np.arange(n, dtype=np.uint32) // 384).reshape(grid)
    m = ChunkManifest.from_path_ids(
        table=[f"s3://bucket/f{i}.nc" for i in range(n // 384)],
        ids=ids,
        offsets=np.arange(n, dtype=np.uint64).reshape(grid) * 1000 + 512,
        lengths=np.full(grid, 1000, dtype=np.uint64),
    )
    meta = create_v3_array_metadata(
        shape=(8760, 16 * 64), data_type="<f4", chunk_shape=(1, 64), dimension_names=("t", "x")
    )
    ds = xr.Dataset({"v": (("t", "x"), ManifestArray(meta, m))})
    out = tmp_path / "big.json"
    to_kerchunk(ds, out, format="json")
    refs = strict_json(out.read_text())["refs"]
    assert len(refs) == n + 4
    assert refs["v/8759.15"] == [
        "s3://bucket/f364.nc",
        (n - 1) * 1000 + 512,
        1000,
    ]
    assert os.path.getsize(out) > 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_scalar_empty_and_time_variables(tmp_path: Path, fmt: str) -> None:
    from virtualizarr.parsers.kerchunk import KerchunkJSONParser, KerchunkParquetParser

    scalar = virtual_array(tmp_path / "s.bin", np.array(3.5), (), dimension_names=())
    empty = virtual_array(tmp_path / "e.bin", np.zeros((0, 3)), (1, 3), dimension_names=("n", "m"))
    when = np.array(["2000-01-01", "2000-01-02T06"], dtype="M8[ns]")
    ds = xr.Dataset(
        {
            "s": ((), scalar),
            "e": (("n", "m"), empty),
            "ls": ((), np.int16(7)),
            "when": (("k",), when),
        }
    )
    out = tmp_path / f"r.{fmt}"
    to_kerchunk(ds, out, format=fmt)
    parser = KerchunkJSONParser() if fmt == "json" else KerchunkParquetParser()
    for got in (
        open_refs(out),
        xr.open_zarr(parser(str(out), ObjectStoreRegistry()), zarr_format=3, consolidated=False),
    ):
        assert float(got.s) == 3.5
        assert got.e.shape == (0, 3)
        assert int(got.ls) == 7
        np.testing.assert_array_equal(got.when.values, when)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"filepath": "x.json"}, "format='json'"),
        ({"format": "json"}, "pass filepath"),
        ({"format": "yaml", "filepath": "x"}, "'yaml'"),
        ({"format": "parquet", "filepath": "x", "record_size": 0}, "record_size"),
    ],
    ids=["dict-with-path", "json-without-path", "unknown-format", "record-size"],
)
def test_bad_options(tmp_path: Path, kwargs: dict, match: str) -> None:
    arr = virtual_array(tmp_path / "a.bin", np.arange(4.0), (2,), dimension_names=("x",))
    with pytest.raises(WriterError, match=match):
        to_kerchunk(xr.Dataset({"a": (("x",), arr)}), **kwargs)
    assert list(tmp_path.iterdir()) == [tmp_path / "a.bin"]


def test_array_filter_output_byte_order(tmp_path: Path) -> None:
    """delta stores big-endian int16 differences of little-endian int32 values."""
    from numcodecs import Delta
    from zarr.codecs import BytesCodec

    data = np.array([100, 90, 95, 1000, -5, 7], dtype="<i4")
    delta = Delta(dtype="<i4", astype=">i2")
    (tmp_path / "d.bin").write_bytes(delta.encode(data).tobytes())
    meta = create_v3_array_metadata(
        shape=(6,),
        data_type="<i4",
        chunk_shape=(6,),
        dimension_names=("x",),
        codecs=[
            {"name": "numcodecs.delta", "configuration": {"dtype": "<i4", "astype": ">i2"}},
            BytesCodec(endian="big"),
        ],
    )
    m = ChunkManifest({"0": {"path": str(tmp_path / "d.bin"), "offset": 0, "length": 12}})
    ds = xr.Dataset({"d": (("x",), ManifestArray(meta, m))})
    zarray = json.loads(to_kerchunk(ds)["refs"]["d/.zarray"])
    assert zarray["dtype"] == "<i4"
    assert zarray["filters"] == [{"id": "delta", "dtype": "<i4", "astype": ">i2"}]
    to_kerchunk(ds, tmp_path / "d.json", format="json")
    np.testing.assert_array_equal(open_refs(tmp_path / "d.json").d.values, data)
    from virtualizarr.parsers.kerchunk import KerchunkJSONParser

    back = KerchunkJSONParser()(str(tmp_path / "d.json"), ObjectStoreRegistry())
    np.testing.assert_array_equal(
        xr.open_zarr(back, zarr_format=3, consolidated=False).d.values, data
    )
