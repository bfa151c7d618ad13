"""Write a virtual dataset as kerchunk references (version 1, Zarr v2 metadata).

Three outputs share one translation of each :class:`ManifestArray` to Zarr v2
(:func:`v2_arrays`): a ``dict``, a JSON file and the parquet layout that fsspec's
``LazyReferenceMapper`` reads (:mod:`virtualizarr.writers.kerchunk_parquet`).

The JSON is strict (RFC 8259), so JavaScript and Rust readers accept it:

* non-finite fill values are spelled ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (Zarr v2);
* non-finite floats in attributes are spelled the same way, as strings -- except in
  ``missing_value``, where NaN entries are dropped (NaN already reads as missing);
* CF ``_FillValue`` becomes the array's ``fill_value``, because that is where xarray's Zarr v2
  backend looks for it;
* inlined chunks are JSON strings when they are valid UTF-8, else ``"base64:..."``.

Files are written under a temporary name and moved into place, so a failure never leaves
a half-written reference file nor clobbers a good one.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from virtualizarr.attributes import json_attrs, strict_json
from virtualizarr.codecs.convert import V2Encoding, v3_codecs_to_v2
from virtualizarr.errors import CodecNotSupportedError, WriterError
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import MISSING
from virtualizarr.manifests.metadata import fill_values_equal, to_json_safe
from virtualizarr.manifests.sources import records_of
from virtualizarr.writers.kerchunk_parquet import write_parquet
from virtualizarr.writers.output import is_remote, local_path, put_object, temp_name

if TYPE_CHECKING:
    import xarray as xr

    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["V2Array", "inline_value", "to_kerchunk", "v2_arrays"]

KerchunkFormat = Literal["dict", "json", "parquet"]
_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


@dataclass(frozen=True, slots=True)
class V2Array:
    """One array as kerchunk writes it: its key prefix, Zarr v2 documents and chunks."""

    path: str
    """Key of the array in the hierarchy (``"air"``, ``"group/air"``)."""
    zarray: dict[str, Any]
    """The ``.zarray`` document (strict-JSON-safe)."""
    zattrs: dict[str, Any]
    """The ``.zattrs`` document, with ``_ARRAY_DIMENSIONS``."""
    manifest: ChunkManifest
    """Chunk references and inlined chunks, on the Zarr v2 chunk grid."""


# -- JSON-safe values ----------------------------------------------------------------------


def _dumps(doc: Any, where: str) -> str:
    try:
        return json.dumps(doc, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise WriterError(f"{where} cannot be written as JSON: {e}") from e


def inline_value(data: bytes) -> str:
    """An inlined chunk as kerchunk spells it: the text if valid UTF-8, else ``base64:...``.

    >>> inline_value(b"abc"), inline_value(b"\\xff")
    ('abc', 'base64:/w==')
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or text.startswith("base64:"):
        return "base64:" + base64.b64encode(data).decode("ascii")
    return text


# -- fill values ---------------------------------------------------------------------------


def _float_json(x: float) -> float | str:
    x = float(x)
    if math.isnan(x):
        return "NaN"
    return _NONFINITE.get(x, x)


def _fill_to_json(value: Any, dtype: np.dtype) -> Any:
    """A fill value as Zarr v2 writes it in ``.zarray``."""
    if value is None:
        return None
    if dtype.kind == "f":
        return _float_json(value)
    if dtype.kind == "c":
        c = complex(value)
        return [_float_json(c.real), _float_json(c.imag)]
    if dtype.kind in "iu":
        return int(value)
    if dtype.kind == "b":
        return bool(value)
    if dtype.kind in "SV":
        raw = value if isinstance(value, bytes) else np.asarray(value, dtype=dtype).tobytes()
        return base64.standard_b64encode(raw).decode("ascii")
    if dtype.kind in "Mm":
        return int(np.asarray(value).astype(dtype).view("i8"))
    return str(value)


def _cf_fill(value: Any, dtype: np.dtype) -> Any:
    """The CF ``_FillValue`` attribute as a value of ``dtype`` (None if it masks nothing)."""
    if isinstance(value, (list, tuple, np.ndarray)) and np.size(value) == 1:
        value = np.ravel(value)[0]
    if isinstance(value, np.generic):
        value = value.item()
    if dtype.kind in "fc" and isinstance(value, str):
        spelled = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
        if value in spelled:
            return spelled[value]
        from xarray.backends.zarr import FillValueCoder  # xarray's Zarr v3 spelling (base64)

        return FillValueCoder.decode(value, dtype)
    if dtype.kind in "iu" and isinstance(value, float) and not value.is_integer():
        return None  # e.g. NaN on a packed int16: equals no stored value
    if dtype.kind == "S" and isinstance(value, str):
        return value.encode()
    return value


def _is_zero(value: Any, dtype: np.dtype) -> bool:
    try:
        return bool(np.all(np.asarray(value, dtype=dtype) == np.zeros((), dtype=dtype)))
    except (TypeError, ValueError):
        return False


def _v2_fill(path: str, arr: ManifestArray, attrs: dict[str, Any], dtype: np.dtype) -> Any:
    """Zarr v2 ``fill_value``: CF ``_FillValue`` if set (xarray masks it), else what missing
    chunks must read as, else null (which zarr reads as zero and xarray does not mask)."""
    v3_fill = arr.metadata.fill_value
    has_missing = bool(arr.manifest.missing.any())
    if "_FillValue" in attrs:
        cf = _cf_fill(attrs.pop("_FillValue"), dtype)
        if cf is not None:
            if has_missing and not fill_values_equal(cf, v3_fill):
                raise WriterError(
                    f"Variable {path!r} has missing chunks that read as {v3_fill!r}, but its "
                    f"_FillValue attribute is {cf!r}: Zarr v2 has one fill value for both. "
                    "Load the variable or make the two agree."
                )
            return cf
    if has_missing and not _is_zero(v3_fill, dtype):
        return v3_fill
    return None


# -- Zarr v3 -> v2 -------------------------------------------------------------------------


def _v2_dtype(arr: ManifestArray, enc: V2Encoding) -> tuple[Any, np.dtype]:
    """The v2 dtype, whose byte order is that of the values the pipeline decodes to."""
    dtype = arr.metadata.dtype.to_native_dtype()
    if dtype.kind in "TO":
        return "|O", dtype
    endian = enc.endian
    first = (enc.filters or [{}])[0]
    decoded = first.get("decode_dtype", first.get("dtype"))  # an array filter's output
    if decoded is not None:
        # zarr views the filters' output as the v2 dtype: the byte orders must agree
        d = np.dtype(decoded)
        endian = {"<": "little", ">": "big"}.get(d.str[0], endian) if d.itemsize > 1 else endian
    if (
        endian is not None
        and dtype.itemsize > 1
        and dtype.kind not in "SV"
        and dtype.fields is None
    ):
        dtype = dtype.newbyteorder("<" if endian == "little" else ">")
    if dtype.fields is not None:
        return [list(f) for f in dtype.descr], dtype
    return dtype.str, dtype


def v2_array(path: str, arr: ManifestArray) -> V2Array:
    """Zarr v2 ``.zarray``/``.zattrs`` for a ManifestArray (CodecNotSupportedError if none)."""
    meta = arr.metadata
    try:
        enc = v3_codecs_to_v2(meta.codecs, ndim=arr.ndim)
    except CodecNotSupportedError as e:
        raise CodecNotSupportedError(f"Variable {path!r} cannot be written as kerchunk: {e}") from e
    dtype_json, dtype = _v2_dtype(arr, enc)
    attrs = {k: v for k, v in meta.attributes.items() if k != "_ARRAY_DIMENSIONS"}
    fill = _fill_to_json(_v2_fill(path, arr, attrs, dtype), dtype)
    zarray = {
        "shape": list(arr.shape),
        "chunks": [max(int(c), 1) for c in arr.chunks],
        "dtype": dtype_json,
        "fill_value": fill,
        "order": enc.order,
        "filters": enc.filters,
        "compressor": enc.compressor,
        "dimension_separator": ".",
        "zarr_format": 2,
    }
    dims = meta.dimension_names
    if dims is None or any(d is None for d in dims):
        raise WriterError(f"Variable {path!r} has no dimension names; xarray needs them.")
    zattrs = {"_ARRAY_DIMENSIONS": [str(d) for d in dims], **json_attrs(attrs)}
    return V2Array(path, strict_json(to_json_safe(zarray)), zattrs, arr.manifest)


def _check_name(path: str) -> None:
    parts = path.split("/")
    if any(p in ("", ".", "..") or p.startswith(".z") for p in parts):
        raise WriterError(f"{path!r} is not a valid name for a Zarr v2 array or group.")


def v2_arrays(
    group: ManifestGroup,
    *,
    registry: ObjectStoreRegistry | None = None,
    inline_threshold: int | None = None,
) -> Iterator[tuple[str, dict[str, Any]] | V2Array]:
    """Each group as ``(path, attrs)`` and each array as :class:`V2Array`, one at a time.

    Chunks of at most ``inline_threshold`` bytes are read (through ``registry``) and
    inlined; zero-length references become empty inlined chunks, so no reader takes
    ``[url, 0, 0]`` to mean the whole file.
    """
    for path, node in group.walk():
        if isinstance(node, ManifestGroup):
            yield path, json_attrs(node.attributes)
            continue
        _check_name(path)
        v2 = v2_array(path, node)
        manifest = _inline_small(v2.manifest, inline_threshold or 0, registry)
        yield V2Array(v2.path, v2.zarray, v2.zattrs, manifest)


def _inline_small(
    m: ChunkManifest, threshold: int, registry: ObjectStoreRegistry | None
) -> ChunkManifest:
    is_path = np.array([isinstance(t, str) for t in m.table] + [False])
    refs = is_path[np.minimum(m.path_ids, len(m.table))]
    small = refs & (m.lengths <= threshold)
    if not small.any():
        return m
    from virtualizarr.io.objects import read_ranges
    from virtualizarr.registry import ObjectStoreRegistry

    registry = registry or ObjectStoreRegistry()
    table: list[str | bytes] = list(m.table)
    ids = m.path_ids.copy()
    for pid in np.unique(m.path_ids[small]):
        where = np.nonzero(small & (m.path_ids == pid))
        starts, lengths = m.offsets[where], m.lengths[where]
        nonempty = lengths > 0
        datas = [b""] * len(starts)
        if nonempty.any():
            url = str(table[int(pid)])  # a path: only path ids are "small" references
            try:
                got = read_ranges(
                    url, starts[nonempty].tolist(), lengths[nonempty].tolist(), registry
                )
            except OSError as e:  # names the URL (virtualizarr.io translates)
                raise WriterError(f"Cannot read chunks of {url} to inline them: {e}") from e
            for i, got_bytes in zip(np.flatnonzero(nonempty), got):
                datas[i] = bytes(got_bytes)
        new_ids = []
        for data in datas:
            table.append(data)
            new_ids.append(len(table) - 1)
        ids[where] = np.array(new_ids, dtype=np.uint32)
    return ChunkManifest.from_path_ids(
        table=table, ids=ids, offsets=m.offsets, lengths=m.lengths, normalize=False
    )


# -- chunk keys and JSON entries (vectorised) ----------------------------------------------


def _present(m: ChunkManifest) -> tuple[np.ndarray, np.ndarray]:
    """Flat C-order positions and table ids of the present chunks."""
    ids = m.path_ids.ravel()
    flat = np.flatnonzero(ids != MISSING)
    return flat, ids[flat]


def _key_columns(m: ChunkManifest, flat: np.ndarray) -> tuple[str, list[np.ndarray]]:
    """A ``%``-format for chunk keys and its integer columns."""
    grid = m.shape_chunk_grid
    if not grid:
        return "0", []
    return ".".join(["%d"] * len(grid)), list(np.unravel_index(flat, grid))


def _json_escape(text: str) -> str:
    return json.dumps(text)[1:-1].replace("%", "%%")


def json_entries(arr: V2Array) -> str:
    """The ``"key": value`` members of one array (metadata and chunks), comma-joined."""
    p = arr.path
    parts = [
        f"{json.dumps(p + '/.zarray')}:{json.dumps(_dumps(arr.zarray, p))}",
        f"{json.dumps(p + '/.zattrs')}:{json.dumps(_dumps(arr.zattrs, p))}",
    ]
    m = arr.manifest
    flat, ids = _present(m)
    if flat.size == 0:
        return ",".join(parts)
    is_ref = np.array([isinstance(t, str) for t in m.table])[ids]
    keyfmt, cols = _key_columns(m, flat)
    prefix = _json_escape(p + "/")
    if is_ref.any():
        sel = np.flatnonzero(is_ref)
        key_cols = [c[sel].tolist() for c in cols]
        ref_ids = ids[sel]
        offs = m.offsets.ravel()[flat[sel]].tolist()
        lens = m.lengths.ravel()[flat[sel]].tolist()
        urls = np.array(
            [json.dumps(t) if isinstance(t, str) else "" for t in m.table], dtype=object
        )
        uniq = np.unique(ref_ids)
        if len(uniq) == 1:  # one file: put its URL in the format, a third fewer fields
            fmt = f'"{prefix}{keyfmt}":[{urls[uniq[0]].replace("%", "%%")},%d,%d]'
            fields = zip(*key_cols, offs, lens)
        else:
            fmt = f'"{prefix}{keyfmt}":[%s,%d,%d]'
            fields = zip(*key_cols, urls[ref_ids].tolist(), offs, lens)
        parts.append(",".join([fmt] * len(sel)) % tuple(itertools.chain.from_iterable(fields)))
    for i in np.flatnonzero(~is_ref):
        key = keyfmt % tuple(int(c[i]) for c in cols)
        data = m.table[int(ids[i])]
        assert isinstance(data, bytes)
        parts.append(f"{json.dumps(p + '/' + key)}:{json.dumps(inline_value(data))}")
    return ",".join(parts)


def dict_entries(arr: V2Array) -> dict[str, Any]:
    """The references of one array as a kerchunk ``refs`` dict."""
    out: dict[str, Any] = {
        f"{arr.path}/.zarray": _dumps(arr.zarray, arr.path),
        f"{arr.path}/.zattrs": _dumps(arr.zattrs, arr.path),
    }
    m = arr.manifest
    flat, ids = _present(m)
    if flat.size == 0:
        return out
    keyfmt, cols = _key_columns(m, flat)
    keyfmt = arr.path.replace("%", "%%") + "/" + keyfmt
    keys = [keyfmt % t for t in zip(*(c.tolist() for c in cols))] if cols else [f"{arr.path}/0"]
    table = np.array(list(m.table), dtype=object)
    is_ref = np.array([isinstance(t, str) for t in m.table])[ids]
    sel = np.flatnonzero(is_ref)
    vals = zip(
        table[ids[sel]].tolist(),
        m.offsets.ravel()[flat[sel]].tolist(),
        m.lengths.ravel()[flat[sel]].tolist(),
    )
    keys_arr = np.array(keys, dtype=object)
    out.update(zip(keys_arr[sel].tolist(), map(list, vals)))
    for i in np.flatnonzero(~is_ref):
        out[keys[i]] = inline_value(table[ids[i]])
    return out


def _group_entries(path: str, attrs: dict[str, Any]) -> dict[str, str]:
    pre = f"{path}/" if path else ""
    return {
        f"{pre}.zgroup": _dumps({"zarr_format": 2}, path or "root group"),
        f"{pre}.zattrs": _dumps(attrs, f"attributes of group {path or '/'}"),
    }


# -- public entry point --------------------------------------------------------------------


def to_kerchunk(
    ds: xr.Dataset | ManifestGroup,
    filepath: str | os.PathLike[str] | None = None,
    format: KerchunkFormat = "dict",
    record_size: int = 100_000,
    categorical_threshold: int = 10,
    inline_threshold: int | None = None,
    registry: ObjectStoreRegistry | None = None,
) -> dict[str, Any] | None:
    """Kerchunk version-1 references for a virtual dataset.

    Parameters
    ----------
    ds
        A Dataset of virtual (ManifestArray) and loaded variables, or a ManifestGroup.
    filepath
        Where to write ``"json"`` (a file) or ``"parquet"`` (a directory): a local path or
        an object-store URL served by ``registry``. Not used for ``"dict"``.
    format
        ``"dict"`` returns ``{"version": 1, "refs": {...}}``; ``"json"``/``"parquet"`` write.
    record_size, categorical_threshold
        Parquet only: references per ``refs.<i>.parq`` file, and the refs-per-URL ratio above
        which the ``path`` column is dictionary-encoded (a pandas categorical).
    inline_threshold
        Read and inline chunks of at most this many bytes.
    registry
        Object stores for reading chunks to inline and for writing to URLs.

    Raises
    ------
    CodecNotSupportedError
        When an array's codecs have no Zarr v2 equivalent (names the variable and codec).
    WriterError
        When a variable cannot be described by Zarr v2 metadata or strict JSON.

    Examples
    --------
    >>> # refs = to_kerchunk(ds)                        # dict
    >>> # to_kerchunk(ds, "refs.json", format="json")
    >>> # xr.open_dataset("reference://", engine="zarr", backend_kwargs={"consolidated": False,
    >>> #                 "storage_options": {"fo": "refs.json"}})
    """
    _check_options(filepath, format, record_size)
    group = ds if isinstance(ds, ManifestGroup) else _group_of(ds)
    sources = sources_doc(group)
    items = v2_arrays(group, registry=registry, inline_threshold=inline_threshold)
    if format == "dict":
        refs: dict[str, Any] = {}
        for item in items:
            refs.update(dict_entries(item) if isinstance(item, V2Array) else _group_entries(*item))
        out: dict[str, Any] = {"version": 1, "refs": refs}
        if sources:
            out["virtualizarr"] = {"sources": sources}
        return out
    assert filepath is not None
    if format == "json":
        _write_json(items, filepath, registry, sources)
    else:
        write_parquet(items, filepath, registry, record_size, categorical_threshold, sources)
    return None


def _check_options(filepath: Any, format: str, record_size: int) -> None:
    if format not in ("dict", "json", "parquet"):
        raise WriterError(f"format must be 'dict', 'json' or 'parquet', got {format!r}.")
    if format == "dict" and filepath is not None:
        raise WriterError(
            f"format='dict' returns the references and writes nothing; to write {filepath} "
            "pass format='json' or format='parquet'."
        )
    if format != "dict" and filepath is None:
        raise WriterError(f"format={format!r} writes a file: pass filepath=.")
    if format == "parquet" and (not isinstance(record_size, int) or record_size < 1):
        raise WriterError(f"record_size must be a positive integer, got {record_size!r}.")


def _group_of(ds: xr.Dataset) -> ManifestGroup:
    from virtualizarr.conversion import dataset_to_group

    return dataset_to_group(ds)


def sources_doc(group: ManifestGroup) -> dict[str, Any]:
    """``{url: {"size", "etag"?, "mtime"?}}`` of the sources recorded at parse time.

    Written beside the references (a top-level ``"virtualizarr"`` key, which fsspec and
    other readers ignore) so ``virtualizarr verify`` can tell a changed source file.
    """
    arrays = (n for _, n in group.walk() if isinstance(n, ManifestArray))
    recs = records_of(a.manifest for a in arrays)
    return {url: recs[url].to_json() for url in sorted(recs)}


def _json_pieces(
    items: Iterator[tuple[str, dict[str, Any]] | V2Array], sources: dict[str, Any] | None = None
) -> Iterator[str]:
    yield '{"version":1,"refs":{'
    first = True
    for item in items:
        if isinstance(item, V2Array):
            text = json_entries(item)
        else:
            text = ",".join(
                f"{json.dumps(k)}:{json.dumps(v)}" for k, v in _group_entries(*item).items()
            )
        yield text if first else "," + text
        first = False
    yield "}"
    if sources:
        yield ',"virtualizarr":' + json.dumps({"sources": sources}, separators=(",", ":"))
    yield "}"


def _write_json(
    items: Iterator[Any],
    filepath: str | os.PathLike[str],
    registry: Any,
    sources: dict[str, Any] | None = None,
) -> None:
    target = os.fspath(filepath)
    if is_remote(target):
        data = "".join(_json_pieces(items, sources)).encode()  # one PUT: atomic on object stores
        put_object(target, data, registry)
        return
    path = local_path(target)
    tmp = temp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(_json_pieces(items, sources))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
