"""The HDF5 bitshuffle filter (id 32008) as numcodecs and Zarr v3 codecs.

The filter bit-transposes the elements of each block and, optionally, compresses every
block with LZ4 or Zstandard. Its byte format (from the bitshuffle library's HDF5 filter):

* no compression: the bitshuffled data only; blocks of ``blocksize`` elements
  (0 = the library default), a last block rounded down to a multiple of 8 elements, and
  the remaining ``n % 8`` elements copied as they are;
* LZ4/Zstandard: a 12-byte header, big-endian ``uint64`` decoded size and ``uint32`` block
  size *in bytes*, then per block a big-endian ``uint32`` compressed size and the
  compressed block, then the ``n % 8`` trailing elements uncompressed.

imagecodecs provides the bit transposition and the block codecs but not this framing.
Registered through entry points (``pyproject.toml``): numcodecs id ``"hdf5_bitshuffle"``
(:class:`HDF5Bitshuffle`) and Zarr v3 codec ``"numcodecs.hdf5_bitshuffle"`` (:class:`Bitshuffle`).
"""

from __future__ import annotations

import struct
from typing import Any, Literal

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray, ndarray_copy

from virtualizarr.codecs.wrap import WrappedBytesBytesCodec

__all__ = ["CNAMES", "CODEC_ID", "Bitshuffle", "HDF5Bitshuffle", "default_block_size"]

CODEC_ID = "hdf5_bitshuffle"
"""numcodecs id; the Zarr v3 name is ``"numcodecs." + CODEC_ID``."""

CNAMES: dict[int, str] = {0: "none", 2: "lz4", 3: "zstd"}
"""Compression flag of the filter's ``cd_values[4]`` -> codec ``cname``."""

_HEADER = struct.Struct(">QI")
_BLOCK_LEN = struct.Struct(">I")


def default_block_size(elementsize: int) -> int:
    """The bitshuffle library's default block size in elements (about 8 KiB, multiple of 8).

    >>> default_block_size(4)
    2048
    """
    return max((8192 // elementsize) // 8 * 8, 128)


def _block_sizes(n_elements: int, block: int) -> list[int]:
    """Elements per compressed block: full blocks, then a last one rounded down to 8."""
    full, rest = divmod(n_elements, block)
    last = rest - rest % 8
    return [block] * full + ([last] if last else [])


class HDF5Bitshuffle(Codec):
    """numcodecs codec for chunks written by the HDF5 bitshuffle filter.

    Parameters
    ----------
    elementsize
        Bytes per element (``cd_values[2]``).
    blocksize
        Elements per block (``cd_values[3]``); 0 means the library default.
    cname
        ``"none"``, ``"lz4"`` or ``"zstd"`` (``cd_values[4]`` is 0, 2 or 3).
    clevel
        Zstandard level used when encoding (``cd_values[5]``).

    >>> c = HDF5Bitshuffle(elementsize=4, cname="lz4")
    >>> data = np.arange(1000, dtype="<i4").tobytes()
    >>> bytes(c.decode(c.encode(data))) == data
    True
    """

    codec_id = CODEC_ID

    def __init__(
        self,
        elementsize: int,
        blocksize: int = 0,
        cname: Literal["none", "lz4", "zstd"] = "none",
        clevel: int = 3,
    ) -> None:
        if cname not in CNAMES.values():
            raise ValueError(f"cname must be one of {sorted(CNAMES.values())}, got {cname!r}.")
        if int(elementsize) < 1:
            raise ValueError(f"elementsize must be >= 1, got {elementsize!r}.")
        self.elementsize = int(elementsize)
        self.blocksize = int(blocksize)
        self.cname = cname
        self.clevel = int(clevel)

    def get_config(self) -> dict[str, Any]:
        return {
            "id": self.codec_id,
            "elementsize": self.elementsize,
            "blocksize": self.blocksize,
            "cname": self.cname,
            "clevel": self.clevel,
        }

    def _elements_per_block(self) -> int:
        return self.blocksize or default_block_size(self.elementsize)

    def encode(self, buf: Any) -> bytes:
        import imagecodecs

        data = ensure_contiguous_ndarray(buf).view("u1").tobytes()
        size = self.elementsize
        if self.cname == "none":
            return bytes(
                imagecodecs.bitshuffle_encode(data, itemsize=size, blocksize=self.blocksize)
            )
        block = self._elements_per_block()
        parts = [_HEADER.pack(len(data), block * size)]
        pos = 0
        for n in _block_sizes(len(data) // size, block):
            shuffled = imagecodecs.bitshuffle_encode(
                data[pos : pos + n * size], itemsize=size, blocksize=n
            )
            if self.cname == "lz4":
                comp = imagecodecs.lz4_encode(shuffled, header=False)
            else:
                comp = imagecodecs.zstd_encode(shuffled, level=self.clevel)
            parts += [_BLOCK_LEN.pack(len(comp)), bytes(comp)]
            pos += n * size
        parts.append(data[pos:])
        return b"".join(parts)

    def decode(self, buf: Any, out: Any = None) -> Any:
        data = ensure_contiguous_ndarray(buf).view("u1").tobytes()
        dec = self._decode_bytes(data)
        return ndarray_copy(np.frombuffer(dec, "u1"), out) if out is not None else dec

    def _decode_bytes(self, data: bytes) -> bytes:
        import imagecodecs

        size = self.elementsize
        if self.cname == "none":
            return bytes(
                imagecodecs.bitshuffle_decode(data, itemsize=size, blocksize=self.blocksize)
            )
        if len(data) < _HEADER.size:
            raise ValueError(f"bitshuffle chunk of {len(data)} bytes is shorter than its header.")
        total, block_bytes = _HEADER.unpack_from(data)
        if block_bytes % size or block_bytes == 0:
            raise ValueError(f"bitshuffle block size {block_bytes} is not a multiple of {size}.")
        out = bytearray(total)
        pos, o = _HEADER.size, 0
        for n in _block_sizes(total // size, block_bytes // size):
            (clen,) = _BLOCK_LEN.unpack_from(data, pos)
            comp = data[pos + 4 : pos + 4 + clen]
            nbytes = n * size
            if self.cname == "lz4":
                shuffled = imagecodecs.lz4_decode(comp, header=False, out=nbytes)
            else:
                shuffled = imagecodecs.zstd_decode(comp, out=nbytes)
            if len(shuffled) != nbytes:
                raise ValueError(
                    f"bitshuffle block decoded to {len(shuffled)} bytes, expected {nbytes}."
                )
            out[o : o + nbytes] = imagecodecs.bitshuffle_decode(
                shuffled, itemsize=size, blocksize=n
            )
            pos += 4 + clen
            o += nbytes
        tail = data[pos : pos + total - o]
        if len(tail) != total - o:
            raise ValueError("bitshuffle chunk is truncated: its trailing elements are missing.")
        out[o:] = tail
        return bytes(out)


class Bitshuffle(
    WrappedBytesBytesCodec, codec_name=f"numcodecs.{CODEC_ID}", numcodec=HDF5Bitshuffle
):
    """Zarr v3 codec ``numcodecs.hdf5_bitshuffle`` (configuration as :class:`HDF5Bitshuffle`)."""
