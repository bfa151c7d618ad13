"""virtualizarr.io.open_source: requests and bytes counted on real loopback servers (HTTP, moto S3)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from tests.conftest import HTTPServer, S3Server
from virtualizarr.errors import SourceChangedError, UnknownFormatError
from virtualizarr.io import (
    HEAD_BYTES,
    MERGE_GAP,
    LocalSource,
    RemoteSource,
    SourceRecord,
    coalesce,
    open_source,
    total_stats,
)
from virtualizarr.io.source import READ_BEHIND
from virtualizarr.registry import ObjectStoreRegistry

MiB = 1 << 20


def payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def gets(server: HTTPServer, path: Path) -> list[str | None]:
    """The Range headers of the GETs of ``path`` so far (None: whole object)."""
    name = "/" + path.relative_to(server.root).as_posix()
    return [r for m, p, r in server.requests if m == "GET" and p == name]


def heads(server: HTTPServer, path: Path) -> int:
    name = "/" + path.relative_to(server.root).as_posix()
    return sum(1 for m, p, _ in server.requests if m == "HEAD" and p == name)


def test_first_request_brings_head_and_size(http_server: HTTPServer) -> None:
    data = payload(3 * MiB)
    path = http_server.mkdir() / "a.bin"
    path.write_bytes(data)
    src = open_source(http_server.url_for(path))
    assert isinstance(src, RemoteSource)
    assert src.size == len(data)
    assert gets(http_server, path) == [f"bytes=0-{HEAD_BYTES - 1}"]
    assert heads(http_server, path) == 0  # size from the ranged GET's Content-Range
    assert src.head == data[:HEAD_BYTES]
    assert src.read(100, 50) == data[100:150]
    assert src.stats.requests == 1
    assert src.stats.bytes == HEAD_BYTES
    # a file below WHOLE_BELOW comes whole at its first miss: then never again
    assert src.read(2 * MiB, 10) == data[2 * MiB : 2 * MiB + 10]
    assert src.read_many([(0, 5), (3 * MiB - 5, 100), (1234567, 89)]) == [
        data[:5],
        data[-5:],
        data[1234567 : 1234567 + 89],
    ]
    assert len(gets(http_server, path)) == 2
    assert src.stats.requests == 2
    assert src.stats.bytes == len(data)
    f = src.as_file()
    f.seek(-10, 2)
    assert f.read() == data[-10:]
    assert src.stats.requests == 2


def test_small_file_comes_whole_in_one_request(http_server: HTTPServer) -> None:
    data = payload(5000)
    path = http_server.mkdir() / "tiny.bin"
    path.write_bytes(data)
    before = total_stats()
    with open_source(http_server.url_for(path)) as src:
        assert src.size == 5000
        assert src.head == data
        assert src.read(4990, 100) == data[4990:]  # short at the end
        assert src.read(6000, 10) == b""
        assert src.read_many([(10, 10), (4000, 1000)]) == [data[10:20], data[4000:]]
    assert len(gets(http_server, path)) == 1
    assert (total_stats() - before).requests == 1
    assert (total_stats() - before).bytes == 5000


def test_empty_file(http_server: HTTPServer) -> None:
    path = http_server.mkdir() / "empty.bin"
    path.write_bytes(b"")
    src = open_source(http_server.url_for(path))
    assert src.size == 0
    assert src.head == b""
    assert src.read(0, 10) == b""


def test_large_file_read_ahead_and_batches(http_server: HTTPServer) -> None:
    data = payload(12 * MiB, seed=1)
    path = http_server.mkdir() / "big.bin"
    path.write_bytes(data)
    src = open_source(http_server.url_for(path), merge_gap=MiB, read_ahead=MiB, whole_below=0)
    assert src.read(2 * MiB, 100) == data[2 * MiB : 2 * MiB + 100]
    # the miss fetched the 100 bytes, a bounded read-ahead and a little before, no more
    assert gets(http_server, path)[1] == f"bytes={2 * MiB - READ_BEHIND}-{3 * MiB - 1}"
    assert src.read(2 * MiB + 5000, 10) == data[2 * MiB + 5000 : 2 * MiB + 5010]
    assert len(gets(http_server, path)) == 2
    ranges = [(5 * MiB, 10), (5 * MiB + 500_000, 10), (9 * MiB, 10), (11 * MiB, 4)]
    assert src.read_many(ranges) == [data[o : o + n] for o, n in ranges]
    got = sorted(gets(http_server, path)[2:])
    # the two ranges 0.5 MB apart merged; the others alone; all three fetched together
    assert got == sorted(
        [
            f"bytes={5 * MiB}-{5 * MiB + 500_009}",
            f"bytes={9 * MiB}-{9 * MiB + 9}",
            f"bytes={11 * MiB}-{11 * MiB + 3}",
        ]
    )
    # everything asked again: nothing fetched twice
    assert src.read_many(ranges) == [data[o : o + n] for o, n in ranges]
    assert len(gets(http_server, path)) == 5
    assert src.stats.requests == 5
    assert src.stats.bytes == MiB + MiB + READ_BEHIND + 500_010 + 10 + 4


def test_a_merge_never_refetches_cached_bytes(http_server: HTTPServer) -> None:
    data = payload(12 * MiB, seed=2)
    path = http_server.mkdir() / "gap.bin"
    path.write_bytes(data)
    src = open_source(http_server.url_for(path), read_ahead=0, whole_below=0)
    src.read(2 * MiB + 100, 100)  # cached in the middle of the next batch
    ranges = [(2 * MiB, 50), (2 * MiB + 300, 50)]
    assert src.read_many(ranges) == [data[o : o + n] for o, n in ranges]
    assert sorted(gets(http_server, path)[2:]) == sorted(
        [f"bytes={2 * MiB}-{2 * MiB + 49}", f"bytes={2 * MiB + 300}-{2 * MiB + 349}"]
    )
    assert src.stats.bytes == HEAD_BYTES + 100 + 50 + 50


def test_missing_paths_raise_file_not_found(http_server: HTTPServer, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere"):
        open_source(f"{http_server.url}/nothere.nc")
    with pytest.raises(FileNotFoundError, match="nothere"):
        open_source(str(tmp_path / "nothere.nc"))
    with pytest.raises(FileNotFoundError, match="directory"):
        open_source(str(tmp_path))


def test_detection_of_a_missing_path_says_file_not_found(tmp_path: Path) -> None:
    from virtualizarr import open_virtual_dataset
    from virtualizarr.parsers import detect_parser

    registry = ObjectStoreRegistry()
    with pytest.raises(FileNotFoundError, match="nothere"):
        detect_parser(str(tmp_path / "nothere.nc"), registry)
    with pytest.raises(FileNotFoundError, match="nothere"):
        open_virtual_dataset(str(tmp_path / "nothere.nc"))
    (tmp_path / "junk.bin").write_bytes(b"not a known format")
    with pytest.raises(UnknownFormatError, match="junk"):
        detect_parser(str(tmp_path / "junk.bin"), registry)
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(UnknownFormatError, match="directory"):
        detect_parser(str(tmp_path / "emptydir"), registry)


def test_local_source(tmp_path: Path) -> None:
    data = payload(100_000, seed=3)
    path = tmp_path / "l.bin"
    path.write_bytes(data)
    with open_source(str(path)) as src:
        assert isinstance(src, LocalSource)
        assert src.size == len(data)
        assert src.read(99_990, 100) == data[99_990:]
        assert src.read_many([(0, 3), (50, 5)]) == [data[:3], data[50:55]]
        f = src.as_file()
        buf = bytearray(10)
        f.seek(20)
        assert f.readinto(buf) == 10
        assert bytes(buf) == data[20:30]
        rec = src.record()
        assert rec == SourceRecord(src.url, len(data), src.etag)


def test_local_source_reads_the_head_once_and_joins_near_ranges(tmp_path: Path) -> None:
    """Reads inside the head come from it, and a batch's ranges a few KiB apart share a
    ``pread``: each syscall releases the GIL, which threads parsing at once pay for."""
    data = payload(300_000, seed=5)
    path = tmp_path / "h.bin"
    path.write_bytes(data)
    with open_source(str(path)) as src:
        head = src.head
        before = src.stats.requests
        assert src.read(10, 100) == data[10:110]
        assert src.read_many([(0, 8), (len(head) - 4, 4)]) == [data[:8], head[-4:]]
        assert src.stats.requests == before  # all within the head
        far = len(head) + 50_000
        ranges = [(far + 3000, 100), (far, 100), (far + 150_000, 10), (far + 150, 7), (5, 5)]
        got = src.read_many(ranges)
        assert got == [data[o : o + n] for o, n in ranges]
        # far..far+3100 in one pread, the range 150 kB on in another, (5, 5) from the head
        assert src.stats.requests == before + 2
        # past the end: clipped, as read() clips
        assert src.read_many([(len(data) - 2, 10), (len(data) + 5, 3)]) == [data[-2:], b""]


def test_s3_counts_and_etag_change(s3_server: S3Server) -> None:
    bucket = s3_server.make_bucket()
    data = payload(12 * MiB, seed=4)
    url = s3_server.put(bucket, "dir/big.bin", data)
    registry = ObjectStoreRegistry({f"s3://{bucket}": s3_server.store(bucket)})
    src = open_source(url, registry, whole_below=0)
    assert src.size == len(data)
    assert src.etag
    assert src.stats.requests == 1
    assert src.read_many([(4 * MiB, 10), (8 * MiB, 10)]) == [
        data[4 * MiB : 4 * MiB + 10],
        data[8 * MiB : 8 * MiB + 10],
    ]
    assert src.stats.requests == 3
    assert src.stats.bytes == HEAD_BYTES + 20
    # the object is replaced by another of the same size: the next request says so
    s3_server.put(bucket, "dir/big.bin", payload(12 * MiB, seed=5))
    with pytest.raises(SourceChangedError, match=r"big\.bin"):
        src.read(10 * MiB, 10)
    assert src.read(4 * MiB, 10) == data[4 * MiB : 4 * MiB + 10]  # cached bytes still served


def test_s3_missing_object(s3_server: S3Server) -> None:
    bucket = s3_server.make_bucket()
    registry = ObjectStoreRegistry({f"s3://{bucket}": s3_server.store(bucket)})
    with pytest.raises(FileNotFoundError, match=r"missing\.nc"):
        open_source(f"s3://{bucket}/missing.nc", registry)


def test_size_change_between_requests_over_http(http_server: HTTPServer) -> None:
    path = http_server.mkdir() / "grows.bin"
    path.write_bytes(payload(10 * MiB))
    src = open_source(http_server.url_for(path), read_ahead=0, whole_below=0)
    with path.open("ab") as f:
        f.write(b"more")
    with pytest.raises(SourceChangedError, match=r"grows\.bin"):
        src.read(5 * MiB, 10)


# -- transient failures: a real loopback server that fails the first requests ----------------


class _Flaky(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    data = b""
    plan: ClassVar[list[str]] = []  # what to do for the next requests: "503", "reset", then serve
    seen: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        action = self.plan.pop(0) if self.plan else "ok"
        self.seen.append(action)
        if action == "503":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        rng = self.headers.get("Range", "")
        a, _, b = rng.removeprefix("bytes=").partition("-")
        start, end = int(a), min(int(b), len(self.data) - 1)
        body = self.data[start : end + 1]
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(self.data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if action == "reset":  # headers, half the body, then the connection drops
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            import socket

            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Flaky", (_Flaky,), {"data": payload(20_000, seed=6), "plan": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/f.bin", handler
    finally:
        server.shutdown()
        server.server_close()


def test_transient_failures_are_retried(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.plan[:] = ["503", "reset"]
    src = open_source(url)
    assert src.head == handler.data
    assert handler.seen == ["503", "reset", "ok"]


def test_coalesce() -> None:
    gs, ge, of = coalesce([100, 0, 5000, 50, 5000], [10, 60, 10, 5, 10], gap=1000)
    assert gs.tolist() == [0, 5000]
    assert ge.tolist() == [110, 5010]
    assert of.tolist() == [0, 0, 1, 0, 1]
    gs, ge, of = coalesce([], [], gap=10)
    assert gs.size == 0


def test_tiny_netcdf4_is_detected_and_parsed_with_one_request(http_server: HTTPServer) -> None:
    h5py = pytest.importorskip("h5py")
    from virtualizarr import open_virtual_dataset

    path = http_server.mkdir() / "tiny.nc"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(100, dtype="i4"), chunks=(10,))
        f.create_dataset("y", data=np.linspace(0, 1, 50), chunks=(25,), compression="gzip")
    ds = open_virtual_dataset(http_server.url_for(path), loadable_variables=[])
    assert set(ds.variables) == {"x", "y"}
    # detection's first request brought the whole (small) file; the parser reused it
    assert gets(http_server, path) == [f"bytes=0-{HEAD_BYTES - 1}"]
    assert heads(http_server, path) == 0


def test_cli_info_stats(http_server: HTTPServer, capsys: pytest.CaptureFixture[str]) -> None:
    h5py = pytest.importorskip("h5py")
    from virtualizarr.cli import main

    path = http_server.mkdir() / "cli.nc"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(100, dtype="i4"), chunks=(10,))
    assert main(["info", "--stats", http_server.url_for(path)]) == 0
    out = capsys.readouterr().out
    size = path.stat().st_size
    assert f"with 1 requests, {size} bytes fetched" in out
    assert len(gets(http_server, path)) == 1


def test_coordinates_load_from_the_bytes_parsing_fetched(http_server: HTTPServer) -> None:
    pytest.importorskip("h5netcdf")
    import xarray as xr

    from virtualizarr import open_virtual_dataset

    path = http_server.mkdir() / "coords.nc"
    x = np.arange(50, dtype="f8")
    xr.Dataset({"v": (("x",), np.sin(x))}, coords={"x": x}).to_netcdf(path, engine="h5netcdf")
    ds = open_virtual_dataset(http_server.url_for(path))  # loads the coordinate x
    np.testing.assert_array_equal(ds["x"].values, x)
    assert gets(http_server, path) == [f"bytes=0-{HEAD_BYTES - 1}"]


def test_merging_stays_within_a_byte_budget(http_server: HTTPServer) -> None:
    data = payload(12 * MiB, seed=7)
    path = http_server.mkdir() / "spread.bin"
    path.write_bytes(data)
    src = open_source(http_server.url_for(path), whole_below=0)
    # metadata-like: 200 small ranges spread 40 KB apart over 8 MB of "data"
    ranges = [(2 * MiB + i * 40_000, 100) for i in range(200)]
    assert src.read_many(ranges) == [data[o : o + n] for o, n in ranges]
    wanted = 200 * 100
    fetched = src.stats.bytes - HEAD_BYTES
    # joins cost at most max(wanted, MERGE_GAP) bytes more than wanted: not the 8 MB between
    assert wanted <= fetched <= wanted + max(wanted, MERGE_GAP)
    assert 1 < src.stats.requests - 1 < 200
    # ranges a few bytes apart always travel together
    close = [(11 * MiB + i * 1000, 10) for i in range(50)]
    before = src.stats.requests
    assert src.read_many(close) == [data[o : o + n] for o, n in close]
    assert src.stats.requests == before + 1
