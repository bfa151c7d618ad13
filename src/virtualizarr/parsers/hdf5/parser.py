"""The NetCDF4/HDF5 parser: chunk references to every dataset of a file, read with h5py.

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
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from virtualizarr.errors import (
    CorruptFileError,
    ParserError,
    VariableSkippedWarning,
    VirtualiZarrError,
)
from virtualizarr.manifests import ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import normalize_path
from virtualizarr.parsers.hdf5.netcdf import DimensionNamer, read_attributes, variable_name
from virtualizarr.parsers.hdf5.objects import Objects
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    import h5py

__all__ = ["HDFParser"]

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

    >>> # store = HDFParser(group="/forecast")("s3://bucket/run.nc", registry)
    >>> # ds = xr.open_zarr(store, consolidated=False, zarr_format=3)
    """

    description: ClassVar[str] = "NetCDF4/HDF5 files, read with h5py"

    def __init__(
        self,
        *,
        group: str | None = None,
        drop_variables: Iterable[str] | None = None,
        inline_threshold: int = 64 * 1024,
    ) -> None:
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
            f"inline_threshold={self.inline_threshold})"
        )

    def __call__(self, url: str, registry: ObjectStoreRegistry | None = None) -> ManifestStore:
        """Parse ``url`` into a :class:`ManifestStore` of the file (or of ``group``)."""
        url = normalize_path(url)
        registry = registry if registry is not None else ObjectStoreRegistry()
        with open_hdf5(url, registry) as (f, size):
            objects = Objects()
            ctx = _Context(f, url, size, DimensionNamer(f, objects), objects, self)
            root = _select_group(f, self.group, url)
            try:
                for ancestor in _ancestors(root.name):  # phony dims count up from the root
                    ctx.namer.visit_group(f[ancestor])
                group = _build_group(ctx, root, "")
            except VirtualiZarrError:
                raise
            except (OSError, RuntimeError) as e:  # h5py's errors for unreadable metadata
                raise CorruptFileError(
                    f"{url}: cannot read its HDF5 metadata; the file is truncated or corrupt "
                    f"({size} bytes; h5py: {type(e).__name__}: {e})."
                ) from e
        return ManifestStore(group, registry=registry)


@dataclass
class _Context:
    file: h5py.File
    url: str
    file_size: int
    namer: DimensionNamer
    objects: Objects
    parser: HDFParser


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

    from virtualizarr.io import open_reader

    _load_filter_plugins()
    local = url.startswith("file://")
    reader = open_reader(
        url, registry, block_size=_READ_AHEAD_LOCAL if local else _READ_AHEAD_REMOTE
    )
    try:
        try:
            f = h5py.File(reader, "r")
        except OSError as e:
            raise _open_error(url, reader, e) from e
        try:
            yield f, reader.size
        finally:
            f.close()
    finally:
        reader.close()


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


def _select_group(f: h5py.File, group: str | None, url: str) -> h5py.Group:
    import h5py

    if group is None or group.strip("/") == "":
        return f["/"]
    path = "/" + group.strip("/")
    node = f.get(path)
    if not isinstance(node, h5py.Group):
        known = sorted(n for n, v in f.items() if isinstance(v, h5py.Group))
        what = "is not a group" if node is not None else "does not exist"
        raise ParserError(f"Group {group!r} {what} in {url}. Top-level groups: {known}.")
    return node


def _ancestors(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts))] if parts else []


def skip(ctx: _Context, path: str, reason: str) -> None:
    """Warn that a variable is left out of the store."""
    warnings.warn(
        f"{ctx.url}: variable {path!r} skipped: {reason}.", VariableSkippedWarning, stacklevel=2
    )


def _build_group(ctx: _Context, h5group: h5py.Group, rel: str) -> ManifestGroup:
    import h5py

    from virtualizarr.parsers.hdf5.arrays import build_array

    ctx.namer.visit_group(h5group)
    group_name = h5group.name
    arrays: dict[str, ManifestArray] = {}
    groups: dict[str, ManifestGroup] = {}
    for child in ctx.objects.children(h5group):
        key, link, obj = child.key, child.link, child.obj
        path = f"{rel}/{key}".lstrip("/")
        if isinstance(link, h5py.ExternalLink):
            skip(ctx, path, f"it is an external link to {link.filename!r}")
            continue
        if isinstance(obj, (KeyError, OSError)):
            skip(ctx, path, f"its link cannot be followed ({obj})")
            continue
        if isinstance(obj, h5py.Group):
            if isinstance(link, h5py.SoftLink):  # may point at an ancestor: never recurse
                skip(ctx, path, f"it is a soft link to the group {link.path!r}")
                continue
            groups[key] = _build_group(ctx, obj, path)
        elif isinstance(obj, h5py.Dataset):
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
