"""The NetCDF4/HDF5 parser: chunk references to every dataset of a file.

The metadata is read by our own HDF5 reader (``engine="own"``, :mod:`.own`) or by h5py
(``engine="h5py"``); both feed the same code below and give the same ManifestGroup.

Only metadata is read, through the registry's object store (so remote files work): the
chunk index of each dataset (one pass with ``chunk_iter``), contiguous blocks, filter
pipelines, attributes and dimension scales. Values are read only for what cannot be
referenced byte for byte and is small (compact storage, scale-offset/n-bit filters,
variable-length strings, compound records, chunks stored with a filter skipped); those
become inlined chunks. What can be neither referenced nor inlined is skipped with a
:class:`~virtualizarr.errors.VariableSkippedWarning`, or raises, never read wrongly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from virtualizarr.errors import (
    CorruptFileError,
    ParserError,
    VirtualiZarrError,
)
from virtualizarr.manifests import ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import normalize_path
from virtualizarr.parsers.hdf5.arrays import build_array
from virtualizarr.parsers.hdf5.context import ParseContext, skip
from virtualizarr.parsers.hdf5.netcdf import DimensionNamer, read_attributes, variable_name
from virtualizarr.parsers.hdf5.nodes import DatasetNode, GroupNode
from virtualizarr.parsers.hdf5.objects import Objects
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    import h5py

__all__ = ["HDFParser"]

log = logging.getLogger(__name__)

ENGINES = ("own", "h5py")
DEFAULT_ENGINE = "own"
"""The engine used when none is given: our reader, which gives the same ManifestGroup as
h5py on every real sample file and on the generated test files (falling back to h5py for
what it does not implement)."""

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 metadata (object headers, heaps, B-tree nodes of ~3 KiB) is read in small pieces,
# the chunk index's nodes scattered through the file. Locally a request costs little but
# copying does: read ahead a little. Remotely a request costs a round trip: read ahead more,
# so headers and attributes near each other arrive together.
_READ_AHEAD_LOCAL = 16 * 1024
_READ_AHEAD_REMOTE = 256 * 1024


class HDFParser:
    """Parser for NetCDF4 and HDF5 files: ``HDFParser(...)(url, registry) -> ManifestStore``.

    Parameters
    ----------
    group
        Path of the HDF5 group to use as the root of the store (``"/a/b"``); default the
        whole file.
    drop_variables
        Variables to leave out, by name (``"temp"``) or path below ``group`` (``"sub/temp"``).
    inline_threshold
        Largest decoded size in bytes of a variable whose values are read and inlined
        when its bytes cannot be referenced (compact storage, scale-offset/n-bit/unknown
        filters, variable-length strings, compound records, external/virtual storage).
    engine
        ``"own"``: our HDF5 metadata reader (byte ranges + numpy, no h5py); a file using a
        structure it does not implement is read with h5py instead (logged at INFO level,
        naming the structure). ``"h5py"``: walk the file with h5py.

    >>> # store = HDFParser(group="/forecast")("s3://bucket/run.nc", registry)
    >>> # ds = xr.open_zarr(store, consolidated=False, zarr_format=3)
    """

    description: ClassVar[str] = "NetCDF4/HDF5 files, read with our HDF5 reader (or h5py)"

    def __init__(
        self,
        *,
        group: str | None = None,
        drop_variables: Iterable[str] | None = None,
        inline_threshold: int = 64 * 1024,
        engine: str | None = None,
    ) -> None:
        engine = DEFAULT_ENGINE if engine is None else engine
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
        self.engine = engine
        if isinstance(drop_variables, str):
            drop_variables = [drop_variables]
        self.group = group
        self.drop_variables = frozenset(str(v).strip("/") for v in drop_variables or ())
        if int(inline_threshold) < 0:
            raise ValueError(f"inline_threshold must be >= 0 bytes, got {inline_threshold!r}.")
        self.inline_threshold = int(inline_threshold)

    def __repr__(self) -> str:
        return (
            f"HDFParser(group={self.group!r}, drop_variables={sorted(self.drop_variables)!r}, "
            f"inline_threshold={self.inline_threshold}, engine={self.engine!r})"
        )

    @staticmethod
    def sniff(head: bytes) -> bool:
        """Whether a file starting with ``head`` is HDF5: the signature at 0 or after a
        user block of 512, 1024 or 2048 bytes.

        >>> HDFParser.sniff(b"\\x89HDF\\r\\n\\x1a\\n" + bytes(8)), HDFParser.sniff(b"CDF\\x01")
        (True, False)
        """
        return any(head[o : o + 8] == _SIGNATURE for o in (0, 512, 1024, 2048))

    def __call__(self, url: str, registry: ObjectStoreRegistry | None = None) -> ManifestStore:
        """Parse ``url`` into a :class:`ManifestStore` of the file (or of ``group``)."""
        url = normalize_path(url)
        registry = registry if registry is not None else ObjectStoreRegistry()
        if self.engine == "own":
            from virtualizarr.parsers.hdf5.own import Fallback, open_own

            try:
                # the store is made inside open_own's turn at parsing (virtualizarr.io.turns)
                with open_own(url, registry) as objects:
                    group = self._build(objects, url, objects.size)
                    return ManifestStore(group, registry=registry)
            except Fallback as e:
                log.info("%s: read with h5py: our HDF5 reader does not implement %s", url, e)
            except (FileNotFoundError, VirtualiZarrError) as e:
                if not isinstance(e, CorruptFileError):
                    raise
                # h5py has the last word on damage: a file it reads is not corrupt
                log.warning("%s: read with h5py: our HDF5 reader failed (%s)", url, e)
            except Exception as e:  # noqa: BLE001  (a bug of ours must not cost the file)
                log.warning(
                    "%s: read with h5py: our HDF5 reader failed (%s: %s)", url, type(e).__name__, e
                )
        with open_hdf5(url, registry) as (f, size):
            group = self._build(Objects(f), url, size)
        return ManifestStore(group, registry=registry)

    def _build(self, objects: Any, url: str, size: int) -> ManifestGroup:
        ctx = ParseContext(url, size, DimensionNamer(objects), objects, self)
        root = _select_group(objects, self.group, url)
        try:
            for ancestor in _ancestors(root.name):  # phony dims count up from the root
                ctx.namer.visit_group(objects.get(ancestor))
            return _build_group(ctx, root, "")
        except VirtualiZarrError:
            raise
        except (OSError, RuntimeError) as e:  # h5py's errors for unreadable metadata
            raise CorruptFileError(
                f"{url}: cannot read its HDF5 metadata; the file is truncated or corrupt "
                f"({size} bytes; h5py: {type(e).__name__}: {e})."
            ) from e


def _load_filter_plugins() -> None:
    """Let HDF5 itself decode plugin filters (blosc, lz4, zstd...) when values are inlined."""
    with contextlib.suppress(ImportError):  # only inlining plugin-filtered values needs it
        import hdf5plugin  # noqa: F401


@contextmanager
def open_hdf5(url: str, registry: ObjectStoreRegistry) -> Iterator[tuple[h5py.File, int]]:
    """The h5py file of ``url`` read through the registry's store, and the file's size.

    Raises FileNotFoundError when nothing can be read at ``url`` and
    :class:`~virtualizarr.errors.ParserError` when it is not a readable HDF5 file.
    """
    import h5py

    from virtualizarr.io import open_source

    _load_filter_plugins()
    # The source detection already opened (its head fetched), else a new one. Remote
    # reads go through its sparse cache: h5py's B-tree walks jump back and forth, and no
    # block is fetched twice; the first request brings the first MiB, and files up to
    # a few MB come whole at the first miss. Local files: pread straight into h5py's buffer.
    source = open_source(url, registry)
    reader = source.as_file()
    try:
        try:
            f = h5py.File(reader, "r")
        except OSError as e:
            raise _open_error(url, reader, e) from e
        try:
            yield f, source.size
        finally:
            f.close()
    finally:
        reader.close()
        source.close()


def _open_error(url: str, reader: Any, e: Exception) -> ParserError:
    """Not HDF5 at all (:class:`ParserError`) or damaged HDF5 (:class:`CorruptFileError`)."""
    reader.seek(0)
    head = reader.read(4096)
    offsets = [0, 512, 1024, 2048]  # the superblock may follow a user block
    if not any(head[o : o + 8] == _SIGNATURE for o in offsets):
        what = "is empty" if not head else f"starts with {head[:8]!r}"
        return ParserError(
            f"{url} is not an HDF5/NetCDF4 file: it {what}, not the HDF5 signature "
            f"{_SIGNATURE!r}. Use the parser for its format (NetCDF3 files start with b'CDF')."
        )
    return CorruptFileError(
        f"{url} has an HDF5 signature but h5py cannot open it: the file is truncated or "
        f"corrupt ({reader.size} bytes; h5py: {e})."
    )


def _select_group(objects: Any, group: str | None, url: str) -> GroupNode:
    if group is None or group.strip("/") == "":
        root = objects.get("/")
        if root is None:  # h5py's get() returns None for a root it cannot read (bad checksum)
            raise CorruptFileError(
                f"{url}: cannot read the root group of its HDF5 metadata; the file is corrupt."
            )
        return root
    path = "/" + group.strip("/")
    node = objects.get(path)
    if not isinstance(node, GroupNode):
        known = objects.top_groups()
        what = "is not a group" if node is not None else "does not exist"
        raise ParserError(f"Group {group!r} {what} in {url}. Top-level groups: {known}.")
    return node


def _ancestors(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts))] if parts else []


def _build_group(ctx: ParseContext, h5group: GroupNode, rel: str) -> ManifestGroup:
    ctx.namer.visit_group(h5group)
    group_name = h5group.name
    arrays: dict[str, ManifestArray] = {}
    groups: dict[str, ManifestGroup] = {}
    for child in ctx.objects.children(h5group):
        key, link, obj = child.key, child.link, child.obj
        path = f"{rel}/{key}".lstrip("/")
        if link == "external":
            skip(ctx, path, f"it is an external link to {child.target!r}")
            continue
        if isinstance(obj, (KeyError, OSError)):
            skip(ctx, path, f"its link cannot be followed ({obj})")
            continue
        if isinstance(obj, GroupNode):
            if link == "soft":  # may point at an ancestor: never recurse
                skip(ctx, path, f"it is a soft link to the group {child.target!r}")
                continue
            groups[key] = _build_group(ctx, obj, path)
        elif isinstance(obj, DatasetNode):
            name = variable_name(key)
            relname = f"{rel}/{name}".lstrip("/")
            if {name, relname} & ctx.parser.drop_variables or ctx.namer.is_dimension_only(obj):
                continue
            arr = build_array(ctx, obj, path, group_name)
            if arr is None:
                continue
            if name in arrays or name in groups:
                skip(ctx, path, f"its name {name!r} is already used in the group")
                continue
            arrays[name] = arr
    for name in set(arrays) & set(groups):  # a group built after an array of its name
        skip(ctx, f"{rel}/{name}".lstrip("/"), "a group of the same name exists")
        del arrays[name]
    where = f"{ctx.url}: group {group_name!r}"
    attributes = read_attributes(ctx.objects.attrs(h5group), where)
    return ManifestGroup(arrays=arrays, groups=groups, attributes=attributes)
