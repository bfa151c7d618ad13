"""FITS parser: image HDUs as big-endian arrays, binary tables as groups of columns.

The headers are read by :mod:`virtualizarr.parsers.fits.header` (no astropy), in a few
growing sequential reads: every HDU's header offset follows from the previous header,
and every size is checked against the file's length before it is used. What each HDU
becomes:

* image (primary or IMAGE extension) with data: the array named by its ``EXTNAME``
  (``PRIMARY`` for HDU 0, ``hdu_N`` when unnamed), chunked along its first numpy axis;
  ``BSCALE``/``BZERO`` become CF ``scale_factor``/``add_offset`` and ``BLANK`` the CF
  ``_FillValue``, so xarray's CF decoding yields astropy's scaled values (in float64,
  where astropy scales 8/16-bit integers in float32). Unsigned images (``BZERO`` =
  32768, 2**31, 2**63) and signed bytes (``BZERO`` = -128) are exact integers of
  astropy's type through the ``virtualizarr.sign_flip`` codec;
* tile-compressed image (``ZIMAGE``): one chunk per tile, read from the binary-table heap
  and decoded by the ``virtualizarr.fits_tile`` codec;
* binary table: a group of one array per column (dimension ``row``), each read in place
  through the ``virtualizarr.record_field`` codec; ``TSCALn``/``TZEROn`` are CF attributes
  (float64, as astropy), unsigned columns (``TZEROn`` = 32768, 2**31, 2**63) exact
  unsigned integers, and ``TNULLn`` the attribute ``TNULL`` (astropy does not mask it);
* random-groups primary HDU: a group of one array per group parameter (``PSCALn``/
  ``PZEROn`` as CF attributes; parameters sharing a name summed as astropy does, by the
  ``virtualizarr.fits_group_param`` codec) and ``DATA`` (see ``groups.py``);
* header cards become attributes (the primary header those of the root group when the
  primary HDU has no data).

What cannot be referenced is skipped with a :class:`VariableSkippedWarning` naming it:
ASCII-table HDUs, variable-length (``P``/``Q``) and logical (``L``)
columns. Tile-compressed images that cannot be decoded exactly (quantized floats,
partial edge tiles with RICE/PLIO/HCOMPRESS...) raise :class:`UnsupportedFeatureError`.

>>> # store = FITSParser()("s3://bucket/image.fits", registry)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.errors import (
    CorruptFileError,
    ParserError,
    VariableSkippedWarning,
    VirtualiZarrError,
)
from virtualizarr.io import LocalSource, open_source
from virtualizarr.manifests import ManifestArray, ManifestGroup
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.parsers.fits.groups import random_groups_group
from virtualizarr.parsers.fits.header import BLOCK, HDU, Header, walk_hdus
from virtualizarr.parsers.fits.tables import (
    bintable_group,
    compressed_image_array,
    file_manifest,
    header_attributes,
    pseudo_unsigned,
)
from virtualizarr.store import ManifestStore

if TYPE_CHECKING:
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["FITSParser"]

BITPIX_DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class FITSParser:
    """Virtualize FITS files.

    Parameters
    ----------
    hdus
        HDUs to include, by index or name; ``None`` (default) includes all.
    max_chunk_bytes
        Images larger than this are split along their first (slowest) axis into chunks of
        at most this size whose row count divides the axis; tables into blocks of rows.

    Examples
    --------
    >>> parser = FITSParser(hdus=["SCI"])
    >>> # store = parser("file:///data/j94f05bgq_flt.fits", ObjectStoreRegistry())
    """

    def __init__(
        self, *, hdus: Sequence[int | str] | None = None, max_chunk_bytes: int = 1 << 24
    ) -> None:
        self.hdus = None if hdus is None else list(hdus)
        self.max_chunk_bytes = int(max_chunk_bytes)

    def __repr__(self) -> str:
        return f"FITSParser(hdus={self.hdus!r}, max_chunk_bytes={self.max_chunk_bytes})"

    @staticmethod
    def sniff(head: bytes) -> bool:
        """Whether a file starting with ``head`` is FITS (its first card is ``SIMPLE  =``).

        >>> FITSParser.sniff(b"SIMPLE  =                    T"), FITSParser.sniff(b"XTENSION=")
        (True, False)
        """
        return head.startswith(b"SIMPLE  =")

    def __call__(self, url: str, registry: ObjectStoreRegistry) -> ManifestStore:
        import virtualizarr.codecs.fits
        import virtualizarr.codecs.imagecodecs_wrappers  # noqa: F401  (registrations)

        # The source detection opened (head already fetched), else a new one. Headers
        # are read in growing sequential reads through its cache (see header.walk_hdus).
        with open_source(url, registry) as src:
            url = src.url
            remote = not isinstance(src, LocalSource)
            # remotely, read on through data of up to 4 MiB between headers (cheaper than a
            # round trip), in reads growing from 1 MiB; locally read only the headers
            hdus = walk_hdus(
                src.read,
                src.size,
                url,
                first_read=(1 << 20) if remote else 16 * BLOCK,
                sequential_gap=(4 << 20) if remote else 0,
            )
            group = self._build(hdus, url, src.read, src.size)
        return ManifestStore(group, registry=registry)

    def _build(
        self, hdus: list[HDU], url: str, read: Callable[[int, int], bytes], file_size: int
    ) -> ManifestGroup:
        names = _hdu_names([hdu.header for hdu in hdus])
        selected = self._selected(names, url)
        arrays: dict[str, ManifestArray] = {}
        groups: dict[str, ManifestGroup] = {}
        root_attrs: dict[str, Any] = {}
        dims = _DimNamer()
        for hdu, name in zip(hdus, names):
            index, header = hdu.index, hdu.header
            what = f"HDU {index} ({name!r}) of {url}"
            header.what = what
            try:
                if index == 0 and header.get("NAXIS", 0) == 0:
                    root_attrs = header_attributes(header)
                if index not in selected:
                    continue
                kind = _kind(header)
                if kind == "image":
                    if header.get("NAXIS", 0) == 0:
                        continue
                    arrays[name] = self._image(hdu, url, what, dims, name)
                elif kind == "compressed":
                    naxis = header.integer("ZNAXIS")
                    shape = tuple(
                        header.integer(f"ZNAXIS{k}") for k in range(min(naxis, 999), 0, -1)
                    )
                    arrays[name] = compressed_image_array(
                        header,
                        hdu.data_offset,
                        url,
                        what,
                        dims.names(name, shape),
                        read,
                        file_size,
                    )
                elif kind == "random-groups":
                    groups[name] = random_groups_group(
                        header, hdu.data_offset, url, what, self.max_chunk_bytes
                    )
                elif kind == "bintable":
                    groups[name] = bintable_group(
                        header, hdu.data_offset, url, what, self.max_chunk_bytes, hdu.data_size
                    )
                else:
                    warnings.warn(
                        f"{what}: {kind} HDUs cannot be virtualized; skipped.",
                        VariableSkippedWarning,
                        stacklevel=2,
                    )
            except VirtualiZarrError:
                raise
            except (ValueError, KeyError, IndexError, TypeError, ArithmeticError) as e:
                # a header whose keywords contradict each other; zarr or numpy found out first
                raise CorruptFileError(
                    f"{what}: inconsistent header ({type(e).__name__}: {e})."
                ) from e
        for clash in set(arrays) & set(groups):  # an image and a table of one name
            groups[f"{clash}_table"] = groups.pop(clash)
        return ManifestGroup(arrays=arrays, groups=groups, attributes=root_attrs)

    def _selected(self, names: list[str], url: str) -> set[int]:
        if self.hdus is None:
            return set(range(len(names)))
        out = set()
        for h in self.hdus:
            if isinstance(h, int) and 0 <= h < len(names):
                out.add(h)
            elif isinstance(h, str) and h in names:
                out.add(names.index(h))
            else:
                raise ParserError(f"{url} has no HDU {h!r}; its HDUs are {names}.")
        return out

    def _image(self, hdu: HDU, url: str, what: str, dims: _DimNamer, name: str) -> ManifestArray:
        header, offset, shape = hdu.header, hdu.data_offset, hdu.shape
        bitpix = int(header["BITPIX"])
        if bitpix not in BITPIX_DTYPES:
            raise ParserError(f"{what}: BITPIX = {bitpix} is not a FITS data type.")
        dtype = np.dtype(BITPIX_DTYPES[bitpix])
        codecs: list[Any] = []
        unsigned = pseudo_unsigned(dtype, header.get("BSCALE", 1), header.get("BZERO", 0))
        if unsigned is not None:  # BZERO = 2**(bits-1): astropy's unsigned (or int8) image
            dtype, codecs = unsigned
        chunks = _image_chunks(shape, dtype.itemsize, self.max_chunk_bytes)
        grid = tuple(math.ceil(s / c) for s, c in zip(shape, chunks))
        chunk_bytes = math.prod(chunks) * dtype.itemsize
        n = math.prod(grid)
        offsets = offset + np.arange(n, dtype=np.uint64) * np.uint64(chunk_bytes)
        manifest = file_manifest(url, grid, offsets, np.full(n, chunk_bytes, np.uint64))
        attrs = header_attributes(
            header, scaling=unsigned is None, blank=bitpix > 0 and unsigned is None
        )
        if unsigned is not None and "BLANK" in header:  # astropy does not mask these either
            attrs["BLANK"] = header["BLANK"]
        meta = create_v3_array_metadata(
            shape=shape,
            data_type=dtype,
            chunk_shape=chunks,
            attributes=attrs,
            codecs=codecs,
            dimension_names=dims.names(name, shape),
        )
        return ManifestArray(meta, manifest)


def _image_chunks(shape: tuple[int, ...], itemsize: int, max_bytes: int) -> tuple[int, ...]:
    """Whole image, or rows of the first axis in blocks of a divisor of its length."""
    if 0 in shape:
        return tuple(max(s, 1) for s in shape)
    row = math.prod(shape[1:]) * itemsize
    if row * shape[0] <= max_bytes:
        return shape
    k = max(1, max_bytes // row)
    while shape[0] % k:  # chunks must tile the contiguous data exactly (no short last chunk)
        k -= 1
    return (k, *shape[1:])


def _kind(header: Header) -> str:
    xt = str(header.get("XTENSION", "")).strip().upper()
    if header.get("ZIMAGE", False) is True and xt == "BINTABLE":
        return "compressed"
    if xt == "BINTABLE":
        return "bintable"
    if xt in ("", "IMAGE"):
        return (
            "random-groups"
            if header.get("GROUPS", False) is True and header.get("NAXIS1", 1) == 0
            else "image"
        )
    return "ASCII-table" if xt == "TABLE" else f"{xt!r} extension"


def _hdu_names(headers: list[Any]) -> list[str]:
    """Unique names: EXTNAME (PRIMARY, hdu_N), duplicates suffixed by EXTVER or index."""
    base = []
    for i, h in enumerate(headers):
        name = str(h.get("EXTNAME", "") or "").strip() or ("PRIMARY" if i == 0 else f"hdu_{i}")
        base.append(name.replace("/", "_"))
    out = []
    for i, (name, h) in enumerate(zip(base, headers)):
        if base.count(name) > 1:
            ver = h.get("EXTVER")
            same = [hh.get("EXTVER") for b, hh in zip(base, headers) if b == name]
            name = f"{name}_{ver}" if ver is not None and same.count(ver) == 1 else f"{name}_{i}"
        out.append(name)
    return out


class _DimNamer:
    """``naxisN`` dimension names, shared between images of equal axis lengths."""

    def __init__(self) -> None:
        self._sizes: dict[str, int] = {}

    def names(self, hdu_name: str, shape: tuple[int, ...]) -> list[str]:
        out = []
        for k, size in enumerate(shape):
            base = f"naxis{len(shape) - k}"
            name = base if self._sizes.setdefault(base, size) == size else f"{hdu_name}_{base}"
            self._sizes.setdefault(name, size)
            out.append(name)
        return out
