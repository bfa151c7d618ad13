"""DMRPPParser: values read through the ManifestStore equal h5py's, for DMR++ written by
the test writer (``dmrpp_writer.py``) over the real netCDF-4/HDF5 files and files made here."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from tests._support import http_served, parser_call
from tests.conftest import real_files
from virtualizarr.errors import CodecNotSupportedError, ParserError, VariableSkippedWarning
from virtualizarr.manifests import ManifestArray
from virtualizarr.parsers import DMRPPParser, detect_parser
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore
from virtualizarr.testing.ground_truth import ground_truth, real_file, sha256_of_values

h5py = pytest.importorskip("h5py")
from tests.test_parsers.dmrpp_writer import write_dmrpp

# Char variables are Zarr 'null_terminated_bytes', which zarr-python flags as unstable
pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")

SUPPORTED = {"deflate", "shuffle", "fletcher32"}
HUGE = 10**8  # elements: ref_tst_dims.nc's never-written 4.5e9-element variable is not read


parse = parser_call(DMRPPParser)


def arrays(store: ManifestStore) -> dict[str, ManifestArray]:
    return {p: n for p, n in store.group.walk() if isinstance(n, ManifestArray)}


def h5_filters(path: Path) -> set[str]:
    names = {1: "deflate", 2: "shuffle", 3: "fletcher32"}
    found: set[str] = set()

    def visit(_: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            dcpl = obj.id.get_create_plist()
            found.update(
                names.get(dcpl.get_filter(i)[0], "other") for i in range(dcpl.get_nfilters())
            )

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def assert_values_equal_h5py(store: ManifestStore, h5_path: Path) -> dict[str, np.ndarray]:
    """Every array of the store reads (through zarr) exactly what h5py reads; returns them."""
    root = zarr.open_group(store, mode="r", zarr_format=3)
    out = {}
    with h5py.File(h5_path, "r") as f:
        for path, arr in arrays(store).items():
            if np.prod(arr.shape) > HUGE:
                assert arr.manifest.missing.all()
                continue
            got = root[path][...]
            expected = f[path][()]
            # zarr hands values back in native byte order; the stored order is the bytes codec's
            assert got.dtype == expected.dtype.newbyteorder("="), path
            np.testing.assert_array_equal(got, expected, err_msg=path)
            out[path] = got
    return out


# -- real netCDF-4/HDF5 files ---------------------------------------------------------------


@pytest.mark.parametrize("rel", real_files("netcdf4_hdf5"))
def test_real_files(rel: str, tmp_path: Path) -> None:
    """DMR++ of every real file: supported filters read back exactly; others raise by name."""
    h5_path = real_file(rel)
    dmrpp = tmp_path / (h5_path.name + ".dmrpp")
    write_dmrpp(h5_path, dmrpp)
    if not h5_filters(h5_path) <= SUPPORTED:
        with pytest.raises(CodecNotSupportedError, match=r"variable '/\w+' uses compressionType"):
            parse(dmrpp)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VariableSkippedWarning)
        store = parse(dmrpp)
    skipped = {str(w.message).split("'")[1] for w in caught if w.category is VariableSkippedWarning}
    values = assert_values_equal_h5py(store, h5_path)
    with h5py.File(h5_path, "r") as f:  # only types without a fixed-size Zarr dtype are left out
        for path in skipped:
            dt = f[path].dtype
            assert (
                dt.names is not None or dt.kind in "OV" or (dt.kind == "S" and dt.itemsize > 1)
            ), path
    truth = ground_truth()[rel]["result"]["datasets"]
    for name, info in truth.items():
        if "/" + name in values and "raw" in info:  # else skipped, or a dimension without data
            assert sha256_of_values(values["/" + name]) == info["raw"]["sha256"], name


@pytest.mark.parametrize(
    "rel",
    [  # the HDF5 parser takes over a minute on 2001 datasets
        pytest.param(r, marks=pytest.mark.slow) if "compat1" in r else r
        for r in real_files("netcdf4_hdf5")
    ],
)
def test_manifests_equal_hdf5_parser(rel: str, tmp_path: Path) -> None:
    hdf5 = pytest.importorskip("virtualizarr.parsers.hdf5")
    h5_path = real_file(rel)
    if not h5_filters(h5_path) <= SUPPORTED:
        pytest.skip("filters the DMR++ parser rejects")
    dmrpp = tmp_path / (h5_path.name + ".dmrpp")
    write_dmrpp(h5_path, dmrpp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = arrays(parse(dmrpp))
        theirs = arrays(hdf5.HDFParser()(str(h5_path), ObjectStoreRegistry()))
    compared = 0
    for path, arr in ours.items():
        other = theirs.get(path)
        if other is None or other.manifest.inlined.any() or other.chunks != arr.chunks:
            continue  # the HDF5 parser inlines small data or re-chunks contiguous data
        assert arr.manifest == other.manifest, path
        compared += 1
    assert compared or not ours


# -- files made here ----------------------------------------------------------------------------


def make(tmp_path: Path, build: Any, **writer: Any) -> tuple[Path, Path]:
    h5_path = tmp_path / "data.h5"
    with h5py.File(h5_path, "w") as f:
        build(f)
    dmrpp = tmp_path / "data.h5.dmrpp"
    write_dmrpp(h5_path, dmrpp, **writer)
    return h5_path, dmrpp


def test_filters_partial_chunks_fill_and_byte_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def build(f: h5py.File) -> None:
        f.create_dataset("deflate", data=rng.random((50, 30)), chunks=(16, 7), compression="gzip")
        f.create_dataset(
            "shuffle_deflate_fletcher",
            data=rng.integers(0, 1000, (40, 33), dtype="i4"),
            chunks=(8, 8),
            shuffle=True,
            compression="gzip",
            compression_opts=9,
            fletcher32=True,
        )
        f.create_dataset(
            "big_endian", data=np.arange(60, dtype=">f8").reshape(6, 10), chunks=(4, 4)
        )
        f.create_dataset("contiguous_be", data=np.arange(7, dtype=">i2"))
        sparse = f.create_dataset(
            "sparse", shape=(20, 20), chunks=(5, 5), dtype="f4", fillvalue=-9.5
        )
        sparse[0:5, 5:10] = 1.0  # one chunk written, 15 read as the fill value
        f.create_dataset("scalar", data=np.float32(3.25))
        f.create_dataset(
            "uint64", data=np.array([2**63 + 5, 1], dtype="u8"), chunks=(1,), compression="gzip"
        )
        g = f.create_group("grp/sub")
        g.create_dataset("x", data=np.arange(5.0))
        g["x"].make_scale("x")
        g.create_dataset(
            "v", data=np.arange(10.0).reshape(5, 2), chunks=(2, 2), shuffle=True, compression="gzip"
        )
        g["v"].dims[0].attach_scale(g["x"])
        g["v"].attrs["units"] = "m"
        g["v"].attrs["valid_range"] = np.array([0, 10], dtype="i2")
        f.attrs["title"] = "made in a test"

    h5_path, dmrpp = make(tmp_path, build)
    store = parse(dmrpp)
    assert len(assert_values_equal_h5py(store, h5_path)) == 9
    v = store.group["grp/sub/v"]
    assert v.metadata.dimension_names[0] == "x"
    assert v.metadata.attributes["valid_range"] == [0, 10]
    assert store.group.attributes["title"] == "made in a test"
    assert store.group["sparse"].manifest.missing.sum() == 15
    codecs = [c.to_dict()["name"] for c in store.group["shuffle_deflate_fletcher"].metadata.codecs]
    assert codecs == ["bytes", "numcodecs.shuffle", "numcodecs.zlib", "numcodecs.fletcher32"]


def make_fletcher_first(f: h5py.File, dtype: str) -> None:
    """fletcher32 before shuffle and deflate: a pipeline order h5py's high-level API never makes."""
    data = np.arange(24, dtype=dtype).reshape(4, 6)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_chunk((2, 3))
    dcpl.set_fletcher32()
    dcpl.set_shuffle()
    dcpl.set_deflate(4)
    space = h5py.h5s.create_simple(data.shape)
    dsid = h5py.h5d.create(f.id, b"data", h5py.h5t.py_create(np.dtype(dtype)), space, dcpl=dcpl)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, data)


def test_fletcher32_before_shuffle(tmp_path: Path) -> None:
    h5_path, dmrpp = make(tmp_path, lambda f: make_fletcher_first(f, "<i4"))
    assert 'compressionType="fletcher32 shuffle deflate"' in dmrpp.read_text()
    assert_values_equal_h5py(parse(dmrpp), h5_path)


def test_fletcher32_before_shuffle_of_8_byte_elements_is_rejected(tmp_path: Path) -> None:
    _, dmrpp = make(tmp_path, lambda f: make_fletcher_first(f, "<f8"))
    with pytest.raises(CodecNotSupportedError, match=r"variable '/data' shuffles 8-byte elements"):
        parse(dmrpp)


def test_unsupported_compression_names_the_variable(tmp_path: Path) -> None:
    _, dmrpp = make(
        tmp_path,
        lambda f: f.create_dataset("lzf", data=np.arange(10), chunks=(5,), compression="lzf"),
    )
    with pytest.raises(
        CodecNotSupportedError, match=r"data\.h5\.dmrpp: variable '/lzf' uses compressionType"
    ):
        parse(dmrpp)


def test_skipped_types_warn_by_name(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        f.create_dataset("text", data=np.array(["a", "bc"], dtype=h5py.string_dtype()))
        f.create_dataset("pairs", data=np.zeros(3, dtype=[("a", "i4"), ("b", "f8")]))
        f.create_dataset("ok", data=np.arange(3))

    h5_path, dmrpp = make(tmp_path, build)
    with pytest.warns(VariableSkippedWarning) as record:
        store = parse(dmrpp)
    messages = " ".join(str(w.message) for w in record)
    assert "variable '/text' is left out" in messages
    assert "variable '/pairs' is left out" in messages
    assert list(store.group.arrays) == ["ok"]
    assert_values_equal_h5py(store, h5_path)


def test_compact_layout_is_skipped(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple((4,))
        dsid = h5py.h5d.create(f.id, b"compact", h5py.h5t.NATIVE_INT32, space, dcpl=dcpl)
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.arange(4, dtype="i4"))

    _, dmrpp = make(tmp_path, build)
    with pytest.warns(VariableSkippedWarning, match=r"variable '/compact' is left out: .*compact"):
        parse(dmrpp)


def test_missing_chunks_without_fill_value_are_skipped(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        f.create_dataset("sparse", shape=(4,), chunks=(2,), dtype="i4")[0:2] = 1

    _, dmrpp = make(tmp_path, build)
    dmrpp.write_text(dmrpp.read_text().replace('fillValue="0"', ""))
    with pytest.warns(VariableSkippedWarning, match=r"'/sparse' is left out: .*no fillValue"):
        store = parse(dmrpp)
    assert "sparse" not in store.group.arrays


def test_href_resolution_and_override(tmp_path: Path) -> None:
    def build(f: h5py.File) -> None:
        f.create_dataset("a", data=np.arange(6.0), chunks=(3,), compression="gzip")

    h5_path, dmrpp = make(tmp_path, build, href="data.h5")  # relative to the DMR++
    assert_values_equal_h5py(parse(dmrpp), h5_path)

    _, dmrpp = make(tmp_path, build, href="OPeNDAP_DMRpp_DATA_ACCESS_URL")  # Hyrax placeholder
    store = parse(dmrpp)
    assert store.group["a"].manifest.used_paths() == [h5_path.as_uri()]

    moved = tmp_path / "moved.h5"
    moved.write_bytes(h5_path.read_bytes())
    store = parse(dmrpp, data_url=str(moved))
    assert store.group["a"].manifest.used_paths() == [moved.as_uri()]
    assert_values_equal_h5py(store, moved)

    odd = tmp_path / "sidecar.xml"
    odd.write_text(dmrpp.read_text())
    with pytest.raises(ParserError, match=r"sidecar\.xml names no data file.*data_url"):
        parse(odd)


def test_remote_document_and_data(tmp_path: Path) -> None:
    from obstore.store import MemoryStore

    def build(f: h5py.File) -> None:
        f.create_dataset(
            "a",
            data=np.arange(12, dtype="i2").reshape(3, 4),
            chunks=(2, 2),
            shuffle=True,
            compression="gzip",
        )

    h5_path, dmrpp = make(tmp_path, build, href="memory://bucket/data.h5")
    mem = MemoryStore()
    mem.put("data.h5", h5_path.read_bytes())
    mem.put("data.h5.dmrpp", dmrpp.read_bytes())
    registry = ObjectStoreRegistry({"memory://bucket": mem})
    store = DMRPPParser()("memory://bucket/data.h5.dmrpp", registry)
    assert isinstance(detect_parser("memory://bucket/data.h5.dmrpp", registry), DMRPPParser)
    np.testing.assert_array_equal(
        zarr.open_array(store, path="a", mode="r")[...], np.arange(12).reshape(3, 4)
    )


def test_malformed_documents(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dmrpp"
    bad.write_text("<Dataset><unclosed></Dataset>")
    with pytest.raises(ParserError, match=r"bad\.dmrpp is not well-formed XML"):
        parse(bad)
    bad.write_text('<?xml version="1.0"?><Other xmlns:dmrpp="x"/>')
    with pytest.raises(ParserError, match="not a DMR\\+\\+ document"):
        parse(bad)

    def build(f: h5py.File) -> None:
        f.create_dataset("a", data=np.arange(6.0), chunks=(3,))

    _, dmrpp = make(tmp_path, build)
    dmrpp.write_text(
        dmrpp.read_text().replace('chunkPositionInArray="[3]"', 'chunkPositionInArray="[4]"')
    )
    with pytest.raises(
        ParserError, match=r"variable '/a' has a chunk position off its \(3,\) chunk grid"
    ):
        parse(dmrpp)
    _, dmrpp = make(tmp_path, build)
    dmrpp.write_text(dmrpp.read_text().replace('nBytes="24"', 'nBytes="20"', 1))
    with pytest.raises(
        ParserError, match=r"variable '/a' is unfiltered but a chunk's nBytes differs"
    ):
        parse(dmrpp)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ('chunkPositionInArray="[3]"', 'chunkPositionInArray="[x]"', "variable '/a' is malformed"),
        ('chunkPositionInArray="[3]"', 'chunkPositionInArray="[99999999999999999999]"', "'/a'"),
        ('offset="', 'offset="-', "variable '/a' is malformed"),
        ('size="6"', 'size="-6"', "size '-6', not a non-negative integer"),
        ('size="6"', 'size="six"', "size 'six', not a non-negative integer"),
        # 1e12 elements in 1e12 chunks of 1, two of them stored: refused before allocating
        ('size="6"', 'size="1000000000000"', "chunk grid"),
        ('encoding="ISO-8859-1"', 'encoding="ISO-8859-X"', "not well-formed XML"),
    ],
)
def test_malformed_numbers_raise_parser_errors(
    tmp_path: Path, old: str, new: str, match: str
) -> None:
    """Numbers a document gets wrong are ParserErrors naming the file (and the variable),
    never a ValueError/OverflowError or a huge allocation."""
    import tracemalloc

    def build(f: h5py.File) -> None:
        f.create_dataset("a", data=np.arange(6.0), chunks=(3,))

    _, dmrpp = make(tmp_path, build)
    text = dmrpp.read_text()
    if "1000000000000" in new:  # one-element chunks, so the grid is as big as the shape
        text = text.replace(">3</dmrpp:chunkDimensionSizes>", ">1</dmrpp:chunkDimensionSizes>")
        text = text.replace('nBytes="24"', 'nBytes="8"').replace("[3]", "[1]")
    assert old in text
    dmrpp.write_text(text.replace(old, new, 1))
    tracemalloc.start()
    try:
        with pytest.raises(ParserError, match=match) as info:
            parse(dmrpp)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(dmrpp) in str(info.value)
    assert peak < 64 << 20


@pytest.mark.network
@pytest.mark.parametrize("big", [False, True])
def test_over_http_one_request_per_document(tmp_path: Path, http_server: Any, big: bool) -> None:
    """The document in one ranged GET (its size comes with it, no HEAD); a document over the
    1 MiB first read in two. The data file is never touched. Values equal h5py's."""
    from obstore.store import HTTPStore

    def build(f: h5py.File) -> None:
        f.create_dataset("a", data=np.arange(12, dtype="i2").reshape(3, 4), chunks=(2, 2))
        if big:  # 1.5 MiB of attribute text in the document
            for i in range(48):
                f["a"].attrs[f"note_{i}"] = "x" * 32768

    h5_path, dmrpp = make(tmp_path, build)
    served = http_server.mkdir()
    (served / "data.h5").write_bytes(h5_path.read_bytes())
    (served / "data.h5.dmrpp").write_text(dmrpp.read_text())
    registry = ObjectStoreRegistry(
        {http_server.url: HTTPStore.from_url(http_server.url, client_options={"allow_http": True})}
    )
    url = http_server.url_for(served / "data.h5.dmrpp")
    store = DMRPPParser(data_url=http_server.url_for(served / "data.h5"))(url, registry)
    requests, nbytes = http_served(http_server, served / "data.h5.dmrpp")
    size = (served / "data.h5.dmrpp").stat().st_size
    assert requests == (2 if big else 1)
    assert nbytes == size
    assert http_served(http_server, served / "data.h5") == (0, 0)
    np.testing.assert_array_equal(
        zarr.open_array(store, path="a", mode="r")[...], h5py.File(h5_path)["a"][...]
    )
