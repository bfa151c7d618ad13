"""The user API: open files as xarray Datasets/DataTrees of virtual variables."""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Any

import xarray as xr

import virtualizarr.accessor  # noqa: F401  (registers ds.vz on the datasets made here)
from virtualizarr.manifests import ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import normalize_path
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    from virtualizarr.parsers import Parser

__all__ = ["dataset_from_store", "open_virtual_dataset", "open_virtual_datatree"]

# xarray moves these from attributes to encoding when it decodes a file
_COORDINATES_ATTR = "coordinates"


def _parse(
    url: str | os.PathLike[str], registry: ObjectStoreRegistry | None, parser: Parser | None
) -> tuple[str, ObjectStoreRegistry, ManifestStore]:
    from virtualizarr.parsers import detect_parser

    url = normalize_path(url)
    registry = registry if registry is not None else ObjectStoreRegistry()
    if parser is None:
        parser = detect_parser(url, registry)
    store = parser(url, registry)
    if not isinstance(store, ManifestStore):
        raise TypeError(
            f"parser {parser!r} returned {type(store).__name__}, expected a ManifestStore"
        )
    return url, registry, store


def _subgroup(group: ManifestGroup, path: str | None, url: str) -> ManifestGroup:
    if not path or path.strip("/") == "":
        return group
    try:
        node = group[path]
    except KeyError:
        raise KeyError(f"{url} has no group {path!r}") from None
    if not isinstance(node, ManifestGroup):
        raise KeyError(f"{path!r} in {url} is an array, not a group")
    return node


def _default_loadable(group: ManifestGroup) -> list[str]:
    """1-D dimension coordinates: arrays named like their only dimension."""
    names = []
    for name, arr in group.arrays.items():
        dims = arr.metadata.dimension_names
        if arr.ndim == 1 and dims is not None and dims[0] == name:
            names.append(name)
    return names


def _dims_of(name: str, arr: ManifestArray) -> tuple[str, ...]:
    dims = arr.metadata.dimension_names
    if dims is None or any(d is None for d in dims):
        raise ValueError(
            f"Array {name!r} has no dimension names; the parser must set them (zarr dimension_names)."
        )
    return tuple(str(d) for d in dims)


def _read_arrays(store: ManifestStore, names: list[str]) -> list[Any]:
    """Values of several arrays of ``store``, read together (no zarr.json reads)."""
    from virtualizarr.manifests.values import read_arrays

    return read_arrays(store, names)


def _load_variables(
    group: ManifestGroup, registry: ObjectStoreRegistry, names: list[str], decode_times: bool | None
) -> dict[str, xr.Variable]:
    """Read ``names`` through a ManifestStore and CF-decode them as xr.open_dataset would."""
    if not names:
        return {}
    store = ManifestStore(
        ManifestGroup(arrays={n: group.arrays[n] for n in names}), registry=registry
    )
    raw = {
        n: xr.Variable(
            _dims_of(n, group.arrays[n]), values, attrs=dict(group.arrays[n].metadata.attributes)
        )
        for n, values in zip(names, _read_arrays(store, names))
    }
    # What xr.decode_cf does, without building (and indexing) a Dataset around it.
    # None means "xarray's default", which for decode_times is spelled True.
    decoded, _, _ = xr.conventions.decode_cf_variables(
        raw,
        {},
        decode_times=True if decode_times is None else decode_times,
        decode_timedelta=decode_times,
        mask_and_scale=True,
    )
    return decoded


def dataset_from_store(
    store: ManifestStore,
    *,
    group: str | None = None,
    drop_variables: Iterable[str] | None = None,
    loadable_variables: Iterable[str] | None = None,
    decode_times: bool | None = None,
    source: str | None = None,
) -> xr.Dataset:
    """Build a Dataset of virtual variables (and loaded ones) from a parsed store.

    >>> # ds = dataset_from_store(HDFParser()(url, registry), loadable_variables=["time"])
    """
    node = _subgroup(store.group, group, source or "store")
    drop = set(drop_variables or ())
    arrays = {k: v for k, v in node.arrays.items() if k not in drop}
    missing = set(loadable_variables or ()) - set(arrays)
    if missing and loadable_variables is not None:
        raise ValueError(
            f"loadable_variables {sorted(missing)} are not variables of {source or 'the file'}"
        )
    load = _default_loadable(node) if loadable_variables is None else list(loadable_variables)
    load = [n for n in load if n in arrays]
    loaded = _load_variables(node, store.registry, load, decode_times)

    variables: dict[Hashable, xr.Variable] = {}
    coord_names: set[str] = set()
    for name, arr in arrays.items():
        if name in load:
            var = loaded[name]
        else:
            attrs = {k: v for k, v in arr.metadata.attributes.items() if k != "_ARRAY_DIMENSIONS"}
            encoding = {}
            if _COORDINATES_ATTR in attrs:
                encoding[_COORDINATES_ATTR] = attrs.pop(_COORDINATES_ATTR)
            var = xr.Variable(_dims_of(name, arr), arr, attrs=attrs, encoding=encoding)
        variables[name] = var
        coords_attr = var.encoding.get(_COORDINATES_ATTR) or var.attrs.get(_COORDINATES_ATTR)
        if isinstance(coords_attr, str):
            coord_names.update(coords_attr.split())
    global_attrs = dict(node.attributes)
    if isinstance(global_attrs.get(_COORDINATES_ATTR), str):
        coord_names.update(global_attrs.pop(_COORDINATES_ATTR).split())
    for name, var in variables.items():
        if name in var.dims:
            coord_names.add(str(name))
    coord_names &= {str(n) for n in variables}

    # Index only loaded 1-D dimension coordinates: an index of a virtual variable would need its values.
    indexed = {n for n in coord_names if n in load and variables[n].dims == (n,)}
    data_vars = {n: v for n, v in variables.items() if n not in coord_names}
    ds = xr.Dataset(data_vars, coords={n: variables[n] for n in indexed}, attrs=global_attrs)
    virtual_coords = {n: variables[n] for n in coord_names - indexed}
    if virtual_coords:
        ds = ds.assign_coords(xr.Coordinates(virtual_coords, indexes={}))
    if source is not None:
        ds.encoding["source"] = source
    return ds


def open_virtual_dataset(
    url: str | os.PathLike[str],
    registry: ObjectStoreRegistry | None = None,
    parser: Parser | None = None,
    *,
    group: str | None = None,
    drop_variables: Iterable[str] | None = None,
    loadable_variables: Iterable[str] | None = None,
    decode_times: bool | None = None,
) -> xr.Dataset:
    """Open a file as an xarray Dataset whose variables reference the file's chunks.

    Parameters
    ----------
    url
        Local path (relative or absolute), ``pathlib.Path`` or URL (``s3://``, ``https://``...).
    registry
        Object stores for the URL's prefix; ``None`` makes default ones (local files, anonymous cloud).
    parser
        A parser such as ``HDFParser()``; ``None`` detects the format from the file's first bytes.
    group
        Path of the group to open (``"/a/b"``); the root by default.
    drop_variables
        Variables to leave out.
    loadable_variables
        Variables to read into memory (CF-decoded like ``xr.open_dataset``). ``None`` loads the
        1-D dimension coordinates, so ``xr.combine_by_coords`` can order files; ``[]`` loads nothing.
    decode_times
        Passed to xarray's CF decoding of loaded variables.

    Returns
    -------
    xarray.Dataset
        Virtual variables wrap :class:`ManifestArray`; ``ds.encoding["source"]`` is the URL.

    Examples
    --------
    >>> # ds = open_virtual_dataset("air.nc")
    >>> # ds.vz.to_kerchunk("air.json", format="json")
    """
    url, registry, store = _parse(url, registry, parser)
    return dataset_from_store(
        store,
        group=group,
        drop_variables=drop_variables,
        loadable_variables=loadable_variables,
        decode_times=decode_times,
        source=url,
    )


def open_virtual_datatree(
    url: str | os.PathLike[str],
    registry: ObjectStoreRegistry | None = None,
    parser: Parser | None = None,
    *,
    group: str | None = None,
    drop_variables: Iterable[str] | None = None,
    loadable_variables: Iterable[str] | None = None,
    decode_times: bool | None = None,
) -> xr.DataTree:
    """Open every group of a file as an :class:`xarray.DataTree` of virtual datasets.

    ``drop_variables``/``loadable_variables`` apply by name in every group.

    >>> # tree = open_virtual_datatree("groups.nc"); tree["/a/b"].ds
    """
    url, registry, store = _parse(url, registry, parser)
    root = _subgroup(store.group, group, url)
    datasets: dict[str, xr.Dataset] = {}
    for path, node in root.walk():
        if not isinstance(node, ManifestGroup):
            continue
        sub_store = ManifestStore(
            ManifestGroup(arrays=node.arrays, attributes=node.attributes), registry=registry
        )
        names = set(node.arrays)
        load = None if loadable_variables is None else [n for n in loadable_variables if n in names]
        datasets["/" + path] = dataset_from_store(
            sub_store,
            drop_variables=drop_variables,
            loadable_variables=load,
            decode_times=decode_times,
            source=url,
        )
    tree = xr.DataTree.from_dict(datasets)
    tree.encoding["source"] = url
    return tree


def _inline_array(name: str, var: xr.Variable) -> ManifestArray:
    """A loaded variable as a ManifestArray holding its CF-encoded values in one inlined chunk."""
    import numpy as np

    from virtualizarr.manifests import ChunkManifest
    from virtualizarr.manifests.metadata import create_v3_array_metadata

    encoded = xr.conventions.encode_cf_variable(
        var.variable if hasattr(var, "variable") else var, name=name
    )
    # ascontiguousarray makes 0-d arrays 1-d: keep the variable's shape
    values = np.ascontiguousarray(np.asarray(encoded.values)).reshape(encoded.shape)
    attrs = dict(encoded.attrs)
    if values.dtype.kind in "OU":
        # text as fixed-width UTF-8 bytes; xarray decodes it back to str through _Encoding
        if values.dtype.kind == "O" and not all(isinstance(v, str) for v in values.ravel()):
            raise TypeError(
                f"Variable {name!r} holds Python objects other than str, which cannot be stored "
                "as an inlined chunk; drop it or convert it to a numeric or string dtype."
            )
        values = np.char.encode(values.astype(str), "utf-8")
        values = values.astype(f"S{max(values.dtype.itemsize, 1)}")
        attrs["_Encoding"] = "utf-8"
    meta = create_v3_array_metadata(
        shape=values.shape,
        data_type=values.dtype,
        chunk_shape=values.shape or (),
        attributes=attrs,
        dimension_names=[str(d) for d in encoded.dims],
    )
    grid = tuple(1 for _ in values.shape)
    if values.size == 0:
        return ManifestArray(
            meta, ChunkManifest.empty(tuple(0 if s == 0 else 1 for s in values.shape))
        )
    ids = np.zeros(grid, dtype=np.uint32)
    manifest = ChunkManifest.from_path_ids(
        table=[values.tobytes()],
        ids=ids,
        offsets=np.zeros(grid),
        lengths=np.full(grid, values.nbytes),
    )
    return ManifestArray(meta, manifest)


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
    """The inverse of :func:`dataset_from_store`: a ManifestGroup for a (combined) virtual dataset.

    Virtual variables keep their references with the Dataset's current attributes and
    dimension names; loaded variables are CF-encoded and held as inlined chunks.

    >>> # store = ManifestStore(dataset_to_group(ds))
    """
    from virtualizarr.manifests.metadata import with_metadata

    per_var, global_coords = _coordinates_attrs(ds)
    arrays: dict[str, ManifestArray] = {}
    for name, var in ds.variables.items():
        if isinstance(var.data, ManifestArray):
            attrs = dict(var.attrs)
            coords_attr = per_var.get(name) or var.encoding.get(_COORDINATES_ATTR)
            if coords_attr:
                attrs[_COORDINATES_ATTR] = coords_attr
            meta = with_metadata(
                var.data.metadata, attributes=attrs, dimension_names=[str(d) for d in var.dims]
            )
            arrays[str(name)] = ManifestArray(meta, var.data.manifest)
        else:
            var = var.copy(deep=False)
            if name in per_var:
                var.encoding[_COORDINATES_ATTR] = per_var[name]
            arrays[str(name)] = _inline_array(str(name), var)
            if name in per_var:
                meta = arrays[str(name)].metadata
                arrays[str(name)] = ManifestArray(
                    with_metadata(
                        meta, attributes={**meta.attributes, _COORDINATES_ATTR: per_var[name]}
                    ),
                    arrays[str(name)].manifest,
                )
    attrs = dict(ds.attrs)
    if global_coords:
        attrs[_COORDINATES_ATTR] = " ".join(global_coords)
    return ManifestGroup(arrays=arrays, attributes=attrs)
