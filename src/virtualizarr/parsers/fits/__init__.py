"""FITS files: :class:`FITSParser`."""

from virtualizarr.parsers.fits.parser import FITSParser

__all__ = ["FITSParser"]
