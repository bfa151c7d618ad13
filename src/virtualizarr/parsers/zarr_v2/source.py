"""Reading a Zarr store's metadata documents and listings through the object-store registry."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.errors import ParserError, UnsupportedFeatureError

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["ZarrSource"]


def _is_not_found(e: Exception) -> bool:
    from obstore.exceptions import NotFoundError

    return isinstance(e, (NotFoundError, FileNotFoundError))


class ZarrSource:
    """The objects under one URL prefix: JSON documents, child names and listings.

    Paths are relative to ``root_url`` (``""`` is the root itself).

    >>> # src = ZarrSource(ObjectStoreRegistry(), "file:///data/a.zarr")
    >>> # src.get_json(".zgroup"), src.list_children(""), src.list_objects("temp")
    """

    def __init__(self, registry: ObjectStoreRegistry, root_url: str) -> None:
        self.root_url = root_url.rstrip("/")
        self.store, self.root_key = registry.resolve(self.root_url)
        self.root_key = self.root_key.strip("/")

    def url(self, path: str) -> str:
        """Absolute URL of ``path``."""
        return f"{self.root_url}/{path}" if path else self.root_url

    def key(self, path: str) -> str:
        """Key of ``path`` in the object store."""
        return "/".join(p for p in (self.root_key, path) if p)

    def get_json(self, path: str) -> dict[str, Any] | None:
        """The JSON object stored at ``path``, or None if there is no such object."""
        import obstore

        try:
            raw = obstore.get(self.store, self.key(path)).bytes()
        except Exception as e:
            if _is_not_found(e):
                return None
            raise ParserError(f"Cannot read {self.url(path)}: {type(e).__name__}: {e}") from e
        try:
            # NaN/Infinity are not JSON but zarr-python writes them in fill values/attributes
            doc = json.loads(bytes(raw))
        except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
            raise ParserError(f"{self.url(path)} is not valid JSON: {type(e).__name__}: {e}") from e
        if not isinstance(doc, dict):
            raise ParserError(
                f"{self.url(path)} should hold a JSON object, got {type(doc).__name__}."
            )
        return doc

    def list_children(self, path: str) -> list[str]:
        """Names of the sub-prefixes directly below ``path`` (candidate child nodes)."""
        import obstore

        key = self.key(path)
        try:
            result = obstore.list_with_delimiter(self.store, prefix=key or None)
        except Exception as e:
            raise self._list_error(path, e) from e
        cut = len(key) + 1 if key else 0
        return sorted(p[cut:].rstrip("/") for p in result["common_prefixes"])

    def list_objects(self, path: str) -> tuple[list[str], np.ndarray]:
        """Keys (relative to ``path``) and sizes of every object below ``path``."""
        import obstore

        key = self.key(path)
        cut = len(key) + 1 if key else 0
        keys: list[str] = []
        sizes: list[int] = []
        try:
            for batch in obstore.list(self.store, prefix=key or None, chunk_size=10_000):
                keys.extend(m["path"][cut:] for m in batch)
                sizes.extend(m["size"] for m in batch)
        except Exception as e:
            raise self._list_error(path, e) from e
        return keys, np.array(sizes, dtype=np.uint64)

    def _list_error(self, path: str, e: Exception) -> Exception:
        from obstore.exceptions import NotSupportedError
        from obstore.store import HTTPStore

        if isinstance(e, NotSupportedError) or isinstance(self.store, HTTPStore):
            return UnsupportedFeatureError(
                f"Cannot list {self.url(path)}: its object store does not support listing "
                f"({type(self.store).__name__}), and chunk sizes come from listings. Serve the "
                "store from an object store that can list (S3, GCS, Azure, local)."
            )
        return ParserError(f"Cannot list {self.url(path)}: {type(e).__name__}: {e}")
