"""VirtualiZarr: virtual Zarr stores over archival files."""

from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup, ManifestStore
from virtualizarr.registry import ObjectStoreRegistry

__all__ = [
    "ChunkManifest",
    "ManifestArray",
    "ManifestGroup",
    "ManifestStore",
    "ObjectStoreRegistry",
]
