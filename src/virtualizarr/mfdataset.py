"""open_virtual_mfdataset: parse many files in parallel and combine them once."""

from __future__ import annotations

import glob as globlib
import importlib.util
import multiprocessing
import multiprocessing.forkserver
import os
import sys
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from fnmatch import fnmatchcase
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import xarray as xr

from virtualizarr.errors import ManifestConcatError
from virtualizarr.manifests import ManifestArray
from virtualizarr.manifests.metadata import cf_encoding_mismatch
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.xarray import open_virtual_dataset

if TYPE_CHECKING:
    from virtualizarr.parsers import Parser

__all__ = ["check_cf_compatible", "expand_paths", "open_virtual_mfdataset"]

ParallelOption = Literal[False, "threads", "processes", "dask"] | Executor


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand_paths(
    paths: str | os.PathLike[str] | Sequence[Any], registry: ObjectStoreRegistry | None = None
) -> list[Any]:
    """A glob (local or object-store URL) expanded and sorted; lists are returned as they are.

    >>> # expand_paths("s3://bucket/era5/*.nc")
    """
    if isinstance(paths, os.PathLike):
        paths = os.fspath(paths)
    if not isinstance(paths, str):
        return list(paths)
    if not _has_magic(paths):
        return [paths]
    if "://" not in paths or paths.startswith("file://"):
        local = paths.removeprefix("file://")
        found = sorted(globlib.glob(os.path.expanduser(local), recursive=True))
    else:
        import obstore

        head = paths[: min(i for i, c in enumerate(paths) if c in "*?[")]
        base = head[: head.rfind("/") + 1]
        store, key = (registry or ObjectStoreRegistry()).resolve(base)
        prefix_url = base[: len(base) - len(key)] if key else base
        found = []
        for batch in obstore.list(store, prefix=key or None):
            for meta in batch:
                url = prefix_url.rstrip("/") + "/" + meta["path"]
                if fnmatchcase(url, paths):
                    found.append(url)
        found.sort()
    if not found:
        raise FileNotFoundError(f"No files match {paths!r}")
    return found


def _flatten(nested: Any, out: list[Any]) -> Any:
    """Replace leaves of nested lists by their index in ``out`` (which collects the leaves)."""
    if isinstance(nested, (list, tuple)):
        return [_flatten(x, out) for x in nested]
    out.append(nested)
    return len(out) - 1


def _unflatten(shape: Any, items: list[Any]) -> Any:
    if isinstance(shape, list):
        return [_unflatten(x, items) for x in shape]
    return items[shape]


def _open_one(
    path: Any,
    registry: ObjectStoreRegistry | None,
    parser: Parser | None,
    preprocess: Callable[[xr.Dataset], xr.Dataset] | None,
    kwargs: dict[str, Any],
) -> xr.Dataset:
    ds = open_virtual_dataset(path, registry, parser, **kwargs)
    return preprocess(ds) if preprocess is not None else ds


def _progress(total: int, progress: bool | None) -> Any:
    show = progress if progress is not None else sys.stderr.isatty()
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="virtualizing", unit="file")


def _worker_modules() -> list[str]:
    """What every worker imports before its first file, so the fork server imports it once."""
    modules = ["virtualizarr.mfdataset", "virtualizarr.parsers"]
    if importlib.util.find_spec("dask") is not None:
        modules.append("dask.array")  # xarray imports it at the first Variable when installed
    return modules


def _process_pool() -> ProcessPoolExecutor:
    """A process pool whose workers start with virtualizarr already imported.

    Not fork: forking a process whose I/O runtime already has threads can deadlock. A
    forkserver worker otherwise imports xarray, dask and zarr itself (~0.7 s) before its
    first file; preloading makes the server import them once for all workers. Preload
    only applies to a fork server not yet running, and keeps modules others asked for.
    """
    ctx = multiprocessing.get_context("forkserver")
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    current = list(getattr(server, "_preload_modules", None) or [])
    ctx.set_forkserver_preload(current + [m for m in _worker_modules() if m not in current])
    return ProcessPoolExecutor(mp_context=ctx)


def _map(
    func: Callable[[Any], xr.Dataset],
    items: list[Any],
    parallel: ParallelOption,
    progress: bool | None,
) -> list[xr.Dataset]:
    bar = _progress(len(items), progress)
    try:
        if parallel is False or parallel is None:
            results = []
            for item in items:
                results.append(func(item))
                if bar is not None:
                    bar.update()
            return results
        if parallel == "dask":
            import dask

            results = list(dask.compute(*(dask.delayed(func)(item) for item in items)))
            if bar is not None:
                bar.update(len(items))
            return results
        chunksize = 1
        if parallel == "threads":
            executor: Executor = ThreadPoolExecutor()
        elif parallel == "processes":
            executor = _process_pool()
            # a few files per task: fewer round trips, and each worker keeps its files' order
            chunksize = max(1, len(items) // (4 * (os.cpu_count() or 1)))
        elif isinstance(parallel, Executor):
            executor = parallel
        else:
            raise ValueError(
                f"parallel must be False, 'threads', 'processes', 'dask' or a concurrent.futures.Executor, "
                f"got {parallel!r}"
            )
        try:
            if chunksize > 1:
                outputs: Any = executor.map(func, items, chunksize=chunksize)
            else:
                outputs = (fut.result() for fut in [executor.submit(func, item) for item in items])
            results = []
            for result in outputs:
                results.append(result)
                if bar is not None:
                    bar.update()
            return results
        finally:
            if executor is not parallel:
                executor.shutdown()
    finally:
        if bar is not None:
            bar.close()


def check_cf_compatible(datasets: Sequence[xr.Dataset]) -> None:
    """Refuse to combine virtual variables whose CF encoding differs between files.

    Combining keeps the first file's attributes, so a different ``scale_factor``,
    ``add_offset``, ``_FillValue`` (or ``units``/``calendar`` of encoded times) in a
    later file would decode its values wrongly. Raises ManifestConcatError naming the
    variable, the attribute, both values and both files.
    """
    first: dict[Hashable, tuple[dict[Hashable, Any], str]] = {}
    for ds in datasets:
        source = str(ds.encoding.get("source", "<dataset>"))
        for name, var in ds.variables.items():
            if not isinstance(var.data, ManifestArray):
                continue
            if name not in first:
                first[name] = (var.attrs, source)
                continue
            ref_attrs, ref_source = first[name]
            bad = cf_encoding_mismatch(ref_attrs, var.attrs)
            if bad is not None:
                key, a, b = bad
                raise ManifestConcatError(
                    f"Cannot combine virtual variable {name!r}: its {key!r} differs between files: "
                    f"{a!r} in {ref_source} vs {b!r} in {source}. The combined variable would decode "
                    "one file's values with the other's encoding. Load the variable "
                    "(loadable_variables=[...]) or fix the encoding with preprocess=."
                )


def open_virtual_mfdataset(
    paths: str | os.PathLike[str] | Sequence[Any],
    registry: ObjectStoreRegistry | None = None,
    parser: Parser | None = None,
    *,
    concat_dim: str | Sequence[str | None] | None = None,
    combine: Literal["by_coords", "nested"] = "by_coords",
    compat: str = "override",
    data_vars: str | list[str] = "minimal",
    coords: str | list[str] = "minimal",
    join: str = "outer",
    preprocess: Callable[[xr.Dataset], xr.Dataset] | None = None,
    parallel: ParallelOption = False,
    combine_attrs: str = "override",
    progress: bool | None = None,
    **kwargs: Any,
) -> xr.Dataset:
    """Open many files as one virtual dataset, like :func:`xarray.open_mfdataset`.

    The defaults never need the values of a virtual variable (``compat="override"``,
    ``data_vars="minimal"``, ``coords="minimal"``). ``paths`` may be a glob (local or
    object-store URL), a list, or nested lists with ``combine="nested"``. Files are
    parsed in parallel (``"threads"``, ``"processes"``, ``"dask"`` or any
    ``concurrent.futures.Executor``, e.g. ``distributed.Client.get_executor()``) and
    combined once. ``kwargs`` go to :func:`open_virtual_dataset`.

    >>> # ds = open_virtual_mfdataset("data/*.nc", parallel="threads")
    >>> # ds.vz.to_icechunk("repo")
    """
    if combine == "nested":
        items: list[Any] = []
        nested = (
            paths if not isinstance(paths, (str, os.PathLike)) else expand_paths(paths, registry)
        )
        shape = _flatten(nested, items)
    elif combine == "by_coords":
        items = expand_paths(paths, registry)
        shape = None
    else:
        raise ValueError(f"combine must be 'by_coords' or 'nested', got {combine!r}")
    if not items:
        raise ValueError("no files to open")
    func = partial(
        _open_one, registry=registry, parser=parser, preprocess=preprocess, kwargs=kwargs
    )
    datasets = _map(func, items, parallel, progress)
    check_cf_compatible(datasets)
    options = {
        "compat": compat,
        "data_vars": data_vars,
        "coords": coords,
        "join": join,
        "combine_attrs": combine_attrs,
    }
    if combine == "nested":
        combined = xr.combine_nested(_unflatten(shape, datasets), concat_dim=concat_dim, **options)
    else:
        combined = xr.combine_by_coords(datasets, **options)
    combined.encoding["source"] = [ds.encoding.get("source") for ds in datasets]
    return combined
