"""The first I/O functions: byte ranges and a buffered file-like object (kept for parsers
not yet on :func:`virtualizarr.io.open_source`; their requests count in ``total_stats``).

Parsers read only metadata, so they need random access to small parts of a possibly
remote file. ``ObstoreReader`` gives libraries that want a file object (h5py, astropy,
tifffile) exactly that, with read-ahead so many small header reads cost few requests.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING

from virtualizarr.io.source import count_io, obstore_errors
from virtualizarr.manifests.manifest import normalize_path
from virtualizarr.registry import ObjectStoreRegistry

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = [
    "LocalFileReader",
    "ObstoreReader",
    "file_size",
    "open_reader",
    "read_local_ranges",
    "read_range",
]


def _not_found(url: str, e: BaseException) -> FileNotFoundError:
    return FileNotFoundError(f"Cannot read {url}: {type(e).__name__}: {e}")


class ObstoreReader(io.RawIOBase):
    """A seekable, read-only binary file over one object, with a read-ahead buffer.

    >>> # with ObstoreReader(store, "data/file.nc") as f: h5py.File(f, "r")
    """

    def __init__(
        self, store: ObjectStore, path: str, *, url: str | None = None, block_size: int = 1 << 20
    ) -> None:
        import obstore

        super().__init__()
        self._store, self._path, self.url = store, path, url or path
        try:
            self._size = int(obstore.head(store, path)["size"])
        except obstore_errors() as e:
            raise _not_found(self.url, e) from e
        count_io(None, 1, 0)
        self._pos = 0
        self._block = block_size
        self._buf_start = 0
        self._buf = b""

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _fill(self, start: int, n: int) -> None:
        length = min(max(n, self._block), self._size - start)
        if length <= 0:
            self._buf_start, self._buf = start, b""
            return
        self._buf = self._read_at(start, length)
        self._buf_start = start

    def _read_at(self, start: int, length: int) -> bytes:
        import obstore

        data = bytes(obstore.get_range(self._store, self._path, start=start, length=length))
        count_io(None, 1, len(data))
        return data

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        size = min(size, max(self._size - self._pos, 0))
        if size == 0:
            return b""
        lo = self._pos - self._buf_start
        if lo < 0 or lo + size > len(self._buf):
            self._fill(self._pos, size)
            lo = 0
        out = self._buf[lo : lo + size]
        self._pos += len(out)
        return out

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class LocalFileReader(ObstoreReader):
    """An :class:`ObstoreReader` over a local file: ``pread`` on one descriptor.

    For ``file://`` URLs served by the registry's own ``LocalStore``: each object-store
    call costs ~100x a ``pread`` of the same block, and a parser makes one per seek.

    >>> # with LocalFileReader("/data/file.nc", block_size=65536) as f: h5py.File(f, "r")
    """

    def __init__(self, path: str, *, url: str | None = None, block_size: int = 1 << 20) -> None:
        io.RawIOBase.__init__(self)
        self._store: ObjectStore | None = None  # type: ignore[assignment]  # pread, no store
        self._path, self.url = path, url or path
        self._fd = -1
        try:
            self._fd = os.open(path, os.O_RDONLY)
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(f"{path} is not a regular file")
        except OSError as e:
            self.close()
            raise _not_found(self.url, e) from e
        self._size = st.st_size
        self._pos = 0
        self._block = block_size
        self._buf_start = 0
        self._buf = b""

    def _read_at(self, start: int, length: int) -> bytes:
        return read_local_ranges_fd(self._fd, [start], [length])[0]

    # The OS page cache already buffers: each read is one pread, with no read-ahead copy.

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._pos
        size = min(size, max(self._size - self._pos, 0))
        if size <= 0:
            return b""
        data = read_local_ranges_fd(self._fd, [self._pos], [size])[0]
        self._pos += len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        n = min(len(view), max(self._size - self._pos, 0))
        got = 0
        while got < n:  # straight into the caller's buffer
            k = os.preadv(self._fd, [view[got:n]], self._pos + got)
            if k == 0:
                break
            got += k
        self._pos += got
        return got

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()


def open_reader(
    url: str, registry: ObjectStoreRegistry | None = None, **kwargs: object
) -> ObstoreReader:
    """A file-like reader of ``url`` through the registry's store for it."""
    url = normalize_path(url)
    registry = registry if registry is not None else ObjectStoreRegistry()
    local = registry.local_path(url)
    if local is not None:
        return LocalFileReader(local, url=url, **kwargs)  # type: ignore[arg-type]
    store, path = registry.resolve(url)
    return ObstoreReader(store, path, url=url, **kwargs)  # type: ignore[arg-type]


def read_range(
    url: str, start: int, length: int, registry: ObjectStoreRegistry | None = None
) -> bytes:
    """``length`` bytes of ``url`` from ``start`` (fewer if the file ends first)."""
    import obstore

    url = normalize_path(url)
    if length <= 0:  # obstore refuses an empty range
        return b""
    registry = registry if registry is not None else ObjectStoreRegistry()
    local = registry.local_path(url)
    if local is not None:
        try:
            return read_local_ranges(local, [start], [length])[0]
        except OSError as e:
            raise _not_found(url, e) from e
    store, path = registry.resolve(url)
    try:
        data = bytes(obstore.get_range(store, path, start=start, length=length))
        count_io(None, 1, len(data))
        return data
    except obstore_errors() as e:
        # Stores refuse a range that starts at or past the end; that is an empty read.
        try:
            past_end = start >= file_size(url, registry)
        except FileNotFoundError:
            past_end = False
        if past_end:
            return b""
        raise _not_found(url, e) from e


def file_size(url: str, registry: ObjectStoreRegistry | None = None) -> int:
    """Size in bytes of the object at ``url``."""
    import obstore

    url = normalize_path(url)
    registry = registry if registry is not None else ObjectStoreRegistry()
    local = registry.local_path(url)
    try:
        if local is not None:
            st = os.stat(local)
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(f"{local} is not a regular file")
            return st.st_size
        store, path = registry.resolve(url)
        size = int(obstore.head(store, path)["size"])
        count_io(None, 1, 0)
        return size
    except obstore_errors() as e:
        raise _not_found(url, e) from e


def read_local_ranges(path: str, starts: Sequence[int], lengths: Sequence[int]) -> list[bytes]:
    """Byte ranges of the local file ``path``, with one open and one ``pread`` per range.

    Each range may come back short where the file ends. A ``pread`` costs microseconds,
    against tens of microseconds for an object-store call that opens the file again.

    >>> # read_local_ranges("/data/a.nc", [0, 4096], [8, 100])
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_local_ranges_fd(fd, starts, lengths)
    finally:
        os.close(fd)


def read_local_ranges_fd(fd: int, starts: Sequence[int], lengths: Sequence[int]) -> list[bytes]:
    """:func:`read_local_ranges` on an open file descriptor."""
    out = []
    for start, length in zip(starts, lengths):
        data = os.pread(fd, length, start)
        if 0 < len(data) < length:  # one call returns at most ~2 GiB on Linux
            parts, got = [data], len(data)
            while got < length:
                more = os.pread(fd, length - got, start + got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        out.append(data)
    return out
