"""ZarrParser: values read through the ManifestStore equal zarr-python's reads of the original store."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, TransposeCodec, ZstdCodec

from tests._support import parser_call
from tests.conftest import real_files, requires_real_data
from virtualizarr.errors import ParserError, UnsupportedFeatureError, VariableSkippedWarning
from virtualizarr.manifests import ManifestArray
from virtualizarr.parsers import ZarrParser, detect_parser
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore
from virtualizarr.testing.ground_truth import assert_values_match, ground_truth, real_file

# fixed-width bytes/strings and structs have no finished Zarr v3 spec; zarr-python says so
pytestmark = [
    pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning"),
    # zarr.consolidate_metadata on a v3 store says consolidation is not in the v3 spec yet
    pytest.mark.filterwarnings("ignore:Consolidated metadata is currently not part:UserWarning"),
]


# -- helpers ---------------------------------------------------------------------------------


parse = parser_call(ZarrParser)


def parse_skipping(path: Path) -> tuple[ManifestStore, list[str]]:
    """Parse a store some of whose arrays are skipped: the store, and the warnings' sorted texts."""
    with pytest.warns(VariableSkippedWarning) as record:
        store = parse(path)
    return store, sorted(str(w.message) for w in record)


def arrays_of(group: zarr.Group) -> dict[str, np.ndarray]:
    """Every array below ``group`` by path, read in full."""
    return {path: arr[...] for path, arr in _walk(group, "")}


def _walk(group: zarr.Group, prefix: str) -> list[tuple[str, zarr.Array]]:
    out = []
    for name, node in group.members():
        path = f"{prefix}{name}"
        if isinstance(node, zarr.Array):
            out.append((path, node))
        else:
            out.extend(_walk(node, path + "/"))
    return out


def assert_same_values(
    store: ManifestStore, original: str | Path, skip: tuple[str, ...] = ()
) -> None:
    """zarr-python reads the same arrays, dtypes and values through the store and the original."""
    got = arrays_of(zarr.open_group(store, mode="r", zarr_format=3))
    want = arrays_of(zarr.open_group(str(original), mode="r", use_consolidated=False))
    for name in skip:
        want.pop(name)
    assert sorted(got) == sorted(want)
    for name, values in want.items():
        assert got[name].shape == values.shape, name
        assert _same_dtype(got[name].dtype, values.dtype), (name, got[name].dtype, values.dtype)
        np.testing.assert_array_equal(got[name], values, err_msg=name, strict=False)


def _same_dtype(a: np.dtype, b: np.dtype) -> bool:
    """Equal up to byte order (zarr-python reads v3 data in native order)."""
    if a == b:
        return True
    try:
        return a.newbyteorder("=") == b.newbyteorder("=")
    except TypeError:  # StringDType has no byte order
        return False


def write(path: Path, name: str, data: np.ndarray, **kwargs: Any) -> zarr.Array:
    """Write ``data`` as array ``name`` of the group at ``path`` (created if needed)."""
    group = zarr.open_group(str(path), mode="a", zarr_format=kwargs.pop("zarr_format", 2))
    arr = group.create_array(
        name, shape=data.shape, dtype=kwargs.pop("dtype", data.dtype), **kwargs
    )
    arr[...] = data
    return arr


RNG = np.random.default_rng(42)
FLOATS = (RNG.standard_normal((13, 7)) * 100).astype("<f8")
INTS = RNG.integers(-1000, 1000, size=(13, 7)).astype("<i4")


# -- real stores ---------------------------------------------------------------------------------


@requires_real_data
@pytest.mark.parametrize("rel", real_files("zarr"))
def test_real_store_matches_ground_truth(rel: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VariableSkippedWarning)
        store = parse(real_file(rel))
    skipped = [str(w.message) for w in caught if issubclass(w.category, VariableSkippedWarning)]
    group = zarr.open_group(store, mode="r", zarr_format=3)
    original = (
        zarr.open_group(str(real_file(rel)), mode="r", use_consolidated=False)
        if not skipped
        else None
    )
    checked = 0
    for name, record in ground_truth()[rel]["result"]["arrays"].items():
        # zarr-python could not open it when the ground truth was made
        if "open_error" in record and record["metadata"].get("dtype") == "|O":
            assert any(repr(name) in s and "json2" in s for s in skipped), skipped
            continue
        values = group[name][...]
        if "raw" in record:
            is_text = values.dtype.kind in "UT"
            # ground_truth.json hashes fixed/variable-width strings in an undocumented way:
            # those are compared with zarr-python below, and by shape and count here
            assert_values_match(
                values.astype(object) if is_text else values,
                record["raw"],
                name=name,
                exact=not is_text,
            )
        if original is not None:
            np.testing.assert_array_equal(values, original[name][...], err_msg=name)
        checked += 1
    assert checked


@requires_real_data
def test_real_v2_json2_object_array_is_skipped_with_a_warning() -> None:
    rel = "zarr/zarrita_v2_data.zarr"
    with pytest.warns(
        VariableSkippedWarning,
        match=r"'1d.contiguous.json2.O' of Zarr store .*zarrita_v2_data.zarr: object dtype encoded with 'json2'",
    ):
        store = parse(real_file(rel))
    assert "1d.contiguous.json2.O" not in store.group.arrays
    # every other array of the store, incl. the nested group, equals zarr-python's read
    got = arrays_of(zarr.open_group(store, mode="r", zarr_format=3))
    original = zarr.open_group(str(real_file(rel)), mode="r", use_consolidated=False)
    for name, values in got.items():
        np.testing.assert_array_equal(values, original[name][...], err_msg=name)


@requires_real_data
def test_real_nczarr_null_fill_value_with_every_chunk_present() -> None:
    """fill_value null is harmless when every chunk exists: the bytes are the values."""
    path = real_file("zarr/nczarr_ref_byte_fill_value_null.zarr")
    store = parse(path)
    arr = store.group["byt"]
    assert isinstance(arr, ManifestArray)
    assert arr.metadata.dimension_names == ("_Anonymous_Dim_20", "_Anonymous_Dim_20")
    assert "_ARRAY_DIMENSIONS" not in arr.metadata.attributes
    raw = np.frombuffer((path / "byt" / "0.0").read_bytes(), dtype="u1").reshape(20, 20)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["byt"][...], raw)


@requires_real_data
def test_real_references_are_whole_chunk_objects() -> None:
    path = real_file("zarr/zarr_implementations_zarr-python_v2.zarr")
    arr = parse(path).group["gzip"]
    assert isinstance(arr, ManifestArray)
    assert arr.manifest.shape_chunk_grid == (6, 6, 3)
    entry = arr.manifest.dict()["5.5.2"]
    chunk_file = path / "gzip" / "5.5.2"
    assert entry == {"path": chunk_file.as_uri(), "offset": 0, "length": chunk_file.stat().st_size}
    assert [c.to_dict()["name"] for c in arr.codecs] == ["bytes", "gzip"]


@requires_real_data
def test_real_v3_consolidated_and_spaces_in_names() -> None:
    path = real_file("zarr/zarrita_v3_data.zarr")
    store = parse(path)
    assert store.group["consolidated"].attributes == {"answer": 42}
    assert set(store.group["consolidated/nested"].arrays) == {"1d.i2"}
    assert store.group["my group with spaces"].attributes == {
        "description": "A group with spaces in the name"
    }
    sub = parse(path, group="consolidated/nested")
    np.testing.assert_array_equal(
        zarr.open_group(sub, mode="r")["1d.i2"][...],
        zarr.open_array(str(path / "consolidated/nested/1d.i2"), mode="r")[...],
    )


@requires_real_data
@pytest.mark.parametrize("rel", real_files("zarr"))
def test_real_store_is_detected(rel: str) -> None:
    assert isinstance(detect_parser(str(real_file(rel)), ObjectStoreRegistry()), ZarrParser)


# -- Zarr v2 stores written by zarr-python -------------------------------------------------------

V2_COMPRESSORS = {
    "none": None,
    "blosc-lz4-shuffle": numcodecs.Blosc(cname="lz4", shuffle=numcodecs.Blosc.SHUFFLE),
    "blosc-zstd-bitshuffle": numcodecs.Blosc(cname="zstd", shuffle=numcodecs.Blosc.BITSHUFFLE),
    "blosc-autoshuffle": numcodecs.Blosc(cname="blosclz", shuffle=numcodecs.Blosc.AUTOSHUFFLE),
    "zlib": numcodecs.Zlib(level=3),
    "gzip": numcodecs.GZip(level=5),
    "zstd": numcodecs.Zstd(level=1),
    "zstd-checksum": numcodecs.Zstd(level=1, checksum=True),
    "lz4": numcodecs.LZ4(),
    "bz2": numcodecs.BZ2(),
    "lzma": numcodecs.LZMA(),
}


@pytest.mark.parametrize("name", V2_COMPRESSORS)
@pytest.mark.parametrize("dtype", ["<f8", ">f4", "<i4", ">i2", "u1"])
def test_v2_compressors(tmp_path: Path, name: str, dtype: str) -> None:
    write(
        tmp_path / "s.zarr",
        "a",
        FLOATS.astype(dtype),
        chunks=(4, 3),
        compressors=V2_COMPRESSORS[name],
    )
    assert_same_values(parse(tmp_path / "s.zarr"), tmp_path / "s.zarr")


V2_FILTERS = {
    "delta": ("<i4", [numcodecs.Delta(dtype="<i4")]),
    "delta-astype": ("<i4", [numcodecs.Delta(dtype="<i4", astype="<i8")]),
    "delta-astype-big": ("<i4", [numcodecs.Delta(dtype="<i4", astype=">i8")]),
    "shuffle": ("<f8", [numcodecs.Shuffle(elementsize=8)]),
    "delta+shuffle": ("<i4", [numcodecs.Delta(dtype="<i4"), numcodecs.Shuffle(elementsize=4)]),
    "fixedscaleoffset": (
        "<f8",
        [numcodecs.FixedScaleOffset(offset=0, scale=10, dtype="<f8", astype="<i4")],
    ),
    "fixedscaleoffset-big": (
        ">f8",
        [numcodecs.FixedScaleOffset(offset=5, scale=100, dtype=">f8", astype=">i4")],
    ),
    "bitround": ("<f4", [numcodecs.BitRound(keepbits=5)]),
    "quantize": ("<f8", [numcodecs.Quantize(digits=2, dtype="<f8")]),
    "astype": ("<f8", [numcodecs.AsType(encode_dtype="<f4", decode_dtype="<f8")]),
}


@pytest.mark.parametrize("name", V2_FILTERS)
@pytest.mark.parametrize("order", ["C", "F"])
def test_v2_filters(tmp_path: Path, name: str, order: str) -> None:
    dtype, filters = V2_FILTERS[name]
    data = (INTS if dtype.endswith("i4") else FLOATS).astype(dtype)
    compressor = numcodecs.Blosc(cname="lz4", shuffle=-1) if order == "F" else numcodecs.Zlib(1)
    write(
        tmp_path / "s.zarr",
        "a",
        data,
        chunks=(4, 3),
        filters=filters,
        compressors=compressor,
        order=order,
    )
    store = parse(tmp_path / "s.zarr")
    assert_same_values(store, tmp_path / "s.zarr")
    names = [c.to_dict()["name"] for c in store.group["a"].codecs]
    assert names[0] == ("transpose" if order == "F" else names[0])


def test_v2_filter_output_byte_order_sets_the_bytes_codec(tmp_path: Path) -> None:
    """delta with astype '>i8' stores big-endian int64: the serializer must say big."""
    _dtype, filters = V2_FILTERS["delta-astype-big"]
    write(tmp_path / "s.zarr", "a", INTS, chunks=(4, 3), filters=filters, compressors=None)
    arr = parse(tmp_path / "s.zarr").group["a"]
    assert [c.to_dict() for c in arr.codecs][1] == {
        "name": "bytes",
        "configuration": {"endian": "big"},
    }


def test_v2_f_order_nested_separator_big_endian_3d(tmp_path: Path) -> None:
    data = RNG.standard_normal((7, 9, 5)).astype(">f8")
    write(
        tmp_path / "s.zarr",
        "a",
        data,
        chunks=(3, 4, 2),
        order="F",
        chunk_key_encoding={"name": "v2", "separator": "/"},
        compressors=numcodecs.GZip(1),
    )
    assert (tmp_path / "s.zarr" / "a" / "2" / "2" / "2").is_file()  # nested chunk keys
    store = parse(tmp_path / "s.zarr")
    assert_same_values(store, tmp_path / "s.zarr")
    assert store.group["a"].codecs[0] == TransposeCodec(order=(2, 1, 0))


@pytest.mark.parametrize(
    "dtype",
    ["|b1", "<c16", ">c8", "<M8[ns]", ">m8[s]", "<U6", ">U3", "|S5", "<f2", ">u8", "<i8"],
)
def test_v2_dtypes(tmp_path: Path, dtype: str) -> None:
    dt = np.dtype(dtype)
    if dt.kind in "US":
        data = np.array(["a", "bc", "", "ü" if dt.kind == "U" else "d", "xyz", "q"] * 5)[
            :26
        ].astype(dt)
    elif dt.kind in "Mm":
        data = np.arange(26).astype(dt)
    else:
        data = RNG.integers(0, 2 if dt.kind == "b" else 100, 26).astype(dt)
    write(tmp_path / "s.zarr", "a", data, chunks=(5,), compressors=numcodecs.Zstd(1))
    assert_same_values(parse(tmp_path / "s.zarr"), tmp_path / "s.zarr")


@pytest.mark.parametrize("fields", [[("a", "<i4"), ("b", "<f8")], [("a", ">i4"), ("b", ">f8")]])
def test_v2_structured_dtype_with_one_byte_order(tmp_path: Path, fields: list) -> None:
    data = np.zeros(9, dtype=fields)
    data["a"], data["b"] = np.arange(9), np.arange(9) / 7
    write(tmp_path / "s.zarr", "a", data, chunks=(4,), compressors=None)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # zarr: "Missing 'endian' for structured dtype"
        got = zarr.open_group(parse(tmp_path / "s.zarr"), mode="r")["a"][...]
    assert got.tolist() == data.tolist()


def test_v2_structured_dtype_with_mixed_byte_orders_is_skipped(tmp_path: Path) -> None:
    data = np.zeros(4, dtype=[("a", ">i4"), ("b", "<f8")])
    write(tmp_path / "s.zarr", "a", data, chunks=(4,), compressors=None)
    write(tmp_path / "s.zarr", "ok", INTS, chunks=(5, 5))
    with pytest.warns(
        VariableSkippedWarning, match=r"array 'a' of Zarr store .*s.zarr: .*mix byte orders"
    ):
        store = parse(tmp_path / "s.zarr")
    assert list(store.group.arrays) == ["ok"]


def test_v2_vlen_strings(tmp_path: Path) -> None:
    data = np.array(["", "a", "bb", "ccc€", "d" * 50, "e", "f"], dtype=object)
    write(tmp_path / "s.zarr", "s", data, dtype=str, chunks=(3,))
    store = parse(tmp_path / "s.zarr")
    assert next(c.to_dict()["name"] for c in store.group["s"].codecs) == "vlen-utf8"
    assert zarr.open_group(store, mode="r")["s"][...].tolist() == data.tolist()


def test_v2_missing_chunks_read_as_fill_value(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=2)
    arr = group.create_array(
        "a",
        shape=(10, 10),
        chunks=(3, 3),
        dtype="<f4",
        fill_value=np.nan,
        compressors=numcodecs.Zlib(1),
    )
    arr[0:3, 3:6] = 1.5
    arr[9, 9] = 2.0
    store = parse(tmp_path / "s.zarr")
    manifest = store.group["a"].manifest
    assert len(manifest) == 2
    assert manifest.missing.sum() == 14
    assert_same_values(store, tmp_path / "s.zarr")


def _set_json(path: Path, **changes: Any) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_v2_null_fill_value(tmp_path: Path) -> None:
    """Present chunks are exact; an array with missing chunks (undefined values) is skipped."""
    write(tmp_path / "s.zarr", "full", INTS, chunks=(5, 5))
    part = write(tmp_path / "s.zarr", "part", np.zeros((4, 4), "<i4"), chunks=(2, 2), fill_value=7)
    part[:2, :2] = 1  # zeros equal to... nothing: fill 7, so every chunk was written
    (tmp_path / "s.zarr" / "part" / "1.1").unlink()
    for name in ("full", "part"):
        _set_json(tmp_path / "s.zarr" / name / ".zarray", fill_value=None)
    with pytest.warns(
        VariableSkippedWarning, match=r"'part' .*fill_value is null and 1 of 4 chunks are missing"
    ):
        store = parse(tmp_path / "s.zarr")
    assert list(store.group.arrays) == ["full"]
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["full"][...], INTS)


def test_v2_codecs_v3_cannot_express_are_skipped(tmp_path: Path) -> None:
    for name in ("unknown", "order", "ok"):
        write(tmp_path / "s.zarr", name, INTS, chunks=(5, 5), compressors=numcodecs.Zlib(1))
    _set_json(tmp_path / "s.zarr/unknown/.zarray", compressor={"id": "no-such-codec"})
    _set_json(
        tmp_path / "s.zarr/order/.zarray",
        filters=[{"id": "shuffle", "elementsize": 4}, {"id": "delta", "dtype": "<i4"}],
    )
    store, messages = parse_skipping(tmp_path / "s.zarr")
    assert "'order' of Zarr store" in messages[0]
    assert "'delta' works on arrays but follows a bytes filter" in messages[0]
    assert "'unknown' of Zarr store" in messages[1]
    assert "'no-such-codec' has no Zarr v3 equivalent" in messages[1]
    assert list(store.group.arrays) == ["ok"]


def test_v2_attributes_dimension_names_and_nested_groups(tmp_path: Path) -> None:
    root = zarr.open_group(
        str(tmp_path / "s.zarr"), mode="w", zarr_format=2, attributes={"title": "t"}
    )
    sub = root.create_group("a").create_group("b", attributes={"level": 2})
    arr = sub.create_array(
        "x",
        shape=(3, 4),
        dtype="<i2",
        chunks=(2, 2),
        attributes={"_ARRAY_DIMENSIONS": ["y", "x"], "units": "m"},
    )
    arr[...] = np.arange(12).reshape(3, 4)
    store = parse(tmp_path / "s.zarr")
    assert store.group.attributes == {"title": "t"}
    assert store.group["a/b"].attributes == {"level": 2}
    x = store.group["a/b/x"]
    assert x.metadata.dimension_names == ("y", "x")
    # xarray treats a v2 fill_value as _FillValue; the attribute keeps that meaning in v3
    assert x.metadata.attributes == {"units": "m", "_FillValue": 0}
    assert_same_values(store, tmp_path / "s.zarr")


def test_v2_consolidated_metadata_is_used(tmp_path: Path) -> None:
    """Like zarr-python, .zmetadata is trusted: an array added after consolidation is not seen."""
    write(tmp_path / "s.zarr", "a", INTS, chunks=(5, 5))
    zarr.consolidate_metadata(str(tmp_path / "s.zarr"))
    write(tmp_path / "s.zarr", "late", INTS, chunks=(5, 5))
    assert list(parse(tmp_path / "s.zarr").group.arrays) == ["a"]
    (tmp_path / "s.zarr" / ".zmetadata").unlink()
    assert sorted(parse(tmp_path / "s.zarr").group.arrays) == ["a", "late"]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_scalar_and_empty_arrays(tmp_path: Path, zarr_format: int) -> None:
    write(tmp_path / "s.zarr", "scalar", np.array(3.25), chunks=(), zarr_format=zarr_format)
    write(tmp_path / "s.zarr", "empty", np.zeros((0, 4)), chunks=(2, 2), zarr_format=zarr_format)
    store = parse(tmp_path / "s.zarr")
    assert store.group["scalar"].manifest.shape_chunk_grid == ()
    assert len(store.group["scalar"].manifest) == 1
    assert store.group["empty"].manifest.shape_chunk_grid == (0, 2)
    assert_same_values(store, tmp_path / "s.zarr")


def test_stray_files_and_chunks_outside_the_grid_are_ignored(tmp_path: Path) -> None:
    write(tmp_path / "s.zarr", "a", INTS, chunks=(5, 5))
    for stray in ("notes.txt", "0.0.0", "01.1", "9.9", "0.x", "99999999999999999999999.0", "-1.0"):
        (tmp_path / "s.zarr" / "a" / stray).write_bytes(b"junk")
    store = parse(tmp_path / "s.zarr")
    assert len(store.group["a"].manifest) == 6
    assert_same_values(store, tmp_path / "s.zarr")


def test_v2_single_array_store(tmp_path: Path) -> None:
    arr = zarr.create_array(
        str(tmp_path / "temp.zarr"), shape=(6,), chunks=(4,), dtype="<f4", zarr_format=2
    )
    arr[...] = np.arange(6)
    assert isinstance(detect_parser(str(tmp_path / "temp.zarr"), ObjectStoreRegistry()), ZarrParser)
    store = parse(tmp_path / "temp.zarr")
    assert list(store.group.arrays) == ["temp.zarr"]
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["temp.zarr"][...], np.arange(6))


# -- Zarr v3 stores written by zarr-python -------------------------------------------------------


V3_PIPELINES = {
    "raw": {"compressors": None},
    "big-endian-gzip": {"serializer": BytesCodec(endian="big"), "compressors": GzipCodec(level=3)},
    "zstd-crc32c": {"compressors": [ZstdCodec(level=2), Crc32cCodec()]},
    "blosc": {"compressors": BloscCodec(cname="lz4", shuffle="bitshuffle")},
    "delta": {
        "filters": [zarr.codecs.numcodecs.Delta(dtype="<f8")],
        "compressors": zarr.codecs.numcodecs.Zlib(level=1),
    },
    "transpose": {"filters": [TransposeCodec(order=(1, 0))], "compressors": GzipCodec()},
}


@pytest.mark.parametrize("name", V3_PIPELINES)
def test_v3_codecs(tmp_path: Path, name: str) -> None:
    write(tmp_path / "s.zarr", "a", FLOATS, chunks=(4, 3), zarr_format=3, **V3_PIPELINES[name])
    store = parse(tmp_path / "s.zarr")
    assert_same_values(store, tmp_path / "s.zarr")
    original = zarr.open_array(str(tmp_path / "s.zarr" / "a"), mode="r")
    assert store.group["a"].codecs == original.metadata.codecs


@pytest.mark.parametrize("separator", ["/", "."])
@pytest.mark.parametrize("encoding", ["default", "v2"])
def test_v3_chunk_key_encodings(tmp_path: Path, encoding: str, separator: str) -> None:
    cke = {"name": encoding, "separator": separator}
    write(tmp_path / "s.zarr", "a", INTS, chunks=(4, 3), zarr_format=3, chunk_key_encoding=cke)
    store = parse(tmp_path / "s.zarr")
    assert len(store.group["a"].manifest) == 12
    assert_same_values(store, tmp_path / "s.zarr")


def test_v3_sharded_ragged_and_partial_shards(tmp_path: Path) -> None:
    """Shards are the chunks; ragged edge shards, half-empty shards and missing shards read right."""
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=3)
    arr = group.create_array(
        "a",
        shape=(23, 17),
        chunks=(3, 2),
        shards=(6, 8),
        dtype="<i4",
        fill_value=-1,
        compressors=ZstdCodec(),
    )
    arr[0:6, 0:8] = INTS[:6, :7].repeat(2, axis=1)[:, :8]  # a full shard
    arr[7:9, 9:12] = 5  # part of a shard
    arr[20:23, 16:17] = 9  # the ragged corner shard
    store = parse(tmp_path / "s.zarr")
    a = store.group["a"]
    assert a.chunks == (6, 8)
    assert a.manifest.shape_chunk_grid == (4, 3)
    assert len(a.manifest) == 3
    assert a.codecs[0].to_dict()["name"] == "sharding_indexed"
    assert_same_values(store, tmp_path / "s.zarr")
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["a"][:, :], arr[:, :])


def test_v3_nested_groups_dimension_names_attributes_and_strings(tmp_path: Path) -> None:
    root = zarr.open_group(
        str(tmp_path / "s.zarr"), mode="w", zarr_format=3, attributes={"a": [1, 2]}
    )
    g = root.create_group("g1").create_group("g2", attributes={"deep": True})
    x = g.create_array(
        "x", shape=(5,), dtype="<u2", chunks=(2,), dimension_names=["t"], attributes={"units": "s"}
    )
    x[...] = np.arange(5)
    s = root.create_array("s", shape=(4,), dtype=str, chunks=(3,))
    s[...] = np.array(["ø", "", "bb", "c"])
    store = parse(tmp_path / "s.zarr")
    assert store.group.attributes == {"a": [1, 2]}
    assert store.group["g1/g2"].attributes == {"deep": True}
    assert store.group["g1/g2/x"].metadata.dimension_names == ("t",)
    assert store.group["g1/g2/x"].metadata.attributes == {"units": "s"}
    assert_same_values(store, tmp_path / "s.zarr")


def test_v3_consolidated_metadata_is_used(tmp_path: Path) -> None:
    write(tmp_path / "s.zarr", "a", INTS, chunks=(5, 5), zarr_format=3)
    zarr.consolidate_metadata(str(tmp_path / "s.zarr"))
    write(tmp_path / "s.zarr", "late", INTS, chunks=(5, 5), zarr_format=3)
    assert list(parse(tmp_path / "s.zarr").group.arrays) == ["a"]


def test_v3_unknown_codec_and_storage_transformer_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "s.zarr", "a", INTS, chunks=(5, 5), zarr_format=3)
    write(tmp_path / "s.zarr", "b", INTS, chunks=(5, 5), zarr_format=3)
    write(tmp_path / "s.zarr", "c", INTS, chunks=(5, 5), zarr_format=3)
    doc = json.loads((tmp_path / "s.zarr/a/zarr.json").read_text())
    doc["codecs"].append({"name": "not.a.codec", "configuration": {}})
    (tmp_path / "s.zarr/a/zarr.json").write_text(json.dumps(doc))
    _set_json(
        tmp_path / "s.zarr/b/zarr.json", storage_transformers=[{"name": "chunk-manifest-json"}]
    )
    store, messages = parse_skipping(tmp_path / "s.zarr")
    assert "'a' of Zarr store" in messages[0]
    assert "not.a.codec" in messages[0]
    assert "'b' of Zarr store" in messages[1]
    assert "storage transformers" in messages[1]
    assert list(store.group.arrays) == ["c"]


# -- options, URLs, detection, errors ------------------------------------------------------------


def test_group_and_drop_variables(tmp_path: Path) -> None:
    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=2)
    for path in ("x", "g/x", "g/y", "g/h/x", "g/h/z"):
        write(tmp_path / "s.zarr", path, INTS, chunks=(5, 5))
    assert root is not None
    sub = parse(tmp_path / "s.zarr", group="g", drop_variables=["h/z"])
    assert sorted(sub.group.arrays) == ["x", "y"]
    assert list(sub.group["h"].arrays) == ["x"]
    by_name = parse(tmp_path / "s.zarr", drop_variables=["x"])
    assert list(by_name.group.arrays) == []
    assert list(by_name.group["g"].arrays) == ["y"]
    assert list(by_name.group["g/h"].arrays) == ["z"]
    with pytest.raises(ParserError, match="not a Zarr store"):
        parse(tmp_path / "s.zarr", group="nope")


def test_not_a_zarr_store(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "file.txt").write_text("hi")
    with pytest.raises(
        ParserError, match=r"d is not a Zarr store: found no zarr.json, .zgroup or .zarray"
    ):
        parse(tmp_path / "d")


def test_bad_json_is_a_parser_error(tmp_path: Path) -> None:
    write(tmp_path / "s.zarr", "a", INTS, chunks=(5, 5))
    (tmp_path / "s.zarr" / "a" / ".zarray").write_text("{not json")
    with pytest.raises(ParserError, match=r"a/.zarray is not valid JSON"):
        parse(tmp_path / "s.zarr")


def _copy_to_memory(src: Path) -> Any:
    import obstore
    from obstore.store import MemoryStore

    mem = MemoryStore()
    for f in src.rglob("*"):
        if f.is_file():
            obstore.put(mem, f"data/{src.name}/{f.relative_to(src).as_posix()}", f.read_bytes())
    return mem


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_memory_store_under_a_custom_prefix(tmp_path: Path, zarr_format: int) -> None:
    write(tmp_path / "s.zarr", "a", FLOATS, chunks=(4, 3), zarr_format=zarr_format)
    write(tmp_path / "s.zarr", "g/b", INTS, chunks=(5, 5), zarr_format=zarr_format)
    registry = ObjectStoreRegistry({"memory://bucket": _copy_to_memory(tmp_path / "s.zarr")})
    url = "memory://bucket/data/s.zarr"
    assert isinstance(detect_parser(url, registry), ZarrParser)
    store = parse(url, registry)
    assert store.group["a"].manifest.dict()["0.0"]["path"] == f"{url}/a/" + (
        "0.0" if zarr_format == 2 else "c/0/0"
    )
    assert_same_values(store, tmp_path / "s.zarr")


def test_local_store_registered_under_a_custom_prefix(tmp_path: Path) -> None:
    from obstore.store import LocalStore

    write(tmp_path / "s.zarr", "a", FLOATS, chunks=(4, 3), zarr_format=3, shards=(8, 6))
    registry = ObjectStoreRegistry({"archive://disk/root": LocalStore(str(tmp_path))})
    store = parse("archive://disk/root/s.zarr", registry)
    assert store.group["a"].manifest.paths[0, 0] == "archive://disk/root/s.zarr/a/c/0/0"
    assert_same_values(store, tmp_path / "s.zarr")


@pytest.mark.s3
def test_s3_store(tmp_path: Path, s3_server: Any) -> None:
    write(tmp_path / "s.zarr", "a", FLOATS, chunks=(4, 3), compressors=numcodecs.Zlib(1))
    bucket = s3_server.make_bucket()
    for f in (tmp_path / "s.zarr").rglob("*"):
        if f.is_file():
            s3_server.put(
                bucket, f"z/s.zarr/{f.relative_to(tmp_path / 's.zarr').as_posix()}", f.read_bytes()
            )
    registry = ObjectStoreRegistry({f"s3://{bucket}": s3_server.store(bucket)})
    store = parse(f"s3://{bucket}/z/s.zarr", registry)
    assert_same_values(store, tmp_path / "s.zarr")


@pytest.mark.network
def test_http_store_cannot_be_listed(http_server: Any) -> None:
    root = http_server.mkdir()
    write(root / "s.zarr", "a", INTS, chunks=(5, 5))
    zarr.consolidate_metadata(str(root / "s.zarr"))
    with pytest.raises(UnsupportedFeatureError, match="does not support listing"):
        parse(http_server.url_for(root / "s.zarr"))


def test_one_listing_per_array(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk sizes come from one listing of each array's prefix, not one request per chunk."""
    import obstore

    for name in ("a", "b", "c"):
        write(tmp_path / "s.zarr", name, INTS, chunks=(1, 1), zarr_format=3)
    zarr.consolidate_metadata(str(tmp_path / "s.zarr"))
    calls: list[str] = []
    real_list, real_head = obstore.list, obstore.head
    monkeypatch.setattr(
        obstore,
        "list",
        lambda store, prefix=None, **kw: (
            calls.append(prefix) or real_list(store, prefix=prefix, **kw)
        ),
    )
    monkeypatch.setattr(
        obstore, "head", lambda *a, **kw: calls.append("HEAD") or real_head(*a, **kw)
    )
    store = parse(tmp_path / "s.zarr")
    assert sorted(p.rsplit("/", 1)[-1] for p in calls) == ["a", "b", "c"]
    assert len(store.group["a"].manifest) == 13 * 7


def test_open_virtual_dataset_detects_zarr(tmp_path: Path) -> None:
    from virtualizarr.xarray import open_virtual_dataset

    root = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=2)
    t = root.create_array(
        "t", shape=(13,), dtype="<i4", chunks=(5,), attributes={"_ARRAY_DIMENSIONS": ["t"]}
    )
    t[...] = np.arange(13)
    v = root.create_array(
        "v", shape=(13, 7), dtype="<f8", chunks=(5, 5), attributes={"_ARRAY_DIMENSIONS": ["t", "x"]}
    )
    v[...] = FLOATS
    ds = open_virtual_dataset(str(tmp_path / "s.zarr"), loadable_variables=[])
    assert isinstance(ds["v"].data, ManifestArray)
    assert ds["v"].dims == ("t", "x")
    real = xr.open_zarr(parse(tmp_path / "s.zarr"), consolidated=False, zarr_format=3)
    xr.testing.assert_identical(
        real.load(), xr.open_zarr(str(tmp_path / "s.zarr"), consolidated=False).load()
    )


@pytest.mark.parametrize("dtype", ["<i2", ">f4", "<f8", "<u4"])
def test_xarray_written_v2_decodes_like_the_original(tmp_path: Path, dtype: str) -> None:
    """xarray stores _FillValue/scale_factor in a v2 store's fill_value/attrs: same CF decoding."""
    values = FLOATS.copy()
    values[2, 3] = np.nan
    ds = xr.Dataset({"v": (("y", "x"), values)}, coords={"y": np.arange(13) * 10})
    encoding = {"v": {"dtype": dtype, "_FillValue": 99, "chunks": (5, 4)}}
    if dtype[1] in "iu":
        encoding["v"].update(scale_factor=0.5, add_offset=-3.0)
    ds.to_zarr(tmp_path / "x.zarr", zarr_format=2, encoding=encoding, consolidated=True)
    virtual = xr.open_zarr(parse(tmp_path / "x.zarr"), consolidated=False, zarr_format=3)
    original = xr.open_zarr(tmp_path / "x.zarr", consolidated=True)
    xr.testing.assert_identical(virtual.load(), original.load())
    assert np.isnan(virtual["v"].values[2, 3])


def test_parser_repr_and_string_drop_variables() -> None:
    p = ZarrParser(group="/a/b/", drop_variables="x")
    assert p.group == "a/b"
    assert p.drop_variables == frozenset({"x"})
    assert repr(p) == "ZarrParser(group='a/b', drop_variables=['x'])"


def test_copy_of_real_store_with_missing_chunk(tmp_path: Path) -> None:
    """Deleting a chunk object makes it a missing chunk (fill value), as zarr-python reads it."""
    write(
        tmp_path / "s.zarr",
        "a",
        FLOATS,
        chunks=(4, 3),
        compressors=numcodecs.Blosc(),
        fill_value=-9.5,
    )
    (tmp_path / "s.zarr" / "a" / "1.1").unlink()
    shutil.copytree(tmp_path / "s.zarr", tmp_path / "copy.zarr")
    store = parse(tmp_path / "copy.zarr")
    got = zarr.open_group(store, mode="r")["a"][...]
    assert (got[4:8, 3:6] == -9.5).all()
    assert_same_values(store, tmp_path / "s.zarr")


def test_arrays_without_dimension_names_get_phony_names(tmp_path: Path) -> None:
    """v2 arrays without _ARRAY_DIMENSIONS and v3 arrays without dimension_names open in
    xarray with one phony_dim_<n> per distinct length in the group; values equal zarr's."""
    from virtualizarr import open_virtual_dataset

    for fmt in (2, 3):
        path = tmp_path / f"s{fmt}.zarr"
        write(path, "a", FLOATS, zarr_format=fmt, chunks=(5, 7))
        write(path, "b", INTS[:, :3], zarr_format=fmt, chunks=(13, 3))
        store = parse(path)
        assert store.group.arrays["a"].metadata.dimension_names == ("phony_dim_0", "phony_dim_1")
        assert store.group.arrays["b"].metadata.dimension_names == ("phony_dim_0", "phony_dim_2")
        assert_same_values(store, path)
        ds = open_virtual_dataset(str(path), loadable_variables=["b"])
        assert dict(ds.sizes) == {"phony_dim_0": 13, "phony_dim_1": 7, "phony_dim_2": 3}
        np.testing.assert_array_equal(ds["b"].values, zarr.open_array(str(path / "b"))[...])


def test_huge_sparse_grid_is_skipped_before_allocating(tmp_path: Path) -> None:
    """A .zarray whose shape is corrupt (1e5 x 1e5 grid of 1-element chunks, 1 chunk stored)
    is skipped with a warning naming the array, without allocating a 1e10-position manifest."""
    import tracemalloc

    path = tmp_path / "s.zarr"
    write(path, "ok", INTS, chunks=(13, 7))
    write(path, "bad", np.arange(4, dtype="<i2").reshape(2, 2), chunks=(1, 1))
    zarray = json.loads((path / "bad" / ".zarray").read_text())
    zarray["shape"] = [100_000, 100_000]
    (path / "bad" / ".zarray").write_text(json.dumps(zarray))
    tracemalloc.start()
    try:
        with pytest.warns(VariableSkippedWarning, match="'bad'.*chunk grid") as caught:
            store = parse(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(caught[0].message)
    assert peak < 64 << 20
    assert list(store.group.arrays) == ["ok"]
