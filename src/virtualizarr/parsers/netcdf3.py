"""NetCDF-3 (CDF-1 classic, CDF-2 64-bit offset, CDF-5 64-bit data) parser.

The header is read straight from the bytes (netCDF classic format specification);
no data is read. netCDF-3 data is never compressed and always big-endian, so each
variable becomes plain byte ranges with the ``bytes`` codec:

- a fixed-size variable is one contiguous range: one chunk of the full shape, or
  several chunks of whole rows along axis 0 when ``max_chunk_bytes`` asks for it;
- a record variable has one chunk per record, ``(1, *shape[1:])``, at
  ``begin + i * recsize`` (records of all record variables are interleaved).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.errors import CorruptFileError, ParserError
from virtualizarr.io import open_source
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import normalize_path
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["NetCDF3Header", "NetCDF3Parser", "NetCDF3Variable", "parse_header"]

# nc_type -> (numpy dtype as stored, netCDF default fill value, name in messages)
_TYPES: dict[int, tuple[np.dtype, Any, str]] = {
    1: (np.dtype("i1"), -127, "byte"),
    2: (np.dtype("S1"), b"\x00", "char"),
    3: (np.dtype(">i2"), -32767, "short"),
    4: (np.dtype(">i4"), -2147483647, "int"),
    5: (np.dtype(">f4"), float(np.float32(9.9692099683868690e36)), "float"),
    6: (np.dtype(">f8"), 9.9692099683868690e36, "double"),
    7: (np.dtype("u1"), 255, "ubyte"),
    8: (np.dtype(">u2"), 65535, "ushort"),
    9: (np.dtype(">u4"), 4294967295, "uint"),
    10: (np.dtype(">i8"), -9223372036854775806, "int64"),
    11: (np.dtype(">u8"), 18446744073709551614, "uint64"),
}
_NC_CHAR = 2
_TAG_DIMENSION, _TAG_VARIABLE, _TAG_ATTRIBUTE = 10, 11, 12
_FORMATS = {1: "CDF-1 (classic)", 2: "CDF-2 (64-bit offset)", 5: "CDF-5 (64-bit data)"}
_U4, _U8 = struct.Struct(">I"), struct.Struct(">Q")
# fewest header bytes of one dimension / attribute / variable entry (CDF-1 and 2; CDF-5, whose
# counts are 8 bytes), to refuse a count the file is too short for before looping on it
_MIN_BYTES = {_TAG_DIMENSION: (8, 16), _TAG_ATTRIBUTE: (12, 20), _TAG_VARIABLE: (28, 48)}


@dataclass(frozen=True, slots=True)
class NetCDF3Variable:
    """One variable as the header describes it."""

    name: str
    dimids: tuple[int, ...]
    """Indices into :attr:`NetCDF3Header.dimensions`."""
    attributes: dict[str, Any]
    nc_type: int
    begin: int
    """File offset of the data (of the first record, for record variables)."""


@dataclass(frozen=True, slots=True)
class NetCDF3Header:
    """A parsed netCDF-3 header."""

    version: int
    """1, 2 or 5 (the byte after ``CDF``)."""
    numrecs: int | None
    """Number of records; ``None`` when the header says *streaming* (count unknown)."""
    dimensions: list[tuple[str, int]]
    """``(name, length)``; length 0 marks the record (unlimited) dimension."""
    attributes: dict[str, Any]
    variables: list[NetCDF3Variable]
    size: int
    """Bytes the header occupies."""


class _Cursor:
    """Sequential big-endian reads over the header, fetching more bytes when needed."""

    __slots__ = ("_fetch", "buf", "pos", "size", "url", "version")

    def __init__(
        self, buf: bytes, fetch: Callable[[int, int], bytes], url: str, version: int, size: int
    ) -> None:
        self.buf, self.pos, self._fetch, self.url = buf, 4, fetch, url
        self.version, self.size = version, size

    def need(self, n: int, what: str) -> None:
        if self.pos + n <= len(self.buf):
            return
        if self.pos + n <= self.size:  # (a corrupt length past the end fetches nothing)
            want = max(self.pos + n - len(self.buf), len(self.buf))
            self.buf += self._fetch(len(self.buf), min(want, self.size - len(self.buf)))
        if self.pos + n > len(self.buf):
            raise CorruptFileError(
                f"{self.url}: the netCDF-3 header is truncated: the file ends at byte "
                f"{len(self.buf)} while reading {what} (needs bytes up to {self.pos + n})."
            )

    def u4(self, what: str) -> int:
        self.need(4, what)
        (v,) = _U4.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def nonneg(self, what: str) -> int:
        """A count or length: 4 bytes, 8 in CDF-5."""
        if self.version != 5:
            return self.u4(what)
        self.need(8, what)
        (v,) = _U8.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def offset(self, what: str) -> int:
        """A file offset: 4 bytes in CDF-1, 8 in CDF-2 and CDF-5."""
        if self.version == 1:
            return self.u4(what)
        self.need(8, what)
        (v,) = _U8.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def raw(self, n: int, what: str) -> bytes:
        """``n`` bytes, skipping the padding to a multiple of 4 that follows them."""
        padded = (n + 3) & ~3
        self.need(padded, what)
        out = self.buf[self.pos : self.pos + n]
        self.pos += padded
        return out

    def name(self, what: str) -> str:
        n = self.nonneg(f"the name length of {what}")
        # Exactly n bytes (the padding after a name may be anything), up to the first NUL:
        # some writers count a C string's terminator in n, and netCDF-C drops it.
        raw = self.raw(n, f"the name of {what}").split(b"\x00", 1)[0]
        return raw.decode("utf-8", errors="replace")

    def list_header(self, tag: int, what: str) -> int:
        """Number of elements of a dimension/attribute/variable list (0 if ABSENT)."""
        found = self.u4(f"the {what} list tag")
        n = self.nonneg(f"the {what} count")
        if found == 0 and n == 0:
            return 0
        if found != tag:
            raise CorruptFileError(
                f"{self.url}: corrupt netCDF-3 header: expected the {what} list tag {tag} "
                f"(or an absent list) at byte {self.pos - (12 if self.version == 5 else 8)}, found {found}."
            )
        self.check_count(n, _MIN_BYTES[tag][self.version == 5], f"{what} entries")
        return n

    def check_count(self, n: int, each: int, what: str) -> None:
        """Refuse a count whose elements (``each`` bytes at least) cannot fit in the file."""
        if n * each > self.size - self.pos:
            raise CorruptFileError(
                f"{self.url}: corrupt netCDF-3 header: {n} {what} at byte {self.pos} need at "
                f"least {n * each} bytes, but the file has only {self.size - self.pos} left."
            )


def _attribute_value(cur: _Cursor, nc_type: int, name: str, where: str) -> Any:
    if nc_type not in _TYPES:
        raise CorruptFileError(
            f"{cur.url}: attribute {name!r} of {where} has unknown type {nc_type}."
        )
    dtype = _TYPES[nc_type][0]
    n = cur.nonneg(f"the length of attribute {name!r} of {where}")
    data = cur.raw(n * dtype.itemsize, f"the value of attribute {name!r} of {where}")
    if nc_type == _NC_CHAR:
        if name == "_FillValue":  # one byte, kept exactly (it is the fill of a char variable)
            return data.decode("latin-1")
        # as netCDF4-python: UTF-8 text without NULs
        return data.decode("utf-8", errors="replace").replace("\x00", "")
    values = np.frombuffer(data, dtype=dtype).tolist()
    return values[0] if n == 1 else values


def _attributes(cur: _Cursor, where: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for _ in range(cur.list_header(_TAG_ATTRIBUTE, f"attribute (of {where})")):
        name = cur.name(f"an attribute of {where}")
        nc_type = cur.u4(f"the type of attribute {name!r} of {where}")
        attrs[name] = _attribute_value(cur, nc_type, name, where)
    return attrs


def parse_header(
    head: bytes,
    url: str = "<bytes>",
    fetch: Callable[[int, int], bytes] | None = None,
    size: int | None = None,
) -> NetCDF3Header:
    """Parse a netCDF-3 header from its first bytes.

    ``fetch(start, length)`` supplies more bytes when the header is longer than ``head``;
    ``size`` (the file's size, if known) stops a corrupt length from fetching the whole file.

    >>> h = parse_header(b"CDF\\x01" + bytes(28))
    >>> h.version, h.numrecs, h.variables
    (1, 0, [])
    """
    if head[:3] != b"CDF":
        hint = " It is an HDF5 file: use HDFParser." if head[:4] == b"\x89HDF" else ""
        raise ParserError(
            f"{url} is not a netCDF-3 file: it starts with {head[:4]!r}, not b'CDF'.{hint}"
        )
    if len(head) < 4:
        raise CorruptFileError(f"{url}: the file ends after b'CDF', before the version byte.")
    if head[3] not in _FORMATS:
        raise ParserError(
            f"{url}: unknown netCDF-3 version byte {head[3]} after b'CDF'; expected 1 (CDF-1), "
            "2 (CDF-2) or 5 (CDF-5)."
        )
    version = head[3]
    limit = len(head) if fetch is None else size if size is not None else 1 << 63
    cur = _Cursor(head, fetch or (lambda start, n: b""), url, version, limit)
    numrecs: int | None = cur.nonneg("the number of records")
    if numrecs == (1 << (64 if version == 5 else 32)) - 1:
        numrecs = None  # STREAMING: the count follows from the file size
    dims = []
    for i in range(cur.list_header(_TAG_DIMENSION, "dimension")):
        name = cur.name(f"dimension {i}")
        dims.append((name, cur.nonneg(f"the length of dimension {name!r}")))
    if sum(length == 0 for _, length in dims) > 1:
        raise CorruptFileError(f"{url}: more than one dimension is unlimited (length 0): {dims}.")
    attrs = _attributes(cur, "the file (global)")
    variables = []
    for i in range(cur.list_header(_TAG_VARIABLE, "variable")):
        name = cur.name(f"variable {i}")
        ndims = cur.nonneg(f"the number of dimensions of variable {name!r}")
        cur.check_count(ndims, 8 if version == 5 else 4, f"dimension ids of variable {name!r}")
        dimids = tuple(cur.nonneg(f"the dimension ids of variable {name!r}") for _ in range(ndims))
        vattrs = _attributes(cur, f"variable {name!r}")
        nc_type = cur.u4(f"the type of variable {name!r}")
        cur.nonneg(f"the vsize of variable {name!r}")  # redundant (and wraps when > 4 GiB)
        begin = cur.offset(f"the data offset of variable {name!r}")
        variables.append(NetCDF3Variable(name, dimids, vattrs, nc_type, begin))
    return NetCDF3Header(version, numrecs, dims, attrs, variables, cur.pos)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the records are: their count and stride."""

    numrecs: int
    recsize: int


def _record_layout(header: NetCDF3Header, size: int) -> _Layout:
    rec_vars = [v for v in header.variables if v.dimids and header.dimensions[v.dimids[0]][1] == 0]
    slabs = [_slab_bytes(header, v) for v in rec_vars]
    # Records are padded to 4 bytes per variable, except when there is exactly one
    # record variable: then a record is that variable's slab, unpadded (netCDF spec).
    recsize = slabs[0] if len(slabs) == 1 else sum((s + 3) & ~3 for s in slabs)
    numrecs = header.numrecs
    if numrecs is None:  # streaming: as many whole records as the file holds
        start = min((v.begin for v in rec_vars), default=size)
        numrecs = max(size - start, 0) // recsize if recsize else 0
    return _Layout(numrecs, recsize)


def _slab_bytes(header: NetCDF3Header, var: NetCDF3Variable) -> int:
    """Bytes of one record of a record variable, or of a whole fixed variable."""
    lengths = [header.dimensions[d][1] for d in var.dimids]
    if lengths and lengths[0] == 0:
        lengths = lengths[1:]
    return math.prod(lengths) * _TYPES[var.nc_type][0].itemsize


def _check_variable(header: NetCDF3Header, var: NetCDF3Variable, url: str) -> None:
    if var.nc_type not in _TYPES or (var.nc_type > 6 and header.version != 5):
        kind = _TYPES[var.nc_type][2] if var.nc_type in _TYPES else "an unknown type"
        raise CorruptFileError(
            f"{url}: variable {var.name!r} has type {var.nc_type} ({kind}), which is not valid "
            f"in a {_FORMATS[header.version]} file."
        )
    for pos, d in enumerate(var.dimids):
        if d >= len(header.dimensions):
            raise CorruptFileError(
                f"{url}: variable {var.name!r} refers to dimension id {d}, but the file has "
                f"only {len(header.dimensions)} dimensions."
            )
        if pos > 0 and header.dimensions[d][1] == 0:
            raise CorruptFileError(
                f"{url}: variable {var.name!r} uses the record dimension "
                f"{header.dimensions[d][0]!r} at position {pos}; netCDF-3 allows it only first."
            )


def _fill_value(var: NetCDF3Variable) -> Any:
    """What netCDF returns for never-written data: ``_FillValue``, else the type's default."""
    dtype, default, _ = _TYPES[var.nc_type]
    fv = var.attributes.get("_FillValue")
    if fv is None or isinstance(fv, list):
        return default
    try:
        if dtype.kind == "S":
            return fv.encode("latin-1")[:1] or default
        cast = dtype.type(fv)
    except (AttributeError, TypeError, ValueError, OverflowError, UnicodeEncodeError):
        return default
    # a value the type cannot hold exactly (e.g. 1e20 for an int) is not this type's fill
    return cast.item() if cast == fv or (dtype.kind == "f" and np.isnan(cast)) else default


def _fixed_rows_per_chunk(
    shape: tuple[int, ...], itemsize: int, begin: int, size: int, max_chunk_bytes: int | None
) -> int:
    """Rows of axis 0 per chunk so a chunk holds at most ``max_chunk_bytes`` (>= 1 row)."""
    if not shape or max_chunk_bytes is None:
        return shape[0] if shape else 1
    row = math.prod(shape[1:]) * itemsize
    rows = max(1, max_chunk_bytes // row)
    if rows >= shape[0]:
        return shape[0]
    # Zarr reads the last (partial) chunk as a full chunk; past the end of the file that
    # read would fail, so then pick a divisor of the length instead.
    if begin + math.ceil(shape[0] / rows) * rows * row > size:
        rows = _largest_divisor(shape[0], rows)
    return rows


def _largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` that is ``<= at_most`` (O(sqrt(n)))."""
    best = 1
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            for c in (d, n // d):
                if best < c <= at_most:
                    best = c
    return best


def _build_array(
    header: NetCDF3Header,
    var: NetCDF3Variable,
    layout: _Layout,
    url: str,
    size: int,
    max_chunk_bytes: int | None,
) -> ManifestArray:
    dtype = _TYPES[var.nc_type][0]
    names = [header.dimensions[d][0] for d in var.dimids]
    shape = tuple(header.dimensions[d][1] for d in var.dimids)
    slab = _slab_bytes(header, var)
    record = bool(shape) and shape[0] == 0
    # Where the data ends, checked against the file before anything is allocated: a corrupt
    # numrecs or dimension length must not size the manifest (0x7fffffff records = 16 GiB).
    if record:
        end = var.begin + (layout.numrecs - 1) * layout.recsize + slab if layout.numrecs else 0
    else:
        end = var.begin + slab
    if end and var.begin < header.size:
        raise CorruptFileError(
            f"{url}: variable {var.name!r} claims its data starts at byte {var.begin}, inside "
            f"the {header.size}-byte header: the header is corrupt."
        )
    if end > size:
        raise CorruptFileError(
            f"{url}: the data of variable {var.name!r} ends at byte {end}, beyond the end of "
            f"the file ({size} bytes): the file is truncated. Leave the variable out with "
            f"NetCDF3Parser(drop_variables=[{var.name!r}])."
        )
    if record:  # one chunk per record
        shape = (layout.numrecs, *shape[1:])
        chunks = (1, *shape[1:])
        offsets = var.begin + np.arange(layout.numrecs, dtype=np.uint64) * np.uint64(layout.recsize)
        lengths = np.full(layout.numrecs, slab, dtype=np.uint64)
    else:
        rows = _fixed_rows_per_chunk(shape, dtype.itemsize, var.begin, size, max_chunk_bytes)
        chunks = (rows, *shape[1:]) if shape else ()
        n = math.ceil(shape[0] / rows) if shape else 1
        step = slab // shape[0] * rows if shape else slab
        offsets = var.begin + np.arange(n, dtype=np.uint64) * np.uint64(step)
        lengths = np.full(n, step, dtype=np.uint64)
    grid = (len(offsets),) + (1,) * (len(shape) - 1) if shape else ()
    manifest = ChunkManifest.from_path_ids(
        table=[url],
        ids=np.zeros(grid, dtype=np.uint32),
        offsets=offsets.reshape(grid),
        lengths=lengths.reshape(grid),
        normalize=False,
    )
    metadata = create_v3_array_metadata(
        shape=shape,
        data_type=dtype,
        chunk_shape=chunks,
        fill_value=_fill_value(var),
        attributes=var.attributes,
        dimension_names=names,
    )
    return ManifestArray(metadata, manifest)


class NetCDF3Parser:
    """Parser for netCDF-3 files: CDF-1 (classic), CDF-2 (64-bit offset), CDF-5 (64-bit data).

    Parameters
    ----------
    max_chunk_bytes
        Split fixed-size variables larger than this into chunks of whole rows along the
        first axis (each chunk stays one contiguous byte range). ``None`` (default) keeps
        one chunk per fixed-size variable, as it is stored. Record variables always have
        one chunk per record.
    drop_variables
        Names of variables to leave out (e.g. one whose data a truncated file lacks).

    Raises
    ------
    ParserError
        Not a netCDF-3 file, unknown version byte, truncated or corrupt header, or a
        variable whose bytes lie beyond the end of the file.

    Examples
    --------
    >>> # store = NetCDF3Parser(max_chunk_bytes=64 << 20)("s3://bucket/file.nc", registry)
    >>> # xr.open_dataset(store, engine="zarr", consolidated=False, zarr_format=3)
    """

    def __init__(
        self, *, max_chunk_bytes: int | None = None, drop_variables: Iterable[str] | None = None
    ) -> None:
        if max_chunk_bytes is not None and max_chunk_bytes < 1:
            raise ValueError(
                f"max_chunk_bytes must be a positive integer or None, got {max_chunk_bytes!r}"
            )
        self.max_chunk_bytes = max_chunk_bytes
        self.drop_variables = frozenset(drop_variables or ())

    def __repr__(self) -> str:
        return (
            f"NetCDF3Parser(max_chunk_bytes={self.max_chunk_bytes!r}, "
            f"drop_variables={sorted(self.drop_variables)!r})"
        )

    @staticmethod
    def sniff(head: bytes) -> bool:
        """Whether a file starting with ``head`` is netCDF-3 (``CDF`` + version 1, 2 or 5).

        >>> NetCDF3Parser.sniff(b"CDF\\x02" + bytes(4)), NetCDF3Parser.sniff(b"CDF\\x03")
        (True, False)
        """
        return head[:3] == b"CDF" and len(head) > 3 and head[3] in (1, 2, 5)

    def __call__(self, url: str, registry: ObjectStoreRegistry) -> ManifestStore:
        url = normalize_path(url)
        # One request brings the head (1 MiB remotely: almost every header) and the size;
        # a longer header costs one more (the whole file when it is small). Data never.
        with open_source(url, registry) as src:
            size = src.size
            header = parse_header(src.head, url, src.read, size=size)
        for var in header.variables:  # (the source is closed: everything below is in memory)
            _check_variable(header, var, url)
        layout = _record_layout(header, size)
        arrays: dict[str, ManifestArray] = {}
        for var in header.variables:
            if not var.name or "/" in var.name or var.name in arrays:
                raise CorruptFileError(
                    f"{url}: the header holds an invalid or repeated variable name {var.name!r}."
                )
            if var.name not in self.drop_variables:
                arrays[var.name] = _build_array(
                    header, var, layout, url, size, self.max_chunk_bytes
                )
        group = ManifestGroup(arrays=arrays, attributes=header.attributes)
        return ManifestStore(group, registry=registry)
