"""Per-file caches of opened HDF5 objects and their attributes.

Parsing a small file is dominated by h5py's per-call overhead, not by I/O: opening a
member (``group[key]``), listing and reading attributes. The dimension namer and the
array builder both need each member and its netCDF bookkeeping attributes, so each is
opened and each attribute read once here, then shared. Values and errors are the ones
h5py's high-level API gives (``group[key]``, ``obj.attrs[key]``), so callers behave
exactly as if they had used it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["AttrTable", "Child", "Objects", "ndim"]

from virtualizarr.parsers.hdf5.nodes import (
    Child,
    DatasetNode,
    GroupNode,
    Node,
    Storage,
)


def ndim(dset: Any) -> int:
    """``dset.ndim`` from the shape h5py caches for read-only files (``ndim`` asks HDF5)."""
    shape = dset.shape
    return len(shape) if shape is not None else dset.ndim


def _encode(name: str | bytes) -> bytes:
    """A member name as HDF5 wants it (what h5py does for ``group[name]``)."""
    if isinstance(name, bytes):  # a name that is not UTF-8 comes back from h5py as bytes
        return name
    try:
        return name.encode("ascii")
    except UnicodeEncodeError:
        return name.encode("utf8")


def _link(group: Any, key: str) -> Any:
    """``group.get(key, getlink=True)``, with hard links (nearly all) resolved directly."""
    import h5py
    from h5py import h5g, h5l

    name = _encode(key)
    gid = group.id
    path_valid = getattr(h5g, "_path_valid", None)  # what h5py's ``key in group`` asks
    if path_valid is None or not gid:
        return group.get(key, getlink=True)
    if not path_valid(gid, name, None):
        return None
    if gid.links.get_info(name).type == h5l.TYPE_HARD:
        return h5py.HardLink()
    return group.get(key, getlink=True)  # soft, external and user-defined links


def _open_member(group: Any, key: str) -> Any:
    """``group[key]`` without h5py's per-call overhead (no ``File`` object is made).

    Files are opened read-only, so datasets are bound read-only as h5py would.
    """
    import h5py
    from h5py import h5i, h5o

    oid = h5o.open(group.id, _encode(key))
    otype = h5i.get_type(oid)
    if otype == h5i.GROUP:
        return h5py.Group(oid)
    if otype == h5i.DATASET:
        return h5py.Dataset(oid, readonly=True)
    if otype == h5i.DATATYPE:
        return h5py.Datatype(oid)
    raise TypeError("Unknown object type")


@dataclass(slots=True)
class AttrTable:
    """The attributes of one object, each listed and read at most once.

    Reading errors are kept and raised again on each access, so callers see what
    ``obj.attrs`` would raise.
    """

    obj: Any
    _names: list[str] | BaseException | None = None
    _values: dict[str, tuple[Any, Any] | BaseException] = field(default_factory=dict)

    def names(self) -> list[str]:
        """The attribute names, as ``list(obj.attrs)``."""
        if self._names is None:
            try:
                self._names = _attribute_names(self.obj.id)
            except Exception as e:  # noqa: BLE001  (kept to raise again, as h5py would)
                self._names = e
        if isinstance(self._names, BaseException):
            raise self._names
        return self._names

    def value(self, key: str) -> Any:
        """``obj.attrs[key]``."""
        return self._read(key)[0]

    def string_info(self, key: str) -> Any:
        """``h5py.check_string_dtype`` of the attribute's type (after a successful read)."""
        return self._read(key)[1]

    def _read(self, key: str) -> tuple[Any, Any]:
        got = self._values.get(key)
        if got is None:
            try:
                got = _read_attribute(self.obj, key)
            except Exception as e:  # noqa: BLE001  (kept to raise again, as h5py would)
                got = e
            self._values[key] = got
        if isinstance(got, BaseException):
            raise got
        return got


def _decode_name(name: bytes) -> Any:
    try:
        return name.decode("utf8")
    except UnicodeDecodeError:  # h5py hands such names back as bytes
        return name


def _attribute_names(oid: Any) -> list[Any]:
    """``list(obj.attrs)``: names in creation order when the file tracks it, else by name."""
    from h5py import h5, h5a, h5p

    cpl = oid.get_create_plist()
    tracked = cpl.get_attr_creation_order() & h5p.CRT_ORDER_TRACKED
    raw: list[bytes] = []
    # the bound method is the callback (it returns None: iteration goes on)
    h5a.iterate(oid, raw.append, index_type=h5.INDEX_CRT_ORDER if tracked else h5.INDEX_NAME)
    return [_decode_name(n) for n in raw]


_MEMORY_TYPES: dict[np.dtype, Any] = {}


def _memory_type(dtype: np.dtype) -> Any:
    """``h5t.py_create(dtype)``, kept for plain numeric/byte-string dtypes.

    Dtypes carrying h5py metadata (enums, vlen, references, string encodings) compare
    equal to plain ones, so they are converted every time.
    """
    from h5py import h5t

    if dtype.metadata is not None or dtype.fields is not None or dtype.hasobject:
        return h5t.py_create(dtype)
    htype = _MEMORY_TYPES.get(dtype)
    if htype is None:
        if len(_MEMORY_TYPES) >= 256:
            _MEMORY_TYPES.clear()
        htype = _MEMORY_TYPES[dtype] = h5t.py_create(dtype)
    return htype


def _read_attribute(obj: Any, key: str) -> tuple[Any, Any]:
    """``(obj.attrs[key], check_string_dtype(its type))`` with one open of the attribute.

    Follows h5py's ``AttributeManager.__getitem__`` step by step (empty dataspaces,
    top-level array types, variable-length strings decoded, 0-d arrays as scalars).
    """
    import h5py
    from h5py import h5a

    attr = h5a.open(obj.id, _encode(key))
    shape = attr.shape
    dtype = attr.dtype
    string = h5py.check_string_dtype(dtype)
    if shape is None:  # empty dataspace
        return h5py.Empty(dtype), string
    htype = _memory_type(dtype)
    if dtype.subdtype is not None:  # numpy has no top-level array type: fold it into the shape
        subdtype, subshape = dtype.subdtype
        shape = shape + subshape
        dtype = subdtype
    arr = np.zeros(shape, dtype=dtype, order="C")
    attr.read(arr, mtype=htype)
    inner = h5py.check_string_dtype(dtype)
    if inner and inner.length is None:  # vlen strings: h5py hands back str
        arr = np.array(
            [b.decode("utf-8", "surrogateescape") for b in arr.flat], dtype=dtype
        ).reshape(arr.shape)
    if arr.ndim == 0:
        return arr[()], string
    return arr, string


class Objects:
    """The h5py engine: opened members of each group and attribute tables of each object.

    Hands out engine-neutral nodes (:mod:`~virtualizarr.parsers.hdf5.nodes`) wrapping h5py
    objects, and answers what the array builder asks of a dataset.

    >>> # objects = Objects(h5file); [c.key for c in objects.children(objects.root())]
    """

    def __init__(self, h5file: Any = None) -> None:
        self.file = h5file
        self._children: dict[str, list[Child]] = {}
        # h5py ObjectIDs hash and compare by the object in the file
        self._attrs: dict[Any, AttrTable] = {}

    # -- navigation --------------------------------------------------------------------------

    @staticmethod
    def node(obj: Any) -> Node:
        """The neutral node of an h5py object."""
        import h5py

        if isinstance(obj, h5py.Dataset):
            shape = obj.shape
            return DatasetNode(
                obj.name,
                obj.id,
                obj,
                () if shape is None else shape,
                obj.maxshape or (),
                null=shape is None,  # h5py.Empty
            )
        if isinstance(obj, h5py.Group):
            return GroupNode(obj.name, obj.id, obj)
        return Node(obj.name, obj.id, obj)

    def get(self, path: str) -> Node | None:
        """The object at ``path``, or None."""
        obj = self.file.get(path)
        return None if obj is None else self.node(obj)

    def top_groups(self) -> list[str]:
        import h5py

        return sorted(n for n, v in self.file.items() if isinstance(v, h5py.Group))

    def deref(self, ref: Any) -> Any:
        """The object an attribute's object reference points at."""
        from h5py import h5r

        oid = h5r.dereference(ref, self.file.id)
        if oid is None:
            raise ValueError("null reference")
        return _RefNode(oid, self.file, ref)

    def children(self, group: GroupNode) -> list[Child]:
        """Members of ``group`` in iteration order, each opened once."""
        name = group.name
        out = self._children.get(name)
        if out is None:
            h5group = group.raw
            out = self._children[name] = [self._child(h5group, key) for key in h5group]
        return out

    def _child(self, group: Any, key: str) -> Child:
        import h5py

        link = _link(group, key)
        if link is None:
            kind, target = None, ""
        elif isinstance(link, h5py.HardLink):
            kind, target = "hard", ""
        elif isinstance(link, h5py.SoftLink):
            kind, target = "soft", link.path
        elif isinstance(link, h5py.ExternalLink):
            kind, target = "external", link.filename
        else:
            kind, target = "user", ""
        if kind not in ("hard", "soft"):
            return Child(key, kind, target, None)  # never followed: would open another file
        try:
            obj: Any = self.node(_open_member(group, key))
        except (KeyError, OSError) as e:
            obj = e
        return Child(key, kind, target, obj)

    def attrs(self, obj: Node) -> AttrTable:
        """The attribute table of ``obj`` (a group or dataset node)."""
        table = self._attrs.get(obj.key)
        if table is None:
            table = self._attrs[obj.key] = AttrTable(obj.raw)
        return table

    # -- datasets ----------------------------------------------------------------------------

    def classify(self, dset: DatasetNode) -> tuple[Any, np.dtype]:
        """``(TypeInfo, h5py's dtype)`` of the dataset."""
        from virtualizarr.parsers.hdf5.dtypes import classify

        return classify(dset.raw)

    def _dcpl(self, dset: DatasetNode) -> Any:
        dcpl = dset.extra.get("dcpl")
        if dcpl is None:
            dcpl = dset.extra["dcpl"] = dset.raw.id.get_create_plist()
        return dcpl

    def storage(self, dset: DatasetNode) -> Storage:
        """Layout, chunk shape, filters and contiguous address of the dataset."""
        from h5py import h5d

        from virtualizarr.parsers.hdf5.filters import read_filters

        dcpl = self._dcpl(dset)
        code = dcpl.get_layout()
        layout = {
            h5d.COMPACT: "compact",
            h5d.CONTIGUOUS: "contiguous",
            h5d.CHUNKED: "chunked",
            h5d.VIRTUAL: "virtual",
        }.get(code, str(code))
        chunks = filters = None
        if layout == "chunked":
            chunks = tuple(int(c) for c in dcpl.get_chunk())
            filters = read_filters(dcpl)
        offset = dset.raw.id.get_offset() if layout == "contiguous" else None
        return Storage(layout, bool(dcpl.get_external_count()), chunks, filters or [], offset)

    def fill_value(self, dset: DatasetNode, h5dtype: np.dtype) -> Any:
        """``dset.fillvalue``."""
        arr = np.zeros((1,), dtype=h5dtype)
        self._dcpl(dset).get_fill_value(arr)
        return arr[0]

    def chunk_index(self, dset: DatasetNode) -> Any:
        from virtualizarr.parsers.hdf5.chunks import read_chunk_index

        return read_chunk_index(dset.raw.id, dset.ndim)

    def read(self, dset: DatasetNode, sel: Any = ()) -> np.ndarray:
        """Values decoded by HDF5 (``dset[sel]``); OSError when HDF5 cannot decode them."""
        return np.asarray(dset.raw[sel])

    def read_strings(self, dset: DatasetNode) -> np.ndarray:
        """Variable-length strings as an object array of str."""
        return np.asarray(dset.raw.asstr(errors="replace")[()], dtype=object)


class _RefNode:
    """A dereferenced object: its key, and its (searched-for) path and shape when asked."""

    __slots__ = ("_file", "_ref", "key")

    def __init__(self, oid: Any, h5file: Any, ref: Any) -> None:
        self.key = oid
        self._file = h5file
        self._ref = ref

    @property
    def name(self) -> str:
        return self._file[self._ref].name

    @property
    def shape(self) -> tuple[int, ...]:
        return self._file[self._ref].shape
