"""Corrupt chunk bytes at read time: a ChunkReadError naming the file, range, array and chunk.

Files are written by their reference writers (netCDF4, h5py, tifffile) or taken from
``../shared/data/real``, virtualized, then copied and damaged in the copy (the references
renamed to it): the bytes a reference points at no longer decode. Every read route --
``ds.vz.open_data()``, ``xr.open_zarr`` under :func:`virtualizarr.pipeline.checked` (fused
and zarr's default batched pipeline) and :func:`virtualizarr.verify.verify` -- must name
the damaged file and chunk and chain the codec's own exception.
"""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import virtualizarr as vz
from tests.conftest import REAL_DATA, real_files, requires_real_data
from virtualizarr.errors import ChunkReadError
from virtualizarr.manifests.manifest import MISSING
from virtualizarr.pipeline import checked
from virtualizarr.verify import verify

ROUTES = ["open_data", "open_data_dask", "checked_fused", "checked_batched"]


def corrupt_copy(
    ds: xr.Dataset, var: str, tmp_path: Path, which: int = -1, span: int | None = None
) -> tuple[xr.Dataset, str, str]:
    """A copy of ``var``'s source file whose chunk number ``which`` (among the present
    ones) is overwritten with seeded noise (its first ``span`` bytes; all by default),
    and ``ds`` pointing at the copy.

    Returns (dataset, the copy's URL, the chunk's key in the store).
    """
    arr = ds[var].data
    m = arr.manifest
    present = np.argwhere(m.path_ids != MISSING)
    idx = tuple(int(i) for i in present[which])
    src_url = str(m.table[m.path_ids.item(*idx)])
    offset, length = m.offsets.item(*idx), m.lengths.item(*idx)
    src = Path(src_url.removeprefix("file://"))
    bad = tmp_path / "bad" / src.name
    bad.parent.mkdir(exist_ok=True)
    shutil.copyfile(src, bad)
    span = length if span is None else span
    noise = np.random.default_rng(12).integers(0, 256, span, dtype=np.uint8).tobytes()
    with open(bad, "r+b") as f:
        f.seek(offset)
        f.write(noise)
    bad_url = bad.as_uri()
    enc = arr.metadata.chunk_key_encoding
    key = f"{var}/{enc.encode_chunk_key(idx)}"
    return ds.vz.rename_paths(lambda p: bad_url if p == src_url else p), bad_url, key


def read(ds: xr.Dataset, var: str, route: str) -> None:
    if route == "open_data":
        np.asarray(ds.vz.open_data()[var].values)
    elif route == "open_data_dask":
        np.asarray(ds.vz.open_data(chunks={})[var].values)
    else:
        with checked(fused=route == "checked_fused"):
            opened = xr.open_zarr(ds.vz.to_store(), consolidated=False, zarr_format=3, chunks=None)
        np.asarray(opened[var].values)  # read outside the scope: the pipeline was fixed at open


def assert_located(ds: xr.Dataset, var: str, url: str, key: str, route: str) -> ChunkReadError:
    with pytest.raises(ChunkReadError) as info:
        read(ds, var, route)
    err = info.value
    assert url in str(err), str(err)
    assert repr(key) in str(err), str(err)
    assert err.__cause__ is not None  # the codec's own exception, chained
    assert not str(err.__cause__).startswith("Chunk ")
    return err


def assert_verify_names(ds: xr.Dataset, url: str, key: str) -> None:
    report = verify(ds)
    decode = [p for p in report.problems if p.kind == "decode"]
    assert decode, str(report)
    assert any(
        url in p.message and repr(key) in p.message and "ChunkReadError" in p.message
        for p in decode
    ), str(report)


# -- files written here by the formats' own writers ----------------------------------------


@pytest.fixture
def netcdf4_zlib(tmp_path: Path) -> tuple[xr.Dataset, np.ndarray]:
    netCDF4 = pytest.importorskip("netCDF4")
    values = np.random.default_rng(0).random((40, 30)).astype("f4")
    path = tmp_path / "zlib.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("x", 40)
        nc.createDimension("y", 30)
        v = nc.createVariable("t", "f4", ("x", "y"), zlib=True, chunksizes=(10, 10))
        v[:] = values
    return vz.open_virtual_dataset(str(path)), values


@pytest.mark.parametrize("route", ROUTES)
def test_netcdf4_zlib_chunk(netcdf4_zlib, tmp_path: Path, route: str) -> None:
    ds, values = netcdf4_zlib
    np.testing.assert_array_equal(ds.vz.open_data()["t"].values, values)  # intact: reads
    bad, url, key = corrupt_copy(ds, "t", tmp_path, which=5)
    err = assert_located(bad, "t", url, key, route)
    assert isinstance(err.__cause__, zlib.error)
    assert "bytes " in str(err)
    assert "zlib.error" in str(err)


def test_netcdf4_zlib_verify(netcdf4_zlib, tmp_path: Path) -> None:
    ds, _ = netcdf4_zlib
    assert verify(ds).ok
    bad, url, key = corrupt_copy(ds, "t", tmp_path, which=5)
    assert_verify_names(bad, url, key)


@pytest.mark.parametrize("route", ["open_data", "checked_batched"])
def test_h5py_gzip_chunk(tmp_path: Path, route: str) -> None:
    h5py = pytest.importorskip("h5py")
    values = np.random.default_rng(1).random((40, 40))
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.create_dataset("d", data=values, chunks=(10, 10), compression="gzip", shuffle=True)
    ds = vz.open_virtual_dataset(str(tmp_path / "g.h5"))
    np.testing.assert_array_equal(ds.vz.open_data()["d"].values, values)
    bad, url, key = corrupt_copy(ds, "d", tmp_path, which=0)
    err = assert_located(bad, "d", url, key, route)
    assert isinstance(err.__cause__, zlib.error)


@pytest.mark.parametrize("route", ["open_data", "checked_fused", "checked_batched"])
def test_chunk_decoding_to_too_few_bytes(tmp_path: Path, route: str) -> None:
    """A valid zlib stream of 8 bytes where a 800-byte chunk belongs: zarr's reshape fails."""
    h5py = pytest.importorskip("h5py")
    values = np.arange(400.0).reshape(20, 20)
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f.create_dataset("d", data=values, chunks=(10, 10), compression="gzip")
    ds = vz.open_virtual_dataset(str(tmp_path / "r.h5"))
    bad, url, key = corrupt_copy(ds, "d", tmp_path, which=2)
    m = bad["d"].data.manifest
    offset, length = m.offsets.item(1, 0), m.lengths.item(1, 0)
    stream = zlib.compress(b"\0" * 8)
    with open(url.removeprefix("file://"), "r+b") as f:
        f.seek(offset)
        f.write(stream + b"\0" * (length - len(stream)))
    err = assert_located(bad, "d", url, key, route)
    assert isinstance(err.__cause__, ValueError), repr(err.__cause__)


@pytest.mark.parametrize("compression", ["zlib", "lzw", "jpeg"])
@pytest.mark.parametrize("route", ["open_data", "checked_batched"])
def test_tiff_tiles(tmp_path: Path, compression: str, route: str) -> None:
    tifffile = pytest.importorskip("tifffile")
    if compression != "zlib":
        pytest.importorskip("imagecodecs")
    img = (np.random.default_rng(2).random((64, 64, 3)) * 255).astype("u1")
    path = tmp_path / f"{compression}.tif"
    tifffile.imwrite(path, img, tile=(32, 32), compression=compression, photometric="rgb")
    ds = vz.open_virtual_dataset(str(path))
    var = next(iter(ds.data_vars))
    good = ds.vz.open_data()[var].values
    if compression == "jpeg":  # lossy: compare with tifffile's own decoding
        np.testing.assert_array_equal(good, tifffile.imread(path))
    else:
        np.testing.assert_array_equal(good, img)
    bad, url, key = corrupt_copy(ds, var, tmp_path, which=1)
    assert_located(bad, var, url, key, route)


@pytest.mark.parametrize("route", ["open_data", "checked_batched"])
def test_sharded_zarr_inner_chunk(tmp_path: Path, route: str) -> None:
    """A shard (zarr's sharding codec reads its inner chunks itself): the shard is named."""
    values = np.random.default_rng(3).random((40, 40))
    g = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=3)
    a = g.create_array(
        "v",
        shape=(40, 40),
        chunks=(10, 10),
        shards=(20, 20),
        dtype="f8",
        compressors=zarr.codecs.ZstdCodec(),
        dimension_names=["x", "y"],
    )
    a[:] = values
    ds = vz.open_virtual_dataset(str(tmp_path / "s.zarr"))
    np.testing.assert_array_equal(ds.vz.open_data()["v"].values, values)
    # the inner chunks' bytes, not the index at the end (whose checksum would say "missing")
    bad, url, key = corrupt_copy(ds, "v", tmp_path, which=3, span=200)
    assert_located(bad, "v", url, key, route)


def test_truncated_source_is_the_stores_error(netcdf4_zlib, tmp_path: Path) -> None:
    """A short read keeps the store's own ChunkReadError (it names the file already)."""
    ds, _ = netcdf4_zlib
    src = Path(str(ds["t"].data.manifest.table[0]).removeprefix("file://"))
    cut = tmp_path / "cut" / src.name
    cut.parent.mkdir()
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    short = ds.vz.rename_paths(lambda p: cut.as_uri())
    for route in ("open_data", "checked_batched"):
        with pytest.raises(ChunkReadError, match=r"instead of|Could not read") as info:
            read(short, "t", route)
        assert cut.as_uri() in str(info.value)
        assert "does not decode" not in str(info.value)


def test_other_stores_untouched() -> None:
    """Under checked(), arrays in other stores fail exactly as with zarr's own pipeline."""
    from zarr.storage import MemoryStore

    store = MemoryStore()
    a = zarr.create_array(
        store, shape=(20,), chunks=(10,), dtype="f8", compressors=zarr.codecs.ZstdCodec()
    )
    a[:] = np.arange(20.0)
    store._store_dict["c/1"] = store._store_dict["c/1"].__class__.from_bytes(b"\x00" * 40)
    for fused in (True, False):
        with checked(fused=fused):
            opened = zarr.open_array(store, mode="r")
        with pytest.raises(Exception) as info:
            opened[:]
        assert not isinstance(info.value, ChunkReadError)


# -- real files from ../shared/data/real ----------------------------------------------------

REAL = [
    "netcdf4_hdf5/basin_mask.nc",  # deflate + shuffle
    "netcdf4_hdf5/20171025_2056.Cloud_Top_Height.nc",  # deflate, big-endian
    "tiff/rgb_deflate.tif",
    "tiff/cogeo.tif",
    "fits/m13_gzip.fits",  # tile-compressed GZIP_1 (our FITS codec)
    "fits/m13_rice.fits",  # tile-compressed RICE_1
    "grib/gec00_20250101_00_soilw.grib",  # complex packing + bitmap (ecCodes)
    "grib/era5-2mt-2019-03-uk.grib",  # GRIB1 simple packing
]


def _compressed_var(ds: xr.Dataset) -> str | None:
    """A virtual variable whose chunks pass a decompressing codec (noise cannot pass it)."""
    plain = {"BytesCodec", "TransposeCodec", "Pad", "PadCodec", "SignFlipCodec"}
    for name, v in ds.variables.items():
        data = v.data
        if not hasattr(data, "manifest") or len(data.manifest) == 0:
            continue
        codecs = {type(c).__name__ for c in data.metadata.codecs}
        if codecs - plain:
            return str(name)
    return None


@requires_real_data
@pytest.mark.parametrize("rel", REAL)
@pytest.mark.parametrize("route", ["open_data", "checked_batched", "verify"])
def test_real_files(rel: str, route: str, tmp_path: Path) -> None:
    if rel not in real_files(rel.split("/")[0]):
        pytest.skip(f"{rel} not in the real data")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if rel.startswith("grib/"):  # one group per level type: take the first
            tree = vz.open_virtual_datatree(str(REAL_DATA / rel))
            ds = next(n.to_dataset() for n in tree.subtree if _compressed_var(n.to_dataset()))
        else:
            ds = vz.open_virtual_dataset(str(REAL_DATA / rel))
    var = _compressed_var(ds)
    if var is None:
        pytest.skip(f"{rel}: no compressed virtual variable")
    bad, url, key = corrupt_copy(ds, var, tmp_path, which=0)
    if route == "verify":
        assert_verify_names(bad, url, key)
    else:
        assert_located(bad, var, url, key, route)
