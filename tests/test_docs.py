"""docs/formats.md stays true: parsers, errors and pages it names exist and are tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import virtualizarr.errors
import virtualizarr.parsers

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "formats.md"

# parser class -> the test files that exercise it
TESTS = {
    "HDFParser": ["test_parsers/test_hdf5.py", "test_parsers/test_hdf5_filters.py"],
    "NetCDF3Parser": ["test_parsers/test_netcdf3.py"],
    "ZarrParser": ["test_parsers/test_zarr.py"],
    "KerchunkJSONParser": ["test_parsers/test_kerchunk.py"],
    "KerchunkParquetParser": ["test_parsers/test_kerchunk.py"],
    "TIFFParser": ["test_parsers/test_tiff.py"],
    "FITSParser": ["test_parsers/test_fits.py"],
    "GRIBParser": [
        "test_parsers/test_grib.py",
        "test_parsers/test_grib_robust.py",
        "test_parsers/test_grib_packing.py",
    ],
    "DMRPPParser": ["test_parsers/test_dmrpp.py"],
}


def rows() -> list[list[str]]:
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("| ") and "`" in line]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def format_rows() -> list[list[str]]:
    return [r for r in rows() if len(r) == 5 and "Parser" in r[1]]


def test_every_parser_has_a_row_and_a_page():
    documented = {name for r in format_rows() for name in re.findall(r"`(\w+Parser)`", r[1])}
    assert documented == set(virtualizarr.parsers._PARSERS) == set(TESTS)
    for r in format_rows():
        page = re.search(r"\((formats/[\w]+\.md)\)", r[4]).group(1)
        assert (DOC.parent / page).exists(), page


def test_named_errors_exist():
    named = set(re.findall(r"`(\w+(?:Error|Warning))`", DOC.read_text()))
    assert named
    for name in named:
        assert hasattr(virtualizarr.errors, name), (
            f"docs name {name}, which virtualizarr.errors lacks"
        )


@pytest.mark.parametrize("row", format_rows(), ids=lambda r: r[0])
def test_each_documented_error_is_tested(row):
    parsers = re.findall(r"`(\w+Parser)`", row[1])
    errors = set(re.findall(r"`(\w+(?:Error|Warning))`", row[3]))
    text = "".join(
        (ROOT / "tests" / f).read_text()
        for p in parsers
        for f in TESTS[p]
        if (ROOT / "tests" / f).exists()
    )
    assert text, f"no tests for {parsers}"
    for err in errors:
        assert err in text, f"{row[0]}: {err} is documented but no test of {parsers} mentions it"
