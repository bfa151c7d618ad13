"""FITS and TIFF over HTTP (the loopback server of tests/conftest.py): requests and bytes of a
parse are counted, each file's transfer is at most 1.1x its size + 64 KiB, in few round trips,
and the values read back through the remote references equal astropy's / tifffile's."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from tests._support import http_served
from tests.conftest import HTTPServer, real_files
from virtualizarr.io import HEAD_BYTES
from virtualizarr.io.source import WHOLE_BELOW
from virtualizarr.parsers import FITSParser, TIFFParser
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.testing.ground_truth import real_file

fits = pytest.importorskip("astropy.io.fits")
tifffile = pytest.importorskip("tifffile")
pytest.importorskip("imagecodecs")

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")

KiB, MiB = 1 << 10, 1 << 20


def parse_remote(server: HTTPServer, src: Path, parser: object) -> tuple[object, Path, int, int]:
    """Copy ``src`` under the server, parse it by URL; the parse's requests and bytes."""
    path = server.mkdir() / src.name
    shutil.copyfile(src, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = parser(server.url_for(path), ObjectStoreRegistry())  # type: ignore[operator]
    requests, nbytes = http_served(server, path)
    return store, path, requests, nbytes


def write_image_hdus(path: Path, n: int, shape: tuple[int, int], name: str, seed: int) -> int:
    """A FITS file of an empty primary HDU and ``n`` random ``>f8`` images ``<name><k>``; its size."""
    rng = np.random.default_rng(seed)
    hdus = [fits.PrimaryHDU()] + [
        fits.ImageHDU(rng.normal(size=shape).astype(">f8"), name=f"{name}{k}") for k in range(n)
    ]
    fits.HDUList(hdus).writeto(path)
    return path.stat().st_size


def within_budget(nbytes: int, size: int) -> bool:
    return nbytes <= 1.1 * size + 64 * KiB


@pytest.mark.parametrize("rel", real_files("fits") + real_files("tiff"))
def test_real_files_parse_in_one_request(http_server: HTTPServer, rel: str) -> None:
    """Every real FITS/TIFF file (all below 1 MiB + a few KB): one request, bytes <= the file."""
    src = real_file(rel)
    parser = FITSParser() if rel.startswith("fits/") else TIFFParser()
    _, _, requests, nbytes = parse_remote(http_server, src, parser)
    size = src.stat().st_size
    assert within_budget(nbytes, size), (rel, nbytes, size)
    assert requests == (1 if size <= HEAD_BYTES else 2), rel


def test_fits_with_many_large_hdus(http_server: HTTPServer, tmp_path: Path) -> None:
    """12 HDUs of 1.5 MiB (19 MB; more when the source fetches bigger files whole): read on through the data in growing reads (a round trip
    costs more than 1.5 MiB of transfer), a few requests and no byte twice."""
    src = tmp_path / "many.fits"
    size = write_image_hdus(src, 12, (768, 256), "SCI", seed=3)
    assert size > WHOLE_BELOW
    store, _path, requests, nbytes = parse_remote(http_server, src, FITSParser())
    print(f"FITS 12 HDUs of 1.5 MiB: {size} bytes, {requests} requests, {nbytes} bytes")
    assert within_budget(nbytes, size)
    assert requests <= 7
    z = zarr.open_group(store, mode="r", zarr_format=3)
    with fits.open(src) as ref:
        for k in (0, 11):
            np.testing.assert_array_equal(z[f"SCI{k}"][...], ref[f"SCI{k}"].data)


def test_fits_hdus_far_apart_skip_the_data(http_server: HTTPServer, tmp_path: Path) -> None:
    """3 HDUs of 6 MiB: each header further than 4 MiB from the bytes read is read by a
    jump (one request), the data between never fetched."""
    src = tmp_path / "far.fits"
    size = write_image_hdus(src, 3, (768, 1024), "BIG", seed=4)
    store, _path, requests, nbytes = parse_remote(http_server, src, FITSParser())
    print(f"FITS 3 HDUs of 6 MiB: {size} bytes, {requests} requests, {nbytes} bytes")
    assert requests <= 4
    assert nbytes < size / 2
    z = zarr.open_group(store, mode="r", zarr_format=3)
    with fits.open(src) as ref:
        np.testing.assert_array_equal(z["BIG2"][:5], ref["BIG2"].data[:5])


def test_fits_table_and_compressed_image_remote(http_server: HTTPServer, tmp_path: Path) -> None:
    data = np.arange(64 * 48, dtype=">i2").reshape(64, 48)
    cols = [fits.Column(name="u", format="J", bzero=2**31, array=np.arange(5, dtype="u4") * 7)]
    src = tmp_path / "mixed.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.CompImageHDU(data, compression_type="RICE_1", name="C"),
            fits.BinTableHDU.from_columns(cols, name="T"),
        ]
    ).writeto(src)
    store, _, requests, nbytes = parse_remote(http_server, src, FITSParser())
    assert requests == 1
    assert nbytes == src.stat().st_size
    z = zarr.open_group(store, mode="r", zarr_format=3)
    np.testing.assert_array_equal(z["C"][...], data)
    np.testing.assert_array_equal(z["T/u"][...], np.arange(5, dtype="u4") * 7)


def test_large_strip_tiff_with_ifds_at_the_end(http_server: HTTPServer, tmp_path: Path) -> None:
    """A 12 MB TIFF with 3 IFDs and their strip tables after the pixels: the head, the IFD
    chain and one batch of tag values; a small fraction of the file."""
    rng = np.random.default_rng(5)
    src = tmp_path / "strips.tif"
    with tifffile.TiffWriter(src) as tw:
        for _ in range(3):
            # each IFD bigger than the size the source fetches whole
            rows = WHOLE_BELOW // 2000 + 4
            tw.write(rng.integers(0, 255, (rows, 2000), dtype="u1"), rowsperstrip=4)
    size = src.stat().st_size
    assert size > WHOLE_BELOW
    store, _path, requests, nbytes = parse_remote(http_server, src, TIFFParser())
    print(f"TIFF strips 3 IFDs: {size} bytes, {requests} requests, {nbytes} bytes")
    assert within_budget(nbytes, size)
    assert nbytes < size / 2
    assert requests <= 8
    z = zarr.open_group(store, mode="r", zarr_format=3)
    with tifffile.TiffFile(src) as tif:
        np.testing.assert_array_equal(z["2"][:50], tif.pages[2].asarray()[:50])


def test_cog_with_many_ifds(http_server: HTTPServer, tmp_path: Path) -> None:
    """A tiled file with 6 levels (a COG-like layout: IFDs first): the head and one batch."""
    rng = np.random.default_rng(6)
    src = tmp_path / "cog.tif"
    base = rng.integers(0, 255, (4096, 4096), dtype="u1")
    with tifffile.TiffWriter(src) as tw:
        tw.write(base, tile=(256, 256), subifds=0, compression="zlib")
        for k in range(1, 6):
            tw.write(base[:: 2**k, :: 2**k], tile=(256, 256), subfiletype=1, compression="zlib")
    size = src.stat().st_size
    store, _path, requests, nbytes = parse_remote(http_server, src, TIFFParser())
    print(f"TIFF tiled 6 IFDs: {size} bytes, {requests} requests, {nbytes} bytes")
    assert within_budget(nbytes, size)
    assert requests <= 8
    z = zarr.open_group(store, mode="r", zarr_format=3)
    np.testing.assert_array_equal(z["5"][...], base[::32, ::32])


@pytest.mark.parametrize("kind", ["fits", "tiff"])
def test_detection_and_parse_share_one_request(
    http_server: HTTPServer, tmp_path: Path, kind: str
) -> None:
    """open_virtual_dataset on a URL: format detection hands its source to the parser, so a
    small file costs one request in all."""
    from virtualizarr import open_virtual_dataset

    src = tmp_path / f"small.{kind}"
    data = np.arange(60, dtype=">i2").reshape(6, 10)
    if kind == "fits":
        fits.PrimaryHDU(data).writeto(src)
    else:
        tifffile.imwrite(src, data)
    path = http_server.mkdir() / src.name
    shutil.copyfile(src, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = open_virtual_dataset(http_server.url_for(path), loadable_variables=[])
    requests, nbytes = http_served(http_server, path)
    assert (requests, nbytes) == (1, src.stat().st_size)
    assert ds.sizes == ({"naxis2": 6, "naxis1": 10} if kind == "fits" else {"y": 6, "x": 10})
