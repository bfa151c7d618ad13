"""The one interface every format parser implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry
    from virtualizarr.store import ManifestStore

__all__ = ["Parser"]


@runtime_checkable
class Parser(Protocol):
    """A parser is constructed with its options and called with a URL and a registry.

    It reads only metadata (through the registry's object store, so remote files work)
    and returns a :class:`~virtualizarr.store.ManifestStore` of the whole file.

    >>> # store = HDFParser(drop_variables=["x"])("s3://bucket/file.nc", registry)
    >>> # xr.open_zarr(store, consolidated=False, zarr_format=3)
    """

    def __call__(self, url: str, registry: ObjectStoreRegistry) -> ManifestStore: ...
