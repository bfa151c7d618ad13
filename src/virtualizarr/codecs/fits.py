"""Codecs for FITS data that is not a plain big-endian array.

* ``virtualizarr.fits_tile`` (array->bytes): one tile of a tile-compressed image (a row
  of the compressed binary table's heap), decoded with the FITS algorithm named in
  ``ZCMPTYPE`` (RICE_1, GZIP_1, GZIP_2, PLIO_1, HCOMPRESS_1, NOCOMPRESS) exactly as
  astropy/CFITSIO do, cast to the image's data type. A tile that is short along the first
  (slowest) axis only -- the last row of tiles -- is padded to the tile shape.
* ``virtualizarr.record_field`` (bytes->bytes): one column of a binary table. A chunk's
  reference covers whole rows (records); decoding keeps each record's bytes of the field
  and pads the result to ``records`` rows, so a column is read in place even though its
  values are strided through the table.
* ``virtualizarr.sign_flip`` (bytes->bytes): flips the sign bit of big-endian integers,
  which is adding ``2**(bits-1)`` modulo ``2**bits``. FITS stores unsigned 16/32/64-bit
  integers as signed ones with ``BZERO``/``TZEROn`` = 32768, 2**31, 2**63 (and signed
  bytes as unsigned with -128); with this codec they decode to exact unsigned (signed)
  integers, as astropy reads them, instead of floats.

* ``virtualizarr.fits_group_param`` (bytes->bytes): one parameter of a random-groups HDU
  stored in several parts (AIPS splits ``DATE`` in two): the float64 sum of each part's
  ``value * PSCALn + PZEROn``, as astropy's ``GroupData.par()`` returns it.

All are registered with zarr (v3) and numcodecs (v2, same id) through entry points. Their
configuration is numcodecs' default ``get_config``: the public attributes, which
``__init__`` sets from the arguments of the same names, in order.

>>> import numpy as np
>>> RecordField(record_size=3, offset=1, size=2, records=2).decode(b"abcdef")
array([ 98,  99, 101, 102], dtype=uint8)
"""

from __future__ import annotations

import gzip
import math
from typing import Any

import numcodecs
import numpy as np
from numcodecs.abc import Codec

from virtualizarr.codecs.wrap import DecodeOnly, WrappedArrayBytesCodec, WrappedBytesBytesCodec
from virtualizarr.errors import ChunkReadError

__all__ = [
    "ALGORITHMS",
    "FitsTile",
    "FitsTileCodec",
    "GroupParam",
    "GroupParamCodec",
    "RecordField",
    "RecordFieldCodec",
    "SignFlip",
    "SignFlipCodec",
]

ALGORITHMS = ("RICE_1", "RICE_ONE", "GZIP_1", "GZIP_2", "PLIO_1", "HCOMPRESS_1", "NOCOMPRESS")
"""ZCMPTYPE values :class:`FitsTile` decodes."""


def _u8(buf: Any) -> np.ndarray:
    return np.frombuffer(
        buf if isinstance(buf, bytes) else np.ascontiguousarray(buf).tobytes(), np.uint8
    )


def _records(buf: Any, record_size: int, records: int) -> np.ndarray:
    """``buf`` as an ``(n, record_size)`` uint8 array of at most ``records`` whole records."""
    data = _u8(buf)
    n, rest = divmod(data.size, record_size)
    if rest or n > records:
        raise ChunkReadError(
            f"{data.size} bytes are not at most {records} whole records of {record_size} bytes."
        )
    return data.reshape(n, record_size)


class FitsTile(Codec):
    """numcodecs codec: one compressed FITS tile to an array of ``shape`` and ``dtype``.

    Parameters
    ----------
    algorithm
        ``ZCMPTYPE``.
    shape
        The full tile shape (numpy order).
    dtype
        The image's data type (from ``ZBITPIX``); decoded values are cast to it.
    blocksize, bytepix
        RICE parameters (``ZVALn`` of ``BLOCKSIZE``/``BYTEPIX``; CFITSIO's defaults 32, 4).
    smooth
        HCOMPRESS ``SMOOTH`` parameter.
    itemsize
        GZIP/NOCOMPRESS: bytes per stored value; ``None`` infers it from a whole tile.
    """

    codec_id = "virtualizarr.fits_tile"

    def __init__(
        self,
        algorithm: str,
        shape: list[int],
        dtype: str,
        blocksize: int = 32,
        bytepix: int = 4,
        smooth: int = 0,
        itemsize: int | None = None,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"FITS tile compression {algorithm!r} is not one of {ALGORITHMS}.")
        self.algorithm = algorithm
        self.shape = [int(s) for s in shape]
        self.dtype = np.dtype(dtype).str
        self.blocksize, self.bytepix, self.smooth = int(blocksize), int(bytepix), int(smooth)
        self.itemsize = None if itemsize is None else int(itemsize)

    def _stored_dtype(self, nbytes: int) -> np.dtype:
        """Big-endian type of GZIP/NOCOMPRESS values (as astropy/CFITSIO pick it)."""
        out = np.dtype(self.dtype)
        itemsize = self.itemsize
        if itemsize is None:
            npix = math.prod(self.shape)
            if nbytes % npix:
                raise ValueError(
                    f"{self.algorithm} tile of {nbytes} bytes is not a whole number of "
                    f"values for a tile of {npix} pixels."
                )
            itemsize = nbytes // npix
        kind = (
            "f" if out.kind == "f" and itemsize == out.itemsize else ("u" if itemsize == 1 else "i")
        )
        return np.dtype(f">{kind}{itemsize}")

    def _values(self, data: bytes) -> np.ndarray:
        import imagecodecs

        npix = math.prod(self.shape)
        algo = self.algorithm
        if algo in ("RICE_1", "RICE_ONE"):
            return imagecodecs.rcomp_decode(
                data, shape=(npix,), dtype=f"i{self.bytepix}", nblock=self.blocksize
            )
        if algo == "PLIO_1":  # a big-endian int16 line list; CFITSIO reads it natively
            lines = np.frombuffer(data, ">i2").astype("=i2").tobytes()
            return imagecodecs.plio_decode(lines, npix=npix)
        if algo == "HCOMPRESS_1":
            return imagecodecs.hcomp_decode(data, smooth=self.smooth)
        raw = gzip.decompress(data) if algo.startswith("GZIP") else data
        stored = self._stored_dtype(len(raw))
        if algo == "GZIP_2":  # byte planes: all first bytes of the values, then all second...
            raw = np.frombuffer(raw, np.uint8).reshape(stored.itemsize, -1).T.tobytes()
        return np.frombuffer(raw, stored)

    def decode(self, buf: Any, out: Any = None) -> Any:
        import zlib

        try:
            values = np.asarray(self._values(_u8(buf).tobytes())).ravel()
        except (zlib.error, EOFError, OSError, ValueError, RuntimeError) as e:
            # gzip's BadGzipFile is an OSError; imagecodecs' errors are RuntimeErrors
            raise ChunkReadError(
                f"A {self.algorithm} tile cannot be decoded: {type(e).__name__}: {e}"
            ) from e
        npix = math.prod(self.shape)
        row = math.prod(self.shape[1:])
        if values.size != npix and not (values.size < npix and row and values.size % row == 0):
            raise ChunkReadError(
                f"{self.algorithm} tile decoded to {values.size} values, which is neither the tile "
                f"shape {tuple(self.shape)} nor whole rows of it."
            )
        res = np.zeros(npix, dtype=self.dtype)
        # astropy assigns into the image array: the same (unsafe, C) cast
        res[: values.size] = values.astype(self.dtype, casting="unsafe", copy=False)
        return numcodecs.compat.ndarray_copy(res, out) if out is not None else res

    def encode(self, buf: Any) -> Any:
        raise NotImplementedError(
            "virtualizarr.fits_tile only decodes (virtual arrays are read-only)."
        )


class RecordField(Codec):
    """numcodecs codec: bytes ``[offset, offset + size)`` of each ``record_size``-byte record.

    Decoding pads the output to ``records`` records' worth of fields with zeros.
    """

    codec_id = "virtualizarr.record_field"

    def __init__(self, record_size: int, offset: int, size: int, records: int) -> None:
        self.record_size, self.offset = int(record_size), int(offset)
        self.size, self.records = int(size), int(records)
        if not (self.offset >= 0 and self.offset + self.size <= self.record_size):
            raise ValueError(
                f"field [{offset}, {offset} + {size}) is not inside a {record_size}-byte record"
            )

    def decode(self, buf: Any, out: Any = None) -> Any:
        recs = _records(buf, self.record_size, self.records)
        res = np.zeros((self.records, self.size), dtype=np.uint8)
        res[: len(recs)] = recs[:, self.offset : self.offset + self.size]
        flat = res.reshape(-1)
        return numcodecs.compat.ndarray_copy(flat, out) if out is not None else flat

    def encode(self, buf: Any) -> Any:
        raise NotImplementedError(
            "virtualizarr.record_field only decodes (virtual arrays are read-only)."
        )


class SignFlip(Codec):
    """numcodecs codec: XOR 0x80 into the first (most significant) byte of each big-endian
    ``itemsize``-byte integer; its own inverse.

    >>> SignFlip(itemsize=2).decode(bytes([0x80, 0x00, 0x7F, 0xFF])).tobytes()
    b'\\x00\\x00\\xff\\xff'
    """

    codec_id = "virtualizarr.sign_flip"

    def __init__(self, itemsize: int) -> None:
        self.itemsize = int(itemsize)
        if self.itemsize not in (1, 2, 4, 8):
            raise ValueError(f"itemsize must be 1, 2, 4 or 8, not {itemsize}")

    def decode(self, buf: Any, out: Any = None) -> Any:
        data = _u8(buf).copy()
        if data.size % self.itemsize:
            raise ChunkReadError(f"{data.size} bytes are not whole {self.itemsize}-byte integers.")
        data[:: self.itemsize] ^= 0x80
        return numcodecs.compat.ndarray_copy(data, out) if out is not None else data

    def encode(self, buf: Any) -> Any:
        return self.decode(buf)


class GroupParam(Codec):
    """numcodecs codec: the float64 (little-endian) sum of scaled fields of each record.

    >>> import numpy as np
    >>> rec = np.array([[1.0, 2.0], [3.0, 4.0]], ">f4").tobytes()
    >>> c = GroupParam(8, 2, ">f4", offsets=[0, 4], scales=[10, 1], zeros=[0.5, 0])
    >>> np.frombuffer(c.decode(rec), "<f8").tolist()
    [12.5, 34.5]
    """

    codec_id = "virtualizarr.fits_group_param"

    def __init__(
        self,
        record_size: int,
        records: int,
        dtype: str,
        offsets: list[int],
        scales: list[float],
        zeros: list[float],
    ) -> None:
        self.record_size, self.records = int(record_size), int(records)
        self.dtype = np.dtype(dtype).str
        self.offsets = [int(o) for o in offsets]
        self.scales, self.zeros = [float(v) for v in scales], [float(v) for v in zeros]
        item = np.dtype(self.dtype).itemsize
        if len({len(self.offsets), len(self.scales), len(self.zeros)}) != 1 or any(
            not 0 <= o <= self.record_size - item for o in self.offsets
        ):
            raise ValueError(
                f"fields {offsets} of {dtype} are not inside a {record_size}-byte record"
            )

    def decode(self, buf: Any, out: Any = None) -> Any:
        recs = _records(buf, self.record_size, self.records)
        dtype = np.dtype(self.dtype)
        res = np.zeros(self.records, "<f8")
        total = None
        for offset, scale, zero in zip(self.offsets, self.scales, self.zeros):
            part = (
                recs[:, offset : offset + dtype.itemsize].copy().view(dtype).ravel().astype("<f8")
            )
            if scale != 1:  # as astropy: multiply, then add, each only when needed
                part *= scale
            if zero != 0:
                part += zero
            total = part if total is None else total + part
        if total is not None:
            res[: len(recs)] = total
        res = res.view(np.uint8)
        return numcodecs.compat.ndarray_copy(res, out) if out is not None else res

    def encode(self, buf: Any) -> Any:
        raise NotImplementedError(
            "virtualizarr.fits_group_param only decodes (virtual arrays are read-only)."
        )


class FitsTileCodec(
    DecodeOnly, WrappedArrayBytesCodec, codec_name=FitsTile.codec_id, numcodec=FitsTile
):
    """Zarr v3 form of :class:`FitsTile` (decode only)."""


class RecordFieldCodec(
    DecodeOnly, WrappedBytesBytesCodec, codec_name=RecordField.codec_id, numcodec=RecordField
):
    """Zarr v3 form of :class:`RecordField` (decode only)."""


class SignFlipCodec(WrappedBytesBytesCodec, codec_name=SignFlip.codec_id, numcodec=SignFlip):
    """Zarr v3 form of :class:`SignFlip`."""


class GroupParamCodec(
    DecodeOnly, WrappedBytesBytesCodec, codec_name=GroupParam.codec_id, numcodec=GroupParam
):
    """Zarr v3 form of :class:`GroupParam` (decode only)."""
