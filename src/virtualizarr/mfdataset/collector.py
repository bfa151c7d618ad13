"""Compact parts of many files in columns: one path table, numpy grids per variable.

A worker collects its batch into a :class:`Collector` (stacked grids, the batch's path
table, each distinct metadata once); the client merges batches with a few numpy
operations each, so it does no Python work per chunk and almost none per file.
"""

from __future__ import annotations

import bisect
import math
from array import array
from typing import Any

import numpy as np
from zarr.core.metadata.v3 import ArrayV3Metadata

from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.manifest import MISSING
from virtualizarr.manifests.metadata import fill_values_equal
from virtualizarr.mfdataset.parts import FilePart

__all__ = ["Collector"]


def _same(a: Any, b: Any) -> bool:
    """Equality that never raises (attribute dicts may hold numpy arrays)."""
    if a is b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and _values_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, ArrayV3Metadata) and isinstance(b, ArrayV3Metadata):
        # not dataclass ==: a NaN fill value (common) would make equal metadata differ
        return (
            a.shape == b.shape
            and a.data_type == b.data_type
            and a.chunk_grid == b.chunk_grid
            and a.chunk_key_encoding == b.chunk_key_encoding
            and a.codecs == b.codecs
            and a.dimension_names == b.dimension_names
            and a.storage_transformers == b.storage_transformers
            and fill_values_equal(a.fill_value, b.fill_value)
            and _same(a.attributes, b.attributes)
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True  # NaN attributes (_FillValue, missing_value) are equal
    try:
        return bool(a == b)
    except (ValueError, TypeError):
        return False


class _Interner:
    """Return an earlier object equal to ``obj`` (so files share repeated metadata/attrs)."""

    def __init__(self) -> None:
        self._last: dict[Any, Any] = {}

    def __call__(self, key: Any, obj: Any) -> Any:
        last = self._last.get(key)
        if last is not None and _same(last, obj):
            return last
        self._last[key] = obj
        return obj


_BLOCK = 1024
"""Files per block: every this many, a column's per-file grids are stacked into one array."""


class _Virtual:
    """One virtual variable over all files: interned metadata and manifest grids per file.

    Grids arrive one small array per file (~110 bytes of numpy header each, three per file);
    every ``_BLOCK`` files they are stacked into one ``(files, *grid)`` array per field, so a
    file costs its chunks' 20 bytes each plus a few pointers.
    """

    def __init__(self) -> None:
        self.files = array("q")  # the file of each row (files may lack a variable)
        self.metas: list[Any] = []
        self.blocks: list[tuple[Any, Any, Any]] = []  # stacked arrays, or lists of rows
        self.starts: list[int] = []  # first row of each block
        self._pending: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])

    def append(self, ids: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> None:
        for lst, a in zip(self._pending, (ids, offsets, lengths)):
            lst.append(a)
        if len(self._pending[0]) >= _BLOCK:
            self.flush()

    def flush(self) -> None:
        rows = self._pending
        if not rows[0]:
            return
        self.starts.append(len(self.metas) - len(rows[0]))
        if len({a.shape for a in rows[0]}) == 1:
            self.blocks.append(tuple(np.stack(lst) for lst in rows))  # type: ignore[arg-type]
        else:  # grids differ between files (rare): keep the rows
            self.blocks.append(rows)
        self._pending = ([], [], [])

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.flush()
        i = _row_of(self.files, i)
        b = bisect.bisect_right(self.starts, i) - 1
        k = i - self.starts[b]
        ids, offsets, lengths = self.blocks[b]
        return ids[k], offsets[k], lengths[k]

    def uniform_grid(self) -> tuple[int, ...] | None:
        """The grid every file shares, or None."""
        self.flush()
        shapes = set()
        for ids, _, _ in self.blocks:
            if isinstance(ids, list):
                return None
            shapes.add(ids.shape[1:])
        return shapes.pop() if len(shapes) == 1 else None


def _row_of(files: array, i: int) -> int:
    """The row of file ``i`` in a column whose rows are the files ``files`` (increasing)."""
    if len(files) == files[-1] + 1:  # every file so far has the variable
        return i
    return bisect.bisect_left(files, i)


class _Loaded:
    """One loaded variable over all files: stored values, ``None`` where equal to the first,
    raw ``bytes`` where they have the first's dtype and shape (see :func:`_pack`)."""

    def __init__(self) -> None:
        self.files = array("q")
        self.dims: list[tuple[str, ...]] = []
        self.attrs: list[dict[str, Any]] = []
        self.values: list[np.ndarray | bytes | None] = []

    def first(self) -> np.ndarray | None:
        """The first file's values (always kept as an array), or None before any file."""
        v = self.values[0] if self.values else None
        assert v is None or isinstance(v, np.ndarray)
        return v


def _pack(values: np.ndarray, first: np.ndarray | None) -> np.ndarray | bytes:
    """``values`` as bytes when they are numbers of ``first``'s dtype and shape: a file's
    ``time`` then costs ~50 bytes instead of a ~230-byte numpy array (23 MB at 100k files)."""
    if (
        first is not None
        and values.dtype == first.dtype
        and values.shape == first.shape
        and values.dtype.kind in "biufcmM"
    ):
        return np.ascontiguousarray(values).tobytes()
    return values


def _unpack(v: np.ndarray | bytes, first: np.ndarray) -> np.ndarray:
    """The values :func:`_pack` packed relative to ``first`` (read-only when they were bytes)."""
    if isinstance(v, bytes):
        return np.frombuffer(v, dtype=first.dtype).reshape(first.shape)
    return v


class Collector:
    """Compact parts of many files: one global path table, numpy grids per variable."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.names: list[tuple[tuple[str, bool], ...]] = []
        self.attrs: list[dict[str, Any]] = []
        self.virtual: dict[str, _Virtual] = {}
        self.loaded: dict[str, _Loaded] = {}
        self.table: dict[str | bytes, int] = {}
        self._intern = _Interner()

    def __len__(self) -> int:
        return len(self.sources)

    def add(self, part: FilePart) -> None:
        source = part.source
        for arr in part.virtual.values():  # share the path string with the table's entry
            source = next((t for t in arr.manifest.table if t == source), source)
            break
        self.sources.append(source)
        self.names.append(self._intern("names", part.names))
        self.attrs.append(self._intern("attrs", part.attrs))
        i = len(self.sources) - 1
        for name, arr in part.virtual.items():
            col = self.virtual.setdefault(name, _Virtual())
            col.files.append(i)
            col.metas.append(self._intern(("meta", name), arr.metadata))
            m = arr.manifest
            remap = np.fromiter(
                (self.table.setdefault(t, len(self.table)) for t in m.table),
                dtype=np.uint32,
                count=len(m.table),
            )
            ext = np.append(remap, MISSING)
            col.append(ext[np.minimum(m.path_ids, len(remap))], m.offsets, m.lengths)
        for name, (dims, attrs, values) in part.loaded.items():
            lcol = self.loaded.setdefault(name, _Loaded())
            lcol.files.append(i)
            lcol.dims.append(self._intern(("dims", name), dims))
            lcol.attrs.append(self._intern(("lattrs", name), attrs))
            first = lcol.first()
            same = first is not None and _values_equal(first, values)
            lcol.values.append(None if same else _pack(values, first))

    def table_tuple(self) -> tuple[str | bytes, ...]:
        return tuple(self.table)

    def array(self, name: str, i: int, table: tuple[str | bytes, ...]) -> ManifestArray:
        """File ``i``'s virtual variable ``name`` (ids into the global ``table``)."""
        col = self.virtual[name]
        ids, offsets, lengths = col.row(i)
        manifest = ChunkManifest.from_path_ids(
            table=table, ids=ids, offsets=offsets, lengths=lengths, normalize=False
        )
        return ManifestArray(col.metas[_row_of(col.files, i)], manifest)

    def values(self, name: str, i: int) -> np.ndarray:
        col = self.loaded[name]
        v = col.values[_row_of(col.files, i)]
        first = col.first()
        assert first is not None
        return first if v is None else _unpack(v, first)

    def concat_values(self, name: str, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """Every file's values of ``name`` concatenated along ``axis``, and each file's length
        along it. When every file's values have the first's dtype and shape (packed), one
        join of their bytes: no numpy array per file."""
        col = self.loaded[name]
        first = col.first()
        assert first is not None
        n = len(self)
        if len(col.files) == n and all(v is None or isinstance(v, bytes) for v in col.values[1:]):
            head = np.ascontiguousarray(first).tobytes()
            buf = bytearray().join(head if v is None else v for v in [None, *col.values[1:]])
            stacked = np.frombuffer(buf, dtype=first.dtype).reshape((n, *first.shape))
            shape = list(first.shape)
            shape[axis] *= n
            # files outermost along `axis`, as np.concatenate lays them out
            out = np.moveaxis(stacked, 0, axis).reshape(shape)
            return out, np.full(n, first.shape[axis])
        parts = [self.values(name, i) for i in range(n)]
        return np.concatenate(parts, axis=axis), np.array([p.shape[axis] for p in parts])

    def merge(self, other: Collector) -> None:
        """Append the files of ``other`` (a batch collected in a worker) after these.

        Work per batch and per distinct object, plus C-level list extends: the client does
        no Python work per chunk and almost none per file.
        """
        base = len(self.sources)
        if base:  # our interner forgets across pickling: seed it with our latest objects
            self._intern("names", self.names[-1])
            self._intern("attrs", self.attrs[-1])
            for name, vc in self.virtual.items():
                self._intern(("meta", name), vc.metas[-1])
            for name, lc in self.loaded.items():
                self._intern(("dims", name), lc.dims[-1])
                self._intern(("lattrs", name), lc.attrs[-1])
        remap = np.fromiter(
            (self.table.setdefault(t, len(self.table)) for t in other.table),
            dtype=np.uint32,
            count=len(other.table),
        )
        ext = np.append(remap, MISSING)
        canon: dict[int, Any] = {}

        def intern(key: Any, objs: list[Any]) -> list[Any]:
            for o in objs:
                if id(o) not in canon:
                    canon[id(o)] = self._intern(key, o)
            return [canon[id(o)] for o in objs]

        shared = {t: t for t in other.table if isinstance(t, str)}
        self.sources.extend(shared.get(s, s) for s in other.sources)
        self.names.extend(intern("names", other.names))
        self.attrs.extend(intern("attrs", other.attrs))
        for name, oc in other.virtual.items():
            oc.flush()
            col = self.virtual.setdefault(name, _Virtual())
            col.flush()
            rows = len(col.metas)
            col.files.extend(f + base for f in oc.files)
            col.metas.extend(intern(("meta", name), oc.metas))
            for start, (ids, offsets, lengths) in zip(oc.starts, oc.blocks):
                col.starts.append(rows + start)
                if isinstance(ids, list):
                    ids = [ext[np.minimum(a, len(remap))] for a in ids]
                else:
                    ids = ext[np.minimum(ids, len(remap))]
                col.blocks.append((ids, offsets, lengths))
        for name, ol in other.loaded.items():
            lcol = self.loaded.setdefault(name, _Loaded())
            lcol.files.extend(f + base for f in ol.files)
            lcol.dims.extend(intern(("dims", name), ol.dims))
            lcol.attrs.extend(intern(("lattrs", name), ol.attrs))
            theirs = ol.first()
            assert theirs is not None
            mine = lcol.first()
            same = mine is not None and _values_equal(mine, theirs)
            if not lcol.values:
                lcol.values.extend(ol.values)
            elif same:
                lcol.values.extend(None if v is None else v for v in [None, *ol.values[1:]])
            else:  # their "same as first" and packing are relative to their first, not ours
                assert mine is not None
                lcol.values.extend(
                    _pack(theirs if v is None else _unpack(v, theirs), mine) for v in ol.values
                )

    def __getstate__(self) -> dict[str, Any]:
        # metadata as dicts, each distinct one once (zarr's metadata objects pickle slowly)
        metas: dict[int, int] = {}
        docs: list[dict[str, Any]] = []
        virtual = {}
        for name, col in self.virtual.items():
            col.flush()
            idx = []
            for m in col.metas:
                if id(m) not in metas:
                    metas[id(m)] = len(docs)
                    docs.append(m.to_dict())
                idx.append(metas[id(m)])
            virtual[name] = (col.files, idx, col.starts, col.blocks)
        state = dict(self.__dict__)
        state.update(virtual=virtual, metas=docs, _intern=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from virtualizarr.manifests.metadata import metadata_from_dict

        metas = [metadata_from_dict(d) for d in state.pop("metas")]
        virtual = state.pop("virtual")
        self.__dict__.update(state)
        self._intern = _Interner()
        self.virtual = {}
        for name, (files, idx, starts, blocks) in virtual.items():
            col = _Virtual()
            col.files, col.starts, col.blocks = files, starts, blocks
            col.metas = [metas[k] for k in idx]
            self.virtual[name] = col

    def part(self, i: int, table: tuple[str | bytes, ...]) -> FilePart:
        """File ``i`` as a :class:`FilePart` again (for the general combine)."""
        names = self.names[i]
        return FilePart(
            source=self.sources[i],
            names=names,
            attrs=self.attrs[i],
            virtual={n: self.array(n, i, table) for n, ld in names if not ld},
            loaded={
                n: (self.loaded[n].dims[i], self.loaded[n].attrs[i], self.values(n, i))
                for n, ld in names
                if ld
            },
        )


def _values_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))
