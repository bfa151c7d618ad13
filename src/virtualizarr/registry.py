"""ObjectStoreRegistry: which obstore store serves which URL prefix."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = ["ObjectStoreRegistry", "split_url"]


_CACHE_SIZE = 1 << 16
"""Resolved URLs kept per registry (one per referenced file; cleared when full)."""


def split_url(url: str) -> tuple[str, str, list[str]]:
    """``(scheme, netloc, path segments)`` of a URL; local paths count as ``file://``.

    The path is taken literally: ``#`` and ``?`` are characters of file and object
    names (``file:///data/run#3.nc``), not a fragment or query as ``urlsplit`` would
    have it. Only ``http(s)`` paths are percent-decoded (obstore encodes them again);
    ``file://`` and object-store keys are used as written.

    >>> split_url("s3://bucket/dir/a#1.nc")
    ('s3', 'bucket', ['dir', 'a#1.nc'])
    """
    if "://" not in url:
        from virtualizarr.manifests.manifest import normalize_path

        url = normalize_path(url)
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    segments = [p for p in path.split("/") if p]
    if scheme.lower() in ("http", "https"):
        # HTTP URLs are percent-encoded ("a%20b.nc"); obstore encodes keys itself
        segments = [unquote(p) for p in segments]
    return scheme.lower(), netloc, segments


def _default_store(scheme: str, netloc: str) -> ObjectStore:
    from virtualizarr.io.stores import default_store  # io makes every obstore store

    return default_store(scheme, netloc)


class ObjectStoreRegistry:
    """Maps URL prefixes to obstore stores, matched by whole path segments.

    A URL is served by the store of its longest registered prefix, with the rest of the
    URL as the key within that store: register ``"s3://bucket/data"`` with a store
    rooted at that prefix (e.g. ``S3Store("bucket", prefix="data")``). ``file://`` URLs
    need no registration; other schemes get an anonymous store made from the URL.

    >>> from obstore.store import MemoryStore
    >>> reg = ObjectStoreRegistry({"memory://data": MemoryStore()})
    >>> reg.resolve("memory://data/a/b.nc")[1]
    'a/b.nc'
    """

    def __init__(self, stores: Mapping[str, ObjectStore] | None = None) -> None:
        self._stores: dict[tuple[str, str, tuple[str, ...]], ObjectStore] = {}
        self._defaults: dict[tuple[str, str], ObjectStore] = {}
        self._lock = threading.Lock()
        # url -> (store, key, local path or None): reading a chunk resolves its URL each
        # time, and parsing the URL costs more than the rest of a local read's overhead.
        self._cache: dict[str, tuple[ObjectStore, str, str | None]] = {}
        for prefix, store in (stores or {}).items():
            self.register(prefix, store)

    def register(self, prefix: str, store: ObjectStore) -> None:
        """Serve every URL under ``prefix`` from ``store``."""
        scheme, netloc, segments = split_url(prefix)
        self._stores[(scheme, netloc, tuple(segments))] = store
        self._cache = {}  # a longer prefix may now serve URLs resolved before

    def resolve(self, url: str) -> tuple[ObjectStore, str]:
        """The store serving ``url`` and the key of ``url`` within it."""
        store, key, _ = self._resolve_cached(url)
        return store, key

    def local_path(self, url: str) -> str | None:
        """The filesystem path of ``url`` if the registry's own ``LocalStore`` serves it.

        ``None`` for other URLs, and for ``file://`` URLs under a registered prefix (a
        store the user chose, which must then be used). Lets readers use plain file
        reads, which cost microseconds instead of an object-store round trip.

        >>> ObjectStoreRegistry().local_path("file:///data/a.nc")
        '/data/a.nc'
        """
        return self._resolve_cached(url)[2]

    def _resolve_cached(self, url: str) -> tuple[ObjectStore, str, str | None]:
        hit = self._cache.get(url)
        if hit is None:
            hit = self._resolve(url)
            cache = self._cache
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[url] = hit
        return hit

    def _resolve(self, url: str) -> tuple[ObjectStore, str, str | None]:
        scheme, netloc, segments = split_url(url)
        best: tuple[str, str, tuple[str, ...]] | None = None
        for prefix in self._stores:
            s, n, segs = prefix
            matches = s == scheme and n == netloc and tuple(segments[: len(segs)]) == segs
            if matches and (best is None or len(segs) > len(best[2])):
                best = prefix
        if best is not None:
            return self._stores[best], "/".join(segments[len(best[2]) :]), None
        with self._lock:
            store = self._defaults.get((scheme, netloc))
            if store is None:
                store = self._defaults[(scheme, netloc)] = _default_store(scheme, netloc)
        key = "/".join(segments)
        # Our default LocalStore has no prefix: the key is the absolute path without its "/".
        local = "/" + key if scheme == "file" and netloc == "" and os.name == "posix" else None
        return store, key, local

    @property
    def prefixes(self) -> list[str]:
        """Registered prefixes as URLs."""
        return [f"{s}://{n}/" + "/".join(p) for s, n, p in self._stores]

    def __repr__(self) -> str:
        return f"ObjectStoreRegistry({self.prefixes})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectStoreRegistry):
            return NotImplemented
        return self._stores.keys() == other._stores.keys() and all(
            self._stores[k] is other._stores[k] or self._stores[k] == other._stores[k]
            for k in self._stores
        )

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        return {"stores": self._stores}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._stores = state["stores"]
        self._defaults = {}
        self._lock = threading.Lock()
        self._cache = {}
