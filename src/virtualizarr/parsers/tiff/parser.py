"""TIFF / GeoTIFF / COG parser: every IFD becomes a virtual array, strips or tiles its chunks.

tifffile reads the IFDs (tags, segment offsets and byte counts) through the registry's
object store; no pixel data is read. Each IFD ``i`` becomes the array ``"i"``:

* chunks are the IFD's tiles (``tilelength x tilewidth``) or strips (``rowsperstrip`` x
  image width); pixel-interleaved samples (planar configuration 1) are the last axis of
  each chunk, band-sequential samples (planar configuration 2) a leading ``band`` axis
  with chunk 1; segments with offset or byte count 0 are missing chunks (read as the
  GDAL nodata value, or 0, as tifffile reads them);
* compression and predictors map to Zarr v3 codecs (zlib, zstd, imagecodecs LZW,
  PackBits, JPEG with JPEGTables, horizontal and floating-point predictors, bit unpacking);
* GeoTIFF keys become attributes, and an affine transform without rotation gives inlined
  ``x``/``y`` coordinate arrays of the pixel centres (overviews get scaled ones).

The short last strip of a strip-organised image (fewer rows than ``rowsperstrip``) is
padded to a whole chunk by the ``virtualizarr.pad`` codec (or, when uncompressed and
the file goes on long enough, referenced with a whole chunk's length); the padded rows
lie outside the array.

>>> # store = TIFFParser()("s3://bucket/cog.tif", registry)
>>> # xr.open_zarr(store, consolidated=False, zarr_format=3)["0"]
"""

from __future__ import annotations

import logging
import math
import struct
import threading
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, Self, cast

import numpy as np

from virtualizarr.errors import (
    CodecNotSupportedError,
    CorruptFileError,
    ParserError,
    UnsupportedFeatureError,
    VariableSkippedWarning,
    VirtualiZarrError,
)
from virtualizarr.io import LocalSource, open_source
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.manifest import MISSING
from virtualizarr.manifests.metadata import create_v3_array_metadata, to_json_safe
from virtualizarr.parsers.tiff.geo import coordinate_arrays, geo_attributes, page_transform
from virtualizarr.parsers.tiff.ifd import walk_ifds
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    from tifffile import TiffPage

    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["TIFFParser"]

# TIFF compression code -> Zarr v3 codec dict (bytes->bytes); JPEG (7) is handled apart
_DECOMPRESSORS: dict[int, dict[str, Any]] = {
    5: {"name": "numcodecs.imagecodecs_lzw", "configuration": {}},
    8: {"name": "numcodecs.zlib", "configuration": {"level": 6}},
    32946: {"name": "numcodecs.zlib", "configuration": {"level": 6}},
    32773: {"name": "numcodecs.imagecodecs_packbits", "configuration": {}},
    50000: {"name": "zstd", "configuration": {"level": 0, "checksum": False}},
}


class TIFFParser:
    """Virtualize TIFF, GeoTIFF and Cloud-Optimized GeoTIFF files.

    Parameters
    ----------
    ifds
        Which IFDs (0-based) to include; ``None`` (default) includes all, so a COG's
        overviews and masks are the arrays ``"1"``, ``"2"``, ...
    coordinates
        Add ``x``/``y`` coordinate arrays (inlined) for georeferenced IFDs whose
        transform has no rotation.

    Raises
    ------
    CodecNotSupportedError
        An IFD's compression has no Zarr codec here (e.g. WebP, LERC, old-style JPEG).
    UnsupportedFeatureError
        An IFD uses a layout that cannot be referenced (YCbCr subsampling without JPEG,
        float24, complex integers, tiled volumes...).

    Examples
    --------
    >>> parser = TIFFParser(ifds=[0])
    >>> # store = parser("file:///data/RGB.byte.tif", ObjectStoreRegistry())
    """

    def __init__(
        self, *, ifds: int | Sequence[int] | None = None, coordinates: bool = True
    ) -> None:
        self.ifds = [ifds] if isinstance(ifds, int) else (None if ifds is None else list(ifds))
        self.coordinates = coordinates

    def __repr__(self) -> str:
        return f"TIFFParser(ifds={self.ifds!r}, coordinates={self.coordinates!r})"

    @staticmethod
    def sniff(head: bytes) -> bool:
        """Whether a file starting with ``head`` is a TIFF or BigTIFF (either byte order).

        >>> TIFFParser.sniff(b"II*\\x00" + bytes(4)), TIFFParser.sniff(b"MM\\x00+")
        (True, True)
        """
        return head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

    def __call__(self, url: str, registry: ObjectStoreRegistry) -> ManifestStore:
        import tifffile

        # codec registrations happen on import
        import virtualizarr.codecs.imagecodecs_wrappers
        import virtualizarr.codecs.tiff  # noqa: F401

        with open_source(url, registry) as src, _TifffileLog() as log:
            url = src.url
            if not isinstance(src, LocalSource):
                # remote: follow the IFD chain, then fetch every IFD's tag values in one
                # concurrent batch, so tifffile reads them all from the source's cache
                src.read_many(walk_ifds(src.read, src.size, url, head=src.head).values)
            # a seekable raw binary file over the source's cache; tifffile reads any such
            # file object, but its annotation names only IO[bytes], which RawIOBase is not
            fh = cast(BinaryIO, src.as_file())
            try:
                tif = tifffile.TiffFile(fh, name=url.rsplit("/", 1)[-1])
            except tifffile.TiffFileError as e:
                raise ParserError(f"Cannot read {url} as TIFF: {e}") from e
            except _CORRUPT as e:  # tifffile trusts counts and offsets
                raise CorruptFileError(f"Cannot read {url} as TIFF: {type(e).__name__}: {e}") from e
            with tif:
                try:
                    group = self._build(tif, url, src.size)
                except VirtualiZarrError:
                    raise
                except (tifffile.TiffFileError, *_CORRUPT) as e:
                    raise CorruptFileError(
                        f"{url}: an IFD is corrupt ({type(e).__name__}: {e})."
                    ) from e
        for message in log.messages:  # what tifffile dropped (geo keys, tags...): say so
            warnings.warn(
                f"{url}: tifffile: {message}; left out.", VariableSkippedWarning, stacklevel=2
            )
        return ManifestStore(group, registry=registry)

    def _build(self, tif: Any, url: str, file_size: int) -> ManifestGroup:
        pages = list(tif.pages)
        if not pages:
            raise ParserError(
                f"{url} has no readable IFD (the offset of its first IFD is invalid)."
            )
        indices = list(range(len(pages))) if self.ifds is None else self.ifds
        for i in indices:
            if not 0 <= i < len(pages):
                raise ParserError(f"{url} has {len(pages)} IFDs; IFD {i} does not exist.")
        dims = _DimNamer()
        arrays: dict[str, ManifestArray] = {}
        base = pages[0]
        base_transform = page_transform(base)
        for i in indices:
            page = pages[i]
            names = dims.names(i, page)
            attrs = {"tiff_ifd": i, **_page_attributes(page)}
            transform = page_transform(page)
            if transform is None and base_transform is not None and i != 0:
                transform = _scaled(base_transform, base, page)  # an overview/mask of IFD 0
            if transform is not None:
                attrs["transform"] = list(transform)
            arrays[str(i)] = _ifd_array(page, i, url, file_size, names, attrs)
            if self.coordinates and transform is not None:
                y_name, x_name = names[-3:-1] if _kept_axes(page)[4] else names[-2:]
                for name, arr in coordinate_arrays(
                    transform, page.imagewidth, page.imagelength, x_name, y_name, tif.is_geotiff
                ).items():
                    arrays.setdefault(name, arr)
        attrs = {
            "tiff_byteorder": tif.byteorder,
            "tiff_is_bigtiff": tif.is_bigtiff,
            "tiff_n_ifds": len(pages),
        }
        return ManifestGroup(arrays=arrays, attributes=attrs)


# What tifffile (and numpy, struct) raise on inconsistent tags: a corrupt file, never ours.
_CORRUPT = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    ZeroDivisionError,
    OverflowError,
    MemoryError,
    RecursionError,
    struct.error,
    EOFError,
)


class _TifffileLog(logging.Filter):
    """Collects (and silences) tifffile's log warnings of this thread during one parse.

    tifffile logs, and goes on without, a tag it cannot parse (GeoTIFF keys, for one);
    the parser turns each into a :class:`VariableSkippedWarning` naming the file. A
    filter on the logger (not a handler) sees only records of the thread that parses.
    """

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self._thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self._thread or record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if message not in self.messages:
            self.messages.append(message)
        return False

    def __enter__(self) -> Self:
        logging.getLogger("tifffile").addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("tifffile").removeFilter(self)


class _DimNamer:
    """Dimension names shared between IFDs of equal sizes (``y``, ``x``, ``band``...)."""

    def __init__(self) -> None:
        self._sizes: dict[str, int] = {}

    def _name(self, base: str, size: int, i: int) -> str:
        # reuse the first dimension of this kind and size (an overview and its mask share)
        for name, n in self._sizes.items():
            if n == size and (name == base or name.startswith(f"{base}_")):
                return name
        name = base if base not in self._sizes else f"{base}_{i}"
        self._sizes[name] = size
        return name

    def names(self, i: int, page: TiffPage) -> list[str]:
        sep, depth, length, width, contig = page.shaped
        keep = _kept_axes(page)
        bases = ["band", "z", "y", "x", "band"]
        sizes = [sep, depth, length, width, contig]
        return [self._name(bases[a], sizes[a], i) for a in range(5) if keep[a]]


def _samples(page: TiffPage) -> int:
    return int(page.shaped[4])


def _kept_axes(page: TiffPage) -> list[bool]:
    sep, depth, _, _, contig = page.shaped
    tiledepth = page.tiledepth if page.is_tiled else 1
    return [sep > 1, depth > 1 or tiledepth > 1, True, True, contig > 1]


def _scaled(
    transform: tuple[float, ...], base: TiffPage, page: TiffPage
) -> tuple[float, ...] | None:
    """The transform of a reduced-resolution IFD covering the same extent as ``base``."""
    a, b, c, d, e, f = transform
    if b or d:
        return None
    sx = base.imagewidth / page.imagewidth
    sy = base.imagelength / page.imagelength
    return (a * sx, 0.0, c, 0.0, e * sy, f)


_MAX_CHUNK_BYTES = 1 << 31
"""Largest decoded segment accepted: bigger ones come from corrupt tags, not real files."""


def _page_attributes(page: TiffPage) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "tiff_compression": _enum_name(page.compression),
        "tiff_photometric": _enum_name(page.photometric),
        "tiff_subfiletype": int(page.subfiletype),
    }
    if 42113 in page.tags:  # GDAL_NODATA: CF _FillValue (raw value)
        attrs["_FillValue"] = page.nodata
    if 42112 in page.tags:
        attrs["GDAL_METADATA"] = str(page.tags[42112].value)
    if page.colormap is not None:
        attrs["tiff_colormap"] = np.asarray(page.colormap).tolist()
    attrs.update(geo_attributes(page))
    return to_json_safe(attrs)


def _enum_name(v: Any) -> str:
    return getattr(v, "name", str(v))


def _what(page: TiffPage, i: int, url: str) -> str:
    return f"IFD {i} of {url} (array {str(i)!r})"


def _ifd_array(
    page: TiffPage, i: int, url: str, file_size: int, dims: list[str], attrs: dict[str, Any]
) -> ManifestArray:
    """The virtual array of one IFD."""
    sep, depth, length, width, contig = page.shaped
    if min(sep, depth, length, width, contig) <= 0:
        raise CorruptFileError(f"{_what(page, i, url)}: an empty image of shape {page.shaped}.")
    if page.is_tiled:
        seg = (page.tiledepth, page.tilelength, page.tilewidth)
        if min(seg) <= 0:
            raise CorruptFileError(f"{_what(page, i, url)}: tiles of shape {seg}.")
    else:
        if depth > 1:
            raise UnsupportedFeatureError(
                f"{_what(page, i, url)}: strips of a volume (ImageDepth > 1) are not supported."
            )
        seg = (1, min(page.rowsperstrip or length, length), width)
    full_chunk = (1, *seg, contig)
    full_shape = (sep, depth, length, width, contig)
    grid = tuple(math.ceil(s / c) for s, c in zip(full_shape, full_chunk))
    itemsize = max(np.dtype(page.dtype).itemsize if page.dtype is not None else 1, 1)
    if math.prod(full_chunk) * itemsize > _MAX_CHUNK_BYTES:
        raise CorruptFileError(
            f"{_what(page, i, url)}: segments of {full_chunk} values are larger than "
            f"{_MAX_CHUNK_BYTES} bytes (the tags are corrupt)."
        )
    offsets = np.asarray(page.dataoffsets, dtype=np.uint64)
    counts = np.asarray(page.databytecounts, dtype=np.uint64)
    if offsets.size != math.prod(grid) or counts.size != offsets.size:
        raise ParserError(
            f"{_what(page, i, url)}: {offsets.size} segment offsets and {counts.size} byte counts, "
            f"but the image of shape {page.shape} in segments of {seg} needs {math.prod(grid)}."
        )
    size = np.uint64(file_size)
    past = (
        (offsets != 0)
        & (counts != 0)
        & ((offsets > size) | (counts > size - np.minimum(offsets, size)))
    )
    if past.any():
        k = int(np.argmax(past))
        raise CorruptFileError(
            f"{_what(page, i, url)}: segment {k} ({int(counts[k])} bytes at {int(offsets[k])}) runs "
            f"past the end of the file ({file_size} bytes); the file is truncated or corrupt."
        )
    keep = _kept_axes(page)
    shape = tuple(s for s, k in zip(full_shape, keep) if k)
    chunks = tuple(c for c, k in zip(full_chunk, keep) if k)
    dtype, codecs, lengths = _codecs(page, i, url, chunks, seg, offsets, counts, file_size)
    missing = (offsets == 0) | (counts == 0)
    ids = np.where(missing, MISSING, np.uint32(0)).astype(np.uint32)
    kgrid = tuple(g for g, k in zip(grid, keep) if k)
    manifest = ChunkManifest.from_path_ids(
        table=[url],
        ids=ids.reshape(kgrid),
        offsets=offsets.reshape(kgrid),
        lengths=lengths.reshape(kgrid),
    )
    fill = page.nodata if np.dtype(dtype).kind != "b" else bool(page.nodata)
    meta = create_v3_array_metadata(
        shape=shape,
        data_type=dtype,
        chunk_shape=chunks,
        fill_value=fill,
        codecs=codecs,
        attributes=attrs,
        dimension_names=dims,
    )
    return ManifestArray(meta, manifest)


def _codecs(
    page: TiffPage,
    i: int,
    url: str,
    chunks: tuple[int, ...],
    seg: tuple[int, int, int],
    offsets: np.ndarray,
    counts: np.ndarray,
    file_size: int,
) -> tuple[np.dtype, list[Any], np.ndarray]:
    """Data type, codecs (encode order) and reference lengths of one IFD's segments."""
    what = _what(page, i, url)
    compression = int(page.compression)
    if page.dtype is None:
        raise UnsupportedFeatureError(
            f"{what}: sample format {page.sampleformat} with {page.bitspersample} bits has no numpy type."
        )
    if compression == 7:
        return _jpeg_codecs(page, what, seg)
    if compression != 1 and compression not in _DECOMPRESSORS:
        raise CodecNotSupportedError(
            f"{what}: compression {_enum_name(page.compression)} ({compression}) has no Zarr codec "
            "here; supported: none, LZW, deflate, zstd, PackBits, JPEG."
        )
    if page.is_subsampled:
        raise UnsupportedFeatureError(f"{what}: chroma-subsampled YCbCr without JPEG compression.")
    bps = page.bitspersample
    samples_in_row = seg[2] * _samples(page)
    codecs: list[Any] = []
    if isinstance(bps, tuple) or page.sampleformat == 5 or (bps == 24 and page.sampleformat == 3):
        raise UnsupportedFeatureError(f"{what}: {bps}-bit samples of format {page.sampleformat}.")
    packed = bps not in (8, 16, 32, 64, 128)
    if packed:
        if page.predictor != 1:
            raise UnsupportedFeatureError(f"{what}: a predictor with {bps}-bit packed samples.")
        dtype = np.dtype(page.dtype)
        unpacked = "|u1" if dtype.kind == "b" else dtype.newbyteorder("=").str
        bits = {"dtype": unpacked, "bitspersample": bps, "runlen": samples_in_row}
        codecs.append({"name": "numcodecs.imagecodecs_packints", "configuration": bits})
        seg_bytes = seg[0] * seg[1] * math.ceil(samples_in_row * bps / 8)
        dtype = dtype.newbyteorder("=") if dtype.kind != "b" else dtype
    else:
        dtype = np.dtype(page.dtype).newbyteorder(page.parent.byteorder)
        seg_bytes = math.prod(chunks) * dtype.itemsize
        # differencing runs along the width axis: the last one, or before contig samples
        axis = -2 if _samples(page) > 1 and page.planarconfig == 1 else -1
        if page.predictor == 2:
            codecs.append(
                {"name": "numcodecs.imagecodecs_delta", "configuration": {"axis": axis, "dist": 1}}
            )
        elif page.predictor == 3:
            dtype = dtype.newbyteorder("=")
            pred = {"shape": list(chunks), "dtype": dtype.str, "axis": axis, "dist": 1}
            codecs.append({"name": "numcodecs.imagecodecs_floatpred", "configuration": pred})
        elif page.predictor != 1:
            raise UnsupportedFeatureError(f"{what}: predictor {_enum_name(page.predictor)}.")
    lengths = counts.copy()
    partial_rows = page.imagelength % seg[1] if not page.is_tiled else 0
    min_size = seg_bytes if not partial_rows else seg_bytes // seg[1] * partial_rows
    if compression == 1:
        present = (offsets != 0) & (counts != 0)
        if np.any(counts[present] < min_size):
            raise ParserError(f"{what}: a segment holds fewer bytes than its pixels need.")
        lengths = np.where(counts > seg_bytes, np.uint64(seg_bytes), counts)
        short = present & (lengths < seg_bytes)
        # a short last strip can be referenced whole when the file goes on: the extra
        # rows are outside the array; only at the end of the file does it need padding
        fits = short & (offsets + np.uint64(seg_bytes) <= np.uint64(file_size))
        lengths = np.where(fits, np.uint64(seg_bytes), lengths)
        if np.any(short & ~fits):
            codecs.append(
                {
                    "name": "virtualizarr.pad",
                    "configuration": {"size": seg_bytes, "min_size": min_size},
                }
            )
    else:
        if partial_rows:
            codecs.append(
                {
                    "name": "virtualizarr.pad",
                    "configuration": {"size": seg_bytes, "min_size": min_size},
                }
            )
        codecs.append(_DECOMPRESSORS[compression])
    if page.fillorder == 2:
        codecs.append({"name": "numcodecs.imagecodecs_bitorder", "configuration": {}})
    return dtype, codecs, lengths


def _jpeg_codecs(
    page: TiffPage, what: str, seg: tuple[int, int, int]
) -> tuple[np.dtype, list[Any], np.ndarray]:
    import base64

    from tifffile.tifffile import jpeg_decode_colorspace

    if page.is_ndpi or seg[0] != 1:
        raise UnsupportedFeatureError(f"{what}: NDPI or volumetric JPEG segments.")
    colorspace, outcolorspace = jpeg_decode_colorspace(
        int(page.photometric), int(page.planarconfig), tuple(page.extrasamples), bool(page.is_jfif)
    )
    rows, width = seg[1], seg[2]
    edge = [
        page.imagelength - (math.ceil(page.imagelength / rows) - 1) * rows,
        page.imagewidth - (math.ceil(page.imagewidth / width) - 1) * width,
    ]
    tables = page.jpegtables
    config = {
        "shape": [rows, width, _samples(page)],
        "edge": edge,
        "dtype": np.dtype(page.dtype).newbyteorder("=").str,
        "tables": None if tables is None else base64.b64encode(bytes(tables)).decode(),
        "colorspace": colorspace,
        "outcolorspace": outcolorspace,
    }
    codec = {"name": "virtualizarr.tiff_jpeg", "configuration": to_json_safe(config)}
    return np.dtype(str(config["dtype"])), [codec], np.asarray(page.databytecounts, dtype=np.uint64)
