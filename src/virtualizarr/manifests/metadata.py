"""Building and comparing the Zarr v3 array metadata that a ManifestArray carries."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from zarr.abc.codec import ArrayArrayCodec, ArrayBytesCodec
from zarr.codecs import BytesCodec
from zarr.core.common import parse_shapelike
from zarr.core.dtype import get_data_type_from_native_dtype
from zarr.core.metadata.common import parse_attributes
from zarr.core.metadata.v3 import ArrayV3Metadata, parse_dimension_names
from zarr.registry import get_codec_class

from virtualizarr.errors import InvalidManifestError

__all__ = [
    "to_json_safe",
    "create_v3_array_metadata",
    "fill_values_equal",
    "parse_codecs",
    "with_metadata",
]


def _codec_from_dict(c: dict[str, Any]) -> Any:
    name = c["name"]
    cls = get_codec_class(name)
    return cls.from_dict(c)


def parse_codecs(codecs: Iterable[Any] | None, dtype: np.dtype) -> list[Any]:
    """Turn codec dicts/objects into zarr codec objects, adding the array->bytes step.

    The ``bytes`` codec carries the endianness of ``dtype`` so big-endian files are
    referenced as they are stored.
    """
    parsed = [c if not isinstance(c, dict) else _codec_from_dict(c) for c in codecs or ()]
    if not any(isinstance(c, ArrayBytesCodec) for c in parsed):
        # array->array codecs (transpose, delta...) come before the serializer
        n_aa = 0
        while n_aa < len(parsed) and isinstance(parsed[n_aa], ArrayArrayCodec):
            n_aa += 1
        parsed.insert(n_aa, bytes_codec_for(dtype))
    return parsed


def bytes_codec_for(dtype: np.dtype) -> BytesCodec:
    """The ``bytes`` serializer for a numpy dtype, with its byte order."""
    dtype = np.dtype(dtype)
    if dtype.itemsize <= 1 or dtype.kind in "SV":
        return BytesCodec(endian=None)
    order = dtype.byteorder
    if order == "=":
        order = "<" if np.little_endian else ">"
    return BytesCodec(endian="big" if order == ">" else "little")


def create_v3_array_metadata(
    *,
    shape: Sequence[int],
    data_type: np.dtype | str,
    chunk_shape: Sequence[int],
    fill_value: Any = None,
    codecs: Iterable[Any] | None = None,
    attributes: dict[str, Any] | None = None,
    dimension_names: Sequence[str | None] | None = None,
) -> ArrayV3Metadata:
    """Zarr v3 metadata for a virtual array with a regular chunk grid.

    ``codecs`` are what comes after (or before, for array->array codecs) the ``bytes``
    serializer, which is added with the byte order of ``data_type`` when absent.
    ``fill_value=None`` is the dtype's default (0, empty string...).

    >>> m = create_v3_array_metadata(shape=(4,), data_type=">i2", chunk_shape=(2,),
    ...     codecs=[{"name": "numcodecs.zlib", "configuration": {"level": 1}}])
    >>> [c["name"] for c in m.to_dict()["codecs"]]
    ['bytes', 'numcodecs.zlib']
    """
    dtype = np.dtype(data_type)
    shape = tuple(int(s) for s in shape)
    chunk_shape = tuple(int(c) for c in chunk_shape)
    if len(chunk_shape) != len(shape):
        raise InvalidManifestError(f"chunk shape {chunk_shape} does not match array shape {shape}.")
    names = tuple(dimension_names) if dimension_names is not None else None
    codecs = list(codecs or ())
    key = _template_key(dtype, chunk_shape, fill_value, codecs)
    template = _TEMPLATES.get(key) if key is not None else None
    if template is not None:
        # Same dtype, chunks, fill value and codecs as an array made before (every file of
        # a collection repeats its variables): only shape, attributes and names differ.
        return _replaced(
            template, shape=shape, attributes=dict(attributes or {}), dimension_names=names
        )
    zdtype = _zdtype(dtype) if _cacheable(dtype) else get_data_type_from_native_dtype(dtype)
    if fill_value is None:
        fill_value = zdtype.default_scalar()
    elif isinstance(fill_value, np.ndarray):
        fill_value = fill_value.reshape(()).item() if fill_value.size == 1 else fill_value
    meta = ArrayV3Metadata(
        shape=shape,
        data_type=zdtype,
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": chunk_shape}},
        chunk_key_encoding={"name": "default", "configuration": {"separator": "/"}},
        fill_value=fill_value,
        codecs=parse_codecs(codecs, dtype),
        attributes=dict(attributes or {}),
        dimension_names=names,
    )
    if key is not None:
        if len(_TEMPLATES) >= _TEMPLATE_CACHE_SIZE:
            _TEMPLATES.clear()
        _TEMPLATES[key] = meta
    return meta


# -- construction shortcuts: zarr parses and validates every field of ArrayV3Metadata, which
# costs ~150 us per array (~1 ms per file), most of it looking up the dtype and evolving
# the codecs. Both depend only on the dtype, chunk grid and codecs, not on the shape.

_TEMPLATE_CACHE_SIZE = 1024
_TEMPLATES: dict[tuple[Any, ...], ArrayV3Metadata] = {}


def _cacheable(dtype: np.dtype) -> bool:
    # dtypes that differ only in metadata (h5py's vlen-string object dtype) compare and
    # hash equal, but zarr maps them differently
    return dtype.metadata is None and not dtype.hasobject


@functools.lru_cache(maxsize=512)
def _zdtype(dtype: np.dtype) -> Any:
    return get_data_type_from_native_dtype(dtype)


def _template_key(
    dtype: np.dtype, chunk_shape: tuple[int, ...], fill_value: Any, codecs: list[Any]
) -> tuple[Any, ...] | None:
    """A key that equal metadata templates share, or None when none can be made safely."""
    if not _cacheable(dtype):
        return None
    if fill_value is not None and not (
        isinstance(fill_value, (bool, int, float, str, bytes))
        or (isinstance(fill_value, np.generic) and fill_value.dtype.kind in "biufcmMSU")
    ):
        return None  # arrays and records: repr may abbreviate them
    try:
        spelled = json.dumps(
            [c if isinstance(c, dict) else c.to_dict() for c in codecs], sort_keys=True
        )
    except (TypeError, ValueError, AttributeError):
        return None
    fill = None if fill_value is None else (type(fill_value).__name__, repr(fill_value))
    return (dtype, chunk_shape, fill, spelled)


def _replaced(metadata: ArrayV3Metadata, **changes: Any) -> ArrayV3Metadata:
    """``metadata`` with ``shape``/``attributes``/``dimension_names`` replaced, without
    re-evolving its codecs (which depend on the dtype and number of dimensions only).
    zarr's own final checks still run."""
    if not hasattr(metadata, "__dict__"):  # a zarr whose metadata has another layout
        return _rebuilt(metadata, changes)
    new = object.__new__(ArrayV3Metadata)
    fields = dict(metadata.__dict__)
    fields.pop("_stored_document", None)  # describes the document the original was read from
    new.__dict__.update(fields)
    if "shape" in changes:
        object.__setattr__(new, "shape", parse_shapelike(changes["shape"]))
    if "attributes" in changes:
        object.__setattr__(new, "attributes", parse_attributes(changes["attributes"]))
    if "dimension_names" in changes:
        names = parse_dimension_names(changes["dimension_names"])
        object.__setattr__(new, "dimension_names", names)
    new._validate_metadata()
    return new


_DOC_TEMPLATES: dict[str, ArrayV3Metadata] = {}
_PER_ARRAY_KEYS = ("shape", "attributes", "dimension_names")


def metadata_from_dict(doc: dict[str, Any]) -> ArrayV3Metadata:
    """``ArrayV3Metadata.from_dict``, parsing each distinct document once up to its
    shape, attributes and dimension names (unpickling a dataset per file repeats them).

    >>> m = create_v3_array_metadata(shape=(4,), data_type="<f4", chunk_shape=(2,))
    >>> metadata_from_dict({**m.to_dict(), "shape": (6,)}).shape
    (6,)
    """
    rest = {k: v for k, v in doc.items() if k not in _PER_ARRAY_KEYS}
    try:
        key = json.dumps(rest, sort_keys=True)
    except (TypeError, ValueError):
        return ArrayV3Metadata.from_dict(doc)
    template = _DOC_TEMPLATES.get(key)
    if template is None:
        meta = ArrayV3Metadata.from_dict(doc)
        if len(_DOC_TEMPLATES) >= _TEMPLATE_CACHE_SIZE:
            _DOC_TEMPLATES.clear()
        _DOC_TEMPLATES[key] = meta
        return meta
    if len(doc["shape"]) != len(template.shape):
        return ArrayV3Metadata.from_dict(doc)
    return _replaced(
        template,
        shape=doc["shape"],
        attributes=doc.get("attributes"),
        dimension_names=doc.get("dimension_names"),
    )


def _rebuilt(metadata: ArrayV3Metadata, changes: dict[str, Any]) -> ArrayV3Metadata:
    """A new ArrayV3Metadata (fully parsed by zarr) from ``metadata`` and ``changes``."""
    d = {
        "shape": metadata.shape,
        "data_type": metadata.data_type,
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": chunk_shape_of(metadata)},
        },
        "chunk_key_encoding": metadata.chunk_key_encoding,
        "fill_value": metadata.fill_value,
        "codecs": metadata.codecs,
        "attributes": metadata.attributes,
        "dimension_names": metadata.dimension_names,
    }
    changes = dict(changes)
    if "chunk_shape" in changes:
        d["chunk_grid"] = {
            "name": "regular",
            "configuration": {"chunk_shape": tuple(changes.pop("chunk_shape"))},
        }
    d.update(changes)
    return ArrayV3Metadata(**d)


def chunk_shape_of(metadata: ArrayV3Metadata) -> tuple[int, ...]:
    """Shape of the chunks that references point at: the shards of a sharded array.

    zarr-python's ``metadata.chunks`` is the *inner* chunk shape of a sharded array;
    a manifest's grid is the regular ``chunk_grid`` (one reference per shard).
    """
    # a regular grid (zarr >= 3.2 also has rectilinear ones, which manifests do not index)
    chunk_shape = getattr(metadata.chunk_grid, "chunk_shape", None)
    if chunk_shape is None:
        raise InvalidManifestError(
            f"chunk grid {type(metadata.chunk_grid).__name__} is not regular; manifests index "
            "regular chunk grids only."
        )
    return tuple(int(c) for c in chunk_shape)


def with_metadata(metadata: ArrayV3Metadata, **changes: Any) -> ArrayV3Metadata:
    """A copy of ``metadata`` with some fields replaced (``shape``, ``chunk_shape``, ...).

    >>> m = create_v3_array_metadata(shape=(4,), data_type="<f4", chunk_shape=(2,))
    >>> with_metadata(m, shape=(8,), dimension_names=["x"]).shape
    (8,)
    """
    same_ndim = len(changes.get("shape", metadata.shape)) == len(metadata.shape)
    if set(changes) <= {"shape", "attributes", "dimension_names"} and same_ndim:
        return _replaced(metadata, **changes)
    return _rebuilt(metadata, changes)


def fill_values_equal(a: Any, b: Any) -> bool:
    """Fill values compare equal, with NaN equal to NaN and NaT equal to NaT.

    >>> nat = np.datetime64("NaT", "s")
    >>> fill_values_equal(np.float32("nan"), np.nan), fill_values_equal(nat, nat)
    (True, True)
    """
    aa, bb = np.asarray(a), np.asarray(b)
    if aa.shape != bb.shape:
        return False
    if aa.dtype.kind in "fc" and bb.dtype.kind in "fc":
        return bool(np.all((aa == bb) | (np.isnan(aa) & np.isnan(bb))))
    if aa.dtype.kind in "mM" and bb.dtype.kind == aa.dtype.kind:
        return bool(np.all((aa == bb) | (np.isnat(aa) & np.isnat(bb))))
    return bool(np.all(aa == bb))


def chunk_grid_shape(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    """Number of chunks along each axis (a partial last chunk counts)."""
    # integer ceil division: float division loses precision for huge shapes
    return tuple(-(-int(s) // int(c)) if c else 0 for s, c in zip(shape, chunks))


def to_json_safe(value: Any) -> Any:
    """Attributes as plain JSON types (numpy scalars/arrays, bytes and tuples converted)."""
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json_safe(value.tolist())
    if isinstance(value, np.generic):
        return to_json_safe(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and not math.isfinite(value):
        return value  # json.dumps spells these NaN/Infinity, which zarr-python reads back
    return value


# Attributes whose disagreement between inputs would make a combined variable decode wrongly:
# xarray keeps the first input's attributes, so the others would be scaled/masked with them.
CF_PACKING_ATTRS = ("scale_factor", "add_offset", "_FillValue", "missing_value", "_Unsigned")
CF_TIME_ATTRS = ("units", "calendar")


def _is_encoded_time(attrs: Mapping[Any, Any]) -> bool:
    units = attrs.get("units")
    return isinstance(units, str) and " since " in units


def _attr_equal(a: Any, b: Any) -> bool:
    if isinstance(a, (str, bytes)) or isinstance(b, (str, bytes)):
        return a == b
    try:
        aa = np.asarray(a, dtype=np.float64).ravel()
        bb = np.asarray(b, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return a == b
    if aa.shape != bb.shape:
        return False
    both_nan = np.isnan(aa) & np.isnan(bb)
    # float32 and float64 spellings of one value (0.01f vs 0.01) count as equal
    return bool(np.all(both_nan | np.isclose(aa, bb, rtol=1e-6, atol=0)))


def cf_encoding_mismatch(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> tuple[str, Any, Any] | None:
    """The first CF packing attribute (or time ``units``/``calendar``) that differs, with both values."""
    keys = CF_PACKING_ATTRS + (CF_TIME_ATTRS if _is_encoded_time(a) or _is_encoded_time(b) else ())
    for key in keys:
        x, y = a.get(key), b.get(key)
        if (x is None) != (y is None) or (x is not None and not _attr_equal(x, y)):
            return key, x, y
    return None
