"""Where an HDF5 dataset's bytes are: chunk indexes, contiguous blocks, chunk-shape trimming.

Everything here reads only the file's metadata. The chunk index is collected in one pass
(``DatasetID.chunk_iter``) into flat lists and turned into the manifest's grid arrays with
numpy, so no Python object is made per chunk beyond what h5py hands to the callback.
"""

from __future__ import annotations

import gc
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from virtualizarr.manifests import ChunkManifest
from virtualizarr.manifests.manifest import MISSING

__all__ = ["ChunkIndex", "chunk_grid_manifest", "read_chunk_index", "trimmed_chunk_shape"]


@dataclass(frozen=True)
class ChunkIndex:
    """The allocated chunks of a chunked dataset, one row per chunk (in index order)."""

    coords: np.ndarray
    """``(n, ndim)`` int64: each chunk's first element (HDF5 ``chunk_offset``)."""
    addresses: np.ndarray
    """uint64 byte offset of each chunk in the file."""
    sizes: np.ndarray
    """uint64 stored (encoded) size of each chunk."""
    masks: np.ndarray
    """uint32 filter mask: bit i set = filter i of the pipeline was skipped for the chunk."""

    def __len__(self) -> int:
        return len(self.addresses)


def _from_store_infos(infos: list[Any], ndim: int) -> ChunkIndex:
    """Columns of h5py ``StoreInfo`` tuples ``(chunk_offset, filter_mask, byte_offset, size)``.

    ``map``/``itemgetter``/``chain`` run in C, so no Python frame runs per chunk.
    """
    n = len(infos)
    coords = np.fromiter(chain.from_iterable(map(itemgetter(0), infos)), np.int64, count=n * ndim)
    return ChunkIndex(
        coords=coords.reshape(n, ndim),
        masks=np.fromiter(map(itemgetter(1), infos), np.uint32, count=n),
        addresses=np.fromiter(map(itemgetter(2), infos), np.uint64, count=n),
        sizes=np.fromiter(map(itemgetter(3), infos), np.uint64, count=n),
    )


def read_chunk_index_iter(dsid: Any, ndim: int) -> ChunkIndex:
    """All allocated chunks in one pass of the chunk index (HDF5 >= 1.12.3 / 1.14)."""
    infos: list[Any] = []
    # the bound method itself is the callback: no Python frame runs per chunk
    dsid.chunk_iter(infos.append)
    return _from_store_infos(infos, ndim)


def read_chunk_index_by_number(dsid: Any, ndim: int) -> ChunkIndex:
    """All allocated chunks through ``get_num_chunks``/``get_chunk_info`` (older HDF5).

    Slower (HDF5 walks the index for each call) but available since HDF5 1.10.5.
    """
    n = dsid.get_num_chunks()
    return _from_store_infos([dsid.get_chunk_info(i) for i in range(n)], ndim)


_PAUSES = 0  # parses in progress that paused the collector (on any thread)
_RESUME = False  # whether the collector was enabled when the first of them started
_PAUSE_LOCK = threading.Lock()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the body runs (re-entrant, and
    across threads: it resumes when the last parse ends, if it was on before the first).

    h5py makes two tuples per chunk (hundreds of thousands for a big dataset). They hold
    no cycles, but their allocation alone triggers full collections that walk every live
    object of the process: pausing the collector halves the time to read a chunk index.
    (Pausing it for a whole parse of our reader gains nothing in a loop of parses: the
    collections only move to the allocations after it.)
    """
    global _PAUSES, _RESUME
    with _PAUSE_LOCK:
        if _PAUSES == 0:
            _RESUME = gc.isenabled()
            gc.disable()
        _PAUSES += 1
    try:
        yield
    finally:
        with _PAUSE_LOCK:
            _PAUSES -= 1
            if _PAUSES == 0 and _RESUME:
                gc.enable()


def _after_fork_in_child() -> None:
    # a child forked while another thread parsed: no parse of its own is in progress
    global _PAUSES, _PAUSE_LOCK
    _PAUSE_LOCK = threading.Lock()
    if _PAUSES and _RESUME:
        gc.enable()
    _PAUSES = 0


os.register_at_fork(after_in_child=_after_fork_in_child)


def read_chunk_index(dsid: Any, ndim: int) -> ChunkIndex:
    """The chunk index, by the fastest method this h5py/HDF5 offers."""
    with gc_paused():
        if hasattr(dsid, "chunk_iter"):
            try:
                return read_chunk_index_iter(dsid, ndim)
            except NotImplementedError:  # h5py built against an HDF5 without H5Dchunk_iter
                pass
        return read_chunk_index_by_number(dsid, ndim)


def chunk_grid_manifest(
    index: ChunkIndex,
    url: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    *,
    lengths: np.ndarray | None = None,
) -> ChunkManifest:
    """A manifest on the chunk grid of ``shape``/``chunks``; unindexed chunks are missing.

    ``lengths`` overrides the stored sizes (used when chunks are trimmed).
    Chunks lying outside the current extent (left by shrinking a dataset) are ignored.
    """
    grid = tuple(math.ceil(s / c) for s, c in zip(shape, chunks))
    ids = np.full(grid, MISSING, dtype=np.uint32)
    offsets = np.zeros(grid, dtype=np.uint64)
    sizes = np.zeros(grid, dtype=np.uint64)
    if len(index) and all(grid):
        idx = index.coords // np.asarray(chunks, dtype=np.int64)
        inside = np.all(idx < np.asarray(grid, dtype=np.int64), axis=1)
        # chunked datasets have rank >= 1 in HDF5, so the grid has at least one axis
        flat = np.ravel_multi_index(tuple(idx[inside].T), grid)
        ids.reshape(-1)[flat] = 0
        offsets.reshape(-1)[flat] = index.addresses[inside]
        sizes.reshape(-1)[flat] = (index.sizes if lengths is None else lengths)[inside]
    return ChunkManifest.from_path_ids(table=[url], ids=ids, offsets=offsets, lengths=sizes)


def trimmed_chunk_shape(
    shape: tuple[int, ...], chunks: tuple[int, ...], *, raw: bool
) -> tuple[tuple[int, ...], bool]:
    """The chunk shape with axes longer than the array cut to the array, when exact.

    Cutting a chunk is exact only if the kept elements are a prefix of the stored chunk
    (C order: every axis after the first cut one is whole, every axis before it is 1)
    and the chunk is stored raw (no filters), so that a shorter byte range is exactly the
    smaller chunk. Then each chunk's length becomes ``prod(new) * itemsize``. Otherwise
    the HDF5 chunk shape is kept: Zarr ignores the overhang of edge chunks, which HDF5
    stores full size. Returns ``(chunk_shape, trimmed)``.

    >>> trimmed_chunk_shape((5,), (1024,), raw=True)
    ((5,), True)
    >>> trimmed_chunk_shape((5, 10), (1024, 10), raw=True)
    ((5, 10), True)
    >>> trimmed_chunk_shape((3, 5), (3, 1024), raw=True)  # rows are strided: not a prefix
    ((3, 1024), False)
    >>> trimmed_chunk_shape((5,), (1024,), raw=False)
    ((1024,), False)
    """
    new = tuple(s if 0 < s < c else c for s, c in zip(shape, chunks))
    if not raw or new == tuple(chunks):
        return tuple(chunks), False
    cut = [i for i, (n, c) in enumerate(zip(new, chunks)) if n != c]
    first = cut[0]
    is_prefix = all(n == c for n, c in zip(new[first + 1 :], chunks[first + 1 :])) and all(
        n == 1 for n in new[:first]
    )
    return (new, True) if is_prefix else (tuple(chunks), False)
