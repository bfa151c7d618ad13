"""NetCDF3Parser: every value read through the ManifestStore equals netCDF4-python's."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

from tests._support import http_served, parser_call
from tests.conftest import real_files
from virtualizarr.errors import CorruptFileError, ParserError
from virtualizarr.manifests.metadata import to_json_safe
from virtualizarr.parsers import NetCDF3Parser, detect_parser
from virtualizarr.parsers.netcdf3 import parse_header
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore
from virtualizarr.testing.ground_truth import assert_values_match, ground_truth, real_file

netCDF4 = pytest.importorskip("netCDF4")

# char variables are Zarr 'null_terminated_bytes', which zarr-python flags as unstable
pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")

FORMATS = ["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"]
CLASSIC_TYPES = ["i1", "i2", "i4", "f4", "f8"]
CDF5_TYPES = ["u1", "u2", "u4", "i8", "u8"]


# -- helpers ---------------------------------------------------------------------------------


parse = parser_call(NetCDF3Parser)


def zarr_values(store: ManifestStore) -> dict[str, np.ndarray]:
    """Every array of the store, read through zarr (0-d arrays kept as arrays)."""
    group = zarr.open_group(store, mode="r", zarr_format=3)
    return {name: np.asarray(arr[...], dtype=arr.dtype) for name, arr in group.arrays()}


def netcdf4_values(path: str | Path) -> dict[str, np.ndarray]:
    with netCDF4.Dataset(path) as nc:
        nc.set_auto_maskandscale(False)
        nc.set_auto_chartostring(False)
        return {name: np.asarray(v[...]) for name, v in nc.variables.items()}


def assert_same_values(store: ManifestStore, path: str | Path) -> None:
    """zarr's and xarray's reads through the store equal netCDF4-python's, bit for bit."""
    expected = netcdf4_values(path)
    got = zarr_values(store)
    assert list(got) == list(expected)
    ds = xr.open_dataset(
        store, engine="zarr", consolidated=False, zarr_format=3, decode_cf=False, chunks=None
    )
    for name, ref in expected.items():
        assert got[name].shape == ref.shape, name
        assert got[name].dtype == ref.dtype.newbyteorder(got[name].dtype.byteorder), name
        assert got[name].tobytes() == ref.astype(got[name].dtype).tobytes(), name
        via_xr = ds[name].values
        assert via_xr.tobytes() == ref.astype(via_xr.dtype).tobytes(), name


def assert_same_metadata(store: ManifestStore, path: str | Path) -> None:
    """Names, dimension names and attributes (JSON-spelled) as netCDF4-python reports them."""
    group = store.group
    with netCDF4.Dataset(path) as nc:
        assert to_json_safe(group.attributes) == to_json_safe(nc.__dict__)
        assert list(group.arrays) == list(nc.variables)
        for name, var in nc.variables.items():
            meta = group.arrays[name].metadata
            assert list(meta.dimension_names) == list(var.dimensions), name
            assert _nan_safe(to_json_safe(meta.attributes)) == _nan_safe(to_json_safe(var.__dict__))
            for value in meta.attributes.values():  # plain Python, JSON-ready
                assert isinstance(value, (str, int, float, list)), (name, value)


def _nan_safe(d: dict[str, Any]) -> dict[str, Any]:
    return {k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}


def ramp(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Distinct values that use the sign and high bits of the type."""
    n = math.prod(shape)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is None:
        return (np.arange(n) * -1.25 + 0.5).astype(dtype).reshape(shape)
    step = (int(info.max) - int(info.min)) // max(n - 1, 1)  # Python ints: exact for 64 bits
    vals = [int(info.min) + i * step for i in range(n)]
    vals[-1] = int(info.max)
    return np.array(vals, dtype=dtype).reshape(shape)


def write_sample(path: Path, fmt: str, nrec: int = 4) -> Path:
    """A file with every type of the format as fixed and record variables, char, scalar,
    fill values and attributes of every type."""
    types = CLASSIC_TYPES + (CDF5_TYPES if fmt == "NETCDF3_64BIT_DATA" else [])
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        nc.createDimension("time", None)
        nc.createDimension("y", 3)
        nc.createDimension("x", 5)
        nc.createDimension("nchar", 6)
        nc.setncattr("title", "sample")
        nc.setncattr("empty_text", "")
        nc.setncattr("counts", np.array([1, 2, 3], dtype="i4"))
        nc.setncattr("scale", np.float32(0.1))
        nc.setncattr("bytes_attr", np.array([-1, 0, 1], dtype="i1"))
        nc.setncattr("short_attr", np.int16(-7))
        nc.setncattr("double_list", np.array([1.5, -2.25], dtype="f8"))
        for t in types:
            fixed = nc.createVariable(f"fixed_{t}", t, ("y", "x"))
            fixed[:] = ramp((3, 5), t)
            fixed.units = "m"
            fixed.valid_range = np.array([0, 100], dtype=t)
            fixed.one = np.array([3], dtype=t)
            rec = nc.createVariable(f"rec_{t}", t, ("time", "x"))
            rec[:nrec] = ramp((nrec, 5), t)
        if fmt == "NETCDF3_64BIT_DATA":
            nc.setncattr("big_attr", np.array([2**62, -(2**62)], dtype="i8"))
            nc.setncattr("ubig_attr", np.uint64(2**64 - 2))
        nc.createVariable("time", "f8", ("time",))[:nrec] = np.arange(nrec) * 6.0
        nc.createVariable("scalar", "i4", ())[...] = 42
        text = nc.createVariable("text", "S1", ("y", "nchar"))
        text[:] = netCDF4.stringtochar(np.array(["abc", "hello!", ""], dtype="S6"))
        text.long_name = "labels"
        with_fill = nc.createVariable("with_fill", "f4", ("time", "x"), fill_value=-1.0)
        with_fill[: nrec // 2] = ramp((nrec // 2, 5), "f4")  # later records hold -1 (filled)
        nc.createVariable("unwritten", "f8", ("y",))  # never written: netCDF default fill
        nc.createVariable("nan_fill", "f8", ("x",), fill_value=np.nan)[:2] = [1.0, 2.0]
    return path


# -- files made with netCDF4-python ----------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_all_types_and_layouts_match_netcdf4(tmp_path: Path, fmt: str) -> None:
    path = write_sample(tmp_path / "sample.nc", fmt)
    store = parse(path)
    assert_same_values(store, path)
    assert_same_metadata(store, path)
    arrays = store.group.arrays
    # fixed variables: one big-endian chunk of the full shape
    fixed = arrays["fixed_i4"]
    assert fixed.chunks == (3, 5)
    assert fixed.dtype == np.dtype(">i4")
    assert [c.to_dict() for c in fixed.codecs] == [
        {"name": "bytes", "configuration": {"endian": "big"}}
    ]
    # record variables: one chunk per record, spaced by the record size
    rec = arrays["rec_f8"]
    assert rec.shape == (4, 5)
    assert rec.chunks == (1, 5)
    assert len(set(np.diff(rec.manifest.offsets.ravel()).tolist())) == 1
    assert set(rec.manifest.lengths.ravel().tolist()) == {40}
    assert arrays["scalar"].shape == ()
    assert arrays["scalar"].manifest.shape_chunk_grid == ()


@pytest.mark.parametrize("fmt", FORMATS)
def test_fill_values(tmp_path: Path, fmt: str) -> None:
    path = write_sample(tmp_path / "sample.nc", fmt)
    arrays = parse(path).group.arrays
    assert arrays["with_fill"].fill_value == np.float32(-1.0)
    assert arrays["with_fill"].metadata.attributes["_FillValue"] == -1.0
    assert math.isnan(arrays["nan_fill"].fill_value)
    # without _FillValue: netCDF's default fill of the type, and no attribute is invented
    assert arrays["unwritten"].fill_value == 9.969209968386869e36
    assert "_FillValue" not in arrays["unwritten"].metadata.attributes
    assert arrays["fixed_i1"].fill_value == -127
    assert arrays["fixed_i2"].fill_value == -32767
    assert bytes(arrays["text"].fill_value) == b"\x00"  # NUL
    if fmt == "NETCDF3_64BIT_DATA":
        assert arrays["fixed_u8"].fill_value == 18446744073709551614
        assert arrays["fixed_i8"].fill_value == -9223372036854775806


def test_char_fill_value(tmp_path: Path) -> None:
    path = tmp_path / "char_fill.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("n", 3)
        nc.createVariable("c", "S1", ("n",), fill_value=b"x")[:2] = np.array([b"a", b"b"])
    arr = parse(path).group.arrays["c"]
    assert arr.metadata.attributes == {"_FillValue": "x"}
    assert bytes(arr.fill_value) == b"x"
    # (xarray's Zarr backend cannot decode a _FillValue of a bytes array, so zarr only)
    assert zarr_values(parse(path))["c"].tolist() == [b"a", b"b", b"x"]
    assert netcdf4_values(path)["c"].tobytes() == b"abx"


def test_version_detected_and_offsets_width(tmp_path: Path) -> None:
    for fmt, version in zip(FORMATS, (1, 2, 5)):
        path = write_sample(tmp_path / f"{version}.nc", fmt)
        header = parse_header(path.read_bytes())
        assert header.version == version
        assert header.numrecs == 4
        assert [d for d in header.dimensions if d[1] == 0] == [("time", 0)]
        assert isinstance(detect_parser(str(path), ObjectStoreRegistry()), NetCDF3Parser)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("dtype", "inner"), [("i2", (3,)), ("i1", ()), ("f8", (2,))])
def test_single_record_variable_is_not_padded(
    tmp_path: Path, fmt: str, dtype: str, inner: tuple
) -> None:
    path = tmp_path / "one_rec.nc"
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        nc.createDimension("t", None)
        nc.createDimension("n", 3)
        nc.createDimension("m", 2)
        nc.createVariable("fixed", "i2", ("n",))[:] = [1, 2, 3]
        dims = ("t", *{3: ("n",), 2: ("m",)}.get(inner[0] if inner else 0, ()))
        nc.createVariable("v", dtype, dims)[:7] = ramp((7, *inner), dtype)
    store = parse(path)
    v = store.group.arrays["v"]
    slab = math.prod(inner) * np.dtype(dtype).itemsize
    assert np.diff(v.manifest.offsets.ravel()).tolist() == [slab] * 6  # e.g. 6 bytes, not 8
    assert_same_values(store, path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_zero_records(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "empty.nc"
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        nc.createDimension("t", None)
        nc.createDimension("x", 4)
        nc.createVariable("x", "f4", ("x",))[:] = np.arange(4)
        nc.createVariable("a", "f8", ("t", "x"))
        nc.createVariable("b", "i2", ("t",))
    store = parse(path)
    a = store.group.arrays["a"]
    assert a.shape == (0, 4)
    assert a.chunks == (1, 4)
    assert a.manifest.shape_chunk_grid == (0, 1)
    assert len(a.manifest) == 0
    assert_same_values(store, path)


def test_many_records_interleaved(tmp_path: Path) -> None:
    path = tmp_path / "recs.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("t", None)
        nc.createDimension("x", 3)
        for name, t in [("a", "i1"), ("b", "i2"), ("c", "f4"), ("d", "S1")]:
            v = nc.createVariable(name, t, ("t", "x"))
            if t == "S1":
                v[:] = np.full((250, 3), b"z", dtype="S1")
            else:
                v[:] = ramp((250, 3), t)
    store = parse(path)
    # records pad each variable to 4 bytes: 4 + 8 + 12 + 4
    assert np.diff(store.group.arrays["c"].manifest.offsets.ravel())[0] == 28
    assert_same_values(store, path)


# -- splitting fixed-size variables ------------------------------------------------------------


def test_max_chunk_bytes_splits_whole_rows(tmp_path: Path) -> None:
    path = tmp_path / "split.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        nc.createDimension("y", 7)
        nc.createDimension("x", 5)
        nc.createVariable("big", "f8", ("y", "x"))[:] = ramp((7, 5), "f8")
        nc.createVariable("after", "f8", ("y", "x"))[:] = ramp((7, 5), "f8") * 2
    store = parse(path, max_chunk_bytes=100)  # 40-byte rows -> 2 rows per chunk
    big = store.group.arrays["big"]
    assert big.chunks == (2, 5)
    assert big.manifest.shape_chunk_grid == (4, 1)
    assert np.diff(big.manifest.offsets.ravel()).tolist() == [80, 80, 80]
    # the last variable's partial last chunk would read past the end: rows divide 7 instead
    assert store.group.arrays["after"].chunks == (1, 5)
    assert_same_values(store, path)
    # smaller than a row: one row per chunk; larger than the variable: untouched
    assert parse(path, max_chunk_bytes=8).group.arrays["big"].chunks == (1, 5)
    assert parse(path, max_chunk_bytes=1 << 20).group.arrays["big"].chunks == (7, 5)


def test_max_chunk_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chunk_bytes"):
        NetCDF3Parser(max_chunk_bytes=0)


# -- header edge cases -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_streaming_numrecs_counts_records_from_file_size(tmp_path: Path, fmt: str) -> None:
    path = write_sample(tmp_path / "sample.nc", fmt, nrec=6)
    data = bytearray(path.read_bytes())
    width = 8 if fmt == "NETCDF3_64BIT_DATA" else 4
    data[4 : 4 + width] = b"\xff" * width
    streaming = tmp_path / "streaming.nc"
    streaming.write_bytes(bytes(data) + b"\x00" * 3)  # a partial trailing record is ignored
    assert parse_header(bytes(data)).numrecs is None
    store = parse(streaming)
    assert store.group.arrays["rec_f8"].shape == (6, 5)
    expected = netcdf4_values(path)
    for name, got in zarr_values(store).items():
        assert got.tobytes() == expected[name].astype(got.dtype).tobytes(), name


def test_name_with_counted_nul_is_trimmed(tmp_path: Path) -> None:
    path = tmp_path / "names.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("pp", 2)
        nc.createVariable("yy", "i4", ("pp",))[:] = [5, 6]
    data = path.read_bytes()
    # count the padding NUL in the names, as some old writers did ("yy\0", "pp\0")
    for name in (b"yy", b"pp"):
        data = data.replace(
            b"\x00\x00\x00\x02" + name + b"\x00\x00", b"\x00\x00\x00\x03" + name + b"\x00\x00", 1
        )
    path.write_bytes(data)
    store = parse(path)
    assert list(store.group.arrays) == ["yy"]
    assert store.group.arrays["yy"].metadata.dimension_names == ("pp",)
    assert_same_values(store, path)


def test_header_longer_than_first_read(tmp_path: Path) -> None:
    path = tmp_path / "long_header.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        # the header is fetched in several growing reads
        nc.setncattr("history", "x" * 300_000)
        nc.createDimension("x", 3)
        for i in range(50):
            nc.createVariable(f"v{i}", "i2", ("x",))[:] = [i, i + 1, i + 2]
    store = parse(path)
    assert store.group.attributes["history"] == "x" * 300_000
    assert_same_values(store, path)


def test_drop_variables(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "sample.nc", "NETCDF3_CLASSIC")
    store = parse(path, drop_variables=["text", "rec_f8"])
    assert "text" not in store.group.arrays
    assert "rec_f8" not in store.group.arrays
    assert "fixed_f8" in store.group.arrays


# -- errors ----------------------------------------------------------------------------------


def test_not_netcdf3(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"just some text, not a netCDF file at all")
    with pytest.raises(ParserError, match=r"notes\.txt is not a netCDF-3 file"):
        parse(path)
    h5 = tmp_path / "nc4.nc"
    netCDF4.Dataset(h5, "w", format="NETCDF4").close()
    with pytest.raises(ParserError, match="HDFParser"):
        parse(h5)


def test_bad_version_byte(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "sample.nc", "NETCDF3_CLASSIC")
    data = bytearray(path.read_bytes())
    data[3] = 3
    path.write_bytes(bytes(data))
    with pytest.raises(ParserError, match=r"sample\.nc: unknown netCDF-3 version byte 3"):
        parse(path)


@pytest.mark.parametrize("keep", [2, 3, 20, 200])
def test_truncated_header(tmp_path: Path, keep: int) -> None:
    path = write_sample(tmp_path / "sample.nc", "NETCDF3_64BIT_OFFSET")
    path.write_bytes(path.read_bytes()[:keep])
    error = ParserError if keep < 4 else CorruptFileError
    with pytest.raises(error, match=r"sample\.nc"):
        parse(path)


def test_corrupt_list_tag(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "sample.nc", "NETCDF3_CLASSIC")
    data = bytearray(path.read_bytes())
    assert data[8:12] == b"\x00\x00\x00\x0a"  # NC_DIMENSION tag
    data[8:12] = b"\x00\x00\x00\x0d"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="dimension list tag"):
        parse(path)


def test_two_unlimited_dimensions_are_rejected(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "sample.nc", "NETCDF3_CLASSIC")
    data = path.read_bytes()
    dim_x = b"\x00\x00\x00\x01x\x00\x00\x00\x00\x00\x00\x05"  # name "x", length 5
    assert data.count(dim_x) == 1
    path.write_bytes(data.replace(dim_x, dim_x[:-4] + bytes(4)))
    with pytest.raises(CorruptFileError, match="more than one dimension is unlimited"):
        parse(path)


def test_corrupt_attribute_length_fetches_nothing_past_the_end(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "sample.nc", "NETCDF3_CLASSIC")
    data = path.read_bytes()
    title = b"\x00\x00\x00\x02\x00\x00\x00\x06sample"  # NC_CHAR, 6 chars
    assert data.count(title) == 1
    path.write_bytes(data.replace(title, b"\x00\x00\x00\x02\x7f\xff\xff\xffsample"))
    with pytest.raises(CorruptFileError, match=r"header is truncated.*attribute 'title'"):
        parse(path)


def test_truncated_data_names_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "cut.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("x", 100)
        nc.createVariable("first", "f8", ("x",))[:] = np.arange(100)
        nc.createVariable("last", "f8", ("x",))[:] = np.arange(100)
    whole = path.read_bytes()
    path.write_bytes(whole[:-16])
    with pytest.raises(CorruptFileError, match=r"cut\.nc: the data of variable 'last'.*truncated"):
        parse(path)
    # leaving that variable out gives the rest, with the right values
    store = parse(path, drop_variables=["last"])
    np.testing.assert_array_equal(zarr_values(store)["first"], np.arange(100.0))


def test_truncated_records_names_the_variable(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "sample.nc", "NETCDF3_CLASSIC")
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(CorruptFileError, match=r"variable 'nan_fill'|variable 'with_fill'"):
        parse(path)


# -- remote reads ----------------------------------------------------------------------------


@pytest.mark.network
def test_over_http(tmp_path: Path, http_server: Any) -> None:
    from obstore.store import HTTPStore

    local = write_sample(tmp_path / "sample.nc", "NETCDF3_64BIT_DATA")
    served = http_server.mkdir() / "sample.nc"
    shutil.copy(local, served)
    url = http_server.url_for(served)
    http = HTTPStore.from_url(http_server.url, client_options={"allow_http": True})
    store = NetCDF3Parser()(url, ObjectStoreRegistry({http_server.url: http}))
    assert store.group.arrays["fixed_f8"].manifest.used_paths() == [url]
    assert_same_values(store, local)


def _big_header(path: Path) -> Path:
    """A netCDF-3 file whose header (2 MiB of attributes) is longer than the first read."""
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as nc:
        nc.createDimension("x", 4)
        for i in range(64):
            setattr(nc, f"history_{i}", "x" * 32768)
        nc.createVariable("v", "f8", ("x",))[:] = np.arange(4.0)
    return path


@pytest.mark.network
@pytest.mark.parametrize("name", ["classic", "cdf5", "big_header", *real_files("netcdf3")])
def test_remote_requests_and_bytes(tmp_path: Path, http_server: Any, name: str) -> None:
    """Over HTTP: the header in one request (two when longer than the 1 MiB first read),
    never a HEAD, and at most 1.1x the file + 64 KiB transferred; values equal netCDF4's."""
    from obstore.store import HTTPStore

    if name == "classic":
        local = write_sample(tmp_path / "s.nc", "NETCDF3_CLASSIC")
    elif name == "cdf5":
        local = write_sample(tmp_path / "s.nc", "NETCDF3_64BIT_DATA")
    elif name == "big_header":
        local = _big_header(tmp_path / "s.nc")
    else:
        local = real_file(name)
    served = http_server.mkdir() / "f.nc"
    shutil.copy(local, served)
    registry = ObjectStoreRegistry(
        {http_server.url: HTTPStore.from_url(http_server.url, client_options={"allow_http": True})}
    )
    store = NetCDF3Parser()(http_server.url_for(served), registry)
    requests, nbytes = http_served(http_server, served)
    size = served.stat().st_size
    header = parse_header(served.read_bytes(), str(served)).size
    assert requests == (1 if header <= 1 << 20 else 2), http_server.requests[-3:]
    assert nbytes <= 1.1 * size + (64 << 10)
    assert all(m == "GET" for m, p, _ in http_server.requests if p.endswith(served.name))
    if name != "big_header":
        assert_same_values(store, local)


def test_open_virtual_dataset_detects_netcdf3(tmp_path: Path) -> None:
    from virtualizarr.manifests import ManifestArray
    from virtualizarr.xarray import open_virtual_dataset

    path = write_sample(tmp_path / "sample.nc", "NETCDF3_CLASSIC")
    ds = open_virtual_dataset(str(path))
    assert isinstance(ds["fixed_f4"].data, ManifestArray)
    np.testing.assert_array_equal(ds["time"].values, np.arange(4) * 6.0)  # loaded coordinate
    assert ds["with_fill"].attrs["_FillValue"] == -1.0


@pytest.mark.parametrize(
    ("units", "calendar", "values", "cause"),
    [
        ("days since 1961-01-01", None, [-2147483647], "ValueError"),  # as CRM032_test1.nc
        # cftime's overflow, in the middle (xarray infers the dtype from the first and last)
        ("days since 1900-1-1", "360_day", [0, 1e300, 1], "OverflowError"),
    ],
)
def test_undecodable_time_coordinate_names_file_and_variable(
    tmp_path: Path, units: str, calendar: str | None, values: list[float], cause: str
) -> None:
    """A time coordinate CF cannot decode: ParserError naming the file and variable, with
    xarray's reason; netCDF4-python reads the raw value; decode_times=False opens it."""
    from virtualizarr.xarray import open_virtual_dataset

    path = tmp_path / "t.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("time", len(values))
        v = nc.createVariable("time", "i4" if cause == "ValueError" else "f8", ("time",))
        v.units = units
        if calendar:
            v.calendar = calendar
        v[:] = values
    with pytest.raises(ParserError, match=f"variable 'time' \\({cause}") as info:
        open_virtual_dataset(str(path))
    assert str(path) in str(info.value)
    ds = open_virtual_dataset(str(path), decode_times=False)
    np.testing.assert_array_equal(ds["time"].values, netcdf4_values(path)["time"])


# -- real files (../shared/data/real/netcdf3) ------------------------------------------------


def _gt_attrs_equal(got: dict[str, Any], expected: dict[str, Any]) -> bool:
    def norm(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        return [norm(x) for x in v] if isinstance(v, list) else v

    return {k: norm(v) for k, v in to_json_safe(got).items()} == {
        k: norm(v) for k, v in expected.items()
    }


@pytest.mark.parametrize("rel", real_files("netcdf3"))
def test_real_file(rel: str) -> None:
    path = real_file(rel)
    raw = ground_truth()[rel]["result"]["netcdf4_raw"]
    store = parse(path)
    values = zarr_values(store)
    assert list(values) == list(raw["variables"])
    assert _gt_attrs_equal(store.group.attributes, raw["global_attrs"])
    for name, stats in raw["variables"].items():
        arr = store.group.arrays[name]
        assert list(arr.metadata.dimension_names) == stats["dims"], name
        assert _gt_attrs_equal(arr.metadata.attributes, stats["attrs"]), name
        assert_values_match(values[name], stats, name=f"{rel}:{name}")
    assert_same_values(store, path)
