"""Write virtual datasets into Icechunk repositories (`virtualizarr.open_icechunk` reads them).

Virtual variables become Zarr arrays whose chunks are *virtual references* (URL, offset,
length) into the original files, set in bulk with Icechunk's columnar API
(``set_virtual_refs_arr``); loaded variables are written as real data by xarray with
their CF encoding. Nothing is committed here unless the one-call path (a repository path
or URL instead of a session's store) is used, so an error leaves the branch unchanged.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from virtualizarr.errors import WriterError
from virtualizarr.manifests import ManifestArray
from virtualizarr.writers._icechunk_plan import (
    ArrayWrite,
    Mode,
    check_containers,
    checksum,
    container_prefixes,
    get_doc,
    join,
    json_attrs,
    location,
    parse_mode,
    plan_array,
)
from virtualizarr.writers._icechunk_repo import (
    referenced_urls,
    repository_for_write,
)

if TYPE_CHECKING:
    from collections.abc import Hashable, Mapping
    from datetime import datetime

    from icechunk import IcechunkStore, Repository

    from virtualizarr.ingest import IngestReport, ingest_icechunk, ingested_files

__all__ = ["IngestReport", "ingest_icechunk", "ingested_files", "to_icechunk"]

# ingest_icechunk opens files through the API (open_virtual_mfdataset), so it lives above
# the writers in virtualizarr.ingest; these names stay importable from here, resolved on
# first access (PEP 562) so that importing the writer never imports the API.
_MOVED_TO_INGEST = ("IngestReport", "ingest_icechunk", "ingested_files")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_INGEST:
        import importlib

        return getattr(importlib.import_module("virtualizarr.ingest"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_icechunk(
    ds: xr.Dataset,
    store: Any,
    *,
    group: str | None = None,
    mode: str | None = None,
    append_dim: str | None = None,
    region: Mapping[str, slice] | None = None,
    validate_containers: bool = True,
    last_updated_at: datetime | None = None,
    branch: str = "main",
    message: str | None = None,
) -> str | None:
    """Write a virtual dataset into an Icechunk store (or repository).

    Parameters
    ----------
    ds
        A dataset from :func:`virtualizarr.open_virtual_dataset` (virtual variables wrap
        :class:`ManifestArray`; other variables are written as real data).
    store
        An ``icechunk.IcechunkStore`` (``session.store``) or ``Session``: written, not
        committed. Or a ``Repository``, a local path or an ``s3://bucket/prefix`` URL: the
        repository is created if needed, virtual chunk containers covering the referenced
        files are registered, and the write is committed to ``branch``.
    group
        Path of the Zarr group to write into (created if needed); the root by default.
    mode
        ``"w-"`` (create, fail if the group exists), ``"w"`` (overwrite the group), ``"a"``
        (add or overwrite variables; append with ``append_dim``), ``"a-"`` (like ``"a"``
        but leave existing variables without ``append_dim`` alone), ``"r+"`` (write into
        existing arrays only). Default: ``"a"`` with ``append_dim``, ``"r+"`` with
        ``region``, else ``"w-"``.
    append_dim
        Dimension along which to append after the existing data; encodings must match.
    region
        ``{dim: slice(start, stop)}`` of existing arrays to overwrite; must be chunk aligned.
    validate_containers
        Refuse references whose URL no virtual chunk container of the repository covers.
    last_updated_at
        The files' last-modified guard: reading a chunk fails if its file changed after this
        time (stored in whole seconds, rounded up here).
    branch, message
        Branch and commit message of the one-call path.

    Returns
    -------
    str or None
        The new snapshot id when this call committed, else None.

    Raises
    ------
    WriterError
        Reference outside every container, incompatible append (names the variable, the
        property and both values), unaligned region, bad mode.

    Examples
    --------
    >>> # session = repo.writable_session("main")
    >>> # to_icechunk(ds, session.store); session.commit("add files")
    >>> # to_icechunk(ds, "/data/repo")          # creates, registers containers, commits
    """
    import icechunk

    kwargs: dict[str, Any] = {
        "group": group,
        "mode": mode,
        "append_dim": append_dim,
        "region": region,
        "validate_containers": validate_containers,
        "last_updated_at": last_updated_at,
    }
    if isinstance(store, icechunk.Session):
        store = store.store
    if isinstance(store, icechunk.IcechunkStore):
        _write_dataset(ds, store, **kwargs)
        return None
    if isinstance(store, icechunk.Repository):
        return _write_and_commit(ds, store, branch, message, **kwargs)
    if isinstance(store, (str, os.PathLike)):
        repo, new_containers = repository_for_write(str(os.fspath(store)), referenced_urls(ds))
        snapshot = _write_and_commit(ds, repo, branch, message, **kwargs)
        if new_containers:  # saved only once the references that need them are committed
            repo.save_config()
        return snapshot
    raise TypeError(
        "store must be an icechunk IcechunkStore, Session or Repository, a local path or an "
        f"s3:// URL; got {type(store).__name__}"
    )


def _write_and_commit(
    ds: xr.Dataset, repo: Repository, branch: str, message: str | None, **kwargs: Any
) -> str:
    session = repo.writable_session(branch)
    _write_dataset(ds, session.store, **kwargs)
    # Nothing reaches the branch until this commit: an error above discards the session.
    return session.commit(message or f"virtualizarr: write {len(ds.variables)} variables")


def _write_dataset(
    ds: xr.Dataset,
    store: IcechunkStore,
    *,
    group: str | None,
    mode: str | None,
    append_dim: str | None,
    region: Mapping[str, slice] | None,
    validate_containers: bool,
    last_updated_at: datetime | None,
) -> None:
    mode = parse_mode(mode, append_dim, region)
    if store.read_only:
        raise WriterError(
            "The Icechunk store is read-only; write through repo.writable_session(branch).store."
        )
    if append_dim is not None and append_dim not in ds.dims:
        raise WriterError(
            f"append_dim={append_dim!r} is not a dimension of the dataset {list(ds.dims)}."
        )
    prefix = (group or "").strip("/")
    if mode == "w-" and get_doc(store, join(prefix, "zarr.json")) is not None:
        raise WriterError(
            f"Group {prefix or '/'!r} already exists in the store; pass mode='w' to overwrite it "
            "or mode='a' (with append_dim=) to add to it."
        )
    variables, global_attrs = xr.conventions.encode_dataset_coordinates(ds)
    virtual = {str(k): v for k, v in variables.items() if isinstance(v.data, ManifestArray)}
    loaded = {k: v for k, v in variables.items() if not isinstance(v.data, ManifestArray)}

    # Plan and validate everything first, so a refused write changes nothing at all.
    planned = (
        plan_array(n, v, store, prefix, mode, append_dim, region) for n, v in virtual.items()
    )
    plans = [p for p in planned if p is not None]
    if validate_containers:
        check_containers(plans, container_prefixes(store))
    guard = checksum(last_updated_at)

    _write_loaded(loaded, global_attrs, store, prefix, mode, append_dim, region)
    for plan in plans:
        _write_array(store, plan, validate_containers, guard)
    if mode != "r+":
        doc = {
            "zarr_format": 3,
            "node_type": "group",
            "attributes": json_attrs(global_attrs, None),
        }
        _set_doc(store, join(prefix, "zarr.json"), doc)


def _set_doc(store: IcechunkStore, key: str, doc: dict[str, Any]) -> None:
    _set_bytes(store, key, json.dumps(doc, allow_nan=False).encode())


def _set_bytes(store: IcechunkStore, key: str, data: bytes) -> None:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    sync(store.set(key, default_buffer_prototype().buffer.from_bytes(data)))


def _write_array(
    store: IcechunkStore, plan: ArrayWrite, validate: bool, checksum: datetime | None
) -> None:
    if plan.replace:
        from zarr.core.sync import sync

        sync(store.delete_dir(plan.path))
    if plan.doc is not None:
        _set_doc(store, join(plan.path, "zarr.json"), plan.doc)
    m = plan.arr.manifest
    if m.path_ids.size == 0:
        return
    table = m.table
    # One location per chunk, built by indexing a table of distinct locations (no per-chunk
    # string work); "" marks missing and inlined chunks, which icechunk skips.
    lookup = np.array(
        [location(t) if isinstance(t, str) else "" for t in table] + [""], dtype=object
    )
    ids = np.minimum(m.path_ids, len(table)).ravel()
    failed = store.set_virtual_refs_arr(
        plan.path,
        m.shape_chunk_grid,
        lookup[ids].tolist(),
        np.ascontiguousarray(m.offsets, dtype=np.uint64).ravel(),
        np.ascontiguousarray(m.lengths, dtype=np.uint64).ravel(),
        validate_containers=validate,
        arr_offset=plan.offset if any(plan.offset) else None,
        checksum=checksum,
    )
    if failed:
        raise WriterError(
            f"Icechunk refused {len(failed)} references of {plan.name!r} (first at chunk "
            f"{failed[0]}): no virtual chunk container matches their URL."
        )
    _write_inlined(store, plan)


def _write_inlined(store: IcechunkStore, plan: ArrayWrite) -> None:
    """Chunks whose bytes live in the manifest become native chunks (already encoded)."""
    m = plan.arr.manifest
    if not any(isinstance(t, bytes) for t in m.table):
        return
    from zarr.core.chunk_key_encodings import parse_chunk_key_encoding

    doc = plan.doc or get_doc(store, join(plan.path, "zarr.json"))  # region: the stored one
    if doc is None:
        raise WriterError(f"{plan.path}: no zarr.json in the store to write inlined chunks into.")
    enc = parse_chunk_key_encoding(doc["chunk_key_encoding"])
    for idx in np.argwhere(m.inlined):
        key = enc.encode_chunk_key(tuple(int(i) + o for i, o in zip(idx, plan.offset)))
        _set_bytes(store, join(plan.path, key), m.table[m.path_ids[tuple(idx)]])


def _write_loaded(
    loaded: Mapping[Hashable, xr.Variable],
    global_attrs: Mapping[Hashable, Any],
    store: IcechunkStore,
    prefix: str,
    mode: Mode,
    append_dim: str | None,
    region: Mapping[str, slice] | None,
) -> None:
    import zarr
    from icechunk.xarray import to_icechunk as xr_to_icechunk

    group = prefix or None
    variables = {}
    for name, var in loaded.items():
        var = var.copy(deep=False)
        var.attrs = json_attrs(var.attrs, None)  # the spelling every writer uses
        variables[name] = var
    if mode == "a-":  # existing variables without the append dimension stay as they are
        variables = {
            k: v
            for k, v in variables.items()
            if append_dim in v.dims or get_doc(store, join(prefix, str(k), "zarr.json")) is None
        }
    # Coordinates are already encoded as "coordinates" attributes, so every variable goes in
    # as a data variable (dimension coordinates become indexes by themselves).
    sub = xr.Dataset(variables, attrs=json_attrs(global_attrs, None))  # no NaN literals
    session = store.session
    if mode == "w" or mode == "w-":
        xr_to_icechunk(sub, session, group=group, mode=mode)
    elif not variables:
        if mode != "r+":
            zarr.open_group(store, path=prefix, mode="a", zarr_format=3)
    elif mode == "r+" or region is not None:
        # like xarray's region writes, existing indexes are kept
        xr_to_icechunk(sub, session, group=group, mode=mode, region=dict(region or {}) or None)
    elif get_doc(store, join(prefix, "zarr.json")) is None:
        xr_to_icechunk(sub, session, group=group, mode="w-")
    else:
        appending = append_dim if append_dim is not None and append_dim in sub.dims else None
        xr_to_icechunk(sub, session, group=group, mode="a", append_dim=appending)
