"""Dataset <-> ManifestGroup, and the one way to hold small values as an inlined chunk.

This module sits below both the user API (``virtualizarr.xarray``, ``mfdataset``) and the
writers (kerchunk, Icechunk): it does no I/O. Values that were read elsewhere come in as
``xr.Variable``s (already CF-decoded); virtual variables are :class:`ManifestArray`\\ s.

- :func:`dataset_from_group`: a group's arrays (plus loaded variables) as an ``xr.Dataset``
  whose virtual variables wrap the ManifestArrays, coordinates chosen as xarray would.
- :func:`dataset_to_group`: the inverse, for any (combined) virtual dataset.
- :func:`inline_array` / :func:`single_chunk_manifest`: a one-chunk array whose bytes live in
  the manifest (loaded variables, GRIB and TIFF coordinates, HDF5 values HDF5 must decode).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from virtualizarr.manifests.array import ManifestArray
from virtualizarr.manifests.group import ManifestGroup
from virtualizarr.manifests.manifest import MISSING, ChunkManifest
from virtualizarr.manifests.metadata import create_v3_array_metadata, with_metadata

__all__ = [
    "COORDINATES_ATTR",
    "UNHELD",
    "dataset_from_group",
    "dataset_to_group",
    "default_loadable",
    "dims_of",
    "inline_array",
    "single_chunk_manifest",
    "variable_to_array",
]

COORDINATES_ATTR = "coordinates"
"""CF attribute naming auxiliary coordinates; xarray moves it from attrs to encoding."""


class _Unheld:
    """Marker: a fill value that none of the array's values hold (NaN, or the int minimum)."""

    def __repr__(self) -> str:
        return "UNHELD"


UNHELD: Any = _Unheld()

_COMPRESS_ABOVE = 1 << 16


# -- one chunk held in memory ----------------------------------------------------------------


def single_chunk_manifest(shape: tuple[int, ...], data: bytes | None) -> ChunkManifest:
    """A manifest of one chunk covering the whole array, inlined (missing if ``data`` is None).

    Arrays with a zero-length axis have no chunks at all.

    >>> m = single_chunk_manifest((3,), b"abc")
    >>> m.shape_chunk_grid, m.get_entry((0,))
    ((1,), {'data': b'abc'})
    """
    grid = tuple(1 if s else 0 for s in shape)
    n = math.prod(grid)
    ids = np.full(grid, MISSING if data is None or n == 0 else 0, dtype=np.uint32)
    lengths = np.full(grid, 0 if data is None else len(data), dtype=np.uint64)
    offsets = np.zeros(grid, dtype=np.uint64)
    table = [] if data is None or n == 0 else [data]
    return ChunkManifest.from_path_ids(table=table, ids=ids, offsets=offsets, lengths=lengths)


def _unheld_fill(dtype: np.dtype) -> Any:
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    return None  # the dtype's default


def inline_array(
    values: Any,
    dims: Sequence[str] | str,
    attrs: Mapping[str, Any] | None = None,
    *,
    fill_value: Any = UNHELD,
    compress_above: int | None = _COMPRESS_ABOVE,
) -> ManifestArray:
    """A ManifestArray holding ``values`` as one inlined chunk (little-endian, C order).

    ``fill_value`` defaults to a value the coordinates never hold (NaN, or the integer
    minimum), so Zarr v2 readers that mask the fill value mask nothing; ``None`` is the
    dtype's default. Chunks larger than ``compress_above`` bytes are stored shuffled and
    zlib-compressed (2-D latitude/longitude of a big grid), to keep the manifest small;
    ``None`` never compresses.

    >>> a = inline_array(np.arange(3.0), "x", {"units": "m"})
    >>> a.shape, a.manifest.get_entry((0,))["data"] == np.arange(3.0).tobytes()
    ((3,), True)
    """
    arr = np.asarray(values)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    # ascontiguousarray makes 0-d arrays 1-d: keep the shape
    arr = np.ascontiguousarray(arr).reshape(arr.shape)
    dims = [dims] if isinstance(dims, str) else [str(d) for d in dims]
    raw, codecs = arr.tobytes(), []
    if compress_above is not None and len(raw) > compress_above:
        import numcodecs

        n = arr.dtype.itemsize
        raw = bytes(numcodecs.Zlib(level=1).encode(numcodecs.Shuffle(elementsize=n).encode(raw)))
        codecs = [
            {"name": "numcodecs.shuffle", "configuration": {"elementsize": n}},
            {"name": "numcodecs.zlib", "configuration": {"level": 1}},
        ]
    fill = _unheld_fill(arr.dtype) if fill_value is UNHELD else fill_value
    meta = create_v3_array_metadata(
        shape=arr.shape,
        data_type=arr.dtype,
        chunk_shape=tuple(max(int(s), 1) for s in arr.shape),
        fill_value=fill,
        codecs=codecs,
        attributes=dict(attrs or {}),
        dimension_names=dims,
    )
    return ManifestArray(meta, single_chunk_manifest(arr.shape, raw))


def variable_to_array(name: str, var: xr.Variable) -> ManifestArray:
    """A loaded variable, CF-encoded as ``xr.open_dataset`` would read it back, in one inlined chunk.

    Text becomes fixed-width UTF-8 bytes with ``_Encoding`` (xarray decodes it back to str).

    >>> a = variable_to_array("t", xr.Variable("t", np.array([1, 2])))
    >>> a.shape, a.dtype.kind
    ((2,), 'i')
    """
    encoded = xr.conventions.encode_cf_variable(
        var.variable if hasattr(var, "variable") else var, name=name
    )
    values = np.asarray(encoded.values)
    attrs = dict(encoded.attrs)
    if values.dtype.kind in "OU":
        if values.dtype.kind == "O" and not all(isinstance(v, str) for v in values.ravel()):
            raise TypeError(
                f"Variable {name!r} holds Python objects other than str, which cannot be stored "
                "as an inlined chunk; drop it or convert it to a numeric or string dtype."
            )
        values = np.char.encode(values.astype(str), "utf-8")
        values = values.astype(f"S{max(values.dtype.itemsize, 1)}")
        attrs["_Encoding"] = "utf-8"
    # byte order kept as read (the loaded values are native already); default fill value
    if values.dtype.byteorder == ">":
        values = values.astype(values.dtype.newbyteorder("="))
    dims = [str(d) for d in encoded.dims]
    return inline_array(values, dims, attrs, fill_value=None, compress_above=None)


# -- Dataset <-> ManifestGroup ---------------------------------------------------------------


def default_loadable(group: ManifestGroup) -> list[str]:
    """1-D dimension coordinates: arrays named like their only dimension."""
    names = []
    for name, arr in group.arrays.items():
        dims = arr.metadata.dimension_names
        if arr.ndim == 1 and dims is not None and dims[0] == name:
            names.append(name)
    return names


def dims_of(name: str, arr: ManifestArray) -> tuple[str, ...]:
    """The dimension names of ``arr``; raises when the parser left them out."""
    dims = arr.metadata.dimension_names
    if dims is None or any(d is None for d in dims):
        raise ValueError(
            f"Array {name!r} has no dimension names; the parser must set them (zarr dimension_names)."
        )
    return tuple(str(d) for d in dims)


def dataset_from_group(
    arrays: Mapping[str, ManifestArray | None],
    attributes: Mapping[str, Any],
    loaded: Mapping[str, xr.Variable],
    *,
    source: Any = None,
) -> xr.Dataset:
    """A Dataset of ``arrays`` (virtual) and ``loaded`` (CF-decoded values), in ``arrays`` order.

    Coordinates are chosen as ``xr.open_dataset`` would (CF ``coordinates`` attributes and
    dimension names); only loaded 1-D dimension coordinates get an index (an index of a
    virtual variable would need its values).
    A name given in ``loaded`` may map to None in ``arrays`` (only its place in the order
    is used).

    >>> # ds = dataset_from_group(group.arrays, group.attributes, {"time": time_var})
    """
    variables: dict[Hashable, xr.Variable] = {}
    coord_names: set[str] = set()
    for name, arr in arrays.items():
        if name in loaded:
            var = loaded[name]
        elif arr is None:
            raise ValueError(f"variable {name!r} (of {source}) is neither virtual nor loaded")
        else:
            attrs = {k: v for k, v in arr.metadata.attributes.items() if k != "_ARRAY_DIMENSIONS"}
            encoding = {}
            if COORDINATES_ATTR in attrs:
                encoding[COORDINATES_ATTR] = attrs.pop(COORDINATES_ATTR)
            var = xr.Variable(dims_of(name, arr), arr, attrs=attrs, encoding=encoding)
        variables[name] = var
        coords_attr = var.encoding.get(COORDINATES_ATTR) or var.attrs.get(COORDINATES_ATTR)
        if isinstance(coords_attr, str):
            coord_names.update(coords_attr.split())
    global_attrs = dict(attributes)
    if isinstance(global_attrs.get(COORDINATES_ATTR), str):
        coord_names.update(global_attrs.pop(COORDINATES_ATTR).split())
    for key, var in variables.items():
        if key in var.dims:
            coord_names.add(str(key))
    coord_names &= {str(n) for n in variables}

    # Coordinates in the arrays' order, never a set's: set order follows PYTHONHASHSEED, and
    # with it the coordinates' order, the CF "coordinates" attributes and every writer's bytes
    coords_in_order = [str(n) for n in variables if str(n) in coord_names]
    indexed = [n for n in coords_in_order if n in loaded and variables[n].dims == (n,)]
    data_vars = {n: v for n, v in variables.items() if n not in coord_names}
    ds = xr.Dataset(data_vars, coords={n: variables[n] for n in indexed}, attrs=global_attrs)
    virtual_coords = {n: variables[n] for n in coords_in_order if n not in indexed}
    if virtual_coords:
        ds = ds.assign_coords(xr.Coordinates(virtual_coords, indexes={}))
    if source is not None:
        ds.encoding["source"] = source
    return ds


def _coordinates_attrs(ds: xr.Dataset) -> tuple[dict[Hashable, str], list[str]]:
    """CF ``coordinates`` attributes: per data variable, and the global leftovers."""
    non_dim = [str(c) for c in ds.coords if c not in ds.dims]
    per_var: dict[Hashable, str] = {}
    used: set[str] = set()
    for name, var in ds.data_vars.items():
        mine = [c for c in non_dim if set(ds[c].dims) <= set(var.dims)]
        if mine:
            per_var[name] = " ".join(mine)
            used.update(mine)
    return per_var, [c for c in non_dim if c not in used]


def dataset_to_group(ds: xr.Dataset) -> ManifestGroup:
    """The inverse of :func:`dataset_from_group`: a ManifestGroup for a (combined) virtual dataset.

    Virtual variables keep their references with the Dataset's current attributes and
    dimension names; loaded variables are CF-encoded and held as inlined chunks.

    >>> # store = ManifestStore(dataset_to_group(ds))
    """
    per_var, global_coords = _coordinates_attrs(ds)
    arrays: dict[str, ManifestArray] = {}
    for name, var in ds.variables.items():
        if isinstance(var.data, ManifestArray):
            attrs = dict(var.attrs)
            coords_attr = per_var.get(name) or var.encoding.get(COORDINATES_ATTR)
            if coords_attr:
                attrs[COORDINATES_ATTR] = coords_attr
            meta = with_metadata(
                var.data.metadata, attributes=attrs, dimension_names=[str(d) for d in var.dims]
            )
            arrays[str(name)] = ManifestArray(meta, var.data.manifest)
        else:
            var = var.copy(deep=False)
            if name in per_var:
                var.encoding[COORDINATES_ATTR] = per_var[name]
            arr = variable_to_array(str(name), var)
            if name in per_var:
                meta = arr.metadata
                arr = ManifestArray(
                    with_metadata(
                        meta, attributes={**meta.attributes, COORDINATES_ATTR: per_var[name]}
                    ),
                    arr.manifest,
                )
            arrays[str(name)] = arr
    attrs = dict(ds.attrs)
    if global_coords:
        attrs[COORDINATES_ATTR] = " ".join(global_coords)
    return ManifestGroup(arrays=arrays, attributes=attrs)
