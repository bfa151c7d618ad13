"""What a source file looked like when it was virtualized: its size and version tag.

A reference is trusted only while its file is unchanged. Parsers record each source's
:class:`SourceRecord` (from the first request they make), the record travels with the
manifests through every combine, writers persist it, and ``virtualizarr verify`` and
``ManifestStore`` compare it with the file as it is now.

The record rides on the path itself: a manifest's table of distinct paths holds
:class:`SourceURL` strings, which compare and hash as plain ``str`` (so merging tables,
slicing, pickling and writing need no extra bookkeeping) but carry ``.record``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from virtualizarr.manifests.group import ManifestGroup
    from virtualizarr.manifests.manifest import ChunkManifest

__all__ = [
    "SourceRecord",
    "SourceURL",
    "group_with_records",
    "records_from_json",
    "records_of",
    "with_records",
]


@dataclass(frozen=True)
class SourceRecord:
    """Size and ETag of one source file at the time it was virtualized.

    Local files have an ETag too: inode, modification time and size, as obstore's
    ``LocalStore`` spells it.

    >>> rec = SourceRecord("file:///data/a.nc", 100, "1-2-64")
    >>> rec.check(100, "1-2-64")  # unchanged: nothing happens
    >>> rec.to_json()
    {'size': 100, 'etag': '1-2-64'}
    """

    url: str
    size: int
    """Length of the file in bytes."""
    etag: str | None = None
    """The object store's ETag (``None`` where the store gives none)."""

    def to_json(self) -> dict[str, Any]:
        """The record as JSON (without the URL, which keys it)."""
        out: dict[str, Any] = {"size": int(self.size)}
        if self.etag is not None:
            out["etag"] = self.etag
        return out

    @classmethod
    def from_json(cls, url: str, doc: Mapping[str, Any]) -> SourceRecord:
        """The record from :meth:`to_json`'s output; ``ValueError`` if it is not one."""
        try:
            etag = doc.get("etag")
            return cls(url=url, size=int(doc["size"]), etag=None if etag is None else str(etag))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not a source record: {doc!r}") from e

    def changes(self, size: int, etag: str | None) -> str | None:
        """How a file of ``size`` bytes and ``etag`` differs from this record, if it does.

        Size always counts, the ETag when both sides have one.

        >>> SourceRecord("file:///a.nc", 10).changes(12, None)
        'it was 10 bytes (ETag None), it is now 12 bytes (ETag None)'
        """
        if size != self.size or (etag is not None and self.etag is not None and etag != self.etag):
            return (
                f"it was {self.size} bytes (ETag {self.etag}), it is now {size} bytes (ETag {etag})"
            )
        return None

    def check(self, size: int, etag: str | None, *, when: str = "") -> None:
        """Raise :class:`~virtualizarr.errors.SourceChangedError` if the file now differs."""
        change = self.changes(size, etag)
        if change is not None:
            from virtualizarr.errors import SourceChangedError

            raise SourceChangedError(
                f"{self.url} changed{when}: {change}. Its chunk references point at the old "
                "version; virtualize the file again."
            )


class SourceURL(str):
    """A path that remembers its file's :class:`SourceRecord` (``.record``).

    >>> u = SourceURL("file:///data/a.nc", SourceRecord("file:///data/a.nc", 4))
    >>> u == "file:///data/a.nc", u.record.size
    (True, 4)
    """

    __slots__ = ("record",)  # no per-instance __dict__: ~340 B less per file (100k files: 34 MB)

    record: SourceRecord | None

    def __new__(cls, url: str, record: SourceRecord | None = None) -> Self:
        self = super().__new__(cls, url)
        self.record = record
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (SourceURL, (str(self), self.record))


def with_records(
    manifest: ChunkManifest,
    records: Mapping[str, SourceRecord],
    urls: dict[str, SourceURL] | None = None,
) -> ChunkManifest:
    """``manifest`` with the records of the paths it references attached to its table.

    ``urls`` caches the :class:`SourceURL` made for each path, so manifests of one group
    share them (a parser's hundreds of variables all point at the same file).
    """
    if not records:
        return manifest
    if urls is None:
        urls = {}
    old = manifest.table
    table = list(old)
    changed = False
    for k, t in enumerate(old):
        if not isinstance(t, str):
            continue
        rec = records.get(t)
        if rec is None:
            continue
        have = getattr(t, "record", None)
        if have is rec or have == rec:
            continue
        u = urls.get(t)
        if u is None or u.record is not rec:
            u = urls[t] = SourceURL(t, rec)
        table[k], changed = u, True
    if not changed:
        return manifest
    return manifest.with_table(table)  # equal entries: the grids are shared as they are


def records_of(manifests: Iterable[ChunkManifest]) -> dict[str, SourceRecord]:
    """The records of the paths ``manifests`` reference, by URL (first one wins)."""
    out: dict[str, SourceRecord] = {}
    for m in manifests:
        # used_paths costs a pass over the grid: skip tables with nothing new to give
        # (no records, or paths already seen: a parser's variables share one file)
        if all(
            isinstance(t, bytes) or t in out or getattr(t, "record", None) is None for t in m.table
        ):
            continue
        for t in m.used_paths():
            rec = getattr(t, "record", None)
            if rec is not None:
                out.setdefault(str(t), rec)
    return out


def group_with_records(group: ManifestGroup, records: Mapping[str, SourceRecord]) -> ManifestGroup:
    """``group`` (and its subgroups) with ``records`` attached to every array's manifest.

    Returns ``group`` itself when every reference already carries its record.
    """
    return _group_with_records(group, records, {})


def _group_with_records(
    group: ManifestGroup, records: Mapping[str, SourceRecord], urls: dict[str, SourceURL]
) -> ManifestGroup:
    from virtualizarr.manifests.group import ManifestGroup

    if not records:
        return group
    arrays = {}
    for k, a in group.arrays.items():
        m = with_records(a.manifest, records, urls)
        arrays[k] = a if m is a.manifest else a.with_equal_manifest(m)
    groups = {k: _group_with_records(g, records, urls) for k, g in group.groups.items()}
    if all(arrays[k] is group.arrays[k] for k in arrays) and all(
        groups[k] is group.groups[k] for k in groups
    ):
        return group
    return ManifestGroup(arrays=arrays, groups=groups, attributes=group.attributes)


def records_from_json(doc: Any) -> dict[str, SourceRecord]:
    """``{url: SourceRecord}`` from a ``{"sources": {...}}`` document a writer stored.

    A malformed document is ignored (it only serves ``verify``), never fatal.
    """
    sources = doc.get("sources") if isinstance(doc, dict) else None
    out: dict[str, SourceRecord] = {}
    if isinstance(sources, dict):
        for url, rec in sources.items():
            try:
                out[str(url)] = SourceRecord.from_json(str(url), rec)
            except ValueError:
                continue
    return out
