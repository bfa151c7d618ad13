"""The byte-range layer: the only part of VirtualiZarr that talks to object stores.

Parsers read their metadata through a :class:`ByteSource` (one per file and parse), and
:class:`~virtualizarr.store.ManifestStore` reads chunks through :func:`fetch_ranges`.
See :mod:`virtualizarr.io.source` for the design; :mod:`virtualizarr.io.files` has the
one-call reads (``read_range``, ``file_size``, ``open_reader``).
"""

from __future__ import annotations

from virtualizarr.io.files import (
    LocalFileReader,
    ObstoreReader,
    file_size,
    open_reader,
    read_range,
)
from virtualizarr.io.ranges import coalesce
from virtualizarr.io.reader import ChunkReader, read_local_ranges, read_local_ranges_fd
from virtualizarr.io.source import (
    HEAD_BYTES,
    MAX_IN_FLIGHT,
    MERGE_GAP,
    ByteSource,
    LocalSource,
    RemoteSource,
    SourceFile,
    SourceRecord,
    SourceStats,
    hand_over,
    open_source,
    recorded,
    remember,
    stat_record,
    total_stats,
    translate_error,
)

__all__ = [
    "HEAD_BYTES",
    "MAX_IN_FLIGHT",
    "MERGE_GAP",
    "ByteSource",
    "ChunkReader",
    "LocalFileReader",
    "LocalSource",
    "RemoteSource",
    "SourceFile",
    "SourceRecord",
    "SourceStats",
    "coalesce",
    "hand_over",
    "open_source",
    "recorded",
    "stat_record",
    "remember",
    "total_stats",
    "translate_error",
    "ObstoreReader",
    "file_size",
    "open_reader",
    "read_local_ranges",
    "read_local_ranges_fd",
    "read_range",
]
