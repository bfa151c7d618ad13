"""What the HDF5 chunk index readers share: the result table, bounds-checked reads, decoding.

The readers (``btree1``, ``btree2``, ``fixed_array``, ``extensible_array``) get an
:class:`IndexContext` describing the dataset and the file, read through it (every range is
checked against the file's size first) and return a :class:`ChunkTable`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.errors import CorruptFileError, UnsupportedFeatureError

if TYPE_CHECKING:
    from virtualizarr.parsers.hdf5.chunks import ChunkIndex

__all__ = ["UNDEFINED", "ChunkTable", "IndexContext", "corrupt", "empty_table", "le_uint"]

UNDEFINED = np.uint64(np.iinfo(np.uint64).max)
"""An undefined address (all bits set), after widening to uint64 by :func:`le_uint`."""


@dataclass(frozen=True)
class ChunkTable:
    """The allocated chunks of a chunked dataset, one row per chunk, as numpy columns.

    >>> t = ChunkTable.from_columns((2, 3), grid_coords=np.array([[0, 1]]),
    ...     offsets=np.array([4096]), lengths=np.array([24]), filter_masks=np.array([0]))
    >>> len(t), t.element_offsets().tolist()
    (1, [[0, 3]])
    """

    chunk_shape: tuple[int, ...]
    """The chunk shape in elements."""
    grid_coords: np.ndarray
    """``(n, ndim)`` int64: each chunk's position on the chunk grid."""
    offsets: np.ndarray
    """uint64 byte offset of each chunk in the file."""
    lengths: np.ndarray
    """uint64 stored (encoded) size of each chunk."""
    filter_masks: np.ndarray
    """uint32 filter mask: bit i set = filter i of the pipeline was skipped for the chunk."""

    @classmethod
    def from_columns(
        cls,
        chunk_shape: tuple[int, ...],
        *,
        grid_coords: Any,
        offsets: Any,
        lengths: Any,
        filter_masks: Any,
    ) -> ChunkTable:
        """A table from array-likes, cast to the column dtypes."""
        coords = np.asarray(grid_coords, dtype=np.int64)
        if coords.ndim != 2:
            coords = coords.reshape(-1, len(chunk_shape))
        return cls(
            tuple(int(c) for c in chunk_shape),
            coords,
            np.asarray(offsets, dtype=np.uint64).reshape(-1),
            np.asarray(lengths, dtype=np.uint64).reshape(-1),
            np.asarray(filter_masks, dtype=np.uint32).reshape(-1),
        )

    def __len__(self) -> int:
        return len(self.offsets)

    def element_offsets(self) -> np.ndarray:
        """``(n, ndim)`` int64: each chunk's first element (HDF5's ``chunk_offset``)."""
        return self.grid_coords * np.asarray(self.chunk_shape, dtype=np.int64)

    def to_chunk_index(self) -> ChunkIndex:
        """The table as the parser's :class:`~virtualizarr.parsers.hdf5.chunks.ChunkIndex`."""
        from virtualizarr.parsers.hdf5.chunks import ChunkIndex

        return ChunkIndex(
            coords=self.element_offsets(),
            addresses=self.offsets,
            sizes=self.lengths,
            masks=self.filter_masks,
        )

    def take(self, rows: Any) -> ChunkTable:
        """The rows selected by a boolean mask or an index array."""
        return ChunkTable(
            self.chunk_shape,
            self.grid_coords[rows],
            self.offsets[rows],
            self.lengths[rows],
            self.filter_masks[rows],
        )

    def sorted(self) -> ChunkTable:
        """The rows in C order of the chunk grid (for comparisons)."""
        if not len(self):
            return self
        order = np.lexsort(self.grid_coords.T[::-1])
        return self.take(order)


@dataclass(frozen=True)
class IndexContext:
    """One dataset's chunk index being read: the file, the dataset's geometry, the options."""

    reader: Any
    where: str
    file_size: int
    so: int
    """Size of offsets (addresses) in bytes."""
    sl: int
    """Size of lengths in bytes."""
    shape: tuple[int, ...]
    maxshape: tuple[int | None, ...]
    chunk_shape: tuple[int, ...]
    chunk_nbytes: int
    """Bytes of one unfiltered chunk."""
    filtered: bool
    verify_checksums: bool = True

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def undefined(self) -> np.uint64:
        """The undefined address at this file's size of offsets."""
        return np.uint64((1 << (8 * self.so)) - 1)

    def grid(self) -> tuple[int, ...]:
        """The chunk grid of the current extent."""
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunk_shape))

    def max_grid(self, *, unlimited_ok: bool, structure: str) -> tuple[int, ...]:
        """The chunk grid of the maximum extent (1 along unlimited axes when allowed)."""
        out = []
        for m, c in zip(self.maxshape, self.chunk_shape):
            if m is None or m < 0 or m >= (1 << 63):
                if not unlimited_ok:
                    raise CorruptFileError(
                        f"{self.where}: {structure} is used for a dataset with an unlimited "
                        "dimension, which it cannot index"
                    )
                out.append(1)
            else:
                out.append(-(-int(m) // c))
        return tuple(out)

    def check_range(self, structure: str, address: int, length: int) -> None:
        """Raise unless ``[address, address + length)`` lies inside the file."""
        if address < 0 or length < 0 or address + length > self.file_size:
            raise corrupt(
                self, structure, address,
                f"its {length} bytes run past the end of the file ({self.file_size} bytes)",
            )  # fmt: skip

    def read(self, structure: str, address: int, length: int) -> bytes:
        """``length`` bytes at ``address``, checked to be inside the file and complete."""
        self.check_range(structure, address, length)
        data = self.reader.read(address, length)
        if len(data) < length:
            raise corrupt(self, structure, address, f"read {len(data)} of {length} bytes")
        return bytes(data) if not isinstance(data, bytes) else data

    def read_many(
        self, structure: str, ranges: list[tuple[int, int]], expand: Any = None
    ) -> list[bytes]:
        """Many ranges in one batch, each checked to be inside the file and complete.

        ``expand`` goes to a reader that ``expands`` (a remote source: see
        :meth:`virtualizarr.io.ByteSource.read_many`), so the next level of a tree is
        fetched while this one arrives; other readers never see it.
        """
        for address, length in ranges:
            self.check_range(structure, address, length)
        if not ranges:
            return []
        if expand is not None and getattr(self.reader, "expands", False):
            out = self.reader.read_many(ranges, expand=expand)
        else:
            out = self.reader.read_many(ranges)
        for (address, length), data in zip(ranges, out):
            if len(data) < length:
                raise corrupt(self, structure, address, f"read {len(data)} of {length} bytes")
        return out

    def check_signature(
        self, structure: str, rows: np.ndarray, signature: bytes, addresses: Any
    ) -> None:
        """Every row of ``rows`` (``(m, >=4)`` uint8) starts with ``signature``."""
        sig = np.frombuffer(signature, np.uint8)
        bad = np.any(rows[:, : len(sig)] != sig, axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            raise corrupt(
                self, structure, int(np.asarray(addresses)[i]),
                f"signature {bytes(rows[i, :4])!r} instead of {signature!r}",
            )  # fmt: skip

    def check_addresses(self, structure: str, addresses: np.ndarray, parent: int) -> None:
        """Every address (uint64) points inside the file."""
        if len(addresses) and int(addresses.max()) >= self.file_size:
            raise corrupt(
                self, structure, parent,
                f"points to byte {int(addresses.max())}, past the end of the file "
                f"({self.file_size} bytes)",
            )  # fmt: skip

    def check_chunks(self, table: ChunkTable, structure: str) -> None:
        """Every chunk lies inside the file and has a sane position on the grid."""
        if not len(table):
            return
        end = table.offsets + table.lengths
        if (end < table.offsets).any() or int(end.max()) > self.file_size:
            raise corrupt(
                self, structure, 0,
                f"a chunk ends at byte {int(end.max())}, past the end of the file "
                f"({self.file_size} bytes)",
            )  # fmt: skip
        if (table.grid_coords < 0).any():
            raise corrupt(self, structure, 0, "a chunk has a negative position")

    def keep_inside(self, table: ChunkTable) -> ChunkTable:
        """The rows on the current chunk grid."""
        if not len(table):
            return table
        inside = np.all(table.grid_coords < np.asarray(self.grid(), np.int64), axis=1)
        return table if inside.all() else table.take(inside)


def increasing_rows(grid: np.ndarray) -> bool:
    """Are the rows of ``grid`` strictly increasing in lexicographic order (no repeats)?"""
    if len(grid) < 2:
        return True
    diff = grid[1:] - grid[:-1]
    nonzero = diff != 0
    first = np.argmax(nonzero, axis=1)
    lead = diff[np.arange(len(diff)), first]
    return bool(nonzero.any(axis=1).all() and (lead > 0).all())


def unique_rows(grid: np.ndarray) -> bool:
    """Are the rows of ``grid`` (non-negative int64) all different?

    Rows become C-order numbers on the grid their maxima span: counted with ``bincount``
    when that grid is small, else sorted; rows too large to number are sorted as rows.
    """
    n = len(grid)
    if n < 2:
        return True
    if (grid < 0).any():
        return increasing_rows(grid[np.lexsort(grid.T[::-1])])
    extent = [int(m) + 1 for m in grid.max(axis=0)]
    if math.prod(extent) >= 1 << 62:
        return increasing_rows(grid[np.lexsort(grid.T[::-1])])
    strides = np.array([math.prod(extent[i + 1 :]) for i in range(len(extent))], np.int64)
    number = grid @ strides
    if math.prod(extent) <= 8 * n + 4096:
        return int(np.bincount(number).max()) <= 1
    number.sort()
    return bool((number[1:] != number[:-1]).all())


def corrupt(ctx: IndexContext, structure: str, address: int, reason: str) -> CorruptFileError:
    """The error for a damaged ``structure`` at ``address``."""
    return CorruptFileError(f"{ctx.where}: {structure} at byte {address} is corrupt: {reason}")


def empty_table(ctx: IndexContext) -> ChunkTable:
    """No chunks."""
    return ChunkTable.from_columns(
        ctx.chunk_shape,
        grid_coords=np.zeros((0, ctx.ndim), np.int64),
        offsets=np.zeros(0, np.uint64),
        lengths=np.zeros(0, np.uint64),
        filter_masks=np.zeros(0, np.uint32),
    )


def le_uint(cols: np.ndarray) -> np.ndarray:
    """Little-endian unsigned integers from ``(n, k)`` uint8 columns (k <= 8), as uint64."""
    k = cols.shape[1]
    if k in (1, 2, 4, 8):
        return np.ascontiguousarray(cols).view(f"<u{k}").reshape(-1).astype(np.uint64)
    out = np.zeros(cols.shape[0], np.uint64)
    for i in range(k):
        out |= cols[:, i].astype(np.uint64) << np.uint64(8 * i)
    return out


def stack_rows(blocks: list[bytes], length: int) -> np.ndarray:
    """``(m, length)`` uint8 from byte strings of at most ``length`` bytes (zero padded)."""
    if all(len(b) == length for b in blocks):
        return np.frombuffer(b"".join(blocks), np.uint8).reshape(len(blocks), length)
    out = np.zeros((len(blocks), length), np.uint8)
    for i, b in enumerate(blocks):
        n = min(len(b), length)
        out[i, :n] = np.frombuffer(b, np.uint8, count=n)
    return out


def unravel(idx: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """``(n, ndim)`` int64 grid coordinates of C-order linear indices on ``grid``."""
    if not len(grid):
        return np.zeros((len(idx), 0), np.int64)
    return np.stack(np.unravel_index(idx.astype(np.int64), grid), axis=1).astype(np.int64)


def check_count(ctx: IndexContext, structure: str, address: int, count: int, limit: int) -> None:
    """A count read from the file is at most ``limit`` (what the file could hold)."""
    if count < 0 or count > limit:
        raise corrupt(ctx, structure, address, f"claims {count} entries, more than {limit}")


def require_int_width(ctx: IndexContext, nbytes: int, what: str) -> None:
    """Addresses of 1-8 bytes are supported."""
    if not 1 <= nbytes <= 8:
        raise UnsupportedFeatureError(f"{ctx.where}: {what} of {nbytes} bytes is not supported")


def prod(xs: tuple[int, ...]) -> int:
    return math.prod(xs)
