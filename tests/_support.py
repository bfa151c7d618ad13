"""Helpers shared by the test modules (parsers, writers)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    import h5py

    from tests.conftest import HTTPServer

__all__ = [
    "h5py_chunk_index",
    "h5py_codecs",
    "http_served",
    "in_memory",
    "parse",
    "parser_call",
    "referenced_chunks",
]


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


def h5py_codecs(d: h5py.Dataset) -> list[dict]:
    """The Zarr codecs of an HDF5 dataset written with at most shuffle and zlib (from h5py)."""
    if d.compression not in (None, "gzip"):
        raise NotImplementedError(f"{d.name}: {d.compression}")
    codecs = []
    if d.shuffle:
        codecs.append(
            {"name": "numcodecs.shuffle", "configuration": {"elementsize": d.dtype.itemsize}}
        )
    if d.compression == "gzip":
        codecs.append(
            {"name": "numcodecs.zlib", "configuration": {"level": int(d.compression_opts)}}
        )
    return codecs


def h5py_chunk_index(
    d: h5py.Dataset, shape: tuple[int, ...] | None = None
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]:
    """``(chunk shape, written, offsets, lengths)`` of an HDF5 dataset from h5py's own chunk
    index, on the chunk grid of ``shape`` (default the dataset's; netCDF's may be longer
    along an unlimited dimension). A contiguous dataset is one chunk; ``written`` is False
    where no chunk was ever stored.

    >>> # chunks, written, offsets, lengths = h5py_chunk_index(f["air"])
    """
    shape = d.shape if shape is None else shape
    chunks = d.chunks or shape
    grid = tuple(math.ceil(s / c) for s, c in zip(shape, chunks))
    written = np.zeros(grid, dtype=bool)
    offsets = np.zeros(grid, dtype=np.uint64)
    lengths = np.zeros(grid, dtype=np.uint64)
    if d.chunks is None:
        if d.id.get_offset() is not None:  # None: never written
            written[...], offsets[...], lengths[...] = (
                True,
                d.id.get_offset(),
                d.id.get_storage_size(),
            )
    else:
        for i in range(d.id.get_num_chunks()):
            info = d.id.get_chunk_info(i)
            idx = tuple(o // c for o, c in zip(info.chunk_offset, chunks))
            written[idx], offsets[idx], lengths[idx] = True, info.byte_offset, info.size
    return chunks, written, offsets, lengths


def referenced_chunks(store: ManifestStore, attribute: str) -> dict[tuple[int, int], np.ndarray]:
    """``(offset, length)`` of each chunk referenced by the arrays (in the store's groups)
    that carry ``attribute`` -> its values read through zarr, flattened.

    >>> # got = referenced_chunks(GRIBParser()(url, registry), "GRIB_paramId")
    """
    import zarr

    root = zarr.open_group(store, mode="r", zarr_format=3)
    out: dict[tuple[int, int], np.ndarray] = {}
    for gname, group in store.group.groups.items():
        for vname, arr in group.arrays.items():
            if attribute not in arr.metadata.attributes:
                continue
            values = root[f"{gname}/{vname}"][...]
            m = arr.manifest
            for idx in zip(*np.nonzero(~m.missing)):
                sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, arr.chunks))
                key = (int(m.offsets[idx]), int(m.lengths[idx]))
                assert key not in out, f"bytes {key} referenced twice"
                out[key] = values[sl].ravel()
    return out


def http_served(server: HTTPServer, path: Path) -> tuple[int, int]:
    """``(requests, bytes sent)`` for ``path`` by the loopback HTTP server so far.

    Every request counts (a HEAD too); a GET without ``Range`` sends the whole file and a
    range is clipped at the end of the file.

    >>> # assert http_served(http_server, served / "a.json") == (1, size)
    """
    name = "/" + path.relative_to(server.root).as_posix()
    size = path.stat().st_size
    requests = nbytes = 0
    for method, p, rng in server.requests:
        if p != name:
            continue
        requests += 1
        if method == "GET":
            first, _, last = (rng or f"bytes=0-{size - 1}").removeprefix("bytes=").partition("-")
            nbytes += max(0, min(int(last or size - 1), size - 1) - int(first) + 1)
    return requests, nbytes


def in_memory(path: Path, key: str) -> tuple[str, ObjectStoreRegistry]:
    """A copy of the file at ``memory://bucket/<key>`` in an obstore ``MemoryStore``, and a
    registry serving it: ``(url, registry)``.

    >>> # url, registry = in_memory(tmp_path / "a.tif", "dir/a.tif")
    """
    import obstore
    from obstore.store import MemoryStore

    mem = MemoryStore()
    obstore.put(mem, key, path.read_bytes())
    return f"memory://bucket/{key}", ObjectStoreRegistry({"memory://bucket": mem})
