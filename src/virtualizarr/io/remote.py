"""RemoteSource: an object in an object store, behind a sparse cache of the bytes fetched so far.

For remote files (anything not served by the registry's own ``LocalStore``):

- the first request is a ranged GET of the first ``HEAD_BYTES`` bytes; its response also
  carries the size and ETag (no separate HEAD), and a file smaller than that comes whole;
- fetched bytes stay in a sparse cache, so no byte is fetched twice by one source;
  a miss fetches the missing bytes plus at most ``read_ahead`` more (and 64 KiB before);
- a file of at most ``whole_below`` bytes (``WHOLE_BELOW``, 6 MiB) is fetched whole at its
  first miss (one more round trip at most); a larger one only where the parse reads, unless
  a parse keeps missing (``WHOLE_AFTER_MISSES``): then the rest comes whole if it is at most
  ``WHOLE_REST_BELOW``. Most files need 1-2 requests (see ``docs/formats.md``);
- :meth:`ByteSource.read_many` fetches the missing parts of many ranges concurrently
  (up to ``BATCH_IN_FLIGHT``), merging parts less than ``MERGE_GAP`` apart;
- transient failures (connection errors, 5xx) are retried with exponential backoff;
  a size or ETag that changes between requests raises :class:`SourceChangedError`.

The thresholds were measured with ``benchmarks/remote.py`` (30 ms per request, 200 MB/s):
one round trip costs as much as transferring 6 MB, so fetching a few hundred KB to a few
MB more than needed is cheaper than one more round trip.

>>> # src = RemoteSource(store, "a.nc", "s3://bucket/a.nc")  # one ranged GET: head, size, ETag
>>> # src.read(4096, 100), src.stats                          # from the cache, or a request
>>> HEAD_BYTES >> 20, WHOLE_BELOW >> 20, WHOLE_REST_BELOW >> 20  # MiB
(1, 6, 16)
"""

from __future__ import annotations

import bisect
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from virtualizarr.errors import SourceReadError
from virtualizarr.io.base import SMALL_GAP, ByteSource, Expand, clip
from virtualizarr.io.requests import SourceStats, get_range_meta, head_meta, io_pool
from virtualizarr.manifests.sources import SourceRecord

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = [
    "BATCH_IN_FLIGHT",
    "HEAD_BYTES",
    "MERGE_GAP",
    "READ_AHEAD",
    "READ_BEHIND",
    "RECENT_SECONDS",
    "WHOLE_AFTER_MISSES",
    "WHOLE_BELOW",
    "WHOLE_REST_BELOW",
    "RemoteSource",
    "recent_bytes",
]

HEAD_BYTES = 1 << 20
"""Bytes of a remote file fetched by the first request (the whole file if smaller)."""

READ_AHEAD = 1 << 20
"""Extra bytes fetched after a remote cache miss (file-object readers read small pieces)."""

READ_BEHIND = 64 << 10
"""Bytes before a remote cache miss fetched with it (h5py reads a B-tree node, then just before it)."""

WHOLE_BELOW = 6 << 20
"""Remote files up to this size are fetched whole at their first cache miss; larger ones
only where the parse reads (plus ``READ_AHEAD``).

Measured with ``benchmarks/remote.py`` (30 ms per request, 200 MB/s per connection): one
round trip costs as long as 6 MB of transfer, so the rest of a file up to 6 MiB (at most
5 MiB past the 1 MiB head) costs less than one round trip more, and metadata-only reading
of such a file takes several: HDF5 files whose metadata is spread through them cost dozens
(``NEONDSTowerTemperatureData.hdf5``, 3.0 MB: 57 requests piecewise, 2 whole), and a 5.2 MB
netCDF-4 file of 4 chunked variables 7 requests in 4 round trips (its chunk-index nodes lie
between the data) against 2 whole. Above it, fetching whole moves bytes nobody reads, and
many files opened at once share the bandwidth: 100 netCDF-4 files of 9-13 MB with
``parallel="threads"`` moved 932 MB in 200 requests whole (16 MiB threshold) against 107 MB
in 800 requests piecewise: 2.1-2.3 s against 4.1 s with 64 threads on a 2-core machine at
load ~8 (``virtualizarr.mfdataset.REMOTE_THREADS``). Every real sample file stays at 1-2
requests (``tests/test_io_policy.py``). The price: one 12.9 MB file opened alone takes 6
requests and 1.1 MB instead of 2 requests and 12.9 MB.
"""

WHOLE_AFTER_MISSES = 8
"""After this many cache misses of one source, a miss brings the rest of the file if that is
at most ``WHOLE_REST_BELOW`` bytes: a parse that has already waited for 8 round trips is
reading metadata scattered through the file, and the rest costs about 3 of them. The typical
netCDF-4 file of ``benchmarks/remote.py`` (3 chunked variables) takes 3 misses (its chunk
indexes come in one batch, see :meth:`RemoteSource.read_many`)."""

WHOLE_REST_BELOW = 16 << 20
"""The most bytes one late miss fetches to complete a file (``WHOLE_AFTER_MISSES``)."""

MERGE_GAP = 1 << 20
"""Missing ranges closer than this are fetched by one request (the gap costs 5 ms at 200 MB/s)."""

BATCH_IN_FLIGHT = 128
"""Concurrent requests of one :meth:`RemoteSource.read_many` batch (a parser's metadata:
every B-tree node of a level, every IFD, every message header). Tune it per source with
``open_source(url, registry, max_in_flight=n)`` or for the process by setting this.

A batch of many small ranges is bound by requests per second, not bytes: ``n`` requests in
flight at 30 ms each cap it at ``n / 0.03`` requests a second. Measured with
``benchmarks/remote_index.py`` (30 ms, 200 MB/s, the Python latency server, 2,239 B-tree
node requests of a 140,160-chunk NetCDF4 file): 64 in flight ~1,000 requests/s, 128 enough to
keep that server's CPU (~0.45 ms a request, one GIL) busy; more only adds server threads
contending for it (and past ~190 new connections at once its accept queue of 5 overflows:
seconds of SYN retries). Object stores answer hundreds at once: raise it for them."""


class RemoteSource(ByteSource):
    """An object in an object store, behind a sparse cache of the bytes fetched so far."""

    expands = True

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        url: str,
        *,
        head_bytes: int | None = None,
        read_ahead: int | None = None,
        whole_below: int | None = None,
        merge_gap: int | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        # module defaults read at call time, so a benchmark (or user) can tune them
        max_in_flight = BATCH_IN_FLIGHT if max_in_flight is None else max_in_flight
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        head_bytes = HEAD_BYTES if head_bytes is None else head_bytes
        read_ahead = READ_AHEAD if read_ahead is None else read_ahead
        whole_below = WHOLE_BELOW if whole_below is None else whole_below
        merge_gap = MERGE_GAP if merge_gap is None else merge_gap
        self.url, self.store, self.key = url, store, key
        self.closed_at = 0.0
        self.stats = SourceStats()
        self.read_ahead, self.whole_below, self.merge_gap = read_ahead, whole_below, merge_gap
        self.misses = 0  # reads that had to fetch (see WHOLE_AFTER_MISSES)
        self._lock = threading.RLock()
        self._starts: list[int] = []  # sorted, non-overlapping cached segments
        self._ends: list[int] = []
        self._segs: list[memoryview] = []
        self.etag = None
        try:
            data, first, size, etag = get_range_meta(store, key, url, 0, max(head_bytes, 1))
        except SourceReadError:
            # an empty object answers a ranged GET with 416; ask its size instead
            size, etag = head_meta(store, key, url)
            if size != 0:
                raise
            data, first = memoryview(b""), 0
        self.stats.add(1, len(data))
        self.size, self.etag = size if size is not None else len(data), etag
        self._head_len = len(data)
        if data:
            self._insert(first, data)

    @property
    def head(self) -> bytes:
        return self.read(0, self._head_len)

    def _whole_now(self) -> bool:
        """Whether this cache miss fetches the rest of the file instead of what it misses:
        always for a file of at most ``whole_below`` bytes, and after ``WHOLE_AFTER_MISSES``
        misses when at most ``WHOLE_REST_BELOW`` bytes are left (see those constants)."""
        self.misses += 1
        if self.size <= self.whole_below:
            return True
        if self.misses <= WHOLE_AFTER_MISSES:
            return False
        return self.size - self.nbytes() <= WHOLE_REST_BELOW

    # cache bookkeeping (callers hold self._lock)

    def _gaps(self, lo: int, hi: int) -> list[tuple[int, int]]:
        gaps: list[tuple[int, int]] = []
        starts, ends = self._starts, self._ends
        i = max(bisect.bisect_right(starts, lo) - 1, 0)
        pos = lo
        while pos < hi:
            if i >= len(starts):
                gaps.append((pos, hi))
                break
            s, e = starts[i], ends[i]
            if e <= pos:
                i += 1
                continue
            if s > pos:
                stop = min(s, hi)
                gaps.append((pos, stop))
                pos = stop
                if pos >= hi:
                    break
            pos = e
            i += 1
        return gaps

    def _prev_end(self, pos: int) -> int:
        """The end of the cached segment before ``pos`` (0 if none)."""
        i = bisect.bisect_right(self._starts, pos) - 1
        return min(self._ends[i], pos) if i >= 0 else 0

    def _next_start(self, pos: int) -> int:
        i = bisect.bisect_right(self._starts, pos)
        return self._starts[i] if i < len(self._starts) else self.size

    def _insert(self, start: int, data: memoryview) -> None:
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._ends.insert(i, start + len(data))
        self._segs.insert(i, data)

    def _assemble(self, lo: int, hi: int) -> bytes:
        if hi <= lo:
            return b""
        i = bisect.bisect_right(self._starts, lo) - 1
        s = self._starts[i]
        if self._ends[i] >= hi:  # one segment: a single copy
            return bytes(self._segs[i][lo - s : hi - s])
        parts, pos = [], lo
        while pos < hi:
            s, e = self._starts[i], self._ends[i]
            parts.append(self._segs[i][pos - s : min(e, hi) - s])
            pos = e
            i += 1
        return b"".join(parts)

    def _merge(
        self,
        gaps: list[tuple[int, int]],
        budget: int | None = None,
        flying: _Intervals | None = None,
    ) -> tuple[list[list[int]], int]:
        """Join neighbouring ``gaps`` into fewer requests, within a byte budget; returns
        the requests and the bytes between gaps they fetch.

        Two gaps are joined across the bytes between them only if those are missing too
        (not cached, not being fetched by ``flying`` requests: no byte is fetched twice)
        and closer than ``merge_gap``. Gaps of at most ``SMALL_GAP`` always join; then the
        smallest in-between spans, while their sum stays within ``budget`` (default
        ``max(wanted bytes, merge_gap)``): a batch never costs more than twice its bytes,
        so metadata spread between data (a B-tree node every few chunks) comes without
        the data, in concurrent requests.
        """
        if len(gaps) < 2:
            return [list(g) for g in gaps], 0
        between = [gaps[i + 1][0] - gaps[i][1] for i in range(len(gaps) - 1)]
        ok = [
            g <= self.merge_gap
            and (g == 0 or self._gaps(gaps[i][1], gaps[i + 1][0]) == [(gaps[i][1], gaps[i + 1][0])])
            and (g == 0 or flying is None or not flying.overlaps(gaps[i][1], gaps[i + 1][0]))
            for i, g in enumerate(between)
        ]
        if budget is None:
            budget = max(sum(b - a for a, b in gaps), self.merge_gap)
        join = [ok[i] and between[i] <= SMALL_GAP for i in range(len(between))]
        spent = sum(g for g, j in zip(between, join) if j)
        for i in sorted(range(len(between)), key=between.__getitem__):
            if join[i] or not ok[i]:
                continue
            if spent + between[i] > budget:
                break
            join[i] = True
            spent += between[i]
        merged = [list(gaps[0])]
        for i, (a, b) in enumerate(gaps[1:]):
            if join[i]:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        return merged, spent

    def _get(self, a: int, b: int) -> tuple[int, memoryview]:
        """One request for bytes ``a..b``: ``(first byte, data)``; size and ETag checked."""
        data, first, size, etag = get_range_meta(self.store, self.key, self.url, a, b)
        self._check(size, etag)
        if first == 0 and a > 0 and len(data) >= b:  # the server sent the whole object
            return a, data[a:b]
        return first, data

    def _land(self, a: int, b: int, first: int, data: memoryview) -> None:
        """Cache the answer to the request for ``a..b`` (callers hold the lock)."""
        self.stats.add(1, len(data))
        if first != a or len(data) < b - a:
            raise SourceReadError(
                f"Cannot read {self.url}: asked for bytes {a}-{b}, got {len(data)} from {first} "
                "(the object is shorter than it said)."
            )
        self._insert(a, data[: b - a])

    def _fetch(
        self,
        gaps: list[tuple[int, int]],
        expand: Expand | None = None,
        ranges: list[tuple[int, int]] | None = None,
    ) -> None:
        """Fetch missing ``gaps`` (sorted, disjoint, uncached) concurrently, merging close ones.

        With ``expand``, each of ``ranges`` is passed to ``expand(offset, data)`` as soon as
        its bytes are in, and the ranges it returns are fetched in the same batch (and
        expanded in turn): the next level of a tree starts while this one arrives. Their
        joins share the batch's byte budget (``max(wanted, merge_gap)`` over the batch).
        """
        if expand is None:
            merged, _ = self._merge(gaps)
            if len(merged) == 1:
                a, b = merged[0]
                self._land(a, b, *self._get(a, b))
                return
        batch = _Batch(self._get, self.max_in_flight)
        flying = _Intervals()
        waiting: dict[int, list[int]] = {}  # request start -> waiters (indexes of spans)
        spans: list[tuple[int, int]] = []
        need: list[int] = []  # per waiter: its requests not landed yet
        ready: list[int] = []
        seen: set[tuple[int, int]] = set()
        wanted = spent = 0

        def submit(new: list[tuple[int, int]], budget: int | None) -> None:
            nonlocal wanted, spent
            wanted += sum(b - a for a, b in new)
            merged, used = self._merge(new, budget, flying)
            spent += used
            for a, b in merged:
                flying.add(a, b)
                waiting[a] = []
                batch.add(a, b)

        def wait_for(found: list[tuple[int, int]]) -> None:
            """Fetch what ``found`` misses and expand each range once it is in."""
            found = sorted({r for r in found if r[1] > r[0] and r not in seen})
            seen.update(found)
            new: list[tuple[int, int]] = []
            for lo, hi in found:
                for a, b in flying.subtract(self._gaps(lo, hi)):
                    if new and a <= new[-1][1]:
                        new[-1] = (new[-1][0], max(new[-1][1], b))
                    else:
                        new.append((a, b))
            if new:
                cap = max(wanted + sum(b - a for a, b in new), self.merge_gap)
                submit(new, max(cap - spent, 0))
            for lo, hi in found:
                starts = flying.overlapping(lo, hi)
                spans.append((lo, hi))
                need.append(len(starts))
                for a in starts:
                    waiting[a].append(len(spans) - 1)
                if not starts:
                    ready.append(len(spans) - 1)

        try:
            if gaps:
                submit(gaps, None)
            if expand is not None:
                wait_for(list(ranges or []))
            while True:
                while ready:
                    assert expand is not None
                    lo, hi = spans[ready.pop()]
                    more = expand(lo, self._assemble(lo, hi))
                    wait_for([clip(o, n, self.size) for o, n in more])
                if not batch.outstanding:
                    return
                a, b, got, error = batch.next()
                if error is not None:
                    raise error
                self._land(a, b, *got)
                flying.remove(a)
                for w in waiting.pop(a):
                    need[w] -= 1
                    if not need[w]:
                        ready.append(w)
        finally:
            batch.stop()

    def _check(self, size: int | None, etag: str | None) -> None:
        if size is not None:
            SourceRecord(self.url, self.size, self.etag).check(
                size, etag, when=" between two requests"
            )

    def read(self, offset: int, length: int) -> bytes:
        lo, hi = clip(offset, length, self.size)
        if hi <= lo:
            return b""
        with self._lock:
            gaps = self._gaps(lo, hi)
            if gaps:
                if self._whole_now():
                    gaps = self._gaps(0, self.size)
                else:
                    a, b = gaps[-1]
                    ahead = min(self._next_start(b - 1), a + max(b - a, self.read_ahead), self.size)
                    gaps[-1] = (a, max(b, ahead))
                    a, b = gaps[0]
                    if a > 0 and self.read_ahead > 0:  # and a little before, up to cached bytes
                        gaps[0] = (max(self._prev_end(a), a - READ_BEHIND), b)
                self._fetch(gaps)
            return self._assemble(lo, hi)

    def read_many(
        self, ranges: Iterable[tuple[int, int]], expand: Expand | None = None
    ) -> list[bytes]:
        clipped = [clip(o, n, self.size) for o, n in ranges]
        with self._lock:
            gaps: list[tuple[int, int]] = []
            for lo, hi in sorted(clipped):
                if hi <= lo:
                    continue
                for a, b in self._gaps(lo, hi):
                    if gaps and a <= gaps[-1][1]:  # overlapping requested ranges
                        gaps[-1] = (gaps[-1][0], max(gaps[-1][1], b))
                    else:
                        gaps.append((a, b))
            if gaps and self._whole_now():
                gaps = self._gaps(0, self.size)
            if expand is not None:
                self._fetch(gaps, expand, [r for r in clipped if r[1] > r[0]])
            elif gaps:
                self._fetch(gaps)
            return [self._assemble(lo, hi) for lo, hi in clipped]

    def cached(self, offset: int, length: int) -> bytes | None:
        """The bytes at ``offset`` if all are cached, else None (never a request)."""
        lo, hi = clip(offset, length, self.size)
        with self._lock:
            if hi - lo != length or self._gaps(lo, hi):
                return None
            return self._assemble(lo, hi)

    def nbytes(self) -> int:
        """Bytes held in the cache."""
        return sum(e - s for s, e in zip(self._starts, self._ends))

    def close(self) -> None:
        # The bytes stay a little longer (see recent_bytes): opening a dataset reads its
        # coordinates through the store right after parsing, often from bytes fetched here.
        _keep_recent(self)


class _Batch:
    """Requests run on the I/O pool, at most ``limit`` at a time, answers in a queue.

    The caller adds ``(a, b)`` requests at any time and takes ``(a, b, answer, error)``
    tuples with :meth:`next`; up to ``limit`` pool tasks each run the next request until
    none is left (no task waits for another, so a full pool only delays them). After an
    error, or :meth:`stop`, no further request starts.
    """

    def __init__(self, fn: Any, limit: int) -> None:
        self.fn, self.limit = fn, limit
        self.todo: deque[tuple[int, int]] = deque()
        self.answers: queue.SimpleQueue[tuple[int, int, Any, Exception | None]] = (
            queue.SimpleQueue()
        )
        self.lock = threading.Lock()
        self.workers = 0
        self.outstanding = 0  # added, not yet taken by next() (the caller's thread only)
        self.stopped = False

    def add(self, a: int, b: int) -> None:
        with self.lock:
            self.todo.append((a, b))
            start = self.workers < self.limit
            self.workers += start
        self.outstanding += 1
        if start:
            io_pool().submit(self._work)

    def _work(self) -> None:
        while True:
            with self.lock:
                if self.stopped or not self.todo:
                    self.workers -= 1
                    return
                a, b = self.todo.popleft()
            try:
                self.answers.put((a, b, self.fn(a, b), None))
            except Exception as e:  # noqa: BLE001  (handed to the caller, who raises it)
                with self.lock:
                    self.stopped = True
                self.answers.put((a, b, None, e))

    def next(self) -> tuple[int, int, Any, Exception | None]:
        self.outstanding -= 1
        return self.answers.get()

    def stop(self) -> None:
        with self.lock:
            self.stopped = True


class _Intervals:
    """Disjoint ``[a, b)`` intervals (the requests of a batch in flight), sorted."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, a: int, b: int) -> None:
        i = bisect.bisect_left(self.starts, a)
        self.starts.insert(i, a)
        self.ends.insert(i, b)

    def remove(self, a: int) -> None:
        i = bisect.bisect_left(self.starts, a)
        del self.starts[i], self.ends[i]

    def overlapping(self, lo: int, hi: int) -> list[int]:
        """Starts of the intervals that overlap ``[lo, hi)``."""
        i = max(bisect.bisect_right(self.starts, lo) - 1, 0)
        out = []
        while i < len(self.starts) and self.starts[i] < hi:
            if self.ends[i] > lo:
                out.append(self.starts[i])
            i += 1
        return out

    def overlaps(self, lo: int, hi: int) -> bool:
        return bool(self.overlapping(lo, hi))

    def subtract(self, gaps: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The parts of ``gaps`` no interval covers."""
        if not self.starts:
            return gaps
        out = []
        for lo, hi in gaps:
            pos = lo
            for a in self.overlapping(lo, hi):
                b = self.ends[bisect.bisect_left(self.starts, a)]
                if a > pos:
                    out.append((pos, a))
                pos = max(pos, b)
            if pos < hi:
                out.append((pos, hi))
        return out


_RECENT: OrderedDict[str, RemoteSource] = OrderedDict()
_RECENT_BYTES = 64 << 20
RECENT_SECONDS = 60.0
"""How long the bytes of a closed remote source may serve :func:`recent_bytes`."""
_RECENT_LOCK = threading.Lock()


def _keep_recent(source: RemoteSource) -> None:
    source.closed_at = time.monotonic()
    with _RECENT_LOCK:
        _RECENT.pop(source.url, None)
        _RECENT[source.url] = source
        total = sum(s.nbytes() for s in _RECENT.values())
        while total > _RECENT_BYTES and _RECENT:
            _, old = _RECENT.popitem(last=False)
            total -= old.nbytes()


def recent_bytes(url: str, offset: int, length: int, record: SourceRecord | None) -> bytes | None:
    """Bytes of ``url`` fetched by a recently closed source (at most 64 MiB of them are
    kept), if its size/ETag match ``record`` (or no record is known); else None.

    >>> recent_bytes("https://example.org/never-read.nc", 0, 8, None) is None
    True
    """
    with _RECENT_LOCK:
        src = _RECENT.get(url)
    if src is None or time.monotonic() - src.closed_at > RECENT_SECONDS:
        return None
    if record is not None and (src.size != record.size or src.etag != record.etag):
        return None
    return src.cached(offset, length)
