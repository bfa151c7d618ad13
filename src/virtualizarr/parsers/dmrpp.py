"""DMRPPParser: the DMR++ XML sidecars OPeNDAP/Hyrax publish next to HDF5/netCDF-4 granules.

A DMR++ document is a DAP4 DMR (groups, dimensions, typed variables and attributes)
whose variables carry ``dmrpp:chunks`` elements: the filters (``compressionType``), the
chunk shape (``dmrpp:chunkDimensionSizes``) and every chunk's ``offset``/``nBytes``/
``chunkPositionInArray`` in the data file named by ``dmrpp:href``. That is a chunk
manifest already, so only the XML is read -- never the data file.

Filters map to Zarr v3 codecs in the order listed (the HDF5 pipeline's encode order):
``shuffle`` -> ``numcodecs.shuffle``, ``deflate`` -> ``numcodecs.zlib``, ``fletcher32`` ->
``numcodecs.fletcher32``. Anything else raises :class:`CodecNotSupportedError`.
"""

from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin

import numpy as np

from virtualizarr.errors import (
    CodecNotSupportedError,
    ParserError,
    VariableSkippedWarning,
    VirtualiZarrError,
)
from virtualizarr.io import open_source
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import MISSING, normalize_path
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.parsers.zarr_v2.meta import check_grid
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["DMRPPParser"]

DAP = "{http://xml.opendap.org/ns/DAP/4.0#}"
DMRPP = "{http://xml.opendap.org/dap/dmrpp/1.0.0#}"
_HREF_PLACEHOLDER = "OPeNDAP_DMRpp_DATA_ACCESS_URL"  # Hyrax fills it in when serving

_DTYPES = {
    "Byte": "u1", "UInt8": "u1", "Int8": "i1", "Char": "S1",
    "Int16": "i2", "UInt16": "u2", "Int32": "i4", "UInt32": "u4",
    "Int64": "i8", "UInt64": "u8", "Float32": "f4", "Float64": "f8",
}  # fmt: skip
_OTHER_TYPES = {"String", "URL", "Structure", "Sequence", "Opaque", "Enum"}
# HDF5 dimension-scale and netCDF-4 bookkeeping: not data attributes
_HIDDEN_ATTRS = {
    "CLASS",
    "NAME",
    "REFERENCE_LIST",
    "DIMENSION_LIST",
    "_Netcdf4Dimid",
    "_Netcdf4Coordinates",
    "_nc3_strict",
    "_NCProperties",
}
_SUPPORTED_FILTERS = ("deflate", "shuffle", "fletcher32")


class DMRPPParser:
    """Parse a DMR++ document into a :class:`ManifestStore` over its HDF5 data file.

    Parameters
    ----------
    data_url
        URL of the data file, overriding the document's ``dmrpp:href`` (needed when the
        href is Hyrax's ``OPeNDAP_DMRpp_DATA_ACCESS_URL`` placeholder and the data file is
        not the DMR++ URL without its ``.dmrpp`` suffix, or when the file has moved).
        Relative hrefs are resolved against the DMR++ document's URL.

    >>> # store = DMRPPParser()("s3://bucket/granule.h5.dmrpp", registry)
    >>> # xr.open_zarr(store, consolidated=False, zarr_format=3)
    """

    def __init__(self, *, data_url: str | None = None) -> None:
        self.data_url = None if data_url is None else normalize_path(data_url)

    def __repr__(self) -> str:
        return f"DMRPPParser(data_url={self.data_url!r})"

    @staticmethod
    def sniff(head: bytes) -> bool:
        """Whether a file starting with ``head`` is a DMR++ document (XML naming ``dmrpp``).

        >>> DMRPPParser.sniff(b'<?xml version="1.0"?><Dataset xmlns:dmrpp="...">')
        True
        """
        return head.lstrip().startswith(b"<") and b"dmrpp" in head.lower()

    def __call__(self, url: str, registry: ObjectStoreRegistry) -> ManifestStore:
        url = normalize_path(url)
        # the whole document: one request with its size up to 1 MiB, two up to 8 MiB
        with open_source(url, registry) as src:
            text = src.read(0, src.size)
        try:
            root = ET.fromstring(text)
        except (ET.ParseError, LookupError) as e:  # LookupError: an unknown encoding
            raise ParserError(f"{url} is not well-formed XML, so not a DMR++ document: {e}.") from e
        if root.tag != f"{DAP}Dataset":
            raise ParserError(
                f"{url} is not a DMR++ document: its root element is {root.tag!r}, "
                f"expected {DAP}Dataset."
            )
        ctx = _Context(url=url, data_url=self.data_url or _data_url(url, root.get(f"{DMRPP}href")))
        return ManifestStore(_parse_group(root, "/", ctx), registry=registry)


@dataclass
class _Context:
    url: str
    data_url: str
    dims: dict[str, int] = field(default_factory=dict)
    """Fully qualified dimension name -> size."""
    phony: dict[tuple[int, int], str] = field(default_factory=dict)
    """(size, occurrence in one variable) of anonymous dimensions -> generated name."""


def _data_url(url: str, href: str | None) -> str:
    if href is None or _HREF_PLACEHOLDER in href:
        if url.endswith(".dmrpp"):
            return url[: -len(".dmrpp")]
        raise ParserError(
            f"{url} names no data file (dmrpp:href is {href!r}) and does not end in '.dmrpp': "
            "pass DMRPPParser(data_url=...)."
        )
    return normalize_path(href) if "://" in href else urljoin(url, href)


def _size(text: str | None, what: str, ctx: _Context) -> int:
    """A dimension size from the document: a non-negative integer, or a ParserError."""
    try:
        size = int(text or "0")
    except ValueError:
        size = -1
    if size < 0:
        raise ParserError(f"{ctx.url}: {what} has size {text!r}, not a non-negative integer.")
    return size


def _parse_group(elem: ET.Element, path: str, ctx: _Context) -> ManifestGroup:
    for d in elem.findall(f"{DAP}Dimension"):
        name = f"{path}{d.get('name')}"
        ctx.dims[name] = _size(d.get("size"), f"dimension {name!r}", ctx)
    arrays: dict[str, ManifestArray] = {}
    groups: dict[str, ManifestGroup] = {}
    for child in elem:
        tag = child.tag.removeprefix(DAP)
        name = child.get("name", "")
        if tag == "Group":
            groups[name] = _parse_group(child, f"{path}{name}/", ctx)
        elif tag in _DTYPES or tag in _OTHER_TYPES:
            var_path = f"{path}{name}"
            try:
                arrays[name] = _parse_variable(child, tag, var_path, ctx)
            except (ValueError, TypeError, OverflowError, KeyError, IndexError) as e:
                if isinstance(e, VirtualiZarrError):
                    raise
                # a malformed number or list in the document (chunk position, level, fill)
                raise ParserError(
                    f"{ctx.url}: variable {var_path!r} is malformed: {type(e).__name__}: {e}"
                ) from e
            except _Skip as e:
                warnings.warn(
                    f"{ctx.url}: variable {var_path!r} is left out: {e}.",
                    VariableSkippedWarning,
                    stacklevel=4,
                )
    return ManifestGroup(arrays=arrays, groups=groups, attributes=_attributes(elem))


class _Skip(Exception):
    pass


def _parse_variable(elem: ET.Element, tag: str, path: str, ctx: _Context) -> ManifestArray:
    if tag in _OTHER_TYPES:
        raise _Skip(f"its DAP4 type {tag} has no fixed-size Zarr data type")
    names, shape = _dimensions(elem, path, ctx)
    attrs = _attributes(elem)
    maps = [m.get("name", "").rsplit("/", 1)[-1] for m in elem.findall(f"{DAP}Map")]
    if maps and "coordinates" not in attrs:
        attrs["coordinates"] = " ".join(m for m in maps if m)
    chunks = elem.find(f"{DMRPP}chunks")
    if chunks is None:
        other = [c.tag.removeprefix(DMRPP) for c in elem if c.tag.startswith(DMRPP)]
        raise _Skip(
            f"it has no dmrpp:chunks element ({', '.join(other) or 'no storage information'})"
        )
    order: Literal["<", ">"] = ">" if chunks.get("byteOrder", "LE").upper() == "BE" else "<"
    dtype = np.dtype(_DTYPES[tag]).newbyteorder(order) if _DTYPES[tag] != "S1" else np.dtype("S1")
    codecs = _codecs(
        chunks.get("compressionType", ""), chunks.get("deflateLevel"), dtype, path, ctx
    )
    sizes = chunks.find(f"{DMRPP}chunkDimensionSizes")
    chunk_shape = (
        tuple(shape) if sizes is None else tuple(int(s) for s in (sizes.text or "").split())
    )
    if len(chunk_shape) != len(shape) or any(c <= 0 for c in chunk_shape):
        raise ParserError(
            f"{ctx.url}: variable {path!r} has chunk sizes {chunk_shape} for shape {tuple(shape)}."
        )
    manifest = _manifest(chunks, shape, chunk_shape, dtype, bool(codecs), path, ctx)
    fill = _fill_value(chunks.get("fillValue"), attrs.get("_FillValue"), dtype)
    if fill is None:
        if manifest.missing.any():
            raise _Skip(
                "some of its chunks were never written and the DMR++ gives no fillValue for them"
            )
        fill = 0 if dtype.kind != "S" else b""
    meta = create_v3_array_metadata(
        shape=shape,
        data_type=dtype,
        chunk_shape=chunk_shape,
        fill_value=fill,
        codecs=codecs,
        attributes=attrs,
        dimension_names=names,
    )
    return ManifestArray(meta, manifest)


def _dimensions(elem: ET.Element, path: str, ctx: _Context) -> tuple[list[str], list[int]]:
    names: list[str] = []
    shape: list[int] = []
    seen: dict[int, int] = {}  # size -> how many unnamed dimensions of that size so far
    for d in elem.findall(f"{DAP}Dim"):
        ref = d.get("name")
        if ref is None:  # anonymous: <Dim size="5"/>
            size = _size(d.get("size"), f"an anonymous dimension of variable {path!r}", ctx)
            k = seen[size] = seen.get(size, -1) + 1
            name = ctx.phony.setdefault((size, k), f"phony_dim_{len(ctx.phony)}")
        else:
            fq = ref if ref.startswith("/") else f"{path.rsplit('/', 1)[0]}/{ref}"
            if fq not in ctx.dims:
                raise ParserError(
                    f"{ctx.url}: variable {path!r} uses dimension {ref!r}, which is not declared."
                )
            size, name = ctx.dims[fq], fq.rsplit("/", 1)[-1]
        names.append(name)
        shape.append(size)
    return names, shape


def _codecs(
    compression: str, level: str | None, dtype: np.dtype, path: str, ctx: _Context
) -> list[dict[str, Any]]:
    codecs: list[dict[str, Any]] = []
    filters = compression.split()
    for i, f in enumerate(filters):
        if f == "deflate":
            codecs.append({"name": "numcodecs.zlib", "configuration": {"level": int(level or 1)}})
        elif f == "shuffle":
            # checksummed bytes are a whole number of elements only for 1/2/4-byte types
            if "fletcher32" in filters[:i] and 4 % dtype.itemsize:
                raise CodecNotSupportedError(
                    f"{ctx.url}: variable {path!r} shuffles {dtype.itemsize}-byte elements after a "
                    "fletcher32 checksum, which leaves a partial element no Zarr shuffle codec handles."
                )
            codecs.append(
                {"name": "numcodecs.shuffle", "configuration": {"elementsize": dtype.itemsize}}
            )
        elif f == "fletcher32":
            codecs.append({"name": "numcodecs.fletcher32", "configuration": {}})
        else:
            raise CodecNotSupportedError(
                f"{ctx.url}: variable {path!r} uses compressionType {f!r}, which has no Zarr codec "
                f"here (supported: {', '.join(_SUPPORTED_FILTERS)})."
            )
    return codecs


def _manifest(
    chunks: ET.Element,
    shape: list[int],
    chunk_shape: tuple[int, ...],
    dtype: np.dtype,
    filtered: bool,
    path: str,
    ctx: _Context,
) -> ChunkManifest:
    grid = tuple(-(-s // c) for s, c in zip(shape, chunk_shape))  # exact for huge sizes
    elems = chunks.findall(f"{DMRPP}chunk")
    try:  # before anything of the grid's size is allocated
        check_grid(grid, len(elems))
    except ParserError as e:
        raise ParserError(f"{ctx.url}: variable {path!r}: {e}") from None
    if any(len(e) for e in elems):  # <dmrpp:block> children: one chunk in several pieces
        raise _Skip("its chunks are split into several byte blocks (linked blocks)")
    n = len(elems)
    offsets = np.array([int(e.get("offset", "0")) for e in elems], dtype=np.uint64)
    lengths = np.array([int(e.get("nBytes", "0")) for e in elems], dtype=np.uint64)
    table: dict[str, int] = {ctx.data_url: 0}
    path_ids = np.array(
        [
            table.setdefault(_data_url(ctx.url, h), len(table)) if (h := e.get("href")) else 0
            for e in elems
        ],
        dtype=np.uint32,
    )
    if shape and n:
        texts = [e.get("chunkPositionInArray") for e in elems]
        if None in texts:
            if n != 1 or grid != (1,) * len(shape):
                raise ParserError(
                    f"{ctx.url}: variable {path!r} has chunks without chunkPositionInArray."
                )
            texts = ["[" + ",".join("0" * len(shape)) + "]"]
        pos = np.array(
            [[int(v) for v in str(t).strip("[] ").split(",")] for t in texts], dtype=np.int64
        )
        pos = pos.reshape(n, len(shape))
        idx = pos // np.array(chunk_shape)
        if (pos % np.array(chunk_shape)).any() or (idx >= np.array(grid)).any() or (pos < 0).any():
            raise ParserError(
                f"{ctx.url}: variable {path!r} has a chunk position off its {chunk_shape} chunk grid."
            )
    else:
        if n > 1:
            raise ParserError(
                f"{ctx.url}: variable {path!r} has {n} chunks for a single-chunk array."
            )
        idx = np.zeros((n, len(shape)), dtype=np.int64)
    if not filtered and n and (lengths != math.prod(chunk_shape) * dtype.itemsize).any():
        raise ParserError(
            f"{ctx.url}: variable {path!r} is unfiltered but a chunk's nBytes differs from the "
            f"{math.prod(chunk_shape) * dtype.itemsize} bytes of a {chunk_shape} chunk."
        )
    ids = np.full(grid, MISSING, dtype=np.uint32)
    offs, lens = np.zeros(grid, np.uint64), np.zeros(grid, np.uint64)
    if n:
        key = tuple(idx.T) if shape else ()  # a scalar's one chunk sits at grid index ()
        n_shape = ids[key].shape
        ids[key], offs[key] = path_ids.reshape(n_shape), offsets.reshape(n_shape)
        lens[key] = lengths.reshape(n_shape)
    return ChunkManifest.from_path_ids(table=list(table), ids=ids, offsets=offs, lengths=lens)


def _fill_value(text: str | None, attr: Any, dtype: np.dtype) -> Any:
    """The HDF5 fill value (what unwritten chunks read as): ``fillValue``, else ``_FillValue``."""
    value = text if text is not None else attr
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    if dtype.kind == "S":
        return str(value).encode()[:1]
    return np.array(float(value) if dtype.kind == "f" else int(value), dtype=dtype).item()


def _attributes(elem: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in elem.findall(f"{DAP}Attribute"):
        name = a.get("name", "")
        if name in _HIDDEN_ATTRS:
            continue
        if a.get("type") == "Container":
            out[name] = _attributes(a)
            continue
        values = [
            _attr_value(v.text or "", a.get("type", "String")) for v in a.findall(f"{DAP}Value")
        ]
        out[name] = values[0] if len(values) == 1 else values
    return out


def _attr_value(text: str, dap_type: str) -> Any:
    kind = np.dtype(_DTYPES[dap_type]).kind if dap_type in _DTYPES else "U"
    try:
        if kind == "f":
            return float(text)
        if kind in "iu":
            return int(text)
    except ValueError:  # an attribute, not array data: keep what the document says
        return text
    return text
