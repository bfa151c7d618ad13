"""Version 2 B-trees of chunks (layout version 4, index type 5): several unlimited axes.

Record types 10 (unfiltered chunks: address, grid position) and 11 (filtered: address,
stored size, filter mask, grid position). The header (``"BTHD"``) gives the node size,
record size, depth and root; internal nodes (``"BTIN"``) hold records *and* child pointers
(address, records in the child, and below depth 1 the records of its whole subtree);
leaves (``"BTLF"``) hold records. Every node ends its used part with a lookup3 checksum.

Level by level: the nodes of one depth are fetched in one ``read_many`` (each at the node
size), their records cut out and decoded together with numpy. Depth strictly decreases
and record counts are checked against what a node can hold, so a cycle cannot loop.

>>> # read_btree2_chunks(ctx, header_address)
"""

from __future__ import annotations

import numpy as np

from virtualizarr.parsers.hdf5.index_common import (
    ChunkTable,
    IndexContext,
    corrupt,
    empty_table,
    le_uint,
    unique_rows,
)
from virtualizarr.parsers.hdf5.lookup3 import lookup3, verify_checksums

__all__ = ["read_btree2_chunks"]

_HEADER = "v2 B-tree header of the chunk index"
_NODE = "v2 B-tree node of the chunk index"
_PREFIX = 10  # signature, version, type + checksum


def _enc_size(n: int) -> int:
    """Bytes HDF5 uses to store counts up to ``n`` (``log2(n) / 8 + 1``)."""
    return (max(int(n), 1).bit_length() - 1) // 8 + 1


def read_btree2_chunks(ctx: IndexContext, address: int) -> ChunkTable:
    """Every chunk of the version 2 B-tree whose header is at ``address``."""
    so, sl = ctx.so, ctx.sl
    hdr = ctx.read(_HEADER, address, 4 + 1 + 1 + 4 + 2 + 2 + 1 + 1 + so + 2 + sl + 4)
    if hdr[:4] != b"BTHD":
        raise corrupt(ctx, _HEADER, address, f"signature {hdr[:4]!r} instead of b'BTHD'")
    if hdr[4] != 0:
        raise corrupt(ctx, _HEADER, address, f"unknown version {hdr[4]}")
    if ctx.verify_checksums and lookup3(hdr[:-4]) != int.from_bytes(hdr[-4:], "little"):
        raise corrupt(ctx, _HEADER, address, "checksum mismatch")
    btype = hdr[5]
    node_size = int.from_bytes(hdr[6:10], "little")
    rec_size = int.from_bytes(hdr[10:12], "little")
    depth = int.from_bytes(hdr[12:14], "little")
    root = int.from_bytes(hdr[16 : 16 + so], "little")
    root_nrec = int.from_bytes(hdr[16 + so : 18 + so], "little")
    total = int.from_bytes(hdr[18 + so : 18 + so + sl], "little")
    if btype not in (10, 11):
        raise corrupt(ctx, _HEADER, address, f"record type {btype} is not a chunk record (10/11)")
    ndim = ctx.ndim
    fixed = so + 8 * ndim + (4 if btype == 11 else 0)
    width = rec_size - fixed  # bytes of the stored chunk size (type 11)
    if (btype == 10 and width != 0) or (btype == 11 and not 1 <= width <= 8):
        raise corrupt(
            ctx, _HEADER, address, f"record size {rec_size} does not fit {ndim} dimensions"
        )
    if node_size <= _PREFIX + rec_size or node_size > ctx.file_size:
        raise corrupt(ctx, _HEADER, address, f"node size {node_size} is invalid")
    if depth > 64:
        raise corrupt(ctx, _HEADER, address, f"depth {depth} is implausible")
    if root == int(ctx.undefined) or total == 0 or (root_nrec == 0 and depth == 0):
        return empty_table(ctx)
    if total > ctx.file_size:
        raise corrupt(ctx, _HEADER, address, f"claims {total} records")

    # per-depth sizes (HDF5's node_info): max records and the widths of the record counts
    max_nrec = [(node_size - _PREFIX) // rec_size]
    cum_max = [max_nrec[0]]
    cum_size = [0]
    nrec_size = _enc_size(max_nrec[0])
    for d in range(1, depth + 1):
        per_child = so + nrec_size + cum_size[d - 1]
        n = (node_size - _PREFIX - per_child) // (rec_size + per_child)
        max_nrec.append(n)
        cum_max.append((n + 1) * cum_max[d - 1] + n)
        cum_size.append(_enc_size(cum_max[d]))

    records: list[bytes] = []
    addresses = [root]
    counts = [root_nrec]
    seen = 0
    for d in range(depth, -1, -1):
        # nodes do not overlap, and their records are among the ones the header counts
        if len(addresses) * node_size > ctx.file_size or seen + sum(counts) > total:
            raise corrupt(
                ctx, _NODE, addresses[0],
                f"level {d} lists {len(addresses)} nodes of {sum(counts)} records, more than "
                f"the file ({ctx.file_size} bytes, {total} records) holds",
            )  # fmt: skip
        blocks = ctx.read_many(_NODE, [(a, node_size) for a in addresses])
        sig = b"BTIN" if d > 0 else b"BTLF"
        pointers: list[bytes] = []  # child pointers of the level, decoded at once below
        hashed, stored = [], []
        per_child = so + nrec_size + (cum_size[d - 1] if d > 1 else 0)
        for a, n, block in zip(addresses, counts, blocks):
            if block[:4] != sig or block[4] != 0 or block[5] != btype:
                raise corrupt(
                    ctx, _NODE, a,
                    f"starts {bytes(block[:6])!r}, expected {sig!r} version 0 type {btype}",
                )  # fmt: skip
            if n > max_nrec[d]:
                raise corrupt(ctx, _NODE, a, f"{n} records, more than {max_nrec[d]} fit")
            end = 6 + n * rec_size
            records.append(block[6:end])
            if d > 0:
                pointers.append(block[end : end + (n + 1) * per_child])
                end += (n + 1) * per_child
            if end + 4 > node_size:
                raise corrupt(ctx, _NODE, a, "records run past the node")
            hashed.append(block[:end])
            stored.append(int.from_bytes(block[end : end + 4], "little"))
            seen += n
        if seen > total:
            raise corrupt(ctx, _HEADER, address, f"more records than the {total} it claims")
        if ctx.verify_checksums:
            ok = verify_checksums(hashed, np.array(stored, np.uint32))
            if not ok.all():
                raise corrupt(ctx, _NODE, addresses[int(np.argmin(ok))], "checksum mismatch")
        if d > 0:
            ptrs = np.frombuffer(b"".join(pointers), np.uint8).reshape(-1, per_child)
            nxt = le_uint(ptrs[:, :so])
            ctx.check_addresses(_NODE, nxt, addresses[0])
            addresses = nxt.tolist()
            counts = le_uint(ptrs[:, so : so + nrec_size]).tolist()
    if seen != total:
        raise corrupt(ctx, _HEADER, address, f"{seen} records found, {total} claimed")

    raw = np.frombuffer(b"".join(records), np.uint8).reshape(-1, rec_size)
    addrs = le_uint(raw[:, :so])
    pos = so
    if btype == 11:
        sizes = le_uint(raw[:, so : so + width])
        masks = le_uint(raw[:, so + width : so + width + 4]).astype(np.uint32)
        pos = so + width + 4
    else:
        sizes = np.full(len(raw), ctx.chunk_nbytes, np.uint64)
        masks = np.zeros(len(raw), np.uint32)
    scaled = np.ascontiguousarray(raw[:, pos : pos + 8 * ndim]).view("<u8").reshape(-1, ndim)
    if (scaled >= np.uint64(1 << 62)).any():
        raise corrupt(ctx, _NODE, address, "a chunk's grid position is implausible")
    grid = scaled.astype(np.int64)
    if not unique_rows(grid):
        raise corrupt(ctx, _NODE, address, "two records describe the same chunk")
    table = ChunkTable.from_columns(
        ctx.chunk_shape,
        grid_coords=grid,
        offsets=addrs,
        lengths=sizes,
        filter_masks=masks,
    )
    ctx.check_chunks(table, _NODE)
    return table
