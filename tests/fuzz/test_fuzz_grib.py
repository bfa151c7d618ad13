"""GRIB under bad input: hypothesis on the section walker, the harness on real and ecCodes-written files.

Every case runs in a child process (ecCodes can segfault or abort on corrupt headers) with a
time limit, and must end in ``ok`` or a named error from :mod:`virtualizarr.errors` naming
the file (see :mod:`tests.fuzz.harness`). ``VIRTUALIZARR_FUZZ=N`` runs N mutants per file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import real_files
from tests.fuzz.harness import (
    Field,
    Mutant,
    Runner,
    assert_no_bad,
    file_mutants,
    fuzz_count,
    summarize,
)
from virtualizarr.parsers.grib.sections import (
    GribStructureError,
    decodable_message,
    grib1_layout,
    grib2_fields,
)
from virtualizarr.testing.ground_truth import real_file

eccodes = pytest.importorskip("eccodes")

SLOW_FILES = ("hrrr", "CMC_reg")  # large grids: seconds per parse (coordinates), run when slow


# -- where the structure is ----------------------------------------------------------------------


def structure(data: bytes, max_messages: int = 3) -> tuple[list[int], list[Field]]:
    """Message and section boundaries, and the header fields worth making huge, of the first
    ``max_messages`` messages (each huge-field mutant is a copy of the file: keep them few)."""
    bounds: list[int] = []
    fields: list[Field] = []
    pos = 0
    count = 0
    while (
        (start := data.find(b"GRIB", pos)) >= 0 and start + 16 <= len(data) and count < max_messages
    ):
        count += 1
        edition = data[start + 7]
        bounds += [start, start + 8, start + 16]
        if edition == 1:
            length = int.from_bytes(data[start + 4 : start + 7], "big")
            fields.append(Field(start + 4, 3, name=f"m@{start}.length"))
            p = start + 8
            flags = data[start + 15] if start + 16 <= len(data) else 0
            for name, present in (
                ("pds", True),
                ("gds", flags & 0x80),
                ("bms", flags & 0x40),
                ("bds", True),
            ):
                if not present or p + 11 > len(data):
                    continue
                n = int.from_bytes(data[p : p + 3], "big")
                fields.append(Field(p, 3, name=f"m@{start}.{name}.length"))
                if name == "gds":
                    fields += [Field(p + 6, 2, name="gds.Ni"), Field(p + 8, 2, name="gds.Nj")]
                if name == "bds":
                    fields.append(Field(p + 10, 1, name="bds.bitsPerValue"))
                bounds += [p, p + 3, p + n]
                p += n
        else:
            length = int.from_bytes(data[start + 8 : start + 16], "big")
            fields.append(Field(start + 8, 8, name=f"m@{start}.length"))
            p = start + 16
            while p + 5 <= min(len(data), start + length - 4):
                n, num = int.from_bytes(data[p : p + 4], "big"), data[p + 4]
                fields.append(Field(p, 4, name=f"m@{start}.s{num}.length"))
                if num == 3:
                    fields += [Field(p + 6, 4, name="s3.numberOfDataPoints")]
                    fields += [Field(p + 30, 4, name="s3.Ni"), Field(p + 34, 4, name="s3.Nj")]
                if num == 5:
                    fields += [Field(p + 5, 4, name="s5.numberOfValues")]
                    fields += [Field(p + 19, 1, name="s5.bitsPerValue")]
                    fields += [Field(p + 31, 4, name="s5.numberOfGroups")]
                bounds += [p, p + 5, p + n]
                p += max(n, 5)
        bounds.append(start + length)
        pos = start + max(length, 16)
    return sorted(set(bounds)), fields


# -- files written with ecCodes ------------------------------------------------------------------


def _encode(sample: str, packing: str | None, bitmap: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    h = eccodes.codes_grib_new_from_samples(sample)
    try:
        eccodes.codes_set(h, "bitmapPresent", bitmap)
        eccodes.codes_set(h, "bitsPerValue", 16)
        if packing and packing.startswith("grid_complex"):
            eccodes.codes_set_string(h, "packingType", packing)
        n = eccodes.codes_get(h, "numberOfDataPoints")
        values = np.round(250 + np.cumsum(rng.normal(0, 1, n)), 2)
        values[rng.random(n) < 0.1] = 9999.0
        eccodes.codes_set_values(h, values)
        if packing and not packing.startswith("grid_complex"):
            eccodes.codes_set_string(h, "packingType", packing)
        return eccodes.codes_get_message(h)
    finally:
        eccodes.codes_release(h)


def generated_files(root: Path) -> list[Path]:
    """Complex packing (missing-value modes 1 and 2), bitmaps, CCSDS/JPEG, GRIB1, a multi-field message."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "complex_mvm1.grib2": [_encode("regular_ll_sfc_grib2", "grid_complex", 0, 1)],
        "sd_bitmap.grib2": [
            _encode("regular_ll_sfc_grib2", "grid_complex_spatial_differencing", 1, 2)
        ],
        "ccsds_jpeg.grib2": [
            _encode("regular_ll_sfc_grib2", "grid_ccsds", 1, 3),
            _encode("regular_ll_sfc_grib2", "grid_jpeg", 0, 4),
        ],
        "bitmap.grib1": [
            _encode("regular_ll_pl_grib1", None, 1, 5),
            _encode("regular_ll_pl_grib1", None, 0, 6),
        ],
    }
    mvm2 = bytearray(_encode("regular_ll_sfc_grib2", "grid_complex_spatial_differencing", 0, 7))
    p = 16
    while mvm2[p + 4] != 5:
        p += int.from_bytes(mvm2[p : p + 4], "big")
    mvm2[p + 22] = 2  # secondary missing values too
    files["sd_mvm2.grib2"] = [bytes(mvm2)]
    a, b = (
        _encode("regular_ll_sfc_grib2", None, 0, 8),
        _encode("regular_ll_sfc_grib2", "grid_complex", 1, 9),
    )

    def secs(m: bytes) -> list[bytes]:
        out, q = [], 16
        while q < len(m) - 4:
            n = int.from_bytes(m[q : q + 4], "big")
            out.append(m[q : q + n])
            q += n
        return out

    multi = (
        bytearray(a[:16]) + b"".join(secs(a)) + b"".join(s for s in secs(b) if s[4] >= 4) + b"7777"
    )
    multi[8:16] = len(multi).to_bytes(8, "big")
    files["multi.grib2"] = [bytes(multi)]
    out = []
    for name, messages in files.items():
        path = root / name
        path.write_bytes(b"".join(messages))
        out.append(path)
    return out


def read_values(path: str, parser: str | None = None) -> str:
    """Child-process opener: parse, then read every GRIB variable's values through zarr.

    A :class:`~virtualizarr.errors.ChunkReadError` from the codec is an acceptable end (the
    codec cannot name the file: zarr hands it bytes only); anything else propagates.
    """
    import warnings

    import zarr

    from virtualizarr.errors import ChunkReadError
    from virtualizarr.parsers import GRIBParser
    from virtualizarr.registry import ObjectStoreRegistry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = GRIBParser()("file://" + path, ObjectStoreRegistry())
        root = zarr.open_group(store, mode="r", zarr_format=3)
        errors = 0
        for gname, group in store.group.groups.items():
            for vname in group.arrays:
                try:
                    np.asarray(root[f"{gname}/{vname}"][...])
                except ChunkReadError:
                    errors += 1
    return f"read, {errors} chunk errors"


def _cases(path: Path, seed: int, n: int) -> list[Mutant]:
    data = path.read_bytes()
    bounds, fields = structure(data)
    return file_mutants(
        data, seed=seed, n=n, boundaries=bounds, fields=fields, magic=4, header=min(len(data), 4096)
    )


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _importable_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker imports this module for the ``read_values`` opener: put the repository on its path."""
    import os

    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )


def _run(tmp_path: Path, paths: list[Path], n: int, opener: str) -> None:
    outcomes = []
    with Runner(tmp_path / "work", timeout=60) as run:
        for i, path in enumerate(paths):
            cases = _cases(path, seed=1000 + i, n=n)
            outcomes += run.many(path, cases, opener=opener, parser="GRIBParser")
    print(summarize(outcomes, f"GRIB ({opener})"))
    assert_no_bad(outcomes, f"GRIB ({opener})")


def _real(slow: bool) -> list[Path]:
    paths = [real_file(rel) for rel in real_files("grib")]
    return [p for p in paths if any(s in p.name for s in SLOW_FILES) == slow]


# -- the tests -----------------------------------------------------------------------------------


def test_mutants_parse(tmp_path: Path) -> None:
    """Seeded mutants of the small real files and the generated ones: parse + kerchunk refs."""
    paths = _real(slow=False) + generated_files(tmp_path / "gen")
    _run(tmp_path, paths, fuzz_count(14), "open")


def test_mutants_read(tmp_path: Path) -> None:
    """Mutants that parse are read: the codec never crashes and raises only ChunkReadError."""
    paths = generated_files(tmp_path / "gen")
    _run(tmp_path, paths, fuzz_count(12), "tests.fuzz.test_fuzz_grib:read_values")


@pytest.mark.slow
def test_mutants_large_grids(tmp_path: Path) -> None:
    _run(tmp_path, _real(slow=True), fuzz_count(12), "open")


def _patched(msg: bytes, edit: tuple[int, bytes]) -> bytes:
    buf = bytearray(msg)
    buf[edit[0] : edit[0] + len(edit[1])] = edit[1]
    return bytes(buf)


def test_issue_crash_cases_raise_named_errors(tmp_path: Path) -> None:
    """The three mutants that killed the process in issue 12, after a good file was read."""
    era5 = [p for p in _real(slow=False) if p.name.startswith("era5")]
    g1 = era5[0].read_bytes()[:3342] if era5 else _encode("regular_ll_pl_grib1", None, 0, 1)
    pds = int.from_bytes(g1[8:11], "big")
    cx = _encode("regular_ll_sfc_grib2", "grid_complex", 0, 2)
    p = 16
    while cx[p + 4] != 5:
        p += int.from_bytes(cx[p : p + 4], "big")
    cases = [
        Mutant("good", g1),
        Mutant("grib1-gds-length-7fffff", _patched(g1, (8 + pds, b"\x7f\xff\xff"))),
        Mutant("grib1-gds-length-ffffff", _patched(g1, (8 + pds, b"\xff\xff\xff"))),
        Mutant("good2", cx),
        Mutant("sec5-count-40000000", _patched(cx, (p + 5, (0x40000000).to_bytes(4, "big")))),
        Mutant("sec5-bpv-ff", _patched(cx, (p + 19, b"\xff"))),
    ]
    src = tmp_path / "case.grib"
    src.write_bytes(g1)
    with Runner(tmp_path / "work", timeout=60) as run:
        outcomes = run.many(src, cases, opener="tests.fuzz.test_fuzz_grib:read_values")
    print(summarize(outcomes, "issue 12 cases"))
    assert_no_bad(outcomes)
    assert [o.status for o in outcomes] == ["ok", "named", "named", "ok", "named", "named"]


# -- hypothesis: the section walker on arbitrary messages -------------------------------------------


@st.composite
def grib2_messages(draw: st.DrawFn) -> bytes:
    """A GRIB2 message of drawn sections: numbers, lengths (small, boundary, huge) and contents."""
    big = st.sampled_from([0, 1, 4, 5, 0x7FFFFFFF, 0xFFFFFFFF, 0x40000000])
    body = b""
    for _ in range(draw(st.integers(0, 9))):
        num = draw(st.integers(0, 9))
        content = draw(st.binary(max_size=60))
        n = draw(st.one_of(st.just(5 + len(content)), big))
        body += (n & 0xFFFFFFFF).to_bytes(4, "big") + bytes([num]) + content
    total = draw(st.one_of(st.just(16 + len(body) + 4), big))
    return b"GRIB\x00\x00\x00\x02" + total.to_bytes(8, "big") + body + b"7777"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grib2_messages())
def test_grib2_walker_raises_only_structure_errors(msg: bytes) -> None:
    try:
        fields = grib2_fields(lambda o, n: msg[o : o + n], len(msg))
    except GribStructureError:
        return
    for f in fields:  # every section it returns lies inside the message
        for sec in (f.sec1, f.sec2, f.sec3, f.sec4, f.sec5, f.sec6, f.sec7):
            assert sec is None or (sec[0] >= 16 and sec[0] + sec[1] <= len(msg) - 4)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.integers(0, 300))
def test_decodable_message_on_garbage(tail: bytes, length: int) -> None:
    for edition in (1, 2):
        head = b"GRIB" + (
            length.to_bytes(3, "big") + bytes([edition]) if edition == 1 else b"\x00\x00\x00\x02"
        )
        if edition == 2:
            head += length.to_bytes(8, "big")
        try:
            out = decodable_message(head + tail)
        except GribStructureError:
            continue
        assert out[:4] == b"GRIB"


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=120))
def test_grib1_layout_on_garbage(body: bytes) -> None:
    msg = b"GRIB" + (len(body) + 12).to_bytes(3, "big") + b"\x01" + body + b"7777"
    try:
        layout = grib1_layout(lambda o, n: msg[o : o + n], len(msg), False)
    except GribStructureError:
        return
    assert layout.bds[0] + layout.bds[1] <= len(msg) - 4
