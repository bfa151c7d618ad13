"""Bad FITS and TIFF input ends in a named error (or a warning) naming the file, never a
third-party exception or a silent loss; corrupt chunks fail at read time with ChunkReadError."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from virtualizarr.errors import (
    ChunkReadError,
    CorruptFileError,
    ParserError,
    VariableSkippedWarning,
    VirtualiZarrError,
)
from virtualizarr.parsers import FITSParser, TIFFParser
from virtualizarr.parsers.fits.header import parse_card
from virtualizarr.registry import ObjectStoreRegistry

fits = pytest.importorskip("astropy.io.fits")
tifffile = pytest.importorskip("tifffile")
pytest.importorskip("imagecodecs")

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")


def card(key: str, value: object = None, raw: str | None = None) -> bytes:
    if raw is not None:
        text = raw
    elif isinstance(value, str):
        text = f"{key:<8}= '{value}'"
    elif isinstance(value, bool):
        text = f"{key:<8}= {'T' if value else 'F':>20}"
    else:
        text = f"{key:<8}= {value!s:>20}"
    return text.ljust(80).encode()


def fits_file(cards: list[bytes], data: bytes = b"") -> bytes:
    header = b"".join(cards) + b"END".ljust(80)
    header += b" " * (-len(header) % 2880)
    return header + data + b"\0" * (-len(data) % 2880)


def image_cards(bitpix: int = 16, *axes: int) -> list[bytes]:
    cards = [card("SIMPLE", True), card("BITPIX", bitpix), card("NAXIS", len(axes))]
    return cards + [card(f"NAXIS{k + 1}", n) for k, n in enumerate(axes)]


def parse_fits(path: Path) -> object:
    return FITSParser()(str(path), ObjectStoreRegistry())


def parse_tiff(path: Path) -> object:
    return TIFFParser()(str(path), ObjectStoreRegistry())


def outcome(parse: object, path: Path) -> str | None:
    """The message of the named error parsing ``path`` raises, or None when it parses."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VariableSkippedWarning)
        try:
            parse(path)  # type: ignore[operator]
        except VirtualiZarrError as e:
            return str(e)
    return None


# -- FITS headers ----------------------------------------------------------------------


def test_card_values_parse_as_astropy_does() -> None:
    for text in [
        "NAXIS1  =                  100 / comment",
        "OBJECT  = 'M13 ''core''   ' / x",
        "BSCALE  =  1.3550135501355D-08 / scale",
        "FLAG    =                    T",
        "CPLX    = (1.5, -2)",
        "EMPTY   = ''",
        "UNDEF   =                      / nothing",
        "COMMENT   some text   ",
        "HIERARCH ESO DET chip = 'abc  ' / x",
        "NOVALUE   free text",
        "NUM     = .5e-3",
        "NUM     = -12",
    ]:
        ref = fits.Card.fromstring(text.ljust(80))
        key, value = parse_card(text.ljust(80).encode())
        assert key == ref.keyword, text
        if text.startswith("UNDEF"):
            assert type(value).__name__ == "Undefined"
        else:
            assert value == ref.value, text
            assert type(value) is type(ref.value), text


def test_an_unparsable_card_costs_one_attribute_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "card.fits"
    data = np.arange(6, dtype=">i2").tobytes()
    path.write_bytes(fits_file([*image_cards(16, 3, 2), card("BAD", raw="BAD     = 'abc")], data))
    with pytest.raises(Exception) as astropy_error, fits.open(path) as hdul:  # astropy refuses
        _ = hdul[0].header["BAD"]
    assert "Unparsable" in str(astropy_error.value)
    store = parse_fits(path)
    arr = zarr.open_group(store, mode="r", zarr_format=3)["PRIMARY"]
    np.testing.assert_array_equal(arr[...], np.arange(6).reshape(2, 3))
    assert store.group.arrays["PRIMARY"].metadata.attributes["BAD"] == "'abc"


@pytest.mark.parametrize(
    ("cards", "match"),
    [
        ([card("SIMPLE", True), card("NAXIS", 1), card("NAXIS1", 4)], "BITPIX"),
        ([card("SIMPLE", True), card("BITPIX", 16), card("NAXIS", 2), card("NAXIS1", 4)], "NAXIS2"),
        ([*image_cards(16), card("NAXIS", -1, raw="NAXIS   =                   -1")], None),
        ([card("SIMPLE", True), card("BITPIX", 16), card("NAXIS", -1)], "NAXIS = -1"),
        ([card("SIMPLE", True), card("BITPIX", 12), card("NAXIS", 0)], "BITPIX = 12"),
        (image_cards(16, 10**18, 10**18), "runs past the end"),
        ([*image_cards(16, 2), card("NAXIS1", raw="NAXIS1  =                 1E18")], None),
        ([card("SIMPLE", True), card("BITPIX", 16), card("NAXIS", "two")], "NAXIS"),
    ],
)
def test_bad_structural_keywords_are_named_errors(
    tmp_path: Path, cards: list[bytes], match: str | None
) -> None:
    path = tmp_path / "bad.fits"
    path.write_bytes(fits_file(cards, b"\0" * 2880))
    error = outcome(parse_fits, path)
    if error is None:  # NAXIS repeated as -1 after a valid NAXIS = 0: the first one counts
        assert match is None
    else:
        assert "bad.fits" in error
        assert match is None or match in error


def test_truncated_file_warns_naming_the_lost_hdus(tmp_path: Path) -> None:
    path = tmp_path / "cut.fits"
    hdus = [fits.PrimaryHDU(np.ones((4, 4), ">f4"))] + [
        fits.ImageHDU(np.full((30, 40), k, ">f8"), name=f"IMG{k}") for k in range(3)
    ]
    fits.HDUList(hdus).writeto(path)
    whole = path.read_bytes()
    with fits.open(path) as hdul:
        cut = hdul[2].fileinfo()["datLoc"] + 100  # inside IMG1's data
    path.write_bytes(whole[:cut])
    with pytest.warns(VariableSkippedWarning, match=r"HDU 2 of .*cut\.fits.*truncated"):
        store = parse_fits(path)
    assert set(store.group.arrays) == {"PRIMARY", "IMG0"}
    path.write_bytes(whole[: cut - 100 - 1000])  # inside IMG1's header
    with pytest.warns(VariableSkippedWarning, match=r"HDU 2 .*header .*truncated"):
        assert set(parse_fits(path).group.arrays) == {"PRIMARY", "IMG0"}
    path.write_bytes(whole[:2900])  # inside the primary data
    with pytest.raises(CorruptFileError, match=r"cut\.fits"):
        parse_fits(path)


def test_garbage_after_the_last_hdu_warns(tmp_path: Path) -> None:
    path = tmp_path / "tail.fits"
    fits.PrimaryHDU(np.ones((2, 2), ">i2")).writeto(path)
    path.write_bytes(path.read_bytes() + b"not a header" * 300)
    with pytest.warns(VariableSkippedWarning, match="not a FITS extension"):
        assert set(parse_fits(path).group.arrays) == {"PRIMARY"}


def test_table_columns_wider_than_a_row_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.fits"
    cols = [fits.Column(name="a", format="J", array=np.arange(5))]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path)
    raw = path.read_bytes()
    assert raw.count(b"TFORM1  = 'J") == 1
    path.write_bytes(raw.replace(b"TFORM1  = 'J ", b"TFORM1  = '9J"))
    with pytest.raises(CorruptFileError, match=r"t\.fits.*more than a row"):
        parse_fits(path)


# -- corrupt FITS chunks at read time --------------------------------------------------


@pytest.mark.parametrize("algorithm", ["GZIP_1", "RICE_1"])
def test_corrupt_tile_is_a_chunk_read_error(tmp_path: Path, algorithm: str) -> None:
    path = tmp_path / "tile.fits"
    data = np.arange(16 * 16, dtype=">i2").reshape(16, 16)
    hdu = fits.CompImageHDU(data, compression_type=algorithm, tile_shape=(4, 16), name="C")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    store = parse_fits(path)
    arr = store.group.arrays["C"]
    offset, length = int(arr.manifest.offsets[1, 0]), int(arr.manifest.lengths[1, 0])
    raw = bytearray(path.read_bytes())
    raw[offset : offset + length] = b"\xff" * length
    path.write_bytes(bytes(raw))
    z = zarr.open_group(parse_fits(path), mode="r", zarr_format=3)["C"]
    np.testing.assert_array_equal(z[:4], data[:4])  # the other tiles still read
    with pytest.raises(ChunkReadError, match=algorithm):
        z[4:8]


# -- TIFF ------------------------------------------------------------------------------


def _set_tag(raw: bytearray, tag: int, value: int) -> None:
    """Set the inline SHORT/LONG value of ``tag`` in the first IFD of a little-endian TIFF."""
    ifd = struct.unpack_from("<I", raw, 4)[0]
    (n,) = struct.unpack_from("<H", raw, ifd)
    for k in range(n):
        at = ifd + 2 + 12 * k
        code, typ, _count = struct.unpack_from("<HHI", raw, at)
        if code == tag:
            struct.pack_into("<H" if typ == 3 else "<I", raw, at + 8, value)
            return
    raise AssertionError(f"no tag {tag}")


@pytest.mark.parametrize(
    ("tag", "value"),
    [(256, 0), (257, 0), (278, 0), (273, 1 << 30), (279, 60000), (258, 0), (277, 0)],
)
def test_corrupt_tiff_tags_are_named_errors(tmp_path: Path, tag: int, value: int) -> None:
    path = tmp_path / "tags.tif"
    data = np.arange(40 * 30, dtype="<u2").reshape(40, 30)
    tifffile.imwrite(path, data, rowsperstrip=8, byteorder="<")
    raw = bytearray(path.read_bytes())
    _set_tag(raw, tag, value)
    path.write_bytes(bytes(raw))
    error = outcome(parse_tiff, path)
    if error is not None:
        assert "tags.tif" in error
        return
    store = parse_tiff(path)  # accepted: then the values must be what tifffile reads
    with tifffile.TiffFile(path) as tif:
        expected = tif.pages[0].asarray()
    got = zarr.open_group(store, mode="r", zarr_format=3)["0"][...]
    np.testing.assert_array_equal(got, expected)


def test_truncated_tiff_is_a_named_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.ones((64, 64), "u1"), tile=(16, 16))
    raw = path.read_bytes()
    for cut in (3, 7, 12, 40, len(raw) // 2):
        path.write_bytes(raw[:cut])
        with pytest.raises((ParserError, CorruptFileError), match=r"cut\.tif"):
            parse_tiff(path)


def test_corrupt_geokeys_warn_instead_of_vanishing(tmp_path: Path) -> None:
    path = tmp_path / "geo.tif"
    tags = [
        (33550, "d", 3, (60.0, 60.0, 0.0), True),
        (33922, "d", 6, (0, 0, 0, 440720.0, 3751320.0, 0), True),
        (34735, "H", 8, (1, 1, 0, 5, 1024, 34736, 3, 0), True),  # 5 keys announced, 1 given
    ]
    tifffile.imwrite(path, np.zeros((8, 8), "u1"), extratags=tags)
    with pytest.warns(VariableSkippedWarning, match=r"geo\.tif: tifffile: .*GeoKeyDirectory"):
        store = parse_tiff(path)
    assert "crs" not in store.group.arrays["0"].metadata.attributes


def test_corrupt_jpeg_tile_is_a_chunk_read_error(tmp_path: Path) -> None:
    path = tmp_path / "j.tif"
    data = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype="u1")
    tifffile.imwrite(path, data, tile=(16, 16), compression="jpeg", photometric="rgb")
    store = parse_tiff(path)
    arr = store.group.arrays["0"]
    offset, length = int(arr.manifest.offsets[0, 1, 0]), int(arr.manifest.lengths[0, 1, 0])
    raw = bytearray(path.read_bytes())
    raw[offset : offset + length] = b"\0" * length
    path.write_bytes(bytes(raw))
    z = zarr.open_group(parse_tiff(path), mode="r", zarr_format=3)["0"]
    with pytest.raises(ChunkReadError, match="JPEG"):
        z[:16, 16:]


def test_header_cards_equal_astropys_header(tmp_path: Path) -> None:
    """Long strings (CONTINUE), HIERARCH keywords, repeated keys, commentary cards: the
    attributes hold astropy's values."""
    from virtualizarr.parsers.fits.header import Header

    header = fits.Header()
    header["LONGSTR"] = "x" * 150 + " end"
    header["HIERARCH ESO DET CHIP NAME"] = "ccd 1"
    header["QUOTE"] = "it's"
    header["CPLX"] = 1.5 + 2j
    header["FLT"] = 1.25e-30
    header["BIG"] = 2**62
    header.add_comment("first comment")
    header.add_history("history line")
    path = tmp_path / "cards.fits"
    fits.PrimaryHDU(header=header).writeto(path)
    with fits.open(path) as hdul:
        ref = hdul[0].header
        raw = path.read_bytes()
        ours = Header.from_bytes(raw[: raw.index(b"END     ") + 80])
        for key in ("LONGSTR", "ESO DET CHIP NAME", "QUOTE", "CPLX", "FLT", "BIG", "NAXIS"):
            assert ours.get(key) == ref[key], key
            assert type(ours.get(key)) is type(ref[key]), key
    attrs = parse_fits(path).group.attributes
    assert attrs["LONGSTR"] == "x" * 150 + " end"
    assert attrs["COMMENT"] == "first comment"
    assert attrs["HISTORY"] == "history line"


@pytest.mark.parametrize("nrows", [5, 10**18])
def test_zero_width_table_with_any_row_count_allocates_nothing(tmp_path: Path, nrows: int) -> None:
    """NAXIS1 = 0 (only zero-width columns): NAXIS2 is not bounded by the file, so nothing
    may be sized by it; 5 rows read as astropy reads them."""
    import tracemalloc

    ext = [card("XTENSION", "BINTABLE"), card("BITPIX", 8), card("NAXIS", 2), card("NAXIS1", 0),
           card("NAXIS2", nrows), card("PCOUNT", 0), card("GCOUNT", 1), card("TFIELDS", 2),
           card("TFORM1", "0D"), card("TTYPE1", "z"), card("TFORM2", "0A"), card("TTYPE2", "s")]  # fmt: skip
    path = tmp_path / "zw.fits"
    path.write_bytes(fits_file([*image_cards(8), card("EXTEND", True)]) + fits_file(ext))
    tracemalloc.start()
    try:
        store = parse_fits(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    arrays = store.group.groups["hdu_1"].arrays
    assert arrays["z"].shape == arrays["s"].shape == (nrows, 0)
    if nrows == 5:
        with fits.open(path) as ref:
            got = zarr.open_group(store, mode="r", zarr_format=3)["hdu_1/z"][...]
            assert got.shape == ref[1].data["z"].shape
