"""One HDF5 dataset -> one ManifestArray (or a skip warning, or an error naming it).

The storage layout decides the references: chunked datasets get one reference per
allocated chunk, contiguous ones a single reference covering the array, compact ones
(data inside the object header) an inlined chunk, unallocated ones no chunks at all
(they read as the fill value, as in HDF5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.conversion import single_chunk_manifest
from virtualizarr.errors import CodecNotSupportedError, CorruptFileError, UnsupportedFeatureError
from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.manifest import MISSING
from virtualizarr.manifests.metadata import create_v3_array_metadata, with_metadata
from virtualizarr.parsers.hdf5.chunks import chunk_grid_manifest, trimmed_chunk_shape
from virtualizarr.parsers.hdf5.context import ParseContext, skip
from virtualizarr.parsers.hdf5.dtypes import TypeInfo
from virtualizarr.parsers.hdf5.filters import UnsupportedFilter, codecs_for_filters
from virtualizarr.parsers.hdf5.inline import encode_chunk, inline_chunk_shape
from virtualizarr.parsers.hdf5.memo import BoundedCache
from virtualizarr.parsers.hdf5.netcdf import read_attributes
from virtualizarr.parsers.hdf5.nodes import DatasetNode, Storage

if TYPE_CHECKING:
    from zarr.core.metadata.v3 import ArrayV3Metadata


__all__ = ["REENCODE_LIMIT", "build_array"]

REENCODE_LIMIT = 16 * 1024 * 1024
"""Most bytes of chunks per array that are read, re-encoded and inlined (chunks stored with
a filter skipped, chunks straddling the end of a shorter netCDF record variable); beyond
it the array is refused rather than bloating the manifest."""


@dataclass
class _Var:
    """Everything known about one dataset while its array is built."""

    ctx: ParseContext
    dset: DatasetNode
    path: str
    info: TypeInfo
    shape: tuple[int, ...]
    """The array's shape: the netCDF shape (unlimited axes padded to the dimension)."""
    meta_kw: dict[str, Any]
    """``attributes`` and ``dimension_names`` for the metadata."""
    h5dtype: np.dtype
    """h5py's dtype of the dataset (``dset.dtype``)."""

    @property
    def dtype(self) -> np.dtype:
        """The Zarr array's dtype (``info.dtype``; only ``skip`` types have none, and
        ``build_array`` returns before making a ``_Var`` for those)."""
        assert self.info.dtype is not None, f"{self.where}: a skipped type has no dtype"
        return self.info.dtype

    @property
    def extent(self) -> tuple[int, ...]:
        """The HDF5 dataset's own shape."""
        return tuple(int(s) for s in self.dset.shape)

    @property
    def objects(self) -> Any:
        """The engine that answers for the dataset (h5py's or our reader's)."""
        return self.ctx.objects

    @property
    def where(self) -> str:
        return f"{self.ctx.url}: variable {self.path!r}"

    @cached_property
    def storage(self) -> Storage:
        """Layout, chunk shape, filters, address (the dataset's creation properties)."""
        return self.objects.storage(self.dset)

    @property
    def fillvalue(self) -> Any:
        """``dset.fillvalue``: HDF5's fill value as a scalar of h5py's dtype."""
        return self.objects.fill_value(self.dset, self.h5dtype)

    def fill_value(self) -> Any:
        fv = self.fillvalue
        if fv is None or self.info.kind not in ("plain", "convert"):
            return None
        if not isinstance(fv, np.generic):
            return np.asarray(fv).astype(self.dtype).item()
        key = (fv.dtype, fv.tobytes(), self.dtype)
        got = _FILLS.get(key, _FILLS)
        if got is _FILLS:  # the same few fill values in every array: convert each once
            got = _FILLS.put(key, np.asarray(fv).astype(self.dtype).item(), fv.nbytes)
        return got

    def metadata(
        self, chunk_shape: tuple[int, ...], codecs: list[Any], codec_key: Any = None
    ) -> ArrayV3Metadata:
        """The array's metadata. ``codec_key`` (hashable) says which ``codecs`` these are
        for this dtype (the filter pipeline); with it, metadata equal up to the shape,
        attributes and dimension names is made once and then copied with those changed."""
        fill = self.fill_value()
        key = None
        plain = self.dtype.metadata is None and not self.dtype.hasobject
        if codec_key is not None and plain and isinstance(fill, _SCALARS):
            # repr: NaN never equals itself, and -0.0 equals 0.0
            key = (self.dtype, tuple(chunk_shape), type(fill), repr(fill), codec_key)
            template = _TEMPLATES.get(key)
            if template is not None:
                return with_metadata(
                    template,
                    shape=self.shape,
                    attributes=self.meta_kw["attributes"],
                    dimension_names=self.meta_kw["dimension_names"],
                )
        meta = create_v3_array_metadata(
            shape=self.shape,
            data_type=self.dtype,
            chunk_shape=chunk_shape,
            fill_value=fill,
            codecs=codecs,
            **self.meta_kw,
        )
        if key is not None:
            if len(_TEMPLATES) >= 1024:
                _TEMPLATES.clear()
            _TEMPLATES[key] = meta
        return meta


_FILLS: BoundedCache[Any, Any] = BoundedCache(1024)
_SCALARS = (bool, int, float, str, bytes, type(None))
_TEMPLATES: dict[tuple[Any, ...], ArrayV3Metadata] = {}
"""Array metadata by dtype, chunk shape, fill value and filter pipeline: the datasets of
a file and the files of a collection repeat a few (zarr parses every field of a new one)."""


def build_array(
    ctx: ParseContext, dset: DatasetNode, path: str, group: str
) -> ManifestArray | None:
    """The virtual array of ``dset``, or None (with a warning) when it cannot be represented."""
    if dset.null:  # a scalar read back from no chunk would invent its fill value
        skip(ctx, path, "null dataspace: it holds no values")
        return None
    try:
        info, h5dtype = ctx.objects.classify(dset)
        if info.kind == "skip":
            skip(ctx, path, info.reason)
            return None
        dims = ctx.namer.dimensions(dset, group)
        attrs = read_attributes(ctx.objects.attrs(dset), f"{ctx.url}: variable {path!r}")
        if info.kind == "compound":  # xarray cannot decode a struct _FillValue: it would
            attrs.pop("_FillValue", None)  # refuse the whole dataset
        var = _Var(
            ctx, dset, path, info, ctx.namer.shape(dset, group, dims),
            {"attributes": attrs, "dimension_names": dims}, h5dtype,
        )  # fmt: skip
        if info.kind != "plain":
            return _inline_or_skip(var, info.reason)
        return _referenced(var)
    except OSError as e:
        raise CorruptFileError(
            f"{ctx.url}: cannot read the HDF5 metadata of variable {path!r} (the file may be "
            f"truncated or corrupt): {e}"
        ) from e


def _referenced(var: _Var) -> ManifestArray | None:
    storage = var.storage
    layout = storage.layout
    if layout == "virtual":
        return _inline_or_skip(var, "it is a virtual dataset (VDS)")
    if storage.external:
        return _inline_or_skip(var, "its data is in external raw files")
    if layout == "compact":  # data lives in the object header: at most 64 KiB
        return _inline(var)
    if layout == "contiguous":
        return _contiguous(var)
    if layout == "chunked":
        return _chunked(var, storage)
    return _inline_or_skip(var, f"its storage layout ({layout}) is unknown")


def _check_extent(var: _Var, manifest: ChunkManifest) -> None:
    present = manifest.path_ids == 0  # id 0 is the file itself
    if not present.any():
        return
    end = int((manifest.offsets[present] + manifest.lengths[present]).max())
    if end > var.ctx.file_size:
        raise CorruptFileError(
            f"{var.where} has chunks up to byte {end} but the file has only "
            f"{var.ctx.file_size} bytes: the file is truncated."
        )


def _contiguous(var: _Var) -> ManifestArray:
    nbytes = math.prod(var.shape) * var.dtype.itemsize
    offset = var.storage.offset  # None when no storage was ever allocated
    grid = tuple(1 if s else 0 for s in var.shape)
    if nbytes == 0 or not all(grid):
        offset = None  # nothing stored: no chunk
    if offset is not None and offset + nbytes > var.ctx.file_size:
        raise CorruptFileError(
            f"{var.where} has chunks up to byte {offset + nbytes} but the file has only "
            f"{var.ctx.file_size} bytes: the file is truncated."
        )
    # one chunk (or none for a zero-length axis), built without from_path_ids' checks:
    # a file of thousands of small datasets makes one per dataset
    manifest = ChunkManifest.one_chunk(var.ctx.url, offset, nbytes, grid)
    # the url is normalized by the parser
    return ManifestArray(var.metadata(inline_chunk_shape(var.shape), [], codec_key=()), manifest)


def _chunked(var: _Var, storage: Storage) -> ManifestArray | None:
    dtype, chunks = var.dtype, tuple(storage.chunks or ())
    filters = storage.filters
    try:
        codecs = _codecs(filters, dtype)
    except UnsupportedFilter as e:
        return _unsupported_filter(var, e)
    index = var.objects.chunk_index(var.dset)
    if len(index) and int((index.addresses + index.sizes).max()) > var.ctx.file_size:
        raise CorruptFileError(
            f"{var.where} has chunks up to byte {int((index.addresses + index.sizes).max())} "
            f"but the file has only {var.ctx.file_size} bytes: the file is truncated."
        )
    masks = np.unique(index.masks) if index.masks.any() else np.zeros(1, np.uint32)
    kept = filters
    if len(masks) == 1 and masks[0]:  # every chunk skipped the same filters: drop them
        kept = [f for i, f in enumerate(filters) if not int(masks[0]) >> i & 1]
        codecs = _codecs(kept, dtype)
    chunk_shape, trimmed = trimmed_chunk_shape(var.shape, chunks, raw=not codecs)
    lengths = None
    if not codecs:
        full = math.prod(chunks) * dtype.itemsize
        if len(index) and not np.all(index.sizes == full):
            raise CorruptFileError(
                f"{var.where} has unfiltered chunks of {sorted(set(index.sizes.tolist()))[:5]} "
                f"bytes, but a chunk holds {full} bytes: the chunk index is inconsistent."
            )
        if trimmed:
            lengths = np.full(len(index), math.prod(chunk_shape) * dtype.itemsize, np.uint64)
    _check_grid(var, chunk_shape, len(index))
    manifest = chunk_grid_manifest(index, var.ctx.url, var.shape, chunk_shape, lengths=lengths)
    # the codecs follow from the kept filters and the dtype alone
    metadata = var.metadata(chunk_shape, codecs, codec_key=("filters", *kept))
    redo = _straddling_chunks(var, chunk_shape, manifest)
    if len(masks) > 1:  # some chunks skipped a filter the others went through
        odd = index.coords[index.masks != masks[0]] // np.asarray(chunk_shape)
        inside = np.all(odd < np.asarray(manifest.shape_chunk_grid), axis=1)
        redo |= {tuple(int(i) for i in idx) for idx in odd[inside]}
    if redo:
        manifest = _reencode(var, metadata, manifest, sorted(redo))
    return ManifestArray(metadata, manifest)


_CODECS: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def _codecs(filters: list[Any], dtype: np.dtype) -> list[Any]:
    """``codecs_for_filters``, made once per pipeline and dtype (the datasets of a file and
    the files of a collection repeat a few); zarr's codec objects are immutable, codec
    dicts are handed out as copies."""
    key = (dtype, *filters)
    got = _CODECS.get(key)
    if got is None or dtype.metadata is not None:
        got = tuple(codecs_for_filters(filters, dtype))
        if len(_CODECS) >= 1024:
            _CODECS.clear()
        _CODECS[key] = got
    return [
        {k: dict(v) if isinstance(v, dict) else v for k, v in c.items()}
        if isinstance(c, dict)
        else c
        for c in got
    ]


def _check_grid(var: _Var, chunk_shape: tuple[int, ...], stored: int) -> None:
    """Refuse a chunk grid whose manifest cannot be afforded (a corrupt shape or chunk shape):
    a manifest holds every grid position, about 20 bytes each."""
    from virtualizarr.parsers.zarr_v2.meta import MAX_SPARSE_CHUNKS

    if any(c <= 0 for c in chunk_shape):
        raise CorruptFileError(f"{var.where} has the chunk shape {list(chunk_shape)}.")
    n = math.prod(-(-s // c) for s, c in zip(var.shape, chunk_shape))
    if n > max(MAX_SPARSE_CHUNKS, 64 * stored):
        raise CorruptFileError(
            f"{var.where}: its chunk grid for shape {list(var.shape)} and chunks "
            f"{list(chunk_shape)} has {n} positions but only {stored} chunks are stored; the "
            "shape is corrupt, or the variable too sparse to reference."
        )


def _straddling_chunks(
    var: _Var, chunks: tuple[int, ...], manifest: ChunkManifest
) -> set[tuple[int, ...]]:
    """Chunks holding both values and padding of a variable shorter than its unlimited dim.

    The part past the HDF5 extent must read as the fill value, whatever bytes HDF5 left
    in the chunk there, so these chunks are re-encoded from their values.
    """
    out: set[tuple[int, ...]] = set()
    present = manifest.path_ids != MISSING
    for axis, (n, size, c) in enumerate(zip(var.extent, var.shape, chunks)):
        if size > n and n % c:
            sel: list[Any] = [slice(None)] * len(chunks)
            sel[axis] = n // c
            idx = np.argwhere(present[tuple(sel)])
            out |= {tuple(int(i) for i in np.insert(row, axis, n // c)) for row in idx}
    return out


def _reencode(
    var: _Var, metadata: ArrayV3Metadata, manifest: ChunkManifest, grid_idx: list[tuple[int, ...]]
) -> ChunkManifest:
    """Replace chunks by inlined ones re-encoded from the values h5py reads.

    Zarr has one codec chain per array, so chunks stored differently (HDF5 skips an
    optional filter that fails on a chunk, e.g. LZF or blosc on incompressible data) or
    holding bytes past the HDF5 extent are read, padded with the fill value and encoded
    with the array's chain.
    """
    chunks = tuple(int(c) for c in metadata.chunks)
    dtype = metadata.dtype.to_native_dtype()
    total = len(grid_idx) * math.prod(chunks) * dtype.itemsize
    if total > REENCODE_LIMIT:
        raise UnsupportedFeatureError(
            f"{var.where}: {len(grid_idx)} chunks are stored with a filter skipped (their filter "
            f"mask differs) or straddle the end of the variable; re-encoding them means inlining "
            f"{total} bytes, more than {REENCODE_LIMIT}. Zarr needs one codec chain per array: "
            "leave the variable out with drop_variables or load it with h5py."
        )
    ids, offsets, lengths = (
        a.copy() for a in (manifest.path_ids, manifest.offsets, manifest.lengths)
    )
    table: list[str | bytes] = list(manifest.table)
    for idx in grid_idx:
        start = [i * c for i, c in zip(idx, chunks)]
        sel = tuple(slice(s, min(s + c, n)) for s, c, n in zip(start, chunks, var.extent))
        if any(s.start >= s.stop for s in sel):  # wholly past the extent: all fill
            ids[idx] = MISSING
            continue
        values = np.full(chunks, metadata.fill_value, dtype=dtype)
        try:
            values[tuple(slice(0, s.stop - s.start) for s in sel)] = var.objects.read(var.dset, sel)
        except OSError as e:  # the filter is in the pipeline but HDF5 has no plugin for it
            raise CodecNotSupportedError(
                f"{var.where}: chunk {list(idx)} must be re-encoded from its values, but HDF5 "
                f"cannot decode it ({e}). Is the filter plugin installed (hdf5plugin)?"
            ) from e
        data = encode_chunk(metadata, values)
        ids[idx], offsets[idx], lengths[idx] = len(table), 0, len(data)
        table.append(data)
    return ChunkManifest.from_path_ids(table=table, ids=ids, offsets=offsets, lengths=lengths)


def _unsupported_filter(var: _Var, e: UnsupportedFilter) -> ManifestArray:
    nbytes = math.prod(var.shape) * var.dtype.itemsize
    threshold = var.ctx.parser.inline_threshold
    if nbytes <= threshold:
        try:
            return _inline(var)
        except OSError as read_error:  # HDF5 itself lacks the filter
            cause = f"HDF5 cannot decode it either ({read_error})"
    else:
        cause = f"it holds {nbytes} bytes, more than inline_threshold={threshold}"
    raise CodecNotSupportedError(
        f"{var.where} uses the filter {e.filter.describe()}, which no Zarr codec decodes "
        f"({e.reason}), and cannot be inlined: {cause}. Leave it out with "
        f"drop_variables=[{var.path!r}]."
    ) from e


def _inline_or_skip(var: _Var, reason: str) -> ManifestArray | None:
    per_item = 16 if var.info.kind == "vlen_str" else var.dtype.itemsize  # strings: a guess
    nbytes = math.prod(var.shape) * per_item
    threshold = var.ctx.parser.inline_threshold
    if nbytes > threshold:
        skip(
            var.ctx,
            var.path,
            f"{reason} cannot be referenced, and at about {nbytes} bytes it is larger than "
            f"inline_threshold={threshold} (raise it to inline the values)",
        )
        return None
    return _inline(var)


def _read_values(var: _Var) -> np.ndarray:
    """The values as HDF5 decodes them, padded with the fill value to the netCDF shape."""
    if var.info.kind == "vlen_str":
        values = var.objects.read_strings(var.dset).astype(var.dtype)
        fill: Any = ""
    else:
        values = var.objects.read(var.dset, ()).astype(var.dtype)
        fill = var.fill_value()
    if values.shape != var.shape:
        padded = np.full(var.shape, fill if fill is not None else 0, dtype=var.dtype)
        padded[tuple(slice(0, n) for n in values.shape)] = values
        values = padded
    return values


def _inline(var: _Var) -> ManifestArray:
    """The whole array as one inlined chunk, values read (and decoded) by HDF5."""
    from zarr.codecs import BytesCodec, VLenUTF8Codec

    codecs: list[Any] = []
    if var.info.kind == "vlen_str":
        codecs = [VLenUTF8Codec()]
    elif var.info.kind == "compound":  # struct fields were made little-endian
        codecs = [BytesCodec(endian="little")]
    chunk_shape = inline_chunk_shape(var.shape)
    metadata = var.metadata(chunk_shape, codecs)
    data = None
    if math.prod(var.shape):
        data = encode_chunk(metadata, _read_values(var).reshape(chunk_shape))
    return ManifestArray(metadata, single_chunk_manifest(var.shape, data))
