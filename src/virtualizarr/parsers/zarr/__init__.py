"""Existing Zarr v2/v3 stores: :class:`ZarrParser`."""

from virtualizarr.parsers.zarr.parser import ZarrParser

__all__ = ["ZarrParser"]
