"""The links of an HDF5 group, in the order h5py iterates them.

Three storages: symbol tables (a version-1 B-tree of type 0 over symbol table nodes, names
in a local heap), compact links (link messages in the group's header) and dense links
(link messages in a fractal heap, listed by a version-2 B-tree name index). h5py lists
members by creation order when the group tracks it, else by name (byte order).

>>> # [l.name for l in read_links(f, header, sb)]
"""

from __future__ import annotations

from typing import Any

from virtualizarr.parsers.hdf5.heaps import FractalHeap, btree2_records, read_local_heap
from virtualizarr.parsers.hdf5.messages import (
    Link,
    parse_dense_info,
    parse_link,
    parse_symbol_table,
)
from virtualizarr.parsers.hdf5.object_header import LINK, LINK_INFO, SYMBOL_TABLE, ObjectHeader
from virtualizarr.parsers.hdf5.superblock import Cursor, H5File

__all__ = ["is_group", "read_links"]

_MAX_NODES = 1_000_000


def is_group(hdr: ObjectHeader) -> bool:
    return any(m.type in (SYMBOL_TABLE, LINK_INFO, LINK) for m in hdr.messages)


def read_links(f: H5File, hdr: ObjectHeader, sb: Any) -> list[Link]:
    """The group's links in h5py's iteration order."""
    what = f"group at {hdr.address}"
    st = hdr.find(SYMBOL_TABLE)
    if st is not None:
        btree, heap = parse_symbol_table(f, st.body, what)
        links = _symbol_table_links(f, btree, heap, sb, what)
        return sorted(links, key=lambda link: link.name)
    info_msg = hdr.find(LINK_INFO)
    info = parse_dense_info(f, info_msg.body, what, links=True) if info_msg else None
    links = [parse_link(f, m.body, what) for m in hdr.all(LINK)]
    if info is not None and info.heap is not None and info.name_index is not None:
        fheap = FractalHeap.read(f, info.heap)
        recs = btree2_records(f, info.name_index, what + " link name index")
        ids = [r[4 : 4 + fheap.id_len] for r in recs]  # type 5: hash, heap id
        links += [parse_link(f, body, what) for body in fheap.objects(ids)]
    if info is not None and info.tracked:
        return sorted(links, key=lambda link: link.order if link.order is not None else 0)
    return sorted(links, key=lambda link: link.name)


def _symbol_table_links(f: H5File, btree: int, heap_addr: int, sb: Any, what: str) -> list[Link]:
    heap = read_local_heap(f, heap_addr)
    so, sl = f.so, f.sl
    node_size = 8 + 2 * so + (2 * sb.group_internal_k + 1) * sl + 2 * sb.group_internal_k * so
    level = [btree]
    seen: set[int] = set()
    snods: list[int] = []
    while level:
        if len(seen) > _MAX_NODES:
            raise f.corrupt(what, "too many B-tree nodes")
        for a in level:
            if a in seen:
                raise f.corrupt(what, f"group B-tree node at {a} visited twice (a cycle)")
            seen.add(a)
        datas = f.read_many([(a, f.clamp(a, node_size)) for a in level], what + " B-tree")
        nxt: list[int] = []
        for a, data in zip(level, datas):
            c = Cursor(data, f, f"{what} B-tree node at {a}")
            if c.take(4) != b"TREE" or c.u8() != 0:
                raise f.corrupt(what, f"B-tree node at {a}: not a group node")
            lvl, n = c.u8(), c.u16()
            c.addr()
            c.addr()
            children = []
            for _ in range(n):
                c.length()
                child = c.addr()
                if child is None:
                    raise f.corrupt(what, f"B-tree node at {a}: undefined child")
                children.append(child)
            (nxt if lvl else snods).extend(children)
        level = nxt
    entry = 2 * so + 24
    snod_size = 8 + 2 * sb.group_leaf_k * entry
    links = []
    for a, data in zip(snods, f.read_many([(a, f.clamp(a, snod_size)) for a in snods], what)):
        c = Cursor(data, f, f"{what} symbol table node at {a}")
        if c.take(4) != b"SNOD":
            raise f.corrupt(what, f"symbol table node at {a}: no SNOD signature")
        c.skip(2)
        n = c.u16()
        for _ in range(n):
            name_off, addr, cache = c.u(so), c.addr(), c.u32()
            c.skip(4)
            scratch = c.take(16)
            try:
                name = heap.name(name_off)
            except ValueError as e:
                raise f.corrupt(what, str(e)) from e
            if cache == 2:
                target = heap.name(int.from_bytes(scratch[:4], "little"))
                links.append(Link(name, "soft", target=target.decode("utf-8", "surrogateescape")))
            else:
                links.append(Link(name, "hard", addr))
    return links
