"""Our own HDF5 metadata reader (``HDFParser(engine="own")``) against the h5py engine.

Every file (the real ones in ``../shared/data/real/netcdf4_hdf5`` and files written here
with h5py for each ``libver`` and with netCDF4-python) must give the very same
ManifestGroup through both engines: arrays, shapes, dtypes, codecs, fill values,
attributes (in order) and chunk manifests. Files the reader does not fully implement are
read with h5py (logged); the generated files here must not need that.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import real_files
from virtualizarr.errors import CorruptFileError, ParserError
from virtualizarr.manifests import ManifestGroup
from virtualizarr.manifests.metadata import to_json_safe
from virtualizarr.parsers import HDFParser
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.testing.ground_truth import real_file

h5py = pytest.importorskip("h5py")

LIBVERS = ["earliest", "v108", "v110", "latest"]
FALLBACK_LOG = "read with h5py"


def _parse(path: Path | str, engine: str, **kw: Any) -> ManifestGroup:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = HDFParser(engine=engine, **kw)(f"file://{path}", ObjectStoreRegistry())
    return store.group


def _describe(g: ManifestGroup, prefix: str = "") -> list[Any]:
    """Everything of a group as comparable values (JSON text keeps order and NaN)."""
    out: list[Any] = [(prefix, json.dumps(to_json_safe(g.attributes)))]
    for name, arr in g.arrays.items():
        meta = json.dumps(to_json_safe(arr.metadata.to_dict()))
        m = arr.manifest
        table = [t if isinstance(t, str) else bytes(t) for t in m.table]
        out.append(
            (
                prefix + name,
                meta,
                m.path_ids.tolist(),
                m.offsets.tolist(),
                m.lengths.tolist(),
                table,
            )
        )
    for name, sub in g.groups.items():
        out += _describe(sub, f"{prefix}{name}/")
    return out


def assert_same(path: Path | str, caplog: pytest.LogCaptureFixture, *, own_only: bool, **kw: Any):
    """Both engines give equal groups; ``own_only``: our reader did not fall back."""
    ref = _parse(path, "h5py", **kw)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="virtualizarr.parsers.hdf5.parser"):
        got = _parse(path, "own", **kw)
    fell_back = [r.getMessage() for r in caplog.records if FALLBACK_LOG in r.getMessage()]
    if own_only:
        assert not fell_back, fell_back
    a, b = _describe(got), _describe(ref)
    assert [x[0] for x in a] == [x[0] for x in b]  # same arrays and groups, same order
    for x, y in zip(a, b):
        assert x == y, x[0]
    return got


# -- real files --------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", real_files("netcdf4_hdf5", (".nc", ".h5", ".hdf5")))
def test_real_files_match_h5py(rel: str, caplog: pytest.LogCaptureFixture) -> None:
    assert_same(real_file(rel), caplog, own_only=False)


# -- files written with h5py ---------------------------------------------------------------------


def _write_features(path: Path, libver: str, track_order: bool = False) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w", libver=libver, track_order=track_order) as f:
        f.attrs["title"] = "features"
        f.attrs.create("vlen_str", "vlen attribute", dtype=h5py.string_dtype())
        f.attrs["str_list"] = np.array(["a", "bc"], dtype=h5py.string_dtype())
        f.attrs["ints"] = np.arange(3, dtype="<i2")
        f.attrs["scalar"] = np.float64(2.5)
        f.attrs["fixed_utf8"] = np.array("héllo".encode(), dtype="S6")
        rec = np.dtype([("name", "S5"), ("value", "<f4"), ("inner", [("a", "<i2")])])
        f.attrs["records"] = np.array([(b"ab", 1.5, (3,)), (b"cdefg", 2.5, (4,))], dtype=rec)
        f.create_dataset("contig", data=rng.random((7, 5)).astype(">f4"))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple((6,))
        did = h5py.h5d.create(f.id, b"compact", h5py.h5t.STD_I32LE, space, dcpl=dcpl)
        did.write(h5py.h5s.ALL, h5py.h5s.ALL, np.arange(6, dtype="<i4"))
        f.create_dataset("chunked", data=rng.integers(0, 100, (20, 30)), chunks=(7, 8))
        f.create_dataset(
            "deflate", data=rng.random((40, 3)), chunks=(10, 3), compression="gzip", shuffle=True
        )
        f.create_dataset("single", data=np.arange(12.0).reshape(3, 4), chunks=(3, 4))
        f.create_dataset("unlimited", data=np.arange(10), chunks=(4,), maxshape=(None,))
        f.create_dataset(
            "two_unlimited", data=np.ones((5, 6)), chunks=(2, 2), maxshape=(None, None)
        )
        f.create_dataset("empty", shape=(8,), dtype="<f8", chunks=(4,), fillvalue=-1.0)
        f.create_dataset("unalloc", shape=(4, 4), dtype="<i2", fillvalue=7)
        f.create_dataset("scalar", data=3.0)
        f.create_dataset("fixed_str", data=np.array([b"ab", b"cde"], dtype="S3"))
        f.create_dataset("vlen_str", data=np.array(["x", "yz"], dtype=h5py.string_dtype()))
        cmpd = np.dtype([("a", "<i4"), ("b", ">f8")])
        f.create_dataset("compound", data=np.array([(1, 2.0), (3, 4.0)], dtype=cmpd))
        enum = h5py.enum_dtype({"RED": 0, "GREEN": 1}, basetype="i1")
        f.create_dataset("enum", data=np.array([0, 1, 1], dtype="i1"), dtype=enum)
        f.create_dataset("bools", data=np.array([True, False]))
        f.create_dataset("complex", data=np.array([1 + 2j, 3 - 1j]))
        many = f.create_dataset("many_attrs", data=np.arange(3))
        for i in range(20):  # dense attribute storage beyond 8 (new-style headers)
            many.attrs[f"attr_{19 - i:02d}"] = i
        many.attrs["long"] = "y" * 100
        if libver != "earliest":  # over 64 KiB: a huge object of the dense attribute heap
            many.attrs["huge"] = np.arange(10_000, dtype="<f8")
        links = f.create_group("links")
        for i in range(20):  # dense link storage beyond 8 (libver >= v108)
            links.create_dataset(f"d{19 - i:02d}", data=np.arange(i + 1))
        g = f
        for depth in range(5):
            g = g.create_group(f"level{depth}")
            g.attrs["depth"] = depth
        g.create_dataset("deep", data=np.arange(4))
        f["soft"] = h5py.SoftLink("/contig")
        f["dangling"] = h5py.SoftLink("/nowhere")
        f["external"] = h5py.ExternalLink("other.h5", "/x")
        f["hard_again"] = f["chunked"]
        f["named_type"] = np.dtype("<i8")
        f.create_dataset("typed", data=np.arange(3), dtype=f["named_type"])


@pytest.mark.parametrize("libver", LIBVERS)
@pytest.mark.parametrize("track_order", [False, True])
def test_h5py_features_match(
    tmp_path: Path, libver: str, track_order: bool, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / f"features_{libver}.h5"
    _write_features(path, libver, track_order)
    got = assert_same(path, caplog, own_only=True)
    assert (
        "deep"
        in got.groups["level0"]
        .groups["level1"]
        .groups["level2"]
        .groups["level3"]
        .groups["level4"]
        .arrays
    )
    assert len(got.groups["links"].arrays) == 20
    assert got.arrays["many_attrs"].metadata.attributes["attr_00"] == 19


@pytest.mark.parametrize("libver", LIBVERS)
def test_chunk_index_types_match(
    tmp_path: Path, libver: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / f"idx_{libver}.h5"
    with h5py.File(path, "w", libver=libver) as f:
        data = np.arange(2000, dtype="<f4").reshape(50, 40)  # compressible: no skipped filter
        f.create_dataset("fixed", data=data, chunks=(7, 9), compression="gzip")
        f.create_dataset("ext", data=data, chunks=(7, 9), maxshape=(None, 40), compression="gzip")
        f.create_dataset("bt2", data=data, chunks=(7, 9), maxshape=(None, None))
        f.create_dataset("big_fixed", data=np.arange(200_000, dtype="<i2"), chunks=(64,))
        f.create_dataset("single", data=data, chunks=(50, 40), compression="gzip")
        ds = f.create_dataset("partial", shape=(100,), chunks=(10,), dtype="<i4", maxshape=(None,))
        ds[30:55] = 1
    assert_same(path, caplog, own_only=True)


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_paged_files_with_superblock_extension_match(
    tmp_path: Path, libver: str, caplog: pytest.LogCaptureFixture
) -> None:
    # paged aggregation ("cloud-optimized HDF5") writes a superblock extension
    path = tmp_path / f"paged_{libver}.h5"
    with h5py.File(path, "w", fs_strategy="page", fs_page_size=4096, libver=libver) as f:
        f.create_dataset("x", data=np.arange(1000.0), chunks=(100,), compression="gzip")
        f.create_group("g").create_dataset("y", data=np.arange(3))
        for i in range(12):
            f.attrs[f"k{i}"] = i
    assert_same(path, caplog, own_only=True)


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_user_block_files_match(
    tmp_path: Path, libver: str, caplog: pytest.LogCaptureFixture
) -> None:
    # addresses count from the superblock, after the user block; references are absolute
    path = tmp_path / f"ub_{libver}.h5"
    with h5py.File(path, "w", userblock_size=1024, libver=libver) as f:
        f.create_dataset("chunked", data=np.arange(10, dtype="<i4"), chunks=(5,))
        f.create_dataset("contiguous", data=np.arange(10, dtype="<i4"))
        f.create_dataset("ext", data=np.arange(100, dtype="<i4"), chunks=(5,), maxshape=(None,))
        f.attrs.create("vlen", "a string", dtype=h5py.string_dtype())
    got = assert_same(path, caplog, own_only=True)
    assert int(got.arrays["contiguous"].manifest.offsets.ravel()[0]) > 1024


def test_netcdf4_python_files_match(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    netCDF4 = pytest.importorskip("netCDF4")
    path = tmp_path / "nc4.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.title = "netCDF-4 file"
        ds.history = "made by a test"
        ds.createDimension("time", None)
        ds.createDimension("lat", 4)
        ds.createDimension("lon", 5)
        ds.createDimension("nv", 2)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t[:] = np.arange(6)
        lat = ds.createVariable("lat", "f4", ("lat",))
        lat[:] = np.linspace(-10, 10, 4)
        v = ds.createVariable("temp", "f4", ("time", "lat", "lon"), zlib=True, fill_value=-999.0)
        v.long_name = "temperature"
        v.valid_range = np.array([-50, 50], "f4")
        v[:] = np.arange(6 * 20, dtype="f4").reshape(6, 4, 5)
        short = ds.createVariable("short_record", "i2", ("time",))
        short[:3] = [1, 2, 3]  # shorter than the unlimited dimension
        ds.createVariable("bounds", "f4", ("lat", "nv"))[:] = np.zeros((4, 2))
        s = ds.createVariable("names", str, ("lat",))
        s[:] = np.array(["a", "bb", "ccc", "d"], dtype=object)
        g = ds.createGroup("sub")
        g.createDimension("x", 3)
        gv = g.createVariable("gv", "i4", ("x", "lat"))
        gv[:] = np.ones((3, 4))
        gv.setncattr_string("strattr", ["one", "two"])
    assert_same(path, caplog, own_only=False)


def test_group_and_drop_variables_options(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "features.h5"
    _write_features(path, "latest")
    assert_same(path, caplog, own_only=True, group="/level0/level1")
    assert_same(path, caplog, own_only=True, drop_variables=["contig", "links/d03"])


# -- corrupt and truncated files ---------------------------------------------------------------


def _parse_own_strict(path: Path) -> ManifestGroup:
    """Our reader alone (the parser would retry a file it finds corrupt with h5py)."""
    from virtualizarr.parsers.hdf5.own import open_own

    url = f"file://{path}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_own(url, ObjectStoreRegistry()) as objects:
            return HDFParser(engine="own")._build(objects, url, objects.size)


@pytest.mark.parametrize("libver", ["earliest", "latest"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_file_raises_corrupt(tmp_path: Path, libver: str, keep: float) -> None:
    path = tmp_path / "full.h5"
    _write_features(path, libver)
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CorruptFileError, match=r"cut\.h5"):
        _parse_own_strict(cut)
    with pytest.raises(CorruptFileError, match=r"cut\.h5"):
        _parse(cut, "own")  # h5py agrees


def test_corrupt_header_checksum_raises(tmp_path: Path) -> None:
    from virtualizarr.io import open_source
    from virtualizarr.parsers.hdf5.superblock import H5File, read_superblock

    path = tmp_path / "c.h5"
    _write_features(path, "latest")
    with open_source(f"file://{path}") as src:
        root = read_superblock(H5File(src, str(path))).root_address
    data = bytearray(path.read_bytes())
    data[root + 12] ^= 0xFF  # inside the root group's header: its checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"c\.h5.*object header.*checksum"):
        _parse_own_strict(path)


def test_not_hdf5_is_parser_error(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    path.write_bytes(b"CDF\x01" + bytes(100))
    with pytest.raises(ParserError, match="not an HDF5"):
        _parse(path, "own")


def test_unknown_engine_rejected() -> None:
    with pytest.raises(ValueError, match="engine"):
        HDFParser(engine="fast")


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_damaged_metadata_named_error_or_fallback(tmp_path: Path, libver: str) -> None:
    """Seeded byte flips in the metadata: our reader succeeds, raises a named error or
    hands the file to h5py; never another exception, never a hang."""
    import random

    from virtualizarr.errors import VirtualiZarrError
    from virtualizarr.parsers.hdf5.superblock import Fallback

    src = tmp_path / "src.h5"
    _write_features(src, libver)
    data = src.read_bytes()
    rng = random.Random(11)
    outcomes = set()
    for i in range(40):
        d = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            d[rng.randrange(0, min(len(d), 16384))] = rng.randrange(256)
        path = tmp_path / f"m{i}.h5"
        path.write_bytes(bytes(d))
        try:
            _parse_own_strict(path)
            outcomes.add("ok")
        except Fallback:
            outcomes.add("fallback")
        except VirtualiZarrError as e:
            outcomes.add(type(e).__name__ if f"m{i}.h5" in str(e) else f"unnamed: {e}")
    assert "CorruptFileError" in outcomes
    assert not [o for o in outcomes if o.startswith("unnamed")], outcomes
