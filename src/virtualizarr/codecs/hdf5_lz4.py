"""The HDF5 LZ4 filter (id 32004) as a Zarr v3 codec, via imagecodecs' ``Lz4h5``.

The filter frames LZ4 blocks its own way (big-endian ``uint64`` decoded size, ``uint32``
block size, then per block a ``uint32`` compressed size and the block, stored raw when
LZ4 would not shrink it), which ``numcodecs.lz4`` cannot read. ``imagecodecs.lz4h5_decode``
reads exactly this framing.

Registered through entry points (``pyproject.toml``): numcodecs id ``"imagecodecs_lz4h5"``
(imagecodecs' own codec) and Zarr v3 codec ``"numcodecs.imagecodecs_lz4h5"`` (:class:`LZ4H5`).
"""

from __future__ import annotations

from imagecodecs.numcodecs import Lz4h5

from virtualizarr.codecs.wrap import WrappedBytesBytesCodec

__all__ = ["CODEC_ID", "LZ4H5"]

CODEC_ID = Lz4h5.codec_id
"""numcodecs id (``"imagecodecs_lz4h5"``); the Zarr v3 name is ``"numcodecs." + CODEC_ID``."""


class LZ4H5(WrappedBytesBytesCodec, codec_name=f"numcodecs.{CODEC_ID}", numcodec=Lz4h5):
    """Zarr v3 codec ``numcodecs.imagecodecs_lz4h5`` (configuration: ``level``, ``blocksize``).

    >>> LZ4H5(blocksize=0).to_dict()
    {'name': 'numcodecs.imagecodecs_lz4h5', 'configuration': {'blocksize': 0}}
    """
