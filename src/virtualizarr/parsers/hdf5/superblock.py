"""The HDF5 superblock (versions 0-3) and the bounds-checked file our reader reads through.

The superblock is at byte 0 or after a user block (512, 1024, 2048... bytes). It gives
the sizes of addresses ("offsets") and lengths used by every other structure, and the
root group (its symbol table entry in versions 0/1, its object header address in 2/3).

>>> # f = H5File(source, url); sb = read_superblock(f); sb.root_address
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Any

from virtualizarr.errors import CorruptFileError

__all__ = ["SIGNATURE", "Based", "Fallback", "H5File", "Superblock", "read_superblock"]

SIGNATURE = b"\x89HDF\r\n\x1a\n"


class Fallback(Exception):
    """Raised when our reader meets a structure it does not implement: the parser then
    reads the file with h5py. The message names the structure."""


class H5File:
    """A file's bytes (a ``virtualizarr.io`` ByteSource) with HDF5's address sizes.

    Every read is checked against the file's size first, and raises
    :class:`CorruptFileError` naming the file and the structure being read.
    """

    def __init__(self, source: Any, url: str) -> None:
        self.source = source
        self.url = url
        self.size = int(source.size)
        self.so = 8
        """Size of offsets (addresses) in bytes."""
        self.sl = 8
        """Size of lengths in bytes."""
        self.undefined = (1 << 64) - 1

    def set_sizes(self, so: int, sl: int) -> None:
        if so not in (2, 4, 8) or sl not in (2, 4, 8):
            raise CorruptFileError(
                f"{self.url}: superblock gives address size {so} and length size {sl}; "
                "HDF5 uses 2, 4 or 8"
            )
        self.so, self.sl = so, sl
        self.undefined = (1 << (8 * so)) - 1

    def corrupt(self, what: str, reason: str) -> CorruptFileError:
        return CorruptFileError(f"{self.url}: HDF5 {what}: {reason} (file of {self.size} bytes)")

    def check(self, offset: int, length: int, what: str) -> None:
        """Raise CorruptFileError unless ``[offset, offset + length)`` lies in the file."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise self.corrupt(
                what, f"bytes {offset}..{offset + length} lie outside the file; truncated?"
            )

    def read(self, offset: int, length: int, what: str) -> bytes:
        self.check(offset, length, what)
        data = self.source.read(offset, length)
        if len(data) != length:
            raise self.corrupt(what, f"short read at {offset}")
        return data

    def read_many(self, ranges: list[tuple[int, int]], what: str) -> list[bytes]:
        for o, n in ranges:
            self.check(o, n, what)
        out = self.source.read_many(ranges) if ranges else []
        for (o, n), d in zip(ranges, out):
            if len(d) != n:
                raise self.corrupt(what, f"short read at {o}")
        return out

    def clamp(self, offset: int, length: int) -> int:
        """``length`` cut at the end of the file (for speculative reads)."""
        return max(0, min(length, self.size - offset))


class Cursor:
    """Little-endian reads over one structure's bytes, raising CorruptFileError past its end."""

    __slots__ = ("data", "f", "pos", "what")

    def __init__(self, data: bytes, f: H5File, what: str, pos: int = 0) -> None:
        self.data = data
        self.f = f
        self.what = what
        self.pos = pos

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise self.f.corrupt(self.what, f"truncated ({len(self.data)} bytes, needs {end})")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def skip(self, n: int) -> None:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise self.f.corrupt(self.what, f"truncated ({len(self.data)} bytes, needs {end})")
        self.pos = end

    def u(self, n: int) -> int:
        end = self.pos + n
        if end > len(self.data):
            raise self.f.corrupt(self.what, f"truncated ({len(self.data)} bytes, needs {end})")
        v = int.from_bytes(self.data[self.pos : end], "little")
        self.pos = end
        return v

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise self.f.corrupt(self.what, f"truncated ({len(self.data)} bytes)")
        v = self.data[self.pos]
        self.pos += 1
        return v

    def u16(self) -> int:
        return self.u(2)

    def u32(self) -> int:
        return self.u(4)

    def addr(self) -> int | None:
        """An address (None when undefined)."""
        v = self.u(self.f.so)
        return None if v == self.f.undefined else v

    def length(self) -> int:
        return self.u(self.f.sl)

    def cstring(self) -> bytes:
        """A null-terminated string (the null consumed)."""
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.f.corrupt(self.what, "unterminated name")
        out = bytes(self.data[self.pos : end])
        self.pos = end + 1
        return out

    def align(self, n: int, base: int = 0) -> None:
        self.pos = base + ((self.pos - base + n - 1) // n) * n

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


@dataclass(frozen=True)
class Superblock:
    version: int
    base: int
    """Address of the superblock: the user block's size (addresses count from here)."""
    root_address: int
    """The root group's object header."""
    group_leaf_k: int = 4
    group_internal_k: int = 16
    indexed_storage_k: int = 32
    root_btree: int | None = None
    """Versions 0/1: the root group's symbol table B-tree (from the cached entry)."""
    root_heap: int | None = None
    extension: int | None = None


def read_superblock(f: H5File) -> Superblock:
    """Find and decode the superblock; ParserError subclasses if it is not HDF5."""
    head = f.source.read(0, min(f.size, 4096))
    base = None
    where = 0
    while where + 8 <= f.size:
        chunk = head[where : where + 8] if where + 8 <= len(head) else f.source.read(where, 8)
        if chunk == SIGNATURE:
            base = where
            break
        where = 512 if where == 0 else where * 2
    if base is None:
        raise f.corrupt("superblock", "no HDF5 signature found")
    data = f.read(base, min(f.size - base, 256), "superblock")
    c = Cursor(data, f, "superblock", 8)
    version = c.u8()
    if version in (0, 1):
        c.skip(3)  # free-space, root symbol table entry, reserved
        c.skip(1)  # shared header message format version
        so, sl = c.u8(), c.u8()
        f.set_sizes(so, sl)
        c.skip(1)
        leaf_k, internal_k = c.u16(), c.u16()
        c.skip(4)  # file consistency flags
        storage_k = 32
        if version == 1:
            storage_k = c.u16()
            c.skip(2)
        base_addr = c.addr()
        c.addr()  # free-space info (reserved)
        c.addr()  # end of file
        c.addr()  # driver info
        c.addr()  # root entry: link name offset
        root = c.addr()
        cache_type = c.u32()
        c.skip(4)
        btree = heap = None
        if cache_type == 1:
            btree, heap = c.addr(), c.addr()
        if root is None:
            raise f.corrupt("superblock", "undefined root group address")
        sb = Superblock(version, base_addr or 0, root, leaf_k, internal_k, storage_k, btree, heap)
    elif version in (2, 3):
        so, sl = c.u8(), c.u8()
        f.set_sizes(so, sl)
        c.skip(1)  # consistency flags
        base_addr = c.addr()
        ext = c.addr()
        c.addr()  # end of file
        root = c.addr()
        if root is None:
            raise f.corrupt("superblock", "undefined root group address")
        sb = Superblock(version, base_addr or 0, root, extension=ext)
    else:
        raise Fallback(f"superblock version {version}")
    if sb.base not in (0, base):
        raise Fallback(f"a base address ({sb.base}) other than the superblock's ({base})")
    return dataclasses.replace(sb, base=base)


class Based:
    """A byte source seen from ``base`` on: HDF5 addresses count from the superblock, which
    follows the user block (h5py and our manifests use absolute file offsets)."""

    def __init__(self, source: Any, base: int) -> None:
        self.source, self.base = source, base
        self.size = max(0, source.size - base)
        self.url = getattr(source, "url", "")

    def read(self, offset: int, length: int) -> bytes:
        return self.source.read(offset + self.base, length)

    @property
    def expands(self) -> bool:
        return bool(getattr(self.source, "expands", False))

    def read_many(self, ranges: list[tuple[int, int]], expand: Any = None) -> list[bytes]:
        moved = [(o + self.base, n) for o, n in ranges]
        if expand is None:
            return self.source.read_many(moved)
        base = self.base

        def shifted(offset: int, data: bytes) -> list[tuple[int, int]]:
            return [(o + base, n) for o, n in expand(offset - base, data)]

        return self.source.read_many(moved, expand=shifted)


def unpack(fmt: str, data: bytes, offset: int = 0) -> tuple[Any, ...]:
    return struct.unpack_from(fmt, data, offset)
