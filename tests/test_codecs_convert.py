"""numcodecs (Zarr v2) <-> Zarr v3 codec translation: both directions describe the same bytes."""

from __future__ import annotations

import json
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    ShardingCodec,
    TransposeCodec,
    VLenUTF8Codec,
    ZstdCodec,
)
from zarr.storage import MemoryStore

from virtualizarr.codecs.convert import (
    V2Encoding,
    numcodecs_config_to_v3,
    serializer_for,
    v2_to_v3_codecs,
    v3_codecs_to_numcodecs,
    v3_codecs_to_v2,
)
from virtualizarr.errors import CodecNotSupportedError


def names(codecs: list[Any]) -> list[str]:
    return [c.to_dict()["name"] for c in codecs]


# -- v2 -> v3 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "dtype", "expected"),
    [
        ({"id": "gzip", "level": 3}, "<i4", GzipCodec(level=3)),
        ({"id": "zstd", "level": 2}, "<i4", ZstdCodec(level=2)),
        ({"id": "zstd", "level": 2, "checksum": True}, "<i4", ZstdCodec(level=2, checksum=True)),
        (
            {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0},
            "<f8",
            BloscCodec(typesize=8, cname="lz4", clevel=5, shuffle="shuffle", blocksize=0),
        ),
        (  # AUTOSHUFFLE: bit-shuffle for 1-byte items
            {"id": "blosc", "cname": "zstd", "clevel": 1, "shuffle": -1, "blocksize": 0},
            "u1",
            BloscCodec(typesize=1, cname="zstd", clevel=1, shuffle="bitshuffle", blocksize=0),
        ),
        (  # AUTOSHUFFLE: byte-shuffle otherwise
            {"id": "blosc", "cname": "zstd", "clevel": 1, "shuffle": -1, "blocksize": 0},
            "<i2",
            BloscCodec(typesize=2, cname="zstd", clevel=1, shuffle="shuffle", blocksize=0),
        ),
        ({"id": "vlen-utf8"}, "O", VLenUTF8Codec()),
    ],
    ids=lambda x: json.dumps(x) if isinstance(x, dict) else str(x),
)
def test_native_v3_codecs(config: dict, dtype: str, expected: Any) -> None:
    assert numcodecs_config_to_v3(config, dtype) == expected


@pytest.mark.parametrize(
    "config",
    [
        {"id": "zlib", "level": 1},
        {"id": "lz4", "acceleration": 1},
        {"id": "bz2", "level": 9},
        {"id": "shuffle", "elementsize": 4},
        {"id": "delta", "dtype": "<i4", "astype": "<i2"},
        {"id": "fixedscaleoffset", "offset": 1, "scale": 10, "dtype": "<f8", "astype": "<i2"},
        {"id": "crc32c"},
        {"id": "zstd", "level": 1, "checksum": False, "extra": 1},  # unknown key: keep numcodecs'
    ],
    ids=lambda c: c["id"],
)
def test_numcodecs_wrappers(config: dict) -> None:
    codec = numcodecs_config_to_v3(config, "<i4")
    conf = {k: v for k, v in config.items() if k != "id"}
    assert codec.to_dict() == {"name": f"numcodecs.{config['id']}", "configuration": conf}


def test_unknown_codec_and_missing_id() -> None:
    with pytest.raises(CodecNotSupportedError, match=r"'no-such-codec' has no Zarr v3 equivalent"):
        numcodecs_config_to_v3({"id": "no-such-codec"}, "<i4")
    with pytest.raises(CodecNotSupportedError, match="has no 'id'"):
        numcodecs_config_to_v3({"level": 1}, "<i4")
    with pytest.raises(CodecNotSupportedError, match="shuffle=7"):
        numcodecs_config_to_v3({"id": "blosc", "shuffle": 7}, "<i4")


def test_pipeline_order_and_serializer_byte_order() -> None:
    codecs = v2_to_v3_codecs(
        dtype="<i4",
        filters=[
            {"id": "delta", "dtype": "<i4", "astype": ">i2"},
            {"id": "shuffle", "elementsize": 2},
        ],
        compressor={"id": "zlib", "level": 1},
        order="F",
        ndim=3,
    )
    assert names(codecs) == [
        "transpose",
        "numcodecs.delta",
        "bytes",
        "numcodecs.shuffle",
        "numcodecs.zlib",
    ]
    assert codecs[0] == TransposeCodec(order=(2, 1, 0))
    assert codecs[2] == BytesCodec(endian="big")  # the delta output is what gets stored
    # 1-d F order is C order: no transpose
    assert names(v2_to_v3_codecs(dtype="<i4", order="F", ndim=1)) == ["bytes"]
    # blosc after an object codec sees bytes
    vlen = v2_to_v3_codecs(
        dtype="O", filters=[{"id": "vlen-utf8"}], compressor={"id": "blosc", "shuffle": 1}
    )
    assert names(vlen) == ["vlen-utf8", "blosc"]
    assert vlen[1].typesize == 1


def test_pipelines_v3_cannot_express() -> None:
    with pytest.raises(
        CodecNotSupportedError, match="'delta' works on arrays but follows a bytes filter"
    ):
        v2_to_v3_codecs(dtype="<i4", filters=[{"id": "shuffle"}, {"id": "delta", "dtype": "<i4"}])
    with pytest.raises(CodecNotSupportedError, match="order must be 'C' or 'F'"):
        v2_to_v3_codecs(dtype="<i4", order="K")


def test_serializer_for_structured_and_text() -> None:
    assert serializer_for([("a", "<i4"), ("b", "<f8")]) == BytesCodec(endian="little")
    assert serializer_for([("a", ">i4"), ("b", "S3")]) == BytesCodec(endian="big")
    assert serializer_for("|S4") == BytesCodec(endian=None)
    assert serializer_for(">U2") == BytesCodec(endian="big")
    with pytest.raises(CodecNotSupportedError, match="mix byte orders"):
        serializer_for([("a", ">i4"), ("b", "<f8")])


# -- v3 -> v2 --------------------------------------------------------------------------------


V3_PIPELINES: dict[str, dict[str, Any]] = {
    "bytes": {"compressors": None},
    "big-gzip": {"serializer": BytesCodec(endian="big"), "compressors": GzipCodec(level=1)},
    "blosc": {"compressors": BloscCodec(cname="zstd", shuffle="bitshuffle")},
    "zstd-crc32c": {"compressors": [ZstdCodec(level=1), Crc32cCodec()]},
    "delta-shuffle-zlib": {
        "filters": [zarr.codecs.numcodecs.Delta(dtype="<i8")],
        "compressors": [
            zarr.codecs.numcodecs.Shuffle(elementsize=8),
            zarr.codecs.numcodecs.Zlib(level=2),
        ],
    },
    "F-order": {"filters": [TransposeCodec(order=(1, 0))], "compressors": ZstdCodec()},
}


@pytest.mark.parametrize("name", V3_PIPELINES)
def test_v3_to_v2_reads_the_same_bytes(name: str) -> None:
    """Chunks written by zarr v3 read back identically as a Zarr v2 array with the translated metadata."""
    values = np.arange(70, dtype="<i8").reshape(7, 10) ** 2
    v3_store = MemoryStore()
    arr = zarr.create_array(
        v3_store, shape=values.shape, chunks=(3, 4), dtype=values.dtype, **V3_PIPELINES[name]
    )
    arr[...] = values
    enc = v3_codecs_to_v2(arr.metadata.codecs, ndim=2)
    dtype = (">" if enc.endian == "big" else "<") + "i8"
    zarray = {
        "zarr_format": 2,
        "shape": [7, 10],
        "chunks": [3, 4],
        "dtype": dtype,
        "fill_value": 0,
        "order": enc.order,
        "filters": enc.filters,
        "compressor": enc.compressor,
        "dimension_separator": ".",
    }
    v2_store = MemoryStore()
    v2_store._store_dict[".zarray"] = zarr.core.buffer.cpu.Buffer.from_bytes(
        json.dumps(zarray).encode()
    )
    for key, buf in v3_store._store_dict.items():
        if key.startswith("c/"):
            v2_store._store_dict[key[2:].replace("/", ".")] = buf
    np.testing.assert_array_equal(zarr.open_array(v2_store, mode="r", zarr_format=2)[...], values)


@pytest.mark.parametrize(
    ("filters", "compressor"),
    [
        (None, {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 2, "blocksize": 0}),
        (None, {"id": "zstd", "level": 3, "checksum": False}),
        (None, {"id": "gzip", "level": 1}),
        ([{"id": "delta", "dtype": "<i4", "astype": "<i2"}], {"id": "zlib", "level": 1}),
        (
            [{"id": "fixedscaleoffset", "offset": 0, "scale": 10, "dtype": "<f8", "astype": "<i4"}],
            None,
        ),
        ([{"id": "vlen-utf8"}], {"id": "lz4", "acceleration": 1}),
        ([{"id": "shuffle", "elementsize": 4}], {"id": "crc32c"}),
    ],
)
def test_v2_round_trip(filters: list | None, compressor: dict | None) -> None:
    dtype = "O" if filters and filters[0]["id"] == "vlen-utf8" else "<i4"
    codecs = v2_to_v3_codecs(dtype=dtype, filters=filters, compressor=compressor)
    assert v3_codecs_to_numcodecs(codecs) == (filters, compressor)
    # the numcodecs configs are real, instantiable codecs
    for conf in [*(filters or []), *([compressor] if compressor else [])]:
        numcodecs.get_codec(conf)


def test_v3_native_crc32c_is_numcodecs_crc32c() -> None:
    data = np.arange(100, dtype="u1").tobytes()
    v2 = v3_codecs_to_numcodecs([{"name": "bytes"}, {"name": "crc32c"}])[1]
    store = MemoryStore()
    arr = zarr.create_array(
        store, shape=(100,), chunks=(100,), dtype="u1", compressors=Crc32cCodec()
    )
    arr[...] = np.frombuffer(data, "u1")
    assert store._store_dict["c/0"].to_bytes() == bytes(numcodecs.get_codec(v2).encode(data))


def test_v3_to_v2_errors_and_shapes() -> None:
    with pytest.raises(CodecNotSupportedError, match="sharded array cannot be described"):
        v3_codecs_to_v2([ShardingCodec(chunk_shape=(2,))], ndim=1)
    with pytest.raises(CodecNotSupportedError, match=r"transpose with order \[1, 0, 2\]"):
        v3_codecs_to_v2([TransposeCodec(order=(1, 0, 2)), BytesCodec()], ndim=3)
    with pytest.raises(CodecNotSupportedError, match="use v3_codecs_to_v2"):
        v3_codecs_to_numcodecs([TransposeCodec(order=(1, 0)), BytesCodec()])
    with pytest.raises(CodecNotSupportedError, match=r"'my\.codec' has no Zarr v2"):
        v3_codecs_to_v2([{"name": "bytes"}, {"name": "my.codec", "configuration": {}}], ndim=1)
    # an identity transpose is plain C order; the short string form of a codec is accepted
    assert v3_codecs_to_v2([TransposeCodec(order=(0, 1)), "bytes"], ndim=2) == V2Encoding(
        "C", None, None, None
    )
    enc = v3_codecs_to_v2([BytesCodec(endian="big"), GzipCodec(level=2)], ndim=1)
    assert enc == V2Encoding("C", None, {"id": "gzip", "level": 2}, "big")
