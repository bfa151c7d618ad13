"""Zarr v2 ``.zarray`` and v3 ``zarr.json`` array documents -> virtual Zarr v3 metadata.

Each function returns the metadata of the virtual array (default ``/`` chunk key
encoding, since the ManifestStore addresses chunks by grid index) and how the *source*
store spells chunk keys: ``(prefix, separator, key of the single chunk of a 0-d array)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.core.common import JSON
from zarr.core.dtype import get_data_type_from_json
from zarr.core.metadata.v3 import ArrayV3Metadata

from virtualizarr.codecs.convert import v2_to_v3_codecs
from virtualizarr.errors import (
    CodecNotSupportedError,
    ParserError,
    UnsupportedFeatureError,
    VirtualiZarrError,
)
from virtualizarr.manifests.metadata import with_metadata

if TYPE_CHECKING:
    from virtualizarr.manifests import ManifestArray

__all__ = [
    "MAX_SPARSE_CHUNKS",
    "check_grid",
    "name_missing_dimensions",
    "v2_metadata",
    "v3_metadata",
]

KeyEncoding = tuple[str, str, str]
_DEFAULT_KEY_ENCODING: dict[str, JSON] = {"name": "default", "configuration": {"separator": "/"}}
_OBJECT_CODECS = ("vlen-utf8", "vlen-bytes")


MAX_SPARSE_CHUNKS = 1 << 22
"""Chunk grids up to this size are always accepted; bigger ones must be mostly stored."""


def check_grid(grid: tuple[int, ...], stored: int) -> int:
    """The number of chunks of ``grid``, refused when a manifest of it cannot be afforded.

    A manifest holds every grid position (about 20 bytes each), so a grid of 1e10 chunks
    of which a handful are stored (a corrupt or hostile shape) would allocate hundreds of
    GiB. Grids up to :data:`MAX_SPARSE_CHUNKS` chunks, or with at least 1 in 64 positions
    stored, are fine.

    >>> check_grid((100, 100), 0)
    10000
    """
    n = math.prod(grid)
    if n > max(MAX_SPARSE_CHUNKS, 64 * stored):
        raise ParserError(
            f"its chunk grid {list(grid)} has {n} chunk positions but only {stored} chunks are "
            f"stored; a manifest of that grid would need {n * 20 >> 30} GiB. The shape or chunk "
            "shape is corrupt, or the array too sparse to reference."
        )
    return n


def _dimension_names(attrs: dict[str, Any], ndim: int) -> list[str] | None:
    """Pop xarray's ``_ARRAY_DIMENSIONS`` from ``attrs`` when it is valid for ``ndim`` axes."""
    dims = attrs.get("_ARRAY_DIMENSIONS")
    if isinstance(dims, list) and len(dims) == ndim and all(isinstance(d, str) for d in dims):
        del attrs["_ARRAY_DIMENSIONS"]
        return dims
    return None


def v2_metadata(
    zarray: dict[str, Any], zattrs: dict[str, Any]
) -> tuple[ArrayV3Metadata, KeyEncoding, bool]:
    """Virtual v3 metadata for a v2 array, its key encoding, and whether fill_value is null.

    A null fill value leaves missing chunks undefined; the dtype's default (0, "", False)
    stands in, and the caller refuses arrays that have missing chunks. A numeric fill
    value also becomes the ``_FillValue`` attribute (unless there is one), because xarray
    masks a v2 array's fill_value as if it were ``_FillValue``.

    >>> m, enc, null = v2_metadata({"zarr_format": 2, "shape": [4], "chunks": [2],
    ...     "dtype": ">f4", "fill_value": "NaN", "order": "C", "filters": None,
    ...     "compressor": {"id": "zlib", "level": 1}}, {"_ARRAY_DIMENSIONS": ["x"]})
    >>> [c["name"] for c in m.to_dict()["codecs"]], m.dimension_names, enc
    (['bytes', 'numcodecs.zlib'], ('x',), ('', '.', '0'))
    >>> m.attributes
    {'_FillValue': nan}
    """
    if zarray.get("zarr_format") != 2:
        raise ParserError(f".zarray has zarr_format {zarray.get('zarr_format')!r}, expected 2.")
    try:
        shape = tuple(int(s) for s in zarray["shape"])
        chunks = tuple(int(c) for c in zarray["chunks"])
        dtype_json = zarray["dtype"]
    except (KeyError, TypeError, ValueError) as e:
        raise ParserError(f".zarray is missing or has an invalid shape/chunks/dtype: {e!r}") from e
    if len(chunks) != len(shape):
        raise ParserError(f".zarray chunks {list(chunks)} do not match shape {list(shape)}.")
    if any(s < 0 for s in shape) or any(c < 1 for c in chunks):
        raise ParserError(f".zarray shape {list(shape)} or chunks {list(chunks)} is negative or 0.")
    filters = zarray.get("filters") or []
    compressor = zarray.get("compressor")
    if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
        raise ParserError(f".zarray filters must be a list of codec objects, got {filters!r:.80}.")
    if compressor is not None and not isinstance(compressor, dict):
        raise ParserError(f".zarray compressor must be a codec object, got {compressor!r:.80}.")
    object_codec = None
    if dtype_json == "|O":
        object_codec = filters[0].get("id") if filters else None
        if object_codec not in _OBJECT_CODECS:
            raise UnsupportedFeatureError(
                f"object dtype encoded with {object_codec!r}: only vlen-utf8 and vlen-bytes object "
                "arrays have a Zarr v3 encoding (json2, pickle, msgpack, vlen-array do not)."
            )
    try:
        zdtype = get_data_type_from_json(
            {"name": dtype_json, "object_codec_id": object_codec}, zarr_format=2
        )
    except ValueError as e:
        raise UnsupportedFeatureError(
            f"data type {dtype_json!r} is not supported by zarr-python: {e}"
        ) from e
    native = np.dtype(zdtype.to_native_dtype())
    fill_json = zarray.get("fill_value")
    try:
        fill = (
            zdtype.default_scalar()
            if fill_json is None
            else zdtype.from_json_scalar(fill_json, zarr_format=2)
        )
    except (TypeError, ValueError) as e:
        raise ParserError(
            f"fill_value {fill_json!r} is not valid for dtype {dtype_json!r}: {e}"
        ) from e
    sep = zarray.get("dimension_separator") or "."
    if sep not in (".", "/"):
        raise ParserError(f".zarray dimension_separator must be '.' or '/', got {sep!r}.")
    if not isinstance(zattrs, dict):
        raise ParserError(f".zattrs must be a JSON object, got {type(zattrs).__name__}.")
    attrs = dict(zattrs)
    dims = _dimension_names(attrs, len(shape))
    try:
        codecs = v2_to_v3_codecs(
            dtype=native,
            filters=filters,
            compressor=compressor,
            order=zarray.get("order", "C"),
            ndim=len(shape),
        )
        if fill_json is not None and "_FillValue" not in attrs and native.kind in "iuf":
            # xarray reads a v2 fill_value as the CF _FillValue (and writes _FillValue only
            # there); v3 fill values are not masks, so keep that meaning as an attribute
            attrs["_FillValue"] = np.asarray(fill).item()
        meta = ArrayV3Metadata(
            shape=shape,
            data_type=zdtype,
            chunk_grid={"name": "regular", "configuration": {"chunk_shape": chunks}},
            chunk_key_encoding=_DEFAULT_KEY_ENCODING,
            fill_value=fill,
            codecs=codecs,
            attributes=attrs,
            dimension_names=dims,
        )
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
        # zarr-python's own checks of codecs/attributes; ours are VirtualiZarrErrors already
        if isinstance(e, VirtualiZarrError):
            raise
        raise ParserError(
            f".zarray cannot be made Zarr v3 metadata: {type(e).__name__}: {e}"
        ) from e
    return meta, ("", sep, "0"), fill_json is None


def _key_encoding(cke: Any) -> KeyEncoding:
    if isinstance(cke, str):
        cke = {"name": cke}
    name = cke.get("name") if isinstance(cke, dict) else None
    conf = (cke.get("configuration") or {}) if isinstance(cke, dict) else {}
    if name == "default":
        sep = conf.get("separator", "/")
        prefix, scalar = "c" + sep, "c"
    elif name == "v2":
        sep = conf.get("separator", ".")
        prefix, scalar = "", "0"
    else:
        raise UnsupportedFeatureError(f"chunk key encoding {cke!r} is not 'default' or 'v2'.")
    if sep not in (".", "/"):
        raise ParserError(f"chunk key separator must be '.' or '/', got {sep!r}.")
    return prefix, sep, scalar


def v3_metadata(doc: dict[str, Any]) -> tuple[ArrayV3Metadata, KeyEncoding]:
    """Virtual v3 metadata for a v3 array (its own codecs, data type, fill value...).

    >>> m, enc = v3_metadata({"zarr_format": 3, "node_type": "array", "shape": [4],
    ...     "data_type": "int16", "chunk_grid": {"name": "regular",
    ...     "configuration": {"chunk_shape": [2]}}, "chunk_key_encoding": {"name": "v2",
    ...     "configuration": {"separator": "/"}}, "fill_value": 0,
    ...     "codecs": [{"name": "bytes", "configuration": {"endian": "big"}}]})
    >>> m.chunk_key_encoding.to_dict()["name"], enc
    ('default', ('', '/', '0'))
    """
    if doc.get("storage_transformers"):
        raise UnsupportedFeatureError(
            f"storage transformers {doc['storage_transformers']!r} change where chunks live; "
            "they cannot be referenced."
        )
    grid = doc.get("chunk_grid")
    if not (isinstance(grid, dict) and grid.get("name") == "regular"):
        name = grid.get("name") if isinstance(grid, dict) else grid
        raise UnsupportedFeatureError(
            f"chunk grid {name!r} is not regular; only regular grids are supported."
        )
    enc = _key_encoding(doc.get("chunk_key_encoding", "default"))
    try:
        meta = ArrayV3Metadata.from_dict(
            {k: v for k, v in doc.items() if k != "storage_transformers"}
        )
    except ValueError as e:  # zarr raises ValueError subclasses for unknown codecs / data types
        raise CodecNotSupportedError(f"zarr-python cannot read this array's metadata: {e}") from e
    except (KeyError, TypeError) as e:
        raise ParserError(f"invalid zarr.json array metadata: {e!r}") from e
    return with_metadata(meta, chunk_key_encoding=_DEFAULT_KEY_ENCODING), enc


def name_missing_dimensions(arrays: dict[str, ManifestArray]) -> dict[str, ManifestArray]:
    """Arrays without dimension names (v2 without ``_ARRAY_DIMENSIONS``, v3 without
    ``dimension_names``) get netCDF-style ``phony_dim_<n>`` names, one per distinct length in
    the group (as netCDF-C names HDF5's unnamed dimensions), so xarray can open them."""
    from virtualizarr.manifests import ManifestArray

    lengths: dict[int, str] = {}
    out = {}
    for name, arr in arrays.items():
        dims = arr.metadata.dimension_names
        if dims is None or any(d is None for d in dims):
            names = [
                d if d is not None else lengths.setdefault(n, f"phony_dim_{len(lengths)}")
                for d, n in zip(dims or [None] * len(arr.shape), arr.shape)
            ]
            arr = ManifestArray(with_metadata(arr.metadata, dimension_names=names), arr.manifest)
        out[name] = arr
    return out
