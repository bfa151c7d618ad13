"""The HDF5 SZIP filter (id 4) as a Zarr v3 codec, via imagecodecs' ``Szip`` (libaec).

HDF5 prefixes each SZIP chunk with its decoded size as a little-endian ``uint32``
(``header=True`` in imagecodecs) and records the coder's parameters in the filter's
``cd_values`` (options mask with the byte-order and raw flags HDF5 adds, pixels per
block, bits per pixel, pixels per scanline), which are exactly imagecodecs' arguments.

Registered through entry points (``pyproject.toml``): numcodecs id ``"imagecodecs_szip"``
(imagecodecs' own codec) and Zarr v3 codec ``"numcodecs.imagecodecs_szip"`` (:class:`Szip`).
"""

from __future__ import annotations

from imagecodecs.numcodecs import Szip as ImagecodecsSzip

from virtualizarr.codecs.wrap import WrappedBytesBytesCodec

__all__ = ["CODEC_ID", "Szip", "available"]

CODEC_ID = ImagecodecsSzip.codec_id
"""numcodecs id (``"imagecodecs_szip"``); the Zarr v3 name is ``"numcodecs." + CODEC_ID``."""


def available() -> bool:
    """Whether this imagecodecs build has SZIP (libaec) support."""
    import imagecodecs

    return bool(getattr(imagecodecs, "SZIP", None) and imagecodecs.SZIP.available)


class Szip(WrappedBytesBytesCodec, codec_name=f"numcodecs.{CODEC_ID}", numcodec=ImagecodecsSzip):
    """Zarr v3 codec ``numcodecs.imagecodecs_szip``.

    Configuration: ``options_mask``, ``pixels_per_block``, ``bits_per_pixel``,
    ``pixels_per_scanline`` (the filter's four ``cd_values``) and ``header`` (True for HDF5).

    >>> Szip(options_mask=141, pixels_per_block=32, bits_per_pixel=16,
    ...      pixels_per_scanline=256, header=True).to_dict()["name"]
    'numcodecs.imagecodecs_szip'
    """
