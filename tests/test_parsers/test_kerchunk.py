"""KerchunkJSONParser / KerchunkParquetParser: values through our ManifestStore equal the source.

Reference sets come from our own writer (round trip), from kerchunk's SingleHdf5ToZarr /
NetCDF3ToZarr / refs_to_dataframe on files written in ``tmp_path`` and on the real files
under ../shared/data/real (compared with h5py / netCDF4 and ground_truth.json), and are
written by hand for the spec corners (version 0, templates, gen, relative paths).
"""

from __future__ import annotations

import base64
import gc
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from tests._support import http_served
from tests.conftest import real_files, requires_real_data
from tests.test_manifests.builders import virtual_array
from tests.test_writers.test_kerchunk import assert_same_values, hdf5_virtual_dataset, nc_file  # noqa: F401
from virtualizarr.errors import CodecNotSupportedError, ParserError, UnsupportedFeatureError
from virtualizarr.parsers.kerchunk import KerchunkJSONParser, KerchunkParquetParser
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore
from virtualizarr.testing.ground_truth import assert_values_match, ground_truth, real_file
from virtualizarr.writers.kerchunk import to_kerchunk

h5py = pytest.importorskip("h5py")
pytest.importorskip("pyarrow")

REG = ObjectStoreRegistry()


def read(store: ManifestStore, **kw) -> xr.Dataset:
    return xr.open_zarr(store, consolidated=False, zarr_format=3, **kw).load()


def raw_arrays(store: ManifestStore) -> dict[str, np.ndarray]:
    """Every array of the store as zarr decodes it (no CF decoding), by path."""
    out = {}

    def walk(group: zarr.Group, prefix: str) -> None:
        for name, arr in group.arrays():
            out[prefix + name] = arr[...]
        for name, sub in group.groups():
            walk(sub, f"{prefix}{name}/")

    walk(zarr.open_group(store, mode="r"), "")
    return out


def write_json(path: Path, doc: dict) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def zarray(shape, chunks, dtype="<i4", fill=None, compressor=None, filters=None, sep=".") -> str:
    return json.dumps(
        {
            "zarr_format": 2,
            "shape": shape,
            "chunks": chunks,
            "dtype": dtype,
            "fill_value": fill,
            "order": "C",
            "compressor": compressor,
            "filters": filters,
            "dimension_separator": sep,
        }
    )


def dims(*names: str) -> str:
    return json.dumps({"_ARRAY_DIMENSIONS": list(names)})


# -- round trips through our writer ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_round_trip_values_equal_source(nc_file: Path, tmp_path: Path, fmt: str) -> None:  # noqa: F811
    ds = hdf5_virtual_dataset(nc_file, loadable=("time", "lat", "lon"))
    out = tmp_path / f"refs.{fmt}"
    to_kerchunk(ds, out, format=fmt, record_size=4, inline_threshold=200)
    parser = KerchunkJSONParser() if fmt == "json" else KerchunkParquetParser()
    store = parser(str(out), REG)
    assert_same_values(read(store), xr.open_dataset(nc_file).load())
    raw = read(store, mask_and_scale=False, decode_times=False)
    src = xr.open_dataset(nc_file, mask_and_scale=False, decode_times=False).load()
    for name in ("air", "packed", "big"):
        np.testing.assert_array_equal(raw[name].values, src[name].values)
    assert store.group["air"].metadata.dimension_names == ("time", "lat", "lon")
    assert store.group["big"].metadata.dtype.to_native_dtype().str == ">i4"
    air = store.group["air"].manifest
    assert air.missing[2:].all()  # unwritten chunks stay missing
    assert not air.missing[:2].any()


def test_round_trip_keeps_manifest(tmp_path: Path) -> None:
    data = np.arange(60, dtype="<f8").reshape(6, 10)
    arr = virtual_array(
        tmp_path / "a.bin",
        data,
        (4, 3),
        inline=[(1, 2)],
        missing=[(0, 1)],
        fill_value=np.nan,
        dimension_names=("y", "x"),
        attributes={"units": "m", "_FillValue": np.nan},
    )
    ds = xr.Dataset({"a": xr.Variable(("y", "x"), arr, {"units": "m", "_FillValue": np.nan})})
    for fmt, parser in (("json", KerchunkJSONParser()), ("parquet", KerchunkParquetParser())):
        to_kerchunk(ds, tmp_path / f"r.{fmt}", format=fmt, record_size=5)
        back = parser(str(tmp_path / f"r.{fmt}"), REG).group["a"]
        assert back.manifest == arr.manifest, fmt
        assert back.metadata.attributes["units"] == "m"
        assert np.isnan(back.metadata.attributes["_FillValue"])


def test_open_virtual_dataset_detects_both_layouts(nc_file: Path, tmp_path: Path) -> None:  # noqa: F811
    from virtualizarr.xarray import open_virtual_dataset

    ds = hdf5_virtual_dataset(nc_file, loadable=("time",))
    ds.attrs["GRIB_name"] = "TMP"  # "GRIB" in the first KiB must not look like a GRIB file
    for fmt in ("json", "parquet"):
        to_kerchunk(ds, tmp_path / f"r.{fmt}", format=fmt)
        vds = open_virtual_dataset(str(tmp_path / f"r.{fmt}"), loadable_variables=["time"])
        assert vds.vz.nrefs() == ds.vz.nrefs()
        again = tmp_path / f"again.{fmt}"
        to_kerchunk(vds, again, format="json")  # old references, re-written
        assert_same_values(
            read(KerchunkJSONParser()(str(again), REG)), xr.open_dataset(nc_file).load()
        )


def test_old_references_rewritten_to_icechunk(nc_file: Path, tmp_path: Path) -> None:  # noqa: F811
    pytest.importorskip("icechunk")
    from virtualizarr.readers import open_icechunk
    from virtualizarr.xarray import open_virtual_dataset

    to_kerchunk(
        hdf5_virtual_dataset(nc_file, loadable=("time",)), tmp_path / "old.json", format="json"
    )
    old = open_virtual_dataset(str(tmp_path / "old.json"), loadable_variables=["time"])
    old.vz.to_icechunk(str(tmp_path / "repo"))
    assert_same_values(
        open_icechunk(str(tmp_path / "repo")).load(), xr.open_dataset(nc_file).load()
    )


# -- kerchunk's own references -----------------------------------------------------------------


def test_kerchunk_hdf5_references_of_tmp_file(nc_file: Path, tmp_path: Path) -> None:  # noqa: F811

    refs = kerchunk_hdf5(nc_file, 300)
    assert any(
        isinstance(v, str) and k[-1].isdigit() for k, v in refs["refs"].items()
    )  # some inlined
    store = KerchunkJSONParser()(write_json(tmp_path / "k.json", refs), REG)
    got = raw_arrays(store)
    with h5py.File(nc_file) as f:
        for name in ("air", "packed", "big", "lat2d", "time"):
            np.testing.assert_array_equal(got[name], f[name][...], err_msg=name)


def test_kerchunk_parquet_references(nc_file: Path, tmp_path: Path) -> None:  # noqa: F811
    from kerchunk.df import refs_to_dataframe

    refs = kerchunk_hdf5(nc_file, 300)
    refs_to_dataframe(refs, str(tmp_path / "k.parq"), record_size=5)
    store = KerchunkParquetParser()(str(tmp_path / "k.parq"), REG)
    got = raw_arrays(store)
    with h5py.File(nc_file) as f:
        for name in ("air", "packed", "big", "lat2d"):
            np.testing.assert_array_equal(got[name], f[name][...], err_msg=name)


def _gt_vars(rel: str) -> dict:
    res = ground_truth()[rel]["result"]
    if "datasets" in res:
        return {k.lstrip("/"): v["raw"] for k, v in res["datasets"].items() if "raw" in v}
    return res["netcdf4_raw"]["variables"]


KERCHUNK_HDF5 = [
    "netcdf4_hdf5/air.nc",
    "netcdf4_hdf5/basin_mask.nc",
    "netcdf4_hdf5/test_gold.nc",
    "netcdf4_hdf5/issue671.nc",
    "netcdf4_hdf5/hdf5_mini_shuffle_zstd.h5",
    "netcdf4_hdf5/hdf5_mali_chunk.h5",
    "netcdf4_hdf5/hdf5_mini_blosc.h5",
    "netcdf4_hdf5/ref_groups.h5",
    "netcdf4_hdf5/20171025_2056.Cloud_Top_Height.nc",
]


def kerchunk_hdf5(path: Path, inline_threshold: int) -> dict:
    """kerchunk's references for an HDF5 file, translated with the garbage collector off.

    kerchunk walks the file in h5py's ``visititems`` (h5py's global lock held) and waits there
    for zarr's I/O thread; a collection that runs in that thread and frees an h5py object
    needs the same lock, so the two wait for each other (seen once: a CI run hung here).
    """
    from kerchunk.hdf import SingleHdf5ToZarr

    enabled = gc.isenabled()
    gc.disable()
    try:
        return SingleHdf5ToZarr(str(path), inline_threshold=inline_threshold).translate()
    finally:
        if enabled:
            gc.enable()


@requires_real_data
@pytest.mark.parametrize("rel", KERCHUNK_HDF5)
def test_kerchunk_hdf5_references_of_real_files(rel: str, tmp_path: Path) -> None:

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kerchunk's own deprecation chatter
        refs = kerchunk_hdf5(real_file(rel), 100)
    got = raw_arrays(KerchunkJSONParser()(write_json(tmp_path / "k.json", refs), REG))
    expected = _gt_vars(rel)
    assert got, rel
    for path, values in got.items():
        assert_values_match(values, expected[path], name=f"{rel}:{path}")


@requires_real_data
@pytest.mark.parametrize(
    "rel", [r for r in real_files("netcdf3") if not r.endswith("eraint_uvz.nc")]
)
def test_kerchunk_netcdf3_references_of_real_files(rel: str, tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    from kerchunk.netCDF3 import NetCDF3ToZarr

    try:
        refs = NetCDF3ToZarr(str(real_file(rel)), inline_threshold=50).translate()
    except ValueError as e:  # kerchunk's own limitations (NaN _FillValue on ints, empty record dim)
        pytest.skip(f"kerchunk cannot translate {rel}: {type(e).__name__}: {e}")
    got = raw_arrays(KerchunkJSONParser()(write_json(tmp_path / "k.json", refs), REG))
    expected = _gt_vars(rel)
    for path, values in got.items():
        assert_values_match(values, expected[path], name=f"{rel}:{path}")


# -- the spec's corners --------------------------------------------------------------------------


def _raw_file(tmp_path: Path, data: np.ndarray, name: str = "d.bin") -> Path:
    p = tmp_path / "data" / name
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(b"HEAD" + data.tobytes())
    return p


def test_version_0_relative_paths_and_fs_root(tmp_path: Path) -> None:
    data = np.arange(8, dtype="<i4")
    _raw_file(tmp_path, data)
    refs = {
        ".zgroup": '{"zarr_format":2}', "x/.zarray": zarray([8], [4]), "x/.zattrs": dims("x"),
        "x/0": ["data/d.bin", 4, 16], "x/1": ["data/d.bin", 20, 16],
    }  # fmt: skip
    url = write_json(tmp_path / "v0.json", refs)
    np.testing.assert_array_equal(raw_arrays(KerchunkJSONParser()(url, REG))["x"], data)
    elsewhere = tmp_path / "refs" / "v0.json"
    elsewhere.parent.mkdir()
    shutil.move(url, elsewhere)
    store = KerchunkJSONParser(fs_root=str(tmp_path))(str(elsewhere), REG)
    np.testing.assert_array_equal(raw_arrays(store)["x"], data)
    assert store.group["x"].manifest.used_paths() == [f"file://{tmp_path}/data/d.bin"]


def test_templates_gen_whole_file_and_inline(tmp_path: Path) -> None:
    data = np.arange(12, dtype="<i2")
    p = _raw_file(tmp_path, data)
    whole = tmp_path / "data" / "last.bin"
    whole.write_bytes(data[9:].tobytes())
    doc = {
        "version": 1,
        "templates": {"u": str(p.parent)},
        "refs": {
            ".zgroup": '{"zarr_format":2}',
            "a/.zarray": zarray([12], [3], "<i2"),
            "a/.zattrs": dims("x"),
            "a/0": "base64:" + base64.b64encode(data[:3].tobytes()).decode(),
            "a/3": ["{{u}}/last.bin"],
        },
        "gen": [
            {
                "key": "a/{{i}}",
                "url": "{{u}}/d.bin",
                "offset": "{{4 + i * 6}}",
                "length": "6",
                "dimensions": {"i": {"start": 1, "stop": 3}},
            }
        ],
    }
    store = KerchunkJSONParser()(write_json(tmp_path / "t.json", doc), REG)
    np.testing.assert_array_equal(raw_arrays(store)["a"], data)
    m = store.group["a"].manifest
    assert m.inlined[0]
    assert int(m.lengths[3]) == 6  # whole file, sized from the object store


def test_text_inline_and_slash_separator(tmp_path: Path) -> None:
    refs = {
        "version": 1,
        "refs": {
            ".zgroup": '{"zarr_format":2}',
            "s/.zarray": zarray([2, 4], [1, 2], "|u1", sep="/"), "s/.zattrs": dims("y", "x"),
            "s/0/0": "ab", "s/0/1": "cd", "s/1/0": "ef",  # s/1/1 missing
        },
    }  # fmt: skip
    store = KerchunkJSONParser()(write_json(tmp_path / "s.json", refs), REG)
    np.testing.assert_array_equal(raw_arrays(store)["s"], [[97, 98, 99, 100], [101, 102, 0, 0]])


def test_fill_value_becomes_cf_fill_value(tmp_path: Path) -> None:
    refs = {
        ".zgroup": '{"zarr_format":2}', "f/.zarray": zarray([4], [2], "<f4", fill="NaN"),
        "f/.zattrs": dims("x"), "f/0": "base64:" + base64.b64encode(np.float32([1, 2]).tobytes()).decode(),
    }  # fmt: skip
    store = KerchunkJSONParser()(write_json(tmp_path / "f.json", refs), REG)
    assert np.isnan(store.group["f"].metadata.attributes["_FillValue"])
    np.testing.assert_array_equal(read(store).f.values, [1, 2, np.nan, np.nan])


def test_group_and_drop_variables(tmp_path: Path) -> None:
    data = np.arange(4, dtype="<i4")
    _raw_file(tmp_path, data)
    refs = {
        ".zgroup": '{"zarr_format":2}', "g/.zgroup": '{"zarr_format":2}', "g/.zattrs": '{"title": "g"}',
        "g/a/.zarray": zarray([4], [4]), "g/a/.zattrs": dims("x"), "g/a/0": ["data/d.bin", 4, 16],
        "g/b/.zarray": zarray([4], [4]), "g/b/.zattrs": dims("x"), "g/b/0": ["data/d.bin", 4, 16],
        "top/.zarray": zarray([4], [4]), "top/.zattrs": dims("x"), "top/0": ["data/d.bin", 4, 16],
    }  # fmt: skip
    url = write_json(tmp_path / "g.json", refs)
    full = KerchunkJSONParser()(url, REG)
    assert set(full.group.arrays) == {"top"}
    assert set(full.group["g"].arrays) == {"a", "b"}
    sub = KerchunkJSONParser(group="g", drop_variables=["b"])(url, REG)
    assert set(sub.group.arrays) == {"a"}
    assert sub.group.attributes == {"title": "g"}
    with pytest.raises(ParserError, match="no group 'nope'"):
        KerchunkJSONParser(group="nope")(url, REG)


def test_parquet_reads_only_kept_variables(tmp_path: Path) -> None:
    a = virtual_array(tmp_path / "a.bin", np.arange(6.0), (2,), dimension_names=("x",))
    ds = xr.Dataset({"keep": (("x",), a), "drop": (("x",), a)})
    out = tmp_path / "r.parq"
    to_kerchunk(ds, out, format="parquet")
    (out / "drop" / "refs.0.parq").write_bytes(b"not parquet")
    with pytest.raises(ParserError, match=r"drop/refs\.0\.parq"):
        KerchunkParquetParser()(str(out), REG)
    store = KerchunkParquetParser(drop_variables=["drop"])(str(out), REG)
    np.testing.assert_array_equal(raw_arrays(store)["keep"], np.arange(6.0))


@pytest.mark.parametrize(
    ("doc", "error", "match"),
    [
        ("{not json", ParserError, "not valid kerchunk JSON"),
        ('{"version": 2, "refs": {}}', UnsupportedFeatureError, "version 2"),
        ("[1, 2]", ParserError, "not kerchunk references"),
    ],
    ids=["malformed", "version", "list"],
)
def test_bad_documents(tmp_path: Path, doc: str, error: type, match: str) -> None:
    (tmp_path / "bad.json").write_text(doc)
    with pytest.raises(error, match=match):
        KerchunkJSONParser()(str(tmp_path / "bad.json"), REG)


def test_errors_name_variable(tmp_path: Path) -> None:
    bad_key = {
        ".zgroup": '{"zarr_format":2}',
        "v/.zarray": zarray([4], [2]),
        "v/.zattrs": dims("x"),
        "v/7": "ab",
    }
    with pytest.raises(ParserError, match=r"v/7.*outside the chunk grid"):
        KerchunkJSONParser()(write_json(tmp_path / "k.json", bad_key), REG)
    odd = {
        ".zgroup": '{"zarr_format":2}',
        "v/.zattrs": dims("x"),
        "v/.zarray": zarray([4], [2], compressor={"id": "no-such-codec"}),
    }
    with pytest.raises(CodecNotSupportedError, match=r"'v'.*no-such-codec.*drop_variables"):
        KerchunkJSONParser()(write_json(tmp_path / "c.json", odd), REG)
    neg = {
        ".zgroup": '{"zarr_format":2}',
        "v/.zarray": zarray([4], [4]),
        "v/.zattrs": dims("x"),
        "v/0": ["/x", -1, 4],
    }
    with pytest.raises(ParserError, match="negative"):
        KerchunkJSONParser()(write_json(tmp_path / "n.json", neg), REG)


@pytest.mark.parametrize(
    "value",
    [["/x", "a", 4], [None, 0, 4], ["/x", 0], 7, "base64:!!!"],
    ids=["text-offset", "null-url", "two-items", "number", "bad-base64"],
)
def test_malformed_reference_values(tmp_path: Path, value: object) -> None:
    refs = {
        ".zgroup": '{"zarr_format":2}',
        "v/.zarray": zarray([4], [4]),
        "v/.zattrs": dims("x"),
        "v/0": value,
    }
    with pytest.raises(ParserError, match=r"v/0"):
        KerchunkJSONParser()(write_json(tmp_path / "m.json", refs), REG)
    bad_meta = {".zgroup": '{"zarr_format":2}', "v/.zarray": "{not json", "v/.zattrs": dims("x")}
    with pytest.raises(ParserError, match=r"v/\.zarray is not valid JSON"):
        KerchunkJSONParser()(write_json(tmp_path / "b.json", bad_meta), REG)


# -- remote references -------------------------------------------------------------------------


@pytest.mark.network
def test_references_over_http(nc_file: Path, http_server) -> None:  # noqa: F811
    """JSON references: one ranged GET of the document (its size with it, no HEAD).
    Parquet: one per .zmetadata and per record file. Values equal the source's."""
    from obstore.store import HTTPStore

    ds = hdf5_virtual_dataset(nc_file)
    served = http_server.mkdir()
    to_kerchunk(ds, served / "r.json", format="json")
    to_kerchunk(ds, served / "r.parq", format="parquet", record_size=4)
    registry = ObjectStoreRegistry(
        {http_server.url: HTTPStore.from_url(http_server.url, client_options={"allow_http": True})}
    )
    store = KerchunkJSONParser()(http_server.url_for(served / "r.json"), registry)
    size = (served / "r.json").stat().st_size
    assert http_served(http_server, served / "r.json") == (1, size)
    assert_same_values(read(store), xr.open_dataset(nc_file).load())
    store = KerchunkParquetParser()(http_server.url_for(served / "r.parq"), registry)
    assert_same_values(read(store), xr.open_dataset(nc_file).load())
    for path in sorted((served / "r.parq").rglob("*")):
        if path.is_file():
            n, nbytes = http_served(http_server, path)
            assert (n, nbytes) == (1, path.stat().st_size), path


def test_arrays_without_dimension_names_get_phony_names(tmp_path: Path) -> None:
    """References whose .zattrs has no (or a broken) _ARRAY_DIMENSIONS open with phony_dim_<n>
    names, one per distinct length, instead of failing in xarray; values are the inlined bytes."""
    from virtualizarr import open_virtual_dataset

    doc = {
        ".zgroup": '{"zarr_format": 2}',
        "a/.zarray": zarray([2, 3], [2, 3], dtype="<i2", fill=-1),
        "a/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["only_one"]}),
        "a/0.0": "base64:" + base64.b64encode(np.arange(6, dtype="<i2").tobytes()).decode(),
        "b/.zarray": zarray([3], [3], dtype="<i2", fill=-1),
        "b/0": "base64:" + base64.b64encode(np.arange(3, dtype="<i2").tobytes()).decode(),
    }
    path = write_json(tmp_path / "refs.json", doc)
    store = KerchunkJSONParser()(path, REG)
    assert store.group["a"].metadata.dimension_names == ("phony_dim_0", "phony_dim_1")
    assert store.group["b"].metadata.dimension_names == ("phony_dim_1",)
    ds = open_virtual_dataset(path, loadable_variables=["a", "b"])
    np.testing.assert_array_equal(ds["a"].values, np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(ds["b"].values, np.arange(3))
