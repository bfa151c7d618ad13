"""One HDF5 dataset -> one ManifestArray (or a skip warning, or an error naming it).

The storage layout decides the references: chunked datasets get one reference per
allocated chunk, contiguous ones a single reference covering the array, compact ones
(data inside the object header) an inlined chunk, unallocated ones no chunks at all
(they read as the fill value, as in HDF5).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.errors import CodecNotSupportedError, CorruptFileError, UnsupportedFeatureError
from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.manifest import MISSING
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.parsers.hdf5 import skip
from virtualizarr.parsers.hdf5_chunks import (
    ChunkIndex,
    chunk_grid_manifest,
    read_chunk_index,
    trimmed_chunk_shape,
)
from virtualizarr.parsers.hdf5_filters import UnsupportedFilter, codecs_for_filters, read_filters
from virtualizarr.parsers.hdf5_inline import encode_chunk, inline_chunk_shape, single_chunk_manifest
from virtualizarr.parsers.hdf5_netcdf import read_attributes
from virtualizarr.parsers.hdf5_types import TypeInfo, classify_dtype

if TYPE_CHECKING:
    import h5py
    from zarr.core.metadata.v3 import ArrayV3Metadata

    from virtualizarr.parsers.hdf5 import _Context

__all__ = ["build_array"]

# Chunks stored with a filter skipped are re-encoded and inlined up to this many bytes
# per array; beyond it the array is refused rather than bloating the manifest.
REENCODE_LIMIT = 16 * 1024 * 1024


def build_array(ctx: _Context, dset: h5py.Dataset, path: str, group: str) -> ManifestArray | None:
    """The virtual array of ``dset``, or None (with a warning) when it cannot be represented."""
    try:
        info = classify_dtype(dset)
        if info.kind == "skip":
            skip(ctx, path, info.reason)
            return None
        meta_kw = {
            "attributes": read_attributes(dset, f"{ctx.url}: variable {path!r}"),
            "dimension_names": ctx.namer.dimensions(dset, group),
        }
        if info.kind != "plain":
            return _inline_or_skip(ctx, dset, path, info, meta_kw, info.reason)
        return _referenced(ctx, dset, path, info, meta_kw)
    except OSError as e:
        raise CorruptFileError(
            f"{ctx.url}: cannot read the HDF5 metadata of variable {path!r} (the file may be "
            f"truncated or corrupt): {e}"
        ) from e


def _fill_value(dset: h5py.Dataset, dtype: np.dtype) -> Any:
    fv = dset.fillvalue
    if fv is None or dtype.kind not in "biufcS":
        return None
    return np.asarray(fv).astype(dtype).item()


def _referenced(
    ctx: _Context, dset: h5py.Dataset, path: str, info: TypeInfo, meta_kw: dict[str, Any]
) -> ManifestArray | None:
    from h5py import h5d

    dcpl = dset.id.get_create_plist()
    if dset.is_virtual:
        return _inline_or_skip(ctx, dset, path, info, meta_kw, "it is a virtual dataset (VDS)")
    if dcpl.get_external_count():
        return _inline_or_skip(ctx, dset, path, info, meta_kw, "its data is in external raw files")
    layout = dcpl.get_layout()
    if layout == h5d.COMPACT:  # data lives in the object header: at most 64 KiB
        return _inline(ctx, dset, path, info, meta_kw)
    if layout == h5d.CONTIGUOUS:
        return _contiguous(ctx, dset, path, info, meta_kw)
    if layout == h5d.CHUNKED:
        return _chunked(ctx, dset, path, info, meta_kw, dcpl)
    return _inline_or_skip(ctx, dset, path, info, meta_kw, f"unknown storage layout {layout}")


def _check_extent(ctx: _Context, path: str, manifest: ChunkManifest) -> None:
    present = manifest.path_ids != MISSING
    if not present.any():
        return
    ends = manifest.offsets[present] + manifest.lengths[present]
    end = int(ends.max())
    if end > ctx.file_size:
        raise CorruptFileError(
            f"{ctx.url}: variable {path!r} has chunks up to byte {end} but the file has only "
            f"{ctx.file_size} bytes: the file is truncated."
        )


def _contiguous(
    ctx: _Context, dset: h5py.Dataset, path: str, info: TypeInfo, meta_kw: dict[str, Any]
) -> ManifestArray:
    shape = tuple(int(s) for s in dset.shape)
    nbytes = math.prod(shape) * info.dtype.itemsize
    offset = dset.id.get_offset()  # None when no storage was ever allocated
    grid = tuple(1 if s else 0 for s in shape)
    present = offset is not None and nbytes > 0
    manifest = ChunkManifest.from_path_ids(
        table=[ctx.url],
        ids=np.full(grid, 0 if present else MISSING, dtype=np.uint32),
        offsets=np.full(grid, offset or 0, dtype=np.uint64),
        lengths=np.full(grid, nbytes, dtype=np.uint64),
    )
    _check_extent(ctx, path, manifest)
    metadata = create_v3_array_metadata(
        shape=shape,
        data_type=info.dtype,
        chunk_shape=inline_chunk_shape(shape),
        fill_value=_fill_value(dset, info.dtype),
        **meta_kw,
    )
    return ManifestArray(metadata, manifest)


def _chunked(
    ctx: _Context, dset: h5py.Dataset, path: str, info: TypeInfo, meta_kw: dict[str, Any], dcpl: Any
) -> ManifestArray | None:
    shape = tuple(int(s) for s in dset.shape)
    filters = read_filters(dcpl)
    try:
        codecs = codecs_for_filters(filters, info.dtype)
    except UnsupportedFilter as e:
        return _unsupported_filter(ctx, dset, path, info, meta_kw, e)
    index = read_chunk_index(dset.id, dset.ndim)
    masks = np.unique(index.masks)
    if len(masks) == 1 and masks[0]:  # every chunk skipped the same filters: drop them
        kept = [f for i, f in enumerate(filters) if not int(masks[0]) >> i & 1]
        codecs = codecs_for_filters(kept, info.dtype)
    chunk_shape, trimmed = trimmed_chunk_shape(shape, tuple(dset.chunks), raw=not codecs)
    lengths = None
    if not codecs:
        _check_raw_sizes(ctx, path, index, math.prod(dset.chunks) * info.dtype.itemsize)
        if trimmed:
            lengths = np.full(len(index), math.prod(chunk_shape) * info.dtype.itemsize, np.uint64)
    manifest = chunk_grid_manifest(index, ctx.url, shape, chunk_shape, lengths=lengths)
    _check_extent(ctx, path, manifest)
    metadata = create_v3_array_metadata(
        shape=shape,
        data_type=info.dtype,
        chunk_shape=chunk_shape,
        fill_value=_fill_value(dset, info.dtype),
        codecs=codecs,
        **meta_kw,
    )
    if len(masks) > 1:
        manifest = _reencode_skipped(ctx, dset, path, index, metadata, manifest, int(masks[0]))
    return ManifestArray(metadata, manifest)


def _check_raw_sizes(ctx: _Context, path: str, index: ChunkIndex, expected: int) -> None:
    if len(index) and not np.all(index.sizes == expected):
        raise CorruptFileError(
            f"{ctx.url}: variable {path!r} has unfiltered chunks of {sorted(set(index.sizes.tolist()))[:5]} "
            f"bytes, but a chunk holds {expected} bytes: the chunk index is inconsistent."
        )


def _reencode_skipped(
    ctx: _Context,
    dset: h5py.Dataset,
    path: str,
    index: ChunkIndex,
    metadata: ArrayV3Metadata,
    manifest: ChunkManifest,
    usual_mask: int,
) -> ChunkManifest:
    """Inline the chunks whose filter mask differs from the others, re-encoded.

    HDF5 stores a chunk unfiltered when an optional filter fails on it (LZF or blosc on
    incompressible data). Zarr has one codec chain per array, so those chunks are read
    with h5py and encoded with the array's chain.
    """
    odd = np.nonzero(index.masks != usual_mask)[0]
    chunks = tuple(int(c) for c in metadata.chunks)
    total = len(odd) * math.prod(chunks) * metadata.dtype.to_native_dtype().itemsize
    if total > REENCODE_LIMIT:
        raise UnsupportedFeatureError(
            f"{ctx.url}: variable {path!r} has {len(odd)} of {len(index)} chunks stored with "
            f"a filter skipped (filter mask differs), {total} bytes to re-encode, more than "
            f"{REENCODE_LIMIT}. Zarr needs one codec chain per array; leave the variable out "
            "with drop_variables or load it with h5py."
        )
    ids, offsets = manifest.path_ids.copy(), manifest.offsets.copy()
    lengths = manifest.lengths.copy()
    table: list[str | bytes] = list(manifest.table)
    fill = metadata.fill_value
    for i in odd:
        start = index.coords[i]
        if np.any(start >= np.asarray(dset.shape)):
            continue  # outside the current extent: not in the manifest
        sel = tuple(slice(int(s), min(int(s) + c, n)) for s, c, n in zip(start, chunks, dset.shape))
        values = np.full(chunks, fill, dtype=metadata.dtype.to_native_dtype())
        values[tuple(slice(0, s.stop - s.start) for s in sel)] = dset[sel]
        data = encode_chunk(metadata, values)
        grid_idx = tuple(int(s) // c for s, c in zip(start, chunks))
        ids[grid_idx], offsets[grid_idx], lengths[grid_idx] = len(table), 0, len(data)
        table.append(data)
    return ChunkManifest.from_path_ids(table=table, ids=ids, offsets=offsets, lengths=lengths)


def _unsupported_filter(
    ctx: _Context, dset: h5py.Dataset, path: str, info: TypeInfo, meta_kw: dict[str, Any], e: UnsupportedFilter
) -> ManifestArray:
    nbytes = dset.size * info.dtype.itemsize
    if nbytes <= ctx.parser.inline_threshold:
        try:
            return _inline(ctx, dset, path, info, meta_kw)
        except OSError as read_error:  # HDF5 itself lacks the filter
            cause = f"HDF5 cannot decode it either ({read_error})"
    else:
        cause = f"it holds {nbytes} bytes, more than inline_threshold={ctx.parser.inline_threshold}"
    raise CodecNotSupportedError(
        f"{ctx.url}: variable {path!r} uses the filter {e.filter.describe()}, which no Zarr "
        f"codec decodes ({e.reason}), and cannot be inlined: {cause}. Leave it out with "
        f"drop_variables=[{path!r}]."
    ) from e


def _inline_or_skip(
    ctx: _Context, dset: h5py.Dataset, path: str, info: TypeInfo, meta_kw: dict[str, Any], reason: str
) -> ManifestArray | None:
    per_item = 16 if info.kind == "vlen_str" else info.dtype.itemsize  # a guess for strings
    nbytes = dset.size * per_item
    if nbytes > ctx.parser.inline_threshold:
        skip(
            ctx,
            path,
            f"{reason} cannot be referenced, and at about {nbytes} bytes it is larger than "
            f"inline_threshold={ctx.parser.inline_threshold} (raise it to inline the values)",
        )
        return None
    return _inline(ctx, dset, path, info, meta_kw)


def _read_values(dset: h5py.Dataset, info: TypeInfo) -> np.ndarray:
    if info.kind == "vlen_str":
        values = dset.asstr(errors="replace")[()]
        return np.asarray(values, dtype=object).astype(info.dtype)
    return np.asarray(dset[()]).astype(info.dtype)


def _inline(
    ctx: _Context, dset: h5py.Dataset, path: str, info: TypeInfo, meta_kw: dict[str, Any]
) -> ManifestArray:
    """The whole array as one inlined chunk, values read (and decoded) by HDF5."""
    from zarr.codecs import BytesCodec, VLenUTF8Codec

    shape = tuple(int(s) for s in dset.shape)
    codecs: list[Any] = []
    if info.kind == "vlen_str":
        codecs = [VLenUTF8Codec()]
    elif info.kind == "compound":  # struct fields were made little-endian
        codecs = [BytesCodec(endian="little")]
        # xarray cannot decode a struct _FillValue and would refuse the whole dataset
        meta_kw = {**meta_kw, "attributes": {k: v for k, v in meta_kw["attributes"].items() if k != "_FillValue"}}
    fill = None if info.kind in ("vlen_str", "compound") else _fill_value(dset, info.dtype)
    metadata = create_v3_array_metadata(
        shape=shape,
        data_type=info.dtype,
        chunk_shape=inline_chunk_shape(shape),
        fill_value=fill,
        codecs=codecs,
        **meta_kw,
    )
    data = None
    if dset.size:
        values = _read_values(dset, info).reshape(inline_chunk_shape(shape))
        data = encode_chunk(metadata, values)
    return ManifestArray(metadata, single_chunk_manifest(shape, data))
