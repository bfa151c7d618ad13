"""HDF5's LZF filter (id 32000, shipped with h5py) as numcodecs and Zarr v3 codecs.

h5py's LZF filter stores each chunk as a bare LZF stream: no header, so the decoded size
is not in the bytes. ``imagecodecs_lzf`` with ``header=False`` cannot size its output
buffer from the stream alone, hence this codec: the Zarr v3 form passes the chunk's
decoded size down; the numcodecs form grows its buffer until the stream fits (an LZF
decoder reports a too-small buffer instead of truncating, so the result is exact).

Registered through entry points (``pyproject.toml``): numcodecs id ``"hdf5_lzf"``
(:class:`HDF5LZF`) and Zarr v3 codec ``"numcodecs.hdf5_lzf"`` (:class:`LZF`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ndarray_copy

from virtualizarr.codecs.wrap import WrappedBytesBytesCodec

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer

__all__ = ["CODEC_ID", "LZF", "HDF5LZF"]

CODEC_ID = "hdf5_lzf"
"""numcodecs id; the Zarr v3 name is ``"numcodecs." + CODEC_ID``."""

# An LZF back-reference encodes at most 264 bytes in 3, so no stream expands more than ~88x.
_MAX_RATIO = 96


def _lzf_decode(data: bytes | memoryview, size: int) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.lzf_decode(data, header=False, out=size))


def decode_lzf(data: bytes | memoryview, size_hint: int | None = None) -> bytes:
    """Decode a bare LZF stream; ``size_hint`` is the expected decoded size, if known.

    >>> import imagecodecs
    >>> decode_lzf(imagecodecs.lzf_encode(b"abc" * 100, header=False))[:6]
    b'abcabc'
    """
    import imagecodecs

    n = len(data)
    if n == 0:
        return b""
    sizes = [size_hint] if size_hint else []
    sizes += [s for s in (4 * n, 16 * n) if not size_hint or s > size_hint]
    sizes.append(_MAX_RATIO * n + 64)
    for size in sizes:
        try:
            return _lzf_decode(data, size)
        except imagecodecs.LzfError as e:
            last = e
    raise ValueError(f"Not a valid LZF stream ({n} bytes): {last}") from last


class HDF5LZF(Codec):
    """numcodecs codec for chunks written by h5py's LZF filter.

    >>> c = HDF5LZF()
    >>> bytes(c.decode(c.encode(b"xyz" * 10)))
    b'xyzxyzxyzxyzxyzxyzxyzxyzxyzxyz'
    """

    codec_id = CODEC_ID

    def encode(self, buf: Any) -> bytes:
        import imagecodecs

        data = ensure_contiguous_ndarray(buf).view("u1").tobytes()
        if not data:
            return b""
        # room for incompressible input: one control byte per 32 literals, plus slack
        bound = len(data) + len(data) // 32 + 64
        return bytes(imagecodecs.lzf_encode(data, header=False, out=bound))

    def decode(self, buf: Any, out: Any = None) -> Any:
        data = ensure_contiguous_ndarray(buf).view("u1").tobytes()
        hint = None if out is None else ensure_contiguous_ndarray(out).nbytes
        dec = decode_lzf(data, hint)
        return ndarray_copy(np.frombuffer(dec, "u1"), out) if out is not None else dec


class LZF(WrappedBytesBytesCodec, codec_name=f"numcodecs.{CODEC_ID}", numcodec=HDF5LZF):
    """Zarr v3 codec ``numcodecs.hdf5_lzf``: decodes with the chunk's size known."""

    def _decode_sync(self, chunk_data: Buffer, chunk_spec: ArraySpec) -> Buffer:
        # the decoded chunk is at most the full chunk (filters before LZF keep sizes)
        hint = math.prod(chunk_spec.shape) * chunk_spec.dtype.to_native_dtype().itemsize
        dec = decode_lzf(chunk_data.to_bytes(), hint or None)
        return chunk_spec.prototype.buffer.from_bytes(dec)
