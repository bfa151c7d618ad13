"""GRIBParser: values read through the ManifestStore equal ecCodes' (and cfgrib's) exactly."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

from tests._support import parser_call, referenced_chunks
from tests.conftest import real_files
from virtualizarr.errors import CorruptFileError, ParserError
from virtualizarr.parsers import GRIBParser, detect_parser
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore
from virtualizarr.testing.ground_truth import ground_truth, real_file, sha256_of_values

eccodes = pytest.importorskip("eccodes")


parse = parser_call(GRIBParser)


def chunk_values(store: ManifestStore) -> dict[int, np.ndarray]:
    """Byte offset of each referenced message -> its values read through zarr, flattened."""
    got = referenced_chunks(store, "GRIB_paramId")
    out = {offset: values for (offset, _), values in got.items()}
    assert len(out) == len(got), "one message referenced twice"
    return out


def open_group(store: ManifestStore, group: str = "isobaricInhPa_instant") -> xr.Dataset:
    """One group of the store as xarray opens it (no dask)."""
    return xr.open_dataset(
        store, engine="zarr", group=group, consolidated=False, zarr_format=3, chunks=None
    )


def open_cfgrib(path: Path) -> xr.Dataset:
    """The file as cfgrib reads it (no index file written)."""
    return xr.open_dataset(path, engine="cfgrib", backend_kwargs={"indexpath": ""})


def eccodes_values(message: bytes) -> np.ndarray:
    h = eccodes.codes_new_from_message(message)
    try:
        values = eccodes.codes_get_values(h)
        if eccodes.codes_get(h, "bitmapPresent"):
            values[eccodes.codes_get_array(h, "bitmap") == 0] = np.nan
        return values
    finally:
        eccodes.codes_release(h)


def write_messages(
    path: Path, specs: list[dict[str, Any]], sample: str = "regular_ll_pl_grib2"
) -> list[bytes]:
    """Write one message per spec (keys to set, plus "values"), with ecCodes; return the messages."""
    rng = np.random.default_rng(0)
    messages = []
    for spec in specs:
        h = eccodes.codes_grib_new_from_samples(spec.pop("sample", sample))
        values = spec.pop("values", None)
        for key, value in spec.items():
            eccodes.codes_set(h, key, value)
        n = eccodes.codes_get(h, "numberOfDataPoints")
        if values is None:
            values = 250 + 50 * rng.random(n)
        eccodes.codes_set_values(h, values)
        messages.append(eccodes.codes_get_message(h))
        eccodes.codes_release(h)
    path.write_bytes(b"".join(messages))
    return messages


# -- real files ------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", real_files("grib"))
def test_real_file_values_equal_ground_truth(rel: str) -> None:
    """Every message is one chunk, and its values equal ecCodes' (NaN where missing), bit for bit."""
    truth = ground_truth()[rel]["result"]
    store = parse(real_file(rel))
    got = chunk_values(store)
    assert sorted(got) == sorted(m["offset"] for m in truth["messages"])
    for m in truth["messages"]:
        assert sha256_of_values(got[m["offset"]]) == m["values"]["sha256"], f"message {m['index']}"
        assert np.isnan(got[m["offset"]]).sum() == m["values"]["n_nan"]


@pytest.mark.parametrize("rel", real_files("grib"))
def test_real_file_matches_cfgrib_variables(rel: str) -> None:
    """cfgrib's variables exist with its grid dims and shape and the same mean."""
    truth = ground_truth()[rel]["result"]
    store = parse(real_file(rel))
    for dataset in truth["cfgrib_datasets"]:
        for name, expected in dataset.items():
            matches = [g for g in store.group.groups.values() if name in g.arrays]
            assert matches, f"{name} missing"
            arr = matches[0].arrays[name]
            dims = arr.metadata.dimension_names
            assert list(dims[-2:]) == expected["dims"][-2:]
            assert list(arr.shape[-2:]) == expected["shape"][-2:]
            gname = next(k for k, g in store.group.groups.items() if g is matches[0])
            values = zarr.open_array(store, path=f"{gname}/{name}", mode="r")[...]
            np.testing.assert_allclose(
                np.nanmean(values.astype(np.float32)), expected["mean"], rtol=1e-5
            )


@pytest.mark.parametrize("rel", real_files("grib"))
def test_detected_from_first_bytes(rel: str) -> None:
    assert isinstance(detect_parser(str(real_file(rel)), ObjectStoreRegistry()), GRIBParser)


@pytest.mark.parametrize("rel", real_files("grib", (".grib",)))
def test_real_file_coordinates_match_cfgrib(rel: str, tmp_path: Path) -> None:
    """time/step/level/latitude/longitude decode through xarray to cfgrib's values."""
    path = tmp_path / Path(rel).name
    path.write_bytes(real_file(rel).read_bytes())
    store = parse(path)
    expected = open_cfgrib(path)
    name = next(iter(expected.data_vars))
    group = next(k for k, g in store.group.groups.items() if name in g.arrays)
    ds = open_group(store, group)
    for coord in ("time", "step", "valid_time", "latitude", "longitude"):
        np.testing.assert_array_equal(ds[coord].values, expected[coord].values, err_msg=coord)
    np.testing.assert_array_equal(ds[name].values.astype(np.float32), expected[name].values)


# -- files written with ecCodes -------------------------------------------------------------


def hypercube_specs() -> list[dict[str, Any]]:
    specs = []
    for date in (20240101, 20240102):
        for step in (0, 6):
            for level in (1000, 850, 500):
                for param in ("t", "u"):
                    if (param, level, step, date) == ("u", 500, 6, 20240102):
                        continue  # one absent combination -> one missing chunk
                    specs.append(
                        {
                            "shortName": param,
                            "level": level,
                            "dataDate": date,
                            "dataTime": 1200,
                            "stepUnits": 1,
                            "forecastTime": step,
                        }
                    )
    return specs


def test_hypercube_with_a_missing_combination(tmp_path: Path) -> None:
    path = tmp_path / "cube.grib2"
    messages = write_messages(path, hypercube_specs())
    store = parse(path)
    assert list(store.group.groups) == ["isobaricInhPa_instant"]
    group = store.group["isobaricInhPa_instant"]
    assert group.arrays["t"].metadata.dimension_names == (
        "time",
        "step",
        "isobaricInhPa",
        "latitude",
        "longitude",
    )
    assert group.arrays["u"].manifest.missing.sum() == 1
    offsets = np.cumsum([0] + [len(m) for m in messages[:-1]])
    got = chunk_values(store)
    for off, msg in zip(offsets, messages):
        np.testing.assert_array_equal(got[int(off)], eccodes_values(msg))

    ds = open_group(store)
    expected = open_cfgrib(path)
    for coord in ("time", "step", "isobaricInhPa", "latitude", "longitude", "valid_time"):
        np.testing.assert_array_equal(
            np.sort(ds[coord].values, axis=None),
            np.sort(expected[coord].values, axis=None),
            err_msg=coord,
        )
    for name in ("t", "u"):  # cfgrib orders levels descending; compare on ours
        exp = expected[name].sel(isobaricInhPa=ds["isobaricInhPa"].values).values
        np.testing.assert_array_equal(ds[name].values.astype(np.float32), exp)
    assert np.isnan(ds["u"].values[1, 1, 0]).all()  # the absent combination reads as NaN


def test_float32_option_equals_cfgrib(tmp_path: Path) -> None:
    path = tmp_path / "cube.grib2"
    write_messages(path, hypercube_specs()[:6])
    store = parse(path, dtype="float32")
    ds = open_group(store)
    expected = open_cfgrib(path)
    assert ds["t"].dtype == np.float32
    np.testing.assert_array_equal(
        ds["t"].values, expected["t"].sel(isobaricInhPa=ds["isobaricInhPa"]).values
    )


@pytest.mark.parametrize("sample", ["regular_ll_pl_grib1", "regular_ll_sfc_grib2"])
def test_bitmap_missing_values_are_nan(tmp_path: Path, sample: str) -> None:
    path = tmp_path / "bitmap.grib"
    values = np.linspace(200.0, 300.0, 496)
    values[::7] = 9999.0  # the sample's missingValue: becomes bitmap 0
    (msg,) = write_messages(path, [{"sample": sample, "bitmapPresent": 1, "values": values}])
    got = chunk_values(parse(path))[0]
    assert np.isnan(got).sum() == len(values[::7])
    np.testing.assert_array_equal(got, eccodes_values(msg))


@pytest.mark.parametrize(
    ("sample", "dims"),
    [
        ("reduced_gg_pl_grib2", ("values",)),
        ("polar_stereographic_pl_grib2", ("y", "x")),
        ("regular_gg_sfc_grib1", ("latitude", "longitude")),
    ],
)
def test_grids(tmp_path: Path, sample: str, dims: tuple[str, ...]) -> None:
    path = tmp_path / "grid.grib"
    (msg,) = write_messages(path, [{"sample": sample}])
    store = parse(path)
    (group,) = store.group.groups.values()
    var = next(a for a in group.arrays.values() if "GRIB_paramId" in a.metadata.attributes)
    assert var.metadata.dimension_names == dims
    np.testing.assert_array_equal(chunk_values(store)[0], eccodes_values(msg))
    h = eccodes.codes_new_from_message(msg)
    lat = eccodes.codes_get_array(h, "latitudes")
    eccodes.codes_release(h)
    gname = next(iter(store.group.groups))
    got_lat = zarr.open_array(store, path=f"{gname}/latitude", mode="r")[...]
    if dims == ("latitude", "longitude"):
        np.testing.assert_array_equal(got_lat, lat.reshape(var.shape)[:, 0])
    else:
        np.testing.assert_array_equal(got_lat.ravel(), lat)


def test_padding_between_messages_and_remote_store(tmp_path: Path) -> None:
    from obstore.store import MemoryStore

    path = tmp_path / "two.grib2"
    a, b = write_messages(path, hypercube_specs()[:2])
    data = b"junk" + a + b"\0" * 13 + b  # padding before and between messages, as ERA5 has
    mem = MemoryStore()
    mem.put("two.grib2", data)
    registry = ObjectStoreRegistry({"memory://bucket": mem})
    store = GRIBParser()("memory://bucket/two.grib2", registry)
    got = chunk_values(store)
    assert sorted(got) == [4, 4 + len(a) + 13]
    np.testing.assert_array_equal(got[4], eccodes_values(a))
    np.testing.assert_array_equal(got[4 + len(a) + 13], eccodes_values(b))


def test_step_in_minutes_decodes_to_timedelta(tmp_path: Path) -> None:
    path = tmp_path / "minutes.grib2"
    write_messages(
        path,
        [{"stepUnits": 0, "forecastTime": m, "indicatorOfUnitOfTimeRange": 0} for m in (15, 30)],
    )
    store = parse(path)
    ds = open_group(store)
    np.testing.assert_array_equal(ds["step"].values, np.array([15, 30], "timedelta64[m]"))


# -- errors ------------------------------------------------------------------------------------


def test_truncated_file_names_file_message_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "cut.grib2"
    a, b = write_messages(path, hypercube_specs()[:2])
    path.write_bytes(a + b[:-10])
    with pytest.raises(
        CorruptFileError, match=rf"cut\.grib2.*message 1 at byte offset {len(a)}.*truncated"
    ):
        parse(path)


def test_missing_end_marker(tmp_path: Path) -> None:
    path = tmp_path / "bad.grib2"
    (a,) = write_messages(path, hypercube_specs()[:1])
    path.write_bytes(a[:-4] + b"XXXX")
    with pytest.raises(CorruptFileError, match=r"bad\.grib2.*message 0 at byte offset 0.*'7777'"):
        parse(path)


def test_bad_length_grib1(tmp_path: Path) -> None:
    path = tmp_path / "bad.grib1"
    (a,) = write_messages(path, [{"sample": "regular_ll_pl_grib1"}])
    bad = bytearray(a)
    bad[4:7] = (len(a) - 8).to_bytes(3, "big")  # shorter than the message: no 7777 at its end
    path.write_bytes(bytes(bad) + b"\0" * 16)
    with pytest.raises(CorruptFileError, match=r"message 0 at byte offset 0.*'7777'"):
        parse(path)


def test_no_message(tmp_path: Path) -> None:
    path = tmp_path / "empty.grib"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(ParserError, match="no GRIB message"):
        parse(path)


def test_duplicates_split_or_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.grib2"
    spec = hypercube_specs()[0]
    a, b = write_messages(path, [dict(spec), dict(spec)])
    store = parse(path)
    assert sorted(store.group.groups) == ["isobaricInhPa_instant", "isobaricInhPa_instant_dup1"]
    got = chunk_values(store)
    np.testing.assert_array_equal(got[len(a)], eccodes_values(b))
    with pytest.raises(ParserError, match=r"messages 0 \(byte 0\) and 1 .*duplicates='split'"):
        parse(path, duplicates="error")


def test_codec_numcodecs_form_decodes_like_v3(tmp_path: Path) -> None:
    import numcodecs

    path = tmp_path / "one.grib2"
    (a,) = write_messages(path, hypercube_specs()[:1])
    codec = numcodecs.get_codec({"id": "virtualizarr.grib", "dtype": "<f4"})
    np.testing.assert_array_equal(codec.decode(a), eccodes_values(a).astype("<f4"))


@pytest.mark.slow
def test_grib1_large_message_convention(tmp_path: Path) -> None:
    """GRIB1 messages over 8 MiB code their length in 120-byte units (ECMWF convention)."""
    path = tmp_path / "large.grib1"
    spec = {
        "sample": "regular_ll_pl_grib1",
        "Ni": 2880,
        "Nj": 1441,
        "iDirectionIncrement": 125,
        "jDirectionIncrement": 125,
        "latitudeOfFirstGridPoint": 90000,
        "latitudeOfLastGridPoint": -90000,
        "longitudeOfFirstGridPoint": 0,
        "longitudeOfLastGridPoint": 359875,
        "bitsPerValue": 24,
    }
    spec["values"] = np.linspace(0, 1, 2880 * 1441)
    (msg,) = write_messages(path, [spec])
    assert len(msg) > 1 << 23
    assert msg[4] & 0x80
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = parse(path)
    got = chunk_values(store)
    assert (
        hashlib.sha256(got[0].tobytes()).digest()
        == hashlib.sha256(eccodes_values(msg).tobytes()).digest()
    )


def test_two_grids_in_one_level_type_get_two_groups(tmp_path: Path) -> None:
    path = tmp_path / "grids.grib2"
    coarse = {"sample": "regular_ll_sfc_grib2"}
    fine = {
        "sample": "regular_ll_sfc_grib2",
        "Ni": 32,
        "numberOfDataPoints": 32 * 31,
        "iDirectionIncrement": 1000000 // 2,
        "values": np.linspace(0, 1, 32 * 31),
    }
    a, b = write_messages(path, [coarse, fine])
    store = parse(path)
    assert sorted(store.group.groups) == ["surface_instant", "surface_instant_grid1"]
    assert store.group["surface_instant_grid1"].arrays["t"].shape[-1] == 32
    got = chunk_values(store)
    np.testing.assert_array_equal(got[len(a)], eccodes_values(b))


def test_kerchunk_references_decode_with_the_numcodecs_codec(tmp_path: Path) -> None:
    """Zarr v2 references (kerchunk) name the codec by id; reading them gives the same values."""
    pytest.importorskip("virtualizarr.writers.kerchunk")
    fsspec = pytest.importorskip("fsspec")
    import virtualizarr.accessor  # noqa: F401 -- registers ds.vz
    from virtualizarr.xarray import open_virtual_dataset

    path = tmp_path / "cube.grib2"
    write_messages(path, hypercube_specs())
    vds = open_virtual_dataset(str(path), group="isobaricInhPa_instant")
    refs = vds.vz.to_kerchunk(format="dict")
    mapper = fsspec.filesystem("reference", fo=refs).get_mapper("")
    got = xr.open_dataset(mapper, engine="zarr", consolidated=False, zarr_format=2, chunks=None)
    direct = open_group(parse(path))
    np.testing.assert_array_equal(got["u"].values, direct["u"].values)  # incl. the NaN chunk
    assert np.isnan(got["u"].values).any()


@pytest.mark.parametrize(
    "packing",
    ["grid_simple", "grid_ieee", "grid_ccsds", "grid_jpeg", "grid_complex",
     "grid_complex_spatial_differencing", "grid_png"],
)  # fmt: skip
def test_grib2_packings(tmp_path: Path, packing: str) -> None:
    """Keys come from the headers alone whatever the packing; values from the whole message."""
    path = tmp_path / f"{packing}.grib2"
    values = np.linspace(200.0, 300.0, 496)
    (msg,) = write_messages(
        path, [{"sample": "regular_ll_sfc_grib2", "packingType": packing, "values": values}]
    )
    store = parse(path)
    assert store.group["surface_instant"].arrays["t"].metadata.dimension_names == (
        "latitude",
        "longitude",
    )
    np.testing.assert_array_equal(chunk_values(store)[0], eccodes_values(msg))
