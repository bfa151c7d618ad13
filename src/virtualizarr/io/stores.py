"""The obstore store a URL gets when nobody registered one (for :class:`~virtualizarr.registry.ObjectStoreRegistry`).

Kept apart from :mod:`virtualizarr.io.objects` because the registry needs it and
``objects`` needs the registry: this module imports nothing of VirtualiZarr.

>>> type(default_store("file", "")).__name__
'LocalStore'
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = ["default_store"]

CLOUD_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


def default_store(scheme: str, netloc: str) -> ObjectStore:
    """A store for ``scheme://netloc``: local files, HTTP(S), or an anonymous cloud store
    (S3 signs requests when ``AWS_ACCESS_KEY_ID`` is set). Raises ``ValueError`` for other
    schemes, saying how to register a store.
    """
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
