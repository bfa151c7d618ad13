"""The ``ds.vz`` accessor (alias ``ds.virtualize``): inspect and write virtual datasets."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import xarray as xr

from virtualizarr.manifests import ManifestArray
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["VirtualiZarrDatasetAccessor"]


class VirtualiZarrDatasetAccessor:
    """Methods for datasets whose variables wrap :class:`ManifestArray`.

    >>> # ds = open_virtual_dataset("air.nc"); ds.vz.nrefs(); ds.vz.to_kerchunk("air.json", format="json")
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def _virtual(self) -> dict[str, ManifestArray]:
        return {
            str(k): v.data
            for k, v in self._ds.variables.items()
            if isinstance(v.data, ManifestArray)
        }

    @property
    def nbytes(self) -> int:
        """Memory the dataset holds: references of virtual variables plus loaded values.

        Each distinct path (and inlined chunk) counts once, however many variables
        reference it, and grids shared between variables (views) count once.

        >>> # open_virtual_mfdataset(files).vz.nbytes / ds.vz.nrefs()  # bytes per reference
        """
        import sys

        import numpy as np

        def owner(a: Any) -> Any:  # the buffer a view shares (a slice, a broadcast)
            while isinstance(a, np.ndarray) and a.base is not None:
                a = a.base
            return a

        def size(o: Any) -> int:
            if isinstance(o, np.ndarray):
                return o.nbytes
            try:
                return memoryview(o).nbytes
            except TypeError:
                return sys.getsizeof(o)

        total = 0
        owners: dict[int, Any] = {}
        entries: set[str | bytes] = set()
        for var in self._ds.variables.values():
            if not isinstance(var.data, ManifestArray):
                total += var.nbytes
                continue
            m = var.data.manifest
            for a in (m.path_ids, m.offsets, m.lengths):
                o = owner(a)
                owners[id(o)] = o
            entries.update(m.table)
        total += sum(size(o) for o in owners.values())
        return total + sum(sys.getsizeof(t) for t in entries)

    def nrefs(self) -> int:
        """Number of chunk references (present chunks) over all virtual variables."""
        return sum(len(arr.manifest) for arr in self._virtual().values())

    def rename_paths(self, new: str | Callable[[str], str]) -> xr.Dataset:
        """A copy whose virtual variables point at other files.

        >>> # ds.vz.rename_paths(lambda p: p.replace("file:///data", "s3://bucket/data"))
        """
        out = self._ds.copy(deep=False)  # new Variable objects, so setting .data is local
        for name, arr in self._virtual().items():
            out.variables[name].data = arr.rename_paths(new)
        return out

    def to_store(self, registry: ObjectStoreRegistry | None = None) -> ManifestStore:
        """A read-only Zarr store serving the dataset's real data, without writing anything.

        >>> # xr.open_zarr(ds.vz.to_store(), consolidated=False, zarr_format=3)
        """
        from virtualizarr.conversion import dataset_to_group

        return ManifestStore(dataset_to_group(self._ds), registry=registry)

    def open_data(self, registry: ObjectStoreRegistry | None = None, **kwargs: Any) -> xr.Dataset:
        """The dataset's real values, read lazily through :meth:`to_store`.

        Opens with zarr's fused codec pipeline (one thread hop per chunk instead of one per
        codec), which reads about 2x faster than the default (README: 3.8 s vs 8.5 s).
        ``kwargs`` go to ``xr.open_dataset`` (``chunks=None`` by default: no dask). Bytes
        that do not decode raise :class:`~virtualizarr.errors.ChunkReadError` naming the file,
        byte range, array and chunk (:mod:`virtualizarr.pipeline`).

        >>> # ds.vz.open_data()["air"].mean()
        """
        from virtualizarr.pipeline import checked

        kwargs.setdefault("chunks", None)
        # the pipeline is chosen when each array is opened, so scoping the setting is enough
        with checked():
            return xr.open_zarr(
                self.to_store(registry), consolidated=False, zarr_format=3, **kwargs
            )

    def to_kerchunk(
        self,
        filepath: str | os.PathLike[str] | None = None,
        format: Literal["dict", "json", "parquet"] = "dict",
        record_size: int = 100_000,
        categorical_threshold: int = 10,
        inline_threshold: int | None = None,
        registry: ObjectStoreRegistry | None = None,
    ) -> dict[str, Any] | None:
        """Kerchunk version-1 references (a dict, or written as JSON/parquet to ``filepath``)."""
        from virtualizarr.writers.kerchunk import to_kerchunk

        return to_kerchunk(
            self._ds,
            filepath,
            format=format,
            record_size=record_size,
            categorical_threshold=categorical_threshold,
            inline_threshold=inline_threshold,
            registry=registry,
        )

    def to_icechunk(
        self,
        store: Any,
        *,
        group: str | None = None,
        mode: str | None = None,
        append_dim: str | None = None,
        region: Any = None,
        validate_containers: bool = True,
        last_updated_at: datetime | None = None,
    ) -> Any:
        """Write virtual references (and loaded variables) into an Icechunk store.

        ``store`` is a session's store (the caller commits) or a repository path/URL
        (created if needed, containers registered, committed: returns the snapshot id).
        """
        from virtualizarr.writers.icechunk import to_icechunk

        return to_icechunk(
            self._ds,
            store,
            group=group,
            mode=mode,
            append_dim=append_dim,
            region=region,
            validate_containers=validate_containers,
            last_updated_at=last_updated_at,
        )


xr.register_dataset_accessor("vz")(VirtualiZarrDatasetAccessor)
xr.register_dataset_accessor("virtualize")(VirtualiZarrDatasetAccessor)
