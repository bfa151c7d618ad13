"""NetCDF4/HDF5 files: :class:`HDFParser`."""

from virtualizarr.parsers.hdf5.parser import HDFParser

__all__ = ["HDFParser"]
