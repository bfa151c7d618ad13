"""Engine-neutral descriptions of HDF5 objects, shared by the h5py engine and our own reader.

The parser's downstream code (dimension naming, attributes, array building) works on these
and asks the engine (:class:`~virtualizarr.parsers.hdf5.objects.Objects` for h5py,
:class:`~virtualizarr.parsers.hdf5.own.OwnObjects` for our reader) for everything else, so
both engines feed exactly the same code and give the same ManifestGroup.

>>> DatasetNode("/t", 1, None, (2, 3), (None, 3)).ndim
2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "Child",
    "DatasetNode",
    "Empty",
    "GroupNode",
    "Node",
    "ObjectRef",
    "Storage",
    "StringInfo",
    "is_empty",
]


@dataclass(slots=True, eq=False)
class Node:
    """One object of the file: its absolute path, identity and the engine's handle."""

    name: str
    """Absolute HDF5 path (``/grp/temp``)."""
    key: Any
    """Hashable identity of the object in the file (same for every path to it)."""
    raw: Any
    """The engine's handle (an h5py object, or our reader's object header)."""


@dataclass(slots=True, eq=False)
class GroupNode(Node):
    """An HDF5 group."""


@dataclass(slots=True, eq=False)
class DatasetNode(Node):
    """An HDF5 dataset: its extent as HDF5 stores it."""

    shape: tuple[int, ...] = ()
    maxshape: tuple[int | None, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    """Per-dataset cache of the engine (creation property list, parsed messages)."""
    null: bool = False
    """A null dataspace (``h5py.Empty``): no values at all, not even a scalar's."""

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(frozen=True, slots=True)
class Child:
    """One member of a group: how it is linked and the object it leads to."""

    key: str
    link: str | None
    """``"hard"``, ``"soft"``, ``"external"``, ``"user"`` (other link classes) or None."""
    target: str
    """The soft link's path or the external link's file name ("" for hard links)."""
    obj: Any
    """A :class:`GroupNode`/:class:`DatasetNode`/:class:`Node` (named datatype), the
    ``KeyError``/``OSError`` raised following the link, or None (external links)."""


@dataclass(frozen=True, slots=True)
class Storage:
    """Where a dataset's bytes are, as its creation properties say."""

    layout: str
    """``compact``, ``contiguous``, ``chunked``, ``virtual`` or the unknown layout's code."""
    external: bool
    """Data in external raw files (``H5Pset_external``)."""
    chunks: tuple[int, ...] | None
    filters: list[Any]
    """:class:`~virtualizarr.parsers.hdf5.filters.Filter` pipeline (empty when none)."""
    offset: int | None
    """Contiguous storage: the address of the data, None when never allocated."""


class StringInfo(NamedTuple):
    """What ``h5py.check_string_dtype`` says of a type: encoding and length (None: vlen)."""

    encoding: str
    length: int | None


@dataclass(frozen=True, slots=True)
class Empty:
    """An attribute with an empty (null) dataspace, as ``h5py.Empty``."""

    dtype: Any


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """An HDF5 object reference read by our reader: the address of an object header."""

    address: int


def is_empty(value: Any) -> bool:
    """True for an attribute value with an empty dataspace (either engine)."""
    if isinstance(value, Empty):
        return True
    h5py = _h5py_if_loaded()
    return h5py is not None and isinstance(value, h5py.Empty)


def is_reference(value: Any) -> bool:
    """True for an object/region reference (either engine)."""
    if isinstance(value, ObjectRef):
        return True
    h5py = _h5py_if_loaded()
    return h5py is not None and isinstance(value, (h5py.Reference, h5py.RegionReference))


def _h5py_if_loaded() -> Any:
    import sys

    return sys.modules.get("h5py")
