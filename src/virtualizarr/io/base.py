"""The :class:`ByteSource` interface: one file's bytes for one parse, and a file object over it.

:func:`~virtualizarr.io.open_source` returns a :class:`~virtualizarr.io.local.LocalSource`
or a :class:`~virtualizarr.io.remote.RemoteSource`; parsers see only this interface:

>>> # src.size, src.etag, src.head[:8], src.read(4096, 100), src.read_many([(0, 8)])
>>> clip(10, 100, 50)
(10, 50)
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any, Self

from virtualizarr.io.requests import SourceStats
from virtualizarr.manifests.sources import SourceRecord

__all__ = ["SMALL_GAP", "ByteSource", "Expand", "NotAFileError", "SourceFile", "clip"]

Expand = Callable[[int, bytes], Iterable[tuple[int, int]]]
"""``expand(offset, data) -> ranges`` of :meth:`ByteSource.read_many`: what to read next."""

SMALL_GAP = 4 << 10
"""Missing ranges this close are always fetched together (the gap costs ~20 us)."""


class ByteSource:
    """Random access to one file's bytes, counted (see :mod:`virtualizarr.io.source`).

    Use :func:`~virtualizarr.io.open_source` to make one; close it (or use ``with``) when done.
    """

    url: str
    size: int
    etag: str | None
    stats: SourceStats

    @property
    def head(self) -> bytes:
        """The first bytes of the file (everything the first request returned)."""
        raise NotImplementedError

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end of the file, none past it)."""
        raise NotImplementedError

    expands = False
    """Whether :meth:`read_many` fetches what ``expand`` asks for ahead (remote sources)."""

    def read_many(
        self, ranges: Iterable[tuple[int, int]], expand: Expand | None = None
    ) -> list[bytes]:
        """Many ``(offset, length)`` ranges at once; each as :meth:`read` would return it.

        ``expand(offset, data)``, if given, may return more ``(offset, length)`` ranges
        that will be read next (the children of a tree node): a remote source calls it as
        each range arrives and fetches those in the same batch, into its cache, calling
        ``expand`` on them in turn; a local source ignores it (reading is cheap).
        """
        raise NotImplementedError

    def as_file(self) -> io.RawIOBase:
        """A seekable read-only binary file over this source (for h5py, astropy, tifffile)."""
        return SourceFile(self)

    def record(self) -> SourceRecord:
        """The size and ETag seen now, for :class:`~virtualizarr.store.ManifestStore` (``sources=``)."""
        return SourceRecord(self.url, self.size, self.etag)

    def close(self) -> None:
        """Release the descriptor or the cache."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, size={self.size}, {self.stats})"


class NotAFileError(IsADirectoryError, FileNotFoundError):
    """A directory where a file was expected: both "is a directory" and "no file here"."""


def clip(offset: int, length: int, size: int) -> tuple[int, int]:
    """The ``(lo, hi)`` bytes of ``(offset, length)`` inside a file of ``size`` bytes."""
    if offset < 0 or length < 0:
        raise ValueError(f"negative offset or length: ({offset}, {length})")
    lo = min(offset, size)
    return lo, min(offset + length, size)


class SourceFile(io.RawIOBase):
    """A seekable read-only file object over a :class:`ByteSource` (closing it keeps the source)."""

    def __init__(self, source: ByteSource) -> None:
        super().__init__()
        self.source = source
        self._pos = 0

    @property
    def size(self) -> int:
        return self.source.size

    @property
    def url(self) -> str:
        return self.source.url

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.source.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = max(self.source.size - self._pos, 0)
        data = self.source.read(self._pos, size)
        self._pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(memoryview(b)))
        memoryview(b).cast("B")[: len(data)] = data
        return len(data)
