"""Zarr v3 (and numcodecs) codecs VirtualiZarr had to write; see :mod:`virtualizarr.codecs.wrap`.

Nothing is imported here: zarr loads each codec module through its entry point.
"""
