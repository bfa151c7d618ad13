"""The fuzz harness itself: mutants are seeded, and every kind of outcome is classified."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.harness import Field, Mutant, Runner, file_mutants, special_mutants


def test_mutants_are_seeded_and_cover_fields() -> None:
    data = bytes(range(256)) * 4
    a = file_mutants(data, seed=3, n=40, boundaries=[8, 64], fields=[Field(4, 4)])
    b = file_mutants(data, seed=3, n=40, boundaries=[8, 64], fields=[Field(4, 4)])
    assert [m.name for m in a] == [m.name for m in b]
    assert [m.data for m in a] == [m.data for m in b]
    assert len(a) == 40
    names = {m.name for m in a}
    assert {"empty", "magic+garbage", "truncate@8"} <= names
    huge = next(m for m in a if m.name == "huge[4:4>]=0x7fffffff")
    assert huge.data[4:8] == b"\x7f\xff\xff\xff"
    assert huge.data[8:] == data[8:]


@pytest.mark.parametrize(
    ("opener", "status", "detail"),
    [
        ("selftest_openers:raise_named", "named", "CorruptFileError"),
        ("selftest_openers:raise_unnamed", "BAD", "does not name the file"),
        ("selftest_openers:raise_index", "BAD", "IndexError"),
        ("selftest_openers:crash", "BAD", "SIGABRT"),
        ("selftest_openers:allocate", "BAD", "MemoryError"),
        ("selftest_openers:hang", "BAD", "hang"),
    ],
)
def test_outcomes_are_classified(tmp_path: Path, opener: str, status: str, detail: str) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 100)
    with Runner(tmp_path / "work", timeout=3, memory=2 << 30) as run:
        out = run.one(src, Mutant("m", b"y"), opener=opener)
        assert out.status == status, out
        assert detail in out.detail, out
        # the runner recovers: the next case runs in a fresh worker
        assert run.one(src, Mutant("m2", b"y"), opener="selftest_openers:raise_named").status == (
            "named"
        )


def test_special_cases(tmp_path: Path) -> None:
    src = tmp_path / "f.nc"
    src.write_bytes(b"CDF\x01" + bytes(28))
    with Runner(tmp_path / "work", timeout=20) as run:
        outs = {
            m.name: run.one(src, m, opener="parse", parser="NetCDF3Parser")
            for m in special_mutants()
        }
    assert outs["directory"].status == "named", outs["directory"]
    assert outs["missing"].status == "named", outs["missing"]
    assert outs["missing"].detail.startswith("FileNotFoundError")
