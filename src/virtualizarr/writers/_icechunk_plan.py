"""Planning an Icechunk write: what each virtual variable becomes, checked before any write.

Everything that can refuse a write (mode, append and region compatibility, containers)
runs here first, so a refused write leaves the session untouched.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import numpy as np

from virtualizarr.attributes import json_attrs as shared_json_attrs
from virtualizarr.attributes import zarr_v3_attributes
from virtualizarr.errors import WriterError
from virtualizarr.manifests.metadata import fill_values_equal, to_json_safe, with_metadata

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable, Mapping

    import xarray as xr
    from icechunk import IcechunkStore

    from virtualizarr.manifests import ManifestArray

Mode = Literal["w", "w-", "a", "a-", "r+"]
MODES: tuple[Mode, ...] = ("w", "w-", "a", "a-", "r+")
# Attributes that change how stored values decode: appending bytes encoded with other ones
# would silently give wrong values.
CF_ENCODING_ATTRS = (
    "scale_factor",
    "add_offset",
    "_FillValue",
    "missing_value",
    "units",
    "calendar",
    "_Unsigned",
    "dtype",
)
# Characters that a location URL may hold unescaped (icechunk parses locations as URLs, so
# "%", "?", "#", spaces and non-ASCII in a key must be percent-encoded).
_URL_SAFE = "/:@!$&'()*+,;=~"


@dataclass(frozen=True, slots=True)
class ArrayWrite:
    """What to do for one virtual variable; planned (and validated) before any write."""

    name: str
    path: str
    """Zarr path of the array in the store."""
    arr: ManifestArray
    doc: dict[str, Any] | None
    """zarr.json to write; None when only references change (region writes)."""
    replace: bool
    """Delete an existing array first, so none of its old chunks survive."""
    offset: tuple[int, ...]
    """Chunk-grid index where this array's chunk (0, 0, ...) goes (appends, regions)."""


def parse_mode(mode: str | None, append_dim: str | None, region: Any) -> Mode:
    if mode is None:
        mode = "a" if append_dim is not None else "r+" if region is not None else "w-"
    if mode not in MODES:
        raise WriterError(f"mode must be one of {MODES}, got {mode!r}.")
    if append_dim is not None and mode not in ("a", "a-"):
        raise WriterError(f"append_dim needs mode 'a' or 'a-', got mode={mode!r}.")
    if region is not None:
        if append_dim is not None:
            raise WriterError("Pass either append_dim or region, not both.")
        if mode not in ("r+", "a") or not isinstance(region, dict):
            raise WriterError(
                f"region must be a dict of slices with mode 'r+' or 'a', got {region!r} "
                f"with mode {mode!r} (region='auto' needs the values of indexes; pass slices)."
            )
    return MODES[MODES.index(mode)]  # the checked mode, typed as a Mode


def plan_array(
    name: str,
    var: xr.Variable,
    store: IcechunkStore,
    prefix: str,
    mode: str,
    append_dim: str | None,
    region: Mapping[str, slice] | None,
) -> ArrayWrite | None:
    arr: ManifestArray = var.data
    path = join(prefix, name)
    dims = tuple(str(d) for d in var.dims)
    new_doc = _array_doc(arr, var.attrs, dims)
    old_doc = get_doc(store, join(path, "zarr.json")) if mode != "w" else None
    if old_doc is not None and old_doc.get("node_type") != "array":
        raise WriterError(f"Cannot write variable {name!r}: {path!r} is a group in the store.")
    zero = (0,) * arr.ndim
    if mode == "r+" or region is not None:
        if old_doc is None:
            raise WriterError(f"Cannot write a region of {name!r}: it does not exist in the store.")
        offset = _region_offset(name, arr, dims, old_doc, region or {})
        _check_compatible(
            name, old_doc, new_doc, skip_axes=range(arr.ndim), what="write a region of"
        )
        return ArrayWrite(name, path, arr, None, False, offset)
    if append_dim is None or old_doc is None:
        return ArrayWrite(name, path, arr, new_doc, old_doc is not None, zero)
    if append_dim not in dims:
        # "a" overwrites variables without the append dimension (like xarray); "a-" keeps them
        return None if mode == "a-" else ArrayWrite(name, path, arr, new_doc, True, zero)
    axis = dims.index(append_dim)
    _check_compatible(
        name, old_doc, new_doc, skip_axes=[axis], what=f"append along {append_dim!r} to"
    )
    old_len, chunk = old_doc["shape"][axis], arr.chunks[axis]
    if old_len % chunk:
        raise WriterError(
            f"Cannot append to {name!r} along {append_dim!r}: its length {old_len} is not a "
            f"multiple of its chunk length {chunk}, so new chunks cannot start on a chunk boundary."
        )
    shape = list(old_doc["shape"])
    shape[axis] += arr.shape[axis]
    offset = tuple(old_len // chunk if i == axis else 0 for i in range(arr.ndim))
    return ArrayWrite(name, path, arr, {**old_doc, "shape": shape}, False, offset)


def _region_offset(
    name: str,
    arr: ManifestArray,
    dims: tuple[str, ...],
    old_doc: dict[str, Any],
    region: Mapping[str, slice],
) -> tuple[int, ...]:
    if region and not set(region) & set(dims):
        raise WriterError(
            f"Variable {name!r} has none of the region dimensions {list(region)}; drop it "
            "(ds.drop_vars) or write it in a separate call."
        )
    offset = []
    for axis, dim in enumerate(dims):
        sl = region.get(dim, slice(0, old_doc["shape"][axis]))
        start = sl.start or 0
        stop = old_doc["shape"][axis] if sl.stop is None else sl.stop
        size, chunk, old_len = arr.shape[axis], arr.chunks[axis], old_doc["shape"][axis]
        if stop - start != size or stop > old_len:
            raise WriterError(
                f"Region {dim}={start}:{stop} of {name!r} does not fit: the variable has length "
                f"{size} there and the stored array {old_len}."
            )
        # a partial last chunk holds padding: it may only land at the very end of the array
        if start % chunk or (size % chunk and stop != old_len):
            raise WriterError(
                f"Region {dim}={start}:{stop} of {name!r} is not aligned to its chunk length {chunk}."
            )
        offset.append(start // chunk)
    return tuple(offset)


def _check_compatible(
    name: str, old: dict[str, Any], new: dict[str, Any], *, skip_axes: Iterable[int], what: str
) -> None:
    """Raise unless bytes encoded for ``new`` decode the same way under ``old``."""
    from zarr.core.metadata.v3 import ArrayV3Metadata

    a, b = ArrayV3Metadata.from_dict(old), ArrayV3Metadata.from_dict(new)
    checks: list[tuple[str, Any, Any, bool]] = [
        ("data type", str(a.dtype), str(b.dtype), str(a.dtype) == str(b.dtype)),
        ("chunk shape", a.chunks, b.chunks, a.chunks == b.chunks),
        (
            "dimension names",
            a.dimension_names,
            b.dimension_names,
            a.dimension_names == b.dimension_names,
        ),
        ("fill value", a.fill_value, b.fill_value, fill_values_equal(a.fill_value, b.fill_value)),
    ]
    ca = to_json_safe([c.to_dict() for c in a.codecs])
    cb = to_json_safe([c.to_dict() for c in b.codecs])
    checks.append(("codecs", ca, cb, ca == cb))
    keep = [i for i in range(len(a.shape)) if i not in set(skip_axes)]
    same_shape = len(a.shape) == len(b.shape) and all(a.shape[i] == b.shape[i] for i in keep)
    checks.append(("shape", a.shape, b.shape, same_shape))
    for key in CF_ENCODING_ATTRS:
        va, vb = a.attributes.get(key), b.attributes.get(key)
        checks.append((f"attribute {key!r}", va, vb, va == vb or _both_nan(va, vb)))
    for prop, va, vb, ok in checks:
        if not ok:
            raise WriterError(
                f"Cannot {what} variable {name!r}: its {prop} differs: the store has {va!r}, "
                f"the dataset has {vb!r}."
            )


def _both_nan(a: Any, b: Any) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def _array_doc(
    arr: ManifestArray, attrs: Mapping[Hashable, Any], dims: tuple[str, ...]
) -> dict[str, Any]:
    """zarr.json of a virtual array: its codecs and fill value, the Variable's attrs and dims."""
    meta = with_metadata(arr.metadata, attributes={}, dimension_names=dims)
    doc = to_json_safe(meta.to_dict())
    # References are set by chunk index, so the key encoding is free: use Icechunk's native one
    # (a v2-style "0.0" encoding from a Zarr v2 source would not be understood).
    doc["chunk_key_encoding"] = {"name": "default", "configuration": {"separator": "/"}}
    doc["attributes"] = json_attrs(attrs, arr.dtype)
    return doc


def json_attrs(attrs: Mapping[Hashable, Any], dtype: np.dtype | None) -> dict[str, Any]:
    """Attributes as Icechunk accepts them: plain JSON, no NaN/Infinity literals.

    CF ``_FillValue`` is spelled as xarray's Zarr backend writes it (base64 float64 for
    floats); the rest as every writer spells attributes (``virtualizarr.attributes``: NaN
    entries of ``missing_value`` dropped, other non-finite floats as strings).
    """
    out = to_json_safe({str(k): v for k, v in attrs.items()})
    if dtype is not None:
        out = zarr_v3_attributes(out, np.dtype(dtype))
    return shared_json_attrs(out)


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def get_doc(store: IcechunkStore, key: str) -> dict[str, Any] | None:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    buf = sync(store.get(key, default_buffer_prototype()))
    return None if buf is None else json.loads(buf.to_bytes())


def location(url: str) -> str:
    """``url`` as an Icechunk location: the key part percent-encoded (``#``, ``%``, spaces...)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc}{slash}{quote(path, safe=_URL_SAFE)}"


def container_prefixes(store: IcechunkStore) -> list[str]:
    containers = store.session.config.virtual_chunk_containers or {}
    return sorted(c.url_prefix for c in containers.values())


def check_containers(plans: list[ArrayWrite], prefixes: list[str]) -> None:
    for plan in plans:
        for url in plan.arr.manifest.used_paths():
            if not any(location(url).startswith(p) for p in prefixes):
                raise WriterError(
                    f"Variable {plan.name!r} references {url}, which no virtual chunk container "
                    f"of the repository covers (container prefixes: {prefixes or 'none'}). Add one: "
                    "config.set_virtual_chunk_container(icechunk.VirtualChunkContainer(prefix, "
                    "store)) when opening the repository, or pass validate_containers=False."
                )


def checksum(last_updated_at: datetime | None) -> datetime | None:
    if last_updated_at is None:
        return None
    t = last_updated_at.astimezone(UTC)  # naive datetimes are local time
    # Icechunk keeps whole seconds and refuses files modified after the stored time.
    if t.microsecond:
        t = t.replace(microsecond=0) + timedelta(seconds=1)
    return t
