"""Requests to object stores: retries, error translation, counters and the I/O thread pool.

Every request of :mod:`virtualizarr.io` goes through here, so it is retried, counted and its
errors named after the file in one place:

>>> # data, first, size, etag = get_range_meta(store, "a.nc", "s3://b/a.nc", 0, 1 << 20)
>>> total_stats() - total_stats()
SourceStats(requests=0, bytes=0)
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from virtualizarr.errors import ObjectStoreError, SourceChangedError, SourceReadError

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = [
    "BACKOFF",
    "IO_THREADS",
    "MAX_IN_FLIGHT",
    "RETRIES",
    "SourceStats",
    "count_io",
    "get_range_meta",
    "get_range_meta_async",
    "head_meta",
    "io_pool",
    "obstore_errors",
    "total_stats",
    "translate_error",
    "with_retries",
]

MAX_IN_FLIGHT = 64
"""Concurrent requests of one chunk read to an object store (S3 serves thousands per prefix)."""

IO_THREADS = 128
"""Threads of the shared pool that blocking requests run on: the most requests in flight
from all sources of the process together (files parsed by many threads share it), and so
the most one batch can use. Set it before the first remote read to change it."""

RETRIES = 3
"""Retries of a transiently failed request (after obstore's own), with backoff from BACKOFF s."""

BACKOFF = 0.05


@dataclass
class SourceStats:
    """Requests made and bytes received (for local files: ``pread`` calls and bytes read).

    >>> SourceStats(requests=2, bytes=4096)
    SourceStats(requests=2, bytes=4096)
    """

    requests: int = 0
    bytes: int = 0

    def add(self, requests: int, nbytes: int) -> None:
        self.requests += requests
        self.bytes += nbytes

    def __sub__(self, other: SourceStats) -> SourceStats:
        return SourceStats(self.requests - other.requests, self.bytes - other.bytes)


_TOTAL = SourceStats()
_TOTAL_LOCK = threading.Lock()


def count_io(stats: SourceStats | None, requests: int, nbytes: int) -> None:
    with _TOTAL_LOCK:
        _TOTAL.add(requests, nbytes)
        if stats is not None:
            stats.add(requests, nbytes)


def total_stats() -> SourceStats:
    """A snapshot of every request and byte this process fetched through :mod:`virtualizarr.io`.

    Subtract two snapshots to count one operation:

    >>> before = total_stats()
    >>> # open_virtual_dataset("http://example.org/a.nc")
    >>> (total_stats() - before).requests >= 0
    True
    """
    with _TOTAL_LOCK:
        return SourceStats(_TOTAL.requests, _TOTAL.bytes)


# -- obstore calls and their errors --------------------------------------------------------


def _is_transient(e: BaseException) -> bool:
    """Connection errors and 5xx answers: worth another try. 4xx answers are not."""
    from obstore.exceptions import GenericError, JoinError

    if isinstance(e, (ConnectionError, TimeoutError, JoinError)):
        return True
    if isinstance(e, GenericError):
        msg = str(e)
        return "status code: 4" not in msg
    return False


def translate_error(e: BaseException, url: str, what: str = "read") -> OSError:
    """An obstore error as ours, naming ``url``: FileNotFoundError, PermissionError, or
    SourceReadError (a read; ObjectStoreError for a listing, write, copy or delete)."""
    from obstore.exceptions import (
        NotFoundError,
        PermissionDeniedError,
        PreconditionError,
        UnauthenticatedError,
    )

    first = str(e).split("\n", 1)[0]
    if isinstance(e, (FileNotFoundError, NotFoundError)):
        return FileNotFoundError(f"Cannot {what} {url}: no such file or object ({first})")
    if isinstance(e, (PermissionDeniedError, UnauthenticatedError, PermissionError)):
        return PermissionError(f"Cannot {what} {url}: access denied ({type(e).__name__}: {first})")
    if isinstance(e, PreconditionError):
        return SourceChangedError(f"{url} changed while it was being read ({first})")
    if what != "read":  # a listing, write, copy or delete
        return ObjectStoreError(f"Cannot {what} {url}: {type(e).__name__}: {first}")
    return SourceReadError(f"Cannot {what} {url}: {type(e).__name__}: {first}")


def obstore_errors() -> tuple[type[BaseException], ...]:
    from obstore.exceptions import BaseError

    # obstore raises its own hierarchy, plus builtins for missing objects and bad paths
    return (BaseError, OSError, ValueError)


def with_retries(call: Any, url: str, what: str = "read", retries: int | None = None) -> Any:
    """``call()``, retried with backoff after transient failures (connection errors, 5xx;
    ``RETRIES`` times unless ``retries`` says); an obstore error raised as
    :func:`translate_error` makes it, naming ``url``."""
    retries = RETRIES if retries is None else retries  # read now: tests and users tune it
    errors = obstore_errors()
    delay = BACKOFF
    for attempt in range(retries + 1):
        try:
            return call()
        except errors as e:
            if attempt == retries or not _is_transient(e):
                raise translate_error(e, url, what) from e
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def get_range_meta(
    store: ObjectStore, key: str, url: str, start: int, end: int | None
) -> tuple[memoryview, int, int | None, str | None]:
    """``(data, range start, object size, ETag)`` of one ranged GET (``end=None``: whole object).

    Retries transient failures; a server that ignores ``Range`` (answers 200) is asked
    for the whole object instead.
    """
    import obstore
    from obstore.exceptions import NotSupportedError

    def call() -> tuple[memoryview, int, int | None, str | None]:
        if end is None:
            r = obstore.get(store, key)
        else:
            try:
                r = obstore.get(store, key, options={"range": (start, end)})
            except NotSupportedError:  # no Range support: the whole object it is
                r = obstore.get(store, key)
        data = memoryview(r.bytes())
        meta = r.meta
        return data, r.range[0], int(meta["size"]), meta.get("e_tag")

    data, first, size, etag = with_retries(call, url, "read")
    count_io(None, 1, len(data))
    return data, first, size, etag


async def get_range_meta_async(
    store: ObjectStore, key: str, url: str, start: int, end: int
) -> tuple[memoryview, int, int | None, str | None]:
    """:func:`get_range_meta` for the event loop (retries sleep asynchronously)."""
    import asyncio

    import obstore
    from obstore.exceptions import NotSupportedError

    errors = obstore_errors()
    delay = BACKOFF
    for attempt in range(RETRIES + 1):
        try:
            try:
                r = await obstore.get_async(store, key, options={"range": (start, end)})
            except NotSupportedError:
                r = await obstore.get_async(store, key)
            data = memoryview(await r.bytes_async())
            meta = r.meta
            count_io(None, 1, len(data))
            return data, r.range[0], int(meta["size"]), meta.get("e_tag")
        except errors as e:
            if attempt == RETRIES or not _is_transient(e):
                raise translate_error(e, url) from e
        await asyncio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def head_meta(store: ObjectStore, key: str, url: str) -> tuple[int, str | None]:
    """``(size, ETag)`` from a HEAD request (only for what a ranged GET cannot tell)."""
    import obstore

    meta = with_retries(lambda: obstore.head(store, key), url, "read")
    count_io(None, 1, 0)
    return int(meta["size"]), meta.get("e_tag")


# -- the thread pool blocking requests run on -----------------------------------------------

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def io_pool() -> ThreadPoolExecutor:
    """Threads for concurrent blocking requests (obstore releases the GIL while waiting).

    Tasks on it never submit to it again, so it cannot deadlock.
    """
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="virtualizarr-io")
    return _POOL


def _forget_pool() -> None:  # threads do not survive fork
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)
