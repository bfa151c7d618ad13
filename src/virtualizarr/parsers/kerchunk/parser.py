"""Read kerchunk references (JSON version 0/1, or the parquet layout) as a ManifestStore.

Old reference sets become virtual Zarr v3 arrays again, so they can be combined with
newly parsed files and re-written (to Icechunk, or as kerchunk). Zarr v2 metadata is
translated to v3 (codecs via :mod:`virtualizarr.codecs.convert`); a non-null v2
``fill_value`` becomes the CF ``_FillValue`` attribute unless one is set, because that is
what it means to xarray's Zarr v2 backend. A null ``fill_value`` reads as zero, as in
zarr-python 3.

Relative chunk paths are resolved against ``fs_root`` (default: the directory holding the
reference file, or holding the parquet directory). Inlined chunks (text or ``base64:``)
stay inlined. ``[url]`` whole-file references are sized with one HEAD request per file.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.errors import (
    InvalidManifestError,
    ListingNotSupportedError,
    ParserError,
    UnsupportedFeatureError,
    VirtualiZarrError,
)
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import MISSING, normalize_path
from virtualizarr.manifests.metadata import chunk_grid_shape, with_metadata
from virtualizarr.parsers.zarr_v2.meta import check_grid, name_missing_dimensions
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    from zarr.core.metadata.v3 import ArrayV3Metadata

__all__ = ["KerchunkJSONParser", "KerchunkParquetParser"]

_META_SUFFIXES = (".zarray", ".zattrs", ".zgroup", ".zmetadata")
_SIMPLE_TEMPLATE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class _Options:
    """Options shared by both parsers."""

    def __init__(
        self,
        fs_root: str | None = None,
        group: str | None = None,
        drop_variables: Iterable[str] | None = None,
    ) -> None:
        self.fs_root = fs_root
        self.group = (group or "").strip("/")
        self.drop_variables = frozenset(drop_variables or ())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(fs_root={self.fs_root!r}, group={self.group!r}, "
            f"drop_variables={sorted(self.drop_variables)!r})"
        )


class KerchunkJSONParser(_Options):
    """Kerchunk JSON references (version 0, or 1 with ``templates`` and ``gen``).

    >>> # store = KerchunkJSONParser()("s3://bucket/refs.json", registry)
    >>> # xr.open_zarr(store, consolidated=False, zarr_format=3)
    """

    @staticmethod
    def sniff(head: bytes) -> bool:
        """Whether a file starting with ``head`` is JSON (an object): kerchunk references.

        >>> KerchunkJSONParser.sniff(b' {"version": 1, "refs": {}}')
        True
        """
        return head.lstrip().startswith(b"{")

    def __call__(self, url: str, registry: ObjectStoreRegistry | None = None) -> ManifestStore:
        url = normalize_path(url)
        registry = registry if registry is not None else ObjectStoreRegistry()
        try:
            doc = json.loads(_read_object(url, registry))
        except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
            raise ParserError(f"{url} is not valid kerchunk JSON: {type(e).__name__}: {e}") from e
        if not isinstance(doc, dict):
            raise ParserError(f"{url} holds a JSON {type(doc).__name__}, not kerchunk references.")
        refs, templates = _expand(doc, url)
        meta, chunks = _split_refs(refs)
        source = _JSONChunks(chunks, templates)
        return _with_sources(_Builder(self, url, registry, meta, source).store(), doc)


class KerchunkParquetParser(_Options):
    """Kerchunk references in fsspec's parquet layout (a directory with ``.zmetadata``).

    Only the ``refs.<i>.parq`` files of the variables kept are read, one variable at a time.

    >>> # store = KerchunkParquetParser(drop_variables=["big"])("refs.parq", registry)
    """

    @staticmethod
    def sniff(head: bytes) -> bool:
        """Always False: parquet references are a directory, recognised by its ``.zmetadata``
        (``detect_parser`` looks there when the URL is not a file)."""
        return False

    def __call__(self, url: str, registry: ObjectStoreRegistry | None = None) -> ManifestStore:
        url = normalize_path(url).rstrip("/")
        registry = registry if registry is not None else ObjectStoreRegistry()
        try:
            zmeta = _loads(_read_object(f"{url}/.zmetadata", registry), f"{url}/.zmetadata")
            record_size = int(zmeta["record_size"])
            if record_size < 1:
                raise ValueError(f"record_size {record_size} is not a positive integer")
            meta = {k: _doc(v, url, k) for k, v in zmeta["metadata"].items()}
        except FileNotFoundError as e:
            if not _exists(url, registry):
                raise FileNotFoundError(f"{url}: no such kerchunk parquet directory.") from e
            raise ParserError(
                f"{url} has no .zmetadata: it is not kerchunk parquet references."
            ) from e
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ParserError(f"{url}/.zmetadata is not kerchunk parquet metadata: {e!r}") from e
        source = _ParquetChunks(url, record_size, registry)
        return _with_sources(_Builder(self, url, registry, meta, source).store(), zmeta)


# -- reading -------------------------------------------------------------------------------


def _read_object(url: str, registry: ObjectStoreRegistry) -> bytes:
    """The whole object: one request (with its size) up to 1 MiB, two up to 8 MiB."""
    from virtualizarr.io import open_source

    with open_source(url, registry) as src:  # FileNotFoundError / SourceReadError name url
        return src.read(0, src.size)


def _exists(url: str, registry: ObjectStoreRegistry) -> bool:
    """Whether anything is stored under the prefix ``url`` (one listing)."""
    from virtualizarr.io.objects import any_object

    try:
        return any_object(url, registry)
    except (ListingNotSupportedError, OSError, ValueError):  # cannot list: assume it is there
        return True


def _loads(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply
        raise ParserError(f"{where} is not valid JSON: {type(e).__name__}: {e}") from e


def _doc(value: Any, url: str, key: str) -> dict[str, Any]:
    """A metadata document given as a dict or as JSON text."""
    try:
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str):
            if value.startswith("base64:"):
                value = base64.b64decode(value[7:]).decode()
            value = json.loads(value)
    except (ValueError, RecursionError) as e:  # Unicode/binascii/JSONDecodeError included
        raise ParserError(f"{url}: {key} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise ParserError(f"{url}: {key} is not a JSON object: {value!r:.80}")
    return value


def _render(
    text: str, templates: Mapping[str, str], context: Mapping[str, Any] | None = None
) -> str:
    """Substitute ``{{name}}`` templates; anything more needs jinja2 (as fsspec does)."""
    if "{{" not in text and "{%" not in text:
        return text
    names = {**templates, **(context or {})}
    simple = _SIMPLE_TEMPLATE.sub(lambda m: str(names[m[1]]) if m[1] in names else m[0], text)
    if "{{" not in simple and "{%" not in simple:
        return simple
    return _jinja_template(text).render(**templates, **(context or {}))


@functools.lru_cache(maxsize=256)
def _jinja_template(text: str) -> Any:
    """``text`` compiled once: a ``gen`` entry renders the same template for every key."""
    try:
        import jinja2.sandbox
    except ImportError as e:
        raise UnsupportedFeatureError(f"Rendering the template {text!r} needs jinja2.") from e
    return jinja2.sandbox.SandboxedEnvironment().from_string(text)


def _expand(doc: dict[str, Any], url: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The flat refs of a version 0 or 1 document, with ``gen`` entries generated."""
    version = doc.get("version")
    if version is None:
        return doc, {}
    if version != 1:
        raise UnsupportedFeatureError(
            f"{url}: kerchunk reference version {version!r} is unknown (0 and 1 are)."
        )
    templates = {str(k): str(v) for k, v in (doc.get("templates") or {}).items()}
    templates = {k: _render(v, templates) for k, v in templates.items()}
    refs = dict(doc.get("refs") or {})
    for gen in doc.get("gen") or []:
        refs.update(_generate(gen, templates, url))
    return refs, templates


_MAX_GEN_KEYS = 1 << 22
"""Most references one ``gen`` entry may generate (each costs a Python dict entry)."""


def _generate(gen: dict[str, Any], templates: dict[str, str], url: str) -> dict[str, list[Any]]:
    import itertools

    try:
        dims = {
            k: v if isinstance(v, list) else range(v.get("start", 0), v["stop"], v.get("step", 1))
            for k, v in gen["dimensions"].items()
        }
        total = math.prod(len(v) for v in dims.values())
        if total > _MAX_GEN_KEYS:
            raise ParserError(
                f"{url}: a 'gen' entry would generate {total} references (dimensions "
                f"{ {k: len(v) for k, v in dims.items()} }), more than the {_MAX_GEN_KEYS} "
                "this parser expands; the entry is corrupt or needs splitting."
            )
        out: dict[str, list[Any]] = {}
        for values in itertools.product(*dims.values()):
            ctx = dict(zip(dims, values))
            key, target = _render(gen["key"], templates, ctx), _render(gen["url"], templates, ctx)
            if ("offset" in gen) != ("length" in gen):
                raise ParserError(f"{url}: a gen entry has only one of 'offset' and 'length'.")
            if "offset" in gen:
                off = int(_render(str(gen["offset"]), templates, ctx))
                out[key] = [target, off, int(_render(str(gen["length"]), templates, ctx))]
            else:
                out[key] = [target]
    except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as e:
        if isinstance(e, ParserError):
            raise
        raise ParserError(f"{url}: malformed 'gen' entry {gen!r:.200}: {e!r}") from e
    return out


def _split_refs(
    refs: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, tuple[list[str], list[Any]]]]:
    """Metadata documents, and chunk keys/values grouped by the path before the last '/'."""
    meta: dict[str, Any] = {}
    chunks: dict[str, tuple[list[str], list[Any]]] = {}
    for key, value in refs.items():
        if key.endswith(_META_SUFFIXES) and key.rpartition("/")[2] in _META_SUFFIXES:
            meta[key] = value
            continue
        head, _, tail = key.rpartition("/")
        entry = chunks.get(head)
        if entry is None:
            entry = chunks[head] = ([], [])
        entry[0].append(tail)
        entry[1].append(value)
    return meta, chunks


# -- chunk sources -------------------------------------------------------------------------


class _Columns:
    """Present chunks of one array: flat C-order positions, ids into ``urls`` (``-1`` for
    inlined chunks), offsets, lengths, which references are whole files, and inlined bytes
    by position."""

    def __init__(
        self,
        pos: np.ndarray,
        urls: list[str],
        ids: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        whole: np.ndarray,
        inline: dict[int, bytes],
    ) -> None:
        self.pos, self.urls, self.ids = pos, urls, ids
        self.offsets, self.lengths, self.whole, self.inline = offsets, lengths, whole, inline

    @classmethod
    def empty(cls) -> _Columns:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, [], z, z, z, z.astype(bool), {})


def _inline_bytes(value: str | bytes) -> bytes:
    if isinstance(value, str):
        if value.startswith("base64:"):  # strict: a stray character must not drop bytes silently
            return base64.b64decode("".join(value[7:].split()), validate=True)
        return value.encode()
    return bytes(value)


class _JSONChunks:
    def __init__(
        self, chunks: dict[str, tuple[list[str], list[Any]]], templates: dict[str, str]
    ) -> None:
        self._chunks = chunks
        self.templates = templates

    def regroup(self, arrays: dict[str, str]) -> None:
        """Move ``a/0/1``-style keys (``/`` separators) under their array ``a``."""
        for head in [h for h in self._chunks if h not in arrays]:
            parts = head.split("/")
            for i in range(len(parts) - 1, 0, -1):
                owner = "/".join(parts[:i])
                if arrays.get(owner) == "/":
                    rest = "/".join(parts[i:])
                    keys, vals = self._chunks.pop(head)
                    dest = self._chunks.setdefault(owner, ([], []))
                    dest[0].extend(f"{rest}/{k}" for k in keys)
                    dest[1].extend(vals)
                    break

    def columns(self, path: str, grid: tuple[int, ...], sep: str) -> _Columns:
        keys, vals = self._chunks.get(path, ([], []))
        check_grid(grid, len(keys))  # before anything of the grid's size is allocated
        pos = _positions(keys, grid, sep, path)
        table: dict[str, int] = {}
        ids = np.full(len(vals), -1, dtype=np.int64)
        offsets = np.zeros(len(vals), dtype=np.int64)
        lengths = np.zeros(len(vals), dtype=np.int64)
        whole = np.zeros(len(vals), dtype=bool)
        inline: dict[int, bytes] = {}
        for i, v in enumerate(vals):
            try:
                if type(v) is list and len(v) in (1, 3) and isinstance(v[0], str):
                    ids[i] = table.setdefault(v[0], len(table))
                    if len(v) == 3:
                        offsets[i], lengths[i] = int(v[1]), int(v[2])
                    else:
                        whole[i] = True
                elif isinstance(v, (str, bytes)):
                    inline[int(pos[i])] = _inline_bytes(v)
                else:
                    raise TypeError("expected [url, offset, length], [url], text or 'base64:...'")
            except (TypeError, ValueError, OverflowError) as e:  # binascii.Error: a ValueError
                raise ParserError(
                    f"chunk {path}/{keys[i]}: {v!r:.80} is not a kerchunk reference: {e}"
                ) from e
        return _Columns(pos, list(table), ids, offsets, lengths, whole, inline)


def _positions(keys: list[str], grid: tuple[int, ...], sep: str, path: str) -> np.ndarray:
    """Flat C-order chunk numbers of chunk keys (vectorised; errors name the array)."""
    if not keys:
        return np.zeros(0, dtype=np.int64)
    if not grid:
        if any(k not in ("0", "c") for k in keys):
            raise ParserError(f"array {path!r} is 0-d but has chunk keys {keys[:3]!r}.")
        return np.zeros(len(keys), dtype=np.int64)
    text = "\n".join(keys)
    if sep != "\n":
        text = text.replace(sep, "\n")
    try:
        idx = np.array(text.split("\n"), dtype=np.int64)
    except (ValueError, OverflowError) as e:
        raise ParserError(
            f"array {path!r} has a chunk key that is not {sep!r}-joined integers: {e}"
        ) from e
    if idx.size != len(keys) * len(grid):
        raise ParserError(f"array {path!r} has chunk keys with other than {len(grid)} indices.")
    idx = idx.reshape(len(keys), len(grid))
    if (idx < 0).any() or (idx >= np.array(grid)).any():
        bad = keys[int(np.argmax(((idx < 0) | (idx >= np.array(grid))).any(axis=1)))]
        raise ParserError(f"chunk key {path}/{bad} lies outside the chunk grid {grid}.")
    return np.asarray(np.ravel_multi_index(tuple(idx.T), grid))


_MAX_UNLISTED_RECORDS = 100_000


class _ParquetChunks:
    templates: dict[str, str] = {}  # noqa: RUF012  (parquet references have no templates)

    def __init__(self, base: str, record_size: int, registry: ObjectStoreRegistry) -> None:
        self.base, self.record_size, self.registry = base, record_size, registry

    def regroup(self, arrays: dict[str, str]) -> None:
        pass

    def columns(self, path: str, grid: tuple[int, ...], sep: str) -> _Columns:
        import pyarrow as pa

        n = math.prod(grid)
        n_records = math.ceil(n / self.record_size)
        records: Sequence[int] = range(n_records)
        present = self._record_files(path)
        if present is not None:  # read only the record files there are
            records = [r for r in sorted(present) if r < n_records]
        elif len(records) > _MAX_UNLISTED_RECORDS:
            raise ParserError(
                f"{self.base}/{path} would need {len(records)} record files read one by one "
                f"(its store cannot list them): the chunk grid {list(grid)} is corrupt."
            )
        check_grid(grid, len(records) * self.record_size)
        tables = []
        for rec in records:
            try:
                data = _read_object(f"{self.base}/{path}/refs.{rec}.parq", self.registry)
            except FileNotFoundError:
                continue  # fsspec reads an absent record file as missing chunks
            want = min(self.record_size, n - rec * self.record_size)
            tables.append(
                (rec * self.record_size, _read_record(data, want, f"{path}/refs.{rec}.parq"))
            )
        if not tables:
            return _Columns.empty()
        starts = np.concatenate([s + np.arange(t.num_rows) for s, t in tables])
        t = pa.concat_tables([t for _, t in tables], promote_options="permissive")
        return _parquet_columns(t, starts)

    def _record_files(self, path: str) -> set[int] | None:
        """Numbers of the ``refs.<i>.parq`` files of ``path`` (one listing), if the store lists."""
        from virtualizarr.io.objects import list_objects

        try:
            names, _ = list_objects(f"{self.base}/{path}", self.registry)
        except (ListingNotSupportedError, OSError):  # HTTP and other stores that cannot list
            return None
        found: set[int] = set()
        for full in names:
            name = full.rsplit("/", 1)[-1]
            num = name[5:-5] if name.startswith("refs.") and name.endswith(".parq") else ""
            if num.isdecimal():
                found.add(int(num))
        return found


def _read_record(data: bytes, rows: int, where: str) -> Any:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        t = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as e:
        raise ParserError(f"{where} is not a readable parquet file: {e}") from e
    missing = {"path", "offset", "size", "raw"} - set(t.column_names)
    if missing - {"raw"} and missing != {"path", "offset", "size"}:
        raise ParserError(f"{where} lacks the columns {sorted(missing)}.")
    cols = {}
    for name, typ in (
        ("path", pa.string()),
        ("offset", pa.int64()),
        ("size", pa.int64()),
        ("raw", pa.binary()),
    ):
        col = (
            t.column(name).combine_chunks() if name in t.column_names else pa.nulls(t.num_rows, typ)
        )
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        cols[name] = col.cast(typ)
    return pa.table(cols).slice(0, rows)


def _parquet_columns(t: Any, pos: np.ndarray) -> _Columns:
    import pyarrow.compute as pc

    raw_valid = pc.is_valid(t.column("raw")).to_numpy(zero_copy_only=False)
    path_col = t.column("path").combine_chunks().dictionary_encode()
    ids = path_col.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    ids[raw_valid] = -1  # fsspec: inlined bytes win over a path
    offsets = t.column("offset").fill_null(0).to_numpy().astype(np.int64)
    lengths = t.column("size").fill_null(0).to_numpy().astype(np.int64)
    whole = (ids >= 0) & (offsets == 0) & (lengths == 0)  # fsspec: [url, 0, 0] is the whole file
    raws = t.column("raw").filter(pc.is_valid(t.column("raw"))).to_pylist()
    inline = dict(zip(pos[raw_valid].tolist(), raws))
    keep = (ids >= 0) | raw_valid
    urls = path_col.dictionary.to_pylist()
    return _Columns(pos[keep], urls, ids[keep], offsets[keep], lengths[keep], whole[keep], inline)


# -- assembling the store ------------------------------------------------------------------


def _with_sources(store: ManifestStore, doc: Any) -> ManifestStore:
    """``store`` with the source records a writer kept beside the references, if any."""
    from virtualizarr.manifests.sources import group_with_records, records_from_json

    records = records_from_json(doc.get("virtualizarr"))
    if not records:
        return store
    return ManifestStore(group_with_records(store.group, records), registry=store.registry)


class _Builder:
    def __init__(
        self,
        opts: _Options,
        url: str,
        registry: ObjectStoreRegistry,
        meta: dict[str, Any],
        source: Any,
    ) -> None:
        self.opts, self.url, self.registry, self.source = opts, url, registry, source
        self.meta = meta
        root = opts.fs_root if opts.fs_root is not None else url.rsplit("/", 1)[0]
        self.root = normalize_path(root).rstrip("/")
        self.templates: dict[str, str] = getattr(source, "templates", {})

    def _get(self, key: str) -> dict[str, Any] | None:
        value = self.meta.get(key)
        return None if value is None else _doc(value, self.url, key)

    def store(self) -> ManifestStore:
        prefix = f"{self.opts.group}/" if self.opts.group else ""
        zarrays = {k[: -len("/.zarray")]: k for k in self.meta if k.endswith("/.zarray")}
        if not zarrays and "zarr.json" in self.meta:
            raise UnsupportedFeatureError(
                f"{self.url} holds Zarr v3 metadata; only Zarr v2 references are read."
            )
        docs = {p: self._get(k) or {} for p, k in zarrays.items()}
        self.source.regroup({p: d.get("dimension_separator") or "." for p, d in docs.items()})
        arrays: dict[str, ManifestArray] = {}
        for path, zarray in docs.items():
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix) :]
            if (
                rel in self.opts.drop_variables
                or rel.rsplit("/", 1)[-1] in self.opts.drop_variables
            ):
                continue
            arrays[rel] = self._array(path, zarray)
        groups = {k[: -len(".zgroup")].rstrip("/") for k in self.meta if k.endswith(".zgroup")}
        if prefix and self.opts.group not in groups and not arrays:
            raise ParserError(f"{self.url} has no group {self.opts.group!r}.")
        return ManifestStore(self._tree(prefix, arrays, groups), registry=self.registry)

    def _attrs(self, path: str) -> dict[str, Any]:
        return self._get(f"{path}/.zattrs" if path else ".zattrs") or {}

    def _tree(
        self, prefix: str, arrays: dict[str, ManifestArray], groups: set[str]
    ) -> ManifestGroup:
        names = {
            g[len(prefix) :] for g in groups if g.startswith(prefix) and g != prefix.rstrip("/")
        }
        for rel in arrays:
            parts = rel.split("/")[:-1]
            names.update("/".join(parts[: i + 1]) for i in range(len(parts)))

        def build(rel: str) -> ManifestGroup:
            pre = f"{rel}/" if rel else ""
            kids = {n for n in names if n.startswith(pre) and "/" not in n[len(pre) :] and n != rel}
            return ManifestGroup(
                arrays=name_missing_dimensions(
                    {
                        k[len(pre) :]: a
                        for k, a in arrays.items()
                        if k.startswith(pre) and "/" not in k[len(pre) :]
                    }
                ),
                groups={k[len(pre) :]: build(k) for k in sorted(kids)},
                attributes=self._attrs((prefix + rel).strip("/")),
            )

        return build("")

    def _array(self, path: str, zarray: dict[str, Any]) -> ManifestArray:
        from virtualizarr.parsers.zarr_v2.meta import v2_metadata

        where = f"{self.url}: variable {path!r}"
        try:
            meta, _, fill_is_null = v2_metadata(zarray, self._attrs(path))
            if not fill_is_null and "_FillValue" not in meta.attributes:
                # xarray's Zarr v2 backend masks fill_value as CF _FillValue: keep that meaning
                meta = with_metadata(
                    meta, attributes={**meta.attributes, "_FillValue": _scalar(meta)}
                )
            grid = chunk_grid_shape(meta.shape, meta.chunks)
            cols = self.source.columns(path, grid, zarray.get("dimension_separator") or ".")
            manifest = self._manifest(cols, grid)
            return ManifestArray(meta, manifest)
        except UnsupportedFeatureError as e:
            raise type(e)(f"{where}: {e} Pass drop_variables=[{path!r}] to skip it.") from e
        except (VirtualiZarrError, InvalidManifestError) as e:
            raise ParserError(f"{where}: {e}") from e

    def _resolve(self, u: str) -> str:
        u = _render(u, self.templates)
        if "://" in u or u.startswith(("/", "file:")):
            return normalize_path(u)
        return f"{self.root}/{u}"

    def _manifest(self, cols: _Columns, grid: tuple[int, ...]) -> ChunkManifest:
        from virtualizarr.io import file_size

        if (cols.offsets < 0).any() or (cols.lengths < 0).any():
            raise ParserError("a chunk reference has a negative offset or length.")
        urls = [self._resolve(u) for u in cols.urls]
        lengths = cols.lengths.copy()
        for i in np.unique(cols.ids[cols.whole]):  # [url]: the whole file, sized once per file
            lengths[(cols.ids == i) & cols.whole] = file_size(urls[int(i)], self.registry)
        n = math.prod(grid)
        ids = np.full(n, MISSING, dtype=np.uint32)
        offsets = np.zeros(n, dtype=np.uint64)
        lens = np.zeros(n, dtype=np.uint64)
        is_ref = cols.ids >= 0
        ids[cols.pos[is_ref]] = cols.ids[is_ref]
        offsets[cols.pos[is_ref]] = cols.offsets[is_ref]
        lens[cols.pos[is_ref]] = lengths[is_ref]
        table: list[str | bytes] = list(urls)
        for p, data in cols.inline.items():
            table.append(data)
            ids[p], lens[p] = len(table) - 1, len(data)
        return ChunkManifest.from_path_ids(
            table=table,
            ids=ids.reshape(grid),
            offsets=offsets.reshape(grid),
            lengths=lens.reshape(grid),
        )


def _scalar(meta: ArrayV3Metadata) -> Any:
    fv = meta.fill_value
    return fv.item() if isinstance(fv, np.generic) else fv
