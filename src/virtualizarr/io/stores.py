"""The obstore store a URL gets when nobody registered one (for :class:`~virtualizarr.registry.ObjectStoreRegistry`).

Kept apart from :mod:`virtualizarr.io.objects` because the registry needs it and
``objects`` needs the registry: this module imports nothing of VirtualiZarr.

>>> type(default_store("file", "")).__name__
'LocalStore'
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = ["default_store"]

CLOUD_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


_STORES: dict[tuple[str, str, tuple[tuple[str, str], ...]], ObjectStore] = {}
_STORES_LOCK = threading.Lock()
_ENV_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_")


def _forget_stores() -> None:  # a child process makes its own (clients do not survive fork)
    global _STORES_LOCK
    _STORES.clear()
    _STORES_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_stores)


def default_store(scheme: str, netloc: str) -> ObjectStore:
    """A store for ``scheme://netloc``: local files, HTTP(S), or an anonymous cloud store
    (S3 signs requests when ``AWS_ACCESS_KEY_ID`` is set). Raises ``ValueError`` for other
    schemes, saying how to register a store.

    One store per ``scheme://netloc`` (and cloud settings in the environment) serves the
    whole process: every :class:`~virtualizarr.registry.ObjectStoreRegistry` made without
    stores (one per ``open_virtual_dataset`` call by default) shares its HTTP client, so
    files opened one after another reuse its connections, and the client is built once
    (~20 ms of CPU each: 2 s for 100 files before this cache).
    """
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)))
    key = (scheme, netloc, env)
    store = _STORES.get(key)
    if store is None:
        with _STORES_LOCK:
            store = _STORES.get(key)
            if store is None:
                store = _STORES[key] = _make_store(scheme, netloc)
    return store


def _make_store(scheme: str, netloc: str) -> ObjectStore:
    from obstore.store import HTTPStore, LocalStore, from_url

    if scheme == "file":
        return LocalStore()
    if scheme in ("http", "https"):
        # obstore refuses plain-HTTP URLs unless told otherwise; the URL itself says http
        return HTTPStore.from_url(
            f"{scheme}://{netloc}", client_options={"allow_http": scheme == "http"}
        )
    if scheme in CLOUD_SCHEMES:
        anonymous = not (os.environ.get("AWS_ACCESS_KEY_ID") and scheme.startswith("s3"))
        return from_url(f"{scheme}://{netloc}", skip_signature=anonymous)
    raise ValueError(
        f"No object store is registered for {scheme}://{netloc} and none can be made by default; "
        "register one: ObjectStoreRegistry({'" + f"{scheme}://{netloc}" + "': store})."
    )
