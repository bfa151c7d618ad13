"""The parquet layout of kerchunk references, as fsspec's ``LazyReferenceMapper`` reads it.

A directory holding ``.zmetadata`` (JSON: ``{"metadata": {key: document}, "record_size": N}``)
and, per array, ``<array>/refs.<i>.parq`` files. Row ``r`` of file ``i`` is the chunk whose
C-order number in the chunk grid is ``i * N + r``, with columns ``path`` (URL, null for
inlined and missing chunks), ``offset``, ``size`` (int64) and ``raw`` (inlined bytes, null
otherwise). A chunk with neither path nor raw is missing (reads as the fill value).

Files are written into a temporary sibling directory that replaces the target at the end.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.errors import WriterError
from virtualizarr.manifests.manifest import MISSING
from virtualizarr.writers.output import is_remote, local_path, put_object, temp_name

if TYPE_CHECKING:
    import pyarrow as pa

    from virtualizarr.manifests import ChunkManifest
    from virtualizarr.registry import ObjectStoreRegistry

    # kerchunk.py calls this module, so its array type is only named here
    from virtualizarr.writers.kerchunk import V2Array

__all__ = ["parquet_records", "write_parquet"]


def _schema(categorical: bool) -> pa.Schema:
    import pyarrow as pa

    path_type = pa.dictionary(pa.int32(), pa.string()) if categorical else pa.string()
    return pa.schema(
        [
            pa.field("path", path_type),
            # required ints with statistics: fastparquet (fsspec's default engine) then reads
            # int64, not float64, and the offsets it hands to fsspec stay exact integers
            pa.field("offset", pa.int64(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("raw", pa.binary()),
        ]
    )


def _lookup(table: tuple[str | bytes, ...], kind: type) -> tuple[np.ndarray, list[Any]]:
    """Map table ids to indices into the entries of one kind (-1 elsewhere and for MISSING)."""
    entries = [t for t in table if isinstance(t, kind)]
    remap = np.full(len(table) + 1, -1, dtype=np.int64)
    j = 0
    for i, t in enumerate(table):
        if isinstance(t, kind):
            remap[i] = j
            j += 1
    return remap, entries


def parquet_records(
    m: ChunkManifest, record_size: int, categorical_threshold: int
) -> Iterator[tuple[int, bytes]]:
    """``(record number, parquet file bytes)`` for one array's chunk manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = np.minimum(m.path_ids.ravel(), len(m.table)).astype(np.int64)
    ids[m.path_ids.ravel() == MISSING] = len(m.table)
    offsets = m.offsets.ravel().astype(np.int64)
    sizes = m.lengths.ravel().astype(np.int64)
    path_of, urls = _lookup(m.table, str)
    raw_of, raws = _lookup(m.table, bytes)
    url_dict = pa.array(urls, type=pa.string())
    raw_dict = pa.array(raws, type=pa.binary())
    n = ids.size
    for rec in range(math.ceil(n / record_size)):
        sl = slice(rec * record_size, min(n, (rec + 1) * record_size))
        pidx, ridx = path_of[ids[sl]], raw_of[ids[sl]]
        n_paths = int((pidx >= 0).sum())
        categorical = n_paths / (len(np.unique(pidx[pidx >= 0])) or 1) > categorical_threshold
        path = pa.DictionaryArray.from_arrays(
            pa.array(pidx.astype(np.int32), mask=pidx < 0), url_dict
        )
        raw = pa.DictionaryArray.from_arrays(
            pa.array(ridx.astype(np.int32), mask=ridx < 0), raw_dict
        )
        is_ref = pidx >= 0
        table = pa.Table.from_arrays(
            [
                path if categorical else path.dictionary_decode(),
                pa.array(np.where(is_ref, offsets[sl], 0)),
                pa.array(np.where(is_ref, sizes[sl], 0)),
                raw.dictionary_decode(),
            ],
            schema=_schema(categorical),
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd", write_statistics=["offset", "size"])
        yield rec, buf.getvalue()


def _parts(
    items: Iterator[tuple[str, dict[str, Any]] | V2Array],
    record_size: int,
    categorical_threshold: int,
    sources: dict[str, Any] | None = None,
) -> Iterator[tuple[str, bytes]]:
    """``(relative path, bytes)`` of every file of the layout, ``.zmetadata`` last."""
    import json

    meta: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, tuple):  # a V2Array; groups come as (path, attrs)
            meta[f"{item.path}/.zarray"] = item.zarray
            meta[f"{item.path}/.zattrs"] = item.zattrs
            for rec, data in parquet_records(item.manifest, record_size, categorical_threshold):
                yield f"{item.path}/refs.{rec}.parq", data
        else:
            path, attrs = item
            pre = f"{path}/" if path else ""
            meta[f"{pre}.zgroup"] = {"zarr_format": 2}
            meta[f"{pre}.zattrs"] = attrs
    doc: dict[str, Any] = {"metadata": meta, "record_size": record_size}
    if sources:  # readers ignore keys they do not know; `virtualizarr verify` reads this one
        doc["virtualizarr"] = {"sources": sources}
    yield ".zmetadata", json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()


def write_parquet(
    items: Iterator[tuple[str, dict[str, Any]] | V2Array],
    filepath: str | os.PathLike[str],
    registry: ObjectStoreRegistry | None,
    record_size: int,
    categorical_threshold: int,
    sources: dict[str, Any] | None = None,
) -> None:
    """Write the parquet reference directory at ``filepath`` (local path or URL)."""
    target = os.fspath(filepath)
    parts = _parts(items, record_size, categorical_threshold, sources)
    if is_remote(target):
        _write_remote(parts, target.rstrip("/"), registry)
        return
    path = local_path(target)
    tmp = temp_name(path)
    try:
        for rel, data in parts:
            dest = os.path.join(tmp, *rel.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: str, path: str) -> None:
    """Move the finished directory ``tmp`` to ``path``, replacing what is there."""
    if os.path.isfile(path):
        raise WriterError(f"{path} is a file; parquet references are a directory.")
    old = None
    if os.path.exists(path):
        old = f"{temp_name(path)}.old"
        os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        if old is not None:
            os.rename(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_remote(
    parts: Iterator[tuple[str, bytes]], url: str, registry: ObjectStoreRegistry | None
) -> None:
    """Object stores cannot rename a prefix: stage everything under a temporary prefix, then
    copy it into place (``.zmetadata`` last) and drop stale objects.

    A failure while staging leaves the previous references untouched; only the final copy
    (server-side, one request per file) can interleave old and new files.
    """
    from virtualizarr.io.objects import copy_object, delete_objects, list_objects
    from virtualizarr.registry import ObjectStoreRegistry

    registry = registry or ObjectStoreRegistry()
    staging = f"{url}.tmp-{uuid.uuid4().hex[:12]}"
    written: list[str] = []
    try:
        for rel, data in parts:
            put_object(f"{staging}/{rel}", data, registry)
            written.append(rel)
        try:
            old, _ = list_objects(url, registry)
            for rel in written:  # .zmetadata last: a new set is announced once its files exist
                copy_object(f"{staging}/{rel}", f"{url}/{rel}", registry)
            stale = set(old) - set(written)
            if stale:
                delete_objects([f"{url}/{rel}" for rel in sorted(stale)], registry)
        except OSError as e:  # names the URL (virtualizarr.io translates obstore's errors)
            raise WriterError(str(e)) from e
    finally:
        if written:
            delete_objects([f"{staging}/{rel}" for rel in written], registry)
