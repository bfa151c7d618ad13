"""GRIB: corrupt input ends in named errors or warnings, remote scans count their requests,
index sidecars give the offsets, and the key cache changes nothing."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from tests.conftest import real_files
from virtualizarr.errors import ChunkReadError, CorruptFileError, VariableSkippedWarning
from virtualizarr.parsers import GRIBParser
from virtualizarr.parsers.grib import parser as grib_parser
from virtualizarr.parsers.grib import scan
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.testing.ground_truth import real_file

eccodes = pytest.importorskip("eccodes")


def message(sample: str = "regular_ll_sfc_grib2", seed: int = 0, **keys: Any) -> bytes:
    h = eccodes.codes_grib_new_from_samples(sample)
    try:
        for k, v in keys.items():
            eccodes.codes_set(h, k, v)
        n = eccodes.codes_get(h, "numberOfDataPoints")
        eccodes.codes_set(h, "bitsPerValue", 16)
        eccodes.codes_set_values(h, 250 + np.random.default_rng(seed).random(n))
        return eccodes.codes_get_message(h)
    finally:
        eccodes.codes_release(h)


def section_offset(msg: bytes, number: int) -> int:
    pos = 16
    while msg[pos + 4] != number:
        pos += int.from_bytes(msg[pos : pos + 4], "big")
    return pos


def patched(msg: bytes, offset: int, value: bytes) -> bytes:
    buf = bytearray(msg)
    buf[offset : offset + len(value)] = value
    return bytes(buf)


def parse(path: Path) -> Any:
    return GRIBParser()(str(path), ObjectStoreRegistry())


# -- corrupt headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("what", "edit", "match"),
    [
        ("numberOfDataPoints", (3, 6, (1 << 31).to_bytes(4, "big")), "data points"),
        ("numberOfDataPoints zero", (3, 6, bytes(4)), "0 data points"),
        ("numberOfValues", (5, 5, (0x40000000).to_bytes(4, "big")), "codes 1073741824 values"),
        ("bitsPerValue", (5, 19, b"\xff"), "bits per value"),
        ("section length", (4, 0, (1 << 20).to_bytes(4, "big")), "section 4 .* has length"),
        ("section order", (4, 4, b"\x06"), "cannot follow section 3"),
        ("Ni zero", (3, 30, bytes(4)), "Ni=0"),
        ("Nj huge", (3, 34, (0xFFFFFFFF).to_bytes(4, "big")), "Nj="),
    ],
)
def test_grib2_corrupt_header_fields_are_named_errors(
    tmp_path: Path, what: str, edit: tuple[int, int, bytes], match: str
) -> None:
    msg = message()
    num, off, value = edit
    path = tmp_path / "bad.grib2"
    path.write_bytes(patched(msg, section_offset(msg, num) + off, value))
    with pytest.raises(CorruptFileError, match=rf"bad\.grib2.*message 0 at byte offset 0.*{match}"):
        parse(path)


@pytest.mark.parametrize(
    ("where", "value", "match"),
    [
        ("gds", b"\x7f\xff\xff", "grid description section"),
        ("gds", b"\x00\x00\x01", "grid description section"),
        ("pds", b"\xff\xff\xff", "product definition section"),
        ("bds_bpv", b"\xff", "bits per value"),
    ],
)
def test_grib1_corrupt_sections_are_named_errors(
    tmp_path: Path, where: str, value: bytes, match: str
) -> None:
    msg = message("regular_ll_pl_grib1")
    pds = int.from_bytes(msg[8:11], "big")
    gds = int.from_bytes(msg[8 + pds : 11 + pds], "big")
    off = {"pds": 8, "gds": 8 + pds, "bds_bpv": 8 + pds + gds + 10}[where]
    path = tmp_path / "bad.grib1"
    path.write_bytes(patched(msg, off, value))
    with pytest.raises(CorruptFileError, match=rf"bad\.grib1.*message 0 .*{match}"):
        parse(path)


def test_grid_larger_than_its_values_is_refused_before_coordinates(tmp_path: Path) -> None:
    """GRIB1 Ni made 1024 (1024 x Nj points, data for 496): refused, nothing allocated for it."""
    msg = message("regular_ll_pl_grib1")
    pds = int.from_bytes(msg[8:11], "big")
    path = tmp_path / "wide.grib1"
    path.write_bytes(patched(msg, 8 + pds + 6, b"\x04\x00"))
    with pytest.raises(
        CorruptFileError, match=r"wide\.grib1.*message 0 .*(values of 16 bits for|Ni=)"
    ):
        parse(path)


def test_value_count_without_bitmap_must_cover_the_grid(tmp_path: Path) -> None:
    msg = message()
    path = tmp_path / "short.grib2"
    path.write_bytes(patched(msg, section_offset(msg, 5) + 5, (100).to_bytes(4, "big")))
    with pytest.raises(
        CorruptFileError, match=r"short\.grib2.*100 values on a grid of 496 points without a bitmap"
    ):
        parse(path)


@pytest.mark.parametrize(
    "index", [0, 1]
)  # the first message reads its keys, the second hits the cache
def test_impossible_date_is_a_named_error(tmp_path: Path, index: int) -> None:
    msgs = [message("regular_ll_pl_grib1", seed=i, dataDate=20240101 + i) for i in range(2)]
    bad = bytearray(msgs[index])
    bad[8 + 13] = 13  # month 13 (PDS octet 14)
    msgs[index] = bytes(bad)
    path = tmp_path / "date.grib1"
    path.write_bytes(b"".join(msgs))
    with pytest.raises(CorruptFileError, match=rf"date\.grib1.*message {index} "):
        parse(path)


def test_zeroed_message_header_warns_instead_of_dropping_silently(tmp_path: Path) -> None:
    a, b, c = message(seed=1), message(seed=2), message(seed=3)
    path = tmp_path / "zeroed.grib2"
    path.write_bytes(a + patched(b, 0, bytes(16)) + c)  # b's indicator section zeroed
    with pytest.warns(
        VariableSkippedWarning, match=rf"zeroed\.grib2: bytes {len(a)}-{len(a) + len(b)}"
    ):
        store = parse(path)
    offsets = {int(o) for g in store.group.groups.values() for arr in g.arrays.values()
               if "GRIB_paramId" in arr.metadata.attributes for o in arr.manifest.offsets.ravel()}  # fmt: skip
    assert len(a) + len(b) in offsets


def test_short_zero_padding_and_wmo_headings_are_silent(tmp_path: Path) -> None:
    a, b = message(seed=1), message(seed=2)
    heading = b"\x01\r\r\n123\r\r\nHTXA50 KWBC 281200\r\r\n"
    path = tmp_path / "padded.grib2"
    path.write_bytes(heading + a + bytes(-len(a) % 120) + b + b"\r\r\n\x03" + bytes(7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse(path)


def test_undecodable_data_is_a_chunk_read_error(tmp_path: Path) -> None:
    """ecCodes' own errors while decoding values become ChunkReadError (the headers are fine)."""
    msg = message(packingType="grid_jpeg")
    s7 = section_offset(msg, 7)
    n7 = int.from_bytes(msg[s7 : s7 + 4], "big")
    path = tmp_path / "garbled.grib2"
    path.write_bytes(patched(msg, s7 + 5, b"\xff" * (n7 - 5)))  # the JPEG 2000 stream garbled
    store = parse(path)  # parsing never reads the data section
    with pytest.raises(ChunkReadError, match=r"ecCodes cannot decode the GRIB2 message chunk"):
        zarr.open_array(store, path="surface_instant/t", mode="r")[...]


def test_codec_checks_structure_before_ecCodes() -> None:
    from virtualizarr.codecs.grib import decode_message

    msg = message(packingType="grid_complex")
    s5 = section_offset(msg, 5)
    for bad in (
        patched(msg, s5 + 19, b"\xff"),
        patched(msg, s5 + 5, (1 << 30).to_bytes(4, "big")),
        msg[:-9],
    ):
        with pytest.raises(ChunkReadError, match="cannot be decoded"):
            decode_message(bad)


# -- the key cache -----------------------------------------------------------------------------


@pytest.mark.parametrize("rel", real_files("grib"))
def test_key_cache_gives_the_keys_ecCodes_gives(rel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(real_file(rel))
    msgs = scan.scan_messages("file://" + path, ObjectStoreRegistry())[:40]
    cache = grib_parser._KeyCache()
    cached = [grib_parser._message_keys(path, ObjectStoreRegistry(), m, cache) for m in msgs]
    fresh = [
        grib_parser._read_keys(path, ObjectStoreRegistry(), m, grib_parser._KeyCache())
        for m in msgs
    ]
    assert cached == fresh


# -- remote: requests and bytes ------------------------------------------------------------------


def _registry(http_server: Any) -> ObjectStoreRegistry:
    from obstore.store import HTTPStore

    store = HTTPStore.from_url(http_server.url, client_options={"allow_http": True})
    return ObjectStoreRegistry({http_server.url: store})


def _gets(http_server: Any, since: int) -> list[tuple[str, str, str | None]]:
    return [r for r in http_server.requests[since:] if r[0] in ("GET", "HEAD")]


@pytest.mark.parametrize("rel", real_files("grib"))
def test_remote_small_files_in_at_most_two_requests(rel: str, http_server: Any) -> None:
    src = real_file(rel)
    d = http_server.mkdir()
    (d / src.name).write_bytes(src.read_bytes())
    n = len(http_server.requests)
    GRIBParser()(http_server.url_for(d / src.name), _registry(http_server))
    reqs = _gets(http_server, n)
    assert len(reqs) <= 2, reqs  # the 1 MiB head, then the rest of a file below 8 MiB
    size = src.stat().st_size
    assert _bytes(reqs, src.name, size) <= size  # issue 10's budget is 1.1 x size + 64 KiB


def _big_messages(n: int) -> list[bytes]:
    """``n`` messages of about 1 MB (250,000 points of 32 bits), one per day."""
    grid = {
        "Ni": 500,
        "Nj": 500,
        "latitudeOfFirstGridPointInDegrees": 50.0,
        "latitudeOfLastGridPointInDegrees": 0.1,
        "longitudeOfFirstGridPointInDegrees": 0.0,
        "longitudeOfLastGridPointInDegrees": 49.9,
        "iDirectionIncrementInDegrees": 0.1,
        "jDirectionIncrementInDegrees": 0.1,
    }
    out = []
    for i in range(n):
        h = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
        try:
            for k, v in grid.items():
                eccodes.codes_set(h, k, v)
            eccodes.codes_set(h, "dataDate", 20240101 + i)
            eccodes.codes_set(h, "bitsPerValue", 32)
            eccodes.codes_set_values(h, np.random.default_rng(i).random(250_000))
            out.append(eccodes.codes_get_message(h))
        finally:
            eccodes.codes_release(h)
    return out


def _bytes(reqs: list[tuple[str, str, str | None]], path: str, size: int) -> int:
    """Bytes asked of ``path`` (ranges clipped to its ``size``)."""
    total = 0
    for _, p, rng in reqs:
        if rng and p.endswith(path):
            a, b = rng.split("=")[1].split("-")
            total += min(int(b) + 1, size) - int(a)
    return total


def test_remote_scan_of_large_messages_skips_their_data(
    http_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files of large messages: a small window at each message start, headers in one batch."""
    monkeypatch.setattr(scan, "WHOLE_BELOW", 0)
    monkeypatch.setattr(scan, "INDEX_ABOVE", 1 << 40)
    monkeypatch.setattr(scan, "_block_size", lambda *a: scan.SPARSE_WINDOW // 64)
    msgs = _big_messages(4)
    d = http_server.mkdir()
    (d / "f.grib2").write_bytes(b"".join(msgs))
    n = len(http_server.requests)
    store = GRIBParser()(http_server.url_for(d / "f.grib2"), _registry(http_server))
    reqs = _gets(http_server, n)
    # the 1 MiB head holds the first message; then a small window at each other message start
    # (sequential: each start comes from the previous length), then the end markers and
    # headers in one batch (neighbouring ranges merged by the IO layer); no byte twice
    size = sum(len(m) for m in msgs)
    assert len(reqs) <= 1 + 3 + 2 * 4, reqs  # head, 3 message starts, then one batch
    assert _bytes(reqs, "f.grib2", size) <= size
    t = zarr.open_array(store, path="surface_instant/t", mode="r")
    assert t.shape == (4, 500, 500)
    np.testing.assert_array_equal(t[3], reference_values(msgs[3]).reshape(500, 500))


def reference_values(msg: bytes) -> np.ndarray:
    h = eccodes.codes_new_from_message(msg)
    try:
        return eccodes.codes_get_values(h)
    finally:
        eccodes.codes_release(h)


def test_wgrib2_idx_sidecar_gives_the_offsets(
    http_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "INDEX_ABOVE", 0)
    monkeypatch.setattr(scan, "WHOLE_BELOW", 0)
    from virtualizarr.io import remote

    monkeypatch.setattr(remote, "HEAD_BYTES", 64)
    msgs = _big_messages(4)
    d = http_server.mkdir()
    (d / "g.grib2").write_bytes(b"".join(msgs))
    offs = np.cumsum([0] + [len(m) for m in msgs[:-1]])
    (d / "g.grib2.idx").write_text(
        "".join(f"{i + 1}:{o}:d=2024010100:TMP:surface:anl:\n" for i, o in enumerate(offs))
    )
    n = len(http_server.requests)
    store = GRIBParser()(http_server.url_for(d / "g.grib2"), _registry(http_server))
    reqs = _gets(http_server, n)
    paths = [r[1] for r in reqs]
    assert any(p.endswith(".idx") for p in paths)
    # the head, the sidecar, then the message starts and the end markers in one batch (one
    # request each, concurrent), never a walk from message to message; data never fetched
    assert len(reqs) <= 2 + 2 * len(msgs), reqs
    size = sum(len(m) for m in msgs)
    assert _bytes(reqs, "g.grib2", size) <= size
    t = zarr.open_array(store, path="surface_instant/t", mode="r")[...]
    assert t.shape[0] == len(msgs)


def test_ecmwf_index_sidecar_gives_the_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from obstore.store import LocalStore

    monkeypatch.setattr(scan, "INDEX_ABOVE", 0)
    msgs = [message(seed=i, dataDate=20240101 + i) for i in range(3)]
    (tmp_path / "e.grib2").write_bytes(b"".join(msgs))
    offs = np.cumsum([0] + [len(m) for m in msgs[:-1]])
    lines = [
        json.dumps({"param": "2t", "_offset": int(o), "_length": len(m)})
        for o, m in zip(offs, msgs)
    ]
    (tmp_path / "e.grib2.index").write_text("\n".join(lines) + "\n")
    registry = ObjectStoreRegistry({"mem://b": LocalStore(str(tmp_path))})
    calls = []
    real = scan._locate
    monkeypatch.setattr(scan, "_locate", lambda *a: calls.append(a) or real(*a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = GRIBParser()("mem://b/e.grib2", registry)
    assert not calls  # the offsets came from the index, the file was not walked
    t = zarr.open_array(store, path="surface_instant/t", mode="r")[...]
    for i, m in enumerate(msgs):
        np.testing.assert_array_equal(t[i].ravel(), reference_values(m))


def test_stale_idx_sidecar_is_ignored_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from obstore.store import LocalStore

    monkeypatch.setattr(scan, "INDEX_ABOVE", 0)
    msgs = _big_messages(3)[:3]
    (tmp_path / "h.grib2").write_bytes(b"".join(msgs))
    registry = ObjectStoreRegistry({"mem://b": LocalStore(str(tmp_path))})
    m1 = len(msgs[0])
    for idx in ("1:0:x\n2:17:x\n", f"1:0:x\n2:{m1}:x\n"):  # no message at 17; the third unlisted
        (tmp_path / "h.grib2.idx").write_text(idx)
        with pytest.warns(VariableSkippedWarning, match="sidecar does not match"):
            store = GRIBParser()("mem://b/h.grib2", registry)
        assert zarr.open_array(store, path="surface_instant/t", mode="r").shape[0] == 3


def test_files_on_one_grid_share_their_coordinates(tmp_path: Path) -> None:
    """Coordinates are computed once per grid per process; a second file reuses them, exactly."""
    a = message("polar_stereographic_pl_grib2", seed=1)
    b = message("polar_stereographic_pl_grib2", seed=2, dataDate=20240102)
    (tmp_path / "a.grib2").write_bytes(a)
    (tmp_path / "b.grib2").write_bytes(b)
    sa, sb = parse(tmp_path / "a.grib2"), parse(tmp_path / "b.grib2")
    (ga,), (gb,) = sa.group.groups.values(), sb.group.groups.values()
    assert gb.arrays["latitude"] is ga.arrays["latitude"]
    h = eccodes.codes_new_from_message(b)
    lat = eccodes.codes_get_array(h, "latitudes")
    eccodes.codes_release(h)
    name = next(iter(sb.group.groups))
    got = zarr.open_array(sb, path=f"{name}/latitude", mode="r")[...]
    np.testing.assert_array_equal(got.ravel(), lat)
