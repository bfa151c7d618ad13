"""The IFD chain of a TIFF file, read with every count and offset checked against its size.

tifffile parses the tags; this module finds where they are first, so that a remote file
costs few round trips: the chain of IFDs is followed (one read per IFD that is not
already fetched; a COG keeps them all in its first bytes), then the values of every IFD's
out-of-line tags are fetched in one concurrent batch (``read_many``). tifffile then reads
everything from the source's cache.

>>> import struct
>>> ifd = struct.pack("<H", 1) + struct.pack("<HHII", 256, 4, 1, 7) + struct.pack("<I", 0)
>>> scan_ifds(b"II*\\x00" + struct.pack("<I", 8) + ifd, "mem.tif")
IfdScan(byteorder='<', bigtiff=False, ifds=[8], values=[])
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from virtualizarr.errors import CorruptFileError, ParserError

__all__ = ["IfdScan", "TYPE_SIZES", "scan_ifds", "walk_ifds"]

TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
              13: 4, 16: 8, 17: 8, 18: 8}  # fmt: skip
"""Bytes per value of each TIFF field type (BYTE, ASCII, SHORT, LONG, RATIONAL, ..., IFD8)."""

MAX_IFDS = 1 << 16
"""More IFDs than this in one file is a loop or garbage (tifffile stops at 2**32)."""


@dataclass
class IfdScan:
    """Byte order, BigTIFF or not, the IFD offsets in chain order, and out-of-line values."""

    byteorder: str
    bigtiff: bool
    ifds: list[int] = field(default_factory=list)
    values: list[tuple[int, int]] = field(default_factory=list)
    """``(offset, length)`` of every tag value stored outside its IFD entry."""


def _header(head: bytes, url: str) -> tuple[str, bool, int]:
    if len(head) < 8 or head[:2] not in (b"II", b"MM"):
        raise ParserError(f"{url} is not a TIFF file (no II/MM byte-order mark).")
    order = "<" if head[:2] == b"II" else ">"
    (version,) = struct.unpack(order + "H", head[2:4])
    if version == 42:
        return order, False, struct.unpack(order + "I", head[4:8])[0]
    if version == 43 and len(head) >= 16:
        size, zero, first = struct.unpack(order + "HHQ", head[4:16])
        if size == 8 and zero == 0:
            return order, True, first
    raise ParserError(f"{url} is not a TIFF file (version {version}).")


def walk_ifds(
    read: Callable[[int, int], bytes], size: int, url: str, *, head: bytes | None = None
) -> IfdScan:
    """Follow the IFD chain of the TIFF ``url`` (``size`` bytes) through ``read(offset, n)``.

    Raises :class:`ParserError` when the header is not TIFF and :class:`CorruptFileError`
    when the first IFD lies outside the file. A later IFD offset outside the file, or one
    seen before (a loop), ends the chain, as in tifffile.
    """
    head = head if head is not None and len(head) >= 16 else read(0, 16)
    order, big, offset = _header(head, url)
    count_fmt, entry, next_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    count_size = 8 if big else 2
    inline = 8 if big else 4
    scan = IfdScan(order, big)
    seen: set[int] = set()
    while offset:
        if offset < 8 or offset + count_size > size:
            if not scan.ifds:
                raise CorruptFileError(
                    f"{url}: its first IFD offset {offset} is outside the file ({size} bytes)."
                )
            break
        if offset in seen or len(seen) >= MAX_IFDS:
            break
        seen.add(offset)
        (n,) = struct.unpack(order + count_fmt, read(offset, count_size).ljust(count_size, b"\0"))
        table = offset + count_size
        if n > (size - table) // entry:
            if not scan.ifds:
                raise CorruptFileError(
                    f"{url}: IFD at {offset} claims {n} entries, more than the file holds."
                )
            break
        scan.ifds.append(offset)
        raw = read(table, n * entry + inline * 2)
        for k in range(n):
            e = raw[k * entry : (k + 1) * entry]
            if len(e) < entry:
                break
            if big:
                _tag, typ, count, value = struct.unpack(order + "HHQQ", e)
            else:
                _tag, typ, count, value = struct.unpack(order + "HHII", e)
            nbytes = TYPE_SIZES.get(typ, 0) * count
            if nbytes > inline and value < size:
                scan.values.append((value, min(nbytes, size - value)))
        nxt = raw[n * entry : n * entry + inline]
        if len(nxt) < inline:
            break
        (offset,) = struct.unpack(order + next_fmt, nxt)
    return scan


def scan_ifds(data: bytes, url: str) -> IfdScan:
    """:func:`walk_ifds` over bytes in memory."""
    return walk_ifds(lambda o, n: data[o : o + n], len(data), url, head=data[:16])
