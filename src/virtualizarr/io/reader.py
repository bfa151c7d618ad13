"""ChunkReader: the byte ranges a ManifestStore serves, fetched per file, merged and concurrent.

Local files (served by the registry's own ``LocalStore``) are read with ``pread``: one call
per range costs microseconds, and the OS caches. Remote files go through one background
event loop (``io_loop``) shared by every caller, so zarr's async reads, its fused pipeline's
worker threads and dask's tasks all meet there:

- the ranges of one call are grouped per file, ranges closer than ``merge_gap`` merged, and
  the groups fetched concurrently, at most ``max_in_flight`` requests at a time
  (default :data:`~virtualizarr.io.requests.MAX_IN_FLIGHT` = 64);
- a single chunk read may bring its neighbours in the file (ranges the store chooses:
  the next, or else the previous, chunks of the same array, up to ``read_ahead`` bytes), kept until
  read once, at most ``cache_bytes`` of them: zarr asks at most ``async.concurrency``
  (10) chunks at once, and this is what lets 64 requests be in flight anyway;
- a read racing an in-flight fetch of the same range waits for it instead of fetching again;
- each response's size and ETag is checked against the :class:`SourceRecord` of its file
  when one is known: a changed file raises :class:`SourceChangedError`.

>>> # reader = ChunkReader(registry, records={url: source.record()})
>>> # reader.read_sync(url, 4096, 100); await reader.read_many_async(url, [0, 500], [100, 100])
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import Future as ThreadFuture
from typing import TYPE_CHECKING, Any

from virtualizarr.errors import ChunkReadError
from virtualizarr.io.local import pread_all
from virtualizarr.io.ranges import coalesce
from virtualizarr.io.source import (
    MAX_IN_FLIGHT,
    MERGE_GAP,
    SourceRecord,
    get_range_meta_async,
    local_etag,
)

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from virtualizarr.registry import ObjectStoreRegistry

__all__ = [
    "ChunkReader",
    "io_loop",
    "read_local_ranges",
    "read_local_ranges_fd",
    "run_on_io_loop",
]

READ_AHEAD = 4 << 20
"""Bytes of following chunks a remote chunk read may bring along (20 ms at 200 MB/s)."""

CACHE_BYTES = 64 << 20
"""Read-ahead bytes kept per reader until read (oldest dropped first)."""

SEEN_MAX = 1 << 18
"""Ranges remembered as read (so read-ahead skips them); forgotten all at once when full."""

SPLIT = 1 << 20
"""Merged groups larger than this are fetched as several concurrent requests."""


# -- one background event loop for every remote read ------------------------------------------

_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def io_loop() -> asyncio.AbstractEventLoop:
    """The event loop (in a daemon thread) running every remote chunk fetch."""
    global _LOOP
    if _LOOP is None:
        with _LOOP_LOCK:
            if _LOOP is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="virtualizarr-io-loop", daemon=True
                ).start()
                _LOOP = loop
    return _LOOP


def _forget_loop() -> None:  # the thread does not survive fork
    global _LOOP, _LOOP_LOCK
    _LOOP, _LOOP_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_loop)


def run_on_io_loop(coro: Coroutine[Any, Any, Any]) -> ThreadFuture[Any]:
    """Schedule ``coro`` on :func:`io_loop`; ``.result()`` blocks, ``asyncio.wrap_future`` awaits."""
    return asyncio.run_coroutine_threadsafe(coro, io_loop())


# -- local files ------------------------------------------------------------------------------


def read_local_ranges(path: str, starts: Sequence[int], lengths: Sequence[int]) -> list[bytes]:
    """Byte ranges of the local file ``path``, with one open and one ``pread`` per range.

    Each range may come back short where the file ends. A ``pread`` costs microseconds,
    against tens of microseconds for an object-store call that opens the file again.

    >>> # read_local_ranges("/data/a.nc", [0, 4096], [8, 100])
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_local_ranges_fd(fd, starts, lengths)
    finally:
        os.close(fd)


def read_local_ranges_fd(fd: int, starts: Sequence[int], lengths: Sequence[int]) -> list[bytes]:
    """:func:`read_local_ranges` on an open file descriptor."""
    return [pread_all(fd, length, start) for start, length in zip(starts, lengths)]


def _short(url: str, start: int, length: int, got: int) -> ChunkReadError:
    return ChunkReadError(
        f"Read {got} bytes instead of {length} at offset {start} of {url}: the file is shorter "
        "than its references say (truncated or changed since it was virtualized)."
    )


class ChunkReader:
    """Reads byte ranges of the files of one store (see the module docstring)."""

    def __init__(
        self,
        registry: ObjectStoreRegistry,
        records: Mapping[str, SourceRecord] | None = None,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        merge_gap: int = MERGE_GAP,
        read_ahead: int = READ_AHEAD,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.registry = registry
        self.records: dict[str, SourceRecord] = dict(records or {})
        self.max_in_flight, self.merge_gap = max_in_flight, merge_gap
        self.read_ahead, self.cache_bytes = read_ahead, cache_bytes
        # state below is touched only on io_loop()
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cache: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
        self._cached = 0
        self._inflight: dict[tuple[str, int, int], asyncio.Future[Any]] = {}
        self._local_ok: dict[str, tuple[int, int, int]] = {}  # local stat seen matching its record
        # local files checked in the current iteration of one event loop (see _check_local_async)
        self._tick: tuple[asyncio.AbstractEventLoop | None, set[str]] = (None, set())
        self._seen: set[tuple[str, int, int]] = set()  # ranges read: never fetched as neighbours

    def is_local(self, url: str) -> bool:
        return self.registry.local_path(url) is not None

    # -- local -----------------------------------------------------------------------------

    def _check_local(self, url: str, path: str) -> None:
        rec = self.records.get(url)
        if rec is not None:
            try:
                st = os.stat(path)
            except OSError as e:
                raise ChunkReadError(f"Cannot read {url}: {e.strerror}") from e
            self._check_stat(url, st, rec)

    def _check_local_async(self, url: str, path: str) -> None:
        """:meth:`_check_local`, once per file per event-loop iteration.

        zarr's async pipeline asks for a read's chunks in one ``gather``: every ``get``
        starts in the same iteration of the loop, so they are one batch, issued at once,
        and one ``stat`` of each file vouches for all of them (a ``stat`` per chunk cost
        ~15% of a fetch-only read). The set empties at the loop's next iteration.
        """
        if url not in self.records:
            return
        loop = asyncio.get_running_loop()
        owner, checked = self._tick
        if owner is loop and url in checked:
            return
        self._check_local(url, path)
        if owner is not loop or not checked:
            checked = set()
            self._tick = (loop, checked)
            loop.call_soon(checked.clear)  # runs at the start of the next iteration
        checked.add(url)

    def _read_local(
        self, url: str, path: str, starts: Sequence[int], lengths: Sequence[int]
    ) -> list[bytes]:
        # one open, fstat only if a record is kept (cheaper than stat by path), one pread a range
        rec = self.records.get(url)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            lo, hi = min(starts), max(s + n for s, n in zip(starts, lengths))
            raise ChunkReadError(f"Could not read bytes {lo}-{hi} of {url}: {e}") from e
        try:
            if rec is not None:
                self._check_fd(url, fd, rec)
            data = read_local_ranges_fd(fd, starts, lengths)
        except OSError as e:
            if isinstance(e, ChunkReadError):
                raise
            lo, hi = min(starts), max(s + n for s, n in zip(starts, lengths))
            raise ChunkReadError(f"Could not read bytes {lo}-{hi} of {url}: {e}") from e
        finally:
            os.close(fd)
        for d, s, n in zip(data, starts, lengths):
            if len(d) != n:
                raise _short(url, s, n, len(d))
        return data

    def _check_fd(self, url: str, fd: int, rec: SourceRecord) -> None:
        self._check_stat(url, os.fstat(fd), rec)

    def _check_stat(self, url: str, st: os.stat_result, rec: SourceRecord) -> None:
        seen = (st.st_size, st.st_ino, st.st_mtime_ns)
        if self._local_ok.get(url) != seen:  # spelling the ETag costs more than a read
            rec.check(st.st_size, local_etag(st), when=" since it was virtualized")
            self._local_ok[url] = seen

    def read_local(self, url: str, path: str, start: int, length: int) -> bytes:
        """One range of the local file ``path`` (the store's fast path: no lookup of ``url``).

        :meth:`_read_local` for one range without its per-range loops: zarr's fused
        pipeline calls this once per chunk, and 8b118c4 spent ~34 us a chunk in all.
        """
        rec = self.records.get(url)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise ChunkReadError(
                f"Could not read bytes {start}-{start + length} of {url}: {e}"
            ) from e
        try:
            if rec is not None:
                self._check_fd(url, fd, rec)
            data = pread_all(fd, length, start)
        except OSError as e:
            if isinstance(e, ChunkReadError):
                raise
            raise ChunkReadError(
                f"Could not read bytes {start}-{start + length} of {url}: {e}"
            ) from e
        finally:
            os.close(fd)
        if len(data) != length:
            raise _short(url, start, length, len(data))
        return data

    # -- public ------------------------------------------------------------------------------

    def read_sync(
        self,
        url: str,
        start: int,
        length: int,
        after: Sequence[tuple[int, int]] = (),
        before: Sequence[tuple[int, int]] = (),
    ) -> Any:
        """One range, blocking (for zarr's fused pipeline and the values loader)."""
        local = self.registry.local_path(url)
        if local is not None:
            return self._read_local(url, local, [start], [length])[0]
        return run_on_io_loop(self._read_one(url, start, length, after, before)).result()

    async def read_async(
        self,
        url: str,
        start: int,
        length: int,
        after: Sequence[tuple[int, int]] = (),
        before: Sequence[tuple[int, int]] = (),
    ) -> Any:
        """One range, from any event loop.

        ``after``/``before``: ranges of the same file worth fetching along (nearest first);
        those following are taken up to the first one already read, cached or in flight,
        else those preceding (readers going backwards, as dask often does).
        """
        local = self.registry.local_path(url)
        if local is not None:
            # through obstore's own threads: cheaper than a hop to Python's default executor,
            # and the event loop never waits on a disk
            import obstore
            from obstore.exceptions import BaseError

            self._check_local_async(url, local)
            store, key = self.registry.resolve(url)
            try:
                data = await obstore.get_range_async(store, key, start=start, length=length)
            except (BaseError, OSError, ValueError) as e:  # local errors come as builtins too
                raise ChunkReadError(
                    f"Could not read bytes {start}-{start + length} of {url}: {e}"
                ) from e
            if len(data) != length:
                raise _short(url, start, length, len(data))
            return data
        return await asyncio.wrap_future(
            run_on_io_loop(self._read_one(url, start, length, after, before))
        )

    async def read_many_async(
        self, url: str, starts: Sequence[int], lengths: Sequence[int]
    ) -> list[Any]:
        """Many ranges of one file: merged, fetched concurrently."""
        local = self.registry.local_path(url)
        if local is not None:
            return await asyncio.to_thread(self._read_local, url, local, starts, lengths)
        return await asyncio.wrap_future(run_on_io_loop(self._read_ranges(url, starts, lengths)))

    def read_many_sync(self, url: str, starts: Sequence[int], lengths: Sequence[int]) -> list[Any]:
        """:meth:`read_many_async`, blocking."""
        local = self.registry.local_path(url)
        if local is not None:
            return self._read_local(url, local, starts, lengths)
        return run_on_io_loop(self._read_ranges(url, starts, lengths)).result()

    # -- remote, on io_loop() -----------------------------------------------------------------

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._loop is not loop:
            # first use, or a new io loop (after fork): state of the old loop is unusable
            self._sem, self._loop = asyncio.Semaphore(self.max_in_flight), loop
            self._inflight = {}
        return self._sem

    async def _get(self, url: str, store: Any, key: str, start: int, end: int) -> Any:
        async with self._semaphore():
            data, first, size, etag = await get_range_meta_async(store, key, url, start, end)
        rec = self.records.get(url)
        if rec is not None and size is not None:
            rec.check(size, etag, when=" since it was virtualized")
        if first != start:  # a server that ignores Range sent the whole object
            data = data[start:end]
        return data

    async def _fetch(self, url: str, starts: Sequence[int], lengths: Sequence[int]) -> list[Any]:
        """Ranges of one remote file: merged, split into requests of at most SPLIT, concurrent."""
        from virtualizarr.io.source import SourceReadError

        store, key = self.registry.resolve(url)
        gs, ge, of = coalesce(starts, lengths, self.merge_gap)
        pieces: list[tuple[int, int, int]] = []  # (group, start, end)
        for g, (a, b) in enumerate(zip(gs.tolist(), ge.tolist())):
            n = max(1, -(-(b - a) // SPLIT))
            step = -(-(b - a) // n)
            pieces += [(g, p, min(p + step, b)) for p in range(a, b, step)]
        try:
            got = await asyncio.gather(*(self._get(url, store, key, a, b) for _, a, b in pieces))
        except (FileNotFoundError, SourceReadError, PermissionError) as e:
            raise ChunkReadError(
                f"Could not read bytes {int(gs.min())}-{int(ge.max())} of {url}: {e}"
            ) from e
        groups: list[list[Any]] = [[] for _ in range(len(gs))]
        for (g, _, _), d in zip(pieces, got):
            groups[g].append(d)
        joined = [parts[0] if len(parts) == 1 else memoryview(b"".join(parts)) for parts in groups]
        out = []
        for s, n, g in zip(starts, lengths, of.tolist()):
            buf = joined[g]
            lo = s - int(gs[g])
            piece = buf[lo : lo + n]
            if len(piece) != n:
                raise _short(url, s, n, len(piece))
            out.append(piece)
        return out

    async def _read_ranges(
        self, url: str, starts: Sequence[int], lengths: Sequence[int]
    ) -> list[Any]:
        if not starts:
            return []
        return await self._fetch(url, starts, lengths)

    def _known(self, k: tuple[str, int, int]) -> bool:
        return k in self._cache or k in self._inflight or k in self._seen

    def _neighbours(
        self, url: str, after: Sequence[tuple[int, int]], before: Sequence[tuple[int, int]]
    ) -> list[tuple[int, int]]:
        for side in (after, before):
            out = []
            for s, n in side:
                if self._known((url, s, n)):
                    break
                out.append((s, n))
            if out:
                return out
        return []

    async def _read_one(
        self,
        url: str,
        start: int,
        length: int,
        after: Sequence[tuple[int, int]],
        before: Sequence[tuple[int, int]],
    ) -> Any:
        k = (url, start, length)
        self._semaphore()  # resets loop-bound state after a fork
        if len(self._seen) > SEEN_MAX:
            self._seen.clear()
        self._seen.add(k)
        hit = self._cache.pop(k, None)
        if hit is not None:
            self._cached -= len(hit)
            return hit
        pending = self._inflight.get(k)
        if pending is not None:
            data = await asyncio.shield(pending)
            # it was fetched as someone's neighbour: it is read now, not later
            if self._cache.pop(k, None) is not None:
                self._cached -= len(data)
            return data
        want = [(start, length), *self._neighbours(url, after, before)]
        loop = asyncio.get_running_loop()
        futures = {}
        for s, n in want:
            fut = loop.create_future()
            self._inflight[(url, s, n)] = fut
            futures[(url, s, n)] = fut
        try:
            datas = await self._fetch(url, [s for s, _ in want], [n for _, n in want])
        except BaseException as e:
            for key_, fut in futures.items():
                self._inflight.pop(key_, None)
                if not fut.done():
                    fut.set_exception(e)
                    fut.exception()  # retrieved: no "never retrieved" warning for unused ones
            raise
        for (s, n), d in zip(want, datas):
            key_ = (url, s, n)
            self._inflight.pop(key_, None)
            futures[key_].set_result(d)
        # the neighbours stay until read once (bounded; oldest dropped first)
        for (s, n), d in zip(want[1:], datas[1:]):
            self._cache[(url, s, n)] = d
            self._cached += len(d)
        while self._cached > self.cache_bytes and self._cache:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)
        return datas[0]
