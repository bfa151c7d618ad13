"""HDF5 data layout messages and chunk indexes, read with numpy, level by level.

``parse_layout_message`` decodes the body of a data layout message (versions 1-4):
compact, contiguous, chunked (with the chunk index type of version 4 and its parameters)
or virtual storage. ``read_chunk_index`` then reads a chunked dataset's index into a
:class:`ChunkTable` of numpy columns (one row per allocated chunk) through a byte source
with ``.size``, ``.read(offset, length)`` and ``.read_many([(offset, length), ...])``:
all the nodes of one B-tree level, or all the blocks of one array level, in one batch.

Every address and size read from the file is checked against the file's size before it
is read or allocated, every signature (and the Jenkins lookup3 checksum of the version-2
structures) is checked, and anything malformed raises
:class:`~virtualizarr.errors.CorruptFileError` naming the file (``where``) and the structure.

>>> # layout = parse_layout_message(body, sizeof_offsets=8, sizeof_lengths=8, ndim=3, where=url)
>>> # table = read_chunk_index(source, layout, shape=(10, 20, 30), dtype_size=4, filtered=True,
>>> #                          sizeof_offsets=8, sizeof_lengths=8, where=url)
>>> # table.grid_coords, table.offsets, table.lengths, table.filter_masks
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

import numpy as np

from virtualizarr.errors import CorruptFileError, UnsupportedFeatureError
from virtualizarr.parsers.hdf5.index_common import (
    ChunkTable,
    IndexContext,
    corrupt,
    empty_table,
)

__all__ = [
    "ByteReader",
    "ChunkIndexType",
    "ChunkTable",
    "DataLayout",
    "ExtensibleArrayParams",
    "LayoutClass",
    "parse_layout_message",
    "read_chunk_index",
]


class ByteReader(Protocol):
    """What the chunk index readers need of a file (``virtualizarr.io`` ByteSource has it)."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes]: ...


class LayoutClass(IntEnum):
    """The storage layout class of a data layout message."""

    COMPACT = 0
    CONTIGUOUS = 1
    CHUNKED = 2
    VIRTUAL = 3


class ChunkIndexType(IntEnum):
    """How a chunked dataset's chunks are found (layout version 4 numbering; 0 is ours).

    Layout versions 1-3 always use a version 1 B-tree (``BTREE1``).
    """

    BTREE1 = 0
    SINGLE_CHUNK = 1
    IMPLICIT = 2
    FIXED_ARRAY = 3
    EXTENSIBLE_ARRAY = 4
    BTREE2 = 5


@dataclass(frozen=True)
class ExtensibleArrayParams:
    """Creation parameters of an extensible array index (also repeated in its header)."""

    max_bits: int
    """log2 of the most elements the array can hold."""
    index_elements: int
    """Elements stored in the index block itself."""
    min_pointers: int
    """Minimum number of data block pointers of a super block."""
    min_elements: int
    """Minimum number of elements of a data block."""
    page_bits: int
    """log2 of the elements of a data block page."""


@dataclass(frozen=True)
class DataLayout:
    """A decoded data layout message.

    ``address`` is the contiguous data's address, the chunk index's address (B-tree or
    array header), the single chunk's address or the implicit index's first chunk; None
    when undefined (storage never allocated). Compact data is in ``compact_data``.
    """

    version: int
    layout_class: LayoutClass
    address: int | None = None
    size: int | None = None
    """Contiguous: the data's size in bytes (None for versions 1-2: shape x element size)."""
    compact_data: bytes | None = None
    chunk_dims: tuple[int, ...] | None = None
    """Chunked: the chunk dimensions as stored, the last one being the element size."""
    index_type: ChunkIndexType | None = None
    flags: int = 0
    """Version 4 chunked flags: bit 0 = partial edge chunks are not filtered, bit 1 = the
    single chunk is filtered (its size and mask are then in the message)."""
    single_chunk_size: int | None = None
    """Single chunk index, filtered: the chunk's stored size."""
    single_chunk_filter_mask: int = 0
    """Single chunk index, filtered: the chunk's filter mask."""
    fixed_array_page_bits: int | None = None
    extensible_array: ExtensibleArrayParams | None = None
    btree2_node_size: int | None = None
    btree2_split_percent: int | None = None
    btree2_merge_percent: int | None = None
    element_size: int | None = None
    """Versions 1-2 chunked: the dataset element size field."""
    virtual_heap_address: int | None = None
    virtual_heap_index: int | None = None
    raw: bytes = field(default=b"", repr=False)

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """The chunk shape in elements (``chunk_dims`` without the element size)."""
        if self.chunk_dims is None:
            raise ValueError("not a chunked layout")
        return self.chunk_dims[:-1]

    @property
    def chunk_nbytes(self) -> int:
        """Bytes of one unfiltered chunk (product of ``chunk_dims``)."""
        if self.chunk_dims is None:
            raise ValueError("not a chunked layout")
        return math.prod(self.chunk_dims)

    @property
    def partial_edge_chunks_unfiltered(self) -> bool:
        """Version 4 flag: edge chunks are stored without the filters."""
        return bool(self.flags & 1)


class _Cursor:
    """Bounds-checked little-endian reads over a message body."""

    def __init__(self, body: bytes, where: str) -> None:
        self.body, self.pos, self.where = body, 0, where

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.body):
            raise CorruptFileError(
                f"{self.where}: data layout message of {len(self.body)} bytes is truncated "
                f"(needs {self.pos + n} bytes)"
            )
        out = self.body[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def address(self, n: int) -> int | None:
        value = self.uint(n)
        return None if value == (1 << (8 * n)) - 1 else value


def parse_layout_message(
    body: bytes,
    *,
    sizeof_offsets: int,
    sizeof_lengths: int,
    ndim: int | None = None,
    where: str,
) -> DataLayout:
    """Decode a data layout message body (versions 1 to 5).

    ``ndim`` is the dataset's rank, when known, to check the chunk dims (rank + 1 of them).

    >>> body = bytes([3, 1]) + (2048).to_bytes(8, "little") + (400).to_bytes(8, "little")
    >>> lay = parse_layout_message(body, sizeof_offsets=8, sizeof_lengths=8, where="f.h5")
    >>> lay.layout_class.name, lay.address, lay.size
    ('CONTIGUOUS', 2048, 400)
    """
    c = _Cursor(bytes(body), where)
    version = c.uint(1)
    if version in (1, 2):
        layout = _parse_v1_v2(c, version, sizeof_offsets)
    elif version in (3, 4, 5):  # 5 (HDF5 2.0) is laid out as 4
        layout = _parse_v3_v4(c, version, sizeof_offsets, sizeof_lengths)
    else:
        raise CorruptFileError(f"{where}: data layout message has unknown version {version}")
    if layout.chunk_dims is not None:
        dims = layout.chunk_dims
        if ndim is not None and len(dims) != ndim + 1:
            raise CorruptFileError(
                f"{where}: data layout message has {len(dims)} chunk dimensions for a dataset "
                f"of rank {ndim} (expected {ndim + 1}, the last being the element size)"
            )
        if any(d == 0 for d in dims):
            raise CorruptFileError(f"{where}: data layout message has a zero chunk dimension")
    return layout


def _parse_v1_v2(c: _Cursor, version: int, so: int) -> DataLayout:
    ndims = c.uint(1)
    cls = c.uint(1)
    c.take(5)  # reserved
    if cls not in (0, 1, 2):
        raise CorruptFileError(f"{c.where}: data layout message has unknown class {cls}")
    address = None if cls == 0 else c.address(so)
    dims = tuple(c.uint(4) for _ in range(ndims))
    if cls == 2:
        # the last dim is the element size, as in version 3; the specification also lists
        # a separate element size field, which HDF5 itself does not read: taken if present
        element_size = c.uint(4) if len(c.body) - c.pos >= 4 else None
        return DataLayout(
            version, LayoutClass.CHUNKED, address=address, chunk_dims=dims,
            index_type=ChunkIndexType.BTREE1, element_size=element_size, raw=c.body,
        )  # fmt: skip
    if cls == 1:
        # the stored dims may be truncated to 32 bits: the size comes from the dataspace
        return DataLayout(version, LayoutClass.CONTIGUOUS, address=address, raw=c.body)
    size = c.uint(4)
    return DataLayout(version, LayoutClass.COMPACT, compact_data=c.take(size), raw=c.body)


def _parse_v3_v4(c: _Cursor, version: int, so: int, sl: int) -> DataLayout:
    cls = c.uint(1)
    if cls == 0:
        size = c.uint(2)
        return DataLayout(version, LayoutClass.COMPACT, compact_data=c.take(size), raw=c.body)
    if cls == 1:
        address = c.address(so)
        return DataLayout(
            version, LayoutClass.CONTIGUOUS, address=address, size=c.uint(sl), raw=c.body
        )
    if cls == 3 and version >= 4:
        address = c.address(so)
        return DataLayout(
            version, LayoutClass.VIRTUAL, virtual_heap_address=address,
            virtual_heap_index=c.uint(4), raw=c.body,
        )  # fmt: skip
    if cls != 2:
        raise CorruptFileError(
            f"{c.where}: data layout message version {version} has unknown class {cls}"
        )
    if version == 3:
        ndims = c.uint(1)
        address = c.address(so)
        dims = tuple(c.uint(4) for _ in range(ndims))
        return DataLayout(
            version, LayoutClass.CHUNKED, address=address, chunk_dims=dims,
            index_type=ChunkIndexType.BTREE1, raw=c.body,
        )  # fmt: skip
    flags = c.uint(1)
    ndims = c.uint(1)
    enc = c.uint(1)
    if not 1 <= enc <= 8:
        raise CorruptFileError(
            f"{c.where}: data layout message has a dimension size length of {enc} bytes"
        )
    dims = tuple(c.uint(enc) for _ in range(ndims))
    itype = c.uint(1)
    kw: dict = {}
    if itype == ChunkIndexType.SINGLE_CHUNK:
        if flags & 2:
            kw["single_chunk_size"] = c.uint(sl)
            kw["single_chunk_filter_mask"] = c.uint(4)
    elif itype == ChunkIndexType.IMPLICIT:
        pass
    elif itype == ChunkIndexType.FIXED_ARRAY:
        kw["fixed_array_page_bits"] = c.uint(1)
    elif itype == ChunkIndexType.EXTENSIBLE_ARRAY:
        kw["extensible_array"] = ExtensibleArrayParams(*(c.uint(1) for _ in range(5)))
    elif itype == ChunkIndexType.BTREE2:
        kw["btree2_node_size"] = c.uint(4)
        kw["btree2_split_percent"] = c.uint(1)
        kw["btree2_merge_percent"] = c.uint(1)
    else:
        raise CorruptFileError(
            f"{c.where}: data layout message has unknown chunk index type {itype}"
        )
    address = c.address(so)
    return DataLayout(
        version, LayoutClass.CHUNKED, address=address, chunk_dims=dims,
        index_type=ChunkIndexType(itype), flags=flags, raw=c.body, **kw,
    )  # fmt: skip


def read_chunk_index(
    reader: ByteReader,
    layout: DataLayout,
    *,
    shape: tuple[int, ...],
    dtype_size: int,
    filtered: bool,
    sizeof_offsets: int,
    sizeof_lengths: int,
    where: str,
    maxshape: tuple[int | None, ...] | None = None,
    btree1_k: int = 32,
    verify_checksums: bool = True,
    prefetch: bool = True,
) -> ChunkTable:
    """Every allocated chunk of a chunked dataset, read from its chunk index.

    ``shape`` is the dataset's current extent, ``maxshape`` its maximum one (None for an
    unlimited axis; default ``shape``): the fixed/extensible array and implicit indexes
    number chunks on the grid of the maximum extent. ``filtered`` says whether the
    dataset has a filter pipeline; the indexes record it themselves (array client IDs,
    B-tree record types, the single-chunk flag) and what they record is what is read:
    stored sizes and filter masks of filtered chunks, the full chunk size otherwise.
    ``btree1_k`` is the superblock's "indexed storage internal node K" (nodes hold up to
    ``2 K`` entries; a wrong value costs an extra read, not an error). ``verify_checksums``
    checks the lookup3 checksums of the version-2 structures (arrays, v2 B-trees).
    ``prefetch=False``: a remote reader already has the v1 B-tree (fetched for many
    datasets at once with :func:`~virtualizarr.parsers.hdf5.btree1.prefetch_btree1_trees`),
    so it is not fetched ahead again.

    Rows are in the index's order (v1 B-tree: C order of the grid); only allocated chunks
    appear. A file with a user block needs a reader whose offsets count from the
    superblock (HDF5 addresses are relative to it).

    >>> # read_chunk_index(src, layout, shape=(8760, 180, 360), dtype_size=4, filtered=True,
    >>> #                  sizeof_offsets=8, sizeof_lengths=8, where="file:///data/t2m.nc")
    """
    if layout.layout_class != LayoutClass.CHUNKED or layout.chunk_dims is None:
        raise ValueError(f"{where}: read_chunk_index needs a chunked layout")
    ndim = len(shape)
    chunk_shape = layout.chunk_shape
    if len(chunk_shape) != ndim:
        raise CorruptFileError(
            f"{where}: chunk index has {len(chunk_shape)} chunk dimensions for a dataset of "
            f"rank {ndim}"
        )
    if layout.chunk_dims[-1] != dtype_size and layout.index_type != ChunkIndexType.BTREE1:
        # layout versions <= 3 may store 1 for the element size dimension of old files
        raise CorruptFileError(
            f"{where}: data layout message says elements of {layout.chunk_dims[-1]} bytes, "
            f"the datatype {dtype_size} bytes"
        )
    if maxshape is None:
        maxshape = tuple(shape)
    ctx = IndexContext(
        reader=reader,
        where=where,
        file_size=int(reader.size),
        so=sizeof_offsets,
        sl=sizeof_lengths,
        shape=tuple(int(s) for s in shape),
        maxshape=tuple(maxshape),
        chunk_shape=tuple(int(c) for c in chunk_shape),
        chunk_nbytes=math.prod(chunk_shape) * dtype_size,
        filtered=filtered,
        verify_checksums=verify_checksums,
    )
    if layout.address is None:
        return empty_table(ctx)
    itype = layout.index_type
    if itype == ChunkIndexType.BTREE1:
        from virtualizarr.parsers.hdf5.btree1 import read_btree1_chunks

        return read_btree1_chunks(
            ctx, layout.address, ndims_stored=len(layout.chunk_dims), k=btree1_k,
            prefetch=prefetch,
        )  # fmt: skip
    if itype == ChunkIndexType.SINGLE_CHUNK:
        return _single_chunk(ctx, layout)
    if itype == ChunkIndexType.IMPLICIT:
        return _implicit(ctx, layout.address)
    if itype == ChunkIndexType.FIXED_ARRAY:
        from virtualizarr.parsers.hdf5.fixed_array import read_fixed_array_chunks

        return read_fixed_array_chunks(ctx, layout.address)
    if itype == ChunkIndexType.EXTENSIBLE_ARRAY:
        from virtualizarr.parsers.hdf5.extensible_array import read_extensible_array_chunks

        return read_extensible_array_chunks(ctx, layout.address)
    if itype == ChunkIndexType.BTREE2:
        from virtualizarr.parsers.hdf5.btree2 import read_btree2_chunks

        return read_btree2_chunks(ctx, layout.address)
    raise UnsupportedFeatureError(f"{where}: chunk index type {itype} is not supported")


def _single_chunk(ctx: IndexContext, layout: DataLayout) -> ChunkTable:
    """The one chunk of a dataset whose chunk covers its whole maximum extent."""
    assert layout.address is not None
    if layout.flags & 2:
        size, mask = int(layout.single_chunk_size or 0), int(layout.single_chunk_filter_mask)
    else:
        size, mask = ctx.chunk_nbytes, 0
    table = ChunkTable.from_columns(
        ctx.chunk_shape,
        grid_coords=np.zeros((1, len(ctx.shape)), np.int64),
        offsets=np.array([layout.address], np.uint64),
        lengths=np.array([size], np.uint64),
        filter_masks=np.array([mask], np.uint32),
    )
    ctx.check_chunks(table, "single chunk index")
    return table


def _implicit(ctx: IndexContext, base: int) -> ChunkTable:
    """Chunks stored back to back from ``base``, in C order of the maximum chunk grid."""
    grid = ctx.max_grid(unlimited_ok=False, structure="implicit chunk index")
    n = math.prod(grid)
    if base + n * ctx.chunk_nbytes > ctx.file_size:
        raise corrupt(
            ctx, "implicit chunk index", base,
            f"{n} chunks of {ctx.chunk_nbytes} bytes run past the end of the file "
            f"({ctx.file_size} bytes)",
        )  # fmt: skip
    idx = np.arange(n, dtype=np.int64)
    coords = np.stack(np.unravel_index(idx, grid), axis=1).astype(np.int64)
    return ctx.keep_inside(
        ChunkTable.from_columns(
            ctx.chunk_shape,
            grid_coords=coords.reshape(n, len(grid)),
            offsets=(np.uint64(base) + idx.astype(np.uint64) * np.uint64(ctx.chunk_nbytes)),
            lengths=np.full(n, ctx.chunk_nbytes, np.uint64),
            filter_masks=np.zeros(n, np.uint32),
        )
    )
