"""RemoteSource.read_many batches: how many requests are in flight at once, and how many
requests, bytes and round trips a remote HDF5 chunk index costs (a real loopback server)."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pytest

from virtualizarr.io import open_source
from virtualizarr.io import source as io_source

MiB = 1 << 20


class _Counting(http.server.BaseHTTPRequestHandler):
    """Ranged GETs of one in-memory file; each waits ``delay`` s, and the most requests
    being served at once is recorded (the server is threaded, one thread a connection)."""

    protocol_version = "HTTP/1.1"
    data = b""
    delay = 0.0
    lock = threading.Condition()
    gather = 0
    now = 0
    most = 0
    ranges: ClassVar[list[tuple[int, int]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        cls = type(self)
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        assert m is not None
        start, end = int(m.group(1)), min(int(m.group(2)), len(cls.data) - 1)
        with cls.lock:
            cls.now += 1
            cls.most = max(cls.most, cls.now)
            cls.ranges.append((start, end + 1))
            cls.lock.notify_all()
        try:
            if cls.gather:  # hold every request until ``gather`` are in (or 10 s pass)
                with cls.lock:
                    cls.lock.wait_for(lambda: cls.most >= cls.gather, timeout=10)
            time.sleep(cls.delay)
            body = cls.data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(cls.data)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", '"v1"')
            self.end_headers()
            self.wfile.write(body)
        finally:
            with cls.lock:
                cls.now -= 1


@pytest.fixture
def counting() -> Iterator[tuple[str, type[_Counting]]]:
    handler = type("Handler", (_Counting,), {"lock": threading.Condition(), "ranges": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.request_queue_size = 256
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/f.bin", handler
    finally:
        server.shutdown()
        server.server_close()


def _spread(n: int, step: int = 100_000, length: int = 100) -> list[tuple[int, int]]:
    """``n`` ranges ``step`` apart after the head (opened with ``merge_gap=0``: not merged)."""
    return [(2 * MiB + i * step, length) for i in range(n)]


def test_batch_in_flight_is_bounded_by_max_in_flight(
    counting: tuple[str, type[_Counting]],
) -> None:
    url, h = counting
    h.data = np.random.default_rng(0).integers(0, 256, 8 * MiB, dtype=np.uint8).tobytes()
    h.delay = 0.05
    ranges = _spread(40)
    with open_source(url, whole_below=0, merge_gap=0, max_in_flight=4) as src:
        h.most, h.gather = 0, 4  # the first four are held until all four are in
        assert src.read_many(ranges) == [h.data[o : o + n] for o, n in ranges]
        assert src.stats.requests == 1 + 40  # the head, then one request a range
        assert h.most == 4


def test_batch_in_flight_default_is_batch_in_flight(
    counting: tuple[str, type[_Counting]],
) -> None:
    """The default lets a batch have more requests in flight than a chunk read (64)."""
    url, h = counting
    h.data = np.random.default_rng(1).integers(0, 256, 12 * MiB, dtype=np.uint8).tobytes()
    ranges = _spread(96)
    with open_source(url, whole_below=0, merge_gap=0) as src:
        assert src.max_in_flight == io_source.BATCH_IN_FLIGHT >= 96
        h.most, h.gather = 0, 96  # the server answers once all 96 are in flight
        assert src.read_many(ranges) == [h.data[o : o + n] for o, n in ranges]
        assert src.stats.requests == 1 + 96
        assert h.most == 96 > io_source.MAX_IN_FLIGHT


def test_batch_error_is_raised_and_stops_the_batch(
    counting: tuple[str, type[_Counting]],
) -> None:
    url, h = counting
    h.data = bytes(8 * MiB)
    with open_source(url, whole_below=0, merge_gap=0, max_in_flight=2) as src:
        h.data = bytes(4 * MiB)  # the file shrinks: the next requests see another size
        from virtualizarr.errors import SourceChangedError

        with pytest.raises(SourceChangedError):
            src.read_many(_spread(5, step=1000))
        # the two workers stop at their first error: not every range was asked for
        assert len(h.ranges) <= 1 + 2


def test_max_in_flight_must_be_positive(counting: tuple[str, type[_Counting]]) -> None:
    url, h = counting
    h.data = bytes(100)
    with pytest.raises(ValueError, match="max_in_flight"):
        open_source(url, max_in_flight=0)


def test_bounded_runner_keeps_order_and_limit() -> None:
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def fn(a: int, b: int) -> int:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.002)
        with lock:
            state["now"] -= 1
        return a * b

    items = [[i, 2] for i in range(50)]
    assert io_source._run_bounded(fn, items, 3) == [2 * i for i in range(50)]
    assert 1 <= state["most"] <= 3
    assert io_source._run_bounded(fn, [[5, 5]], 10) == [25]
