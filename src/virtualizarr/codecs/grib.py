"""The GRIB codec: one chunk is one whole GRIB message, decoded to its values by ecCodes.

GRIB packings (simple, complex, spatial differencing, JPEG 2000, CCSDS, PNG...) are too
many to re-express as Zarr codecs, so the chunk is the message itself and ecCodes, the
reference decoder, turns it into the field's values. Points the message marks missing
(bitmap, or the missing-value management of complex packing) decode as NaN.

Two registrations, through entry points (``pyproject.toml``, not on import): the Zarr v3
codec ``"virtualizarr.grib"`` (:class:`GribCodec`, on the shared base in
:mod:`virtualizarr.codecs.wrap`) and the numcodecs (Zarr v2, kerchunk) codec of the same id
(:class:`GribNumcodec`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numcodecs.abc import Codec as NumcodecsCodec

from virtualizarr.codecs.wrap import DecodeOnly, WrappedArrayBytesCodec, chunk_from_values

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

__all__ = ["CODEC_ID", "GribCodec", "GribNumcodec", "decode_message"]

CODEC_ID = "virtualizarr.grib"
"""Name of the codec in Zarr v3 metadata and id in Zarr v2 (numcodecs) metadata."""


def decode_message(message: bytes | memoryview) -> np.ndarray:
    """The values of one GRIB message (float64, in the message's scanning order).

    ``message`` is a whole message, or -- for a field of a multi-field GRIB2 message --
    the message up to the end of that field's data section; the last field is decoded.
    Its structure (section lengths, value counts, bits per value) is checked before
    ecCodes sees it, since some corrupt headers crash ecCodes; any problem raises
    :class:`~virtualizarr.errors.ChunkReadError`.

    Missing points read as NaN: ecCodes is told to use NaN as its missing value, so
    the substitution happens exactly where the bitmap (or the missing-value management
    of complex packing, primary and secondary) says "missing", never by comparing
    values with a sentinel.

    >>> # values = decode_message(open("t2m.grib", "rb").read())  # 1-D float64
    """
    import eccodes

    from virtualizarr.errors import ChunkReadError
    from virtualizarr.parsers.grib.sections import (
        GribStructureError,
        check_points,
        decodable_message,
    )

    data = bytes(message)
    try:
        single = decodable_message(data)
    except GribStructureError as e:
        raise ChunkReadError(f"{_describe(data)} cannot be decoded: {e}.") from None
    try:
        h = eccodes.codes_new_from_message(single)
    except eccodes.GribInternalError as e:
        raise ChunkReadError(f"ecCodes cannot read {_describe(data)}: {e}.") from e
    try:
        check_points(eccodes.codes_get_long(h, "numberOfDataPoints"), len(single))
        eccodes.codes_set(h, "missingValue", np.nan)
        return np.asarray(eccodes.codes_get_values(h), dtype=np.float64)
    except (eccodes.GribInternalError, GribStructureError) as e:
        raise ChunkReadError(
            f"ecCodes cannot decode {_describe(data)} ({_identify(h)}): {e}."
        ) from e
    finally:
        eccodes.codes_release(h)


def _identify(h: Any) -> str:
    """Parameter, date, step and level of a message, to find it in its file."""
    import eccodes

    parts = []
    for key in ("shortName", "dataDate", "dataTime", "stepRange", "typeOfLevel", "level"):
        try:
            parts.append(f"{key}={eccodes.codes_get(h, key, ktype=str)}")
        except eccodes.GribInternalError:
            continue
    return ", ".join(parts) or "no readable keys"


def _describe(data: bytes) -> str:
    """What a chunk looks like, for errors (the codec does not know the file it came from)."""
    if len(data) >= 8 and data[:4] == b"GRIB":
        return f"the GRIB{data[7]} message chunk of {len(data)} bytes"
    return f"the GRIB chunk of {len(data)} bytes starting {data[:8]!r}"


def _parse_dtype(data: Any) -> str:
    dtype = np.dtype(data)
    if dtype.kind != "f":
        raise ValueError(f"GRIB values decode to floats; dtype must be a float type, got {data!r}.")
    return dtype.str


class GribNumcodec(NumcodecsCodec):
    """numcodecs (Zarr v2) form of :class:`GribCodec`, for kerchunk references.

    ``decode`` returns the message's values as a flat array of ``dtype``.

    >>> GribNumcodec(dtype="<f4").get_config()
    {'id': 'virtualizarr.grib', 'dtype': '<f4'}
    """

    codec_id = CODEC_ID

    def __init__(self, dtype: Any = "<f8") -> None:
        self.dtype = _parse_dtype(dtype)

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "dtype": self.dtype}

    def encode(self, buf: Any) -> Any:
        raise NotImplementedError("The GRIB codec only decodes: virtual GRIB arrays are read-only.")

    def decode(self, buf: Any, out: Any = None) -> Any:
        from numcodecs.compat import ensure_contiguous_ndarray, ndarray_copy

        message = ensure_contiguous_ndarray(buf).view(np.uint8).tobytes()
        return ndarray_copy(decode_message(message).astype(self.dtype, copy=False), out)


class GribCodec(DecodeOnly, WrappedArrayBytesCodec, codec_name=CODEC_ID, numcodec=GribNumcodec):
    """Zarr v3 array->bytes codec: a chunk's bytes are one GRIB message.

    Decoding returns the message's values reshaped to the chunk's shape (whose size
    must equal the message's number of points) and cast to the array's float dtype.
    ``dtype`` is recorded only so that the Zarr v2 form of the codec is complete; the
    array's own data type decides the decoded dtype. Encoding is not supported.
    Decoding runs in a worker thread (the base's ``_decode_single``), off the event loop.

    >>> GribCodec(dtype="<f4").to_dict()
    {'name': 'virtualizarr.grib', 'configuration': {'dtype': '<f4'}}
    """

    is_fixed_size = False

    def __init__(self, *, dtype: Any = "<f8") -> None:
        super().__init__(dtype=_parse_dtype(dtype))

    @property
    def dtype(self) -> str:
        """The recorded float dtype (``"<f4"``, ``"<f8"``...)."""
        return str(self.configuration["dtype"])

    def evolve_from_array_spec(self, array_spec: ArraySpec) -> Self:
        # keep the recorded dtype equal to the array's, whatever the caller passed
        dtype = array_spec.dtype.to_native_dtype()
        return type(self)(dtype=dtype) if np.dtype(self.dtype) != dtype else self

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        values = decode_message(chunk_bytes.as_numpy_array().tobytes())
        return chunk_from_values(values, chunk_spec, "GRIB message")
