"""ManifestStore: a read-only Zarr v3 store that serves chunks straight from the archival files."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype

from virtualizarr.errors import ChunkReadError
from virtualizarr.manifests.array import ManifestArray
from virtualizarr.manifests.group import ManifestGroup
from virtualizarr.manifests.manifest import MISSING
from virtualizarr.manifests.metadata import to_json_safe
from virtualizarr.registry import ObjectStoreRegistry

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = ["ManifestStore"]


def _zarr_attributes(attrs: dict[str, Any], dtype: np.dtype) -> dict[str, Any]:
    """Attributes as xarray's Zarr backend expects them in zarr.json.

    CF ``_FillValue`` is spelled the way xarray writes it to Zarr v3 (base64 of a float64
    for floats), so ``xr.open_zarr`` masks exactly the values netCDF readers would.
    """
    if "_FillValue" not in attrs:
        return attrs
    from xarray.backends.zarr import FillValueCoder

    fv = attrs["_FillValue"]
    if isinstance(fv, list) and len(fv) == 1:
        fv = fv[0]
    if dtype.kind == "S" and isinstance(fv, str):
        fv = fv.encode()
    if dtype.kind == "f" and isinstance(fv, str):  # JSON-safe spelling of NaN/Infinity
        fv = float(fv)
    if dtype.kind in "iu" and isinstance(fv, float) and not fv.is_integer():
        # e.g. NaN on an int16 packed variable (xarray writes those): it equals no stored
        # value, so it masks nothing, and xarray's Zarr backend cannot read it back.
        return {k: v for k, v in attrs.items() if k != "_FillValue"}
    try:
        fv = FillValueCoder.encode(fv, dtype)
    except (TypeError, ValueError):
        return attrs  # xarray will then refuse it with a message naming the value
    return {**attrs, "_FillValue": fv}


def _apply_range(start: int, length: int, byte_range: ByteRequest | None) -> tuple[int, int]:
    """Absolute (start, length) of ``byte_range`` taken inside the chunk at (start, length)."""
    if byte_range is None:
        return start, length
    if isinstance(byte_range, RangeByteRequest):
        lo = min(byte_range.start, length)
        hi = min(byte_range.end, length)
        return start + lo, max(hi - lo, 0)
    if isinstance(byte_range, OffsetByteRequest):
        lo = min(byte_range.offset, length)
        return start + lo, length - lo
    if isinstance(byte_range, SuffixByteRequest):
        n = min(byte_range.suffix, length)
        return start + length - n, n
    raise TypeError(f"Unexpected byte_range, got {byte_range!r}")


class ManifestStore(Store):
    """A read-only Zarr v3 store over a :class:`ManifestGroup`.

    Metadata documents (``zarr.json``) are made from the group; chunk keys are answered
    by fetching the referenced byte range through the registry's object stores (inlined
    chunks from memory, nothing for missing chunks). So zarr and xarray read the real
    values of any virtualized file without anything being written:

    >>> # xr.open_zarr(ManifestStore(group), consolidated=False, zarr_format=3)
    """

    supports_writes = False
    supports_deletes = False
    supports_listing = True
    supports_partial_writes = False

    def __init__(self, group: ManifestGroup, *, registry: ObjectStoreRegistry | None = None) -> None:
        if not isinstance(group, ManifestGroup):
            raise TypeError(f"expected a ManifestGroup, got {type(group).__name__}")
        super().__init__(read_only=True)
        self._group = group
        self._registry = registry if registry is not None else ObjectStoreRegistry()
        self._nodes: dict[str, ManifestArray | ManifestGroup] = dict(group.walk())
        self._docs: dict[str, bytes] = {}

    @property
    def group(self) -> ManifestGroup:
        return self._group

    @property
    def registry(self) -> ObjectStoreRegistry:
        return self._registry

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ManifestStore):
            return NotImplemented
        return self._group == other._group and self._registry == other._registry

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        n_arrays = sum(isinstance(n, ManifestArray) for n in self._nodes.values())
        return f"ManifestStore(arrays={n_arrays}, groups={len(self._nodes) - n_arrays}, registry={self._registry!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"group": self._group, "registry": self._registry}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["group"], registry=state["registry"])  # type: ignore[misc]

    def with_read_only(self, read_only: bool = False) -> ManifestStore:
        # docstring inherited
        if not read_only:
            raise NotImplementedError(
                f"with_read_only is not implemented for the {type(self)} store type: a "
                "ManifestStore only serves the files it references and cannot be written."
            )
        return self

    # -- key resolution ------------------------------------------------------------------------

    def _metadata_doc(self, path: str) -> bytes | None:
        doc = self._docs.get(path)
        if doc is None:
            node = self._nodes.get(path)
            if node is None:
                return None
            if isinstance(node, ManifestArray):
                d = to_json_safe(node.metadata.to_dict())
                d["attributes"] = _zarr_attributes(d.get("attributes") or {}, node.dtype)
                doc = json.dumps(d).encode()
            else:
                doc = json.dumps(
                    {"zarr_format": 3, "node_type": "group", "attributes": to_json_safe(node.attributes)}
                ).encode()
            self._docs[path] = doc
        return doc

    def _find_chunk(self, key: str) -> tuple[str, ManifestArray, tuple[int, ...]] | None:
        parts = key.split("/")
        for i in range(len(parts) - 1, -1, -1):
            path = "/".join(parts[:i])
            node = self._nodes.get(path)
            if isinstance(node, ManifestArray):
                try:
                    idx = node.metadata.chunk_key_encoding.decode_chunk_key("/".join(parts[i:]))
                except (ValueError, TypeError):  # not a chunk key of this array
                    return None
                grid = node.manifest.shape_chunk_grid
                if len(idx) != len(grid) or any(not 0 <= j < g for j, g in zip(idx, grid)):
                    return None
                return path, node, tuple(idx)
            if node is not None:  # a group: chunks cannot live below it directly
                return None
        return None

    def _locate(self, key: str) -> tuple[Any, ...] | None:
        """('doc', bytes) | ('inline', bytes) | ('ref', url, offset, length) | None."""
        if key == "zarr.json" or key.endswith("/zarr.json"):
            doc = self._metadata_doc(key[: -len("zarr.json")].rstrip("/"))
            return None if doc is None else ("doc", doc)
        found = self._find_chunk(key)
        if found is None:
            return None
        _, arr, idx = found
        m = arr.manifest
        i = m.path_ids[idx]
        if i == MISSING:
            return None
        entry = m.table[i]
        if isinstance(entry, bytes):
            return ("inline", entry)
        return ("ref", entry, int(m.offsets[idx]), int(m.lengths[idx]))

    # -- reading -----------------------------------------------------------------------------

    async def _fetch(self, url: str, start: int, length: int) -> bytes:
        import obstore

        if length == 0:
            return b""
        store, path = self._registry.resolve(url)
        try:
            data = await obstore.get_range_async(store, path, start=start, length=length)
        except Exception as e:  # obstore raises its own hierarchy; keep the cause chained
            raise ChunkReadError(
                f"Could not read bytes {start}-{start + length} of {url}: {type(e).__name__}: {e}"
            ) from e
        if len(data) != length:
            raise ChunkReadError(
                f"Read {len(data)} bytes instead of {length} at offset {start} of {url}: "
                "the file is shorter than its references say (truncated or changed since it was "
                "virtualized)."
            )
        return bytes(data)

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        # docstring inherited
        found = self._locate(key)
        if found is None:
            return None
        if found[0] in ("doc", "inline"):
            data: bytes = found[1]
            start, length = _apply_range(0, len(data), byte_range)
            return prototype.buffer.from_bytes(data[start : start + length])
        _, url, offset, length = found
        start, n = _apply_range(offset, length, byte_range)
        return prototype.buffer.from_bytes(await self._fetch(url, start, n))

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        # docstring inherited
        import asyncio

        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        # docstring inherited
        return self._locate(key) is not None

    async def getsize(self, key: str) -> int:
        # docstring inherited
        # The manifest knows every length: the default would download each chunk to measure it.
        found = self._locate(key)
        if found is None:
            raise FileNotFoundError(key)
        return found[3] if found[0] == "ref" else len(found[1])

    async def set(self, key: str, value: Buffer) -> None:
        # docstring inherited
        self._check_writable()  # always read-only: raises zarr's usual ValueError

    async def delete(self, key: str) -> None:
        # docstring inherited
        self._check_writable()

    # -- listing -----------------------------------------------------------------------------

    def _all_keys(self) -> Iterable[str]:
        for path, node in self._nodes.items():
            yield f"{path}/zarr.json" if path else "zarr.json"
            if isinstance(node, ManifestArray):
                enc = node.metadata.chunk_key_encoding
                present = np.argwhere(node.manifest.path_ids != MISSING)
                for idx in present:
                    ck = enc.encode_chunk_key(tuple(int(i) for i in idx))
                    yield f"{path}/{ck}" if path else ck

    async def list(self) -> AsyncIterator[str]:
        # docstring inherited
        for key in self._all_keys():
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        # docstring inherited
        for key in self._all_keys():
            if key.startswith(prefix):
                yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        # docstring inherited
        prefix = prefix.rstrip("/")
        base = f"{prefix}/" if prefix else ""
        seen: set[str] = set()
        for key in self._all_keys():
            if key.startswith(base):
                child = key[len(base) :].split("/", 1)[0]
                if child not in seen:
                    seen.add(child)
                    yield child


def resolve_store(registry: ObjectStoreRegistry | None, url: str) -> tuple[ObjectStore, str]:
    """Shortcut used by parsers: the store and key serving ``url``."""
    return (registry or ObjectStoreRegistry()).resolve(url)
