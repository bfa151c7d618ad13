"""HDF5 object headers (versions 1 and 2) with their continuation blocks, read in batches.

:func:`read_headers` reads the headers of many objects (all members of a group) level by
level: one batch for the first bytes of every header, one for the rest of the first chunks
that were longer, then one per level of continuation blocks. A continuation block already
seen is never read again, so a cycle of continuations ends.

>>> # [h] = read_headers(f, [sb.root_address]); [m.type for m in h.messages]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from virtualizarr.parsers.hdf5.lookup3 import lookup3
from virtualizarr.parsers.hdf5.superblock import Cursor, Fallback, H5File

__all__ = ["Message", "ObjectHeader", "read_headers"]

# message types
NIL = 0
DATASPACE = 1
LINK_INFO = 2
DATATYPE = 3
FILL_OLD = 4
FILL = 5
LINK = 6
EXTERNAL_FILES = 7
LAYOUT = 8
GROUP_INFO = 10
FILTERS = 11
ATTRIBUTE = 12
CONTINUATION = 16
SYMBOL_TABLE = 17
ATTRIBUTE_INFO = 21

_FIRST_READ = 512
"""Bytes read of each header at first: most netCDF-4 variables' headers fit."""
_MAX_BLOCKS = 10_000
"""Most continuation blocks followed per header (a corrupt chain cannot run away)."""


@dataclass(slots=True)
class Message:
    type: int
    flags: int
    body: bytes
    order: int | None = None
    """Creation order (version 2 headers that track attribute creation order)."""

    @property
    def shared(self) -> bool:
        return bool(self.flags & 0x02)


@dataclass(slots=True)
class ObjectHeader:
    address: int
    version: int
    flags: int = 0
    """Version 2 flags (bit 2: attribute creation order tracked, bit 3: indexed)."""
    messages: list[Message] = field(default_factory=list)
    _first: dict[int, Message] | None = field(default=None, repr=False, compare=False)
    """The first message of each type (built at the first ``find``)."""
    _indexed: int = field(default=0, repr=False, compare=False)

    def find(self, mtype: int) -> Message | None:
        first = self._first
        if first is None or self._indexed != len(self.messages):
            # the parser asks each dataset's header for 5-6 message types
            first = {}
            for m in self.messages:
                first.setdefault(m.type, m)
            self._first, self._indexed = first, len(self.messages)
        return first.get(mtype)

    def all(self, mtype: int) -> list[Message]:
        return [m for m in self.messages if m.type == mtype]

    @property
    def attr_order_tracked(self) -> bool:
        return self.version == 2 and bool(self.flags & 0x04)


def _prefix(f: H5File, addr: int, data: bytes) -> tuple[ObjectHeader, int, int]:
    """The header's fixed part: (header, start of messages, end of the first chunk)."""
    what = f"object header at {addr}"
    c = Cursor(data, f, what)
    if data[:4] == b"OHDR":
        if len(data) < 6:
            c.skip(6)  # raises: truncated
        version, flags = data[4], data[5]
        if version != 2:
            raise f.corrupt(what, f"OHDR version {version}")
        pos = 6
        if flags & 0x20:
            pos += 16  # access/modification/change/birth times
        if flags & 0x10:
            pos += 4  # attribute storage phase change values
        start = pos + (1 << (flags & 0x03))  # after the size of the first chunk
        if start > len(data):
            raise f.corrupt(what, f"truncated ({len(data)} bytes, needs {start})")
        size = int.from_bytes(data[pos:start], "little")
        return ObjectHeader(addr, 2, flags), start, start + size + 4  # + checksum
    if len(data) < 16 or data[0] != 1:
        version = c.u8()
        if version != 1:
            raise f.corrupt(what, f"unknown object header version {version}")
        c.skip(15)  # raises: truncated (16 bytes of prefix)
    # version, reserved, number of messages, reference count, size of the messages
    _, _, _, _, size = _V1_PREFIX.unpack_from(data)
    return ObjectHeader(addr, 1), 16, 16 + size


_V1_PREFIX = struct.Struct("<BBHII")
_V1_MSG = struct.Struct("<HHB")
_V2_MSG = struct.Struct("<BHB")
_V2_MSG_ORDER = struct.Struct("<BHBH")


def _messages(
    f: H5File, hdr: ObjectHeader, data: bytes, start: int, end: int, what: str
) -> list[tuple[int, int]]:
    """Append the messages in ``data[start:end]``; return continuation (addr, len) pairs."""
    conts = []
    append = hdr.messages.append
    pos = start
    if hdr.version == 1:
        unpack, step, tracked = _V1_MSG.unpack_from, 8, False
    else:
        end -= 4  # checksum
        tracked = bool(hdr.flags & 0x04)
        unpack, step = (_V2_MSG_ORDER.unpack_from, 6) if tracked else (_V2_MSG.unpack_from, 4)
    if end > len(data):
        raise f.corrupt(what, "truncated")
    while pos + step <= end:
        head = unpack(data, pos)
        mtype, size, mflags = head[0], head[1], head[2]
        pos += step
        if pos + size > end:
            raise f.corrupt(what, f"message of {size} bytes runs past the header's end")
        body = data[pos : pos + size]
        pos += size
        if mtype == CONTINUATION:
            conts.append(_continuation(f, body, what))
        elif mtype != NIL:
            append(Message(mtype, mflags, body, head[3] if tracked else None))
    return conts


def _continuation(f: H5File, body: bytes, what: str) -> tuple[int, int]:
    so, sl = f.so, f.sl
    if len(body) < so + sl:
        raise f.corrupt(what, f"truncated ({len(body)} bytes, needs {so + sl})")
    addr = int.from_bytes(body[:so], "little")
    length = int.from_bytes(body[so : so + sl], "little")
    if addr == f.undefined:
        raise f.corrupt(what, "continuation message with an undefined address")
    f.check(addr, length, what + " continuation block")
    return addr, length


def read_headers(f: H5File, addresses: list[int]) -> list[ObjectHeader]:
    """The object headers at ``addresses``, read in as few batches as their structure allows."""
    for a in addresses:
        f.check(a, 16, f"object header at {a}")
    firsts = f.read_many([(a, f.clamp(a, _FIRST_READ)) for a in addresses], "object header")
    prefixes = [_prefix(f, a, d) for a, d in zip(addresses, firsts)]
    more = [
        (i, a)
        for i, (a, (_, _, end)) in enumerate(zip(addresses, prefixes))
        if end > len(firsts[i])
    ]
    if more:
        for i, a in more:
            f.check(a, prefixes[i][2], f"object header at {a}")
        tails = f.read_many(
            [(a + len(firsts[i]), prefixes[i][2] - len(firsts[i])) for i, a in more],
            "object header",
        )
        for (i, _), t in zip(more, tails):
            firsts[i] = firsts[i] + t
    out: list[ObjectHeader] = []
    pending: list[tuple[ObjectHeader, int, int]] = []
    _verify(
        f,
        [
            (f"object header at {a}", d[:end])
            for a, d, (h, _, end) in zip(addresses, firsts, prefixes)
            if h.version == 2
        ],
    )
    for a, data, (hdr, start, end) in zip(addresses, firsts, prefixes):
        what = f"object header at {a}"
        for ca, cl in _messages(f, hdr, data, start, end, what):
            pending.append((hdr, ca, cl))
        out.append(hdr)
    seen: set[int] = set()
    fetched: list[tuple[int, int]] = []
    rounds = 0
    while pending:
        rounds += 1
        batch = [(h, a, n) for h, a, n in pending if a not in seen]
        seen.update(a for _, a, _ in batch)
        if rounds > _MAX_BLOCKS or len(seen) > _MAX_BLOCKS * max(1, len(addresses)):
            raise f.corrupt("object header", "too many continuation blocks (a cycle?)")
        blocks = _read_blocks(f, [(a, n) for _, a, n in batch], fetched)
        pending = []
        _verify(
            f,
            [
                (f"object header continuation block at {a}", d)
                for (h, a, _), d in zip(batch, blocks)
                if h.version == 2
            ],
        )
        for (hdr, a, n), data in zip(batch, blocks):
            what = f"object header continuation block at {a}"
            if hdr.version == 2:
                if data[:4] != b"OCHK":
                    raise f.corrupt(what, "no OCHK signature")
                conts = _messages(f, hdr, data, 4, n, what)
            else:
                conts = _messages(f, hdr, data, 0, n, what)
            pending.extend((hdr, ca, cl) for ca, cl in conts)
    return out


def _read_blocks(
    f: H5File, ranges: list[tuple[int, int]], fetched: list[tuple[int, int]]
) -> list[bytes]:
    """Continuation blocks at ``ranges``; from a remote file with ``_AROUND`` bytes either
    side of each in the same request, kept in the source's cache.

    A chain of continuation blocks usually lies in one place (the library appends a block
    when a header outgrows the last one), and netCDF-4 writes a variable's chunk-index root
    just before the block it adds later: the window brings the next links of the chain and
    that root in the request that fetches the block, instead of one round trip each.
    ``fetched`` holds the windows read so far for these headers (a block inside one is
    read exactly: a window around it would fetch a few more bytes in a request of its own).
    """
    if not getattr(f.source, "expands", False):  # a local file: read exactly
        return f.read_many(ranges, "object header continuation")
    for a, n in ranges:
        f.check(a, n, "object header continuation")
    windows = []
    for a, n in ranges:
        if any(lo <= a and a + n <= hi for lo, hi in fetched):
            windows.append((a, a + n))  # in an earlier window: cached, read exactly
        else:
            windows.append((max(0, a - _AROUND), min(f.size, a + n + _AROUND)))
    got = f.read_many([(lo, hi - lo) for lo, hi in windows], "object header continuation")
    fetched.extend(windows)
    return [d[a - lo : a - lo + n] for (a, n), (lo, _), d in zip(ranges, windows, got)]


_AROUND = 16 * 1024
"""Bytes read either side of a continuation block of a remote file (see _read_blocks)."""


def _verify(f: H5File, blocks: list[tuple[str, bytes]]) -> None:
    """Check the Jenkins lookup3 checksums (last 4 bytes) of version-2 header blocks."""
    for what, block in blocks:
        if len(block) < 4:
            raise f.corrupt(what, "truncated")
        if lookup3(block[:-4]) != int.from_bytes(block[-4:], "little"):
            raise f.corrupt(what, "checksum mismatch")


def shared_address(f: H5File, body: bytes, what: str) -> int:
    """The object header address a shared message points at (committed datatypes)."""
    c = Cursor(body, f, what)
    version = c.u8()
    kind = c.u8()
    if version == 1:
        c.skip(6)
        addr = c.addr()
    elif version == 2:
        addr = c.addr()
    elif version == 3:
        if kind != 2:
            raise Fallback("shared object header messages stored in the shared message heap")
        addr = c.addr()
    else:
        raise f.corrupt(what, f"shared message version {version}")
    if addr is None:
        raise f.corrupt(what, "shared message with an undefined address")
    return addr
