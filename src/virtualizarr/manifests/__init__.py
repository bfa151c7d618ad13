"""The data model: chunk manifests, virtual arrays and groups, and the store over them."""

from virtualizarr.manifests.manifest import ChunkEntry, ChunkManifest  # isort: skip
from virtualizarr.manifests.array import ManifestArray  # isort: skip
from virtualizarr.manifests import array_api as _array_api  # noqa: F401  (registers numpy functions)
from virtualizarr.manifests.group import ManifestGroup
from virtualizarr.store import ManifestStore

__all__ = ["ChunkEntry", "ChunkManifest", "ManifestArray", "ManifestGroup", "ManifestStore"]
