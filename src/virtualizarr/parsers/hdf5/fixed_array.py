"""Fixed array chunk indexes (layout version 4, index type 3).

One element per chunk of the dataset's maximum extent, numbered in C order of that grid:
the chunk's address (and, for filtered datasets, its stored size and filter mask). The
header (``"FAHD"``) gives the element size, the page size and the data block's address;
the data block (``"FADB"``) holds the elements, either directly or, when there are more
than ``2**page_bits`` of them, in pages of ``2**page_bits`` elements each with its own
checksum and a bitmap of which pages were ever written. Two reads: header, data block.

>>> # read_fixed_array_chunks(ctx, header_address)
"""

from __future__ import annotations

import math

import numpy as np

from virtualizarr.parsers.hdf5.index_common import (
    ChunkTable,
    IndexContext,
    corrupt,
    empty_table,
    le_uint,
    unravel,
)
from virtualizarr.parsers.hdf5.lookup3 import lookup3, verify_checksums

__all__ = ["decode_chunk_elements", "read_fixed_array_chunks"]

_HEADER = "fixed array header of the chunk index"
_DBLOCK = "fixed array data block of the chunk index"


def decode_chunk_elements(
    ctx: IndexContext, raw: np.ndarray, client: int, element_size: int, structure: str, address: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(addresses, sizes, masks)`` of ``(n, element_size)`` uint8 chunk elements.

    Client 0 elements are addresses of unfiltered chunks (full chunk size, mask 0);
    client 1 elements add the stored size (``element_size - sizeof_offsets - 4`` bytes)
    and the filter mask.
    """
    so = ctx.so
    addrs = le_uint(raw[:, :so])
    if client == 0:
        if element_size != so:
            raise corrupt(ctx, structure, address, f"element size {element_size} != {so}")
        return (
            addrs,
            np.full(len(addrs), ctx.chunk_nbytes, np.uint64),
            np.zeros(len(addrs), np.uint32),
        )
    if client == 1:
        width = element_size - so - 4
        if not 1 <= width <= 8:
            raise corrupt(ctx, structure, address, f"element size {element_size} is invalid")
        sizes = le_uint(raw[:, so : so + width])
        masks = le_uint(raw[:, so + width : so + width + 4]).astype(np.uint32)
        return addrs, sizes, masks
    raise corrupt(ctx, structure, address, f"client ID {client} (expected 0 or 1)")


def _check_checksum(ctx: IndexContext, structure: str, address: int, block: bytes) -> None:
    if not ctx.verify_checksums:
        return
    stored = int.from_bytes(block[-4:], "little")
    if lookup3(block[:-4]) != stored:
        raise corrupt(ctx, structure, address, "checksum mismatch")


def read_fixed_array_chunks(ctx: IndexContext, address: int) -> ChunkTable:
    """Every allocated chunk of the fixed array index whose header is at ``address``."""
    so, sl = ctx.so, ctx.sl
    hdr_size = 8 + sl + so + 4
    hdr = ctx.read(_HEADER, address, hdr_size)
    if hdr[:4] != b"FAHD":
        raise corrupt(ctx, _HEADER, address, f"signature {hdr[:4]!r} instead of b'FAHD'")
    if hdr[4] != 0:
        raise corrupt(ctx, _HEADER, address, f"unknown version {hdr[4]}")
    _check_checksum(ctx, _HEADER, address, hdr)
    client, esize, page_bits = hdr[5], hdr[6], hdr[7]
    nelmts = int.from_bytes(hdr[8 : 8 + sl], "little")
    dblock = int.from_bytes(hdr[8 + sl : 8 + sl + so], "little")
    grid = ctx.max_grid(unlimited_ok=False, structure=_HEADER)
    if nelmts != math.prod(grid):
        raise corrupt(
            ctx, _HEADER, address,
            f"{nelmts} elements for a maximum chunk grid of {math.prod(grid)} chunks",
        )  # fmt: skip
    if dblock == int(ctx.undefined) or nelmts == 0:
        return empty_table(ctx)
    if esize == 0 or nelmts * esize > ctx.file_size:
        raise corrupt(ctx, _HEADER, address, f"{nelmts} elements of {esize} bytes cannot fit")

    prefix = 6 + so
    page_nelmts = 1 << page_bits if page_bits < 63 else nelmts + 1
    if nelmts <= page_nelmts:  # not paged: prefix, elements, checksum
        size = prefix + nelmts * esize + 4
        block = ctx.read(_DBLOCK, dblock, size)
        _check_dblock_prefix(ctx, block, client, address, dblock)
        _check_checksum(ctx, _DBLOCK, dblock, block)
        raw = np.frombuffer(block, np.uint8, count=nelmts * esize, offset=prefix)
        elements = raw.reshape(nelmts, esize)
        index = np.arange(nelmts, dtype=np.int64)
    else:
        npages = -(-nelmts // page_nelmts)
        bitmap_size = -(-npages // 8)
        head = prefix + bitmap_size + 4
        last = nelmts - (npages - 1) * page_nelmts
        page_bytes = page_nelmts * esize + 4
        size = head + (npages - 1) * page_bytes + last * esize + 4
        block = ctx.read(_DBLOCK, dblock, size)
        _check_dblock_prefix(ctx, block, client, address, dblock)
        _check_checksum(ctx, _DBLOCK, dblock, block[:head])
        bits = np.unpackbits(np.frombuffer(block, np.uint8, count=bitmap_size, offset=prefix))
        written = np.flatnonzero(bits[:npages])  # bit 7 of byte 0 is page 0
        elements, index = _pages(
            ctx, block, head, written, npages, page_nelmts, last, esize, dblock
        )
    addrs, sizes, masks = decode_chunk_elements(ctx, elements, client, esize, _DBLOCK, dblock)
    present = addrs != ctx.undefined
    coords = unravel(index[present], grid)
    table = ChunkTable.from_columns(
        ctx.chunk_shape,
        grid_coords=coords,
        offsets=addrs[present],
        lengths=sizes[present],
        filter_masks=masks[present],
    )
    ctx.check_chunks(table, _DBLOCK)
    return table


def _check_dblock_prefix(
    ctx: IndexContext, block: bytes, client: int, header: int, address: int
) -> None:
    if block[:4] != b"FADB":
        raise corrupt(ctx, _DBLOCK, address, f"signature {block[:4]!r} instead of b'FADB'")
    if block[4] != 0 or block[5] != client:
        raise corrupt(ctx, _DBLOCK, address, "version or client ID differs from the header")
    back = int.from_bytes(block[6 : 6 + ctx.so], "little")
    if back != header:
        raise corrupt(ctx, _DBLOCK, address, f"points back to header {back}, not {header}")


def _pages(
    ctx: IndexContext,
    block: bytes,
    head: int,
    written: np.ndarray,
    npages: int,
    page_nelmts: int,
    last: int,
    esize: int,
    address: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Elements (``(n, esize)`` uint8) and their indexes from the written pages."""
    page_bytes = page_nelmts * esize + 4
    buf = np.frombuffer(block, np.uint8)
    full = written[written < npages - 1]
    parts, index = [], []
    if len(full):
        # all full pages: a (npages - 1, page_bytes) view, written ones picked at once
        pages = buf[head : head + (npages - 1) * page_bytes].reshape(npages - 1, page_bytes)[full]
        if ctx.verify_checksums:
            stored = pages[:, -4:].copy().view("<u4").reshape(-1)
            ok = verify_checksums([p[:-4].tobytes() for p in pages], stored)
            if not ok.all():
                bad = int(full[np.argmin(ok)])
                raise corrupt(ctx, _DBLOCK, address, f"checksum mismatch in page {bad}")
        parts.append(pages[:, :-4].reshape(-1, esize))
        index.append((full[:, None] * page_nelmts + np.arange(page_nelmts)[None, :]).reshape(-1))
    if len(written) and written[-1] == npages - 1:
        start = head + (npages - 1) * page_bytes
        page = block[start : start + last * esize + 4]
        _check_checksum(ctx, _DBLOCK, address, page)
        parts.append(np.frombuffer(page, np.uint8, count=last * esize).reshape(last, esize))
        index.append((npages - 1) * page_nelmts + np.arange(last))
    if not parts:
        return np.zeros((0, esize), np.uint8), np.zeros(0, np.int64)
    return np.concatenate(parts), np.concatenate(index).astype(np.int64)
