"""GRIB1/GRIB2 files: :class:`GRIBParser`."""

from virtualizarr.parsers.grib.parser import GRIBParser

__all__ = ["GRIBParser"]
