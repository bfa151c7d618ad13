"""Where batches run: one after another, threads, a kept process pool, any Executor, or
a dask.distributed Client; results come back in input order.

With ``parallel="processes"`` the pool is kept for the session and forked when that is
safe (workers start in milliseconds with the client's imports), else started from a
preloaded fork server. The client parses batches no worker has started only until the
first batch is back, then waits: on a small machine it would take a worker's core.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import importlib.util
import math
import multiprocessing
import multiprocessing.forkserver
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import xarray as xr

from virtualizarr.mfdataset.batches import Batch, Job, virtualize_batch
from virtualizarr.mfdataset.paths import is_remote

__all__ = [
    "REMOTE_THREADS",
    "ParallelOption",
    "prestart_pool",
    "progress_bar",
    "run_batches",
    "shutdown_pool",
]


ParallelOption = Literal[False, "threads", "processes", "dask"] | Executor | Any | None


REMOTE_THREADS = 64
"""Threads for remote URLs with ``parallel="threads"`` (or the default): each file costs a few
round trips of 20-60 ms that overlap, while parsing holds the GIL for ~1-5 ms. A file above
``virtualizarr.io.remote.WHOLE_BELOW`` is parsed from what it reads (a netCDF-4 file: ~8
sequential requests), so threads mostly wait. Measured with ``benchmarks/remote.py`` (100
files of 9-13 MB, 30 ms per request, a 2-core machine at load ~8): 16 threads 4.8-5.2 s,
32 threads 2.8-3.2 s, 64 threads 2.1-2.3 s. Object stores serve thousands of requests a
second per prefix, so 64 files in flight do not flood them."""


_BATCH_MAX = 256
"""Most files per task: enough that the scheduler's cost per task is noise, few enough that
progress and load balance stay smooth."""


def progress_bar(total: int, progress: bool | None) -> Any:
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
            # frozen while forking: the workers' garbage collector then never walks the
            # client's objects (imported modules: ~1M objects), which would cost CPU and
            # copy their pages; the client unfreezes at once, so nothing changes for it
            gc.freeze()
            try:
                with warnings.catch_warnings():
                    # Python warns of any second thread; the BLAS/allocator ones were checked
                    warnings.filterwarnings("ignore", "This process .* is multi-threaded")
                    pool.submit(os.getpid)  # forks every worker now, in this checked state
            finally:
                gc.unfreeze()
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


def shutdown_pool(wait: bool = True) -> None:
    """Shut down the session's process pool (the next ``parallel="processes"`` starts another).

    >>> shutdown_pool()
    """
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=wait, cancel_futures=True)
        _POOL = None


def prestart_pool(parallel: Any) -> None:
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


def run_batches(items: list[Any], job: Job, parallel: ParallelOption, bar: Any) -> Iterator[Batch]:
    """Yield the batches of ``items`` in input order, computed as ``parallel`` says."""
    n = len(items)
    if parallel is None:
        parallel = "threads" if any(is_remote(p) for p in items[:8]) else False
    if parallel is False:
        for s, e in _batches(n, 1):
            yield virtualize_batch(items[s:e], s, job)
        return
    if parallel == "dask":
        dask_client = _default_client()
        if dask_client is not None:
            yield from run_batches(items, job, dask_client, bar)
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
        remote = any(is_remote(p) for p in items[:8])
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
        futures: list[Future[Batch]] = [
            executor.submit(virtualize_batch, items[s:e], s, job) for s, e in ranges
        ]
        local: dict[int, Batch] = {}

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
