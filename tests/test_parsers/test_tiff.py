"""TIFFParser: values read through the ManifestStore equal tifffile's, IFD by IFD."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from tests._support import in_memory, parser_call
from tests.conftest import real_files, requires_real_data
from virtualizarr.errors import CodecNotSupportedError, ParserError
from virtualizarr.parsers import TIFFParser, detect_parser
from virtualizarr.parsers.tiff.geo import transform_from_tags
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore
from virtualizarr.testing.ground_truth import assert_values_match, ground_truth, real_file

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("imagecodecs")


parse = parser_call(TIFFParser)


def read(store: ManifestStore, name: str = "0") -> np.ndarray:
    return zarr.open_group(store, mode="r", zarr_format=3)[name][...]


def codec_names(store: ManifestStore, name: str = "0") -> list[str]:
    return [c["name"] for c in store.group.arrays[name].metadata.to_dict()["codecs"]]


def assert_same_as_tifffile(path: Path, store: ManifestStore | None = None) -> ManifestStore:
    store = store or parse(path)
    with tifffile.TiffFile(path) as tif:
        for i, page in enumerate(tif.pages):
            expected = page.asarray()
            got = read(store, str(i))
            assert got.dtype == expected.dtype, i
            np.testing.assert_array_equal(got, expected, err_msg=f"IFD {i}")
    return store


# -- real files ----------------------------------------------------------------------------


@pytest.mark.parametrize("rel", real_files("tiff"))
def test_real_file_matches_ground_truth(rel: str) -> None:
    store = parse(real_file(rel))
    pages = ground_truth()[rel]["result"]["pages"]
    assert len([n for n in store.group.arrays if n.isdigit()]) == len(pages)
    for page in pages:
        arr = store.group.arrays[str(page["index"])]
        assert arr.manifest.shape_chunk_grid  # chunks are the segments
        assert int((~arr.manifest.missing).sum()) == page["n_segments"]
        first = np.argwhere(~arr.manifest.missing)[0]
        assert int(arr.manifest.offsets[tuple(first)]) == page["first_segment"]["offset"]
        assert_values_match(
            read(store, str(page["index"])), page["raw"], name=f"{rel}:{page['index']}"
        )


@requires_real_data
def test_real_geotiff_coordinates_and_attributes() -> None:
    store = parse(real_file("tiff/byte.tif"))
    ds = xr.open_zarr(store, consolidated=False, zarr_format=3, mask_and_scale=False)
    np.testing.assert_array_equal(ds.x.values, 440720.0 + 60.0 * (np.arange(20) + 0.5))
    np.testing.assert_array_equal(ds.y.values, 3751320.0 - 60.0 * (np.arange(20) + 0.5))
    assert ds["0"].attrs["crs"] == "EPSG:26711"
    assert ds["0"].attrs["transform"] == [60.0, 0.0, 440720.0, 0.0, -60.0, 3751320.0]


@requires_real_data
def test_real_rotated_transform_gives_no_coordinates() -> None:
    store = parse(real_file("tiff/rotated.tif"))
    assert set(store.group.arrays) == {"0"}
    assert store.group.arrays["0"].metadata.attributes["transform"][1] != 0


@requires_real_data
def test_real_cog_overviews_share_dims_with_their_masks() -> None:
    store = parse(real_file("tiff/cogeo.tif"))
    dims = {n: a.metadata.dimension_names for n, a in store.group.arrays.items()}
    assert dims["0"] == ("y", "x", "band")
    assert dims["1"] == ("y", "x")
    assert dims["8"] == dims["2"][:2]
    x0, x2 = read(store, "x"), read(store, dims["2"][1])
    assert x2.size == x0.size // 2
    assert x2[0] == pytest.approx(x0[0] + (x0[1] - x0[0]) / 2)


@requires_real_data
def test_real_nodata_is_fill_value() -> None:
    store = parse(real_file("tiff/shade.tif"))
    arr = store.group.arrays["0"]
    assert arr.metadata.attributes["_FillValue"] == 255
    assert arr.metadata.fill_value == 255


@requires_real_data
def test_select_ifds() -> None:
    store = parse(real_file("tiff/lcmap_tiny_cog_2019.tif"), ifds=[2], coordinates=False)
    assert list(store.group.arrays) == ["2"]
    with pytest.raises(ParserError, match="IFD 5 does not exist"):
        parse(real_file("tiff/lcmap_tiny_cog_2019.tif"), ifds=5)


# -- files written with tifffile -----------------------------------------------------------

RNG = np.random.default_rng(42)


def image(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return RNG.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("compression", [None, "zlib", "lzw", "zstd", "packbits"])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_strips_with_short_last_strip(
    tmp_path: Path, compression: str | None, byteorder: str
) -> None:
    # 50 rows in strips of 8: the last strip holds 2 rows
    data = image((50, 33, 3), "uint16")
    path = tmp_path / "strips.tif"
    tifffile.imwrite(
        path, data, rowsperstrip=8, compression=compression, byteorder=byteorder, photometric="rgb"
    )
    store = assert_same_as_tifffile(path)
    assert store.group.arrays["0"].chunks == (8, 33, 3)
    if compression:
        assert "virtualizarr.pad" in codec_names(store)


def test_uncompressed_short_last_strip_at_end_of_file(tmp_path: Path) -> None:
    # the last strip is the last thing in the file: it cannot be read as a whole chunk
    data = image((10, 7), "int32")
    path = tmp_path / "tail.tif"
    tifffile.imwrite(path, data, rowsperstrip=4)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        at_end = page.dataoffsets[-1] + page.databytecounts[-1] == path.stat().st_size
    store = assert_same_as_tifffile(path)
    assert ("virtualizarr.pad" in codec_names(store)) == at_end


def test_uncompressed_short_last_strip_read_whole(tmp_path: Path) -> None:
    # with a description after the data, the short last strip is followed by more file
    data = image((10, 7), "uint8")
    path = tmp_path / "more.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(data, rowsperstrip=4)
        tw.write(data[:2, :2])
    store = assert_same_as_tifffile(path)
    assert codec_names(store) == ["bytes"]
    assert int(store.group.arrays["0"].manifest.lengths[-1, 0]) == 4 * 7


@pytest.mark.parametrize("planar", ["contig", "separate"])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiles_with_partial_edges(tmp_path: Path, planar: str, compression: str | None) -> None:
    data = image((3, 70, 45), "uint8") if planar == "separate" else image((70, 45, 3), "uint8")
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(
        path, data, tile=(32, 16), planarconfig=planar, compression=compression, photometric="rgb"
    )
    store = assert_same_as_tifffile(path)
    arr = store.group.arrays["0"]
    assert arr.chunks == ((1, 32, 16) if planar == "separate" else (32, 16, 3))
    assert arr.metadata.dimension_names == (
        ("band", "y", "x") if planar == "separate" else ("y", "x", "band")
    )


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32"])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_horizontal_predictor(tmp_path: Path, dtype: str, byteorder: str) -> None:
    data = image((40, 30, 2), dtype)
    path = tmp_path / "pred.tif"
    tifffile.imwrite(
        path,
        data,
        predictor=True,
        compression="zlib",
        rowsperstrip=16,
        byteorder=byteorder,
        photometric="minisblack",
        planarconfig="contig",
    )
    store = assert_same_as_tifffile(path)
    assert "numcodecs.imagecodecs_delta" in codec_names(store)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_floating_point_predictor(tmp_path: Path, dtype: str, byteorder: str) -> None:
    data = image((37, 29), dtype)
    path = tmp_path / "fpred.tif"
    tifffile.imwrite(
        path, data, predictor=3, compression="zlib", rowsperstrip=10, byteorder=byteorder
    )
    store = assert_same_as_tifffile(path)
    assert "numcodecs.imagecodecs_floatpred" in codec_names(store)


@pytest.mark.parametrize("tiled", [False, True])
@pytest.mark.parametrize("photometric", ["rgb", "minisblack"])
def test_jpeg(tmp_path: Path, tiled: bool, photometric: str) -> None:
    shape = (75, 50, 3) if photometric == "rgb" else (75, 50)
    data = image(shape, "uint8")
    path = tmp_path / "jpeg.tif"
    layout = {"tile": (32, 32)} if tiled else {"rowsperstrip": 16}
    tifffile.imwrite(path, data, compression="jpeg", photometric=photometric, **layout)
    store = assert_same_as_tifffile(path)
    assert codec_names(store) == ["virtualizarr.tiff_jpeg"]


def test_bilevel_and_packed_integers(tmp_path: Path) -> None:
    path = tmp_path / "bits.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(RNG.integers(0, 2, size=(21, 13)).astype(bool), rowsperstrip=5)
        tw.write(RNG.integers(0, 16, size=(9, 11)).astype("uint8"), bitspersample=4, rowsperstrip=4)
    store = assert_same_as_tifffile(path)
    assert store.group.arrays["0"].metadata.data_type.to_native_dtype() == np.dtype(bool)


def test_multipage_and_bigtiff(tmp_path: Path) -> None:
    path = tmp_path / "big.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for k in range(3):
            tw.write(image((16, 16), "float32") + k, tile=(16, 16), compression="zstd")
    store = assert_same_as_tifffile(path)
    assert store.group.attributes["tiff_is_bigtiff"] is True
    assert all(store.group.arrays[n].metadata.dimension_names == ("y", "x") for n in "012")


def test_unstored_tiles_are_missing_chunks(tmp_path: Path) -> None:
    data = image((64, 64), "uint16")
    path = tmp_path / "sparse.tif"
    tifffile.imwrite(
        path, data, tile=(32, 32), compression="zlib", extratags=[(42113, "s", 0, "7", True)]
    )
    with tifffile.TiffFile(path) as tif:  # mark tile 1 as never written (offset 0, count 0)
        tags = tif.pages[0].tags
        pos = {name: tags[name].valueoffset for name in ("TileOffsets", "TileByteCounts")}
        fmt = {name: "<" + {3: "H", 4: "I", 16: "Q"}[int(tags[name].dtype)] for name in pos}
    with open(path, "r+b") as f:
        for name, offset in pos.items():
            size = struct.calcsize(fmt[name])
            f.seek(offset + size)
            f.write(struct.pack(fmt[name], 0))
    expected = tifffile.imread(path)
    assert (expected[:32, 32:] == 7).all()
    store = parse(path)
    assert store.group.arrays["0"].manifest.missing.tolist() == [[False, True], [False, False]]
    np.testing.assert_array_equal(read(store), expected)


def test_geotiff_pixel_is_point_transform() -> None:
    area = transform_from_tags(scale=[2.0, 3.0, 0.0], tiepoint=[1, 1, 0, 10.0, 20.0, 0.0])
    point = transform_from_tags(
        scale=[2.0, 3.0, 0.0], tiepoint=[1, 1, 0, 10.0, 20.0, 0.0], pixel_is_point=True
    )
    assert area == (2.0, 0.0, 8.0, 0.0, -3.0, 23.0)
    assert point == (2.0, 0.0, 7.0, 0.0, -3.0, 24.5)  # pixel (1, 1)'s centre is (10, 20)
    assert transform_from_tags(scale=[1.0, 1.0, 0.0], tiepoint=[0, 0, 0, 1, 1, 0] * 2) is None


def test_unsupported_compression_names_file_and_ifd(tmp_path: Path) -> None:
    path = tmp_path / "webp.tif"
    tifffile.imwrite(path, image((16, 16, 3), "uint8"), compression="webp", photometric="rgb")
    with pytest.raises(CodecNotSupportedError, match=r"IFD 0 of .*webp\.tif .*WEBP"):
        parse(path)


def test_not_a_tiff(tmp_path: Path) -> None:
    path = tmp_path / "bad.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 12)
    with pytest.raises(ParserError, match=r"bad\.tif"):
        parse(path)


def test_detected_from_first_bytes_and_read_from_object_store(tmp_path: Path) -> None:
    path = tmp_path / "mem.tif"
    data = image((20, 30), "int16")
    tifffile.imwrite(path, data, compression="lzw", rowsperstrip=6)
    url, registry = in_memory(path, "dir/mem.tif")
    parser = detect_parser(url, registry)
    assert isinstance(parser, TIFFParser)
    store = parser(url, registry)
    assert store.group.arrays["0"].manifest.used_paths() == [url]
    np.testing.assert_array_equal(read(store), data)


def _minimal_tiff(path, *, width, length, bits, sample_format, data: bytes) -> None:
    """A little-endian baseline TIFF with one strip, written byte by byte (tifffile refuses
    to write the odd sample formats tested here)."""
    import struct

    tags = [  # (tag, type SHORT=3/LONG=4, value)
        (256, 4, width),
        (257, 4, length),
        (258, 3, bits),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8 + 2 + 12 * 10 + 4),
        (277, 3, 1),
        (278, 4, length),
        (279, 4, len(data)),
        (339, 3, sample_format),
    ]
    ifd = struct.pack("<H", len(tags))
    for tag, typ, value in tags:
        ifd += struct.pack("<HHI", tag, typ, 1) + (
            struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        )
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data)


def test_float24_samples_are_refused_with_a_named_error(tmp_path):
    from virtualizarr.errors import UnsupportedFeatureError

    p = tmp_path / "f24.tif"
    _minimal_tiff(p, width=2, length=2, bits=24, sample_format=3, data=bytes(12))
    with pytest.raises(UnsupportedFeatureError, match=r"f24\.tif.*24"):
        TIFFParser()(str(p), ObjectStoreRegistry())
