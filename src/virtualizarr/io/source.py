"""open_source: the bytes of one file for one parse, fetched once, in few requests.

A parser opens its file with :func:`open_source` and reads everything through it:

>>> # src = open_source("s3://bucket/a.nc", registry)
>>> # src.size, src.etag, src.head[:8]        # all from the first request
>>> # src.read(4096, 100)                      # from the cache, or one request + read-ahead
>>> # src.read_many([(0, 8), (1 << 20, 64)])   # missing parts fetched concurrently
>>> # h5py.File(src.as_file(), "r")            # a file object over the same cache
>>> # src.stats                                # SourceStats(requests=2, bytes=...)

The parts, each in its module:

- :mod:`virtualizarr.io.base`: the :class:`ByteSource` interface and its file object;
- :mod:`virtualizarr.io.local`: :class:`LocalSource`, a local file read with ``pread`` on one
  descriptor (no cache: the OS page cache is faster than anything we could keep);
- :mod:`virtualizarr.io.remote`: :class:`RemoteSource`, an object behind a sparse cache,
  fetched in few requests (a 1 MiB head with size and ETag, files up to 6 MiB whole,
  concurrent merged batches), and the thresholds that decide it;
- :mod:`virtualizarr.io.requests`: each request retried, its errors translated, counted
  (:func:`total_stats`); the thread pool blocking requests run on;
- :mod:`virtualizarr.io.records`: the size and ETag each file had when it was opened.

Their names stay importable from here; tuning knobs are set in the module that reads them
(``virtualizarr.io.remote.WHOLE_BELOW = 0``, ``virtualizarr.io.remote.BATCH_IN_FLIGHT = 256``,
``virtualizarr.io.requests.RETRIES = 0``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from virtualizarr.errors import ObjectStoreError, SourceChangedError, SourceReadError
from virtualizarr.io.base import SMALL_GAP, ByteSource, Expand, NotAFileError, SourceFile
from virtualizarr.io.local import HEAD_BYTES_LOCAL, LocalSource
from virtualizarr.io.records import local_etag, recorded, remember, stat_record
from virtualizarr.io.remote import (
    BATCH_IN_FLIGHT,
    HEAD_BYTES,
    MERGE_GAP,
    READ_AHEAD,
    READ_BEHIND,
    RECENT_SECONDS,
    WHOLE_AFTER_MISSES,
    WHOLE_BELOW,
    WHOLE_REST_BELOW,
    RemoteSource,
    recent_bytes,
)
from virtualizarr.io.requests import (
    BACKOFF,
    IO_THREADS,
    MAX_IN_FLIGHT,
    RETRIES,
    SourceStats,
    count_io,
    get_range_meta,
    get_range_meta_async,
    head_meta,
    io_pool,
    obstore_errors,
    total_stats,
    translate_error,
    with_retries,
)
from virtualizarr.manifests.manifest import normalize_path
from virtualizarr.manifests.sources import SourceRecord

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = [
    "BATCH_IN_FLIGHT",
    "HEAD_BYTES",
    "MAX_IN_FLIGHT",
    "MERGE_GAP",
    "ByteSource",
    "LocalSource",
    "RemoteSource",
    "SourceRecord",
    "stat_record",
    "SourceStats",
    "hand_over",
    "open_source",
    "recorded",
    "remember",
    "total_stats",
    # importable here since before this module was split (their homes are the modules above)
    "BACKOFF",
    "HEAD_BYTES_LOCAL",
    "IO_THREADS",
    "READ_AHEAD",
    "READ_BEHIND",
    "RECENT_SECONDS",
    "RETRIES",
    "SMALL_GAP",
    "WHOLE_AFTER_MISSES",
    "WHOLE_BELOW",
    "WHOLE_REST_BELOW",
    "Expand",
    "NotAFileError",
    "SourceFile",
    "ObjectStoreError",
    "SourceChangedError",
    "SourceReadError",
    "count_io",
    "get_range_meta",
    "get_range_meta_async",
    "head_meta",
    "io_pool",
    "local_etag",
    "normalize_path",
    "obstore_errors",
    "recent_bytes",
    "translate_error",
    "with_retries",
]

# -- handing a source from format detection to the parser ---------------------------------

_HANDOFF = threading.local()


def hand_over(source: ByteSource, registry: ObjectStoreRegistry) -> None:
    """Let the next ``open_source(source.url, registry)`` in this thread return ``source``.

    Format detection opens the file, looks at its head and hands the source to the
    parser, so the first bytes are fetched once. One source waits per thread at most
    (an unclaimed one is closed when the next is handed over).
    """
    old = getattr(_HANDOFF, "item", None)
    if old is not None and old[2] is not source:
        old[2].close()
    _HANDOFF.item = (id(registry), source.url, source)


def _take_handed(url: str, registry: ObjectStoreRegistry) -> ByteSource | None:
    item = getattr(_HANDOFF, "item", None)
    if item is not None and item[0] == id(registry) and item[1] == url:
        _HANDOFF.item = None
        return item[2]
    return None


def open_source(
    url: str, registry: ObjectStoreRegistry | None = None, **options: int
) -> ByteSource:
    """A :class:`ByteSource` of ``url``: its size, ETag and head come with the first request.

    ``options`` tune a remote source (``head_bytes``, ``read_ahead``, ``whole_below``,
    ``merge_gap``, ``max_in_flight``; defaults in :mod:`virtualizarr.io.remote`). Raises ``FileNotFoundError`` naming ``url``
    when no file is there (a local directory included).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = p.write_bytes(b"CDF\\x01" + bytes(100))
    >>> with open_source(str(p)) as src:
    ...     src.size, src.head[:4], src.read(2, 2), src.read_many([(0, 1), (103, 10)])
    (104, b'CDF\\x01', b'F\\x01', [b'C', b'\\x00'])
    """
    from virtualizarr.registry import ObjectStoreRegistry

    url = normalize_path(url)
    if registry is None:
        registry = ObjectStoreRegistry()
    elif not options and (handed := _take_handed(url, registry)) is not None:
        return handed
    local = registry.local_path(url)
    source: ByteSource
    if local is not None:
        source = LocalSource(local, url)
    else:
        try:
            store, key = registry.resolve(url)
        except ValueError as e:
            raise SourceReadError(f"Cannot read {url}: {e}") from e
        source = RemoteSource(store, key, url, **options)
    remember(source.record())
    return source
