"""Where writers put their files: local paths (written atomically) or object-store URLs.

Shared by the kerchunk JSON and parquet writers, below both of them.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

from virtualizarr.errors import WriterError

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["is_remote", "local_path", "put_object", "temp_name"]


def is_remote(target: str) -> bool:
    """Whether ``target`` is an object-store URL rather than a local path.

    >>> is_remote("s3://bucket/refs.json"), is_remote("file:///tmp/refs.json")
    (True, False)
    """
    return "://" in target and not target.startswith("file://")


def local_path(target: str) -> str:
    """The absolute local path of ``target`` (a path or a ``file://`` URL)."""
    target = target.removeprefix("file://")
    return os.path.abspath(os.path.expanduser(target))


def temp_name(path: str) -> str:
    """A hidden sibling of ``path``, so the final rename stays on one filesystem."""
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:12]}")


def put_object(url: str, data: bytes, registry: ObjectStoreRegistry | None) -> None:
    """Write ``data`` to the object at ``url`` through the registry's store."""
    from virtualizarr.io import objects

    try:
        objects.put_object(url, data, registry)
    except OSError as e:  # names the URL (virtualizarr.io translates obstore's errors)
        raise WriterError(str(e)) from e
