"""Helpers shared by the parser tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

__all__ = ["parse", "parser_call"]


def parse(
    parser_cls: type,
    url: str | Path,
    registry: ObjectStoreRegistry | None = None,
    **options: Any,
) -> ManifestStore:
    """``parser_cls(**options)(url, registry)``: one file through one parser, as users call it.

    >>> # store = parse(HDFParser, tmp_path / "a.nc", group="sub")
    """
    return parser_cls(**options)(str(url), registry or ObjectStoreRegistry())


def parser_call(parser_cls: type) -> Callable[..., ManifestStore]:
    """A test module's ``parse(url, registry=None, **options)`` for one parser class."""

    def call(
        url: str | Path, registry: ObjectStoreRegistry | None = None, **options: Any
    ) -> ManifestStore:
        return parse(parser_cls, url, registry, **options)

    call.__name__ = call.__qualname__ = "parse"
    call.__doc__ = f"One file through {parser_cls.__name__}(**options)."
    return call
