"""NetCDF3 under bad input: hypothesis on the header parser, the harness on the real files.

Every case must end in ``ok`` or a named error (see :mod:`tests.fuzz.harness`).
"""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import real_files, requires_real_data
from tests.fuzz.harness import (
    Field,
    Runner,
    assert_no_bad,
    file_mutants,
    fuzz_count,
    special_mutants,
    summarize,
)
from virtualizarr.errors import CorruptFileError, ParserError
from virtualizarr.parsers import NetCDF3Parser
from virtualizarr.parsers import netcdf3 as nc3
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.testing.ground_truth import real_file

# -- a header writer for hypothesis (netCDF classic format specification) --------------------


def _count(version: int, n: int) -> bytes:
    return struct.pack(
        ">Q" if version == 5 else ">I", n & ((1 << (64 if version == 5 else 32)) - 1)
    )


def _name(version: int, name: bytes) -> bytes:
    return _count(version, len(name)) + name + bytes(-len(name) % 4)


def _attrs(version: int, attrs: list[tuple[bytes, int, bytes, int]]) -> bytes:
    if not attrs:
        return bytes(8 if version != 5 else 12)
    out = struct.pack(">I", 12) + _count(version, len(attrs))
    for name, nc_type, value, nelems in attrs:
        out += _name(version, name) + struct.pack(">I", nc_type) + _count(version, nelems)
        out += value + bytes(-len(value) % 4)
    return out


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    """A netCDF-3 file whose header fields are drawn from small, boundary and huge values."""
    version = draw(st.sampled_from([1, 2, 5]))
    big = st.sampled_from([0, 1, 2, 3, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 1 << 40, (1 << 63) - 1])
    num = draw(st.one_of(st.integers(0, 6), big))
    names = st.binary(min_size=0, max_size=6)
    ndims = draw(st.integers(0, 3))
    dims = [(draw(names), draw(st.one_of(st.integers(0, 5), big))) for _ in range(ndims)]
    attr = st.tuples(names, st.integers(0, 12), st.binary(max_size=12), st.integers(0, 16) | big)
    gattrs = draw(st.lists(attr, max_size=2))
    out = b"CDF" + bytes([version]) + _count(version, num)
    if dims:
        out += struct.pack(">I", 10) + _count(version, len(dims))
        out += b"".join(_name(version, n) + _count(version, length) for n, length in dims)
    else:
        out += bytes(8 if version != 5 else 12)
    out += _attrs(version, gattrs)
    nvars = draw(st.integers(0, 3))
    body = b""
    for _ in range(nvars):
        dimids = draw(st.lists(st.integers(0, 4) | big, max_size=3))
        body += _name(version, draw(names) or b"v")
        body += _count(version, len(dimids)) + b"".join(_count(version, d) for d in dimids)
        body += _attrs(version, draw(st.lists(attr, max_size=1)))
        body += struct.pack(">I", draw(st.integers(0, 12)))
        body += _count(version, draw(st.integers(0, 64) | big))
        begin = draw(st.integers(0, 400) | big)
        body += struct.pack(
            ">I" if version == 1 else ">Q", begin & ((1 << (32 if version == 1 else 64)) - 1)
        )
    if nvars:
        out += struct.pack(">I", 11) + _count(version, nvars) + body
    else:
        out += bytes(8 if version != 5 else 12)
    cut = draw(st.integers(0, len(out) + 1))  # sometimes truncated
    tail = draw(st.binary(max_size=200))
    return out[:cut] if draw(st.booleans()) and cut < len(out) else out + tail


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=headers())
def test_header_parser_raises_only_parser_errors(data: bytes) -> None:
    """parse_header of any bytes returns a header or raises ParserError."""
    try:
        header = nc3.parse_header(data, "mem.nc")
    except ParserError as e:
        assert "mem.nc" in str(e)  # noqa: PT017
        return
    assert header.size <= len(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=headers())
def test_parser_on_any_header_is_bounded(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    """NetCDF3Parser of any header: a named error, or references inside the file; never a
    big allocation (a huge numrecs or dimension length must not size anything)."""
    path = tmp_path_factory.mktemp("h") / "f.nc"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        store = NetCDF3Parser()(str(path), ObjectStoreRegistry())
    except ParserError as e:
        assert str(path) in str(e)  # noqa: PT017
        return
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 64 << 20, f"parsing a {len(data)}-byte file peaked at {peak >> 20} MiB"
    for name, arr in store.group.arrays.items():
        m = arr.manifest
        ends = m.offsets.astype(object) + m.lengths.astype(object)
        assert all(e <= len(data) for e in ends.ravel()), name


def test_huge_numrecs_is_refused_before_allocating(tmp_path: Path) -> None:
    """numrecs 0x7fffffff on a small file with a record variable: a named error, not 16 GiB."""
    header = (
        b"CDF\x01" + struct.pack(">I", 0x7FFFFFFF)
        + struct.pack(">II", 10, 1) + _name(1, b"t") + struct.pack(">I", 0)
        + bytes(8)
        + struct.pack(">II", 11, 1) + _name(1, b"v") + struct.pack(">II", 1, 0)
        + bytes(8) + struct.pack(">III", 6, 8, 80)
    )  # fmt: skip
    path = tmp_path / "f.nc"
    path.write_bytes(header.ljust(80, b"\0") + bytes(8 * 4))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFileError, match="beyond the end of the file") as info:
            NetCDF3Parser()(str(path), ObjectStoreRegistry())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert "'v'" in str(info.value)
    assert peak < 1 << 20


def test_huge_count_is_refused_without_reading_the_file(tmp_path: Path) -> None:
    """A variable count of 0x7fffffff is refused from the file's size, before any loop."""
    data = b"CDF\x01" + bytes(4) + bytes(8) + bytes(8) + struct.pack(">II", 11, 0x7FFFFFFF)
    path = tmp_path / "f.nc"
    path.write_bytes(data + bytes(1000))
    with pytest.raises(CorruptFileError, match="2147483647 variable entries"):
        NetCDF3Parser()(str(path), ObjectStoreRegistry())


# -- the harness over the real files ---------------------------------------------------------


def _layout(data: bytes) -> tuple[list[int], list[Field]]:
    """Offsets where header structures start, and every integer field of the header."""
    fields: list[Field] = []

    class Tracing(nc3._Cursor):
        def u4(self, what: str) -> int:
            fields.append(Field(self.pos, 4, name=what[:40]))
            return super().u4(what)

        def nonneg(self, what: str) -> int:
            if self.version == 5:
                fields.append(Field(self.pos, 8, name=what[:40]))
            return super().nonneg(what)

        def offset(self, what: str) -> int:
            if self.version != 1:
                fields.append(Field(self.pos, 8, name=what[:40]))
            return super().offset(what)

    saved = nc3._Cursor
    nc3._Cursor = Tracing  # type: ignore[misc]
    try:
        header = nc3.parse_header(data, "x")
    finally:
        nc3._Cursor = saved  # type: ignore[misc]
    # u4 inside nonneg/offset records the same position twice: keep one per offset
    unique = {f.offset: f for f in fields}
    begins = [v.begin for v in header.variables]
    bounds = sorted({f.offset for f in fields} | {header.size, *begins, len(data)})
    return bounds, list(unique.values())


@requires_real_data
def test_real_file_mutants(tmp_path: Path) -> None:
    """Seeded mutants of every real netCDF-3 file (its numrecs/count/length fields first)."""
    outcomes = []
    with Runner(tmp_path, timeout=30) as run:
        for i, rel in enumerate(real_files("netcdf3")):
            src = real_file(rel)
            data = src.read_bytes()
            bounds, fields = _layout(data)
            cases = file_mutants(
                data, seed=12 + i, n=fuzz_count(16), boundaries=bounds, fields=fields[:6]
            )
            if i == 0:
                cases += special_mutants()
            for o in run.many(src, cases, opener="open", parser="NetCDF3Parser"):
                o.mutant = f"{src.name}:{o.mutant}"
                outcomes.append(o)
    print(summarize(outcomes, "netcdf3: "))
    assert_no_bad(outcomes, "netcdf3: ")
