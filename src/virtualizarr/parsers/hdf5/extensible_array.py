"""Extensible array chunk indexes (layout version 4, index type 4): one unlimited axis.

Elements (chunk address, and for filtered datasets stored size and filter mask) are
numbered in C order of the chunk grid with the unlimited axis moved first, so appending
along it appends elements. The array grows in blocks: the header (``"EAHD"``) points to
the index block (``"EAIB"``), which holds the first few elements, the addresses of the
first data blocks and of super blocks (``"EASB"``); super blocks hold data block
addresses (and, when data blocks are paged, a bitmap of written pages); data blocks
(``"EADB"``) hold elements, directly or in checksummed pages.

Super block ``s`` has ``2**(s // 2)`` data blocks of ``2**((s + 1) // 2) * min_elements``
elements each. Four batches: header, index block, super blocks, data blocks.

>>> # read_extensible_array_chunks(ctx, header_address)
"""

from __future__ import annotations

import math

import numpy as np

from virtualizarr.parsers.hdf5.fixed_array import decode_chunk_elements
from virtualizarr.parsers.hdf5.index_common import (
    ChunkTable,
    IndexContext,
    corrupt,
    empty_table,
    le_uint,
    unravel,
)
from virtualizarr.parsers.hdf5.lookup3 import lookup3, verify_checksums

__all__ = ["read_extensible_array_chunks"]

_HEADER = "extensible array header of the chunk index"
_IBLOCK = "extensible array index block of the chunk index"
_SBLOCK = "extensible array super block of the chunk index"
_DBLOCK = "extensible array data block of the chunk index"


def _checksum(ctx: IndexContext, structure: str, address: int, block: bytes) -> None:
    if ctx.verify_checksums and lookup3(block[:-4]) != int.from_bytes(block[-4:], "little"):
        raise corrupt(ctx, structure, address, "checksum mismatch")


def _log2(n: int) -> int:
    return n.bit_length() - 1


def read_extensible_array_chunks(ctx: IndexContext, address: int) -> ChunkTable:
    """Every allocated chunk of the extensible array index whose header is at ``address``."""
    so, sl = ctx.so, ctx.sl
    hdr = ctx.read(_HEADER, address, 12 + 6 * sl + so + 4)
    if hdr[:4] != b"EAHD":
        raise corrupt(ctx, _HEADER, address, f"signature {hdr[:4]!r} instead of b'EAHD'")
    if hdr[4] != 0:
        raise corrupt(ctx, _HEADER, address, f"unknown version {hdr[4]}")
    _checksum(ctx, _HEADER, address, hdr)
    client, esize, max_bits, iblk_elmts, dblk_min, sblk_min_ptrs, page_bits = hdr[5:12]
    stats = [int.from_bytes(hdr[12 + i * sl : 12 + (i + 1) * sl], "little") for i in range(6)]
    max_idx_set = stats[4]
    iblock_addr = int.from_bytes(hdr[12 + 6 * sl : 12 + 6 * sl + so], "little")
    for name, v in (("data block minimum", dblk_min), ("super block minimum", sblk_min_ptrs)):
        if v == 0 or v & (v - 1):
            raise corrupt(ctx, _HEADER, address, f"{name} {v} is not a power of two")
    if esize == 0 or not 0 < max_bits <= 64 or _log2(dblk_min) > max_bits:
        raise corrupt(ctx, _HEADER, address, "invalid creation parameters")
    if iblock_addr == int(ctx.undefined) or max_idx_set == 0:
        return empty_table(ctx)
    if max_idx_set > 1 << max_bits:  # (elements are only allocated for blocks read)
        raise corrupt(ctx, _HEADER, address, f"claims {max_idx_set} elements")

    # geometry of the super blocks (HDF5's "sblk_info")
    nsblks = 1 + max_bits - _log2(dblk_min)
    s = np.arange(nsblks)
    ndblks = np.left_shift(1, s // 2).astype(np.int64)
    dblk_nelmts = (np.left_shift(1, (s + 1) // 2) * dblk_min).astype(np.int64)
    start_idx = np.concatenate([[0], np.cumsum(ndblks * dblk_nelmts)[:-1]])
    start_dblk = np.concatenate([[0], np.cumsum(ndblks)[:-1]])
    iblock_nsblks = 2 * _log2(sblk_min_ptrs)
    ndblk_addrs = 2 * (sblk_min_ptrs - 1)
    nsblk_addrs = max(nsblks - iblock_nsblks, 0)
    arr_off = (max_bits + 7) // 8
    page_nelmts = 1 << page_bits

    # index block: prefix, elements, data block addresses, super block addresses, checksum
    prefix = 6 + so
    size = prefix + iblk_elmts * esize + (ndblk_addrs + nsblk_addrs) * so + 4
    ib = ctx.read(_IBLOCK, iblock_addr, size)
    _check_prefix(ctx, _IBLOCK, ib, b"EAIB", client, address, iblock_addr)
    _checksum(ctx, _IBLOCK, iblock_addr, ib)
    buf = np.frombuffer(ib, np.uint8)
    elements = [buf[prefix : prefix + iblk_elmts * esize].reshape(iblk_elmts, esize)]
    indexes = [np.arange(iblk_elmts, dtype=np.int64)]
    pos = prefix + iblk_elmts * esize
    dblk_addrs = le_uint(buf[pos : pos + ndblk_addrs * so].reshape(ndblk_addrs, so))
    pos += ndblk_addrs * so
    sblk_addrs = le_uint(buf[pos : pos + nsblk_addrs * so].reshape(nsblk_addrs, so))
    undefined = ctx.undefined
    wanted = max_idx_set - iblk_elmts  # elements needed beyond the index block

    # data blocks listed in the index block: (address, first element, elements, page bitmap)
    dblocks: list[tuple[int, int, int, np.ndarray | None]] = []
    for d in range(ndblk_addrs):
        sb = int(np.searchsorted(start_dblk[:iblock_nsblks], d, side="right") - 1)
        first = int(start_idx[sb] + (d - start_dblk[sb]) * dblk_nelmts[sb])
        if first >= wanted or dblk_addrs[d] == undefined:
            continue
        if dblk_nelmts[sb] > page_nelmts:
            raise corrupt(ctx, _IBLOCK, iblock_addr, "a paged data block in the index block")
        dblocks.append((int(dblk_addrs[d]), first, int(dblk_nelmts[sb]), None))

    # super blocks: one batch
    sb_list = []
    for j in range(nsblk_addrs):
        sb = iblock_nsblks + j
        if start_idx[sb] >= wanted or sblk_addrs[j] == undefined:
            continue
        sb_list.append((int(sblk_addrs[j]), sb))
    if sb_list:
        ranges = []
        for a, sb in sb_list:
            paged = dblk_nelmts[sb] > page_nelmts
            npages = int(dblk_nelmts[sb] // page_nelmts) if paged else 0
            bitmap = int(ndblks[sb]) * (-(-npages // 8))
            ranges.append((a, prefix + arr_off + bitmap + int(ndblks[sb]) * so + 4))
        blocks = ctx.read_many(_SBLOCK, ranges)
        for (a, sb), block in zip(sb_list, blocks):
            _check_prefix(ctx, _SBLOCK, block, b"EASB", client, address, a)
            _checksum(ctx, _SBLOCK, a, block)
            paged = dblk_nelmts[sb] > page_nelmts
            npages = int(dblk_nelmts[sb] // page_nelmts) if paged else 0
            bm_size = -(-npages // 8)
            p = prefix + arr_off
            # one bit per (data block, page), first data block's pages first, MSB first
            bits = np.unpackbits(
                np.frombuffer(block, np.uint8, count=int(ndblks[sb]) * bm_size, offset=p)
            )
            p += int(ndblks[sb]) * bm_size
            n = int(ndblks[sb])
            addrs = le_uint(np.frombuffer(block, np.uint8, count=n * so, offset=p).reshape(n, so))
            for k in range(n):
                first = int(start_idx[sb] + k * dblk_nelmts[sb])
                if first >= wanted or addrs[k] == undefined:
                    continue
                bm = bits[k * npages : (k + 1) * npages] if paged else None
                dblocks.append((int(addrs[k]), first, int(dblk_nelmts[sb]), bm))

    # data blocks: one batch
    if dblocks:
        ranges = []
        for a, _first, n, bm in dblocks:
            if bm is None:
                ranges.append((a, prefix + arr_off + n * esize + 4))
            else:
                ranges.append(
                    (a, prefix + arr_off + 4 + (n // page_nelmts) * (page_nelmts * esize + 4))
                )
        blocks = ctx.read_many(_DBLOCK, ranges)
        # checksums are verified at the end, all blocks (pages) of one length at once
        hashed: list[bytes] = []
        stored: list[int] = []
        where_: list[int] = []
        for (a, first, n, bm), block in zip(dblocks, blocks):
            _check_prefix(ctx, _DBLOCK, block, b"EADB", client, address, a)
            base = iblk_elmts + first
            head = prefix + arr_off
            if bm is None:
                hashed.append(block[:-4])
                stored.append(int.from_bytes(block[-4:], "little"))
                where_.append(a)
                elements.append(
                    np.frombuffer(block, np.uint8, count=n * esize, offset=head).reshape(n, esize)
                )
                indexes.append(base + np.arange(n, dtype=np.int64))
                continue
            hashed.append(block[:head])
            stored.append(int.from_bytes(block[head : head + 4], "little"))
            where_.append(a)
            npages = n // page_nelmts
            written = np.flatnonzero(bm)
            if not len(written):
                continue
            page_bytes = page_nelmts * esize + 4
            pages = np.frombuffer(block, np.uint8, offset=head + 4)
            pages = pages.reshape(npages, page_bytes)[written]
            if ctx.verify_checksums:
                hashed.extend(bytes(pages[i, :-4]) for i in range(len(pages)))
                stored.extend(pages[:, -4:].copy().view("<u4").reshape(-1).tolist())
                where_.extend([a] * len(pages))
            elements.append(pages[:, :-4].reshape(-1, esize))
            idx = written[:, None] * page_nelmts + np.arange(page_nelmts)[None, :]
            indexes.append(base + idx.reshape(-1).astype(np.int64))
        if ctx.verify_checksums and hashed:
            ok = verify_checksums(hashed, np.array(stored, np.uint32))
            if not ok.all():
                raise corrupt(ctx, _DBLOCK, where_[int(np.argmin(ok))], "checksum mismatch")

    raw = np.concatenate(elements) if len(elements) > 1 else elements[0]
    index = np.concatenate(indexes)
    addrs, sizes, masks = decode_chunk_elements(ctx, raw, client, esize, _DBLOCK, address)
    present = (addrs != undefined) & (index < max_idx_set)
    return _table(ctx, index[present], addrs[present], sizes[present], masks[present])


def _check_prefix(
    ctx: IndexContext,
    structure: str,
    block: bytes,
    sig: bytes,
    client: int,
    header: int,
    address: int,
) -> None:
    if block[:4] != sig:
        raise corrupt(ctx, structure, address, f"signature {block[:4]!r} instead of {sig!r}")
    if block[4] != 0 or block[5] != client:
        raise corrupt(ctx, structure, address, "version or client ID differs from the header")
    back = int.from_bytes(block[6 : 6 + ctx.so], "little")
    if back != header:
        raise corrupt(ctx, structure, address, f"points back to header {back}, not {header}")


def _table(
    ctx: IndexContext, index: np.ndarray, addrs: np.ndarray, sizes: np.ndarray, masks: np.ndarray
) -> ChunkTable:
    """Rows from element indexes: C order with the unlimited axis first ("swizzled")."""
    unlimited = [i for i, m in enumerate(ctx.maxshape) if m is None or m < 0 or m >= (1 << 63)]
    if len(unlimited) != 1:
        raise corrupt(
            ctx, _HEADER, 0,
            f"an extensible array indexes a dataset with {len(unlimited)} unlimited axes (needs 1)",
        )  # fmt: skip
    u = unlimited[0]
    grid = ctx.max_grid(unlimited_ok=True, structure=_HEADER)
    others = tuple(g for i, g in enumerate(grid) if i != u)
    per_step = math.prod(others)
    swizzled = np.concatenate(
        [(index // per_step)[:, None], unravel(index % per_step, others)], axis=1
    )
    order = [u] + [i for i in range(ctx.ndim) if i != u]
    coords = np.empty_like(swizzled)
    coords[:, order] = swizzled
    table = ChunkTable.from_columns(
        ctx.chunk_shape, grid_coords=coords, offsets=addrs, lengths=sizes, filter_masks=masks
    )
    ctx.check_chunks(table, _DBLOCK)
    return table
