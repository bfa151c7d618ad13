"""Openers that misbehave on purpose, to test the harness's classification (run in its child)."""

from __future__ import annotations

import os
import time


def hang(path: str, parser: str | None = None) -> str:
    time.sleep(60)
    return "woke up"


def crash(path: str, parser: str | None = None) -> str:
    os.abort()


def allocate(path: str, parser: str | None = None) -> str:
    return str(len(bytearray(8 << 30)))


def raise_index(path: str, parser: str | None = None) -> str:
    raise IndexError("list index out of range")


def raise_unnamed(path: str, parser: str | None = None) -> str:
    from virtualizarr.errors import CorruptFileError

    raise CorruptFileError("the header is corrupt")  # names no file: BAD


def raise_named(path: str, parser: str | None = None) -> str:
    from virtualizarr.errors import CorruptFileError

    raise CorruptFileError(f"{path}: the header is corrupt")
