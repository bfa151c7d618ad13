"""Reading a Zarr store's metadata documents and listings through the object-store registry."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.errors import ListingNotSupportedError, ParserError, UnsupportedFeatureError

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["ZarrSource"]


class ZarrSource:
    """The objects under one URL prefix: JSON documents, child names and listings.

    Paths are relative to ``root_url`` (``""`` is the root itself).

    >>> # src = ZarrSource(ObjectStoreRegistry(), "file:///data/a.zarr")
    >>> # src.get_json(".zgroup"), src.list_children(""), src.list_objects("temp")
    """

    def __init__(self, registry: ObjectStoreRegistry, root_url: str) -> None:
        self.root_url = root_url.rstrip("/")
        self.registry = registry
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
        from virtualizarr.io.objects import get_object

        try:
            raw = get_object(self.url(path), self.registry)
        except FileNotFoundError:
            return None
        except OSError as e:  # already names the URL (virtualizarr.io translates)
            raise ParserError(str(e)) from e
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
        from virtualizarr.io.objects import list_children

        try:
            return list_children(self.url(path), self.registry)
        except ListingNotSupportedError as e:
            raise self._unsupported(path) from e
        except OSError as e:
            raise ParserError(str(e)) from e

    def list_objects(self, path: str) -> tuple[list[str], np.ndarray]:
        """Keys (relative to ``path``) and sizes of every object below ``path``."""
        from virtualizarr.io.objects import list_objects

        try:
            return list_objects(self.url(path), self.registry)
        except ListingNotSupportedError as e:
            raise self._unsupported(path) from e
        except OSError as e:
            raise ParserError(str(e)) from e

    def _unsupported(self, path: str) -> UnsupportedFeatureError:
        return UnsupportedFeatureError(
            f"Cannot list {self.url(path)}: its object store does not support listing "
            f"({type(self.store).__name__}), and chunk sizes come from listings. Serve the "
            "store from an object store that can list (S3, GCS, Azure, local)."
        )
