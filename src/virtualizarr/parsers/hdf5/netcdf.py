"""NetCDF4 semantics on top of HDF5: dimension names, hidden objects, attribute values.

The rules follow h5netcdf as ``xr.open_dataset(path, engine="h5netcdf")`` uses it (its
default ``phony_dims="access"``), so a virtual dataset has the same dimension names and
attributes as the file opened directly:

* an axis is named after the dimension scale attached to it (the last one, as netCDF-C
  does); netCDF coordinate variables take theirs from ``_Netcdf4Coordinates``;
* axes without scales get ``phony_dim_N``: per group, each size needs as many phony
  dimensions as the most axes of that size in one variable, less the group's labeled
  dimensions of that size; ``N`` counts up over groups in the order they are visited;
* netCDF's own bookkeeping (``DIMENSION_LIST``, ``_Netcdf4Dimid``, ...) is hidden, as are
  dimension scales that are "a netCDF dimension but not a netCDF variable";
* attribute values are turned into JSON the way h5netcdf + xarray present them:
  fixed-length strings decoded, one-element arrays as scalars, bytes decoded.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from virtualizarr.errors import VirtualiZarrWarning
from virtualizarr.manifests.metadata import to_json_safe
from virtualizarr.parsers.hdf5.memo import BoundedCache
from virtualizarr.parsers.hdf5.nodes import DatasetNode, GroupNode, is_empty, is_reference

__all__ = ["HIDDEN_ATTRS", "DimensionNamer", "netcdf_keys", "read_attributes", "variable_name"]

HIDDEN_ATTRS = frozenset(
    {
        "REFERENCE_LIST",
        "CLASS",
        "DIMENSION_LIST",
        "NAME",
        "_Netcdf4Dimid",
        "_Netcdf4Coordinates",
        "_nc3_strict",
        "_NCProperties",
        "_SuperblockVersion",
        "_IsNetcdf4",
    }
)
"""HDF5/netCDF-4 bookkeeping attributes that are not the variable's (CF) attributes."""

NOT_A_VARIABLE = b"This is a netCDF dimension but not a netCDF variable."
_NON_COORD = "_nc4_non_coord_"
_SCALE = b"DIMENSION_SCALE"


def variable_name(h5name: str) -> str:
    """A dataset's variable name (netCDF-C renames variables that clash with a dimension)."""
    return h5name.replace(_NON_COORD, "")


_NETCDF_KEYS = frozenset(
    {"CLASS", "NAME", "_Netcdf4Coordinates", "_Netcdf4Dimid", "DIMENSION_LIST"}
)


def netcdf_keys(attrs: Any, keys: frozenset[str] = _NETCDF_KEYS) -> dict[str, Any]:
    """The netCDF/dimension-scale bookkeeping attributes that an object has.

    ``attrs`` is the object's :class:`~virtualizarr.parsers.hdf5.objects.AttrTable`.
    """
    try:
        present = [k for k in attrs.names() if k in keys]  # one pass over the names
    except (OSError, TypeError, ValueError, KeyError):
        return {}
    out = {}
    for key in present:
        try:
            out[key] = attrs.value(key)
        except (OSError, TypeError, ValueError, KeyError):
            continue
    return out


def _is_dimension_only(info: dict[str, Any]) -> bool:
    name = info.get("NAME")
    if isinstance(name, str):
        name = name.encode("ascii", "replace")
    return isinstance(name, bytes) and NOT_A_VARIABLE in name


def _is_scale(info: dict[str, Any]) -> bool:
    cls = info.get("CLASS")
    return cls == _SCALE or cls == _SCALE.decode()


@dataclass
class _Dim:
    name: str
    size: int
    """Current length (for unlimited dimensions, the longest attached variable's)."""
    maxsize: int | None
    """None for unlimited dimensions."""
    dimid: int | None
    """netCDF dimension id; None for phony dimensions."""


class DimensionNamer:
    """Names the axes of every dataset of one file like h5netcdf does.

    Groups must be visited parents first (:meth:`visit_group`), in the order xarray
    would open them, because phony dimension numbers count up across groups.

    ``objects`` is the engine (:class:`~virtualizarr.parsers.hdf5.objects.Objects` for
    h5py or :class:`~virtualizarr.parsers.hdf5.own.OwnObjects`), which hands out the nodes.

    >>> # namer = DimensionNamer(objects); namer.visit_group(objects.get("/"))
    >>> # namer.dimensions(objects.get("/temp"), "/")  -> ("time", "lat", "lon")
    """

    def __init__(self, objects: Any) -> None:
        self._objects = objects
        self._groups: dict[str, dict[str, _Dim]] = {}
        self._phony_count = 0
        self._dim_count = -1
        self._info: dict[Any, dict[str, Any]] = {}
        # dimension scale (node key, which hashes by object) -> name; resolving a
        # reference's path searches the whole file, so do it only once
        self._scale_names: dict[Any, str] = {}
        self._chains: dict[str, list[dict[str, _Dim]]] = {}

    def _keys(self, dset: DatasetNode) -> dict[str, Any]:
        info = self._info.get(dset.key)
        if info is None:
            info = self._info[dset.key] = netcdf_keys(self._objects.attrs(dset))
        return info

    def is_dimension_only(self, dset: DatasetNode) -> bool:
        """True for a dimension scale that netCDF marks as not being a variable."""
        return _is_dimension_only(self._keys(dset))

    # -- groups ----------------------------------------------------------------------------

    def visit_group(self, group: GroupNode) -> None:
        """Register the dimensions of ``group`` (labeled scales, then the phony ones it needs)."""
        if group.name in self._groups:
            return
        dims: dict[str, _Dim] = {}
        phony: Counter[int] = Counter()
        for child in self._objects.children(group):
            key, obj = child.key, child.obj
            if child.link not in ("hard", "soft"):
                continue
            if not isinstance(obj, DatasetNode):  # groups, datatypes, dangling links
                continue
            info = self._keys(obj)
            if _is_scale(info):
                self._scale_names[obj.key] = key
                self._dim_count += 1
                dimid = info.get("_Netcdf4Dimid")
                unlimited = obj.maxshape[:1] == (None,)
                size = obj.shape[0] if obj.ndim else 0
                dims[key] = _Dim(
                    key,
                    self._unlimited_size(obj, size) if unlimited else size,
                    None if unlimited else size,
                    int(dimid) if dimid is not None else self._dim_count,
                )
            else:
                labels = self._axis_scales(obj)
                unlabeled = [s for s, n in zip(obj.shape, labels) if n == 0]
                if unlabeled:
                    phony |= Counter(unlabeled)
        labeled = Counter(d.maxsize for d in dims.values())
        for size, count in phony.items():
            for _ in range(labeled[size], count):
                name = f"phony_dim_{self._phony_count}"
                self._phony_count += 1
                dims[name] = _Dim(name, size, size, None)
        self._groups[group.name] = dims

    def _unlimited_size(self, scale: DatasetNode, size: int) -> int:
        keys = netcdf_keys(self._objects.attrs(scale), frozenset({"REFERENCE_LIST"}))
        refs = keys.get("REFERENCE_LIST")
        if refs is None:
            return size
        for ref, axis in refs:
            try:
                size = max(size, self._objects.deref(ref).shape[int(axis)])
            except (KeyError, OSError, ValueError, IndexError):
                continue
        return size

    def _chain(self, group_name: str) -> list[dict[str, _Dim]]:
        """Dimensions of the group and its ancestors, root first."""
        got = self._chains.get(group_name)
        if got is not None:
            return got
        parts = [p for p in group_name.split("/") if p]
        paths = ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
        got = [self._groups[p] for p in paths if p in self._groups]
        if group_name in self._groups:  # visited, so are its ancestors: the chain is final
            self._chains[group_name] = got
        return got

    # -- datasets --------------------------------------------------------------------------

    def _axis_scales(self, dset: DatasetNode) -> list[int]:
        """Number of dimension scales attached to each axis (all 0 without DIMENSION_LIST)."""
        dimlist = self._keys(dset).get("DIMENSION_LIST")
        if dimlist is None or len(dimlist) != dset.ndim:
            return [0] * dset.ndim
        return [len(refs) for refs in dimlist]

    def _ref_name(self, ref: Any) -> str:
        node = self._objects.deref(ref)
        name = self._scale_names.get(node.key)
        if name is None:  # a scale outside the groups visited so far
            name = self._scale_names[node.key] = node.name.split("/")[-1]
        return name

    def dimensions(self, dset: DatasetNode, group_name: str) -> tuple[str, ...]:
        """The dimension names of ``dset`` in the group ``group_name`` (visited already)."""
        chain = self._chain(group_name)
        info = self._keys(dset)
        coords = info.get("_Netcdf4Coordinates")
        if coords is not None and _is_scale(info):
            by_id: dict[int, str] = {}
            for dims in chain:
                by_id.update({d.dimid: n for n, d in dims.items() if d.dimid is not None})
            names = [by_id.get(int(i)) for i in np.atleast_1d(coords)]
            if len(names) == dset.ndim and None not in names:
                return tuple(str(n) for n in names)
        labels = self._axis_scales(dset)
        if dset.ndim and all(labels):
            dimlist = info.get("DIMENSION_LIST")
            assert dimlist is not None  # _axis_scales counted a scale on every axis from it
            try:
                return tuple(self._ref_name(refs[-1]) for refs in dimlist)
            except (KeyError, OSError, ValueError):
                labels = [0] * dset.ndim  # dangling references: fall back to phony names
        own = dset.name.split("/")[-1]
        if dset.ndim == 1 and any(own in dims for dims in chain):
            return (own,)
        return self._phony_names(dset, labels, chain[-1] if chain else {})

    def shape(self, dset: DatasetNode, group_name: str, dims: tuple[str, ...]) -> tuple[int, ...]:
        """The netCDF shape of ``dset``: an axis on an unlimited dimension spans the
        dimension's length (that of its longest variable), as netCDF-C and h5netcdf read
        it, padding shorter variables with the fill value."""
        chain = self._chain(group_name)
        shape = [int(s) for s in dset.shape]
        for axis, name in enumerate(dims):
            for group_dims in reversed(chain):  # the nearest group defining the name wins
                dim = group_dims.get(name)
                if dim is not None:
                    if dim.maxsize is None:
                        shape[axis] = max(shape[axis], dim.size)
                    break
        return tuple(shape)

    def _phony_names(
        self, dset: DatasetNode, labels: list[int], group_dims: dict[str, _Dim]
    ) -> tuple[str, ...]:
        dimlist = self._keys(dset).get("DIMENSION_LIST") if any(labels) else None
        used: Counter[int] = Counter()
        names = []
        for axis, (size, n_scales) in enumerate(zip(dset.shape, labels)):
            if n_scales and dimlist is not None:  # a labeled axis of a partly labeled variable
                names.append(self._ref_name(dimlist[axis][-1]))
                continue
            candidates = [n for n, d in group_dims.items() if d.size == size]
            if used[size] >= len(candidates):  # only for malformed files; keep names unique
                name = f"phony_dim_{self._phony_count}"
                self._phony_count += 1
                group_dims[name] = _Dim(name, size, size, None)
                candidates.append(name)
            names.append(candidates[used[size]])
            used[size] += 1
        return tuple(names)


# -- attributes ------------------------------------------------------------------------------


def _attribute_value(attrs: Any, key: str) -> Any:
    """One attribute as h5netcdf + xarray present it, before JSON conversion."""
    value = attrs.value(key)
    info = attrs.string_info(key)
    if is_empty(value):
        return "" if info is not None and info.length == 1 else []
    if info is not None:
        if info.length is not None and info.length > 1:
            if np.isscalar(value):
                assert isinstance(value, bytes)  # a fixed-length string scalar is np.bytes_
                value = value.decode(info.encoding, "surrogateescape")
            else:
                value = [b.decode(info.encoding, "surrogateescape") for b in value.flat]
        elif not np.isscalar(value):
            value = value.tolist()
    if not np.isscalar(value) and len(value) == 1:
        value = value[0]
    return value


def _json_value(value: Any) -> Any:
    """JSON-able value, or raise TypeError for what JSON cannot hold (references, complex)."""
    import json

    if is_reference(value):
        raise TypeError("object references have no JSON form")
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind == "c":
        raise TypeError("complex numbers have no JSON form")
    out = to_json_safe(value)
    json.dumps(out)  # raises TypeError for what is left (references inside vlen data...)
    return out


_MISS = object()
_IMMUTABLE = (str, int, float, bool, type(None))
_JSON_VALUES: BoundedCache[Any, Any] = BoundedCache(8192)
"""JSON values of attributes by the engine's ``cache_key`` (our reader: the attribute
message's bytes), scalars only: a list would be shared between datasets' attributes."""


def read_attributes(attrs: Any, where: str) -> dict[str, Any]:
    """The (CF) attributes of an HDF5 group or dataset (its attribute table) as JSON values.

    Attributes that cannot be read or have no JSON form (references, complex numbers,
    variable-length compounds) are left out with a :class:`VirtualiZarrWarning`.
    """
    out: dict[str, Any] = {}
    try:
        keys = attrs.names()
    except (OSError, TypeError, ValueError, KeyError) as e:
        warnings.warn(
            f"{where}: attributes could not be listed ({e}); left out.",
            VirtualiZarrWarning,
            stacklevel=3,
        )
        return out
    cache_key = getattr(attrs, "cache_key", None)  # our reader's tables have one
    for key in keys:
        if key in HIDDEN_ATTRS:
            continue
        ck = cache_key(key) if cache_key is not None else None
        if ck is not None:
            got = _JSON_VALUES.get(ck, _MISS)
            if got is not _MISS:
                out[key] = got
                continue
        try:
            out[key] = value = _json_value(_attribute_value(attrs, key))
            if cache_key is not None and isinstance(value, _IMMUTABLE):
                ck = cache_key(key)
                if ck is not None:  # keys only small messages the engine keeps
                    _JSON_VALUES.put(ck, value)
        except (OSError, TypeError, ValueError, KeyError, UnicodeDecodeError) as e:
            warnings.warn(
                f"{where}: attribute {key!r} left out: it cannot be read as a JSON value ({e}).",
                VirtualiZarrWarning,
                stacklevel=3,
            )
    return out
