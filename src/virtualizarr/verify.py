"""``verify``: do the references of a virtual dataset still point at the right bytes?

Checks, in order, each reported per file, variable and chunk:

1. every source file exists and is unchanged since it was virtualized (size and ETag,
   where the references carry a :class:`~virtualizarr.manifests.sources.SourceRecord`);
2. every referenced byte range lies inside its file and is not empty (vectorised over
   the manifests: no chunk is read for this);
3. the chunks decode with the array's codecs (all of them, or a seeded random sample);
4. with ``against_source=True``, the decoded values equal the source read by its own
   reader (netCDF4/h5netcdf/scipy through xarray, for NetCDF3 and NetCDF4/HDF5 files).

>>> # report = verify("refs.json", sample=100)
>>> # report.ok, [str(p) for p in report.problems]
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from virtualizarr.manifests.array import ManifestArray
from virtualizarr.manifests.group import ManifestGroup
from virtualizarr.manifests.manifest import MISSING, normalize_path
from virtualizarr.manifests.sources import SourceRecord, records_of

if TYPE_CHECKING:
    import xarray as xr

    from virtualizarr.registry import ObjectStoreRegistry
    from virtualizarr.store import ManifestStore

__all__ = ["Problem", "VerifyReport", "verify"]

ProblemKind = Literal["missing", "stale", "out_of_range", "empty", "decode", "mismatch"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the references."""

    kind: ProblemKind
    url: str
    """The source file concerned."""
    message: str
    variable: str | None = None
    chunk: str | None = None
    """Chunk key (``"i.j"``) of the first chunk concerned, where one is."""

    def __str__(self) -> str:
        where = self.url
        if self.variable is not None:
            where += f" [{self.variable}"
            where += f" chunk {self.chunk}]" if self.chunk is not None else "]"
        return f"{self.kind}: {where}: {self.message}"


@dataclass
class VerifyReport:
    """What :func:`verify` found: ``problems`` (empty when all is well) and notes."""

    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Things not checked, and why (e.g. a format with no reference reader)."""
    sources: int = 0
    chunks_decoded: int = 0
    values_compared: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = (
            f"{len(self.problems)} problem(s); {self.sources} source file(s), "
            f"{self.chunks_decoded} chunk(s) decoded, {self.values_compared} variable(s) "
            "compared with the source"
        )
        return "\n".join([head, *map(str, self.problems), *(f"note: {n}" for n in self.notes)])


# -- the target -------------------------------------------------------------------------------


def _as_store(target: Any, registry: ObjectStoreRegistry | None) -> ManifestStore:
    from virtualizarr.registry import ObjectStoreRegistry
    from virtualizarr.store import ManifestStore

    registry = registry if registry is not None else ObjectStoreRegistry()
    if isinstance(target, ManifestStore):
        return target
    if isinstance(target, ManifestGroup):
        return ManifestStore(target, registry=registry)
    if isinstance(target, (str, os.PathLike)):
        from virtualizarr.parsers import detect_parser

        url = normalize_path(os.fspath(target))
        return detect_parser(url, registry)(url, registry)
    import xarray as xr

    if isinstance(target, xr.Dataset):
        return target.vz.to_store(registry)
    raise TypeError(
        f"verify takes a Dataset, ManifestStore, ManifestGroup or a path to references, "
        f"got {type(target).__name__}"
    )


def _arrays(group: ManifestGroup) -> dict[str, ManifestArray]:
    return {p: n for p, n in group.walk() if isinstance(n, ManifestArray)}


def _chunk_key(idx: tuple[int, ...]) -> str:
    return ".".join(map(str, idx)) if idx else "0"


# -- the checks -------------------------------------------------------------------------------


def _check_sources(
    urls: list[str],
    recorded: dict[str, SourceRecord],
    registry: ObjectStoreRegistry | None,
    report: VerifyReport,
) -> dict[str, int]:
    """Current sizes of the files that exist; problems for missing and changed ones."""
    sizes: dict[str, int] = {}
    from virtualizarr.io import stat_record

    for url in urls:
        now = stat_record(url, registry)
        if now is None:
            report.problems.append(Problem("missing", url, "the file does not exist"))
            continue
        sizes[url] = now.size
        then = recorded.get(url)
        change = then.changes(now.size, now.etag) if then is not None else None
        if change is not None:
            report.problems.append(
                Problem("stale", url, f"changed since it was virtualized: {change}")
            )
    if urls and not recorded:
        report.notes.append(
            "the references carry no record of their sources' sizes and versions, so only "
            "ranges and decoding were checked (rewrite them with this version to record them)"
        )
    return sizes


def _check_ranges(
    name: str, arr: ManifestArray, sizes: dict[str, int], report: VerifyReport
) -> None:
    m = arr.manifest
    ids, offsets, lengths = m.path_ids, m.offsets, m.lengths
    for i, entry in enumerate(m.table):
        if not isinstance(entry, str) or entry not in sizes:
            continue
        mine = ids == i
        if not mine.any():
            continue
        empty = mine & (lengths == 0)
        if empty.any():
            idx = tuple(int(x) for x in np.argwhere(empty)[0])
            report.problems.append(
                Problem("empty", entry, "a zero-length reference", name, _chunk_key(idx))
            )
        past = mine & (offsets + lengths > np.uint64(sizes[entry]))
        if past.any():
            idx = tuple(int(x) for x in np.argwhere(past)[0])
            n = int(past.sum())
            report.problems.append(
                Problem(
                    "out_of_range",
                    entry,
                    f"{n} reference(s) end past the end of the file ({sizes[entry]} bytes); "
                    f"the first is bytes {int(offsets[idx])}-{int(offsets[idx] + lengths[idx])}",
                    name,
                    _chunk_key(idx),
                )
            )


def _chunks_to_decode(
    arrays: dict[str, ManifestArray], bad_urls: set[str], sample: int | None, seed: int
) -> list[tuple[str, tuple[int, ...]]]:
    picks: list[tuple[str, tuple[int, ...]]] = []
    counts = []
    for name, arr in arrays.items():
        m = arr.manifest
        good = np.array(
            [not (isinstance(t, str) and t in bad_urls) for t in m.table] + [False], dtype=bool
        )
        present = (m.path_ids != MISSING) & good[np.minimum(m.path_ids, len(m.table))]
        counts.append((name, present))
    total = sum(int(p.sum()) for _, p in counts)
    if sample is None or sample >= total:
        for name, present in counts:
            picks.extend((name, tuple(int(x) for x in idx)) for idx in np.argwhere(present))
        return picks
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(total), sample))
    start = 0
    for name, present in counts:
        n = int(present.sum())
        mine = [c - start for c in chosen if start <= c < start + n]
        if mine:
            flat = np.flatnonzero(present)[mine]
            picks.extend(
                (name, tuple(int(x) for x in np.unravel_index(f, present.shape))) for f in flat
            )
        start += n
    return picks


def _open_zarr_array(store: ManifestStore, name: str) -> Any:
    import zarr

    return zarr.open_array(store, path=name, mode="r", zarr_format=3)


def _decode(
    store: ManifestStore,
    arrays: dict[str, ManifestArray],
    picks: list[tuple[str, tuple[int, ...]]],
    report: VerifyReport,
    tick: Callable[[], None],
) -> None:
    from virtualizarr.pipeline import checked

    opened: dict[str, Any] = {}
    # arrays opened in here raise ChunkReadError naming the file, range and chunk of bad bytes
    with checked():
        for name, idx in picks:
            url = ""
            entry = arrays[name].manifest.get_entry(idx)
            if entry is not None:
                url = str(entry.get("path", "<inlined>"))
            try:
                if name not in opened:
                    opened[name] = _open_zarr_array(store, name)
                opened[name].get_block_selection(idx if idx else ())
                report.chunks_decoded += 1
            except Exception as e:  # noqa: BLE001 (every failure to read or decode is reported)
                report.problems.append(
                    Problem("decode", url, f"{type(e).__name__}: {e}", name, _chunk_key(idx))
                )
            tick()


# -- against the source's own reader ------------------------------------------------------------


def _reference_reader(head: bytes) -> str | None:
    """xarray engine that reads a file starting with ``head`` independently of us."""
    import importlib.util

    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        for engine, module in (("netcdf4", "netCDF4"), ("h5netcdf", "h5netcdf")):
            if importlib.util.find_spec(module):
                return engine
    elif head[:3] == b"CDF":
        for engine, module in (("netcdf4", "netCDF4"), ("scipy", "scipy")):
            if importlib.util.find_spec(module):
                return engine
    return None


def _file_region(arr: ManifestArray, url: str) -> tuple[slice, ...] | None:
    """Element slices of ``arr`` whose chunks all come from ``url``, if they form a box."""
    m = arr.manifest
    try:
        i = next(k for k, t in enumerate(m.table) if isinstance(t, str) and t == url)
    except StopIteration:
        return None
    mine = m.path_ids == i
    where = np.argwhere(mine)
    if where.size == 0:
        return None
    lo, hi = where.min(axis=0), where.max(axis=0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    if int(mine[box].sum()) != len(where):
        return None
    chunks = arr.chunks
    return tuple(slice(s.start * c, min(s.stop * c, n)) for s, c, n in zip(box, chunks, arr.shape))


def _compare_with_source(
    store: ManifestStore,
    arrays: dict[str, ManifestArray],
    urls: list[str],
    registry: ObjectStoreRegistry | None,
    report: VerifyReport,
) -> None:
    import warnings

    import xarray as xr

    from virtualizarr.io import read_range

    for url in urls:
        local = (registry or _default_registry()).local_path(url)
        if local is None:
            report.notes.append(f"{url}: not compared with its source (not a local file)")
            continue
        engine = _reference_reader(read_range(url, 0, 8, registry))
        if engine is None:
            report.notes.append(f"{url}: not compared with its source (no reference reader)")
            continue
        by_group: dict[str, list[str]] = {}
        for name in arrays:
            group, _, var = name.rpartition("/")
            by_group.setdefault(group, []).append(var)
        for group, names in by_group.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    ref = xr.open_dataset(
                        local,
                        engine=engine,
                        group=group or None,
                        decode_cf=False,
                        mask_and_scale=False,
                        decode_times=False,
                    )
                except Exception as e:  # noqa: BLE001 (reported as a note)
                    report.notes.append(f"{url}: {engine} cannot open group {group!r}: {e}")
                    continue
            with ref:
                for var in names:
                    _compare_one(store, arrays, group, var, url, ref, report)


def _compare_one(
    store: ManifestStore,
    arrays: dict[str, ManifestArray],
    group: str,
    var: str,
    url: str,
    ref: xr.Dataset,
    report: VerifyReport,
) -> None:
    name = f"{group}/{var}" if group else var
    region = _file_region(arrays[name], url)
    if region is None or var not in ref.variables:
        return
    try:
        theirs = np.asarray(ref.variables[var].values)
    except Exception as e:  # noqa: BLE001 (the source's own reader fails: reported)
        report.problems.append(
            Problem("mismatch", url, f"the file's own reader fails: {type(e).__name__}: {e}", name)
        )
        return
    try:
        ours = np.asarray(_open_zarr_array(store, name)[region])
    except Exception:  # noqa: BLE001 (already reported chunk by chunk when decoding)
        return
    if ours.shape != theirs.shape:
        report.notes.append(
            f"{url} [{name}]: not compared: shape {ours.shape} here, {theirs.shape} in the file"
        )
        return
    same = (
        np.array_equal(ours, theirs, equal_nan=True)
        if ours.dtype.kind in "fc"
        else np.array_equal(ours, theirs)
    )
    report.values_compared += 1
    if not same:
        bad = np.argwhere(ours != theirs)
        first = tuple(int(x) for x in bad[0]) if bad.size else ()
        report.problems.append(
            Problem(
                "mismatch",
                url,
                f"values differ from the file read by its own reader "
                f"({len(bad)} element(s); first at {first}: {ours[first]!r} != {theirs[first]!r})",
                name,
            )
        )


def _default_registry() -> ObjectStoreRegistry:
    from virtualizarr.registry import ObjectStoreRegistry

    return ObjectStoreRegistry()


def _urls(arrays: dict[str, ManifestArray]) -> list[str]:
    seen: dict[str, None] = {}
    for arr in arrays.values():
        for p in arr.manifest.used_paths():
            seen.setdefault(str(p), None)
    return list(seen)


def verify(
    target: xr.Dataset | ManifestStore | ManifestGroup | str | os.PathLike[str],
    *,
    sample: int | None = None,
    against_source: bool = False,
    registry: ObjectStoreRegistry | None = None,
    seed: int = 0,
    progress: Callable[[int], Iterator[None]] | None = None,
) -> VerifyReport:
    """Check that ``target``'s references point at existing, unchanged, decodable bytes.

    Parameters
    ----------
    target
        A virtual Dataset, a ManifestStore/ManifestGroup, or a path/URL of kerchunk
        references (JSON file or parquet directory).
    sample
        Decode a seeded random sample of this many chunks instead of all of them.
    against_source
        Also compare decoded values with each source file read by its own reader.
    progress
        ``progress(total)`` returns an iterator advanced once per decoded chunk (a
        progress bar); ``None`` for none.

    Examples
    --------
    >>> # verify(ds).ok
    >>> # print(verify("refs.json", sample=50, against_source=True))
    """
    if sample is not None and (not isinstance(sample, int) or sample < 0):
        raise ValueError(f"sample must be a whole number >= 0, got {sample!r}")
    store = _as_store(target, registry)
    registry = store.registry
    arrays = _arrays(store.group)
    urls = _urls(arrays)
    report = VerifyReport(sources=len(urls))
    recorded = records_of(a.manifest for a in arrays.values())
    sizes = _check_sources(urls, recorded, registry, report)
    for name, arr in arrays.items():
        _check_ranges(name, arr, sizes, report)
    bad = {p.url for p in report.problems}
    picks = _chunks_to_decode(arrays, bad, sample, seed)
    bar = progress(len(picks)) if progress is not None else None

    def tick() -> None:
        if bar is not None:
            next(bar, None)

    _decode(store, arrays, picks, report, tick)
    if against_source:
        _compare_with_source(store, arrays, [u for u in urls if u not in bad], registry, report)
    return report
