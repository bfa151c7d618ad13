"""Zarr v3 forms of the imagecodecs numcodecs codecs that virtual TIFF arrays use.

imagecodecs ships numcodecs (Zarr v2) codecs (``imagecodecs.numcodecs``) but no Zarr v3
ones. Following zarr-python's convention for wrapped numcodecs codecs, each is exposed
as ``"numcodecs.<numcodecs id>"`` with the numcodecs configuration (minus ``id``), so a
Zarr v2 writer maps it straight back to the numcodecs id. Both forms are registered
through entry points (``pyproject.toml``), not on import.

>>> Lzw().to_dict()
{'name': 'numcodecs.imagecodecs_lzw', 'configuration': {}}
"""

from __future__ import annotations

from imagecodecs import numcodecs as _ic

from virtualizarr.codecs.wrap import (
    WrappedArrayArrayCodec,
    WrappedArrayBytesCodec,
    WrappedBytesBytesCodec,
)

__all__ = ["Bitorder", "Delta", "Floatpred", "Lzw", "Packbits", "Packints"]


class Lzw(WrappedBytesBytesCodec, codec_name="numcodecs.imagecodecs_lzw", numcodec=_ic.Lzw):
    """TIFF LZW (bytes->bytes)."""


class Packbits(
    WrappedBytesBytesCodec, codec_name="numcodecs.imagecodecs_packbits", numcodec=_ic.Packbits
):
    """PackBits run-length encoding (bytes->bytes)."""


class Bitorder(
    WrappedBytesBytesCodec, codec_name="numcodecs.imagecodecs_bitorder", numcodec=_ic.Bitorder
):
    """Reverses the bit order of every byte (TIFF FillOrder=2) (bytes->bytes)."""


class Packints(
    WrappedBytesBytesCodec, codec_name="numcodecs.imagecodecs_packints", numcodec=_ic.Packints
):
    """Unpacks integers of 1-31 bits, rows padded to whole bytes (bytes->bytes).

    Decodes to ``dtype`` values in the machine's byte order.
    """


class Delta(WrappedArrayArrayCodec, codec_name="numcodecs.imagecodecs_delta", numcodec=_ic.Delta):
    """Horizontal differencing along ``axis`` (TIFF predictor 2) (array->array)."""


class Floatpred(
    WrappedArrayBytesCodec, codec_name="numcodecs.imagecodecs_floatpred", numcodec=_ic.Floatpred
):
    """TIFF floating-point predictor 3: byte-plane shuffle + differencing (array->bytes).

    Its configuration holds the chunk ``shape`` and the native float ``dtype``.
    """
