"""open_virtual_mfdataset: parse many files in parallel and combine them once.

Per file, only a compact part is kept: the manifests of its virtual variables, the stored
(not yet CF-decoded) values of its loaded variables, and its attributes; metadata and
attributes repeated from file to file are shared, and a loaded variable whose values equal
the first file's (``lat``, ``lon``) is not kept again. No per-file ``xr.Dataset`` is built:
when the files combine along one dimension (the usual case, and every default option),
the parts are combined column by column with numpy (one CF decode of the concatenated
coordinate, one manifest grid per variable) and the xarray objects are built once, for the
result. Anything else (``preprocess=``, several concatenation dimensions, variables that
differ between files, non-default ``compat``/``data_vars``/``coords``...) builds a Dataset per
file and combines with xarray, as ``xr.open_mfdataset`` does. Either way the result is the
one ``xr.open_mfdataset`` gives for the same files and options.

Files are parsed in batches (many files per task), so the client does no scheduler work
per file. Each worker collects its batch into a :class:`Collector` (stacked grids, the
batch's path table, each distinct metadata once) and the client merges batches with a few
numpy operations each. With ``parallel="processes"`` the process pool is kept for the
session and forked when that is safe, so workers start at once with the client's imports;
the client parses batches itself only until the first one comes back (a fork server's
start-up), then waits, leaving the cores to the workers.
"""

from __future__ import annotations

import atexit
import bisect
import glob as globlib
import importlib.util
import math
import multiprocessing
import multiprocessing.forkserver
import os
import sys
import threading
import warnings
from array import array
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr
from zarr.core.metadata.v3 import ArrayV3Metadata

from virtualizarr.conversion import dataset_from_group, dims_of
from virtualizarr.errors import ManifestConcatError, VirtualiZarrError
from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.array_api import concatenate
from virtualizarr.manifests.manifest import MISSING
from virtualizarr.manifests.metadata import cf_encoding_mismatch, fill_values_equal, with_metadata
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.xarray import (
    decode_variables,
    parse_source,
    read_stored_values,
    select_group,
    select_variables,
)

if TYPE_CHECKING:
    from xarray.core.types import CombineAttrsOptions, CompatOptions, JoinOptions

    from virtualizarr.parsers import Parser

__all__ = ["check_cf_compatible", "expand_paths", "open_virtual_mfdataset"]

ParallelOption = Literal[False, "threads", "processes", "dask"] | Executor | Any | None
OnError = Literal["raise", "warn", "skip"]

REMOTE_THREADS = 64
"""Threads for remote URLs with ``parallel="threads"`` (or the default): each file costs a few
round trips of 20-60 ms that overlap, while parsing holds the GIL for ~1-5 ms. A file above
``virtualizarr.io.source.WHOLE_BELOW`` is parsed from what it reads (a netCDF-4 file: ~8
sequential requests), so threads mostly wait. Measured with ``benchmarks/remote.py`` (100
files of 9-13 MB, 30 ms per request, a 2-core machine at load ~8): 16 threads 4.8-5.2 s,
32 threads 2.8-3.2 s, 64 threads 2.1-2.3 s. Object stores serve thousands of requests a
second per prefix, so 64 files in flight do not flood them."""

_BATCH_MAX = 256
"""Most files per task: enough that the scheduler's cost per task is noise, few enough that
progress and load balance stay smooth."""


# -- paths -------------------------------------------------------------------------------------


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _glob_match(parts: list[str], pats: list[str]) -> bool:
    """Whether URL segments ``parts`` match glob segments ``pats`` as ``glob.glob(...,
    recursive=True)`` matches local paths: ``*``, ``?`` and ``[...]`` within one segment,
    a ``**`` segment across any number of them.

    >>> _glob_match("s3://b/d/sub/x.nc".split("/"), "s3://b/d/*.nc".split("/"))
    False
    >>> _glob_match("s3://b/d/sub/x.nc".split("/"), "s3://b/**/*.nc".split("/"))
    True
    """
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_glob_match(parts[k:], pats[1:]) for k in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], pats[0]) and _glob_match(parts[1:], pats[1:])


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
        from virtualizarr.io.objects import list_objects

        head = paths[: min(i for i, c in enumerate(paths) if c in "*?[")]
        base = head[: head.rfind("/") + 1]
        names, _ = list_objects(base, registry)  # errors name the URL listed
        urls = (base.rstrip("/") + "/" + name for name in names)
        pats = paths.split("/")
        found = sorted(u for u in urls if _glob_match(u.split("/"), pats))
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


def _is_remote(path: Any) -> bool:
    s = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    return "://" in s and not s.startswith("file://")


# -- one file: a compact part ------------------------------------------------------------------


@dataclass
class FilePart:
    """What one file contributes: no xarray objects, nothing decoded.

    ``names`` lists the file's variables in order, each with whether it is loaded;
    ``virtual`` maps the others to their ManifestArrays; ``loaded`` maps loaded ones to
    (dims, attrs, stored values).
    """

    source: str
    names: tuple[tuple[str, bool], ...]
    attrs: dict[str, Any]
    virtual: dict[str, ManifestArray]
    loaded: dict[str, tuple[tuple[str, ...], dict[str, Any], np.ndarray]]

    def to_dataset(self, decode_times: bool | None) -> xr.Dataset:
        """The Dataset ``open_virtual_dataset`` gives for this file."""
        raw = {
            n: xr.Variable(dims, values, attrs=dict(attrs))
            for n, (dims, attrs, values) in self.loaded.items()
        }
        arrays = {n: self.virtual.get(n) for n, _ in self.names}
        return dataset_from_group(
            arrays,  # loaded names map to None: their values come from `loaded`
            self.attrs,
            decode_variables(raw, decode_times, self.source),
            source=self.source,
        )


_PART_OPTIONS = {"group", "drop_variables", "loadable_variables", "decode_times"}


def virtualize_part(
    path: Any,
    registry: ObjectStoreRegistry | None = None,
    parser: Parser | None = None,
    *,
    group: str | None = None,
    drop_variables: Any = None,
    loadable_variables: Any = None,
) -> FilePart:
    """Parse one file into a :class:`FilePart` (what ``open_virtual_mfdataset`` keeps per file).

    >>> # part = virtualize_part("f001.nc"); part.virtual["air"].manifest
    """
    url, registry, store = parse_source(path, registry, parser)
    node = select_group(store.group, group, url)
    arrays, load = select_variables(node, drop_variables, loadable_variables, url)
    raw = read_stored_values(node, registry, load, store)
    loaded_set = set(load)
    return FilePart(
        source=url,
        names=tuple((n, n in loaded_set) for n in arrays),
        attrs=dict(node.attributes),
        virtual={n: a for n, a in arrays.items() if n not in loaded_set},
        loaded={
            n: (dims_of(n, arrays[n]), dict(arrays[n].metadata.attributes), np.asarray(v))
            for n, v in raw.items()
        },
    )


# -- batches of files, in a worker ------------------------------------------------------------


@dataclass
class Failure:
    """A file that could not be virtualized (after retries)."""

    index: int
    source: str
    error: BaseException
    attempts: int


_DETERMINISTIC: tuple[type[BaseException], ...] = (
    VirtualiZarrError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    ValueError,
    TypeError,
    KeyError,
    NotImplementedError,
)


@dataclass
class _Job:
    """What a worker needs to virtualize files (pickled once per batch)."""

    registry: ObjectStoreRegistry | None
    parser: Any
    options: dict[str, Any]
    preprocess: Callable[[xr.Dataset], xr.Dataset] | None
    retries: int
    fail_fast: bool


@dataclass
class _Batch:
    """The result of one task: its files collected into a :class:`Collector` (or, with
    ``preprocess=``, a Dataset per file), and its failures. ``done`` counts files tried."""

    start: int
    collector: Collector | None = None
    datasets: list[Any] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    done: int = 0


def _same(a: Any, b: Any) -> bool:
    """Equality that never raises (attribute dicts may hold numpy arrays)."""
    if a is b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and _values_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, ArrayV3Metadata) and isinstance(b, ArrayV3Metadata):
        # not dataclass ==: a NaN fill value (common) would make equal metadata differ
        return (
            a.shape == b.shape
            and a.data_type == b.data_type
            and a.chunk_grid == b.chunk_grid
            and a.chunk_key_encoding == b.chunk_key_encoding
            and a.codecs == b.codecs
            and a.dimension_names == b.dimension_names
            and a.storage_transformers == b.storage_transformers
            and fill_values_equal(a.fill_value, b.fill_value)
            and _same(a.attributes, b.attributes)
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True  # NaN attributes (_FillValue, missing_value) are equal
    try:
        return bool(a == b)
    except (ValueError, TypeError):
        return False


def _one(path: Any, job: _Job, registry: ObjectStoreRegistry) -> Any:
    options = {k: v for k, v in job.options.items() if k != "decode_times"}
    part = virtualize_part(path, registry, job.parser, **options)
    if job.preprocess is None:
        return part
    return job.preprocess(part.to_dataset(job.options.get("decode_times")))


def virtualize_batch(paths: Sequence[Any], start: int, job: _Job) -> _Batch:
    """Virtualize ``paths`` (files ``start``, ``start + 1``... of the input) one after another.

    A file that fails is retried up to ``job.retries`` times unless its error is one that
    would repeat (a format error, a missing file); then it becomes a :class:`Failure`.
    """
    batch = _Batch(start, collector=Collector() if job.preprocess is None else None)
    # without a registry, one for the batch: its default stores and resolved URLs are made
    # once, not once per file
    registry = job.registry if job.registry is not None else ObjectStoreRegistry()
    for i, path in enumerate(paths):
        attempt = 0
        batch.done += 1
        while True:
            attempt += 1
            try:
                result = _one(path, job, registry)
            except Exception as e:  # noqa: BLE001  (any error of one file is reported, not fatal)
                if attempt <= job.retries and not isinstance(e, _DETERMINISTIC):
                    continue
                batch.failures.append(Failure(start + i, str(path), e, attempt))
                if job.fail_fast:
                    return batch
                break
            if batch.collector is not None:
                batch.collector.add(result)
            else:
                batch.datasets.append(result)
            break
    return batch


# -- running batches ---------------------------------------------------------------------------


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
    """What every worker imports before its first file, so the fork server imports it once.

    Not dask.array: workers build no xarray Variables (which would import it) unless
    ``preprocess=`` is given, and each module here lengthens the pool's start.
    """
    # obstore (the registry's stores), codecs and values: what a first file imports lazily
    modules = [
        "virtualizarr.mfdataset",
        "virtualizarr.parsers",
        "virtualizarr.codecs",
        "virtualizarr.values",
        "obstore.store",
    ]
    if importlib.util.find_spec("h5py") is not None:
        modules.append("virtualizarr.parsers.hdf5")  # the most common format's parser
    return modules


_FORK_SAFE_THREADS = {"jemalloc_bg_thd"}
"""Native threads that survive a fork (their libraries re-initialise in the child through
``pthread_atfork``), besides those named like the process (OpenBLAS's, started by numpy)."""


def _fork_is_safe() -> bool:
    """Whether forking this process cannot deadlock the child: no Python thread but this one,
    and no native thread but allocator/BLAS pools that handle forks (an I/O runtime's
    ``tokio-rt-worker`` threads, say, may hold locks the child would wait on forever).
    Linux only: it lists every thread's name in ``/proc/self/task``."""
    if not sys.platform.startswith("linux") or threading.active_count() != 1:
        return False
    try:
        names = []
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        with open("/proc/self/comm") as f:
            own = f.read().strip()
    except OSError:
        return False
    return all(n == own or n in _FORK_SAFE_THREADS for n in names)


def _process_pool(max_workers: int | None = None) -> ProcessPoolExecutor:
    """A process pool whose workers start with virtualizarr already imported.

    Fork when that is safe (Linux, see :func:`_fork_is_safe`): the workers start in milliseconds
    with everything the client imported, where a fork server's workers wait ~1.5-2 s of
    CPU for the server to import xarray, zarr and the parsers (a fifth of the work of
    1,000 small files on 2 cores). Forking a process that has other threads can deadlock
    (a lock held by a thread that does not exist in the child), so otherwise a fork
    server, preloaded so that it imports those modules once for all workers. Preload
    only applies to a fork server not yet running, and keeps modules others asked for.
    """
    if _fork_is_safe():
        for m in _worker_modules():  # imported once here instead of once per worker
            importlib.import_module(m)
        if _fork_is_safe():  # an import may have started a thread
            pool = ProcessPoolExecutor(
                max_workers=max_workers, mp_context=multiprocessing.get_context("fork")
            )
            with warnings.catch_warnings():
                # Python warns of any second thread; the BLAS/allocator ones were checked
                warnings.filterwarnings("ignore", "This process .* is multi-threaded")
                pool.submit(os.getpid)  # forks every worker now, in this checked state
            return pool
    ctx = multiprocessing.get_context("forkserver")
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    current = list(getattr(server, "_preload_modules", None) or [])
    ctx.set_forkserver_preload(current + [m for m in _worker_modules() if m not in current])
    return ProcessPoolExecutor(max_workers=max_workers, mp_context=ctx)


_POOL: ProcessPoolExecutor | None = None


def _shared_pool() -> ProcessPoolExecutor:
    """One process pool for the session, started at the first ``parallel="processes"``.

    Starting workers costs a few seconds (the fork server imports xarray, zarr, h5py...);
    keeping them makes every later call (``ingest_icechunk`` makes one per batch) start at
    once. Shut down at exit.
    """
    global _POOL
    if _POOL is None or getattr(_POOL, "_broken", False):
        _POOL = _process_pool()
        atexit.register(_POOL.shutdown, cancel_futures=True)
    return _POOL


def _prestart_pool(parallel: Any) -> None:
    """Start the kept process pool now if ``parallel`` will use it: before the progress
    bar, whose monitor thread would otherwise make forking unsafe (see :func:`_process_pool`)."""
    if parallel == "processes" or (parallel == "dask" and _default_client() is None):
        _shared_pool()


def _is_client(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    return mod.startswith("distributed") and hasattr(obj, "map") and hasattr(obj, "gather")


def _default_client() -> Any:
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ValueError, ImportError):
        return None


def _warm_up_xarray() -> None:
    """Let xarray look up its duck-array modules now, while workers parse.

    xarray's first ``Variable`` imports ``dask.array`` when dask is installed (~1.5 s of
    CPU with scipy.fft); the combine makes the first one. Done while workers parse, that
    import takes a share of a core; done in the combine, it runs alone after them.
    """
    xr.Variable((), np.zeros(()))


def _batches(n: int, workers: int, per_worker_tasks: int = 4) -> list[tuple[int, int]]:
    """(start, stop) ranges: a few tasks per worker, at most ``_BATCH_MAX`` files each."""
    size = max(1, min(_BATCH_MAX, math.ceil(n / max(1, workers * per_worker_tasks))))
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _run(items: list[Any], job: _Job, parallel: ParallelOption, bar: Any) -> Iterator[_Batch]:
    """Yield the batches of ``items`` in input order, computed as ``parallel`` says."""
    n = len(items)
    if parallel is None:
        parallel = "threads" if any(_is_remote(p) for p in items[:8]) else False
    if parallel is False:
        for s, e in _batches(n, 1):
            yield virtualize_batch(items[s:e], s, job)
        return
    if parallel == "dask":
        dask_client = _default_client()
        if dask_client is not None:
            yield from _run(items, job, dask_client, bar)
            return
        # no cluster: dask's local schedulers are threads (which the GIL serialises while
        # parsing) or processes started per call; our kept process pool does the same job
        parallel = "processes"
    if _is_client(parallel):
        # a dask.distributed Client (checked by duck typing: distributed is optional and
        # untyped, so it is Any here)
        client: Any = parallel
        workers = max(1, sum(client.nthreads().values()))
        ranges = _batches(n, workers)
        client_futures = [
            client.submit(virtualize_batch, items[s:e], s, job, pure=False, retries=job.retries)
            for s, e in ranges
        ]
        _warm_up_xarray()
        try:
            for cfut in client_futures:
                yield cfut.result()
        finally:
            client.cancel(client_futures)
        return
    own: Executor | None = None
    executor: Executor
    steal = False
    tasks_per_worker = 4
    if parallel == "threads":
        remote = any(_is_remote(p) for p in items[:8])
        workers = REMOTE_THREADS if remote else min(4, os.cpu_count() or 1)
        own = executor = ThreadPoolExecutor(workers)
    elif parallel == "processes":
        executor = _shared_pool()
        # the pool's size: a private attribute that typeshed leaves out of the stub
        workers = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
        # until the first batch comes back, the client parses batches no worker has
        # started (it hides a fork server's start-up); after that it stays idle, since
        # it would only take a core from a worker. Small batches balance the end.
        steal, tasks_per_worker = True, 8
    elif isinstance(parallel, Executor):
        executor = parallel
        workers = getattr(parallel, "_max_workers", None) or os.cpu_count() or 1
    else:
        raise ValueError(
            "parallel must be False, None, 'threads', 'processes', 'dask', a "
            f"concurrent.futures.Executor or a dask.distributed Client, got {parallel!r}"
        )
    ranges = _batches(n, workers, tasks_per_worker)
    try:
        futures: list[Future[_Batch]] = [
            executor.submit(virtualize_batch, items[s:e], s, job) for s, e in ranges
        ]
        local: dict[int, _Batch] = {}

        def steal_one() -> bool:
            for j in range(len(futures) - 1, -1, -1):
                if j not in local and futures[j].cancel():  # not started by any worker
                    s, e = ranges[j]
                    local[j] = virtualize_batch(items[s:e], s, job)
                    return True
            return False

        if executor is not own:  # a process pool or a cluster: the client waits meanwhile
            _warm_up_xarray()

        def workers_started() -> bool:
            return any(f.done() for f in futures)

        try:
            for k, fut in enumerate(futures):
                while steal and k not in local and not workers_started() and steal_one():
                    pass
                yield local.pop(k) if k in local else fut.result()
        finally:
            for fut in futures:
                fut.cancel()
    finally:
        if own is not None:
            own.shutdown(cancel_futures=True)


# -- collecting compact parts ------------------------------------------------------------------


class _Interner:
    """Return an earlier object equal to ``obj`` (so files share repeated metadata/attrs)."""

    def __init__(self) -> None:
        self._last: dict[Any, Any] = {}

    def __call__(self, key: Any, obj: Any) -> Any:
        last = self._last.get(key)
        if last is not None and _same(last, obj):
            return last
        self._last[key] = obj
        return obj


_BLOCK = 1024
"""Files per block: every this many, a column's per-file grids are stacked into one array."""


class _Virtual:
    """One virtual variable over all files: interned metadata and manifest grids per file.

    Grids arrive one small array per file (~110 bytes of numpy header each, three per file);
    every ``_BLOCK`` files they are stacked into one ``(files, *grid)`` array per field, so a
    file costs its chunks' 20 bytes each plus a few pointers.
    """

    def __init__(self) -> None:
        self.files = array("q")  # the file of each row (files may lack a variable)
        self.metas: list[Any] = []
        self.blocks: list[tuple[Any, Any, Any]] = []  # stacked arrays, or lists of rows
        self.starts: list[int] = []  # first row of each block
        self._pending: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])

    def append(self, ids: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> None:
        for lst, a in zip(self._pending, (ids, offsets, lengths)):
            lst.append(a)
        if len(self._pending[0]) >= _BLOCK:
            self.flush()

    def flush(self) -> None:
        rows = self._pending
        if not rows[0]:
            return
        self.starts.append(len(self.metas) - len(rows[0]))
        if len({a.shape for a in rows[0]}) == 1:
            self.blocks.append(tuple(np.stack(lst) for lst in rows))  # type: ignore[arg-type]
        else:  # grids differ between files (rare): keep the rows
            self.blocks.append(rows)
        self._pending = ([], [], [])

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.flush()
        i = _row_of(self.files, i)
        b = bisect.bisect_right(self.starts, i) - 1
        k = i - self.starts[b]
        ids, offsets, lengths = self.blocks[b]
        return ids[k], offsets[k], lengths[k]

    def uniform_grid(self) -> tuple[int, ...] | None:
        """The grid every file shares, or None."""
        self.flush()
        shapes = set()
        for ids, _, _ in self.blocks:
            if isinstance(ids, list):
                return None
            shapes.add(ids.shape[1:])
        return shapes.pop() if len(shapes) == 1 else None


def _row_of(files: array, i: int) -> int:
    """The row of file ``i`` in a column whose rows are the files ``files`` (increasing)."""
    if len(files) == files[-1] + 1:  # every file so far has the variable
        return i
    return bisect.bisect_left(files, i)


class _Loaded:
    """One loaded variable over all files: stored values, ``None`` where equal to the first,
    raw ``bytes`` where they have the first's dtype and shape (see :func:`_pack`)."""

    def __init__(self) -> None:
        self.files = array("q")
        self.dims: list[tuple[str, ...]] = []
        self.attrs: list[dict[str, Any]] = []
        self.values: list[np.ndarray | bytes | None] = []

    def first(self) -> np.ndarray | None:
        """The first file's values (always kept as an array), or None before any file."""
        v = self.values[0] if self.values else None
        assert v is None or isinstance(v, np.ndarray)
        return v


def _pack(values: np.ndarray, first: np.ndarray | None) -> np.ndarray | bytes:
    """``values`` as bytes when they are numbers of ``first``'s dtype and shape: a file's
    ``time`` then costs ~50 bytes instead of a ~230-byte numpy array (23 MB at 100k files)."""
    if (
        first is not None
        and values.dtype == first.dtype
        and values.shape == first.shape
        and values.dtype.kind in "biufcmM"
    ):
        return np.ascontiguousarray(values).tobytes()
    return values


def _unpack(v: np.ndarray | bytes, first: np.ndarray) -> np.ndarray:
    """The values :func:`_pack` packed relative to ``first`` (read-only when they were bytes)."""
    if isinstance(v, bytes):
        return np.frombuffer(v, dtype=first.dtype).reshape(first.shape)
    return v


class Collector:
    """Compact parts of many files: one global path table, numpy grids per variable."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.names: list[tuple[tuple[str, bool], ...]] = []
        self.attrs: list[dict[str, Any]] = []
        self.virtual: dict[str, _Virtual] = {}
        self.loaded: dict[str, _Loaded] = {}
        self.table: dict[str | bytes, int] = {}
        self._intern = _Interner()

    def __len__(self) -> int:
        return len(self.sources)

    def add(self, part: FilePart) -> None:
        source = part.source
        for arr in part.virtual.values():  # share the path string with the table's entry
            source = next((t for t in arr.manifest.table if t == source), source)
            break
        self.sources.append(source)
        self.names.append(self._intern("names", part.names))
        self.attrs.append(self._intern("attrs", part.attrs))
        i = len(self.sources) - 1
        for name, arr in part.virtual.items():
            col = self.virtual.setdefault(name, _Virtual())
            col.files.append(i)
            col.metas.append(self._intern(("meta", name), arr.metadata))
            m = arr.manifest
            remap = np.fromiter(
                (self.table.setdefault(t, len(self.table)) for t in m.table),
                dtype=np.uint32,
                count=len(m.table),
            )
            ext = np.append(remap, MISSING)
            col.append(ext[np.minimum(m.path_ids, len(remap))], m.offsets, m.lengths)
        for name, (dims, attrs, values) in part.loaded.items():
            lcol = self.loaded.setdefault(name, _Loaded())
            lcol.files.append(i)
            lcol.dims.append(self._intern(("dims", name), dims))
            lcol.attrs.append(self._intern(("lattrs", name), attrs))
            first = lcol.first()
            same = first is not None and _values_equal(first, values)
            lcol.values.append(None if same else _pack(values, first))

    def _table_tuple(self) -> tuple[str | bytes, ...]:
        return tuple(self.table)

    def array(self, name: str, i: int, table: tuple[str | bytes, ...]) -> ManifestArray:
        """File ``i``'s virtual variable ``name`` (ids into the global ``table``)."""
        col = self.virtual[name]
        ids, offsets, lengths = col.row(i)
        manifest = ChunkManifest.from_path_ids(
            table=table, ids=ids, offsets=offsets, lengths=lengths, normalize=False
        )
        return ManifestArray(col.metas[_row_of(col.files, i)], manifest)

    def values(self, name: str, i: int) -> np.ndarray:
        col = self.loaded[name]
        v = col.values[_row_of(col.files, i)]
        first = col.first()
        assert first is not None
        return first if v is None else _unpack(v, first)

    def concat_values(self, name: str, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """Every file's values of ``name`` concatenated along ``axis``, and each file's length
        along it. When every file's values have the first's dtype and shape (packed), one
        join of their bytes: no numpy array per file."""
        col = self.loaded[name]
        first = col.first()
        assert first is not None
        n = len(self)
        if len(col.files) == n and all(v is None or isinstance(v, bytes) for v in col.values[1:]):
            head = np.ascontiguousarray(first).tobytes()
            buf = bytearray().join(head if v is None else v for v in [None, *col.values[1:]])
            stacked = np.frombuffer(buf, dtype=first.dtype).reshape((n, *first.shape))
            shape = list(first.shape)
            shape[axis] *= n
            # files outermost along `axis`, as np.concatenate lays them out
            out = np.moveaxis(stacked, 0, axis).reshape(shape)
            return out, np.full(n, first.shape[axis])
        parts = [self.values(name, i) for i in range(n)]
        return np.concatenate(parts, axis=axis), np.array([p.shape[axis] for p in parts])

    def merge(self, other: Collector) -> None:
        """Append the files of ``other`` (a batch collected in a worker) after these.

        Work per batch and per distinct object, plus C-level list extends: the client does
        no Python work per chunk and almost none per file.
        """
        base = len(self.sources)
        if base:  # our interner forgets across pickling: seed it with our latest objects
            self._intern("names", self.names[-1])
            self._intern("attrs", self.attrs[-1])
            for name, vc in self.virtual.items():
                self._intern(("meta", name), vc.metas[-1])
            for name, lc in self.loaded.items():
                self._intern(("dims", name), lc.dims[-1])
                self._intern(("lattrs", name), lc.attrs[-1])
        remap = np.fromiter(
            (self.table.setdefault(t, len(self.table)) for t in other.table),
            dtype=np.uint32,
            count=len(other.table),
        )
        ext = np.append(remap, MISSING)
        canon: dict[int, Any] = {}

        def intern(key: Any, objs: list[Any]) -> list[Any]:
            for o in objs:
                if id(o) not in canon:
                    canon[id(o)] = self._intern(key, o)
            return [canon[id(o)] for o in objs]

        shared = {t: t for t in other.table if isinstance(t, str)}
        self.sources.extend(shared.get(s, s) for s in other.sources)
        self.names.extend(intern("names", other.names))
        self.attrs.extend(intern("attrs", other.attrs))
        for name, oc in other.virtual.items():
            oc.flush()
            col = self.virtual.setdefault(name, _Virtual())
            col.flush()
            rows = len(col.metas)
            col.files.extend(f + base for f in oc.files)
            col.metas.extend(intern(("meta", name), oc.metas))
            for start, (ids, offsets, lengths) in zip(oc.starts, oc.blocks):
                col.starts.append(rows + start)
                if isinstance(ids, list):
                    ids = [ext[np.minimum(a, len(remap))] for a in ids]
                else:
                    ids = ext[np.minimum(ids, len(remap))]
                col.blocks.append((ids, offsets, lengths))
        for name, ol in other.loaded.items():
            lcol = self.loaded.setdefault(name, _Loaded())
            lcol.files.extend(f + base for f in ol.files)
            lcol.dims.extend(intern(("dims", name), ol.dims))
            lcol.attrs.extend(intern(("lattrs", name), ol.attrs))
            theirs = ol.first()
            assert theirs is not None
            mine = lcol.first()
            same = mine is not None and _values_equal(mine, theirs)
            if not lcol.values:
                lcol.values.extend(ol.values)
            elif same:
                lcol.values.extend(None if v is None else v for v in [None, *ol.values[1:]])
            else:  # their "same as first" and packing are relative to their first, not ours
                assert mine is not None
                lcol.values.extend(
                    _pack(theirs if v is None else _unpack(v, theirs), mine) for v in ol.values
                )

    def __getstate__(self) -> dict[str, Any]:
        # metadata as dicts, each distinct one once (zarr's metadata objects pickle slowly)
        metas: dict[int, int] = {}
        docs: list[dict[str, Any]] = []
        virtual = {}
        for name, col in self.virtual.items():
            col.flush()
            idx = []
            for m in col.metas:
                if id(m) not in metas:
                    metas[id(m)] = len(docs)
                    docs.append(m.to_dict())
                idx.append(metas[id(m)])
            virtual[name] = (col.files, idx, col.starts, col.blocks)
        state = dict(self.__dict__)
        state.update(virtual=virtual, metas=docs, _intern=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from virtualizarr.manifests.metadata import metadata_from_dict

        metas = [metadata_from_dict(d) for d in state.pop("metas")]
        virtual = state.pop("virtual")
        self.__dict__.update(state)
        self._intern = _Interner()
        self.virtual = {}
        for name, (files, idx, starts, blocks) in virtual.items():
            col = _Virtual()
            col.files, col.starts, col.blocks = files, starts, blocks
            col.metas = [metas[k] for k in idx]
            self.virtual[name] = col

    def part(self, i: int, table: tuple[str | bytes, ...]) -> FilePart:
        """File ``i`` as a :class:`FilePart` again (for the general combine)."""
        names = self.names[i]
        return FilePart(
            source=self.sources[i],
            names=names,
            attrs=self.attrs[i],
            virtual={n: self.array(n, i, table) for n, ld in names if not ld},
            loaded={
                n: (self.loaded[n].dims[i], self.loaded[n].attrs[i], self.values(n, i))
                for n, ld in names
                if ld
            },
        )


def _values_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


# -- the combine ------------------------------------------------------------------------------


def _meta_dims(name: str, meta: Any) -> tuple[str, ...]:
    dims = meta.dimension_names
    if dims is None or any(d is None for d in dims):
        raise ValueError(
            f"Array {name!r} has no dimension names; the parser must set them (zarr dimension_names)."
        )
    return tuple(str(d) for d in dims)


class _General(Exception):
    """The fast combine does not apply: combine per-file Datasets with xarray instead."""


def _check_cf(col: Collector, name: str) -> None:
    """check_cf_compatible over one column (only distinct metadata need comparing)."""
    metas = col.virtual[name].metas
    first = metas[0]
    seen = {id(first)}
    for i, m in enumerate(metas):
        if id(m) in seen:
            continue
        seen.add(id(m))
        bad = cf_encoding_mismatch(first.attributes, m.attributes)
        if bad is not None:
            raise _cf_error(name, bad, col.sources[0], col.sources[i])


def _cf_error(name: Hashable, bad: tuple[str, Any, Any], src_a: str, src_b: str) -> Exception:
    key, a, b = bad
    return ManifestConcatError(
        f"Cannot combine virtual variable {name!r}: its {key!r} differs between files: "
        f"{a!r} in {src_a} vs {b!r} in {src_b}. The combined variable would decode "
        "one file's values with the other's encoding. Load the variable "
        "(loadable_variables=[...]) or fix the encoding with preprocess=."
    )


def _monotonic(values: np.ndarray, starts: np.ndarray, sign: int) -> bool:
    """Whether every file's slice of ``values`` is monotonic (non-strictly) in direction ``sign``."""
    if values.size < 2:
        return True
    d = np.diff(values)
    if d.dtype.kind == "m":
        d = d.astype(np.int64)
    inner = np.ones(d.size, dtype=bool)
    inner[starts[1:] - 1] = False  # differences across file boundaries do not count
    return bool(np.all(d[inner] * sign >= 0))


def _fast_combine(
    col: Collector,
    *,
    combine: str,
    concat_dim: Any,
    decode_times: bool | None,
    sources: list[str],
) -> xr.Dataset:
    """The Dataset xarray's combine gives for the files of ``col``, built column by column.

    Raises ``_General`` when the files do not line up along one dimension (then the
    general combine runs).
    """
    n = len(col)
    names = col.names[0]
    if any(nm is not names for nm in col.names):
        raise _General("files have different variables")
    loaded_names = [nm for nm, ld in names if ld]
    for nm in loaded_names:
        lc = col.loaded[nm]
        if any(d is not lc.dims[0] for d in lc.dims) or any(a is not lc.attrs[0] for a in lc.attrs):
            raise _General(f"{nm}: dims or attributes differ between files")
    dims_of = {nm: col.loaded[nm].dims[0] for nm in loaded_names}
    for nm, ld in names:
        if not ld:
            dims_of[nm] = _meta_dims(nm, col.virtual[nm].metas[0])

    if combine == "nested":
        dim = (
            concat_dim[0]
            if isinstance(concat_dim, (list, tuple)) and len(concat_dim) == 1
            else concat_dim
        )
        if not isinstance(dim, str) or not any(dim in d for d in dims_of.values()):
            raise _General("nested combine along a new or several dimensions")
    else:
        varying = [
            nm
            for nm in loaded_names
            if dims_of[nm] == (nm,) and any(v is not None for v in col.loaded[nm].values[1:])
        ]
        if n > 1 and len(varying) != 1:
            raise _General("not exactly one dimension coordinate differs between files")
        dim = varying[0] if varying else None
    for nm in loaded_names:
        if (dim is None or dim not in dims_of[nm]) and any(
            v is not None for v in col.loaded[nm].values[1:]
        ):
            raise _General(f"{nm} differs between files but is not along the concat dimension")

    # one CF decode per loaded variable: of the concatenation for those along `dim`
    decoded: dict[str, xr.Variable] = {}
    bounds: dict[str, np.ndarray] = {}
    for nm in loaded_names:
        lc = col.loaded[nm]
        d = dims_of[nm]
        if dim is not None and dim in d and n > 1:
            ax = d.index(dim)
            raw, sizes = col.concat_values(nm, ax)
            bounds[nm] = np.concatenate([[0], np.cumsum(sizes)])
        else:
            raw = col.values(nm, 0)
        var = xr.Variable(d, raw, attrs=dict(lc.attrs[0]))
        decoded[nm] = decode_variables({nm: var}, decode_times, f"{n} files ({col.sources[0]}...)")[
            nm
        ]

    order = np.arange(n)
    if combine != "nested" and dim is not None and n > 1:
        coord = decoded[dim]
        vals = np.asarray(coord.values)
        b = bounds[dim]
        if vals.dtype.kind not in "iufM" or (np.diff(b) == 0).any():
            raise _General("concat coordinate is not numeric/datetime or a file has none")
        if vals.dtype.kind in "fM" and np.isnan(vals).any():
            raise _General("NaN/NaT in the concat coordinate")
        starts = b[:-1]
        if _monotonic(vals, starts, 1):
            sign = 1
        elif _monotonic(vals, starts, -1):
            sign = -1
        else:
            raise _General("not monotonic in every file")
        first = vals[starts]
        if np.unique(first).size != n:
            raise _General("two files start at the same coordinate value")
        order = np.argsort(first, kind="stable")
        if sign < 0:
            order = order[::-1]
        if not _monotonic(vals[_ranges(b, order)], np.array([0]), sign):
            raise _General("resulting index is not monotonic")

    # virtual variables
    for nm, ld in names:
        if not ld:
            _check_cf(col, nm)
    table = col._table_tuple()
    first_i = int(order[0])
    arrays: dict[str, Any] = {}
    loaded: dict[str, xr.Variable] = {}
    for nm, ld in names:
        d = dims_of[nm]
        along = dim is not None and dim in d and n > 1
        if ld:
            var = decoded[nm]
            if along and not np.array_equal(order, np.arange(n)):
                var = var.isel({dim: _ranges(bounds[nm], order)})
            loaded[nm] = var
            arrays[nm] = None
            continue
        if not along:
            arrays[nm] = col.array(nm, first_i, table)
            continue
        arrays[nm] = _concat_virtual(col, nm, d.index(dim), order, table)
    ds = dataset_from_group(arrays, col.attrs[first_i], loaded, source=sources)
    return ds


def _ranges(bounds: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(bounds[i], bounds[i+1])`` for ``i`` in ``order``, vectorised."""
    starts = bounds[:-1][order]
    sizes = np.diff(bounds)[order]
    out_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.repeat(starts - out_starts, sizes) + np.arange(int(sizes.sum()))


def _concat_virtual(
    col: Collector, name: str, axis: int, order: np.ndarray, table: tuple[str | bytes, ...]
) -> ManifestArray:
    """``np.concatenate`` of every file's array in ``order``, with one numpy gather per grid."""
    vc = col.virtual[name]
    metas = vc.metas
    first = metas[int(order[0])]
    distinct = {id(m): m for m in metas}
    grid = vc.uniform_grid()
    if len(distinct) > 1 or grid is None:
        # differing metadata (a shorter last file, or an error to report): the array path,
        # which checks and names every mismatch; only distinct metadata need checking
        reps: dict[int, int] = {}
        for i in order:
            reps.setdefault(id(metas[i]), int(i))
        if len(reps) > 1:
            np.concatenate([col.array(name, i, table) for i in reps.values()], axis=axis)
        if grid is None:
            return concatenate([col.array(name, int(i), table) for i in order], axis=axis)
    chunk = first.chunks[axis]
    lengths_along = np.array([metas[i].shape[axis] for i in order])
    bad = np.flatnonzero(lengths_along[:-1] % chunk)
    if bad.size:
        i = int(bad[0])
        raise ManifestConcatError(
            f"Cannot concatenate virtual arrays along axis {axis}: input {i} has length "
            f"{lengths_along[i]}, not a multiple of the chunk length {chunk}, so its last chunk "
            "is partial and would sit in the middle of the result. Only the last input may end "
            "in a partial chunk."
        )
    position = np.empty(len(order), dtype=np.intp)
    position[order] = np.arange(len(order))  # where each file's grid goes

    def gather(field: int) -> np.ndarray:
        # one output array filled block by block (no copy of all blocks first)
        dtype = vc.blocks[0][field].dtype
        out = np.empty((len(order), *grid), dtype=dtype)
        for start, block in zip(vc.starts, vc.blocks):
            rows = block[field]
            out[position[start : start + len(rows)]] = rows
        moved = np.moveaxis(out, 0, axis)  # (..., file, grid[axis], ...): a view
        shape = list(grid)
        shape[axis] *= len(order)
        return moved.reshape(shape)  # a view when axis == 0

    manifest = ChunkManifest.from_path_ids(
        table=table, ids=gather(0), offsets=gather(1), lengths=gather(2), normalize=False
    )
    shape = list(first.shape)
    shape[axis] = int(lengths_along.sum())
    return ManifestArray(with_metadata(first, shape=tuple(shape)), manifest)


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
                raise _cf_error(name, bad, ref_source, source)


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
        shape = _flatten(nested, items)
    elif combine == "by_coords":
        items = expand_paths(paths, registry)
        shape = None
    else:
        raise ValueError(f"combine must be 'by_coords' or 'nested', got {combine!r}")
    if not items:
        raise ValueError("no files to open")
    unknown = set(kwargs) - _PART_OPTIONS
    if unknown:
        raise TypeError(
            f"open_virtual_mfdataset got unexpected keyword arguments {sorted(unknown)}"
        )
    decode_times = kwargs.get("decode_times")
    job = _Job(registry, parser, kwargs, preprocess, max(0, int(retries)), on_error == "raise")

    col: Collector | None = None
    datasets: list[Any] = []  # with preprocess= only
    failed: dict[str, str] = {}
    _prestart_pool(parallel)
    bar = _progress(len(items), progress)
    try:
        for batch in _run(items, job, parallel, bar):
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
                combined = _fast_combine(
                    col,
                    combine=combine,
                    concat_dim=concat_dim,
                    decode_times=decode_times,
                    sources=sources,
                )
            except _General:
                combined = None
        if combined is None:
            table = col._table_tuple()
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
                _unflatten(shape, datasets),
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
