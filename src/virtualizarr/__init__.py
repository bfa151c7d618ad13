"""VirtualiZarr: virtual Zarr stores over archival files.

>>> # import virtualizarr as vz
>>> # ds = vz.open_virtual_dataset("file.nc"); ds.vz.to_kerchunk("refs.json", format="json")
"""

from virtualizarr import accessor as _accessor  # noqa: F401  (registers ds.vz)
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup, ManifestStore
from virtualizarr.mfdataset import open_virtual_mfdataset
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.xarray import open_virtual_dataset, open_virtual_datatree


def __getattr__(name: str) -> object:
    # Icechunk is optional: import its reader only when asked for
    if name == "open_icechunk":
        from virtualizarr.writers.icechunk import open_icechunk

        return open_icechunk
    raise AttributeError(f"module 'virtualizarr' has no attribute {name!r}")


__all__ = [
    "ChunkManifest",
    "ManifestArray",
    "ManifestGroup",
    "ManifestStore",
    "ObjectStoreRegistry",
    "open_icechunk",
    "open_virtual_dataset",
    "open_virtual_mfdataset",
    "open_virtual_datatree",
]
