"""LocalSource: a local file read with ``pread`` on one descriptor (the OS caches; we do not).

Reads inside the head (read once, ``HEAD_BYTES_LOCAL``) come from memory, and
:meth:`LocalSource.read_many` joins ranges at most ``SMALL_GAP`` apart into one ``pread``:
each ``pread`` releases the GIL, which threads parsing at once pay a handoff for
(see :mod:`virtualizarr.io.turns`).

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
>>> _ = p.write_bytes(bytes(range(10)))
>>> with LocalSource(str(p), p.as_uri()) as src:
...     src.read(2, 3), src.read_many([(0, 1), (8, 5)]), src.stats.requests
(b'\\x02\\x03\\x04', [b'\\x00', b'\\x08\\t'], 2)
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable
from typing import Any

from virtualizarr.errors import SourceReadError
from virtualizarr.io.base import SMALL_GAP, ByteSource, Expand, NotAFileError, SourceFile, clip
from virtualizarr.io.records import local_etag
from virtualizarr.io.requests import SourceStats, count_io

__all__ = ["HEAD_BYTES_LOCAL", "LocalSource", "pread_all"]

HEAD_BYTES_LOCAL = 1 << 16
"""Bytes of a local file read as its head (a ``pread``; cheap, but memory for many files)."""


def pread_all(fd: int, length: int, offset: int) -> bytes:
    """``length`` bytes of the open file ``fd`` from ``offset`` (fewer only where the file
    ends): one ``pread``, and more only if it came back short, as one call returns at most
    ~2 GiB on Linux. Every local read of :mod:`virtualizarr.io` goes through here.

    >>> import tempfile
    >>> with tempfile.TemporaryFile() as f:
    ...     _ = f.write(b"0123456789"); f.flush()
    ...     pread_all(f.fileno(), 4, 2), pread_all(f.fileno(), 4, 8)
    (b'2345', b'89')
    """
    data = os.pread(fd, length, offset)
    if 0 < len(data) < length:
        parts, got = [data], len(data)
        while got < length:
            more = os.pread(fd, length - got, offset + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        data = b"".join(parts)
    return data


class LocalSource(ByteSource):
    """A local file read with ``pread`` on one descriptor (the OS caches; we do not)."""

    def __init__(self, path: str, url: str) -> None:
        self.url = url
        self.path = path
        self.stats = SourceStats()
        self._fd = -1
        try:
            self._fd = os.open(path, os.O_RDONLY)
            st = os.fstat(self._fd)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"Cannot read {url}: no such file") from e
        except OSError as e:
            raise type(e)(e.errno, f"Cannot read {url}: {e.strerror}") from e
        if stat.S_ISDIR(st.st_mode):
            self.close()
            raise NotAFileError(f"Cannot read {url}: it is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            self.close()
            raise SourceReadError(f"Cannot read {url}: not a regular file")
        self.size = st.st_size
        self.etag = local_etag(st)
        self.device = st.st_dev
        self._head: bytes | None = None

    @property
    def head(self) -> bytes:
        if self._head is None:
            self._head = self.read(0, HEAD_BYTES_LOCAL)
        return self._head

    def _pread(self, lo: int, hi: int) -> bytes:
        data = pread_all(self._fd, hi - lo, lo)
        count_io(self.stats, 1, len(data))
        return data

    def read(self, offset: int, length: int) -> bytes:
        lo, hi = clip(offset, length, self.size)
        if hi <= lo:
            return b""
        head = self._head
        if head is not None and hi <= len(head):
            # a parse reads its header structures again and again: each pread would
            # release the GIL, and parsing on threads pays a handoff per release
            return head[lo:hi]
        return self._pread(lo, hi)

    def read_many(
        self, ranges: Iterable[tuple[int, int]], expand: Expand | None = None
    ) -> list[bytes]:
        """Each range's bytes; ranges at most ``SMALL_GAP`` apart come from one ``pread``
        (B-tree siblings often sit side by side: one syscall instead of several).

        The join is a loop, not :func:`virtualizarr.io.ranges.coalesce`: a parse's batches
        hold a handful of ranges, where numpy's set-up costs ~20 us against ~5 us here."""
        wanted = [clip(o, n, self.size) for o, n in ranges]
        head = self._head
        limit = len(head) if head is not None else 0
        out: list[bytes] = [b""] * len(wanted)
        todo = sorted((lo, hi, i) for i, (lo, hi) in enumerate(wanted) if hi > lo and hi > limit)
        for i, (lo, hi) in enumerate(wanted):
            if lo < hi <= limit:
                out[i] = head[lo:hi]  # type: ignore[index]
        k = 0
        while k < len(todo):
            lo, hi, _ = todo[k]
            j = k + 1
            while j < len(todo) and todo[j][0] <= hi + SMALL_GAP:
                hi = max(hi, todo[j][1])
                j += 1
            data = self._pread(lo, hi)
            for a, b, i in todo[k:j]:
                out[i] = data[a - lo : b - lo]
            k = j
        return out

    def as_file(self) -> io.RawIOBase:
        return _LocalFile(self)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _LocalFile(SourceFile):
    """:class:`SourceFile` of a :class:`LocalSource`: ``preadv`` straight into the caller's buffer."""

    source: LocalSource

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), max(self.source.size - self._pos, 0))
        got = 0
        fd = self.source._fd
        while got < n:
            k = os.preadv(fd, [view[got:n]], self._pos + got)
            if k == 0:
                break
            got += k
        count_io(self.source.stats, 1, got)
        self._pos += got
        return got
