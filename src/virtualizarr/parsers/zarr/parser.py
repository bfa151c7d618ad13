"""ZarrParser: virtualize an existing Zarr v2 or v3 store.

Every chunk object of the store becomes one reference ``(chunk URL, 0, object size)``
with the array's own codecs (v2 order/filters/compressor translated to v3 codecs), so
no chunk is ever read or re-encoded. Sharded v3 arrays reference whole shards and keep
``sharding_indexed``. Chunk sizes come from one listing per array prefix.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.errors import (
    CodecNotSupportedError,
    ParserError,
    UnsupportedFeatureError,
    VariableSkippedWarning,
)
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import MISSING, normalize_path
from virtualizarr.manifests.metadata import chunk_grid_shape, chunk_shape_of
from virtualizarr.parsers.zarr_v2.meta import name_missing_dimensions
from virtualizarr.parsers.zarr_v2.source import ZarrSource
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    from zarr.core.metadata.v3 import ArrayV3Metadata

__all__ = ["ZarrParser"]

_MAX_THREADS = 16


@dataclass
class _ArrayDoc:
    """Metadata documents of one array: ``.zarray`` + ``.zattrs`` or ``zarr.json``."""

    path: str
    zarr_format: int
    meta: dict[str, Any]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class _GroupDoc:
    zarr_format: int
    attrs: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    """True when the members are known (from consolidated metadata): no listing needed."""
    arrays: dict[str, _ArrayDoc] = field(default_factory=dict)
    groups: dict[str, _GroupDoc] = field(default_factory=dict)


@dataclass(frozen=True)
class _KeyEncoding:
    """How grid indices are spelled in the store: ``prefix`` + indices joined by ``sep``."""

    prefix: str
    sep: str
    scalar_key: str


class ZarrParser:
    """Parser for existing Zarr v2 and v3 stores (local directories or object-store prefixes).

    Parameters
    ----------
    group
        Path of the group to virtualize (``"a/b"``), relative to the store root.
        Default: the root.
    drop_variables
        Arrays to leave out. A bare name drops the array of that name in every group;
        a path with ``/`` (relative to ``group``) drops exactly that array.

    Notes
    -----
    Consolidated metadata (v2 ``.zmetadata``, v3 inline ``consolidated_metadata``) is
    used when present, as zarr-python does; otherwise groups are listed and recursed.
    Missing chunk objects are missing chunks (they read as the fill value). Arrays that
    cannot be referenced (object dtypes other than vlen strings, codecs zarr-python does
    not know, v2 ``fill_value: null`` with missing chunks) are skipped with a
    :class:`~virtualizarr.errors.VariableSkippedWarning` naming the store, the array and
    the reason.

    Examples
    --------
    >>> # store = ZarrParser(group="forecast")("s3://bucket/data.zarr", registry)
    >>> # xr.open_zarr(store, consolidated=False, zarr_format=3)
    """

    description = "Existing Zarr v2 and v3 stores"

    def __init__(
        self, *, group: str | None = None, drop_variables: Iterable[str] | None = None
    ) -> None:
        if isinstance(drop_variables, str):
            drop_variables = [drop_variables]
        self.group = (group or "").strip("/")
        self.drop_variables = frozenset(drop_variables or ())

    def __repr__(self) -> str:
        return f"ZarrParser(group={self.group or None!r}, drop_variables={sorted(self.drop_variables)!r})"

    @staticmethod
    def sniff(head: bytes) -> bool:
        """Always False: a Zarr store is a directory or prefix, recognised by its
        ``zarr.json``/``.zgroup``/``.zarray`` (``detect_parser`` looks there)."""
        return False

    def __call__(self, url: str, registry: ObjectStoreRegistry | None = None) -> ManifestStore:
        """Virtualize the store at ``url``; read through ``registry``'s object stores."""
        registry = registry if registry is not None else ObjectStoreRegistry()
        root_url = normalize_path(str(url)).rstrip("/")
        if self.group:
            root_url = f"{root_url}/{self.group}"
        src = ZarrSource(registry, root_url)
        try:
            tree = _discover(src)
        except FileNotFoundError as e:
            if not self.group:
                raise
            raise ParserError(
                f"{root_url} is not a Zarr store: group {self.group!r} of the store does not exist."
            ) from e
        arrays = [a for a in _walk_arrays(tree) if not self._dropped(a.path)]
        built: dict[str, ManifestArray] = {}
        skipped: list[str] = []
        workers = max(1, min(_MAX_THREADS, len(arrays)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for doc, result in zip(arrays, pool.map(lambda d: _build_array(src, d), arrays)):
                if isinstance(result, str):
                    skipped.append(result)
                else:
                    built[doc.path] = result
        for reason in skipped:
            warnings.warn(reason, VariableSkippedWarning, stacklevel=2)
        return ManifestStore(_to_group(tree, built, ""), registry=registry)

    def _dropped(self, path: str) -> bool:
        return path in self.drop_variables or path.rsplit("/", 1)[-1] in self.drop_variables


# -- discovery ---------------------------------------------------------------------------------


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _read_node(src: ZarrSource, path: str, prefer: int) -> _ArrayDoc | _GroupDoc | None:
    """The node whose metadata lives at ``path`` (v3 ``zarr.json`` or v2 files), if any."""
    for fmt in (prefer, 5 - prefer):  # 3 -> (3, 2), 2 -> (2, 3)
        if fmt == 3:
            doc = src.get_json(_join(path, "zarr.json"))
            if doc is None:
                continue
            if doc.get("zarr_format") != 3:
                raise ParserError(
                    f"{src.url(path)}/zarr.json: expected zarr_format 3, got {doc.get('zarr_format')!r}."
                )
            if doc.get("node_type") == "array":
                return _ArrayDoc(path, 3, doc)
            if doc.get("node_type") == "group":
                return _group_from_v3_doc(path, doc)
            raise ParserError(
                f"{src.url(path)}/zarr.json: unknown node_type {doc.get('node_type')!r}."
            )
        zarray = src.get_json(_join(path, ".zarray"))
        if zarray is not None:
            return _ArrayDoc(path, 2, zarray, src.get_json(_join(path, ".zattrs")) or {})
        if path == "":  # v2 consolidated metadata only lives at the root
            zmeta = src.get_json(".zmetadata")
            if zmeta is not None and isinstance(zmeta.get("metadata"), dict):
                return _group_from_flat(_flat_from_zmetadata(zmeta["metadata"]), 2)
        if src.get_json(_join(path, ".zgroup")) is not None:
            return _GroupDoc(2, attrs=src.get_json(_join(path, ".zattrs")) or {})
    return None


def _group_from_v3_doc(path: str, doc: dict[str, Any]) -> _GroupDoc:
    cm = doc.get("consolidated_metadata")
    # an empty consolidated listing is cheap to double-check by listing the group
    if (
        isinstance(cm, dict)
        and cm.get("kind") == "inline"
        and isinstance(cm.get("metadata"), dict)
        and cm["metadata"]
    ):
        flat: dict[str, _ArrayDoc | _GroupDoc] = {
            "": _GroupDoc(3, attrs=doc.get("attributes") or {})
        }
        for rel, child in cm["metadata"].items():
            if child.get("node_type") == "array":
                flat[rel] = _ArrayDoc(_join(path, rel), 3, child)
            else:
                flat[rel] = _GroupDoc(3, attrs=child.get("attributes") or {})
        return _group_from_flat(flat, 3)
    return _GroupDoc(3, attrs=doc.get("attributes") or {})


def _flat_from_zmetadata(meta: dict[str, Any]) -> dict[str, _ArrayDoc | _GroupDoc]:
    """Nodes of a v2 ``.zmetadata`` document, keyed by path."""
    flat: dict[str, _ArrayDoc | _GroupDoc] = {}
    for key, value in meta.items():
        path, _, name = key.rpartition("/")
        if name == ".zarray":
            flat[path] = _ArrayDoc(path, 2, value, meta.get(_join(path, ".zattrs")) or {})
        elif name == ".zgroup":
            flat[path] = _GroupDoc(2, attrs=meta.get(_join(path, ".zattrs")) or {})
    flat.setdefault("", _GroupDoc(2, attrs=meta.get(".zattrs") or {}))
    return flat


def _group_from_flat(flat: dict[str, _ArrayDoc | _GroupDoc], fmt: int) -> _GroupDoc:
    """A complete tree from consolidated ``{path: node}``; unlisted parent groups are empty."""
    groups: dict[str, _GroupDoc] = {}

    def group_at(path: str) -> _GroupDoc:
        if path not in groups:
            node = flat.get(path)
            g = node if isinstance(node, _GroupDoc) else _GroupDoc(fmt)
            g.complete = True
            groups[path] = g
            if path:
                parent, _, name = path.rpartition("/")
                group_at(parent).groups[name] = g
        return groups[path]

    root = group_at("")

    for path in sorted(flat, key=lambda p: p.count("/")):
        node = flat[path]
        if isinstance(node, _GroupDoc):
            group_at(path)
        elif path:
            parent, _, name = path.rpartition("/")
            group_at(parent).arrays[name] = node
    return root


def _discover(src: ZarrSource) -> _GroupDoc:
    """The hierarchy at the source's root: from consolidated metadata, else by listing."""
    root = _read_node(src, "", 3)
    if root is None and not src.list_objects("")[0]:  # (one listing, on this error path only)
        raise FileNotFoundError(f"{src.root_url}: no such Zarr store (nothing is there).")
    if root is None:
        raise ParserError(
            f"{src.root_url} is not a Zarr store: found no zarr.json, .zgroup or .zarray there."
        )
    if isinstance(root, _ArrayDoc):  # a lone array: name it after the last URL segment
        name = src.root_url.rsplit("/", 1)[-1] or "array"
        root.path = ""
        return _GroupDoc(root.zarr_format, arrays={name: root}, complete=True)
    if not root.complete:
        _recurse(src, "", root)
    return root


def _recurse(src: ZarrSource, path: str, group: _GroupDoc) -> None:
    """Find the members of ``group`` by listing its prefix, then recurse into subgroups."""
    names = src.list_children(path)
    if not names:
        return
    with ThreadPoolExecutor(max_workers=min(_MAX_THREADS, len(names))) as pool:
        nodes = list(pool.map(lambda n: _read_node(src, _join(path, n), group.zarr_format), names))
    for name, node in zip(names, nodes):
        if isinstance(node, _ArrayDoc):
            group.arrays[name] = node
        elif isinstance(node, _GroupDoc):
            group.groups[name] = node
            if not node.complete:
                _recurse(src, _join(path, name), node)


def _walk_arrays(group: _GroupDoc) -> list[_ArrayDoc]:
    out = list(group.arrays.values())
    for g in group.groups.values():
        out.extend(_walk_arrays(g))
    return out


def _to_group(doc: _GroupDoc, built: dict[str, ManifestArray], path: str) -> ManifestGroup:
    arrays = {name: built[a.path] for name, a in doc.arrays.items() if a.path in built}
    arrays = name_missing_dimensions(arrays)
    groups = {name: _to_group(g, built, _join(path, name)) for name, g in doc.groups.items()}
    return ManifestGroup(arrays=arrays, groups=groups, attributes=doc.attrs)


# -- arrays ------------------------------------------------------------------------------------


def _build_array(src: ZarrSource, doc: _ArrayDoc) -> ManifestArray | str:
    """The virtual array, or the reason it is skipped (a warning message)."""
    from virtualizarr.parsers.zarr_v2.meta import check_grid, v2_metadata, v3_metadata

    name = doc.path or src.root_url.rsplit("/", 1)[-1]
    try:
        if doc.zarr_format == 2:
            meta, enc, null_fill = v2_metadata(doc.meta, doc.attrs)
        else:
            meta, enc = v3_metadata(doc.meta)
            null_fill = False
    except (UnsupportedFeatureError, CodecNotSupportedError, ParserError) as e:
        return f"Skipping array {name!r} of Zarr store {src.root_url}: {e}"
    keys, sizes = src.list_objects(doc.path)
    try:
        check_grid(chunk_grid_shape(meta.shape, chunk_shape_of(meta)), len(keys))
    except ParserError as e:
        return f"Skipping array {name!r} of Zarr store {src.root_url}: {e}"
    manifest = chunk_manifest(keys, sizes, _KeyEncoding(*enc), meta, src.url(doc.path))
    if null_fill and manifest.missing.any():
        return (
            f"Skipping array {name!r} of Zarr store {src.root_url}: its fill_value is null and "
            f"{int(manifest.missing.sum())} of {manifest.missing.size} chunks are missing, so their "
            "values are undefined (Zarr v2 spec); there is no value to read them as."
        )
    return ManifestArray(meta, manifest)


def _parse_keys(keys: np.ndarray, enc: _KeyEncoding, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid indices ``(n, ndim)`` of chunk keys and a mask of keys that are chunk keys."""
    if ndim == 0:
        return np.zeros((len(keys), 0), dtype=np.int64), keys == enc.scalar_key
    valid = np.ones(len(keys), dtype=bool)
    rest = keys
    if enc.prefix:
        valid &= np.strings.startswith(keys, enc.prefix)
        rest = np.strings.slice(keys, len(enc.prefix), None)
    sep = np.array(enc.sep, dtype=keys.dtype)
    idx = np.zeros((len(keys), ndim), dtype=np.int64)
    for axis in range(ndim):
        head, found, rest = np.strings.partition(rest, sep)
        n_digits = np.strings.str_len(head)
        # plain decimal, no leading zeros (a writer never makes "01"), fits in int64
        ok = np.strings.isdecimal(head) & (n_digits <= 18)
        ok &= (n_digits == 1) | ~np.strings.startswith(head, "0")
        # the last index must end the key; the others must be followed by the separator
        ok &= (found == "") if axis == ndim - 1 else (found == enc.sep)
        valid &= ok
        idx[valid, axis] = head[valid].astype(np.int64)
    return idx, valid


def chunk_manifest(
    keys: list[str], sizes: np.ndarray, enc: _KeyEncoding, meta: ArrayV3Metadata, array_url: str
) -> ChunkManifest:
    """References ``(array_url/key, 0, size)`` for the listed chunk objects of one array.

    ``keys`` are object keys relative to the array's prefix; keys that are not chunk
    keys of the array's grid (metadata documents, stray files, chunks outside a shrunk
    array) are ignored.
    """
    grid = chunk_grid_shape(meta.shape, chunk_shape_of(meta))
    ids = np.full(grid, MISSING, dtype=np.uint32)
    lengths = np.zeros(grid, dtype=np.uint64)
    arr = np.array(keys, dtype=np.dtypes.StringDType())
    idx, valid = _parse_keys(arr, enc, len(grid))
    valid &= (idx < np.array(grid, dtype=np.int64)).all(axis=1)
    chosen = np.flatnonzero(valid)
    flat = (
        np.ravel_multi_index(tuple(idx[chosen].T), grid)
        if len(grid)
        else np.zeros(len(chosen), np.int64)
    )
    ids.flat[flat] = np.arange(len(chosen), dtype=np.uint32)
    lengths.flat[flat] = np.asarray(sizes, dtype=np.uint64)[chosen]
    table = [f"{array_url}/{keys[i]}" for i in chosen]
    offsets = np.zeros(grid, dtype=np.uint64)
    return ChunkManifest.from_path_ids(
        table=table, ids=ids, offsets=offsets, lengths=lengths, normalize=False
    )
