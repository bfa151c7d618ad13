"""HDF5 filter pipelines -> Zarr v3 codecs that decode the stored chunk bytes exactly.

An HDF5 pipeline is applied in order when writing (filter 0 first), so the Zarr codec
list is the ``bytes`` serializer followed by one bytes->bytes codec per filter, in the
same order. Filters without an exact codec (scale-offset, n-bit, unknown plugins) raise
:class:`UnsupportedFilter`, which the parser turns into inlined values or an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["FILTER_NAMES", "Filter", "UnsupportedFilter", "codecs_for_filters", "read_filters"]

FILTER_NAMES: dict[int, str] = {
    1: "deflate",
    2: "shuffle",
    3: "fletcher32",
    4: "szip",
    5: "nbit",
    6: "scaleoffset",
    307: "bzip2",
    32000: "lzf",
    32001: "blosc",
    32004: "lz4",
    32008: "bitshuffle",
    32013: "zfp",
    32015: "zstd",
    32017: "sz",
    32018: "fcidecomp",
    32024: "sz3",
    32026: "blosc2",
    32028: "sperr",
}
"""Names of the registered HDF5 filter ids, for messages."""

_BloscCname = Literal["blosclz", "lz4", "lz4hc", "snappy", "zlib", "zstd"]
_BloscShuffle = Literal["noshuffle", "shuffle", "bitshuffle"]
_BLOSC_CNAMES: dict[int, _BloscCname] = {
    0: "blosclz", 1: "lz4", 2: "lz4hc", 3: "snappy", 4: "zlib", 5: "zstd"
}  # fmt: skip
_BLOSC_SHUFFLES: dict[int, _BloscShuffle] = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}


@dataclass(frozen=True, slots=True)
class Filter:
    """One stage of a dataset's filter pipeline, as the file records it."""

    id: int
    """Registered filter id (1 = deflate, 32015 = zstd...)."""
    cd_values: tuple[int, ...]
    """Client data: the filter's parameters as stored (after HDF5's ``set_local``)."""
    name: str
    """Name stored in the file, or the registered name."""

    def describe(self) -> str:
        return f"{self.name} (HDF5 filter {self.id}, cd_values={list(self.cd_values)})"


class UnsupportedFilter(Exception):
    """Raised (internally) when a filter has no exact Zarr codec."""

    def __init__(self, filt: Filter, reason: str) -> None:
        super().__init__(f"{filt.describe()}: {reason}")
        self.filter = filt
        self.reason = reason


def read_filters(dcpl: Any) -> list[Filter]:
    """The filter pipeline of a dataset creation property list (``dset.id.get_create_plist()``)."""
    out = []
    for i in range(dcpl.get_nfilters()):
        fid, _flags, cd, raw_name = dcpl.get_filter(i)
        name = raw_name.decode("ascii", "replace") if isinstance(raw_name, bytes) else str(raw_name)
        name = FILTER_NAMES.get(int(fid)) or name or f"filter {fid}"
        out.append(Filter(int(fid), tuple(int(c) for c in cd), name))
    return out


def _deflate(f: Filter, dtype: np.dtype) -> Any:
    level = f.cd_values[0] if f.cd_values else 6
    return {"name": "numcodecs.zlib", "configuration": {"level": int(level)}}


def _shuffle(f: Filter, dtype: np.dtype) -> Any:
    size = f.cd_values[0] if f.cd_values else dtype.itemsize
    return {"name": "numcodecs.shuffle", "configuration": {"elementsize": int(size)}}


def _fletcher32(f: Filter, dtype: np.dtype) -> Any:
    # numcodecs' Fletcher32 is HDF5's: same checksum over 16-bit words, appended as 4 bytes
    return {"name": "numcodecs.fletcher32", "configuration": {}}


def _szip(f: Filter, dtype: np.dtype) -> Any:
    from virtualizarr.codecs import hdf5_szip

    if not hdf5_szip.available():
        raise UnsupportedFilter(f, "this imagecodecs build has no SZIP (libaec) support")
    if len(f.cd_values) < 4:
        raise UnsupportedFilter(f, "expected 4 cd_values")
    mask, ppb, bpp, pps = f.cd_values[:4]
    return hdf5_szip.Szip(
        options_mask=mask,
        pixels_per_block=ppb,
        bits_per_pixel=bpp,
        pixels_per_scanline=pps,
        header=True,
    )


def _bzip2(f: Filter, dtype: np.dtype) -> Any:
    level = f.cd_values[0] if f.cd_values else 9
    return {"name": "numcodecs.bz2", "configuration": {"level": int(level)}}


def _lzf(f: Filter, dtype: np.dtype) -> Any:
    from virtualizarr.codecs import hdf5_lzf

    return hdf5_lzf.LZF()


def _blosc(f: Filter, dtype: np.dtype) -> Any:
    from zarr.codecs import BloscCodec

    cd = f.cd_values
    # cd_values: filter version, blosc version, typesize, chunk bytes, clevel, shuffle, compressor
    typesize = cd[2] if len(cd) > 2 else dtype.itemsize
    clevel = cd[4] if len(cd) > 4 else 5
    shuffle = cd[5] if len(cd) > 5 else 1
    cname = _BLOSC_CNAMES.get(cd[6] if len(cd) > 6 else 0)
    if cname is None or shuffle not in _BLOSC_SHUFFLES:
        raise UnsupportedFilter(f, "unknown blosc compressor or shuffle code")
    from numcodecs import blosc

    if cname not in blosc.list_compressors():
        raise UnsupportedFilter(f, f"this numcodecs build of blosc cannot decompress {cname!r}")
    # a blosc frame describes itself: these settings only matter to writers
    return BloscCodec(
        typesize=max(int(typesize), 1),
        cname=cname,
        clevel=int(clevel),
        shuffle=_BLOSC_SHUFFLES[shuffle],
    )


def _lz4(f: Filter, dtype: np.dtype) -> Any:
    from virtualizarr.codecs import hdf5_lz4

    block = f.cd_values[0] if f.cd_values else 0
    return hdf5_lz4.LZ4H5(blocksize=int(block))


def _bitshuffle(f: Filter, dtype: np.dtype) -> Any:
    from virtualizarr.codecs import hdf5_bitshuffle

    cd = f.cd_values
    # cd_values: major, minor version, element size, block size (elements), compression, level
    if len(cd) < 3:
        raise UnsupportedFilter(f, "expected at least 3 cd_values")
    cname = hdf5_bitshuffle.CNAMES.get(cd[4] if len(cd) > 4 else 0)
    if cname is None:
        raise UnsupportedFilter(f, f"unknown bitshuffle compression code {cd[4]}")
    return hdf5_bitshuffle.Bitshuffle(
        elementsize=int(cd[2]),
        blocksize=int(cd[3]) if len(cd) > 3 else 0,
        cname=cname,
        clevel=int(cd[5]) if len(cd) > 5 else 3,
    )


def _zstd(f: Filter, dtype: np.dtype) -> Any:
    from zarr.codecs import ZstdCodec

    level = f.cd_values[0] if f.cd_values else 3
    return ZstdCodec(level=int(level), checksum=False)


_CODEC_FACTORIES = {
    1: _deflate,
    2: _shuffle,
    3: _fletcher32,
    4: _szip,
    307: _bzip2,
    32000: _lzf,
    32001: _blosc,
    32004: _lz4,
    32008: _bitshuffle,
    32015: _zstd,
}


def codecs_for_filters(filters: list[Filter], dtype: np.dtype) -> list[Any]:
    """Zarr v3 bytes->bytes codecs, in encode order, for an HDF5 filter pipeline.

    Raises :class:`UnsupportedFilter` for the first filter without an exact codec.

    >>> codecs_for_filters([Filter(2, (4,), "shuffle"), Filter(1, (4,), "deflate")], np.dtype("<f4"))
    [{'name': 'numcodecs.shuffle', 'configuration': {'elementsize': 4}}, \
{'name': 'numcodecs.zlib', 'configuration': {'level': 4}}]
    """
    out = []
    for f in filters:
        factory = _CODEC_FACTORIES.get(f.id)
        if factory is None:
            why = {5: "n-bit packing", 6: "scale-offset packing"}.get(
                f.id, "no Zarr codec decodes it"
            )
            raise UnsupportedFilter(f, why)
        out.append(factory(f, dtype))
    return out
