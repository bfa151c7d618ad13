"""Read back what the writers persisted: Icechunk repositories (``open_icechunk``).

A reader, not a writer: it sits beside the API (``virtualizarr.open_icechunk``) and shares
only the repository helpers (storage from a URL, credentials for virtual chunk containers)
with the Icechunk writer.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from virtualizarr.writers._icechunk_repo import credentials_for, storage_for

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["open_icechunk"]


def open_icechunk(
    path_or_url: str | os.PathLike[str],
    *,
    branch: str = "main",
    group: str | None = None,
    snapshot_id: str | None = None,
    chunks: Any = None,
) -> xr.Dataset:
    """Open an Icechunk repository as an xarray Dataset, its virtual chunk containers authorized.

    Parameters
    ----------
    path_or_url
        Local path or ``s3://bucket/prefix`` of the repository.
    branch, snapshot_id
        What to read: the tip of ``branch``, or a snapshot.
    group
        Zarr group to open; the root by default.
    chunks
        Passed to ``xr.open_dataset``: None for lazy numpy-backed variables, ``{}`` for dask.

    Examples
    --------
    >>> # ds = open_icechunk("/data/repo"); ds["air"].mean().values
    """
    import icechunk
    import xarray as xr

    storage = storage_for(str(os.fspath(path_or_url)))
    config = icechunk.Repository.fetch_config(storage)
    containers = (config.virtual_chunk_containers or {}).values() if config else []
    auth = icechunk.containers_credentials(
        {c.url_prefix: credentials_for(c.url_prefix) for c in containers}
    )
    repo = icechunk.Repository.open(storage, authorize_virtual_chunk_access=auth)
    if snapshot_id is not None:
        session = repo.readonly_session(snapshot_id=snapshot_id)
    else:
        session = repo.readonly_session(branch=branch)
    return xr.open_zarr(
        session.store, group=group, consolidated=False, zarr_format=3, chunks=chunks
    )
