"""Format parsers, one module per format, all implementing :class:`Parser`.

Parser classes are imported lazily so a missing optional dependency (h5py, tifffile,
astropy, eccodes...) hides that format instead of breaking ``import virtualizarr``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from virtualizarr.errors import UnknownFormatError
from virtualizarr.parsers.protocol import Parser

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = [
    "DMRPPParser",
    "FITSParser",
    "GRIBParser",
    "HDFParser",
    "KerchunkJSONParser",
    "KerchunkParquetParser",
    "NetCDF3Parser",
    "Parser",
    "TIFFParser",
    "ZarrParser",
    "detect_parser",
    "sniff",
]

# class name -> (module, format name used in messages)
_PARSERS: dict[str, tuple[str, str]] = {
    "HDFParser": ("virtualizarr.parsers.hdf5", "NetCDF4/HDF5"),
    "NetCDF3Parser": ("virtualizarr.parsers.netcdf3", "NetCDF3 (CDF-1/2/5)"),
    "TIFFParser": ("virtualizarr.parsers.tiff", "TIFF/GeoTIFF/COG"),
    "FITSParser": ("virtualizarr.parsers.fits", "FITS"),
    "GRIBParser": ("virtualizarr.parsers.grib", "GRIB1/GRIB2"),
    "DMRPPParser": ("virtualizarr.parsers.dmrpp", "DMR++"),
    "ZarrParser": ("virtualizarr.parsers.zarr", "Zarr v2/v3 store"),
    "KerchunkJSONParser": ("virtualizarr.parsers.kerchunk", "kerchunk JSON"),
    "KerchunkParquetParser": ("virtualizarr.parsers.kerchunk", "kerchunk parquet"),
}


def __getattr__(name: str) -> Any:
    if name in _PARSERS:
        return getattr(importlib.import_module(_PARSERS[name][0]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The order parsers are asked in: binary signatures first, then the text formats, whose
# attributes may mention "GRIB" (GRIB_id, GRIB_name...), then GRIB (anywhere in the first KiB).
_SNIFF_ORDER = (
    "HDFParser",
    "NetCDF3Parser",
    "TIFFParser",
    "FITSParser",
    "DMRPPParser",
    "KerchunkJSONParser",
    "GRIBParser",
)


def sniff(head: bytes) -> str | None:
    """The name of the first parser class whose ``sniff(head)`` accepts a file's first bytes.

    Each parser owns its signature (``HDFParser.sniff`` ...); a parser whose optional
    dependencies are missing is not asked.

    >>> sniff(b"CDF\\x01" + bytes(4)), sniff(b"nothing known")
    ('NetCDF3Parser', None)
    """
    for name in _SNIFF_ORDER:
        try:
            cls = __getattr__(name)
        except ImportError:
            continue
        if cls.sniff(head):
            return name
    return None


def detect_parser(url: str, registry: ObjectStoreRegistry) -> Parser:
    """A default-configured parser for ``url``, chosen from its first bytes.

    Directories/prefixes are recognised as Zarr stores (``zarr.json``, ``.zgroup``,
    ``.zarray``) or kerchunk parquet references (``.zmetadata`` with ``record_size``).
    The file's :class:`~virtualizarr.io.ByteSource` is handed to the parser (its
    ``open_source`` call in this thread gets it back), so the head is fetched once.
    Raises ``FileNotFoundError`` naming ``url`` when nothing is there.
    """
    from virtualizarr.io import hand_over, open_source
    from virtualizarr.manifests.manifest import normalize_path

    url = normalize_path(url)
    try:
        source = open_source(url, registry)
    except (FileNotFoundError, IsADirectoryError) as e:
        # not an object: maybe a directory or prefix holding a Zarr store
        name = _sniff_directory(url, registry)
        if name is None:
            if not isinstance(e, IsADirectoryError):
                raise
            known = ", ".join(sorted({fmt for _, fmt in _PARSERS.values()}))
            raise UnknownFormatError(
                f"Cannot tell the format of {url}: it is a directory holding no Zarr store "
                f"(zarr.json, .zgroup, .zarray) or kerchunk parquet references. Known formats: {known}."
            ) from None
        return __getattr__(name)()
    head = source.head[:4096]
    name = sniff(head)
    if name is None:
        source.close()
        known = ", ".join(sorted({fmt for _, fmt in _PARSERS.values()}))
        what = "is empty" if not head else f"starts with {head[:8]!r}"
        raise UnknownFormatError(
            f"Cannot tell the format of {url}: it {what}, which matches no known format. "
            f"Known formats: {known}. Pass parser= explicitly if it is one of them."
        )
    hand_over(source, registry)
    return __getattr__(name)()


def _sniff_directory(url: str, registry: ObjectStoreRegistry) -> str | None:
    import json

    from virtualizarr.io import read_range

    base = url.rstrip("/")
    for marker in ("zarr.json", ".zgroup", ".zarray"):
        try:
            read_range(f"{base}/{marker}", 0, 1, registry)
        except OSError:
            continue
        if marker == ".zgroup":  # kerchunk parquet also has .zmetadata, with record_size
            break
        return "ZarrParser"
    try:
        zmeta = json.loads(read_range(f"{base}/.zmetadata", 0, 1 << 26, registry))
    except (OSError, ValueError):
        return "ZarrParser" if marker == ".zgroup" else None
    return "KerchunkParquetParser" if "record_size" in zmeta else "ZarrParser"
