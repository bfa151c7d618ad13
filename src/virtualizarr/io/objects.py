"""Whole objects of an object store: listing, reading whole, writing, copying, deleting.

With :mod:`virtualizarr.io.source` (byte ranges of one file) this is how VirtualiZarr talks
to object stores: nothing outside :mod:`virtualizarr.io` calls obstore. Every call resolves
its URL through an :class:`~virtualizarr.registry.ObjectStoreRegistry`, retries transient
failures with backoff, and raises our errors naming the URL: ``FileNotFoundError``,
``PermissionError``, :class:`~virtualizarr.errors.ListingNotSupportedError` (a plain HTTP
server cannot list), :class:`~virtualizarr.errors.ObjectStoreError` (any other failure of a
listing, write, copy or delete) or :class:`~virtualizarr.errors.SourceReadError` (a read).

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> put_object(f"file://{d}/a/b.json", b"{}")
>>> list_objects(f"file://{d}")[0], list_children(f"file://{d}"), get_object(f"file://{d}/a/b.json")
(['a/b.json'], ['a'], b'{}')

Listings count as one request each in :func:`~virtualizarr.io.total_stats`; reads count
their requests and bytes; writes are not counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.errors import ListingNotSupportedError
from virtualizarr.io.source import count_io, with_retries
from virtualizarr.registry import ObjectStoreRegistry

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = [
    "any_object",
    "copy_object",
    "delete_objects",
    "get_object",
    "list_children",
    "list_objects",
    "put_object",
    "read_ranges",
]

LIST_PAGE = 10_000
"""Objects per page of a listing (S3 answers at most 1,000 per request; obstore pages on)."""


def _resolve(url: str, registry: ObjectStoreRegistry | None) -> tuple[ObjectStore, str]:
    return (registry or ObjectStoreRegistry()).resolve(url)


def _cannot_list(store: ObjectStore, url: str, e: BaseException) -> ListingNotSupportedError | None:
    """Our error for a store that cannot list (HTTP), else None."""
    from obstore.exceptions import NotSupportedError
    from obstore.store import HTTPStore

    if isinstance(e, NotSupportedError) or isinstance(store, HTTPStore):
        return ListingNotSupportedError(
            f"Cannot list {url}: its object store ({type(store).__name__}) does not support "
            "listing. Give the files' URLs instead, or serve them from an object store that "
            "can list (S3, GCS, Azure, local)."
        )
    return None


def _listing(url: str, registry: ObjectStoreRegistry | None, call: Any) -> Any:
    """``call(store, key)`` with retries; errors translated (see the module docstring)."""
    from obstore.store import HTTPStore

    store, key = _resolve(url, registry)
    key = key.strip("/")
    try:
        if isinstance(store, HTTPStore):
            # WebDAV listing, which most HTTP servers refuse (501): obstore has retried
            # already, more attempts would only wait longer for the same answer
            out = with_retries(lambda: call(store, key), url, "list", retries=0)
        else:
            out = with_retries(lambda: call(store, key), url, "list")
    except OSError as e:
        unsupported = _cannot_list(store, url, e.__cause__ or e)
        if unsupported is not None and not isinstance(e, PermissionError):
            raise unsupported from e
        raise
    count_io(None, 1, 0)
    return out


def list_objects(
    url: str, registry: ObjectStoreRegistry | None = None
) -> tuple[list[str], np.ndarray]:
    """Names (relative to ``url``, with ``/`` between levels) and sizes (uint64) of every
    object below ``url``, at any depth. ``url`` is a "directory": ``s3://b/d`` lists
    ``s3://b/d/...``, not ``s3://b/dx``.

    >>> # names, sizes = list_objects("s3://bucket/store.zarr/temp")
    """
    import obstore

    def call(store: ObjectStore, key: str) -> tuple[list[str], list[int]]:
        cut = len(key) + 1 if key else 0
        names: list[str] = []
        sizes: list[int] = []
        for page in obstore.list(store, prefix=key or None, chunk_size=LIST_PAGE):
            names.extend(m["path"][cut:] for m in page)
            sizes.extend(m["size"] for m in page)
        return names, sizes

    names, sizes = _listing(url, registry, call)
    return names, np.array(sizes, dtype=np.uint64)


def list_children(url: str, registry: ObjectStoreRegistry | None = None) -> list[str]:
    """Sorted names of the "directories" directly below ``url`` (one delimited listing).

    >>> # list_children("s3://bucket/store.zarr") -> ['lat', 'lon', 'temp']
    """
    import obstore

    def call(store: ObjectStore, key: str) -> list[str]:
        result = obstore.list_with_delimiter(store, prefix=key or None)
        cut = len(key) + 1 if key else 0
        return sorted(p[cut:].rstrip("/") for p in result["common_prefixes"])

    out: list[str] = _listing(url, registry, call)
    return out


def any_object(url: str, registry: ObjectStoreRegistry | None = None) -> bool:
    """Whether any object is stored below ``url`` (a listing of one object).

    >>> any_object("file:///no/such/prefix")
    False
    """
    import obstore

    def call(store: ObjectStore, key: str) -> bool:
        # stops at the first non-empty page: one request
        return any(page for page in obstore.list(store, prefix=key or None, chunk_size=1))

    try:
        found: bool = _listing(url, registry, call)
    except FileNotFoundError:  # a local prefix that is no directory
        return False
    return found


def get_object(url: str, registry: ObjectStoreRegistry | None = None) -> bytes:
    """The whole object at ``url`` in one request (``FileNotFoundError`` if there is none).

    For a file to parse use :func:`~virtualizarr.io.open_source` (its size comes with the
    first bytes, and its bytes are cached); this is for small documents read once.
    """
    import obstore

    store, key = _resolve(url, registry)
    data = bytes(with_retries(lambda: obstore.get(store, key).bytes(), url, "read"))
    count_io(None, 1, len(data))
    return data


def read_ranges(
    url: str,
    starts: Sequence[int],
    lengths: Sequence[int],
    registry: ObjectStoreRegistry | None = None,
) -> list[bytes]:
    """The byte ranges ``(starts[i], lengths[i])`` of ``url`` (obstore merges close ones and
    fetches concurrently). Empty ranges are ``b""`` without a request.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = p.write_bytes(bytes(range(10)))
    >>> read_ranges(f"file://{p}", [1, 5, 0], [2, 3, 0])
    [b'\\x01\\x02', b'\\x05\\x06\\x07', b'']
    """
    import obstore

    wanted = [(int(s), int(n)) for s, n in zip(starts, lengths) if n > 0]
    if not wanted:
        return [b""] * len(starts)
    store, key = _resolve(url, registry)
    got = with_retries(
        lambda: obstore.get_ranges(
            store, key, starts=[s for s, _ in wanted], lengths=[n for _, n in wanted]
        ),
        url,
        "read",
    )
    datas = iter(bytes(g) for g in got)
    out = [next(datas) if n > 0 else b"" for n in lengths]
    count_io(None, len(wanted), sum(len(d) for d in out))
    return out


def put_object(url: str, data: bytes, registry: ObjectStoreRegistry | None = None) -> None:
    """Write ``data`` as the object at ``url`` (replacing it; local directories are made)."""
    import obstore

    store, key = _resolve(url, registry)
    with_retries(lambda: obstore.put(store, key, data), url, "write")


def copy_object(src: str, dst: str, registry: ObjectStoreRegistry | None = None) -> None:
    """Copy the object at ``src`` to ``dst`` inside one store (server-side, one request)."""
    import obstore

    store, src_key = _resolve(src, registry)
    dst_store, dst_key = _resolve(dst, registry)
    if dst_store is not store:
        raise ValueError(f"Cannot copy {src} to {dst}: they are served by different stores")
    with_retries(lambda: obstore.copy(store, src_key, dst_key), src, "copy")


def delete_objects(urls: Iterable[str], registry: ObjectStoreRegistry | None = None) -> None:
    """Delete the objects at ``urls`` (batched per store; absent objects are no error)."""
    import obstore

    by_store: dict[int, tuple[ObjectStore, list[str], str]] = {}
    for url in urls:
        store, key = _resolve(url, registry)
        by_store.setdefault(id(store), (store, [], url))[1].append(key)
    for store, keys, first in by_store.values():
        with contextlib.suppress(FileNotFoundError):  # what is not there is deleted
            with_retries(lambda s=store, k=keys: obstore.delete(s, k), first, "delete")
