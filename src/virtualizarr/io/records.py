"""What this process last saw of each file (size and ETag), and what a file is like now.

:func:`~virtualizarr.io.open_source` remembers the record of every file it opens to be
parsed; :class:`~virtualizarr.store.ManifestStore` starts from these, so reading a file
changed since it was virtualized raises instead of returning other bytes.

>>> recorded(["file:///never/opened.nc"])
{}
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from virtualizarr.io.requests import head_meta
from virtualizarr.manifests.manifest import normalize_path
from virtualizarr.manifests.sources import SourceRecord

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["SourceRecord", "local_etag", "recorded", "remember", "stat_record"]

_RECORDS: dict[str, SourceRecord] = {}
_RECORDS_MAX = 1 << 17
_RECORDS_LOCK = threading.Lock()


def remember(record: SourceRecord) -> None:
    """Keep ``record`` as what this process last saw of its file (see :func:`recorded`)."""
    with _RECORDS_LOCK:
        if len(_RECORDS) >= _RECORDS_MAX:
            _RECORDS.clear()
        _RECORDS[record.url] = record


def recorded(urls: Iterable[str]) -> dict[str, SourceRecord]:
    """The records of ``urls`` kept by :func:`open_source` (the size/ETag each file had when
    it was last opened to be parsed). :class:`~virtualizarr.store.ManifestStore` starts
    from these, so reading a file changed since it was virtualized raises instead of
    returning other bytes.

    >>> recorded(["file:///never/opened.nc"])
    {}
    """
    with _RECORDS_LOCK:
        return {u: _RECORDS[u] for u in urls if u in _RECORDS}


def local_etag(st: os.stat_result) -> str:
    # inode, modification time and size, as obstore's LocalStore spells a local ETag
    return f"{st.st_ino:x}-{st.st_mtime_ns // 1000:x}-{st.st_size:x}"


def stat_record(url: str, registry: ObjectStoreRegistry | None = None) -> SourceRecord | None:
    """The size and ETag of the file at ``url`` now (a ``stat``, or one HEAD request);
    ``None`` if there is no such file.

    >>> stat_record("file:///no/such/file.nc") is None
    True
    """
    from virtualizarr.registry import ObjectStoreRegistry

    url = normalize_path(url)
    registry = registry if registry is not None else ObjectStoreRegistry()
    local = registry.local_path(url)
    if local is not None:
        try:
            st = os.stat(local)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return SourceRecord(url, st.st_size, local_etag(st))
    store, key = registry.resolve(url)
    try:
        size, etag = head_meta(store, key, url)
    except FileNotFoundError:
        return None
    return SourceRecord(url, size, etag)
