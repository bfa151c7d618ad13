"""Codecs for TIFF segments (strips and tiles) that no codec library provides as such.

* ``virtualizarr.pad`` (bytes->bytes): a decoded segment padded or cut to the chunk's
  byte size. The last strip of a strip-organised image holds only the image's remaining
  rows, so it decodes to fewer bytes than a chunk of ``rowsperstrip`` rows; padding it
  with zeros gives a whole chunk whose extra rows lie outside the array (zarr drops
  them). ``min_size`` is the shortest size allowed (the last strip's), so a segment that
  is short anywhere else is an error, never silently padded.
* ``virtualizarr.tiff_jpeg`` (array->bytes): a JPEG segment decoded with the TIFF's
  JPEGTables and colour spaces (as tifffile does), then padded to the chunk shape.
  Edge tiles and the last strip may be stored at their true (smaller) size; only those
  sizes are accepted.

Both are registered with zarr (v3) and numcodecs (v2, same id) through entry points.

>>> import numpy as np
>>> Pad(size=6, min_size=4).decode(b"abcd")
array([ 97,  98,  99, 100,   0,   0], dtype=uint8)
"""

from __future__ import annotations

import base64
from typing import Any

import numcodecs
import numpy as np
from numcodecs.abc import Codec

from virtualizarr.codecs.wrap import DecodeOnly, WrappedArrayBytesCodec, WrappedBytesBytesCodec
from virtualizarr.errors import ChunkReadError

__all__ = ["Pad", "PadCodec", "TiffJpeg", "TiffJpegCodec"]


def _as_bytes(buf: Any) -> bytes:
    return np.ascontiguousarray(buf).view(np.uint8).tobytes() if not isinstance(buf, bytes) else buf


class Pad(Codec):
    """numcodecs codec: decode pads (with zeros) or cuts a buffer to ``size`` bytes.

    Buffers shorter than ``min_size`` (default ``size``) are an error.
    """

    codec_id = "virtualizarr.pad"

    def __init__(self, size: int, min_size: int | None = None) -> None:
        self.size = int(size)
        self.min_size = self.size if min_size is None else int(min_size)
        if not 0 <= self.min_size <= self.size:
            raise ValueError(f"need 0 <= min_size <= size, got min_size={min_size}, size={size}")

    def get_config(self) -> dict[str, Any]:
        return {"id": self.codec_id, "size": self.size, "min_size": self.min_size}

    def decode(self, buf: Any, out: Any = None) -> Any:
        data = np.frombuffer(_as_bytes(buf), dtype=np.uint8)
        if data.size < self.min_size:
            raise ChunkReadError(
                f"segment decoded to {data.size} bytes, fewer than the {self.min_size} it must "
                f"hold (chunk size {self.size}): the file is corrupt or not what its tags say."
            )
        res = np.zeros(self.size, dtype=np.uint8)
        n = min(data.size, self.size)
        res[:n] = data[:n]
        return numcodecs.compat.ndarray_copy(res, out) if out is not None else res

    def encode(self, buf: Any) -> Any:
        return _as_bytes(buf)


def _parse_space(v: Any) -> int | str | None:
    return None if v is None else (int(v) if isinstance(v, int | np.integer) else str(v))


class TiffJpeg(Codec):
    """numcodecs codec: one JPEG-compressed TIFF segment to a ``shape`` array.

    ``shape`` is the segment's full ``[rows, width, samples]``; ``edge`` the
    ``[rows, width]`` of the image's last row/column of segments, the only smaller sizes a
    segment may decode to. ``tables`` (base64 in JSON) is the JPEGTables tag.
    """

    codec_id = "virtualizarr.tiff_jpeg"

    def __init__(
        self,
        shape: list[int],
        edge: list[int] | None = None,
        dtype: str = "|u1",
        tables: bytes | str | None = None,
        colorspace: int | str | None = None,
        outcolorspace: int | str | None = None,
    ) -> None:
        self.shape = [int(s) for s in shape]
        if len(self.shape) != 3:
            raise ValueError(f"shape must be [rows, width, samples], got {shape!r}")
        self.edge = [int(s) for s in (edge or self.shape[:2])]
        self.dtype = np.dtype(dtype).str
        self.tables = base64.b64decode(tables) if isinstance(tables, str) else tables
        self.colorspace = _parse_space(colorspace)
        self.outcolorspace = _parse_space(outcolorspace)

    def get_config(self) -> dict[str, Any]:
        return {
            "id": self.codec_id,
            "shape": self.shape,
            "edge": self.edge,
            "dtype": self.dtype,
            "tables": None if self.tables is None else base64.b64encode(self.tables).decode(),
            "colorspace": self.colorspace,
            "outcolorspace": self.outcolorspace,
        }

    def decode(self, buf: Any, out: Any = None) -> Any:
        import imagecodecs

        try:
            a = imagecodecs.jpeg_decode(
                _as_bytes(buf),
                tables=self.tables,
                colorspace=self.colorspace,
                outcolorspace=self.outcolorspace,
            )
        except (imagecodecs.JpegError, ValueError, RuntimeError) as e:  # imagecodecs' own errors
            raise ChunkReadError(
                f"A JPEG segment cannot be decoded: {type(e).__name__}: {e}"
            ) from e
        if a.ndim == 2:
            a = a[..., np.newaxis]
        rows, width, samples = self.shape
        h, w, s = a.shape
        if s != samples or not (h >= rows or h == self.edge[0]) or w not in (width, self.edge[1]):
            raise ChunkReadError(
                f"JPEG segment decoded to shape {a.shape}, which is neither the segment shape "
                f"{tuple(self.shape)} nor that of an edge segment {(*self.edge, samples)}."
            )
        res = np.zeros(self.shape, dtype=np.dtype(self.dtype))
        res[: min(h, rows), :w] = a[:rows]
        return numcodecs.compat.ndarray_copy(res, out) if out is not None else res

    def encode(self, buf: Any) -> Any:
        raise NotImplementedError(
            "virtualizarr.tiff_jpeg only decodes (virtual arrays are read-only)."
        )


class PadCodec(WrappedBytesBytesCodec, codec_name=Pad.codec_id, numcodec=Pad):
    """Zarr v3 form of :class:`Pad`.

    >>> PadCodec(size=8, min_size=4).to_dict()
    {'name': 'virtualizarr.pad', 'configuration': {'size': 8, 'min_size': 4}}
    """


class TiffJpegCodec(
    DecodeOnly, WrappedArrayBytesCodec, codec_name=TiffJpeg.codec_id, numcodec=TiffJpeg
):
    """Zarr v3 form of :class:`TiffJpeg` (decode only)."""
