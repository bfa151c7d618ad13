"""Version 1 B-trees of raw data chunks (node type 1): the chunk index of layout versions 1-3.

A node is ``"TREE"``, type, level, entries used, left and right sibling addresses, then
``key child key child ... key``; a key of a chunk is its stored size, its filter mask and
its element offset along every dimension (plus a trailing 0 for the element size
dimension). Children of level-0 nodes are chunks, of higher levels nodes one level down.

All the nodes of one level are read in one ``read_many`` (each node read at the size of
a full node, ``2 K`` entries, so one batch usually suffices) and decoded together with a
numpy structured dtype; levels strictly decrease, so a cycle in the tree cannot loop.
From a remote source the root's ``read_many`` fetches the whole tree: each node's children
are asked for as soon as the node arrives (``expand``), so a tree of any depth costs one
batch after the request that brought the root, and the levels are then read from the cache.

>>> # read_btree1_chunks(ctx, root_address, ndims_stored=4, k=32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from virtualizarr.errors import UnsupportedFeatureError
from virtualizarr.parsers.hdf5.index_common import (
    ChunkTable,
    IndexContext,
    corrupt,
    empty_table,
    increasing_rows,
    stack_rows,
)

__all__ = ["prefetch_btree1_trees", "read_btree1_chunks"]

_STRUCTURE = "v1 B-tree node of the chunk index"
_MAX_LEVEL = 64  # a tree of 64 levels of >= 2 entries would index more chunks than exist


def _record_dtype(ndims_stored: int, so: int) -> np.dtype:
    """One ``key child`` pair of a type-1 node."""
    return np.dtype(
        [
            ("size", "<u4"),
            ("mask", "<u4"),
            ("offsets", "<u8", (ndims_stored,)),
            ("child", f"<u{so}"),
        ]
    )


def read_btree1_chunks(
    ctx: IndexContext, root: int, *, ndims_stored: int, k: int = 32, prefetch: bool = True
) -> ChunkTable:
    """Every chunk of the v1 B-tree rooted at ``root``, read level by level.

    ``prefetch=False`` skips fetching the tree ahead with the root (it was, by
    :func:`prefetch_btree1_trees`)."""
    so = ctx.so
    if so not in (2, 4, 8):
        raise UnsupportedFeatureError(f"{ctx.where}: addresses of {so} bytes are not supported")
    rec = _record_dtype(ndims_stored, so)
    header = 8 + 2 * so
    key_size = 8 + 8 * ndims_stored
    capacity = max(2 * int(k), 1)
    undefined = int(ctx.undefined)

    addresses = np.array([root], np.uint64)
    expected_level: int | None = None
    visited = 0
    leaves: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    # a remote reader fetches the whole tree with the root's batch, each node's children
    # asked for as soon as it arrives (no wait for the rest of its level); the levels are
    # then read, checked and decoded below from its cache
    expand = _prefetcher(ctx.file_size, header, rec, key_size, capacity) if prefetch else None
    while len(addresses):
        visited += len(addresses)
        if visited * header > ctx.file_size:
            raise corrupt(ctx, _STRUCTURE, root, "more nodes than the file can hold")
        rows, capacity = _read_level(ctx, addresses, header, rec, key_size, capacity, expand)
        expand = None
        ctx.check_signature(_STRUCTURE, rows, b"TREE", addresses)
        node_type = rows[:, 4]
        if (node_type != 1).any():
            i = int(np.argmax(node_type != 1))
            raise corrupt(
                ctx, _STRUCTURE, int(addresses[i]),
                f"node type {int(node_type[i])} (expected 1, raw data chunks)",
            )  # fmt: skip
        levels = rows[:, 5]
        level = int(levels[0])
        if (levels != level).any() or (expected_level is not None and level != expected_level):
            i = int(np.argmax(levels != (level if expected_level is None else expected_level)))
            raise corrupt(
                ctx, _STRUCTURE, int(addresses[i]),
                f"level {int(levels[i])} where level {expected_level if expected_level is not None else level} was expected",
            )  # fmt: skip
        if level > _MAX_LEVEL:
            raise corrupt(ctx, _STRUCTURE, int(addresses[0]), f"level {level} is implausible")
        used = np.ascontiguousarray(rows[:, 6:8]).view("<u2").reshape(-1).astype(np.int64)
        # a node as one structured record (no copy): header, ``capacity`` entries, the rest
        node = np.dtype(
            [("head", f"V{header}"), ("entries", rec, (capacity,)),
             ("tail", f"V{rows.shape[1] - header - capacity * rec.itemsize}")]
        )  # fmt: skip
        records = rows.reshape(-1).view(node)["entries"]
        valid = np.arange(capacity)[None, :] < used[:, None]
        full = bool(valid.all())

        def pick(a: np.ndarray, valid: np.ndarray = valid, full: bool = full) -> np.ndarray:
            """The used entries of a (node, entry, ...) column: a flat view when all are."""
            return a.reshape(-1, *a.shape[2:]) if full else a[valid]

        if level == 0:
            leaves.append((pick(records["child"]), pick(records["size"]), pick(records["mask"]),
                           pick(records["offsets"][:, :, : ctx.ndim])))  # fmt: skip
            break
        children = pick(records["child"]).astype(np.uint64)
        if len(children) and (
            (children == np.uint64(undefined)).any() or int(children.max()) >= ctx.file_size
        ):
            bad = int(children[(children == np.uint64(undefined)) | (children >= ctx.file_size)][0])
            raise corrupt(ctx, _STRUCTURE, int(addresses[0]), f"a child points to byte {bad}")
        addresses = children
        expected_level = level - 1
    if not leaves or not len(leaves[0][0]):
        return empty_table(ctx)
    child, size, mask, element_offsets = leaves[0]
    if (element_offsets >= np.uint64(1 << 62)).any():
        raise corrupt(ctx, _STRUCTURE, root, "a chunk's element offset is implausible")
    grid, rest = np.divmod(element_offsets.astype(np.int64), np.asarray(ctx.chunk_shape, np.int64))
    if rest.any():
        raise corrupt(ctx, _STRUCTURE, root, "a chunk's element offset is not on the chunk grid")
    if not increasing_rows(grid):  # keys of a B-tree, read in order, must increase
        raise corrupt(ctx, _STRUCTURE, root, "its chunk keys are out of order or repeated")
    table = ChunkTable.from_columns(
        ctx.chunk_shape, grid_coords=grid, offsets=child, lengths=size, filter_masks=mask
    )
    ctx.check_chunks(table, _STRUCTURE)
    return table


def prefetch_btree1_trees(
    reader: Any, trees: list[tuple[int, int, int]], *, so: int, file_size: int
) -> None:
    """Fetch the v1 B-trees rooted at ``trees`` (``(root, ndims_stored, k)`` each: the
    chunk indexes of many datasets) in one batch, into a remote reader's cache, so that
    :func:`read_btree1_chunks` then reads them without a request. Nothing is checked or
    decoded here (that is :func:`read_btree1_chunks`' job); a reader that does not
    ``expands`` (a local file) is left alone.

    >>> # prefetch_btree1_trees(source, [(root_a, 4, 32), (root_b, 2, 32)], so=8, file_size=n)
    """
    if so not in (2, 4, 8) or not getattr(reader, "expands", False):
        return
    header = 8 + 2 * so
    owner: dict[int, Callable[[int, bytes], list[tuple[int, int]]]] = {}
    ranges = []
    for root, ndims_stored, k in trees:
        if not 0 <= root < file_size or root in owner:
            continue
        rec = _record_dtype(ndims_stored, so)
        key_size = 8 + 8 * ndims_stored
        capacity = max(2 * int(k), 1)
        owner[root] = _prefetcher(file_size, header, rec, key_size, capacity)
        ranges.append((root, min(header + capacity * rec.itemsize + key_size, file_size - root)))

    def route(address: int, data: bytes) -> list[tuple[int, int]]:
        """Each node expanded by the expander of its tree (trees have their own shapes)."""
        expand = owner.get(address)
        if expand is None:
            return []
        out = expand(address, data)
        for child, _ in out:
            owner.setdefault(child, expand)
        return out

    if ranges:
        reader.read_many(ranges, expand=route)


def _prefetcher(
    file_size: int, header: int, rec: np.dtype, key_size: int, capacity: int
) -> Callable[[int, bytes], list[tuple[int, int]]]:
    """``expand(address, node bytes)`` for ``read_many``: the ranges of a node's children,
    as :func:`_read_level` will ask for them (none for a leaf).

    Only a guess ahead of the checks: a node that does not look sound (signature, type,
    a level other than one below its parent's) expands to nothing, and the level-by-level
    read raises on it. Levels strictly decrease, so a cycle cannot loop.
    """
    node_bytes = header + capacity * rec.itemsize + key_size
    levels: dict[int, int] = {}  # child address -> the level its parent says it has
    limit = file_size // header  # no more nodes than the file can hold
    calls = 0

    def expand(address: int, data: bytes) -> list[tuple[int, int]]:
        nonlocal calls
        calls += 1
        if calls > limit or len(data) < header or data[:4] != b"TREE" or data[4] != 1:
            return []
        level = data[5]
        if level == 0 or level > _MAX_LEVEL or levels.get(address, level) != level:
            return []
        fits = (len(data) - header) // rec.itemsize
        n = min(int.from_bytes(data[6:8], "little"), fits, capacity)
        if n <= 0:
            return []
        children = np.frombuffer(data, rec, count=n, offset=header)["child"]
        out = []
        for child in children.tolist():
            if child < file_size:  # the undefined address is larger
                levels.setdefault(child, level - 1)
                out.append((child, min(node_bytes, file_size - child)))
        return out

    return expand


def _read_level(
    ctx: IndexContext,
    addresses: np.ndarray,
    header: int,
    rec: np.dtype,
    key_size: int,
    capacity: int,
    expand: Callable[[int, bytes], list[tuple[int, int]]] | None = None,
) -> tuple[np.ndarray, int]:
    """The nodes at ``addresses`` as ``(m, node_bytes)`` uint8, re-read larger if needed.

    Nodes are read at the size of ``capacity`` entries, clipped at the end of the file.
    A node using more entries than that (the file's K is larger than assumed) makes the
    whole level be read again at the right size (unless that would read far more than the
    nodes hold: then a node's entry count is corrupt).
    """
    while True:
        node_bytes = header + capacity * rec.itemsize + key_size
        ranges = [(int(a), min(node_bytes, ctx.file_size - int(a))) for a in addresses]
        for a, n in ranges:
            if n < header:
                raise corrupt(ctx, _STRUCTURE, a, "it lies past the end of the file")
        rows = stack_rows(ctx.read_many(_STRUCTURE, ranges, expand), node_bytes)
        used = np.ascontiguousarray(rows[:, 6:8]).view("<u2").reshape(-1).astype(np.int64)
        most = int(used.max()) if len(used) else 0
        if most > capacity:
            # nodes of one level are about equally full in a sound tree: a level read at
            # the largest node's size must not cost much more than its nodes' own sizes
            need = header + used * rec.itemsize + key_size
            total = int(need.sum())
            wanted = len(addresses) * (header + most * rec.itemsize + key_size)
            if total > ctx.file_size or wanted > max(4 * total, 64 << 20):
                i = int(np.argmax(used))
                raise corrupt(
                    ctx, _STRUCTURE, int(addresses[i]),
                    f"it claims {most} entries, implausibly many for its level",
                )  # fmt: skip
            capacity = most
            continue
        # each node's used part must lie inside the file
        need = header + used * rec.itemsize + key_size
        avail = np.array([n for _, n in ranges], np.int64)
        if (need > avail).any():
            i = int(np.argmax(need > avail))
            raise corrupt(
                ctx, _STRUCTURE, int(addresses[i]),
                f"its {int(used[i])} entries run past the end of the file",
            )  # fmt: skip
        return rows, capacity
