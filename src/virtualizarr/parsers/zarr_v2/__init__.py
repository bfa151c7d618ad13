"""Zarr v2 metadata and store-listing helpers shared by the Zarr and kerchunk parsers."""
