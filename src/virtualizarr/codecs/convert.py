"""Translate between Zarr v2 (numcodecs) codec configs and Zarr v3 codec pipelines.

Zarr v2 describes an array's encoding as ``order`` + ``filters`` + ``compressor``
(numcodecs configs such as ``{"id": "zlib", "level": 1}``); Zarr v3 as one ordered
list of codecs: array->array, one array->bytes serializer, bytes->bytes. Both
directions must describe the *same bytes*, so two details matter:

* the ``bytes`` serializer's endianness is that of the dtype the last array->array
  codec *outputs* (``astype`` of delta / fixedscaleoffset...), not the array's dtype;
* blosc, gzip and zstd map to the native v3 codecs (same stream formats), everything
  else to zarr-python's ``numcodecs.<id>`` wrappers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    GzipCodec,
    TransposeCodec,
    VLenBytesCodec,
    VLenUTF8Codec,
    ZstdCodec,
)
from zarr.errors import UnknownCodecError
from zarr.registry import get_codec_class

from virtualizarr.errors import CodecNotSupportedError

__all__ = [
    "V2Encoding",
    "numcodecs_config_to_v3",
    "serializer_for",
    "v2_to_v3_codecs",
    "v3_codecs_to_numcodecs",
    "v3_codecs_to_v2",
]

_BLOSC_SHUFFLE = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}
_BLOSC_SHUFFLE_INV = {v: k for k, v in _BLOSC_SHUFFLE.items()}
# numcodecs filters whose encoded output has another dtype: config key holding it
_OUTPUT_DTYPE_KEY = {
    "delta": "astype",
    "fixedscaleoffset": "astype",
    "quantize": "astype",
    "astype": "encode_dtype",
}
_OBJECT_CODECS = {"vlen-utf8": VLenUTF8Codec, "vlen-bytes": VLenBytesCodec}


_OWN_PREFIX = "virtualizarr."


def numcodecs_config_to_v3(config: Mapping[str, Any], dtype: np.dtype | str) -> Any:
    """The Zarr v3 codec equivalent to one numcodecs (Zarr v2) codec config.

    ``dtype`` is the dtype of the data the codec receives when encoding (it sets
    blosc's ``typesize``; for ``shuffle=-1``, "auto", it picks bit- or byte-shuffle).

    >>> numcodecs_config_to_v3({"id": "zlib", "level": 1}, "<i2").to_dict()
    {'name': 'numcodecs.zlib', 'configuration': {'level': 1}}
    >>> numcodecs_config_to_v3({"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1,
    ...                         "blocksize": 0}, "<i2").to_dict()["configuration"]["typesize"]
    2
    """
    dtype = np.dtype(dtype)
    conf = {k: v for k, v in config.items() if k != "id"}
    codec_id = config.get("id")
    if not isinstance(codec_id, str):
        raise CodecNotSupportedError(f"Codec config {dict(config)!r} has no 'id'.")
    if codec_id == "blosc":
        shuffle = int(conf.get("shuffle", 1))
        if shuffle == -1:  # numcodecs AUTOSHUFFLE: bit-shuffle single bytes, else byte-shuffle
            shuffle = 2 if dtype.itemsize == 1 else 1
        if shuffle not in _BLOSC_SHUFFLE:
            raise CodecNotSupportedError(f"blosc shuffle={shuffle!r} is not one of -1, 0, 1, 2.")
        return BloscCodec(
            typesize=int(conf.get("typesize") or max(dtype.itemsize, 1)),
            cname=conf.get("cname", "lz4"),
            clevel=int(conf.get("clevel", 5)),
            shuffle=_BLOSC_SHUFFLE[shuffle],  # type: ignore[arg-type]
            blocksize=int(conf.get("blocksize", 0)),
        )
    if codec_id == "gzip":
        return GzipCodec(level=int(conf.get("level", 1)))
    if codec_id == "zstd" and set(conf) <= {"level", "checksum"}:
        return ZstdCodec(
            level=int(conf.get("level", 0)), checksum=bool(conf.get("checksum", False))
        )
    if codec_id in _OBJECT_CODECS:
        return _OBJECT_CODECS[codec_id]()
    # our own codecs carry one name in both worlds ("virtualizarr.pad"); numcodecs' are prefixed
    name = codec_id if codec_id.startswith(_OWN_PREFIX) else f"numcodecs.{codec_id}"
    try:
        cls = get_codec_class(name)
    except (KeyError, UnknownCodecError) as e:
        raise CodecNotSupportedError(
            f"The numcodecs codec {codec_id!r} has no Zarr v3 equivalent registered with "
            f"zarr-python (looked for {name!r})."
        ) from e
    return cls.from_dict({"name": name, "configuration": conf})


def _byte_orders(dtype: np.dtype) -> set[str]:
    """Byte orders (``"<"``/``">"``) of the multi-byte scalars inside ``dtype``."""
    dtype = dtype.base
    if dtype.names is not None:
        return set().union(*(_byte_orders(dtype.fields[n][0]) for n in dtype.names))  # type: ignore[index]
    if dtype.byteorder == "|" or dtype.kind == "S" or dtype.itemsize <= 1:
        return set()
    return {
        "<" if dtype.byteorder == "=" and np.little_endian else dtype.byteorder.replace("=", ">")
    }


def serializer_for(dtype: np.dtype | str) -> BytesCodec:
    """The ``bytes`` codec storing ``dtype`` as it is laid out in memory.

    Structured dtypes need one byte order for all their fields: Zarr v3 cannot record
    the byte order of a single field, so mixed ones raise :class:`CodecNotSupportedError`.

    >>> serializer_for(">f4").to_dict()
    {'name': 'bytes', 'configuration': {'endian': 'big'}}
    """
    dtype = np.dtype(dtype)
    orders = _byte_orders(dtype)
    if len(orders) > 1:
        raise CodecNotSupportedError(
            f"the fields of {dtype} mix byte orders; Zarr v3 records one byte order per array."
        )
    if not orders:
        return BytesCodec(endian=None)
    return BytesCodec(endian="big" if orders == {">"} else "little")


def _filter_output_dtype(config: Mapping[str, Any], dtype: np.dtype) -> np.dtype:
    """Dtype of what a numcodecs filter outputs when encoding ``dtype`` data."""
    key = _OUTPUT_DTYPE_KEY.get(config.get("id", ""))
    if key and config.get(key) is not None:
        return np.dtype(config[key])
    if config.get("id") == "packbits":
        return np.dtype("u1")
    return dtype


def v2_to_v3_codecs(
    *,
    dtype: np.dtype | str,
    filters: Sequence[Mapping[str, Any]] | None = None,
    compressor: Mapping[str, Any] | None = None,
    order: str = "C",
    ndim: int = 1,
) -> list[Any]:
    """The Zarr v3 codec pipeline for a Zarr v2 array's order, filters and compressor.

    ``order="F"`` becomes a leading ``transpose`` codec. Array->array filters come
    first; an object codec (``vlen-utf8``/``vlen-bytes``) or the ``bytes`` serializer
    (with the byte order of the last filter's output dtype) comes next; byte filters and
    the compressor follow. Raises :class:`CodecNotSupportedError` when a filter has no
    v3 equivalent or the v2 order cannot be expressed (an array filter after a byte filter).

    >>> [c.to_dict()["name"] for c in v2_to_v3_codecs(
    ...     dtype="<i2", filters=[{"id": "delta", "dtype": "<i2"}, {"id": "shuffle"}],
    ...     compressor={"id": "zlib", "level": 1})]
    ['numcodecs.delta', 'bytes', 'numcodecs.shuffle', 'numcodecs.zlib']
    """
    dtype = np.dtype(dtype)
    if order not in ("C", "F"):
        raise CodecNotSupportedError(f"Zarr v2 order must be 'C' or 'F', got {order!r}.")
    array_codecs: list[Any] = []
    if order == "F" and ndim > 1:
        array_codecs.append(TransposeCodec(order=tuple(range(ndim - 1, -1, -1))))
    serializer: Any = None
    byte_codecs: list[Any] = []
    current = dtype
    for conf in [*(filters or ()), *([compressor] if compressor else [])]:
        codec = numcodecs_config_to_v3(conf, current)
        if isinstance(codec, ArrayArrayCodec):
            if serializer is not None or byte_codecs:
                raise CodecNotSupportedError(
                    f"Filter {conf.get('id')!r} works on arrays but follows a bytes filter; "
                    "Zarr v3 cannot express that order."
                )
            array_codecs.append(codec)
            current = _filter_output_dtype(conf, current)
        elif isinstance(codec, ArrayBytesCodec):
            if serializer is not None or byte_codecs:
                raise CodecNotSupportedError(
                    f"Codec {conf.get('id')!r} turns arrays into bytes but data is already bytes here."
                )
            serializer = codec
            current = np.dtype("u1")  # what follows sees a byte stream
        elif isinstance(codec, BytesBytesCodec):
            if serializer is None:
                serializer = serializer_for(current)
            byte_codecs.append(codec)
        else:  # pragma: no cover - every zarr codec is one of the three kinds
            raise CodecNotSupportedError(f"Codec {conf.get('id')!r} is of an unknown kind.")
    if serializer is None:
        serializer = serializer_for(current)
    return [*array_codecs, serializer, *byte_codecs]


class V2Encoding(NamedTuple):
    """A Zarr v3 codec pipeline expressed as Zarr v2 metadata fields."""

    order: str
    """``"C"``, or ``"F"`` when the pipeline starts with a full-reversal transpose."""
    filters: list[dict[str, Any]] | None
    """numcodecs configs applied before the compressor (None when there are none)."""
    compressor: dict[str, Any] | None
    """numcodecs config of the last bytes->bytes codec (None when there is none)."""
    endian: str | None
    """Byte order of the ``bytes`` serializer (``"little"``, ``"big"``, None for 1-byte
    or object data). The v2 dtype string must carry it (``"<i2"``/``">i2"``)."""


def _codec_dict(codec: Any) -> dict[str, Any]:
    if isinstance(codec, str):  # the short form of a codec without configuration
        return {"name": codec, "configuration": {}}
    d = codec if isinstance(codec, Mapping) else codec.to_dict()
    return {"name": d["name"], "configuration": dict(d.get("configuration") or {})}


def _v3_to_numcodecs_config(d: dict[str, Any]) -> dict[str, Any]:
    name, conf = d["name"], d["configuration"]
    if name.startswith("numcodecs."):
        return {"id": name[len("numcodecs.") :], **conf}
    if name.startswith(_OWN_PREFIX):  # registered with numcodecs under the same id
        return {"id": name, **conf}
    if name == "blosc":
        shuffle = conf.get("shuffle", "shuffle")
        return {
            "id": "blosc",
            "cname": conf.get("cname", "zstd"),
            "clevel": conf.get("clevel", 5),
            "shuffle": _BLOSC_SHUFFLE_INV[shuffle] if isinstance(shuffle, str) else int(shuffle),
            "blocksize": conf.get("blocksize", 0),
        }
    if name == "gzip":
        return {"id": "gzip", "level": conf.get("level", 5)}
    if name == "zstd":
        return {
            "id": "zstd",
            "level": conf.get("level", 0),
            "checksum": conf.get("checksum", False),
        }
    if name == "crc32c":  # both append the little-endian CRC32C of the data
        return {"id": "crc32c", "location": "end"}
    if name in _OBJECT_CODECS:
        return {"id": name}
    raise CodecNotSupportedError(
        f"The Zarr v3 codec {name!r} has no Zarr v2 (numcodecs) equivalent"
        + (
            " (a sharded array cannot be described by Zarr v2 metadata)."
            if name == "sharding_indexed"
            else "."
        )
    )


def v3_codecs_to_v2(codecs: Iterable[Any], *, ndim: int) -> V2Encoding:
    """Zarr v2 order, filters and compressor for a Zarr v3 codec pipeline.

    ``codecs`` are zarr codec objects or their JSON dicts. A leading ``transpose`` that
    reverses all axes becomes ``order="F"``; any other transpose, ``sharding_indexed``
    and codecs without a numcodecs twin raise :class:`CodecNotSupportedError`.

    >>> v3_codecs_to_v2([{"name": "bytes", "configuration": {"endian": "big"}},
    ...                  {"name": "gzip", "configuration": {"level": 1}}], ndim=2)
    V2Encoding(order='C', filters=None, compressor={'id': 'gzip', 'level': 1}, endian='big')
    """
    dicts = [_codec_dict(c) for c in codecs]
    order = "C"
    if dicts and dicts[0]["name"] == "transpose":
        perm = tuple(dicts[0]["configuration"].get("order", ()))
        if perm == tuple(range(ndim - 1, -1, -1)):
            order = "F" if ndim > 1 else "C"
        elif perm != tuple(range(ndim)):
            raise CodecNotSupportedError(
                f"transpose with order {list(perm)} has no Zarr v2 equivalent (only 'C' and 'F' exist)."
            )
        dicts = dicts[1:]
    configs: list[dict[str, Any]] = []
    endian: str | None = None
    n_bytes_codecs = 0  # codecs after the serializer
    seen_serializer = False
    for d in dicts:
        if d["name"] in ("bytes", "endian"):
            endian = d["configuration"].get("endian")
            seen_serializer = True
            continue
        if d["name"] == "transpose":
            raise CodecNotSupportedError(
                "A transpose codec after the first position has no Zarr v2 equivalent."
            )
        configs.append(_v3_to_numcodecs_config(d))
        if seen_serializer:
            n_bytes_codecs += 1
        if d["name"] in _OBJECT_CODECS or _is_array_bytes(d["name"]):
            seen_serializer = True
    compressor = configs.pop() if n_bytes_codecs else None
    return V2Encoding(order, configs or None, compressor, endian)


def _is_array_bytes(name: str) -> bool:
    try:
        return issubclass(get_codec_class(name), ArrayBytesCodec)
    except (KeyError, UnknownCodecError):
        return False


def v3_codecs_to_numcodecs(
    codecs: Iterable[Any],
) -> tuple[list[dict[str, Any]] | None, dict[str, Any] | None]:
    """``(filters, compressor)`` numcodecs configs for a Zarr v3 codec pipeline.

    Like :func:`v3_codecs_to_v2` but for C-order pipelines only: a transpose codec
    raises :class:`CodecNotSupportedError` (use :func:`v3_codecs_to_v2` to get ``order``).

    >>> v3_codecs_to_numcodecs([{"name": "numcodecs.delta", "configuration": {"dtype": "<i4"}},
    ...     {"name": "bytes", "configuration": {"endian": "little"}},
    ...     {"name": "numcodecs.zlib", "configuration": {"level": 1}}])
    ([{'id': 'delta', 'dtype': '<i4'}], {'id': 'zlib', 'level': 1})
    """
    dicts = [_codec_dict(c) for c in codecs]
    if any(d["name"] == "transpose" for d in dicts):
        raise CodecNotSupportedError(
            "A transpose codec cannot be written as numcodecs filters; use v3_codecs_to_v2 "
            "for the Zarr v2 'order'."
        )
    enc = v3_codecs_to_v2(dicts, ndim=0)
    return enc.filters, enc.compressor
