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


def ndim(dset: Any) -> int:
    """``dset.ndim`` from the shape h5py caches for read-only files (``ndim`` asks HDF5)."""
    shape = dset.shape
    return len(shape) if shape is not None else dset.ndim


@dataclass(frozen=True, slots=True)
class Child:
    """One member of a group: its link (as ``group.get(key, getlink=True)``) and object."""

    key: str
    link: Any
    """h5py ``HardLink``/``SoftLink``/``ExternalLink``/... instance, or None."""
    obj: Any
    """The h5py ``Group``/``Dataset``/``Datatype``, the ``KeyError``/``OSError`` raised
    opening it (dangling links), or None for external links (not followed)."""


def _encode(name: str) -> bytes:
    """A member name as HDF5 wants it (what h5py does for ``group[name]``)."""
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
    """Opened members of each group and attribute tables of each object, for one file.

    >>> # objects = Objects(); [c.key for c in objects.children(h5file)]
    """

    def __init__(self) -> None:
        self._children: dict[str, list[Child]] = {}
        # h5py ObjectIDs hash and compare by the object in the file
        self._attrs: dict[Any, AttrTable] = {}

    def children(self, group: Any) -> list[Child]:
        """Members of ``group`` in iteration order, each opened once."""
        name = group.name
        out = self._children.get(name)
        if out is None:
            out = self._children[name] = [self._child(group, key) for key in group]
        return out

    @staticmethod
    def _child(group: Any, key: str) -> Child:
        import h5py

        link = _link(group, key)
        if link is not None and not isinstance(link, (h5py.HardLink, h5py.SoftLink)):
            return Child(key, link, None)  # never followed: would open another file
        try:
            obj = _open_member(group, key)
        except (KeyError, OSError) as e:
            obj = e
        return Child(key, link, obj)

    def attrs(self, obj: Any) -> AttrTable:
        """The attribute table of ``obj`` (an h5py group or dataset)."""
        table = self._attrs.get(obj.id)
        if table is None:
            table = self._attrs[obj.id] = AttrTable(obj)
        return table
