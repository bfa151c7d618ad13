"""The data model: chunk manifests, virtual arrays and groups.

The store that serves them to Zarr, :class:`~virtualizarr.store.ManifestStore`, sits one
layer up (``virtualizarr.store``, also ``virtualizarr.ManifestStore``): nothing in this
package imports the store, the I/O layer, the parsers or the writers.
"""

from virtualizarr.manifests.array import ManifestArray
from virtualizarr.manifests.group import ManifestGroup
from virtualizarr.manifests.manifest import ChunkEntry, ChunkManifest

__all__ = ["ChunkEntry", "ChunkManifest", "ManifestArray", "ManifestGroup"]
