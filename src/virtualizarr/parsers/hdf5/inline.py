"""Chunks held in memory: values HDF5 must decode itself, re-encoded for Zarr.

Some datasets cannot be referenced byte for byte: compact storage (data inside the
object header), filters without a Zarr codec (scale-offset, n-bit), variable-length
strings, chunks stored with a filter skipped. When small, their values are read with
h5py and stored as inlined chunks, encoded by the very codec chain the array declares,
so every chunk of an array decodes the same way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.manifests import ChunkManifest
from virtualizarr.manifests.manifest import MISSING

if TYPE_CHECKING:
    from zarr.core.metadata.v3 import ArrayV3Metadata

__all__ = ["encode_chunk", "inline_chunk_shape", "single_chunk_manifest"]


def inline_chunk_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """One chunk holding the whole array (Zarr chunk lengths must be >= 1)."""
    return tuple(max(int(s), 1) for s in shape)


def encode_chunk(metadata: ArrayV3Metadata, values: np.ndarray) -> bytes:
    """The bytes of one chunk of ``metadata``'s array holding ``values``, as zarr writes them.

    ``values`` must have the chunk's shape. Encoding goes through zarr itself with the
    array's own codecs, so decoding it back is exact by construction.

    >>> from virtualizarr.manifests.metadata import create_v3_array_metadata
    >>> m = create_v3_array_metadata(shape=(2,), data_type=">i2", chunk_shape=(2,))
    >>> encode_chunk(m, np.array([1, 2], ">i2"))
    b'\\x00\\x01\\x00\\x02'
    """
    import zarr
    from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec, BytesBytesCodec

    chunk_shape = tuple(int(c) for c in metadata.chunks)
    if values.shape != chunk_shape:
        raise ValueError(
            f"values of shape {values.shape} do not fill a chunk of shape {chunk_shape}"
        )
    codecs = list(metadata.codecs)
    serializer = next(c for c in codecs if isinstance(c, ArrayBytesCodec))
    filters = [c for c in codecs if isinstance(c, ArrayArrayCodec)]
    # Zarr v3 allows only bytes-to-bytes codecs after the serializer: this keeps all of them
    compressors = [
        c for c in codecs[codecs.index(serializer) + 1 :] if isinstance(c, BytesBytesCodec)
    ]
    store: dict[str, Any] = {}
    arr = zarr.create_array(
        store=zarr.storage.MemoryStore(store),
        shape=chunk_shape,
        chunks=chunk_shape,
        dtype=metadata.data_type,
        filters=filters,
        serializer=serializer,
        compressors=compressors,
        fill_value=metadata.fill_value,
        config={"write_empty_chunks": True},
    )
    arr[...] = values
    key = arr.metadata.encode_chunk_key((0,) * len(chunk_shape))
    return bytes(store[key].to_bytes())


def single_chunk_manifest(shape: tuple[int, ...], data: bytes | None) -> ChunkManifest:
    """A manifest of one chunk covering the whole array, inlined (or missing if ``data`` is None).

    Arrays with a zero-length axis have no chunks at all.
    """
    grid = tuple(1 if s else 0 for s in shape)
    n = math.prod(grid)
    ids = np.full(grid, MISSING if data is None or n == 0 else 0, dtype=np.uint32)
    lengths = np.full(grid, 0 if data is None else len(data), dtype=np.uint64)
    offsets = np.zeros(grid, dtype=np.uint64)
    table = [] if data is None or n == 0 else [data]
    return ChunkManifest.from_path_ids(table=table, ids=ids, offsets=offsets, lengths=lengths)
