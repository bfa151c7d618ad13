"""The one base of VirtualiZarr's Zarr v3 codecs: a numcodecs codec behind a Zarr v3 name.

Each virtual-format codec is written once, as a numcodecs ``Codec`` (so Zarr v2 /
kerchunk references can name it), and exposed to Zarr v3 by subclassing one of the three
role classes here -- bytes->bytes, array->bytes, array->array -- all built on
:class:`WrappedCodec`. The v3 ``configuration`` is the numcodecs config without its
``id``, so the two forms convert into each other by adding or dropping that key.

* Decoding runs off the event loop: ``_decode_single`` hands the synchronous
  ``_decode_sync`` to ``asyncio.to_thread`` (as zarr's own numcodecs wrappers do), and
  zarr's synchronous pipelines call ``_decode_sync`` directly.
* :class:`DecodeOnly` marks codecs of read-only virtual arrays: encoding raises
  ``NotImplementedError`` naming the codec.
* Registration is by entry points only (``[project.entry-points."zarr.codecs"]`` and
  ``"numcodecs.codecs"`` in ``pyproject.toml``): importing a codec module registers
  nothing, and a fresh process (reading saved references) finds every codec by name.

>>> from numcodecs import Zlib
>>> class ZlibV3(WrappedBytesBytesCodec, codec_name="example.zlib", numcodec=Zlib): ...
>>> ZlibV3(level=1).to_dict()
{'name': 'example.zlib', 'configuration': {'level': 1}}
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec
from zarr.core.common import JSON, parse_named_configuration

from virtualizarr.errors import ChunkReadError

if TYPE_CHECKING:
    from typing import Self

    from numcodecs.abc import Codec as Numcodec
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

__all__ = [
    "DecodeOnly",
    "WrappedArrayArrayCodec",
    "WrappedArrayBytesCodec",
    "WrappedBytesBytesCodec",
    "WrappedCodec",
]


@dataclass(frozen=True)
class WrappedCodec:
    """Shared part of every role: name, configuration, the numcodecs twin, JSON round trip.

    Subclasses name themselves with class keywords: ``codec_name`` (the Zarr v3 name) and
    ``numcodec`` (the numcodecs class the configuration is handed to).
    """

    codec_name: ClassVar[str]
    numcodec_cls: ClassVar[type]
    configuration: dict[str, Any]

    def __init_subclass__(
        cls, *, codec_name: str | None = None, numcodec: type | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if codec_name is not None:
            cls.codec_name = codec_name
        if numcodec is not None:
            cls.numcodec_cls = numcodec

    def __init__(self, **configuration: Any) -> None:
        configuration.pop("id", None)
        object.__setattr__(self, "configuration", configuration)
        self._numcodec  # validate the configuration now, not at the first read  # noqa: B018

    @cached_property
    def _numcodec(self) -> Numcodec:
        cls = self.numcodec_cls
        if hasattr(cls, "from_config"):
            return cls.from_config(dict(self.configuration))
        return cls(**self.configuration)

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Self:
        _, config = parse_named_configuration(data, cls.codec_name, require_configuration=False)
        return cls(**(config or {}))

    def to_dict(self) -> dict[str, JSON]:
        return {"name": self.codec_name, "configuration": dict(self.configuration)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.configuration!r})"

    def __hash__(self) -> int:
        return hash((self.codec_name, repr(sorted(self.configuration.items()))))

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError(f"{self.codec_name} has no fixed encoded size.")


class WrappedBytesBytesCodec(WrappedCodec, BytesBytesCodec):
    """A bytes->bytes Zarr v3 codec running a numcodecs codec."""

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        out = self._numcodec.decode(chunk_bytes.as_numpy_array())
        return chunk_spec.prototype.buffer.from_bytes(np.asarray(out).tobytes())

    def _encode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        out = self._numcodec.encode(chunk_bytes.as_numpy_array())
        return chunk_spec.prototype.buffer.from_bytes(np.asarray(out).tobytes())

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_bytes, chunk_spec)


def chunk_from_values(values: np.ndarray, chunk_spec: ArraySpec, what: str) -> NDBuffer:
    """Decoded ``values`` as one chunk: reshaped and cast to the array's native dtype.

    Raises :class:`~virtualizarr.errors.ChunkReadError` naming ``what`` (the codec) when
    their number is not the chunk's: the reference does not point at what it says.
    """
    n = math.prod(chunk_spec.shape)
    if values.size != n:
        raise ChunkReadError(
            f"{what} decodes to {values.size} values but the chunk has shape "
            f"{chunk_spec.shape} ({n} values): the reference does not match the stored bytes."
        )
    dtype = chunk_spec.dtype.to_native_dtype()
    arr = values.reshape(chunk_spec.shape).astype(dtype, copy=False)
    return chunk_spec.prototype.nd_buffer.from_numpy_array(arr)


class WrappedArrayBytesCodec(WrappedCodec, ArrayBytesCodec):
    """An array->bytes Zarr v3 codec running a numcodecs codec.

    The numcodecs codec must decode to exactly one chunk's worth of values; they are cast
    to the array's data type (the codecs decode to native byte order) and reshaped.
    """

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        out = np.asarray(self._numcodec.decode(chunk_bytes.as_numpy_array().tobytes()))
        return chunk_from_values(out, chunk_spec, self.codec_name)

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        out = self._numcodec.encode(np.ascontiguousarray(chunk_array.as_numpy_array()))
        return chunk_spec.prototype.buffer.from_bytes(np.asarray(out).tobytes())

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)


class WrappedArrayArrayCodec(WrappedCodec, ArrayArrayCodec):
    """An array->array Zarr v3 codec running a numcodecs codec on native-order arrays."""

    def _decode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> NDBuffer:
        arr = chunk_array.as_numpy_array()
        # imagecodecs filters compute in the machine's byte order
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
        out = np.asarray(self._numcodec.decode(arr)).reshape(chunk_spec.shape)
        dtype = chunk_spec.dtype.to_native_dtype()
        return chunk_spec.prototype.nd_buffer.from_numpy_array(out.astype(dtype, copy=False))

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> NDBuffer | None:
        arr = chunk_array.as_numpy_array()
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
        out = self._numcodec.encode(arr)
        out = (
            np.frombuffer(out, arr.dtype) if isinstance(out, bytes | bytearray) else np.asarray(out)
        )
        return chunk_spec.prototype.nd_buffer.from_numpy_array(out.reshape(chunk_spec.shape))

    async def _decode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_array, chunk_spec)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> NDBuffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        return input_byte_length


class DecodeOnly:
    """Mixin (listed first) for codecs that only decode: virtual arrays are read-only.

    >>> from numcodecs import Zlib
    >>> class ReadZlib(DecodeOnly, WrappedBytesBytesCodec, codec_name="example.rzlib",
    ...                numcodec=Zlib): ...
    >>> ReadZlib()._encode_sync(None, None)
    Traceback (most recent call last):
    ...
    NotImplementedError: example.rzlib only decodes: virtual arrays are read-only.
    """

    codec_name: ClassVar[str]

    def _encode_sync(self, chunk_data: Any, chunk_spec: ArraySpec) -> Any:
        raise NotImplementedError(f"{self.codec_name} only decodes: virtual arrays are read-only.")

    async def _encode_single(self, chunk_data: Any, chunk_spec: ArraySpec) -> Any:
        return self._encode_sync(chunk_data, chunk_spec)
