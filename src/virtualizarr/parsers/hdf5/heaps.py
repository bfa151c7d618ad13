"""HDF5 heaps: local heaps (symbol table names), global heaps (variable-length data) and
fractal heaps (dense links and attributes), plus the version-2 B-tree walk that lists a
fractal heap's objects through a name index (record types 5 and 8).

>>> # names = read_local_heap(f, addr); names.name(8)
>>> # objs = FractalHeap.read(f, addr).objects(heap_ids)
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from functools import cached_property

from virtualizarr.parsers.hdf5.superblock import Cursor, Fallback, H5File

__all__ = ["FractalHeap", "LocalHeap", "btree2_records", "read_global_objects", "read_local_heap"]

_MAX_NODES = 1_000_000


@dataclass(frozen=True)
class LocalHeap:
    data: bytes

    def name(self, offset: int) -> bytes:
        end = self.data.find(b"\0", offset)
        if offset >= len(self.data) or end < 0:
            raise ValueError(f"name offset {offset} outside the local heap")
        return self.data[offset:end]


def read_local_heap(f: H5File, addr: int) -> LocalHeap:
    what = f"local heap at {addr}"
    c = Cursor(f.read(addr, 8 + 2 * f.sl + f.so, what), f, what)
    if c.take(4) != b"HEAP":
        raise f.corrupt(what, "no HEAP signature")
    c.skip(4)
    size = c.length()
    c.length()  # free list
    data_addr = c.addr()
    if data_addr is None:
        raise f.corrupt(what, "undefined data segment")
    return LocalHeap(f.read(data_addr, size, what + " data segment"))


def read_global_objects(f: H5File, refs: list[tuple[int, int]], cache: dict) -> list[bytes]:
    """The objects ``(collection address, index)`` of global heaps (vlen data)."""
    need = sorted({a for a, _ in refs if a not in cache and a != 0})
    if need:
        heads = f.read_many([(a, 8 + f.sl) for a in need], "global heap")
        sizes = []
        for a, h in zip(need, heads):
            if h[:4] != b"GCOL":
                raise f.corrupt(f"global heap at {a}", "no GCOL signature")
            sizes.append(int.from_bytes(h[8 : 8 + f.sl], "little"))
        for a, s in zip(need, sizes):
            f.check(a, s, f"global heap at {a}")
        for a, block in zip(need, f.read_many(list(zip(need, sizes)), "global heap")):
            cache[a] = _parse_collection(f, a, block)
    out = []
    for a, i in refs:
        if a == 0:
            out.append(b"")
            continue
        objs = cache[a]
        if i not in objs:
            raise f.corrupt(f"global heap at {a}", f"no object {i}")
        out.append(objs[i])
    return out


def _parse_collection(f: H5File, addr: int, block: bytes) -> dict[int, bytes]:
    what = f"global heap at {addr}"
    # each object: index (2), reference count (2), reserved (4), size (length), data padded
    # to 8 bytes; index 0 is the free space that ends the collection
    head = struct.Struct(f"<H6x{_UINT[f.sl]}")
    step = head.size
    end = len(block)
    pos = 8 + f.sl
    objs = {}
    while end - pos >= step:
        idx, size = head.unpack_from(block, pos)
        pos += step
        if idx == 0:
            break
        stop = pos + size
        if stop > end:
            raise f.corrupt(what, f"truncated ({end} bytes, needs {stop})")
        objs[idx] = block[pos:stop]
        pos = stop + min(end - stop, -size % 8)
    return objs


_UINT = {2: "H", 4: "I", 8: "Q"}


@dataclass
class FractalHeap:
    f: H5File
    addr: int
    id_len: int
    filtered: bool
    flags: int
    max_managed: int
    width: int
    start_block: int
    max_direct: int
    max_heap_bits: int
    root: int | None
    root_rows: int
    huge_btree: int | None = None

    @classmethod
    def read(cls, f: H5File, addr: int) -> FractalHeap:
        what = f"fractal heap at {addr}"
        n = f.clamp(addr, 256)
        c = Cursor(f.read(addr, n, what), f, what)
        if c.take(4) != b"FRHP":
            raise f.corrupt(what, "no FRHP signature")
        c.skip(1)
        id_len, filt_len, flags, max_managed = c.u16(), c.u16(), c.u8(), c.u32()
        c.length()  # next huge id
        huge_btree = c.addr()
        c.length()
        c.addr()
        for _ in range(8):
            c.length()
        width = c.u16()
        start, max_direct = c.length(), c.length()
        max_heap_bits = c.u16()
        c.u16()  # starting rows
        root = c.addr()
        rows = c.u16()
        if filt_len:
            raise Fallback("a fractal heap with I/O filters")
        if width == 0 or start == 0 or start & (start - 1) or max_direct & (max_direct - 1):
            raise f.corrupt(what, "bad doubling table parameters")
        return cls(
            f, addr, id_len, bool(filt_len), flags, max_managed, width, start, max_direct,
            max_heap_bits, root, rows, huge_btree,
        )  # fmt: skip

    # -- managed object addressing -----------------------------------------------------------

    @cached_property
    def _off_size(self) -> int:
        return (self.max_heap_bits + 7) // 8

    @cached_property
    def _len_size(self) -> int:
        a = (int(math.log2(self.max_direct)) + 7) // 8
        b = _enc_size(self.max_managed)
        return min(a, b)

    def _block_header(self) -> int:
        return 5 + self.f.so + self._off_size

    def _row_size(self, row: int) -> int:
        return self.start_block if row == 0 else self.start_block << (row - 1)

    @cached_property
    def _max_direct_rows(self) -> int:
        return int(math.log2(self.max_direct)) - int(math.log2(self.start_block)) + 2

    def decode_id(self, hid: bytes) -> tuple[str, int, int]:
        """``("managed", offset, length)`` or ``("tiny", 0, length)``."""
        kind = hid[0] >> 4 & 3
        if kind == 0:
            o = self._off_size
            off = int.from_bytes(hid[1 : 1 + o], "little")
            ln = int.from_bytes(hid[1 + o : 1 + o + self._len_size], "little")
            return "managed", off, ln
        if kind == 2:
            return "tiny", 0, (hid[0] & 0x0F) + 1
        if kind == 1:
            if self.id_len >= 1 + self.f.so + self.f.sl:  # address and length in the id
                addr = int.from_bytes(hid[1 : 1 + self.f.so], "little")
                ln = int.from_bytes(hid[1 + self.f.so : 1 + self.f.so + self.f.sl], "little")
                return "direct", addr, ln
            return "huge", int.from_bytes(hid[1 : 1 + min(self.id_len - 1, 8)], "little"), 0
        raise self.f.corrupt(f"fractal heap at {self.addr}", f"heap id of unknown type {kind}")

    def objects(self, ids: list[bytes]) -> list[bytes]:
        """The objects of ``ids`` (managed ones read in one batch per indirect level)."""
        out: list[bytes | None] = [None] * len(ids)
        managed = []
        direct = []
        for i, hid in enumerate(ids):
            kind, off, ln = self.decode_id(hid)
            if kind == "tiny":
                out[i] = hid[1 : 1 + ln]
            elif kind == "managed":
                managed.append((i, off, ln))
            else:
                direct.append((i, kind, off, ln))
        if direct:
            huge = self._huge_index() if any(k == "huge" for _, k, _, _ in direct) else {}
            ranges = []
            for _, kind, off, ln in direct:
                if kind == "huge":
                    if off not in huge:
                        raise self.f.corrupt(
                            f"fractal heap at {self.addr}", f"no huge object {off}"
                        )
                    off, ln = huge[off]
                ranges.append((off, ln))
            for (i, _, _, _), data in zip(
                direct, self.f.read_many(ranges, "fractal heap huge object")
            ):
                out[i] = data
        if managed:
            if self.root is None:
                raise self.f.corrupt(f"fractal heap at {self.addr}", "no root block")
            ranges = self._locate([(off, ln) for _, off, ln in managed])
            for (i, _, _), data in zip(managed, self.f.read_many(ranges, "fractal heap object")):
                out[i] = data
        return out  # type: ignore[return-value]

    def _huge_index(self) -> dict[int, tuple[int, int]]:
        """Huge objects by id: (address, length), from the heap's v2 B-tree (type 1)."""
        if self.huge_btree is None:
            raise self.f.corrupt(f"fractal heap at {self.addr}", "huge object without a B-tree")
        if self.filtered:
            raise Fallback("filtered huge objects in a fractal heap")
        so, sl = self.f.so, self.f.sl
        out = {}
        for r in btree2_records(self.f, self.huge_btree, f"fractal heap at {self.addr}"):
            addr = int.from_bytes(r[:so], "little")
            ln = int.from_bytes(r[so : so + sl], "little")
            out[int.from_bytes(r[so + sl : so + 2 * sl], "little")] = (addr, ln)
        return out

    def _locate(self, objs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """File ranges of managed objects ``(heap offset, length)``."""
        what = f"fractal heap at {self.addr}"
        root = self.root
        if root is None:  # objects() checks this before calling us
            raise self.f.corrupt(what, "no root block")
        if self.root_rows == 0:  # the root is a direct block at heap offset 0
            out = []
            for off, ln in objs:
                if off + ln > self.start_block or off < self._block_header():
                    raise self.f.corrupt(what, f"object at heap offset {off} outside the block")
                out.append((root + off, ln))
            return out
        # walk indirect blocks level by level: (obj index, block addr, block heap offset, nrows)
        todo = [(k, root, 0, self.root_rows) for k in range(len(objs))]
        result: list[tuple[int, int] | None] = [None] * len(objs)
        blocks: dict[int, list[int | None]] = {}
        depth = 0
        while todo:
            depth += 1
            if depth > 64:
                raise self.f.corrupt(what, "indirect blocks nested too deep")
            need = sorted({(a, rows) for _, a, _, rows in todo if a not in blocks})
            sizes = [self._iblock_size(rows) for _, rows in need]
            for (a, rows), _size, data in zip(
                need, sizes, self.f.read_many([(a, s) for (a, _), s in zip(need, sizes)], what)
            ):
                if data[:4] != b"FHIB":
                    raise self.f.corrupt(what, f"indirect block at {a}: no FHIB signature")
                c = Cursor(data, self.f, what, 5 + self.f.so + self._off_size)
                blocks[a] = [c.addr() for _ in range(rows * self.width)]
            nxt: list[tuple[int, int, int, int]] = []
            for k, a, base, rows in todo:
                off, ln = objs[k]
                rel = off - base
                row, pos = 0, 0
                while row < rows:
                    span = self._row_size(row) * self.width
                    if rel < pos + span:
                        break
                    pos += span
                    row += 1
                else:
                    raise self.f.corrupt(what, f"object at heap offset {off} beyond the heap")
                bsize = self._row_size(row)
                col = (rel - pos) // bsize
                child = blocks[a][row * self.width + col]
                cbase = base + pos + col * bsize
                if child is None:
                    raise self.f.corrupt(
                        what, f"object at heap offset {off} in an unallocated block"
                    )
                if row < self._max_direct_rows:
                    inner = off - cbase
                    if inner < self._block_header() or inner + ln > bsize:
                        raise self.f.corrupt(what, f"object at heap offset {off} outside its block")
                    result[k] = (child + inner, ln)
                else:
                    crows = (
                        int(math.log2(bsize)) - int(math.log2(self.start_block * self.width)) + 1
                    )
                    nxt.append((k, child, cbase, crows))
            todo = nxt
        return result  # type: ignore[return-value]

    def _iblock_size(self, rows: int) -> int:
        n = rows * self.width
        return 5 + self.f.so + self._off_size + n * self.f.so + 4


def _enc_size(n: int) -> int:
    """Bytes HDF5 uses to encode counts up to ``n`` (``H5VM_limit_enc_size``)."""
    return (max(n, 1).bit_length() - 1) // 8 + 1


def btree2_records(f: H5File, addr: int, what: str) -> list[bytes]:
    """Every record of a version-2 B-tree (any type), read one level per batch."""
    head = f.read(addr, f.clamp(addr, 16 + 2 * f.so + 2 * f.sl), what + " B-tree header")
    c = Cursor(head, f, what + " B-tree header")
    if c.take(4) != b"BTHD":
        raise f.corrupt(what, f"v2 B-tree at {addr}: no BTHD signature")
    c.skip(2)  # version, type
    node_size, rec_size, depth = c.u32(), c.u16(), c.u16()
    c.skip(2)
    root = c.addr()
    root_n = c.u16()
    total = c.length()
    if root is None or total == 0:
        return []
    if rec_size == 0 or node_size < 16 or total > _MAX_NODES * 100:
        raise f.corrupt(what, f"v2 B-tree at {addr}: bad header")
    # per-depth maximum record counts, as HDF5 computes them
    max_nrec = [(node_size - 10) // rec_size]
    cum = [max_nrec[0]]
    nrec_size = _enc_size(max_nrec[0])
    cum_size = [0]
    for d in range(1, depth + 1):
        ptr = f.so + nrec_size + (cum_size[d - 1] if d > 1 else 0)
        m = (node_size - 10 - ptr) // (rec_size + ptr)
        max_nrec.append(m)
        cum.append((m + 1) * cum[d - 1] + m)
        cum_size.append(_enc_size(cum[d]))
    records: list[bytes] = []
    level = [(root, root_n)]
    for d in range(depth, -1, -1):
        if not level:
            break
        datas = f.read_many([(a, node_size) for a, _ in level], what + " B-tree node")
        nxt = []
        for (a, n), data in zip(level, datas):
            sig = b"BTIN" if d else b"BTLF"
            if data[:4] != sig:
                raise f.corrupt(what, f"v2 B-tree node at {a}: no {sig.decode()} signature")
            c = Cursor(data, f, what + " B-tree node", 6)
            records.extend(c.take(rec_size) for _ in range(n))
            if d:
                for _ in range(n + 1):
                    ca = c.addr()
                    cn = c.u(nrec_size)
                    if d > 1:
                        c.u(cum_size[d - 1])
                    if ca is None:
                        raise f.corrupt(what, f"v2 B-tree node at {a}: undefined child")
                    nxt.append((ca, cn))
        if len(records) > total or len(nxt) > _MAX_NODES:
            raise f.corrupt(what, f"v2 B-tree at {addr}: more records than its header says")
        level = nxt
    return records
