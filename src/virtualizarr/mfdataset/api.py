"""open_virtual_mfdataset: the user's entry point (see the package docstring)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import xarray as xr

from virtualizarr.mfdataset.batches import Job
from virtualizarr.mfdataset.collector import Collector
from virtualizarr.mfdataset.combine import UseXarrayCombine, check_cf_compatible, fast_combine
from virtualizarr.mfdataset.executors import (
    ParallelOption,
    prestart_pool,
    progress_bar,
    run_batches,
)
from virtualizarr.mfdataset.parts import PART_OPTIONS
from virtualizarr.mfdataset.paths import expand_paths, flatten_nested, unflatten_nested
from virtualizarr.registry import ObjectStoreRegistry

if TYPE_CHECKING:
    from xarray.core.types import CombineAttrsOptions, CompatOptions, JoinOptions

    from virtualizarr.parsers import Parser

__all__ = ["OnError", "open_virtual_mfdataset"]


OnError = Literal["raise", "warn", "skip"]


def open_virtual_mfdataset(
    paths: str | os.PathLike[str] | Sequence[Any],
    registry: ObjectStoreRegistry | None = None,
    parser: Parser | None = None,
    *,
    concat_dim: str | Sequence[str | None] | None = None,
    combine: Literal["by_coords", "nested"] = "by_coords",
    compat: CompatOptions = "override",
    data_vars: Literal["all", "minimal", "different"] | list[str] = "minimal",
    coords: str | list[str] = "minimal",
    join: JoinOptions = "outer",
    preprocess: Callable[[xr.Dataset], xr.Dataset] | None = None,
    parallel: ParallelOption = None,
    combine_attrs: CombineAttrsOptions = "override",
    progress: bool | None = None,
    on_error: OnError = "raise",
    retries: int = 2,
    **kwargs: Any,
) -> xr.Dataset:
    """Open many files as one virtual dataset, like :func:`xarray.open_mfdataset`.

    The defaults never need the values of a virtual variable (``compat="override"``,
    ``data_vars="minimal"``, ``coords="minimal"``). ``paths`` may be a glob (local or
    object-store URL), a list, or nested lists with ``combine="nested"``. ``kwargs``
    (``group``, ``drop_variables``, ``loadable_variables``, ``decode_times``) go to
    :func:`open_virtual_dataset`.

    Parameters
    ----------
    parallel
        How files are parsed, in batches of many files per task:

        - ``None`` (default): threads for remote URLs (``REMOTE_THREADS`` of them, their
          requests overlap), one after another for local files (threads only add GIL
          contention there);
        - ``False``: one after another; ``"threads"``; ``"processes"`` (a process pool:
          the fastest for many local files);
        - ``"dask"``: the active ``dask.distributed`` client if there is one, else dask's
          process scheduler;
        - a ``dask.distributed.Client``, or any ``concurrent.futures.Executor``.
    on_error
        A file that fails (after ``retries`` more attempts for errors that may be
        transient, such as a dropped connection): ``"raise"`` raises its error, ``"warn"``
        leaves it out with a warning listing the failed files, ``"skip"`` leaves it out
        silently. Failed files are listed in ``ds.encoding["failed"]`` (path -> error).

    >>> # ds = open_virtual_mfdataset("data/*.nc", parallel="processes")
    >>> # ds.vz.to_icechunk("repo")
    """
    if on_error not in ("raise", "warn", "skip"):
        raise ValueError(f"on_error must be 'raise', 'warn' or 'skip', got {on_error!r}")
    if combine == "nested":
        items: list[Any] = []
        nested = (
            paths if not isinstance(paths, (str, os.PathLike)) else expand_paths(paths, registry)
        )
        shape = flatten_nested(nested, items)
    elif combine == "by_coords":
        items = expand_paths(paths, registry)
        shape = None
    else:
        raise ValueError(f"combine must be 'by_coords' or 'nested', got {combine!r}")
    if not items:
        raise ValueError("no files to open")
    unknown = set(kwargs) - PART_OPTIONS
    if unknown:
        raise TypeError(
            f"open_virtual_mfdataset got unexpected keyword arguments {sorted(unknown)}"
        )
    decode_times = kwargs.get("decode_times")
    job = Job(registry, parser, kwargs, preprocess, max(0, int(retries)), on_error == "raise")

    col: Collector | None = None
    datasets: list[Any] = []  # with preprocess= only
    failed: dict[str, str] = {}
    prestart_pool(parallel)
    bar = progress_bar(len(items), progress)
    try:
        for batch in run_batches(items, job, parallel, bar):
            for f in batch.failures:
                if on_error == "raise":
                    f.error.add_note(f"while virtualizing {f.source} (attempt {f.attempts})")
                    raise f.error
                failed[f.source] = f"{type(f.error).__name__}: {f.error}"
            if batch.collector is not None and len(batch.collector):
                if col is None:
                    col = batch.collector
                else:
                    col.merge(batch.collector)
            datasets.extend(batch.datasets)
            if bar is not None:
                bar.update(batch.done)
    finally:
        if bar is not None:
            bar.close()
    if failed and on_error == "warn":
        listed = "; ".join(f"{p}: {e}" for p, e in list(failed.items())[:10])
        more = f" (and {len(failed) - 10} more)" if len(failed) > 10 else ""
        warnings.warn(
            f"{len(failed)} of {len(items)} files could not be virtualized and are left out: "
            f"{listed}{more}. See ds.encoding['failed'].",
            RuntimeWarning,
            stacklevel=2,
        )
    if col is None and not datasets:
        raise ValueError(f"none of the {len(items)} files could be virtualized: {failed}")

    combined: xr.Dataset | None = None
    if col is not None:
        sources = list(col.sources)
        fast_ok = (
            compat == "override"
            and data_vars == "minimal"
            and coords == "minimal"
            and combine_attrs == "override"
            and join in ("outer", "inner", "left", "right", "exact", "override")
            and (combine == "by_coords" or not failed)  # a hole in a nested grid: xarray says
        )
        if fast_ok:
            try:
                combined = fast_combine(
                    col,
                    combine=combine,
                    concat_dim=concat_dim,
                    decode_times=decode_times,
                    sources=sources,
                )
            except UseXarrayCombine:
                combined = None
        if combined is None:
            table = col.table_tuple()
            datasets = [col.part(i, table).to_dataset(decode_times) for i in range(len(col))]
    if combined is None:
        check_cf_compatible(datasets)
        # xarray's stubs annotate combine_*'s data_vars/coords as str (combine_by_coords's
        # data_vars also as a list), but document -- and pass on to xr.concat -- a list of
        # variable names for both: Any stands in for that until the stubs say so
        names_or_mode_data_vars: Any = data_vars
        names_or_mode_coords: Any = coords
        if combine == "nested":
            if failed:
                raise ValueError(
                    f"combine='nested' cannot leave out the files that failed: {sorted(failed)}"
                )
            merged: xr.Dataset | xr.DataArray | xr.DataTree = xr.combine_nested(
                unflatten_nested(shape, datasets),
                concat_dim=concat_dim,
                compat=compat,
                data_vars=names_or_mode_data_vars,
                coords=names_or_mode_coords,
                join=join,
                combine_attrs=combine_attrs,
            )
        else:
            merged = xr.combine_by_coords(
                datasets,
                compat=compat,
                data_vars=data_vars,
                coords=names_or_mode_coords,
                join=join,
                combine_attrs=combine_attrs,
            )
        if not isinstance(merged, xr.Dataset):  # a DataArray/DataTree only from such inputs
            raise TypeError(f"combining gave a {type(merged).__name__}, not a Dataset")
        combined = merged
        combined.encoding["source"] = [ds.encoding.get("source") for ds in datasets]
    if failed:
        combined.encoding["failed"] = failed
    return combined
