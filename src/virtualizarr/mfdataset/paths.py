"""Which files: globs (local or object-store URLs) expanded, nested lists flattened."""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["expand_paths", "flatten_nested", "is_remote", "unflatten_nested"]


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _glob_match(parts: list[str], pats: list[str]) -> bool:
    """Whether URL segments ``parts`` match glob segments ``pats`` as ``glob.glob(...,
    recursive=True)`` matches local paths: ``*``, ``?`` and ``[...]`` within one segment,
    a ``**`` segment across any number of them.

    >>> _glob_match("s3://b/d/sub/x.nc".split("/"), "s3://b/d/*.nc".split("/"))
    False
    >>> _glob_match("s3://b/d/sub/x.nc".split("/"), "s3://b/**/*.nc".split("/"))
    True
    """
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_glob_match(parts[k:], pats[1:]) for k in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], pats[0]) and _glob_match(parts[1:], pats[1:])


def expand_paths(
    paths: str | os.PathLike[str] | Sequence[Any], registry: ObjectStoreRegistry | None = None
) -> list[Any]:
    """A glob (local or object-store URL) expanded and sorted; lists are returned as they are.

    >>> # expand_paths("s3://bucket/era5/*.nc")
    """
    if isinstance(paths, os.PathLike):
        paths = os.fspath(paths)
    if not isinstance(paths, str):
        return list(paths)
    if not _has_magic(paths):
        return [paths]
    if "://" not in paths or paths.startswith("file://"):
        local = paths.removeprefix("file://")
        found = sorted(globlib.glob(os.path.expanduser(local), recursive=True))
    else:
        from virtualizarr.io.objects import list_objects

        head = paths[: min(i for i, c in enumerate(paths) if c in "*?[")]
        base = head[: head.rfind("/") + 1]
        names, _ = list_objects(base, registry)  # errors name the URL listed
        urls = (base.rstrip("/") + "/" + name for name in names)
        pats = paths.split("/")
        found = sorted(u for u in urls if _glob_match(u.split("/"), pats))
    if not found:
        raise FileNotFoundError(f"No files match {paths!r}")
    return found


def flatten_nested(nested: Any, out: list[Any]) -> Any:
    """Replace leaves of nested lists by their index in ``out`` (which collects the leaves)."""
    if isinstance(nested, (list, tuple)):
        return [flatten_nested(x, out) for x in nested]
    out.append(nested)
    return len(out) - 1


def unflatten_nested(shape: Any, items: list[Any]) -> Any:
    if isinstance(shape, list):
        return [unflatten_nested(x, items) for x in shape]
    return items[shape]


def is_remote(path: Any) -> bool:
    s = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
    return "://" in s and not s.startswith("file://")
