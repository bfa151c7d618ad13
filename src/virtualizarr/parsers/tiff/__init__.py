"""TIFF/GeoTIFF/COG files: :class:`TIFFParser`."""

from virtualizarr.parsers.tiff.parser import TIFFParser

__all__ = ["TIFFParser"]
