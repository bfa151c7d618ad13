"""Chunks held in memory: values HDF5 must decode itself, re-encoded for Zarr.

Some datasets cannot be referenced byte for byte: compact storage (data inside the
object header), filters without a Zarr codec (scale-offset, n-bit), variable-length
strings, chunks stored with a filter skipped. When small, their values are read with
h5py and stored as inlined chunks, encoded by the very codec chain the array declares,
so every chunk of an array decodes the same way. Their one-chunk manifests are
:func:`virtualizarr.conversion.single_chunk_manifest`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from zarr.core.metadata.v3 import ArrayV3Metadata

__all__ = ["encode_chunk", "inline_chunk_shape"]


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
