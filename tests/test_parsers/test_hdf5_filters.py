"""HDF5 filters: every supported filter decodes, through the ManifestStore, to h5py's values.

Files are written with h5py (and hdf5plugin for the plugin filters) in ``tmp_path``; each
filter is tried with both byte orders and with partial edge chunks, through both parser
engines (``hdf_parse``): our reader decodes deflate, shuffle, fletcher32 and zstd chunks itself
and leaves values behind other filters to h5py (``not_decoded``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr

from tests.conftest import HDFParse
from virtualizarr.errors import CodecNotSupportedError, UnsupportedFeatureError
from virtualizarr.store import ManifestStore

h5py = pytest.importorskip("h5py")
hdf5plugin = pytest.importorskip("hdf5plugin")
imagecodecs = pytest.importorskip("imagecodecs")
# netCDF4 points HDF5_PLUGIN_PATH at its own plugins when imported; if it was imported
# first, HDF5 loads its blosc plugin, which fails when *writing*. Use hdf5plugin's filters.
hdf5plugin.register(force=True)

SHAPE, CHUNKS = (75, 53), (20, 16)  # partial edge chunks on both axes


def values(store: ManifestStore, name: str = "x") -> np.ndarray:
    return zarr.open_group(store, mode="r", zarr_format=3)[name][...]


def codec_names(store: ManifestStore, name: str = "x") -> list[str]:
    return [c["name"] for c in store.group[name].metadata.to_dict()["codecs"]]


def smooth(dtype: str, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Compressible data with a sign change, in ``dtype``."""
    base = (np.arange(np.prod(shape)).reshape(shape) // 7) % 50 - 20
    return base.astype(dtype)


def write(path: Path, data: np.ndarray, **kwargs: Any) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, chunks=CHUNKS, **kwargs)
    return path


def not_decoded(filter_name: str) -> str:
    """``hdf_parse``'s ``fallback`` for values behind ``filter_name``: our reader decodes only
    deflate, shuffle, fletcher32 and zstd chunks itself (to inline values or re-encode chunks
    stored with a filter skipped) and reads files needing any other decoded with h5py."""
    return rf"does not implement decoding {filter_name} \(HDF5 filter \d+"


def assert_like_h5py(store: ManifestStore, path: Path, name: str = "x") -> None:
    with h5py.File(path, "r") as f:
        expected = f[name][()]
    got = values(store, name)
    assert got.dtype == expected.dtype.newbyteorder("=")  # zarr hands out native byte order
    np.testing.assert_array_equal(got, expected)


# -- every filter, both byte orders ---------------------------------------------------------

FILTERS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "deflate": ({"compression": "gzip", "compression_opts": 4}, ["numcodecs.zlib"]),
    "shuffle+deflate": (
        {"compression": "gzip", "shuffle": True},
        ["numcodecs.shuffle", "numcodecs.zlib"],
    ),
    "fletcher32": ({"fletcher32": True}, ["numcodecs.fletcher32"]),
    "shuffle+deflate+fletcher32": (
        {"compression": "gzip", "shuffle": True, "fletcher32": True},
        ["numcodecs.shuffle", "numcodecs.zlib", "numcodecs.fletcher32"],
    ),
    "lzf": ({"compression": "lzf"}, ["numcodecs.hdf5_lzf"]),
    "bzip2": (dict(hdf5plugin.BZip2()), ["numcodecs.bz2"]),
    "blosc-lz4-shuffle": (dict(hdf5plugin.Blosc(cname="lz4", shuffle=1)), ["blosc"]),
    "blosc-zstd-bitshuffle": (dict(hdf5plugin.Blosc(cname="zstd", shuffle=2)), ["blosc"]),
    "blosc-zlib-noshuffle": (dict(hdf5plugin.Blosc(cname="zlib", shuffle=0)), ["blosc"]),
    "lz4": (dict(hdf5plugin.LZ4()), ["numcodecs.imagecodecs_lz4h5"]),
    "lz4-small-blocks": (dict(hdf5plugin.LZ4(nbytes=64)), ["numcodecs.imagecodecs_lz4h5"]),
    "bitshuffle": (dict(hdf5plugin.Bitshuffle(cname="none")), ["numcodecs.hdf5_bitshuffle"]),
    "bitshuffle-lz4": (dict(hdf5plugin.Bitshuffle(cname="lz4")), ["numcodecs.hdf5_bitshuffle"]),
    "bitshuffle-zstd": (
        dict(hdf5plugin.Bitshuffle(cname="zstd", clevel=5)),
        ["numcodecs.hdf5_bitshuffle"],
    ),
    "bitshuffle-lz4-16": (
        dict(hdf5plugin.Bitshuffle(nelems=16, cname="lz4")),
        ["numcodecs.hdf5_bitshuffle"],
    ),
    "zstd": (dict(hdf5plugin.Zstd(clevel=7)), ["zstd"]),
    "shuffle+zstd": ({"shuffle": True, **dict(hdf5plugin.Zstd())}, ["numcodecs.shuffle", "zstd"]),
}
if h5py.h5z.filter_avail(h5py.h5z.FILTER_SZIP):
    FILTERS["szip"] = ({"compression": "szip"}, ["numcodecs.imagecodecs_szip"])
    FILTERS["szip-nn"] = (
        {"compression": "szip", "compression_opts": ("nn", 16)},
        ["numcodecs.imagecodecs_szip"],
    )


@pytest.mark.parametrize("dtype", ["<f4", ">f4", ">i2", "<u8", ">f8", "|u1"])
@pytest.mark.parametrize("filt", list(FILTERS), ids=list(FILTERS))
def test_filter_decodes_like_h5py(
    hdf_parse: HDFParse, tmp_path: Path, filt: str, dtype: str
) -> None:
    kwargs, expected_codecs = FILTERS[filt]
    if filt.startswith("szip") and dtype in ("<u8", ">f8"):
        pytest.skip("HDF5's szip takes at most 32 bits per pixel")
    path = write(tmp_path / "f.h5", smooth(dtype), **kwargs)
    # chunks on which an optional filter gave up (blosc on tiny chunks) are inlined, their
    # values decoded; every other chunk must be a reference
    masks = np.array(filter_masks(path))
    mixed = len(set(masks.tolist())) > 1
    store = hdf_parse(path, fallback=not_decoded(filt.split("-")[0]) if mixed else None)
    assert codec_names(store) == ["bytes", *expected_codecs]
    manifest = store.group["x"].manifest
    assert int(manifest.inlined.sum()) == int(np.count_nonzero(masks != masks.min()))
    assert manifest.shape_chunk_grid == (4, 4)
    assert store.group["x"].metadata.data_type.to_native_dtype() == np.dtype(dtype)
    assert_like_h5py(store, path)


def test_random_data_deflate_shuffle_fletcher(hdf_parse: HDFParse, tmp_path: Path) -> None:
    data = np.random.default_rng(0).standard_normal(SHAPE).astype(">f8")
    path = write(tmp_path / "r.h5", data, compression="gzip", shuffle=True, fletcher32=True)
    assert_like_h5py(hdf_parse(path), path)


def test_fletcher32_detects_corruption(hdf_parse: HDFParse, tmp_path: Path) -> None:
    """A flipped byte in a checksummed chunk raises instead of reading wrong values."""
    path = write(tmp_path / "c.h5", smooth("<i4"), fletcher32=True)
    store = hdf_parse(path)
    entry = store.group["x"].manifest.get_entry((0, 0))
    raw = bytearray(path.read_bytes())
    raw[entry["offset"] + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    store = hdf_parse(path)  # virtualized again: the old store would refuse the changed file
    with pytest.raises(RuntimeError, match="fletcher32"):
        values(store)


# -- filter masks: chunks stored with a filter skipped --------------------------------------


def mixed_lzf_file(path: Path) -> Path:
    """LZF skips itself on incompressible chunks: rows 0-19 compress, the others do not."""
    data = np.random.default_rng(1).integers(0, 2**62, SHAPE, dtype="<i8")
    data[:20] = 7
    return write(path, data, compression="lzf")


def filter_masks(path: Path) -> list[int]:
    masks: list[int] = []
    with h5py.File(path, "r") as f:
        f["x"].id.chunk_iter(lambda info: masks.append(info.filter_mask))
    return masks


def test_mixed_filter_masks_are_reencoded(hdf_parse: HDFParse, tmp_path: Path) -> None:
    path = mixed_lzf_file(tmp_path / "m.h5")
    masks = filter_masks(path)
    assert 0 in masks
    assert 1 in masks
    store = hdf_parse(path, fallback=not_decoded("lzf"))
    manifest = store.group["x"].manifest
    assert codec_names(store) == ["bytes", "numcodecs.hdf5_lzf"]
    assert int(manifest.inlined.sum()) == masks.count(1)
    assert_like_h5py(store, path)


def test_mixed_filter_masks_over_limit_raise(
    hdf_parse: HDFParse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from virtualizarr.parsers.hdf5 import arrays as hdf5_arrays

    monkeypatch.setattr(hdf5_arrays, "REENCODE_LIMIT", 100)
    path = mixed_lzf_file(tmp_path / "m.h5")
    with pytest.raises(UnsupportedFeatureError, match=r"m\.h5.*'x'.*filter skipped"):
        hdf_parse(path)


def test_uniformly_skipped_filter_is_dropped(hdf_parse: HDFParse, tmp_path: Path) -> None:
    # no edge chunks: their zero-filled overhang would compress
    data = np.random.default_rng(2).integers(0, 2**64, (80, 64), dtype="<u8").astype(">u8")
    path = write(tmp_path / "u.h5", data, compression="lzf", fletcher32=True)
    assert set(filter_masks(path)) == {1}  # filter 0 (lzf) skipped everywhere
    store = hdf_parse(path)
    assert codec_names(store) == ["bytes", "numcodecs.fletcher32"]
    assert not store.group["x"].manifest.inlined.any()
    assert_like_h5py(store, path)


# -- filters without a Zarr codec: inline when small, else a clear error ----------------------


def test_scaleoffset_small_is_inlined(hdf_parse: HDFParse, tmp_path: Path) -> None:
    path = write(tmp_path / "s.h5", smooth("<i4"), scaleoffset=0)
    store = hdf_parse(path, fallback=not_decoded("scaleoffset"))
    assert codec_names(store) == ["bytes"]
    assert store.group["x"].manifest.inlined.all()
    assert_like_h5py(store, path)


def test_scaleoffset_float_small_is_inlined(hdf_parse: HDFParse, tmp_path: Path) -> None:
    path = write(tmp_path / "s.h5", smooth(">f8") / 7, scaleoffset=3)
    assert_like_h5py(hdf_parse(path, fallback=not_decoded("scaleoffset")), path)


def test_scaleoffset_large_raises(hdf_parse: HDFParse, tmp_path: Path) -> None:
    path = write(tmp_path / "big.h5", smooth("<i4"), scaleoffset=0)
    with pytest.raises(
        CodecNotSupportedError, match=r"big\.h5.*'x'.*scaleoffset.*inline_threshold"
    ):
        hdf_parse(path, inline_threshold=100)


def test_nbit_is_inlined(hdf_parse: HDFParse, tmp_path: Path) -> None:
    path = tmp_path / "n.h5"
    with h5py.File(path, "w") as f:
        tid = h5py.h5t.STD_I32LE.copy()  # HDF5 2 refuses unusual precisions without relaxing checks
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk(CHUNKS)
        dcpl.set_filter(h5py.h5z.FILTER_NBIT)
        space = h5py.h5s.create_simple(SHAPE)
        h5py.h5d.create(f.id, b"x", tid, space, dcpl=dcpl)
        f["x"][...] = smooth("<i4")
    store = hdf_parse(path, fallback=not_decoded("nbit"))
    assert store.group["x"].manifest.inlined.all()
    assert_like_h5py(store, path)
    with pytest.raises(CodecNotSupportedError, match="nbit"):
        hdf_parse(path, inline_threshold=0)


def test_unknown_plugin_filter(hdf_parse: HDFParse, tmp_path: Path) -> None:
    """A registered plugin filter without a Zarr codec (ZFP): inlined small, refused large."""
    if not h5py.h5z.filter_avail(32013):
        pytest.skip("hdf5plugin has no ZFP filter here")
    path = write(tmp_path / "z.h5", smooth("<f8"), **hdf5plugin.Zfp(reversible=True))
    assert_like_h5py(hdf_parse(path, fallback=not_decoded("zfp")), path)
    with pytest.raises(CodecNotSupportedError, match=r"z\.h5.*'x'.*zfp.*32013"):
        hdf_parse(path, inline_threshold=10)


# -- the codecs themselves -------------------------------------------------------------------


@pytest.mark.parametrize("cname", ["none", "lz4", "zstd"])
@pytest.mark.parametrize(
    ("n", "itemsize", "blocksize"), [(1003, 2, 16), (5000, 4, 0), (7, 8, 0), (0, 4, 0)]
)
def test_bitshuffle_codec_roundtrip(cname: str, n: int, itemsize: int, blocksize: int) -> None:
    from virtualizarr.codecs.hdf5_bitshuffle import HDF5Bitshuffle

    data = np.random.default_rng(n).integers(0, 200, n * itemsize, dtype="u1").tobytes()
    codec = HDF5Bitshuffle(elementsize=itemsize, blocksize=blocksize, cname=cname)
    assert bytes(codec.decode(codec.encode(data))) == data


@pytest.mark.parametrize("cname", ["none", "lz4", "zstd"])
def test_bitshuffle_codec_reads_hdf5_chunks(tmp_path: Path, cname: str) -> None:
    """Raw chunks written by the HDF5 filter decode to the values, and our encoding of
    the values is byte-identical to the filter's."""
    from virtualizarr.codecs.hdf5_bitshuffle import HDF5Bitshuffle

    data = np.arange(1003, dtype=">i2")
    path = tmp_path / "b.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "x", data=data, chunks=(1003,), **hdf5plugin.Bitshuffle(nelems=16, cname=cname)
        )
    with h5py.File(path, "r") as f:
        _, raw = f["x"].id.read_direct_chunk((0,))
    codec = HDF5Bitshuffle(elementsize=2, blocksize=16, cname=cname)
    assert bytes(codec.decode(raw)) == data.tobytes()
    if cname != "zstd":  # zstd output may differ between library versions
        assert codec.encode(data.tobytes()) == raw


def test_lzf_codec_without_size_hint() -> None:
    from virtualizarr.codecs.hdf5_lzf import HDF5LZF

    codec = HDF5LZF()
    rand = np.random.default_rng(3).integers(0, 256, 3000, dtype="u1").tobytes()
    for data in (bytes(100_000), np.arange(5000, dtype="<f8").tobytes(), b"", rand):
        assert bytes(codec.decode(codec.encode(data))) == data
    with pytest.raises(ValueError, match="LZF"):
        codec.decode(b"\xff\xff\xff\xff")


@pytest.mark.parametrize(
    ("config", "v3_name"),
    [
        ({"id": "hdf5_lzf"}, "numcodecs.hdf5_lzf"),
        ({"id": "hdf5_bitshuffle", "elementsize": 4, "blocksize": 0, "cname": "lz4", "clevel": 3},
         "numcodecs.hdf5_bitshuffle"),
        ({"id": "imagecodecs_lz4h5", "blocksize": 0}, "numcodecs.imagecodecs_lz4h5"),
    ],
)  # fmt: skip
def test_codecs_are_registered_for_zarr_v2_and_v3(config: dict[str, Any], v3_name: str) -> None:
    # importing the codec modules registers them (the package's entry points do it lazily)
    from virtualizarr.codecs import hdf5_bitshuffle, hdf5_lz4, hdf5_lzf  # noqa: F401

    assert numcodecs.get_codec(dict(config)).codec_id == config["id"]
    cls = zarr.registry.get_codec_class(v3_name)
    conf = {k: v for k, v in config.items() if k != "id"}
    codec = cls.from_dict({"name": v3_name, "configuration": conf})
    assert codec.to_dict() == {"name": v3_name, "configuration": conf}
