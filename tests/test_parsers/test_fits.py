"""FITSParser: values read through the ManifestStore equal astropy's, HDU by HDU."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

from tests._support import in_memory, parser_call
from tests.conftest import real_files, requires_real_data
from virtualizarr.errors import ParserError, UnsupportedFeatureError, VariableSkippedWarning
from virtualizarr.parsers import FITSParser, detect_parser
from virtualizarr.parsers.fits.parser import _hdu_names
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore
from virtualizarr.testing.ground_truth import assert_values_match, ground_truth, real_file

fits = pytest.importorskip("astropy.io.fits")
pytest.importorskip("imagecodecs")

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")


parse = parser_call(FITSParser)


def raw(store: ManifestStore, name: str) -> np.ndarray:
    return zarr.open_group(store, mode="r", zarr_format=3)[name][...]


def decoded(store: ManifestStore, name: str, group: str | None = None) -> np.ndarray:
    """Values after xarray's CF decoding (scale_factor, add_offset, _FillValue)."""
    ds = xr.open_zarr(store, group=group, consolidated=False, zarr_format=3)
    return ds[name].values


def unpacked(store: ManifestStore, path: str) -> np.ndarray:
    """Raw values with scale_factor/add_offset applied in float64 (no masking), as astropy does."""
    values = raw(store, path)
    attrs = zarr.open_group(store, mode="r", zarr_format=3)[path].attrs
    if "scale_factor" in attrs or "add_offset" in attrs:
        values = values * np.float64(attrs.get("scale_factor", 1.0)) + np.float64(
            attrs.get("add_offset", 0.0)
        )
    return values


def assert_column_equal(got: np.ndarray, expected: Any, name: str) -> None:
    expected = np.asarray(expected)
    if expected.dtype.kind == "U":  # astropy reads A columns as text, dropping trailing NULs
        got = got.astype("U")
    np.testing.assert_array_equal(got, expected, err_msg=name)


# -- real files ----------------------------------------------------------------------------


def assert_like_astropy(got: np.ndarray, expected: np.ndarray, name: str) -> None:
    """Same values and type as astropy (big- or native-endian), NaNs equal."""
    expected = np.asarray(expected)
    if expected.dtype.kind == "U":  # astropy reads A columns as text, dropping trailing NULs
        got = got.astype("U")
    assert got.dtype == expected.dtype.newbyteorder("="), (name, got.dtype, expected.dtype)
    np.testing.assert_array_equal(got, expected, err_msg=name)


@pytest.mark.parametrize("rel", real_files("fits"))
def test_real_file_matches_ground_truth_and_astropy(rel: str) -> None:
    """Every HDU and column of every real file: xarray's (CF-decoded) values are astropy's.

    One exception, by design: CF decoding of BSCALE images gives float64 where astropy scales
    16-bit integers in float32 (compared to float32 precision). Nothing is skipped.
    """
    path = real_file(rel)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = parse(path)
    assert not [w for w in caught if issubclass(w.category, VariableSkippedWarning)]
    with fits.open(path, disable_image_compression=True) as hdul:
        names = _hdu_names([h.header for h in hdul])
    checked = 0
    with fits.open(path) as ref:
        for hdu in ground_truth()[rel]["result"]["hdus"]:
            name, index = names[hdu["index"]], hdu["index"]
            where = f"{rel}:{name}"
            if hdu["type"] == "GroupsHDU":  # parameters scaled (and combined) like par()
                ref_data = ref[index].data
                for par in dict.fromkeys(ref_data.parnames):
                    got = decoded(store, par, group=name)
                    assert_like_astropy(got, ref_data.par(par), f"{where}/{par}")
                assert_like_astropy(decoded(store, "DATA", group=name), ref_data.data, where)
                checked += 1
                continue
            if hdu["type"] in ("PrimaryHDU", "ImageHDU") and hdu.get("NAXIS"):
                expected = ref[index].data
                got = decoded(store, name)
                if (hdu["BSCALE"] or 1) != 1:  # CF: float64, astropy: float32 for 16 bits
                    np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=where)
                else:
                    assert_like_astropy(got, expected, where)
                stored = raw(store, name)
                if stored.dtype.kind == "u" and stored.dtype.itemsize > 1:  # sign flip: back to raw
                    stored = (stored ^ np.array(1 << (8 * stored.itemsize - 1), stored.dtype)).view(
                        stored.dtype.str.replace("u", "i")
                    )
                assert_values_match(stored, hdu["raw"], name=where)
                checked += 1
            elif hdu["type"] == "CompImageHDU":
                assert_like_astropy(decoded(store, name), ref[index].data, where)
                checked += 1
            elif "columns" in hdu:
                table = ref[index].data
                for col in table.columns.names:
                    got = decoded(store, col, group=name)
                    assert_like_astropy(got, table[col], f"{where}/{col}")
                    stats = hdu["column_stats"].get(col)
                    if stats and stats["dtype"][1] != "U":
                        assert_values_match(got, stats, name=f"{where}/{col}")
                    checked += 1
    assert checked or not store.group.arrays


@requires_real_data
def test_real_scaled_image_decodes_like_astropy() -> None:
    store = parse(real_file("fits/scale.fits"))
    attrs = store.group.arrays["PRIMARY"].metadata.attributes
    assert attrs["scale_factor"] == pytest.approx(0.045777764213996)
    assert attrs["add_offset"] == 1500
    with fits.open(real_file("fits/scale.fits")) as ref:  # astropy scales in float32
        np.testing.assert_allclose(decoded(store, "PRIMARY"), ref[0].data, rtol=1e-6)


@requires_real_data
def test_real_blank_is_fill_value_and_header_is_attributes() -> None:
    store = parse(real_file("fits/blank.fits"))
    assert store.group.arrays["PRIMARY"].metadata.attributes["_FillValue"] == 2
    store = parse(real_file("fits/o4sp040b0_raw.fits"))
    assert store.group.attributes["TELESCOP"] == "HST"  # primary header without data
    assert (
        "add_offset" not in parse(real_file("fits/test0.fits")).group.attributes
    )  # no data to scale
    assert set(store.group.arrays) == {"SCI_1", "SCI_2"}


@requires_real_data
def test_real_compressed_image_chunks_are_tiles() -> None:
    store = parse(real_file("fits/comp.fits"))
    arr = store.group.arrays["COMPRESSED_IMAGE"]
    assert arr.chunks == (1, 440)
    assert arr.manifest.shape_chunk_grid == (300, 1)
    assert arr.metadata.to_dict()["codecs"][0]["configuration"]["algorithm"] == "RICE_1"


@requires_real_data
def test_select_hdus_by_name_and_index() -> None:
    store = parse(real_file("fits/test0.fits"), hdus=["SCI_2", 3])
    assert set(store.group.arrays) == {"SCI_2", "SCI_3"}
    with pytest.raises(ParserError, match="no HDU 'NOPE'"):
        parse(real_file("fits/test0.fits"), hdus=["NOPE"])


# -- files written with astropy ------------------------------------------------------------

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("dtype", ["uint8", ">i2", ">i4", ">i8", ">f4", ">f8"])
def test_image_dtypes_and_multi_extension(tmp_path: Path, dtype: str) -> None:
    data = (RNG.normal(size=(4, 6, 5)) * 100).astype(dtype)
    path = tmp_path / "img.fits"
    fits.HDUList([fits.PrimaryHDU(data), fits.ImageHDU(data[0] * 2, name="HALF")]).writeto(path)
    store = parse(path)
    np.testing.assert_array_equal(raw(store, "PRIMARY"), data)
    np.testing.assert_array_equal(raw(store, "HALF"), data[0] * 2)
    assert store.group.arrays["PRIMARY"].metadata.dimension_names == ("naxis3", "naxis2", "naxis1")


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "int8"])
def test_unsigned_and_signed_byte_via_bzero(tmp_path: Path, dtype: str) -> None:
    info = np.iinfo(dtype)
    data = RNG.integers(info.min, info.max, size=(7, 9), endpoint=True).astype(dtype)
    data.flat[:2] = info.min, info.max
    path = tmp_path / "u.fits"
    fits.PrimaryHDU(data).writeto(path)
    store = parse(path)
    with fits.open(path) as ref:
        assert ref[0].data.dtype.newbyteorder("=") == np.dtype(dtype)
    for got in (decoded(store, "PRIMARY"), raw(store, "PRIMARY")):  # exact, of astropy's type
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, data)
    assert "add_offset" not in store.group.arrays["PRIMARY"].metadata.attributes


def test_pseudo_unsigned_and_offset_columns_read_as_astropy_reads_them(tmp_path: Path) -> None:
    """TZERO = 32768/2**31/2**63: exact unsigned integers; a large float TZERO (a Julian
    date) keeps float64 precision; other offsets are CF add_offset; all as astropy."""
    n = 9
    u = {k: np.iinfo(k) for k in ("u2", "u4", "u8")}
    cols = [
        fits.Column(
            name="u16",
            format="I",
            bzero=32768,
            array=np.array([0, 1, u["u2"].max, 32768, 7, 32767, 2, 3, 4], "u2"),
        ),
        fits.Column(
            name="u32",
            format="2J",
            bzero=2**31,
            array=RNG.integers(0, u["u4"].max, size=(n, 2), endpoint=True, dtype="u4"),
        ),
        fits.Column(
            name="u64",
            format="K",
            bzero=2**63,
            array=np.array([0, 1, u["u8"].max, 2**63, 2**63 - 1, 5, 6, 7, 8], "u8"),
        ),
        fits.Column(name="b", format="B", bzero=-128, array=np.arange(n, dtype="i1") - 4),
        fits.Column(name="jd", format="D", bzero=2450868.5, array=2450868.5 + RNG.random(n)),
        fits.Column(name="jd32", format="E", bzero=2450868.5, array=2450868.5 + np.arange(n) / 7),
        fits.Column(name="j", format="J", bzero=100, array=np.arange(n) + 100),
        fits.Column(name="unul", format="I", bzero=32768, null=0, array=np.arange(n, dtype="u2")),
    ]
    path = tmp_path / "tz.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="T")]).writeto(path)
    store = parse(path, max_chunk_bytes=64)  # several row blocks
    with fits.open(path) as ref:
        table = ref[1].data
        for col in table.columns.names:
            expected = table[col]
            got = decoded(store, col, group="T")
            assert got.dtype == expected.dtype.newbyteorder("="), col
            np.testing.assert_array_equal(got, expected, err_msg=col)
    arrays = store.group.groups["T"].arrays
    assert arrays["u64"].metadata.data_type.to_native_dtype() == np.dtype(">u8")
    assert "add_offset" not in arrays["u64"].metadata.attributes
    assert arrays["jd"].metadata.attributes["add_offset"] == 2450868.5


def test_blank_masks_and_bscale(tmp_path: Path) -> None:
    data = RNG.integers(-100, 100, size=(5, 5)).astype(">i2")
    data[1, 2] = -999
    header = fits.Header([("BLANK", -999), ("BSCALE", 0.5), ("BZERO", 3.0)])
    path = tmp_path / "blank.fits"
    fits.PrimaryHDU(data, header=header, do_not_scale_image_data=True).writeto(path)
    store = parse(path)
    with fits.open(path) as ref:
        expected = ref[0].data
    got = decoded(store, "PRIMARY")
    assert np.isnan(got[1, 2])
    np.testing.assert_array_equal(got, expected)


def _card(key: str, value: object) -> bytes:
    text = f"'{value}'" if isinstance(value, str) else ("T" if value is True else str(value))
    return f"{key:<8}= {text:>20}".ljust(80).encode()


@pytest.mark.parametrize("bitpix", [-32, 16])
def test_random_groups_parameters_scaled_and_combined_as_astropy(
    tmp_path: Path, bitpix: int
) -> None:
    """PSCALn/PZEROn applied (never raw), DATE split across two parameters summed as
    astropy's par() does, DATA scaled by BSCALE/BZERO; with several row blocks."""
    ngroups, shape = 7, (1, 2, 3)  # numpy order of NAXIS4..NAXIS2
    dtype = np.dtype(">f4" if bitpix < 0 else ">i2")
    rng = np.random.default_rng(11)
    params = rng.integers(-100, 100, size=(ngroups, 4)).astype(dtype)
    data = rng.integers(-100, 100, size=(ngroups, *shape)).astype(dtype)
    cards = [_card("SIMPLE", True), _card("BITPIX", bitpix), _card("NAXIS", 4), _card("NAXIS1", 0),
             _card("NAXIS2", 3), _card("NAXIS3", 2), _card("NAXIS4", 1), _card("GROUPS", True),
             _card("PCOUNT", 4), _card("GCOUNT", ngroups), _card("BSCALE", 0.5), _card("BZERO", 2.0),
             _card("PTYPE1", "UU"), _card("PSCAL1", 1.3550135501355e-08),
             _card("PTYPE2", "DATE"), _card("PZERO2", 2450868.5),
             _card("PTYPE3", "DATE"), _card("PSCAL3", 0.25),
             _card("PTYPE4", "BASELINE")]  # fmt: skip
    header = b"".join(cards) + b"END".ljust(80)
    header += b" " * (-len(header) % 2880)
    body = np.concatenate([params, data.reshape(ngroups, -1)], axis=1).astype(dtype).tobytes()
    path = tmp_path / "groups.fits"
    path.write_bytes(header + body + b"\0" * (-len(body) % 2880))
    store = parse(path, max_chunk_bytes=100)
    with fits.open(path) as ref:
        ref_data = ref[0].data
        for par in ("UU", "DATE", "BASELINE"):
            assert_like_astropy(decoded(store, par, group="PRIMARY"), ref_data.par(par), par)
        # DATA: BSCALE and BZERO as the FITS standard says; astropy (8.0) applies BSCALE only
        np.testing.assert_array_equal(ref_data.data, data * np.float32(0.5))
    got = decoded(store, "DATA", group="PRIMARY")
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, data.astype("f8") * 0.5 + 2.0)
    assert store.group.groups["PRIMARY"].arrays["UU"].chunks[0] < ngroups


def test_large_image_is_chunked_along_first_axis(tmp_path: Path) -> None:
    data = RNG.normal(size=(30, 16)).astype(">f8")  # 128-byte rows
    path = tmp_path / "big.fits"
    fits.PrimaryHDU(data).writeto(path)
    store = parse(path, max_chunk_bytes=1000)  # 7 rows fit; 6 is the largest divisor of 30
    assert store.group.arrays["PRIMARY"].chunks == (6, 16)
    np.testing.assert_array_equal(raw(store, "PRIMARY"), data)


@pytest.mark.parametrize(
    ("algorithm", "dtype", "tile"),
    [
        ("RICE_1", ">i2", None),
        ("RICE_1", ">i4", (5, 8)),
        ("RICE_1", "uint8", None),
        ("GZIP_1", ">i2", (10, 24)),  # 35 rows: a short last row of tiles
        ("GZIP_2", ">i4", (7, 24)),
        ("GZIP_1", ">f4", (5, 24)),
        ("GZIP_2", ">f8", None),
        ("PLIO_1", ">i2", None),
        ("HCOMPRESS_1", ">i2", (35, 24)),
        ("NOCOMPRESS", ">i4", (5, 24)),
        ("GZIP_2", ">i2", (8, 24)),  # short last row of tiles, byte-shuffled
        ("NOCOMPRESS", ">f8", (4, 24)),
    ],
)
def test_tile_compressed_images(
    tmp_path: Path, algorithm: str, dtype: str, tile: tuple[int, int] | None
) -> None:
    if np.dtype(dtype).kind == "f":
        data = RNG.normal(size=(35, 24)).astype(dtype)
    else:
        data = RNG.integers(0, 200, size=(35, 24)).astype(dtype)
    path = tmp_path / "comp.fits"
    kwargs = {} if tile is None else {"tile_shape": tile}
    hdu = fits.CompImageHDU(
        data,
        compression_type=algorithm,
        quantize_level=0.0 if data.dtype.kind == "f" else 16,
        name="IMG",
        **kwargs,
    )
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    store = parse(path)
    with fits.open(path) as ref:
        expected = ref[1].data
    got = raw(store, "IMG")
    assert got.dtype == expected.dtype.newbyteorder("=")
    np.testing.assert_array_equal(got, expected)


def test_compressed_unsigned_image(tmp_path: Path) -> None:
    data = RNG.integers(0, 65535, size=(12, 10)).astype("uint16")
    path = tmp_path / "cu.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1", name="U")]
    ).writeto(path)
    np.testing.assert_array_equal(decoded(parse(path), "U"), data)


def test_quantized_float_tiles_raise(tmp_path: Path) -> None:
    path = tmp_path / "q.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(RNG.normal(size=(8, 8)).astype("f4"), name="Q")]
    ).writeto(path)
    with pytest.raises(UnsupportedFeatureError, match=r"HDU 1 \('Q'\) of .*q\.fits: quantized"):
        parse(path)


def test_rice_partial_edge_tiles_raise(tmp_path: Path) -> None:
    path = tmp_path / "edge.fits"
    data = np.arange(35 * 24, dtype=">i2").reshape(35, 24)
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, tile_shape=(10, 24), name="E")]
    ).writeto(path)
    with pytest.raises(UnsupportedFeatureError, match=r"'E'.*do not divide the image shape"):
        parse(path)


def test_binary_table_columns(tmp_path: Path) -> None:
    n = 23
    cols = [
        fits.Column(name="i", format="J", array=np.arange(n)),
        fits.Column(name="u", format="J", bzero=2**31, array=np.arange(n, dtype="uint32") * 1000),
        fits.Column(name="f", format="3E", array=RNG.normal(size=(n, 3))),
        fits.Column(name="cube", format="6D", dim="(3,2)", array=RNG.normal(size=(n, 2, 3))),
        fits.Column(name="s", format="7A", array=np.array([f"r{i}" for i in range(n)])),
        fits.Column(name="bits", format="11X", array=RNG.integers(0, 2, size=(n, 11)).astype(bool)),
        fits.Column(name="c", format="C", array=RNG.normal(size=n) + 1j),
        fits.Column(
            name="scaled", format="E", bscale=0.25, bzero=10.0, array=np.arange(n) * 0.25 + 10
        ),
        fits.Column(
            name="nul", format="I", null=-1, array=np.where(np.arange(n) % 5, np.arange(n), -1)
        ),
        fits.Column(name="flag", format="L", array=np.arange(n) % 2 == 0),
        fits.Column(
            name="var",
            format="PJ()",
            array=np.array([np.arange(i % 4) for i in range(n)], dtype=object),
        ),
    ]
    path = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="T")]).writeto(path)
    with pytest.warns(VariableSkippedWarning) as caught:
        store = parse(path, max_chunk_bytes=100)  # several row blocks, a short last one
    assert sorted(str(w.message).split("column ")[1].split(" ")[0] for w in caught) == [
        "'flag'",
        "'var'",
    ]
    group = store.group.groups["T"]
    assert group.arrays["i"].chunks[0] < n
    with fits.open(path) as ref:
        table = ref[1].data
        for name in ("i", "u", "f", "cube", "s", "bits", "c", "scaled", "nul"):
            assert_column_equal(decoded(store, name, group="T"), table[name], name)
    # astropy leaves TNULL values in place (no masking): so do we, keeping TNULL
    assert group.arrays["nul"].metadata.attributes["TNULL"] == -1
    assert decoded(store, "nul", group="T").dtype == np.int16


def test_skipped_hdus_warn_with_their_names(tmp_path: Path) -> None:
    path = tmp_path / "mixed.fits"
    ascii_table = fits.TableHDU.from_columns(
        [fits.Column(name="a", format="I5", array=np.arange(3))], name="ASC"
    )
    fits.HDUList([fits.PrimaryHDU(np.ones((2, 2), ">f4")), ascii_table]).writeto(path)
    with pytest.warns(VariableSkippedWarning, match=r"HDU 1 \('ASC'\).*ASCII-table"):
        store = parse(path)
    assert set(store.group.arrays) == {"PRIMARY"}


def test_duplicate_extnames_get_extver(tmp_path: Path) -> None:
    path = tmp_path / "dup.fits"
    hdus = [fits.PrimaryHDU()] + [
        fits.ImageHDU(np.full((2, 3), k, ">i2"), name="SCI", ver=k) for k in (1, 2)
    ]
    fits.HDUList(hdus).writeto(path)
    store = parse(path)
    np.testing.assert_array_equal(raw(store, "SCI_2"), np.full((2, 3), 2))


@pytest.mark.filterwarnings("ignore:Header block contains null bytes")
def test_not_fits(tmp_path: Path) -> None:
    path = tmp_path / "bad.fits"
    path.write_bytes(b"SIMPLE  =                    T" + b"\x00" * 100)
    with pytest.raises(ParserError, match=r"bad\.fits"):
        parse(path)


def test_detected_from_first_bytes_and_read_from_object_store(tmp_path: Path) -> None:
    path = tmp_path / "mem.fits"
    data = RNG.integers(0, 99, size=(9, 4)).astype(">i2")
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="GZIP_1", name="G")]
    ).writeto(path)
    url, registry = in_memory(path, "a/mem.fits")
    parser = detect_parser(url, registry)
    assert isinstance(parser, FITSParser)
    store = parser(url, registry)
    np.testing.assert_array_equal(raw(store, "G"), data)


def test_unknown_tile_compression_is_a_named_codec_error(tmp_path):
    from astropy.io import fits

    from virtualizarr.errors import CodecNotSupportedError

    p = tmp_path / "odd.fits"
    data = np.arange(64, dtype=np.int16).reshape(8, 8)
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1", name="IMG")]
    ).writeto(p)
    raw_bytes = p.read_bytes()
    assert raw_bytes.count(b"'RICE_1  '") == 1
    p.write_bytes(raw_bytes.replace(b"'RICE_1  '", b"'BOGUS_1 '"))
    with pytest.raises(CodecNotSupportedError, match=r"odd\.fits.*BOGUS_1"):
        FITSParser()(str(p), ObjectStoreRegistry())
