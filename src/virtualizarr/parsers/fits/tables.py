"""FITS binary tables for the FITS parser: header attributes, column arrays, compressed images.

A binary table is row-major: each column's values are strided through the table. Every
column is an array whose chunks are blocks of whole rows (one contiguous byte range
each), decoded by the ``virtualizarr.record_field`` codec to that column's bytes. A
tile-compressed image is a binary table whose ``COMPRESSED_DATA`` column holds, per row,
a (count, offset) descriptor of one compressed tile in the heap: each tile is a chunk.

>>> parse_tform("5E"), parse_tform("1PB(506)"), parse_tform("32X")
((5, 'E', 20), (1, 'P', 8), (32, 'X', 4))
"""

from __future__ import annotations

import gzip
import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from virtualizarr.errors import (
    CodecNotSupportedError,
    CorruptFileError,
    ParserError,
    UnsupportedFeatureError,
    VariableSkippedWarning,
)
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.metadata import create_v3_array_metadata, to_json_safe

__all__ = [
    "bintable_group",
    "compressed_image_array",
    "file_manifest",
    "header_attributes",
    "parse_tform",
    "pseudo_unsigned",
    "record_field",
]

_TFORM = re.compile(r"^\s*(\d*)\s*([LXBIJKAEDCMPQ])(.*)$")
_WIDTH = {
    "L": 1,
    "B": 1,
    "I": 2,
    "J": 4,
    "K": 8,
    "A": 1,
    "E": 4,
    "D": 8,
    "C": 8,
    "M": 16,
    "P": 8,
    "Q": 16,
}
_DTYPE = {
    "B": "u1",
    "I": ">i2",
    "J": ">i4",
    "K": ">i8",
    "E": ">f4",
    "D": ">f8",
    "C": ">c8",
    "M": ">c16",
}
_BITPIX = {8: "|u1", 16: "<i2", 32: "<i4", 64: "<i8", -32: "<f4", -64: "<f8"}
_STRUCTURAL = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|XTENSION|PCOUNT|GCOUNT|GROUPS|TFIELDS|THEAP|END|CHECKSUM|DATASUM"
    r"|BSCALE|BZERO|BLANK|T(TYPE|FORM|UNIT|SCAL|ZERO|NULL|DIM|DISP)\d+"
    r"|Z(IMAGE|BITPIX|NAXIS\d*|TILE\d+|CMPTYPE|NAME\d+|VAL\d+|SIMPLE|EXTEND|TENSION|PCOUNT|GCOUNT"
    r"|HECKSUM|DATASUM|QUANTIZ|DITHER0|BLANK|SCALE|ZERO|MASKCMP))$"
)


def parse_tform(tform: str) -> tuple[int, str, int]:
    """``(repeat, type code, bytes per row)`` of a binary-table ``TFORMn``."""
    m = _TFORM.match(str(tform))
    if m is None:
        raise ParserError(f"TFORM {tform!r} is not a binary-table column format.")
    repeat = int(m.group(1)) if m.group(1) else 1
    code = m.group(2)
    if code == "X":
        return repeat, code, math.ceil(repeat / 8)
    if code in "PQ":
        return repeat, code, repeat * _WIDTH[code]
    return repeat, code, repeat * _WIDTH[code]


def pseudo_unsigned(dtype: np.dtype, scale: Any, zero: Any) -> tuple[np.dtype, list[Any]] | None:
    """The dtype and codecs of an integer stored with offset ``-2**(bits-1)``, else None.

    FITS has no unsigned 16/32/64-bit (or signed 8-bit) integers: they are stored as the
    other signedness with ``BZERO``/``TZEROn`` = 32768, 2**31, 2**63 (or -128). Adding
    that offset flips the sign bit, which the ``virtualizarr.sign_flip`` codec does on the
    stored bytes, so the values are exact integers of astropy's type, not floats.

    >>> pseudo_unsigned(np.dtype(">i2"), 1, 32768)
    (dtype('>u2'), [{'name': 'virtualizarr.sign_flip', 'configuration': {'itemsize': 2}}])
    """
    if isinstance(scale, bool) or isinstance(zero, bool):
        return None
    if not isinstance(scale, int | float) or not isinstance(zero, int | float) or scale != 1:
        return None
    size = dtype.itemsize
    if dtype.kind == "i" and size in (2, 4, 8) and zero == 2 ** (8 * size - 1):
        out = np.dtype(f">u{size}")
    elif dtype.kind == "u" and size == 1 and zero == -128:
        out = np.dtype("i1")
    else:
        return None
    return out, [{"name": "virtualizarr.sign_flip", "configuration": {"itemsize": size}}]


def _value(v: Any) -> Any:
    if isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, complex):
        return str(v)
    return None  # astropy's Undefined


def file_manifest(
    url: str, grid: tuple[int, ...], offsets: np.ndarray, lengths: np.ndarray
) -> ChunkManifest:
    """The chunks of ``grid`` (C order) at ``offsets``/``lengths`` of the file ``url``;
    an empty manifest when the grid has no chunks."""
    if math.prod(grid) == 0:
        return ChunkManifest.empty(grid)
    return ChunkManifest.from_path_ids(
        table=[url],
        ids=np.zeros(grid, np.uint32),
        offsets=np.reshape(offsets, grid),
        lengths=np.reshape(lengths, grid),
    )


def record_field(record_size: int, offset: int, size: int, records: int) -> dict[str, Any]:
    """The ``virtualizarr.record_field`` codec: bytes ``[offset, offset + size)`` of each
    of ``records`` records of ``record_size`` bytes (a column, a parameter, group data)."""
    config = {"record_size": record_size, "offset": offset, "size": size, "records": records}
    return {"name": "virtualizarr.record_field", "configuration": config}


def header_attributes(
    header: Any, *, scaling: bool = False, blank: bool = False, compressed: bool = False
) -> dict[str, Any]:
    """Header cards as attributes; for data, BSCALE/BZERO/BLANK as CF attributes.

    ``scaling`` adds ``scale_factor``/``add_offset``, ``blank`` the ``_FillValue`` (integer
    images; ``ZBLANK`` first when ``compressed``).
    """
    attrs: dict[str, Any] = {}
    text: dict[str, list[str]] = {}
    for card in header.cards:
        key = card.keyword
        if key in ("COMMENT", "HISTORY", ""):
            if key and str(card.value).strip():
                text.setdefault(key, []).append(str(card.value))
            continue
        if _STRUCTURAL.match(key):
            continue
        attrs.setdefault(key, _value(card.value))
    attrs.update({k: "\n".join(v) for k, v in text.items()})
    scale, zero = header.get("BSCALE", 1), header.get("BZERO", 0)
    if scaling and scale != 1:
        attrs["scale_factor"] = float(scale)
    if scaling and zero != 0:
        attrs["add_offset"] = float(zero) if not float(zero).is_integer() else int(zero)
    null = header.get("ZBLANK", header.get("BLANK")) if compressed else header.get("BLANK")
    if blank and null is not None:
        attrs["_FillValue"] = int(null)
    return to_json_safe(attrs)


class _Column:
    __slots__ = ("code", "dims", "index", "name", "offset", "repeat", "width")

    def __init__(self, index: int, name: str, tform: str, offset: int, tdim: str | None) -> None:
        self.index, self.name, self.offset = index, name, offset
        self.repeat, self.code, self.width = parse_tform(tform)
        dims: tuple[int, ...] = (self.repeat,) if self.repeat != 1 else ()
        if tdim:  # TDIMn = '(a,b,c)', FITS order: numpy shape is reversed
            parsed = tuple(int(d) for d in re.findall(r"\d+", tdim))[::-1]
            if math.prod(parsed) == self.repeat:
                dims = parsed
        if self.code == "A" and self.repeat:  # the fastest axis (or repeat) is the string length
            dims = dims[:-1]
        elif self.code == "A" or self.repeat == 0:  # zero width: an empty axis, no bytes
            dims = (0,)
        self.dims = dims


def _columns(header: Any) -> list[_Column]:
    cols, offset = [], 0
    rowlen = header.integer("NAXIS1", 0)
    tfields = header.integer("TFIELDS", 0)
    if tfields > 999:
        raise CorruptFileError(f"{header.what}: TFIELDS = {tfields} is more than 999.")
    for n in range(1, tfields + 1):
        name = str(header.get(f"TTYPE{n}", "") or "").strip().replace("/", "_") or f"col{n}"
        try:
            col = _Column(n, name, str(header[f"TFORM{n}"]), offset, header.get(f"TDIM{n}"))
        except ParserError as e:
            raise CorruptFileError(f"{header.what}, column {n}: {e}") from e
        offset += col.width
        if offset > rowlen:
            raise CorruptFileError(
                f"{header.what}: columns 1..{n} take {offset} bytes, more than a row's NAXIS1 = {rowlen}."
            )
        cols.append(col)
    return cols


def _column_attrs(header: Any, n: int) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for key, attr in (("TUNIT", "units"), ("TDISP", "TDISP")):
        if f"{key}{n}" in header:
            attrs[attr] = str(header[f"{key}{n}"])
    scale, zero = header.get(f"TSCAL{n}", 1), header.get(f"TZERO{n}", 0)
    for key, v in ((f"TSCAL{n}", scale), (f"TZERO{n}", zero)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise CorruptFileError(f"{header.what}: {key} = {v!r} is not a finite number.")
    if scale != 1:
        attrs["scale_factor"] = float(scale)
    if zero != 0:
        # a float offset keeps float64 precision (e.g. a Julian date zero point)
        attrs["add_offset"] = int(zero) if float(zero).is_integer() else float(zero)
    if f"TNULL{n}" in header:
        # astropy leaves binary-table nulls unmasked; CF masking would change the type
        attrs["TNULL"] = header[f"TNULL{n}"]
    return attrs


def bintable_group(
    header: Any,
    data_offset: int,
    url: str,
    what: str,
    max_chunk_bytes: int,
    data_size: int | None = None,
) -> ManifestGroup:
    """A group of one virtual array per column of a binary table.

    ``data_size`` (the HDU's data bytes, already checked against the file) must hold the
    ``NAXIS1 x NAXIS2`` table.
    """
    if header.integer("NAXIS") != 2:
        raise CorruptFileError(f"{what}: a binary table needs NAXIS = 2, not {header['NAXIS']}.")
    rowlen, nrows = header.integer("NAXIS1"), header.integer("NAXIS2")
    if data_size is not None and rowlen * nrows > data_size:
        raise CorruptFileError(
            f"{what}: {nrows} rows of {rowlen} bytes exceed its data ({data_size} bytes)."
        )
    rows = min(max(nrows, 1), max(1, max_chunk_bytes // max(rowlen, 1)))
    nchunks = math.ceil(nrows / rows)
    offsets = lengths = np.zeros(0, np.uint64)
    if rowlen:  # (rows of 0 bytes: only zero-width columns, nothing to reference)
        starts = np.arange(nchunks, dtype=np.uint64) * np.uint64(rows)
        offsets = np.uint64(data_offset) + starts * np.uint64(rowlen)
        lengths = np.minimum(np.uint64(rows), np.uint64(nrows) - starts) * np.uint64(rowlen)
    arrays: dict[str, ManifestArray] = {}
    for col in _columns(header):
        name = col.name if col.name not in arrays else f"{col.name}_{col.index}"
        where = f"{what}, column {col.name!r}"
        if col.code in "PQL":
            reason = (
                "a variable-length array"
                if col.code in "PQ"
                else "logical (T/F bytes, not booleans)"
            )
            warnings.warn(f"{where} is {reason}; skipped.", VariableSkippedWarning, stacklevel=3)
            continue
        unsigned = None
        if col.code == "A":
            dtype = np.dtype(f"S{max(col.repeat // max(math.prod(col.dims), 1), 1)}")
        else:
            dtype = np.dtype(bool if col.code == "X" else _DTYPE[col.code])
            if col.code in "IJK":
                unsigned = pseudo_unsigned(
                    dtype, header.get(f"TSCAL{col.index}", 1), header.get(f"TZERO{col.index}", 0)
                )
        shape = (nrows, *col.dims)
        chunks = (rows, *(max(d, 1) for d in col.dims))
        grid = (nchunks, *(1 if d else 0 for d in col.dims))
        codecs: list[Any] = []
        if unsigned is not None:  # TZERO = 2**(bits-1): unsigned integers, as astropy reads them
            dtype, flip = unsigned
            codecs.extend(flip)
        if col.code == "X":
            bits = {"dtype": "|u1", "bitspersample": 1, "runlen": col.repeat}
            codecs.append({"name": "numcodecs.imagecodecs_packints", "configuration": bits})
        codecs.append(record_field(rowlen, col.offset, col.width, rows))
        manifest = file_manifest(url, grid, offsets, lengths)  # empty: no rows, or zero width
        dims = ["row", *(f"{name}_dim{k}" for k in range(len(col.dims)))]
        attrs = {"fits_tform": str(header[f"TFORM{col.index}"]), **_column_attrs(header, col.index)}
        if unsigned is not None:
            attrs.pop("add_offset", None)
        meta = create_v3_array_metadata(
            shape=shape,
            data_type=dtype,
            chunk_shape=chunks,
            codecs=codecs,
            attributes=attrs,
            dimension_names=dims,
        )
        arrays[name] = ManifestArray(meta, manifest)
    return ManifestGroup(arrays=arrays, attributes=header_attributes(header))


def _setting(header: Any, name: str, default: int) -> int:
    for n in range(1, 1000):
        if f"ZNAME{n}" not in header:
            break
        if str(header[f"ZNAME{n}"]).strip().upper() == name:
            return int(header[f"ZVAL{n}"])
    return default


def compressed_image_array(
    header: Any,
    data_offset: int,
    url: str,
    what: str,
    dims: list[str],
    read: Callable[[int, int], bytes],
    file_size: int | None = None,
) -> ManifestArray:
    """The virtual array of a tile-compressed image: one chunk per tile of the heap."""
    from virtualizarr.codecs.fits import ALGORITHMS

    algorithm = str(header["ZCMPTYPE"]).strip().upper()
    if algorithm not in ALGORITHMS:
        raise CodecNotSupportedError(
            f"{what}: tile compression {algorithm!r} has no codec; supported: {ALGORITHMS}."
        )
    zbitpix, ndim = header["ZBITPIX"], header.integer("ZNAXIS", low=1)
    if zbitpix not in _BITPIX or isinstance(zbitpix, bool) or ndim > 999:
        raise CorruptFileError(
            f"{what}: ZBITPIX = {zbitpix!r}, ZNAXIS = {ndim} are not an image type."
        )
    shape = tuple(header.integer(f"ZNAXIS{k}") for k in range(ndim, 0, -1))
    tile = tuple(
        header.integer(f"ZTILE{k}", header[f"ZNAXIS{k}"] if k == 1 else 1, low=1)
        for k in range(ndim, 0, -1)
    )
    if math.prod(tile) * 8 > max(file_size or 0, 1) * 1024 or 0 in shape:
        # a tile decodes to at most ~1000x its compressed size; an empty image has no tiles
        raise CorruptFileError(
            f"{what}: tiles of {tile} cannot be stored in this file of {file_size} bytes."
        )
    cols = {c.name.upper(): c for c in _columns(header)}
    if (
        "ZSCALE" in cols
        or "ZZERO" in cols
        or "ZSCALE" in header
        or (zbitpix < 0 and algorithm not in ("GZIP_1", "GZIP_2", "NOCOMPRESS"))
    ):
        raise UnsupportedFeatureError(
            f"{what}: quantized floating-point tiles (per-tile ZSCALE/ZZERO and dithering)."
        )
    if "ZBLANK" in cols:
        raise UnsupportedFeatureError(f"{what}: per-tile null values (a ZBLANK column).")
    data = cols.get("COMPRESSED_DATA")
    if data is None or data.code not in "PQ":
        raise ParserError(
            f"{what}: a compressed image without a COMPRESSED_DATA descriptor column."
        )
    rowlen, nrows = header.integer("NAXIS1"), header.integer("NAXIS2")
    grid = tuple(math.ceil(s / t) for s, t in zip(shape, tile))
    if nrows != math.prod(grid):
        raise ParserError(
            f"{what}: {nrows} table rows for {math.prod(grid)} tiles of {tile} in {shape}."
        )
    if file_size is not None and data_offset + rowlen * nrows > file_size:
        raise CorruptFileError(
            f"{what}: its table of {nrows} rows of {rowlen} bytes runs past the end of the file."
        )
    if data.offset + data.width > rowlen:
        raise CorruptFileError(
            f"{what}: the COMPRESSED_DATA column lies outside a row of {rowlen} bytes."
        )
    raw = read(data_offset, rowlen * nrows)
    if len(raw) != rowlen * nrows:
        raise CorruptFileError(
            f"{what}: its table is truncated ({len(raw)} of {rowlen * nrows} bytes)."
        )
    table = np.frombuffer(raw, np.uint8).reshape(nrows, rowlen)
    desc = (
        table[:, data.offset : data.offset + data.width]
        .copy()
        .view(">i4" if data.code == "P" else ">i8")
    )
    if np.any(desc < 0):
        raise CorruptFileError(f"{what}: negative tile descriptors in COMPRESSED_DATA.")
    count, heap_offset = desc[:, 0].astype(np.uint64), desc[:, 1].astype(np.uint64)
    if np.any(count == 0):
        raise UnsupportedFeatureError(
            f"{what}: some tiles are stored uncompressed or in GZIP_COMPRESSED_DATA (COMPRESSED_DATA is empty "
            "for them), which one codec cannot describe."
        )
    tform = str(header[f"TFORM{data.index}"])
    m = _TFORM.match(tform)
    if m is None:
        raise CorruptFileError(
            f"{what}: TFORM{data.index} = {tform!r} is not a binary table format."
        )
    elem = {"B": 1, "I": 2, "J": 4}.get(m.group(3).strip()[:1], 1)
    theap = header.integer("THEAP", rowlen * nrows)
    heap = np.uint64(data_offset + theap)
    ends = heap + heap_offset + count * np.uint64(elem)
    if file_size is not None and (theap > file_size or (ends.size and int(ends.max()) > file_size)):
        raise CorruptFileError(
            f"{what}: a tile's heap bytes run past the end of the file ({file_size} bytes)."
        )
    config: dict[str, Any] = {
        "algorithm": algorithm,
        "shape": list(tile),
        "dtype": _BITPIX[zbitpix],
    }
    if algorithm.startswith("RICE"):
        config |= {
            "blocksize": _setting(header, "BLOCKSIZE", 32),
            "bytepix": _setting(header, "BYTEPIX", 4),
        }
    elif algorithm == "HCOMPRESS_1":
        config["smooth"] = _setting(header, "SMOOTH", 0)
    partial = [s % t != 0 for s, t in zip(shape, tile)]
    if any(partial):
        if any(partial[1:]) or algorithm not in ("GZIP_1", "GZIP_2", "NOCOMPRESS"):
            raise UnsupportedFeatureError(
                f"{what}: {algorithm} tiles of {tile} do not divide the image shape {shape}, and edge tiles "
                "smaller than a chunk can only be padded for GZIP/NOCOMPRESS along the first axis."
            )
        # a short tile needs the stored value size, which only a decoded tile tells
        first = read(int(heap + heap_offset[0]), int(count[0]) * elem)
        npix = math.prod(min(s, t) for s, t in zip(shape, tile))
        nbytes = len(gzip.decompress(first)) if algorithm.startswith("GZIP") else len(first)
        config["itemsize"] = nbytes // npix
    manifest = file_manifest(url, grid, heap + heap_offset, count * np.uint64(elem))
    attrs = {
        "fits_zcmptype": algorithm,
        **header_attributes(header, scaling=True, blank=zbitpix > 0, compressed=True),
    }
    meta = create_v3_array_metadata(
        shape=shape,
        data_type=_BITPIX[zbitpix],
        chunk_shape=tile,
        attributes=attrs,
        dimension_names=dims,
        codecs=[{"name": "virtualizarr.fits_tile", "configuration": config}],
    )
    return ManifestArray(meta, manifest)
