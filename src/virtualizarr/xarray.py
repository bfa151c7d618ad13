"""The user API: open files as xarray Datasets/DataTrees of virtual variables."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import xarray as xr

import virtualizarr.accessor  # noqa: F401  (registers ds.vz on the datasets made here)
from virtualizarr.conversion import (
    dataset_from_group,
    dataset_to_group,
    default_loadable,
    dims_of,
)
from virtualizarr.manifests import ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import normalize_path
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    from virtualizarr.parsers import Parser

__all__ = [
    "dataset_from_store",
    "dataset_to_group",  # lives in virtualizarr.conversion; kept importable from here
    "open_virtual_dataset",
    "open_virtual_datatree",
]


def parse_source(
    url: str | os.PathLike[str], registry: ObjectStoreRegistry | None, parser: Parser | None
) -> tuple[str, ObjectStoreRegistry, ManifestStore]:
    """Normalize ``url`` and run ``parser`` (detected when None) on it.

    Returns ``(url, registry, store)``; the registry is a new empty one when None is given.

    >>> # url, registry, store = parse_source("data.nc", None, None)
    """
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


def select_group(group: ManifestGroup, path: str | None, url: str) -> ManifestGroup:
    """The subgroup ``path`` of ``group`` (``group`` itself for None/"/"), else a KeyError naming ``url``.

    >>> # node = select_group(store.group, "forecast", url)
    """
    if not path or path.strip("/") == "":
        return group
    try:
        node = group[path]
    except KeyError:
        raise KeyError(f"{url} has no group {path!r}") from None
    if not isinstance(node, ManifestGroup):
        raise KeyError(f"{path!r} in {url} is an array, not a group")
    return node


def _read_arrays(store: ManifestStore, names: list[str]) -> list[Any]:
    """Values of several arrays of ``store``, read together (no zarr.json reads)."""
    from virtualizarr.values import read_arrays

    return read_arrays(store, names)


def read_raw_variables(
    group: ManifestGroup,
    registry: ObjectStoreRegistry,
    names: list[str],
    store: ManifestStore | None = None,
) -> dict[str, xr.Variable]:
    """The stored (not yet CF-decoded) values of ``names`` as Variables with their attributes."""
    return {
        n: xr.Variable(
            dims_of(n, group.arrays[n]), values, attrs=dict(group.arrays[n].metadata.attributes)
        )
        for n, values in read_stored_values(group, registry, names, store).items()
    }


def read_stored_values(
    group: ManifestGroup,
    registry: ObjectStoreRegistry,
    names: list[str],
    store: ManifestStore | None = None,
) -> dict[str, Any]:
    """The stored (not yet CF-decoded) values of the arrays ``names`` of ``group``, read together.

    ``store``: the parsed store whose root is ``group``, if there is one (reading through
    it saves building another store: a fifth of a small file's cost).

    >>> # read_stored_values(store.group, registry, ["time", "lat"], store)["time"]
    """
    if not names:
        return {}
    if store is None or store.group is not group or store.registry is not registry:
        store = ManifestStore(
            ManifestGroup(arrays={n: group.arrays[n] for n in names}), registry=registry
        )
    return dict(zip(names, _read_arrays(store, names)))


def decode_variables(
    raw: dict[str, xr.Variable], decode_times: bool | None, source: str | None = None
) -> dict[str, xr.Variable]:
    """CF-decode loaded variables as ``xr.open_dataset`` would.

    A value or unit CF cannot decode (a corrupt time unit, a date out of range) raises
    :class:`~virtualizarr.errors.ParserError` naming ``source`` and the variable.
    """
    if not raw:
        return {}

    def decode(variables: dict[str, xr.Variable]) -> dict[str, xr.Variable]:
        # What xr.decode_cf does, without building (and indexing) a Dataset around it.
        # None means "xarray's default", which for decode_times is spelled True.
        decoded, _, _ = xr.conventions.decode_cf_variables(
            variables,
            {},
            decode_times=True if decode_times is None else decode_times,
            decode_timedelta=decode_times,
            mask_and_scale=True,
        )
        for var in decoded.values():  # decoding is lazy: its errors surface here, not later
            var.load()
        return dict(decoded)

    try:
        return decode(raw)
    except (ValueError, OverflowError, TypeError) as e:
        from virtualizarr.errors import ParserError

        culprit = next((n for n in raw if not _decodes(decode, n, raw[n])), None)
        what = f"variable {culprit!r}" if culprit else f"variables {sorted(raw)}"
        reason = str(e).split("\n", 1)[0]
        raise ParserError(
            f"{source or 'the file'}: cannot CF-decode the loaded {what} "
            f"({type(e).__name__}: {reason}). Open it with decode_times=False, or keep it "
            f"virtual by leaving it out of loadable_variables."
        ) from e


def _decodes(decode: Any, name: str, var: xr.Variable) -> bool:
    try:
        decode({name: var})
    except (ValueError, OverflowError, TypeError):
        return False
    return True


def select_variables(
    node: ManifestGroup,
    drop_variables: Iterable[str] | None,
    loadable_variables: Iterable[str] | None,
    source: str | None,
) -> tuple[dict[str, ManifestArray], list[str]]:
    """The arrays kept after ``drop_variables``, and which of them to load."""
    drop = set(drop_variables or ())
    arrays = {k: v for k, v in node.arrays.items() if k not in drop}
    missing = set(loadable_variables or ()) - set(arrays)
    if missing and loadable_variables is not None:
        raise ValueError(
            f"loadable_variables {sorted(missing)} are not variables of {source or 'the file'}"
        )
    load = default_loadable(node) if loadable_variables is None else list(loadable_variables)
    return arrays, [n for n in load if n in arrays]


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
    node = select_group(store.group, group, source or "store")
    arrays, load = select_variables(node, drop_variables, loadable_variables, source)
    raw = read_raw_variables(node, store.registry, load, store)
    loaded = decode_variables(raw, decode_times, source)
    return dataset_from_group(arrays, node.attributes, loaded, source=source)


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
    url, registry, store = parse_source(url, registry, parser)
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
    url, registry, store = parse_source(url, registry, parser)
    root = select_group(store.group, group, url)
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
