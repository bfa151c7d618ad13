"""One call, one file: a range or the size of ``url``, and a file object that owns its source.

For code that needs one thing from a file (a format sniff, a GRIB message, the size of a
``[url]`` kerchunk reference) without keeping a :class:`~virtualizarr.io.source.ByteSource`
open. Each call makes one request (or one ``pread``/``stat``) and goes through the same
retries, error translation and counting as :func:`~virtualizarr.io.open_source`.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
>>> _ = p.write_bytes(b"GRIB" + bytes(12))
>>> read_range(str(p), 0, 4), file_size(str(p))
(b'GRIB', 16)
"""

from __future__ import annotations

from virtualizarr.errors import SourceReadError
from virtualizarr.io.reader import read_local_ranges
from virtualizarr.io.source import (
    LocalSource,
    SourceFile,
    get_range_meta,
    open_source,
    stat_record,
)
from virtualizarr.manifests.manifest import normalize_path
from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["LocalFileReader", "ObstoreReader", "file_size", "open_reader", "read_range"]


class ObstoreReader(SourceFile):
    """A :class:`SourceFile` that closes its source when it is closed (see :func:`open_reader`)."""

    def close(self) -> None:
        if not self.closed:
            self.source.close()
        super().close()


class LocalFileReader(ObstoreReader):
    """:class:`ObstoreReader` of a local file (a :class:`~virtualizarr.io.source.LocalSource`)."""


def open_reader(
    url: str, registry: ObjectStoreRegistry | None = None, *, block_size: int | None = None
) -> ObstoreReader:
    """A seekable read-only file over ``url`` (for h5py, astropy, tifffile); ``block_size``
    is the read-ahead after a remote cache miss.

    >>> # with open_reader("s3://bucket/a.nc", registry) as f: h5py.File(f, "r")
    """
    options = {} if block_size is None else {"read_ahead": block_size}
    source = open_source(url, registry, **options)
    return LocalFileReader(source) if isinstance(source, LocalSource) else ObstoreReader(source)


def read_range(
    url: str, start: int, length: int, registry: ObjectStoreRegistry | None = None
) -> bytes:
    """``length`` bytes of ``url`` from ``start`` (fewer if the file ends first), in one request.

    Raises ``FileNotFoundError`` naming ``url`` when no file is there.
    """
    url = normalize_path(url)
    if length <= 0:  # obstore refuses an empty range
        return b""
    registry = registry if registry is not None else ObjectStoreRegistry()
    local = registry.local_path(url)
    if local is not None:
        try:
            return read_local_ranges(local, [start], [length])[0]
        except OSError as e:
            raise FileNotFoundError(f"Cannot read {url}: {type(e).__name__}: {e}") from e
    store, key = registry.resolve(url)
    try:
        data, first, _, _ = get_range_meta(store, key, url, start, start + length)
    except SourceReadError:
        # Stores refuse a range that starts at or past the end; that is an empty read.
        record = stat_record(url, registry)
        if record is not None and start >= record.size:
            return b""
        raise
    # a server that ignores Range answers with the whole object, from byte 0
    return bytes(data[start - first : start - first + length])


def file_size(url: str, registry: ObjectStoreRegistry | None = None) -> int:
    """Size in bytes of the file at ``url`` (a ``stat``, or one HEAD request).

    Raises ``FileNotFoundError`` naming ``url`` when no file is there (a directory included).
    """
    url = normalize_path(url)
    record = stat_record(url, registry)
    if record is None:
        raise FileNotFoundError(f"Cannot read {url}: no such file or object")
    return record.size
