"""Every GRIB packing we decode, with and without bitmaps and in both missing-value modes of
complex packing, and multi-field messages: values read through zarr equal ecCodes' exactly
(NaN exactly where ecCodes says "missing"). The files are written with ecCodes here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._support import parser_call, referenced_chunks
from virtualizarr.parsers import GRIBParser
from virtualizarr.store import ManifestStore

eccodes = pytest.importorskip("eccodes")

SENTINEL = -1.2345e300  # a missingValue no field holds: where ecCodes returns it, it says "missing"


parse = parser_call(GRIBParser)


def released_values(h: Any) -> np.ndarray:
    """ecCodes' values of the field of handle ``h`` (then released), NaN where it says missing."""
    try:
        eccodes.codes_set(h, "missingValue", SENTINEL)
        values = eccodes.codes_get_values(h)
    finally:
        eccodes.codes_release(h)
    values[values == SENTINEL] = np.nan
    return values


def reference(message: bytes) -> np.ndarray:
    """ecCodes' values of a (single-field) message, NaN where ecCodes returns its missingValue."""
    return released_values(eccodes.codes_new_from_message(message))


def read_chunks(store: ManifestStore) -> dict[tuple[int, int], np.ndarray]:
    """(offset, length) of each referenced field -> its values read through zarr, flattened."""
    return referenced_chunks(store, "GRIB_paramId")


def sections(msg: bytes) -> list[bytes]:
    pos, out = 16, []
    while pos < len(msg) - 4:
        n = int.from_bytes(msg[pos : pos + 4], "big")
        out.append(msg[pos : pos + n])
        pos += n
    return out


def section_offset(msg: bytes, number: int) -> int:
    pos = 16
    while msg[pos + 4] != number:
        pos += int.from_bytes(msg[pos : pos + 4], "big")
    return pos


def encode(sample: str, keys: dict[str, Any], values: np.ndarray) -> bytes:
    """A message from an ecCodes sample: ``keys`` set, then the values (simple packing),
    then ``packingType`` and the keys that only apply to it (ecCodes repacks the values;
    setting a packing on a sample without values can abort ecCodes)."""
    keys = dict(keys)
    packing = keys.pop("packingType", None)
    late = {k: keys.pop(k) for k in ("orderOfSpatialDifferencing",) if k in keys}
    h = eccodes.codes_grib_new_from_samples(sample)
    try:
        for key, value in keys.items():
            eccodes.codes_set(h, key, value)
        early = packing is not None and packing.startswith("grid_complex")  # order needs it first
        for step in ("early", "values", "late") if early else ("values", "early"):
            if step == "values":
                eccodes.codes_set_values(h, values)
            elif step == "early" and packing is not None:
                eccodes.codes_set_string(h, "packingType", packing)
                for key, value in late.items():
                    eccodes.codes_set(h, key, value)
        return eccodes.codes_get_message(h)
    finally:
        eccodes.codes_release(h)


def field_values(n: int, seed: int, missing: float | None = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.round(250 + np.cumsum(rng.normal(0, 1, n)), 2)
    if missing:
        values[rng.random(n) < missing] = 9999.0  # ecCodes' default missingValue: "missing"
    return values


def check_file(tmp_path: Path, messages: list[bytes], name: str = "f.grib") -> None:
    path = tmp_path / name
    path.write_bytes(b"".join(messages))
    got = read_chunks(parse(path))
    offsets = np.cumsum([0] + [len(m) for m in messages[:-1]])
    assert sorted(got) == sorted((int(o), len(m)) for o, m in zip(offsets, messages))
    for off, msg in zip(offsets, messages):
        np.testing.assert_array_equal(got[(int(off), len(msg))], reference(msg))


GRIB2_PACKINGS = [
    "grid_simple",
    "grid_ieee",
    "grid_ccsds",
    "grid_jpeg",
    "grid_png",
    "grid_complex",
    "grid_complex_spatial_differencing",
    "grid_simple_log_preprocessing",
    "grid_second_order",
    "grid_simple_matrix",
]


@pytest.mark.parametrize("bitmap", [0, 1])
@pytest.mark.parametrize("packing", GRIB2_PACKINGS)
def test_grib2_packings_with_and_without_bitmap(tmp_path: Path, packing: str, bitmap: int) -> None:
    keys: dict[str, Any] = {"bitmapPresent": bitmap, "bitsPerValue": 16, "packingType": packing}
    if packing == "grid_simple_log_preprocessing":
        keys["bitsPerValue"] = 12
    values = field_values(496, seed=len(packing) + bitmap, missing=0.1 if bitmap else None)
    msg = encode("regular_ll_sfc_grib2", keys, values)
    h = eccodes.codes_new_from_message(msg)
    assert eccodes.codes_get(h, "packingType") == packing
    assert eccodes.codes_get(h, "bitmapPresent") == bitmap
    eccodes.codes_release(h)
    check_file(tmp_path, [msg])


@pytest.mark.parametrize("bitmap", [0, 1])
@pytest.mark.parametrize("packing", ["grid_simple", "grid_ieee", "grid_second_order"])
def test_grib1_packings_with_and_without_bitmap(tmp_path: Path, packing: str, bitmap: int) -> None:
    keys: dict[str, Any] = {"bitmapPresent": bitmap, "bitsPerValue": 16, "packingType": packing}
    values = field_values(496, seed=7 + bitmap, missing=0.1 if bitmap else None)
    msg = encode("regular_ll_sfc_grib1", keys, values)
    check_file(tmp_path, [msg])


@pytest.mark.parametrize("sample", ["sh_ml_grib2", "sh_ml_grib1"])
def test_spectral_complex(tmp_path: Path, sample: str) -> None:
    values = np.random.default_rng(3).normal(0, 1, 4160)
    msg = encode(sample, {}, values)
    check_file(tmp_path, [msg])


def complex_message(packing: str, bitmap: int, mode: int, order: int, seed: int) -> bytes:
    """A complex-packed field whose octet 23 of section 5 (missing-value management) is ``mode``.

    ecCodes writes mode 1 when values are missing (primary substitutes) and no bitmap is
    used; the other modes are made by changing octet 23, which leaves a valid message:
    in mode 2 the largest group value is the primary and the next one the secondary
    missing value (so some values become secondary missing), in mode 0 neither is.
    """
    keys: dict[str, Any] = {"bitmapPresent": bitmap, "bitsPerValue": 16, "packingType": packing}
    if packing == "grid_complex_spatial_differencing":
        keys["orderOfSpatialDifferencing"] = order
    msg = bytearray(encode("regular_ll_sfc_grib2", keys, field_values(496, seed)))
    s5 = section_offset(msg, 5)
    msg[s5 + 22] = mode
    return bytes(msg)


@pytest.mark.parametrize("mode", [0, 1, 2])
@pytest.mark.parametrize("bitmap", [0, 1])
@pytest.mark.parametrize(
    ("packing", "order"),
    [
        ("grid_complex", 1),
        ("grid_complex_spatial_differencing", 1),
        ("grid_complex_spatial_differencing", 2),
    ],
)
def test_complex_packing_missing_value_management(
    tmp_path: Path, packing: str, order: int, bitmap: int, mode: int
) -> None:
    """Primary and secondary missing-value substitutes decode to NaN, exactly where ecCodes says."""
    msg = complex_message(packing, bitmap, mode, order, seed=mode + 3 * bitmap + 7 * order)
    h = eccodes.codes_new_from_message(msg)
    assert eccodes.codes_get(h, "missingValueManagementUsed") == mode
    eccodes.codes_release(h)
    expected = reference(msg)
    if mode:  # the test is about something: some points are missing through the packing itself
        assert 0 < np.isnan(expected).sum() < expected.size
    check_file(tmp_path, [msg])


def test_several_packings_in_one_file(tmp_path: Path) -> None:
    messages = [
        complex_message("grid_complex", 0, 1, 1, seed=1),
        complex_message("grid_complex_spatial_differencing", 1, 2, 2, seed=2),
        encode("regular_ll_sfc_grib2", {"packingType": "grid_ccsds"}, field_values(496, 3, None)),
    ]
    check_file(tmp_path, messages)


# -- multi-field messages ---------------------------------------------------------------------


def multi_field(fields: list[bytes], repeat: tuple[int, ...] = (4, 5, 6, 7)) -> bytes:
    """One message holding every field: sections 1-7 of the first, then ``repeat`` of the others."""
    body = b"".join(sections(fields[0]))
    for f in fields[1:]:
        body += b"".join(s for s in sections(f) if s[4] in repeat)
    msg = bytearray(fields[0][:16]) + body + b"7777"
    msg[8:16] = len(msg).to_bytes(8, "big")
    return bytes(msg)


def ecc_fields(path: Path) -> list[np.ndarray]:
    """ecCodes' values of every field of a file (multi-field support on), NaN where missing."""
    out = []
    eccodes.codes_grib_multi_support_on()
    try:
        with open(path, "rb") as f:
            while (h := eccodes.codes_grib_new_from_file(f)) is not None:
                out.append(released_values(h))
    finally:
        eccodes.codes_grib_multi_support_off()
    return out


@pytest.mark.parametrize("repeat", [(4, 5, 6, 7), (3, 4, 5, 6, 7)])
def test_multi_field_message_references_every_field(
    tmp_path: Path, repeat: tuple[int, ...]
) -> None:
    keys = [
        {"shortName": name, "bitsPerValue": 16, "bitmapPresent": bm, "packingType": pk}
        for name, bm, pk in (
            ("t", 0, "grid_simple"),
            ("u", 1, "grid_complex"),
            ("v", 1, "grid_ccsds"),
        )
    ]
    fields = [
        encode("regular_ll_pl_grib2", k, field_values(496, i, 0.1 if k["bitmapPresent"] else None))
        for i, k in enumerate(keys)
    ]
    path = tmp_path / "multi.grib2"
    single = b"".join(sections(fields[0]))
    msg = multi_field(fields, repeat)
    assert len(msg) > len(single)
    path.write_bytes(fields[0] + msg)  # a plain message, then the multi-field one
    expected = ecc_fields(path)
    assert len(expected) == 4
    store = parse(path)
    got = read_chunks(store)
    assert len(got) == 4
    order = sorted(got)  # by offset, then length: fields in file order
    for key, exp in zip(order, expected):
        np.testing.assert_array_equal(got[key], exp)
    names = {n for g in store.group.groups.values() for n in g.arrays}
    assert {"t", "u", "v"} <= names


def test_multi_field_bitmap_reused_by_indicator_254(tmp_path: Path) -> None:
    """A later field may say "the bitmap defined before" (section 6 indicator 254)."""
    values = field_values(496, 5, 0.2)
    a = encode(
        "regular_ll_pl_grib2", {"shortName": "t", "bitmapPresent": 1, "bitsPerValue": 16}, values
    )
    b = bytearray(
        encode(
            "regular_ll_pl_grib2",
            {"shortName": "u", "bitmapPresent": 1, "bitsPerValue": 16},
            np.where(values == 9999.0, 9999.0, values + 3),
        )
    )
    secs_b = sections(bytes(b))
    s6 = next(s for s in secs_b if s[4] == 6)
    reuse = b"\x00\x00\x00\x06\x06\xfe"
    body = b"".join(sections(a)) + b"".join(
        s if s[4] != 6 else reuse for s in secs_b if s[4] in (4, 5, 6, 7)
    )
    assert len(s6) > 6
    msg = bytearray(a[:16]) + body + b"7777"
    msg[8:16] = len(msg).to_bytes(8, "big")
    path = tmp_path / "reuse.grib2"
    path.write_bytes(bytes(msg))
    expected = ecc_fields(path)
    got = read_chunks(parse(path))
    for key, exp in zip(sorted(got), expected):
        np.testing.assert_array_equal(got[key], exp)
    assert np.isnan(expected[1]).sum() == np.isnan(expected[0]).sum() > 0
