"""Our own HDF5 metadata reader as a parser engine: ``HDFParser(engine="own")``.

:class:`OwnObjects` answers the same questions as the h5py engine
(:class:`~virtualizarr.parsers.hdf5.objects.Objects`) from the file's bytes, read through a
``virtualizarr.io`` ByteSource in batches: the headers of all members of a group in one
``read_many``, the chunk index level by level (``layout.read_chunk_index``). What it does
not implement raises :class:`~virtualizarr.parsers.hdf5.superblock.Fallback` naming the
structure, and the parser reads that file with h5py instead: never a wrong reference.

>>> # with open_own("file:///data/t.nc", registry) as objects:
>>> #     [c.key for c in objects.children(objects.get("/"))]
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from virtualizarr.errors import ParserError
from virtualizarr.parsers.hdf5.dtypes import TypeInfo
from virtualizarr.parsers.hdf5.groups import is_group, read_links
from virtualizarr.parsers.hdf5.heaps import FractalHeap, btree2_records, read_global_objects
from virtualizarr.parsers.hdf5.memo import BoundedCache
from virtualizarr.parsers.hdf5.messages import (
    ARRAY,
    COMPOUND,
    REFERENCE,
    STRING,
    VLEN,
    Datatype,
    Link,
    parse_attribute,
    parse_dataspace,
    parse_datatype,
    parse_dense_info,
    parse_fill_value,
    parse_filters,
    standard_layout,
)
from virtualizarr.parsers.hdf5.nodes import (
    Child,
    DatasetNode,
    Empty,
    GroupNode,
    Node,
    ObjectRef,
    Storage,
)
from virtualizarr.parsers.hdf5.object_header import (
    ATTRIBUTE,
    ATTRIBUTE_INFO,
    DATASPACE,
    DATATYPE,
    EXTERNAL_FILES,
    FILL,
    FILL_OLD,
    FILTERS,
    LAYOUT,
    ObjectHeader,
    read_headers,
    shared_address,
)
from virtualizarr.parsers.hdf5.superblock import (
    SIGNATURE,
    Based,
    Fallback,
    H5File,
    read_superblock,
)

__all__ = ["Fallback", "OwnObjects", "open_own"]

_MAX_SOFT_HOPS = 16  # HDF5's own limit on soft links followed in one lookup
_MAX_DECODED = 64 * 1024 * 1024
"""Most bytes of values our reader decodes itself from chunks (inlining, re-encoding)."""
_MERGE_GAP = 256 * 1024
"""Remote reads less than this apart are merged into one request. HDF5 interleaves chunk
index nodes with the chunks they index (a v1 B-tree leaf every ~0.5 MB in a typical
netCDF-4 file): merging across that data would fetch the whole file."""


@contextmanager
def open_own(url: str, registry: Any) -> Iterator[OwnObjects]:
    """Our reader over ``url``: raises ParserError if it is not HDF5, Fallback if the
    file uses what we do not read."""
    from virtualizarr.io import open_source
    from virtualizarr.io.source import ByteSource, LocalSource, RemoteSource
    from virtualizarr.io.turns import parse_turn

    source = open_source(url, registry)
    # only a remote source merges ranges and fetches small files whole; a local one reads
    # exactly what is asked
    if isinstance(source, RemoteSource) and source.merge_gap > _MERGE_GAP:
        source.merge_gap = _MERGE_GAP
    if isinstance(source, RemoteSource) and 0 < source.size <= source.whole_below:
        # a small remote file: one read past the head brings the rest whole (batches of
        # scattered metadata would otherwise cost a request per piece)
        source.read(source.size - 1, 1)
    opened = source
    reader: ByteSource | _Whole = source
    if isinstance(source, LocalSource) and 0 < source.size <= _WHOLE_LOCAL:
        # a small local file: one pread brings it all, instead of one per header batch,
        # heap and index level (each a system call and a bytes copy)
        reader = _Whole(source)
    try:
        with parse_turn(source):  # threads parsing local files take turns (io.turns)
            head = reader.head[:8] if reader.size else b""
            if not any(reader.read(o, 8) == SIGNATURE for o in (0, 512, 1024, 2048)):
                what = "is empty" if not head else f"starts with {head!r}"
                raise ParserError(
                    f"{url} is not an HDF5/NetCDF4 file: it {what}, not the HDF5 signature "
                    f"{SIGNATURE!r}. Use the parser for its format (NetCDF3 files start with b'CDF')."
                )
            f = H5File(reader, url)
            sb = read_superblock(f)
            if sb.base:  # a user block: addresses count from the superblock
                so, sl = f.so, f.sl
                f = H5File(Based(reader, sb.base), url)
                f.set_sizes(so, sl)
            objects = OwnObjects(f, _extended(f, sb))
            objects.size = reader.size  # manifests and their checks use absolute offsets
            if sb.base:
                objects._abs = H5File(reader, url)
            yield objects
    finally:
        opened.close()


_UINT = {2: "H", 4: "I", 8: "Q"}
_CLASSIFIED: BoundedCache[int, tuple[Datatype, TypeInfo]] = BoundedCache(4096)
_DENSE_INFOS: BoundedCache[bytes, Any] = BoundedCache(4096)
_FILLS: BoundedCache[tuple[bytes | None, bytes | None, np.dtype], Any] = BoundedCache(4096)
_LAYOUTS: BoundedCache[tuple[int, int, int, bytes], Any] = BoundedCache(4096)
_FILTERS: BoundedCache[bytes, tuple[Any, ...]] = BoundedCache(4096)
"""Decoded messages by their bytes: the datasets of a file and the files of a collection
repeat the same few (decoded objects are never changed)."""
_ATTR_VALUES: BoundedCache[tuple[int, int, bytes], tuple[Any, Any]] = BoundedCache(8192)
"""Decoded attribute values by their message bytes (and the file's address/length sizes),
for types whose values do not depend on the rest of the file. The files of a collection
repeat the same units, names and netCDF bookkeeping attributes: each is decoded once."""

_WHOLE_LOCAL = 1 << 20
"""Local files up to this size are read whole at once (page-cached: ~0.1 ms per MiB)."""


class _Whole:
    """A small local file's bytes in memory, with the ByteSource methods our reader uses."""

    def __init__(self, source: Any) -> None:
        self.url = source.url
        self.data = source.read(0, source.size)
        self.size = len(self.data)
        self.head = self.data[:4096]

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:  # as LocalSource: a slice would wrap around
            raise ValueError(f"negative offset or length: ({offset}, {length})")
        return self.data[offset : offset + length]

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        return [self.read(o, n) for o, n in ranges]


_SHARED_MESSAGE_TABLE = 0x0F
_BTREE_K = 0x13


def _extended(f: H5File, sb: Any) -> Any:
    """The superblock with what its extension says (written for paged files, "cloud-optimized
    HDF5"): B-tree K values are taken; shared object header messages are not read by us."""
    if sb.extension is None:
        return sb
    [ext] = read_headers(f, [sb.extension])
    if ext.find(_SHARED_MESSAGE_TABLE) is not None:
        raise Fallback("shared object header messages (a shared message table)")
    k = ext.find(_BTREE_K)
    if k is not None:
        body = k.body
        if len(body) < 7 or body[0] != 0:
            raise f.corrupt("superblock extension", "bad B-tree K values message")
        storage_k = int.from_bytes(body[1:3], "little")
        internal_k = int.from_bytes(body[3:5], "little")
        leaf_k = int.from_bytes(body[5:7], "little")
        sb = dataclasses.replace(
            sb, indexed_storage_k=storage_k, group_internal_k=internal_k, group_leaf_k=leaf_k
        )
    return sb


class OwnObjects:
    """The engine of our reader: nodes, links, attributes and dataset storage of one file."""

    def __init__(self, f: H5File, sb: Any) -> None:
        self.f = f
        self.sb = sb
        self.size = f.size
        self._headers: dict[int, ObjectHeader] = {}
        self._links: dict[int, list[Link]] = {}
        self._children: dict[str, list[Child]] = {}
        self._attrs: dict[int, OwnAttrTable] = {}
        self._paths: dict[int, str] = {sb.root_address: "/"}
        self._gheap: dict[int, Any] = {}
        self._spaces: dict[int, Any] = {}
        self._derefs: dict[int, Node] = {}
        self._abs = f
        """The file with absolute offsets (chunk addresses), ``f`` unless a user block."""
        self._walked = False
        self._index_todo: dict[str, dict[int, DatasetNode]] = {}
        """Per group, the datasets listed by ``children`` whose chunk indexes are not
        fetched yet: the first ``chunk_index`` of one fetches all their v1 B-trees."""
        self._index_group: dict[int, str] = {}
        self._index_fetched: set[int] = set()
        self._trees_fetched: set[int] = set()  # their B-trees are in the source's cache

    # -- headers -----------------------------------------------------------------------------

    def headers(self, addresses: list[int]) -> list[ObjectHeader]:
        need = sorted({a for a in addresses if a not in self._headers})
        if need:
            for a, h in zip(need, read_headers(self.f, need)):
                self._headers[a] = h
        return [self._headers[a] for a in addresses]

    def header(self, address: int) -> ObjectHeader:
        got = self._headers.get(address)  # nearly always read already, with its group's batch
        return got if got is not None else self.headers([address])[0]

    def message(self, hdr: ObjectHeader, mtype: int) -> bytes | None:
        """The body of a message of ``mtype``, a shared one read from where it lives."""
        m = hdr.find(mtype)
        if m is None:
            return None
        if not m.shared:
            return m.body
        addr = shared_address(self.f, m.body, f"object header at {hdr.address}")
        target = self.header(addr).find(mtype)
        if target is None or target.shared:
            raise Fallback(f"a shared message of type {mtype} not stored in an object header")
        return target.body

    def _shared_type(self, body: bytes) -> Datatype:
        addr = shared_address(self.f, body, "shared datatype")
        msg = self.message(self.header(addr), DATATYPE)
        if msg is None:
            raise self.f.corrupt(f"committed datatype at {addr}", "no datatype message")
        return parse_datatype(self.f, msg, f"committed datatype at {addr}")

    def datatype(self, hdr: ObjectHeader) -> Datatype:
        body = self.message(hdr, DATATYPE)
        if body is None:
            raise self.f.corrupt(f"dataset at {hdr.address}", "no datatype message")
        return parse_datatype(self.f, body, f"dataset at {hdr.address}")

    # -- navigation --------------------------------------------------------------------------

    def _node(self, hdr: ObjectHeader, path: str) -> Node:
        self._paths.setdefault(hdr.address, path)
        if hdr.find(LAYOUT) is not None:
            space = self._spaces.get(hdr.address)
            if space is None:
                space_body = self.message(hdr, DATASPACE)
                if space_body is None:
                    raise self.f.corrupt(f"dataset {path!r}", "no dataspace message")
                space = parse_dataspace(self.f, space_body, f"dataset {path!r}")
                self._spaces[hdr.address] = space
            if space.shape is None:  # no values: skipped by the parser
                return DatasetNode(path, hdr.address, hdr, (), (), null=True)
            return DatasetNode(path, hdr.address, hdr, space.shape, space.maxshape or ())
        if is_group(hdr):
            return GroupNode(path, hdr.address, hdr)
        return Node(path, hdr.address, hdr)

    def links(self, group: GroupNode) -> list[Link]:
        got = self._links.get(group.key)
        if got is None:
            got = self._links[group.key] = read_links(self.f, group.raw, self.sb)
        return got

    def get(self, path: str) -> Node | None:
        """The object at the absolute ``path``, or None."""
        node: Node = GroupNode("/", self.sb.root_address, self.header(self.sb.root_address))
        node = self._node(node.raw, "/")
        parts = [p for p in path.split("/") if p]
        return self._walk(node, parts, 0)

    def _walk(self, node: Node, parts: list[str], hops: int) -> Node | None:
        for part in parts:
            if not isinstance(node, GroupNode):
                return None
            link = next((lk for lk in self.links(node) if _decode(lk.name) == part), None)
            if link is None:
                return None
            here = node.name.rstrip("/") + "/" + part
            if link.kind == "hard":
                if link.address is None:  # an undefined address: nothing is there
                    return None
                node = self._node(self.header(link.address), here)
            elif link.kind == "soft":
                if hops >= _MAX_SOFT_HOPS:
                    return None
                target = self._soft(node, link.target, hops + 1)
                if target is None:
                    return None
                node = self._renamed(target, here)
            else:
                return None
        return node

    def _renamed(self, node: Node, path: str) -> Node:
        if isinstance(node, DatasetNode):
            return DatasetNode(path, node.key, node.raw, node.shape, node.maxshape, null=node.null)
        return type(node)(path, node.key, node.raw)

    def _soft(self, group: GroupNode, target: str, hops: int) -> Node | None:
        if target.startswith("/"):
            root = self._node(self.header(self.sb.root_address), "/")
            return self._walk(root, [p for p in target.split("/") if p], hops)
        return self._walk(group, [p for p in target.split("/") if p and p != "."], hops)

    def _root(self) -> GroupNode:
        root = self.get("/")
        if not isinstance(root, GroupNode):
            raise self.f.corrupt("root group", "the root object is not a group")
        return root

    def top_groups(self) -> list[str]:
        root = self._root()
        return sorted(c.key for c in self.children(root) if isinstance(c.obj, GroupNode))

    def children(self, group: GroupNode) -> list[Child]:
        """Members of ``group`` in h5py's order; all their headers read in one batch."""
        out = self._children.get(group.name)
        if out is not None:
            return out
        links = self.links(group)
        self.headers([lk.address for lk in links if lk.kind == "hard" and lk.address is not None])
        out = []
        base = group.name.rstrip("/")
        for lk in links:
            key = _decode(lk.name)
            path = f"{base}/{key}"
            if lk.kind == "hard":
                if lk.address is None:
                    out.append(Child(key, "hard", "", KeyError(key)))
                    continue
                out.append(Child(key, "hard", "", self._node(self.header(lk.address), path)))
            elif lk.kind == "soft":
                target = self._soft(group, lk.target, 1)
                obj: Any = KeyError(f"dangling soft link {lk.target!r}")
                if target is not None:
                    obj = self._renamed(target, path)
                out.append(Child(key, "soft", lk.target, obj))
            else:
                out.append(Child(key, lk.kind, lk.target, None))
        self._children[group.name] = out
        todo = self._index_todo.setdefault(group.name, {})
        for c in out:
            if isinstance(c.obj, DatasetNode) and c.obj.key not in self._index_fetched:
                todo.setdefault(c.obj.key, c.obj)
                self._index_group.setdefault(c.obj.key, group.name)
        return out

    def deref(self, ref: Any) -> Node:
        """The object an object reference (from an attribute) points at."""
        if not isinstance(ref, ObjectRef) or ref.address == 0:
            raise ValueError("null or invalid object reference")
        addr = ref.address
        got = self._derefs.get(addr)
        if got is not None:  # every variable on a dimension points at its scale
            return got
        if addr not in self._paths:
            self._walk_all()
        path = self._paths.get(addr)
        if path is None:
            raise KeyError(f"no object at address {addr} is linked in the file")
        got = self._derefs[addr] = self._renamed(self._node(self.header(addr), path), path)
        return got

    def _walk_all(self) -> None:
        """Register a path for every object linked in the file (hard links, depth first)."""
        if self._walked:
            return
        self._walked = True
        stack = [self._root()]
        seen: set[int] = set()
        while stack:
            g = stack.pop()
            if g.key in seen:
                continue
            seen.add(g.key)
            stack.extend(
                c.obj for c in self.children(g) if isinstance(c.obj, GroupNode) and c.link == "hard"
            )

    # -- attributes --------------------------------------------------------------------------

    def attrs(self, obj: Node) -> OwnAttrTable:
        table = self._attrs.get(obj.key)
        if table is None:
            table = self._attrs[obj.key] = OwnAttrTable(self, obj.raw)
        return table

    def global_objects(self, refs: list[tuple[int, int]]) -> list[bytes]:
        return read_global_objects(self.f, refs, self._gheap)

    # -- datasets ----------------------------------------------------------------------------

    def _dtype(self, dset: DatasetNode) -> Datatype:
        dt = dset.extra.get("dtype")
        if dt is None:
            dt = dset.extra["dtype"] = self.datatype(dset.raw)
        return dt

    def classify(self, dset: DatasetNode) -> tuple[TypeInfo, np.dtype]:
        dt = self._dtype(dset)
        # decoded datatypes are shared by their message bytes (messages.parse_datatype)
        # and never changed, so their identity keys the classification
        got = _CLASSIFIED.get(id(dt))
        if got is None or got[0] is not dt:
            got = _CLASSIFIED.put(id(dt), (dt, classify_type(dt)))
        return got[1], dt.numpy

    def _layout(self, dset: DatasetNode) -> Any:
        lay = dset.extra.get("layout")
        if lay is None:
            from virtualizarr.parsers.hdf5.layout import parse_layout_message

            body = self.message(dset.raw, LAYOUT)
            if body is None:  # _node made a DatasetNode because the message is there
                raise self.f.corrupt(f"dataset {dset.name!r}", "no layout message")
            key = (self.f.so, self.f.sl, dset.ndim, body)
            lay = _LAYOUTS.get(key)
            if lay is None:
                lay = parse_layout_message(
                    body,
                    sizeof_offsets=self.f.so,
                    sizeof_lengths=self.f.sl,
                    ndim=dset.ndim,
                    where=f"{self.f.url}: variable {dset.name!r}",
                )
                _LAYOUTS.put(key, lay, len(body))  # not compact data
            dset.extra["layout"] = lay
        return lay

    def storage(self, dset: DatasetNode) -> Storage:
        got = dset.extra.get("storage")
        if got is None:
            got = dset.extra["storage"] = self._storage(dset)
        return got

    def _storage(self, dset: DatasetNode) -> Storage:
        from virtualizarr.parsers.hdf5.layout import LayoutClass

        lay = self._layout(dset)
        kind = {
            LayoutClass.COMPACT: "compact",
            LayoutClass.CONTIGUOUS: "contiguous",
            LayoutClass.CHUNKED: "chunked",
            LayoutClass.VIRTUAL: "virtual",
        }[lay.layout_class]
        filters: list[Any] = []
        chunks = None
        if kind == "chunked":
            chunks = tuple(int(c) for c in lay.chunk_shape)
            body = self.message(dset.raw, FILTERS)
            if body is not None:
                got = _FILTERS.get(body)
                if got is None:
                    got = tuple(parse_filters(self.f, body, f"variable {dset.name!r}"))
                    _FILTERS.put(body, got, len(body))
                filters = list(got)
        offset = lay.address if kind == "contiguous" else None
        if offset is not None:
            offset += self.sb.base
        external = dset.raw.find(EXTERNAL_FILES) is not None
        return Storage(kind, external, chunks, filters, offset)

    def fill_value(self, dset: DatasetNode, h5dtype: np.dtype) -> Any:
        got = dset.extra.get("fill")
        if got is None or got[0] is not h5dtype:
            got = dset.extra["fill"] = (h5dtype, self._fill_value(dset, h5dtype))
        return got[1]

    def _fill_value(self, dset: DatasetNode, h5dtype: np.dtype) -> Any:
        if h5dtype.hasobject:
            return None
        what = f"variable {dset.name!r}"
        raw = None
        body = self.message(dset.raw, FILL)
        old = self.message(dset.raw, FILL_OLD) if body is None else None
        key = None
        if (
            h5dtype.metadata is None
            and h5dtype.kind in "biufcS"
            and len(body or old or b"") <= _FILLS.max_bytes
        ):
            # scalars of plain dtypes are immutable: share them between datasets and files
            key = (body, old, h5dtype)
            got = _FILLS.get(key)
            if got is not None:
                return got
        if body is not None:
            raw = parse_fill_value(self.f, body, what)
        elif old is not None:
            raw = parse_fill_value(self.f, old, what, old=True)
        value = self._fill_from(raw, h5dtype)
        if key is not None:
            _FILLS.put(key, value)
        return value

    def _fill_from(self, raw: bytes | None, h5dtype: np.dtype) -> Any:
        if raw is None:
            return np.zeros((1,), dtype=h5dtype)[0]
        if len(raw) != h5dtype.itemsize:
            raise Fallback(f"a fill value of {len(raw)} bytes for a {h5dtype.itemsize}-byte type")
        return np.frombuffer(raw, dtype=h5dtype)[0]

    def _prefetch_indexes(self, group: str) -> None:
        """Fetch the v1 B-tree chunk indexes of the datasets of ``group`` not read yet in
        one concurrent batch: remotely, a group of variables costs one round trip for all
        their indexes, not one per variable and level. Datasets whose layout cannot be
        read are left to their own ``chunk_index`` (which raises what it finds); a dropped
        variable's index is fetched too (its bytes only)."""
        from virtualizarr.parsers.hdf5.btree1 import prefetch_btree1_trees
        from virtualizarr.parsers.hdf5.layout import ChunkIndexType, LayoutClass

        todo = {
            k: d for k, d in self._index_todo.pop(group, {}).items() if k not in self._index_fetched
        }
        self._index_fetched.update(todo)
        trees, keys = [], []
        for dset in todo.values():
            try:
                lay = self._layout(dset)
            except Exception:  # noqa: BLE001, S112  (raised again, for its variable, if read)
                continue
            if (
                lay.layout_class == LayoutClass.CHUNKED
                and lay.index_type == ChunkIndexType.BTREE1
                and lay.address is not None
                and lay.chunk_dims is not None
            ):
                trees.append((lay.address, len(lay.chunk_dims), self.sb.indexed_storage_k))
                keys.append(dset.key)
        if len(trees) > 1 and getattr(self.f.source, "expands", False):
            prefetch_btree1_trees(self.f.source, trees, so=self.f.so, file_size=self.f.size)
            self._trees_fetched.update(keys)

    def chunk_index(self, dset: DatasetNode) -> Any:
        from virtualizarr.parsers.hdf5.layout import read_chunk_index

        group = self._index_group.get(dset.key)
        if group is not None and dset.key in self._index_todo.get(group, ()):
            self._prefetch_indexes(group)
        self._index_fetched.add(dset.key)
        storage = self.storage(dset)
        table = read_chunk_index(
            self.f.source,
            self._layout(dset),
            shape=tuple(int(s) for s in dset.shape),
            maxshape=tuple(dset.maxshape) if dset.maxshape else None,
            dtype_size=self._dtype(dset).size,
            filtered=bool(storage.filters),
            sizeof_offsets=self.f.so,
            sizeof_lengths=self.f.sl,
            where=f"{self.f.url}: variable {dset.name!r}",
            btree1_k=self.sb.indexed_storage_k,
            prefetch=dset.key not in self._trees_fetched,
        )
        index = table.to_chunk_index()
        if self.sb.base:
            index = dataclasses.replace(index, addresses=index.addresses + np.uint64(self.sb.base))
        return index

    def _raw_values(self, dset: DatasetNode) -> bytes | None:
        """The dataset's stored bytes when kept raw (compact or contiguous), else Fallback."""
        storage = self.storage(dset)
        dt = self._dtype(dset)
        nbytes = math.prod(dset.shape) * dt.size
        if storage.layout == "compact":
            data = self._layout(dset).compact_data or b""
            if len(data) < nbytes:
                raise self.f.corrupt(
                    f"variable {dset.name!r}", "compact data shorter than its shape"
                )
            return data[:nbytes]
        if storage.layout == "contiguous" and not storage.external:
            if storage.offset is None:
                return None
            return self.f.read(storage.offset, nbytes, f"variable {dset.name!r} data")
        raise Fallback(f"reading the values of a {storage.layout} dataset ({dset.name!r})")

    def read(self, dset: DatasetNode, sel: Any = ()) -> np.ndarray:
        """Values whose stored bytes numpy reads as h5py would (no type conversion), from
        compact, contiguous or chunked storage (chunks raw or deflate/shuffle/fletcher32)."""
        dt = self._dtype(dset)
        info = classify_type(dt)
        if info.kind not in ("plain", "compound") or dt.numpy.hasobject:
            raise Fallback(f"values of {dset.name!r} that HDF5 must convert")
        if self.storage(dset).layout == "chunked":
            return self._chunked_values(dset, dt)[sel]
        if sel != ():
            raise Fallback(f"a selection of the values of {dset.name!r}")
        data = self._raw_values(dset)
        if data is None:
            return np.full(dset.shape, self.fill_value(dset, dt.numpy), dtype=dt.numpy)
        return np.frombuffer(data, dtype=dt.numpy).reshape(dset.shape).copy()

    def _chunked_values(self, dset: DatasetNode, dt: Datatype) -> np.ndarray:
        """The whole array from its chunks, decoded here (deflate, shuffle, fletcher32, zstd)."""
        import zlib

        import numcodecs

        storage = self.storage(dset)
        shape = tuple(int(n) for n in dset.shape)
        if math.prod(shape) * dt.size > _MAX_DECODED:
            raise Fallback(f"decoding more than {_MAX_DECODED} bytes of {dset.name!r}")
        decoders: list[Any] = []
        for flt in storage.filters:
            if flt.id == 1:
                decoders.append(zlib.decompress)
            elif flt.id == 2:
                es = flt.cd_values[0] if flt.cd_values else dt.size
                decoders.append(numcodecs.Shuffle(elementsize=int(es)).decode)
            elif flt.id == 3:
                decoders.append(numcodecs.Fletcher32().decode)
            elif flt.id == 32015:
                decoders.append(numcodecs.Zstd().decode)
            else:
                raise Fallback(f"decoding {flt.describe()} chunks of {dset.name!r}")
        chunks = tuple(storage.chunks or ())
        out = np.full(shape, self.fill_value(dset, dt.numpy), dtype=dt.numpy)
        index = self.chunk_index(dset)
        if not len(index):
            return out
        where = f"variable {dset.name!r} chunks"
        ranges = [(int(a), int(n)) for a, n in zip(index.addresses, index.sizes)]
        for r in ranges:
            self._abs.check(r[0], r[1], where)
        per_chunk = math.prod(chunks) * dt.size
        for coords, mask, data in zip(
            index.coords.tolist(), index.masks.tolist(), self._abs.read_many(ranges, where)
        ):
            for i in reversed(range(len(decoders))):
                if not mask >> i & 1:
                    try:
                        data = bytes(decoders[i](data))
                    except Exception as e:
                        raise self.f.corrupt(
                            where, f"chunk at {coords} does not decode: {e}"
                        ) from e
            if len(data) < per_chunk:
                raise self.f.corrupt(where, f"chunk at {coords} decodes to {len(data)} bytes")
            arr = np.frombuffer(data, dt.numpy, count=math.prod(chunks)).reshape(chunks)
            dst = tuple(slice(c, min(c + k, n)) for c, k, n in zip(coords, chunks, shape))
            if any(d.start >= d.stop for d in dst):
                continue
            out[dst] = arr[tuple(slice(0, d.stop - d.start) for d in dst)]
        return out

    def read_strings(self, dset: DatasetNode) -> np.ndarray:
        """Variable-length strings (compact or contiguous) from the global heap."""
        dt = self._dtype(dset)
        data = self._raw_values(dset)
        if data is None:
            raise Fallback(f"unallocated variable-length strings ({dset.name!r})")
        vals = self._vlen(dt, data, math.prod(dset.shape))
        out = np.empty(len(vals), dtype=object)
        out[:] = [b.decode("utf-8", "replace") for b in vals]
        return out.reshape(dset.shape)

    def _vlen(self, dt: Datatype, data: bytes, count: int) -> list[Any]:
        """Elements of a variable-length type: bytes (strings) or arrays (sequences)."""
        so = self.f.so
        step = 4 + so + 4
        if len(data) < count * step:
            raise self.f.corrupt("variable-length data", "truncated")
        # each element: length (4), global heap collection address (so), object index (4)
        items = struct.iter_unpack(f"<I{_UINT[so]}I", data[: count * step])
        lens = []
        refs = []
        for n, addr, idx in items:
            lens.append(n)
            refs.append((addr, idx))
        objs = self.global_objects(refs)
        if dt.is_vlen_string:
            return [o[:n] for o, n in zip(objs, lens)]
        base = dt.base
        assert base is not None, "a variable-length sequence type has a base type"
        out = []
        for o, n in zip(objs, lens):
            if len(o) < n * base.size:
                raise self.f.corrupt("variable-length data", "heap object shorter than its length")
            out.append(self.decode(base, o[: n * base.size], n))
        return out

    def decode(self, dt: Datatype, data: bytes, count: int) -> np.ndarray:
        """``count`` elements of ``dt`` from ``data``, as h5py hands them back (1-d)."""
        if len(data) < count * dt.size:
            raise self.f.corrupt("attribute value", "shorter than its type and shape")
        if dt.cls == STRING:
            pad = dt.bits & 0xF
            items = []
            for i in range(count):
                s = data[i * dt.size : (i + 1) * dt.size].split(b"\0", 1)[0]
                items.append(s.rstrip(b" ") if pad == 2 else s)
            return np.array(items, dtype=dt.numpy) if items else np.zeros(0, dt.numpy)
        if dt.cls == REFERENCE:
            out = np.empty(count, dtype=object)
            so = self.f.so
            if dt.size == so:
                addrs = [a for (a,) in struct.iter_unpack(f"<{_UINT[so]}", data[: count * so])]
            else:
                addrs = [
                    int.from_bytes(data[i * dt.size : i * dt.size + so], "little")
                    for i in range(count)
                ]
            out[:] = [ObjectRef(a) for a in addrs]
            return out
        if dt.cls == VLEN:
            vals = self._vlen(dt, data, count)
            out = np.empty(count, dtype=object)
            out[:] = vals
            return out
        if dt.cls == COMPOUND and dt.numpy.names is not None and _nested_strings(dt):
            # field by field: strings lose their padding, references and vlen become objects
            if any(m.cls == ARRAY for _, _, m in dt.members):
                raise Fallback("attribute values of compound types with array members")
            target = dt.numpy
            if target.hasobject:  # no offsets: numpy places object fields itself
                target = np.dtype([(name, m.numpy) for name, _, m in dt.members])
            out = np.zeros(count, dtype=target)
            for name, off, m in dt.members:
                col = b"".join(
                    data[i * dt.size + off : i * dt.size + off + m.size] for i in range(count)
                )
                out[name] = self.decode(m, col, count)
            return out
        if dt.cls == ARRAY:
            raise Fallback("attribute values of nested array types")
        return np.frombuffer(data[: count * dt.size], dtype=dt.numpy).copy()


def _attr_name(f: H5File, body: bytes, what: str) -> bytes:
    """The name of an attribute message, without decoding the rest."""
    if len(body) < 9:
        raise f.corrupt(what, "attribute message truncated")
    version, nlen = body[0], int.from_bytes(body[2:4], "little")
    start = 9 if version == 3 else 8
    if version not in (1, 2, 3) or start + nlen > len(body):
        raise f.corrupt(what, f"attribute message (version {version}) is malformed")
    return body[start : start + nlen].split(b"\0", 1)[0]


def _nested_strings(dt: Datatype) -> bool:
    return any(m.cls in (STRING, ARRAY, VLEN, REFERENCE, COMPOUND) for _, _, m in dt.members)


def _decode(name: bytes) -> Any:
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:  # h5py hands such names back as bytes
        return name


def classify_type(dt: Datatype) -> TypeInfo:
    """:func:`~virtualizarr.parsers.hdf5.dtypes.classify_dtype` for our parsed types."""
    np_dt = dt.numpy
    if dt.is_vlen_string:
        return TypeInfo("vlen_str", np.dtype(np.dtypes.StringDType()), "variable-length strings")
    if dt.cls == VLEN:
        return TypeInfo("skip", None, "variable-length sequences have no Zarr data type")
    if dt.cls == REFERENCE:
        return TypeInfo("skip", None, "HDF5 object/region references have no Zarr data type")
    if np_dt.names is not None and np_dt.kind != "c":
        fields = np_dt.fields
        assert fields is not None, "a dtype with names has fields"
        if all(
            f[0].names is None
            and f[0].subdtype is None
            and f[0].kind in "biufcS"
            and m.cls not in (REFERENCE, VLEN)
            for f, (_, _, m) in zip((fields[n] for n in np_dt.names), dt.members)
        ):
            le = [(n, fields[n][0].newbyteorder("<")) for n in np_dt.names]
            return TypeInfo("compound", np.dtype(le), "compound (struct) records")
        return TypeInfo("skip", None, "compound type with nested, array or variable-length members")
    if np_dt.subdtype is not None:
        return TypeInfo("skip", None, f"HDF5 array type {np_dt} has no Zarr data type")
    if np_dt.kind not in "biufcS":
        return TypeInfo(
            "skip", None, f"HDF5 datatype {np_dt} (opaque/bitfield/time) has no Zarr data type"
        )
    native = np.dtype(np_dt.str)
    if not standard_layout(dt):
        return TypeInfo("convert", native, f"its HDF5 type is not stored like numpy's {native}")
    return TypeInfo("plain", native)


class OwnAttrTable:
    """The attributes of one object (compact or dense), with h5py's names, order and values."""

    def __init__(self, objects: OwnObjects, hdr: ObjectHeader) -> None:
        self.o = objects
        self.hdr = hdr
        self._attrs: dict[Any, tuple[bytes, int | None]] | None = None
        self._names: list[Any] | None = None
        self._values: dict[Any, tuple[Any, Any]] = {}

    def _load(self) -> None:
        if self._attrs is not None:
            return
        f = self.o.f
        what = f"object header at {self.hdr.address}"
        # (name, message body, creation order); bodies are decoded when a value is asked
        attrs = []
        info_body = None
        for m in self.hdr.messages:
            if m.type == ATTRIBUTE:
                body = self._body(m)
                attrs.append((_attr_name(f, body, what), body, m.order))
            elif m.type == ATTRIBUTE_INFO and info_body is None:
                info_body = self.o.message(self.hdr, ATTRIBUTE_INFO)
        if info_body is not None:
            info = _DENSE_INFOS.get(info_body)
            if info is None:
                info = _DENSE_INFOS.put(
                    info_body, parse_dense_info(f, info_body, what, links=False), len(info_body)
                )
            if info.heap is not None and info.name_index is not None:
                heap = FractalHeap.read(f, info.heap)
                recs = btree2_records(f, info.name_index, what + " attribute name index")
                for r in recs:
                    if r[8] & 1:
                        raise Fallback("attributes stored as shared messages")
                ids = [r[:8][: heap.id_len] for r in recs]
                for r, body in zip(recs, heap.objects(ids)):
                    order = int.from_bytes(r[9:13], "little")
                    attrs.append((_attr_name(f, body, what), body, order))
        if self.hdr.attr_order_tracked:
            attrs.sort(key=lambda a: a[2] if a[2] is not None else 0)
        else:
            attrs.sort(key=lambda a: a[0])
        self._names = [_decode(a[0]) for a in attrs]
        self._attrs = {n: (a[1], a[2]) for n, a in zip(self._names, attrs)}

    def _body(self, m: Any) -> bytes:
        if m.shared:
            raise Fallback("attributes stored as shared messages")
        return m.body

    def names(self) -> list[Any]:
        self._load()
        return list(self._names or [])

    def value(self, key: Any) -> Any:
        return self._read(key)[0]

    def string_info(self, key: Any) -> Any:
        return self._read(key)[1]

    def cache_key(self, key: Any) -> tuple[int, int, bytes] | None:
        """An identity of the attribute's decoded value valid across files, or None when
        its value depends on the file (references, variable-length data, shared types):
        the attribute message itself, with the file's address and length sizes."""
        self._load()
        assert self._attrs is not None
        got = self._attrs.get(key)
        if got is None:
            return None
        ck = (self.o.f.so, self.o.f.sl, got[0])
        return ck if _ATTR_VALUES.get(ck) is not None else None

    def _read(self, key: Any) -> tuple[Any, Any]:
        got = self._values.get(key)
        if got is not None:
            return got
        self._load()
        assert self._attrs is not None
        got_body = self._attrs.get(key)
        if got_body is None:
            raise KeyError(f"Can't open attribute {key!r}")
        ck = (self.o.f.so, self.o.f.sl, got_body[0])
        got = _ATTR_VALUES.get(ck)
        if got is not None:  # the same message decoded before (in this file or another)
            self._values[key] = got
            return got
        what = f"object header at {self.hdr.address}"
        a = parse_attribute(self.o.f, got_body[0], what, self.o._shared_type)
        dt = a.dtype
        info = dt.string_info()
        if a.space.shape is None:
            got = (Empty(dt.numpy), info)
        else:
            shape = a.space.shape
            elem = dt
            if dt.cls == ARRAY:
                shape = shape + tuple(dt.props["dims"])
                assert dt.base is not None, "an array type has a base type"
                elem = dt.base
            count = math.prod(shape)
            arr = self.o.decode(elem, a.data, count)
            if elem.is_vlen_string:
                strs = np.empty(count, dtype=object)
                strs[:] = [b.decode("utf-8", "surrogateescape") for b in arr]
                arr = strs
            arr = arr.reshape(shape)
            got = (arr[()] if arr.ndim == 0 else arr, info)
        self._values[key] = got
        body = got_body[0]
        if (
            len(body) <= _ATTR_VALUES.max_bytes
            and (body[0] == 1 or not body[1] & 0x01)  # 0x01: a shared type
            and _file_free(dt)
        ):
            # decoded from the message's bytes alone: later files reuse it read-only
            if isinstance(got[0], np.ndarray):
                got[0].flags.writeable = False
            _ATTR_VALUES.put(ck, got)
        return got


def _file_free(dt: Datatype) -> bool:
    """True if values of ``dt`` are decoded from their own bytes alone (no global heap,
    no object references)."""
    if dt.cls in (VLEN, REFERENCE):
        return False
    if dt.base is not None and not _file_free(dt.base):
        return False
    return all(_file_free(m) for _, _, m in dt.members)
