"""Test helpers for the HDF5 chunk index readers: a byte reader over a local file and a
minimal object-header walk that finds a dataset's raw data layout message.

The object header address comes from h5py (``h5o.get_info(dset.id).addr``); the walk
here only follows messages and continuation blocks, enough to hand the layout message's
bytes to ``parse_layout_message`` (the library's own object-header reader is separate).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from virtualizarr.parsers.hdf5.layout import DataLayout, parse_layout_message

LAYOUT_MESSAGE = 0x0008
CONTINUATION = 0x0010


class FileBytes:
    """``size``/``read``/``read_many`` over a local file (pread), counting calls."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            self.data = f.read()
        self.size = len(self.data)
        self.calls = 0
        self.ranges = 0

    def read(self, offset: int, length: int) -> bytes:
        self.calls += 1
        self.ranges += 1
        return self.data[offset : offset + length]

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        self.calls += 1
        self.ranges += len(ranges)
        d = self.data
        return [d[o : o + n] for o, n in ranges]


class PreadBytes:
    """Like :class:`FileBytes` but reading with ``os.pread`` (no whole-file copy)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.fd = os.open(os.fspath(path), os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        fd = self.fd
        return [os.pread(fd, n, o) for o, n in ranges]

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Superblock:
    sizeof_offsets: int
    sizeof_lengths: int
    btree_k: int


def superblock(data: bytes) -> Superblock:
    """Sizes of offsets/lengths (and the chunk B-tree K) from the superblock (no user block)."""
    base = 0
    while data[base : base + 8] != b"\x89HDF\r\n\x1a\n":
        base = 512 if base == 0 else base * 2
        if base > len(data):
            raise ValueError("no HDF5 signature")
    version = data[base + 8]
    if version in (0, 1):
        so, sl = data[base + 13], data[base + 14]
        k = int.from_bytes(data[base + 24 : base + 26], "little") if version == 1 else 32
        return Superblock(so, sl, k)
    return Superblock(data[base + 9], data[base + 10], 32)


def messages(data: bytes, addr: int, so: int, sl: int) -> list[tuple[int, bytes]]:
    """``(type, body)`` of every message of the object header at ``addr``."""
    out: list[tuple[int, bytes]] = []
    if data[addr : addr + 4] == b"OHDR":
        flags = data[addr + 5]
        pos = addr + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        width = 1 << (flags & 3)
        size = int.from_bytes(data[pos : pos + width], "little")
        pos += width
        blocks = [(pos, pos + size)]
        order = 2 if flags & 0x04 else 0
        while blocks:
            start, end = blocks.pop(0)
            p = start
            while p + 4 + order <= end:
                mtype = data[p]
                msize = int.from_bytes(data[p + 1 : p + 3], "little")
                p += 4 + order
                body = data[p : p + msize]
                p += msize
                out.append((mtype, body))
                if mtype == CONTINUATION:
                    ca = int.from_bytes(body[:so], "little")
                    cl = int.from_bytes(body[so : so + sl], "little")
                    blocks.append((ca + 4, ca + cl - 4))  # "OCHK" ... checksum
        return out
    # version 1
    nmsgs = int.from_bytes(data[addr + 2 : addr + 4], "little")
    size = int.from_bytes(data[addr + 8 : addr + 12], "little")
    blocks = [(addr + 16, addr + 16 + size)]
    while blocks and len(out) < nmsgs:
        start, end = blocks.pop(0)
        p = start
        while p + 8 <= end and len(out) < nmsgs:
            mtype = int.from_bytes(data[p : p + 2], "little")
            msize = int.from_bytes(data[p + 2 : p + 4], "little")
            body = data[p + 8 : p + 8 + msize]
            p += 8 + msize
            out.append((mtype, body))
            if mtype == CONTINUATION:
                ca = int.from_bytes(body[:so], "little")
                cl = int.from_bytes(body[so : so + sl], "little")
                blocks.append((ca, ca + cl))
    return out


def layout_of(dset: Any, data: bytes, sb: Superblock, where: str = "test") -> DataLayout:
    """The parsed data layout message of an h5py dataset."""
    import h5py

    addr = h5py.h5o.get_info(dset.id).addr
    bodies = [
        b
        for t, b in messages(data, addr, sb.sizeof_offsets, sb.sizeof_lengths)
        if t == LAYOUT_MESSAGE
    ]
    assert len(bodies) == 1, f"{len(bodies)} layout messages"
    return parse_layout_message(
        bodies[0],
        sizeof_offsets=sb.sizeof_offsets,
        sizeof_lengths=sb.sizeof_lengths,
        ndim=dset.ndim,
        where=where,
    )


def h5py_chunks(dset: Any) -> dict[tuple[int, ...], tuple[int, int, int]]:
    """``{grid coords: (offset, size, filter_mask)}`` of every chunk, from h5py."""
    chunks = dset.chunks
    out: dict[tuple[int, ...], tuple[int, int, int]] = {}

    def visit(info: Any) -> None:
        key = tuple(int(o) // c for o, c in zip(info.chunk_offset, chunks))
        out[key] = (int(info.byte_offset), int(info.size), int(info.filter_mask))

    dset.id.chunk_iter(visit)
    return out


def table_dict(table: Any) -> dict[tuple[int, ...], tuple[int, int, int]]:
    """The same mapping from a ChunkTable (rows must be unique)."""
    keys = [tuple(int(x) for x in row) for row in table.grid_coords]
    vals = zip(table.offsets.tolist(), table.lengths.tolist(), table.filter_masks.tolist())
    out = dict(zip(keys, vals))
    assert len(out) == len(table), "duplicate chunk coordinates"
    return out


def maxshape_of(dset: Any) -> tuple[int | None, ...]:
    return tuple(dset.maxshape)
