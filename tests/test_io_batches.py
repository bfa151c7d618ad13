"""RemoteSource.read_many batches: how many requests are in flight at once, and how many
requests, bytes and round trips a remote HDF5 chunk index costs (a real loopback server)."""

from __future__ import annotations

import http.server
import itertools
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from tests.conftest import HTTPServer
from virtualizarr.io import open_source
from virtualizarr.io import remote as io_remote
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


# -- a tree fetched in one batch: each node's children asked for as soon as it arrives ------


def _tree_file(fanout: int, levels: int, spacing: int) -> tuple[bytes, list[list[int]]]:
    """A file of nodes: 8-byte level, 8-byte child count, the children's offsets (uint64);
    nodes ``spacing`` bytes apart, level by level. Returns the bytes and each level's nodes."""
    tiers: list[list[int]] = [[0]]
    for _ in range(levels - 1):
        tiers.append([0] * (len(tiers[-1]) * fanout))
    pos = 2 * MiB
    for tier in tiers:
        for i in range(len(tier)):
            tier[i] = pos
            pos += spacing
    data = bytearray(pos + spacing)
    for depth, tier in enumerate(tiers[:-1]):
        for i, node in enumerate(tier):
            kids = tiers[depth + 1][i * fanout : (i + 1) * fanout]
            head = np.array([levels - 1 - depth, len(kids), *kids], np.uint64).tobytes()
            data[node : node + len(head)] = head
    return bytes(data), tiers


def _children(node_bytes: int) -> io_source.Expand:
    def expand(offset: int, data: bytes) -> list[tuple[int, int]]:
        level, n = np.frombuffer(data[:16], np.uint64)
        if level == 0:
            return []
        kids = np.frombuffer(data, np.uint64, count=int(n), offset=16)
        return [(int(k), node_bytes) for k in kids]

    return expand


def test_read_many_expand_fetches_a_tree_in_one_batch(
    counting: tuple[str, type[_Counting]],
) -> None:
    url, h = counting
    h.data, tiers = _tree_file(fanout=4, levels=3, spacing=100_000)
    with open_source(url, whole_below=0, merge_gap=0) as src:
        assert src.expands
        before = src.stats.requests
        [root] = src.read_many([(tiers[0][0], 64)], expand=_children(64))
        assert np.frombuffer(root[:16], np.uint64).tolist() == [2, 4]
        # every node below the root came with it, one request each, no byte twice
        nodes = sum(len(t) for t in tiers)
        assert src.stats.requests - before == nodes
        assert sorted(h.ranges[1:]) == sorted((a, a + 64) for t in tiers for a in t)
        # reading the levels now costs nothing
        for tier in tiers[1:]:
            assert src.read_many([(a, 64) for a in tier]) == [h.data[a : a + 64] for a in tier]
        assert src.stats.requests - before == nodes


def test_read_many_expand_does_not_wait_for_the_whole_level(
    counting: tuple[str, type[_Counting]],
) -> None:
    """The server answers the second node of level 1 only once a child of the first was
    asked for: a reader that waited for the whole level before the next would hang."""
    url, h = counting
    h.data, tiers = _tree_file(fanout=2, levels=3, spacing=100_000)
    slow, child_of_fast = tiers[1][1], tiers[2][0]
    released = threading.Event()
    original = _Counting.do_GET

    def do_get(self: _Counting) -> None:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        start = int(m.group(1)) if m else -1
        if start == child_of_fast:
            released.set()
        if start == slow:
            released.wait(timeout=10)
        original(self)

    h.do_GET = do_get  # type: ignore[method-assign]
    with open_source(url, whole_below=0, merge_gap=0) as src:
        t0 = time.perf_counter()
        src.read_many([(tiers[0][0], 64)], expand=_children(64))
        assert released.is_set()
        assert time.perf_counter() - t0 < 5
        assert src.stats.requests == 1 + 7


def test_read_many_expand_merges_within_the_batch_budget(
    counting: tuple[str, type[_Counting]],
) -> None:
    """Children close together are joined, but the joins of the whole tree cost at most
    ``max(wanted, merge_gap)`` bytes, like one batch (not that much per node)."""
    url, h = counting
    h.data, tiers = _tree_file(fanout=16, levels=3, spacing=20_000)
    with open_source(url, whole_below=0, merge_gap=64 << 10) as src:
        src.read_many([(tiers[0][0], 2096)], expand=_children(2096))
        nodes = sum(len(t) for t in tiers)
        wanted = nodes * 2096
        fetched = src.stats.bytes - io_source.HEAD_BYTES
        assert wanted <= fetched <= wanted + max(wanted, 64 << 10)
        assert src.stats.requests - 1 < nodes  # some joined
        # no byte twice
        got = sorted(h.ranges[1:])
        assert all(b <= c for (_, b), (c, _) in itertools.pairwise(got))


def test_local_source_ignores_expand(tmp_path: Path) -> None:
    data, tiers = _tree_file(fanout=2, levels=2, spacing=1000)
    path = tmp_path / "tree.bin"
    path.write_bytes(data)
    calls: list[int] = []

    def expand(offset: int, chunk: bytes) -> list[tuple[int, int]]:
        calls.append(offset)
        return []

    with open_source(str(path)) as src:
        assert not src.expands
        assert src.read_many([(tiers[0][0], 64)], expand=expand) == [data[tiers[0][0] :][:64]]
    assert calls == []


# -- a remote HDF5 chunk index: the whole v1 B-tree in one batch after the head ----------------


def _btree_levels(path: Path) -> list[list[tuple[int, int]]]:
    """The ranges our reader reads to walk the dataset ``v``'s v1 B-tree, level by level
    (read locally)."""
    import h5py

    from virtualizarr.parsers.hdf5.layout import parse_layout_message, read_chunk_index
    from virtualizarr.parsers.hdf5.object_header import LAYOUT, read_headers
    from virtualizarr.parsers.hdf5.superblock import H5File, read_superblock

    with h5py.File(path, "r") as f:
        address = h5py.h5o.get_info(f["v"].id).addr
        shape = f["v"].shape
    asked: list[list[tuple[int, int]]] = []

    class Recording:
        def __init__(self, src: io_source.ByteSource) -> None:
            self.src, self.size = src, src.size

        def read(self, offset: int, length: int) -> bytes:
            return self.src.read(offset, length)

        def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes]:
            asked.append(list(ranges))
            return self.src.read_many(ranges)

    with open_source(str(path)) as src:
        f5 = H5File(src, str(path))
        sb = read_superblock(f5)
        [hdr] = read_headers(f5, [address])
        layout = parse_layout_message(
            hdr.find(LAYOUT).body, sizeof_offsets=f5.so, sizeof_lengths=f5.sl, ndim=1, where="v"
        )
        read_chunk_index(
            Recording(src), layout, shape=shape, dtype_size=4, filtered=False,
            sizeof_offsets=f5.so, sizeof_lengths=f5.sl, where="v", btree1_k=sb.indexed_storage_k,
        )  # fmt: skip
    return asked


def test_remote_v1_btree_of_three_levels_comes_in_one_batch(
    http_server: HTTPServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import h5py

    import virtualizarr as vz

    path = http_server.mkdir() / "three_levels.h5"
    with h5py.File(path, "w") as f:  # libver earliest: a v1 B-tree of 10,000 chunks of 100 B
        f.create_dataset("v", data=np.arange(250_000, dtype="f4"), chunks=(25,))
    levels = _btree_levels(path)
    assert [len(lv) for lv in levels[:2]] == [1, 3]  # a root, 3 nodes, then the leaves
    assert len(levels) == 3
    head = 16 << 10
    outside = [(a, n) for lv in levels for a, n in lv if a + n > head]
    assert len(outside) > 150  # nearly all past the head
    monkeypatch.setattr(io_remote, "HEAD_BYTES", head)
    monkeypatch.setattr(io_remote, "WHOLE_BELOW", 0)
    monkeypatch.setattr(io_remote, "WHOLE_REST_BELOW", 0)
    batches: list[int] = []
    original = io_source.RemoteSource._fetch

    def fetch(src: io_source.RemoteSource, gaps: list[tuple[int, int]], *args: object) -> None:
        batches.append(len(gaps))
        original(src, gaps, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(io_source.RemoteSource, "_fetch", fetch)
    name = "/" + path.relative_to(http_server.root).as_posix()
    before = len(http_server.requests)
    with caplog.at_level("INFO", logger="virtualizarr"):
        ds = vz.open_virtual_dataset(http_server.url_for(path), loadable_variables=[])
    assert "read with h5py" not in caplog.text  # our reader, not the fallback
    got = [(r, m) for m, p, r in http_server.requests[before:] if p == name]
    # the head, then one batch: the root (in the head) expands to the rest of the tree
    assert len(batches) == 1
    wanted = sum(n for _, n in outside)
    fetched = sum(int(r.split("-")[1]) - int(r[6:].split("-")[0]) + 1 for r, _ in got[1:])
    assert wanted <= fetched <= wanted + max(wanted, 256 << 10)
    assert len(got) - 1 <= len(outside)
    # and the manifest is h5py's
    manifest = ds["v"].data.manifest
    with h5py.File(path, "r") as f:
        infos: list = []
        f["v"].id.chunk_iter(infos.append)
    assert len(manifest) == len(infos) == 10_000
    offsets = np.sort(np.asarray(manifest._offsets).reshape(-1))
    assert offsets.tolist() == sorted(i.byte_offset for i in infos)


def test_remote_chunk_indexes_of_a_group_come_in_one_batch(
    http_server: HTTPServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Three chunked variables: their three v1 B-trees are fetched together (one batch),
    not one variable and one level after another."""
    import h5py

    import virtualizarr as vz

    path = http_server.mkdir() / "three_vars.h5"
    with h5py.File(path, "w") as f:
        for i, name in enumerate("abc"):
            f.create_dataset(name, data=np.arange(50_000, dtype="f4") + i, chunks=(25,))
    monkeypatch.setattr(io_remote, "HEAD_BYTES", 16 << 10)
    monkeypatch.setattr(io_remote, "WHOLE_BELOW", 0)
    monkeypatch.setattr(io_remote, "WHOLE_REST_BELOW", 0)
    batches: list[bool] = []
    original = io_source.RemoteSource._fetch

    def fetch(src: io_source.RemoteSource, gaps: list[tuple[int, int]], *args: object) -> None:
        batches.append(bool(args and args[0] is not None))  # an expanding batch?
        original(src, gaps, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(io_source.RemoteSource, "_fetch", fetch)
    with caplog.at_level("INFO", logger="virtualizarr"):
        ds = vz.open_virtual_dataset(http_server.url_for(path), loadable_variables=[])
    assert "read with h5py" not in caplog.text
    assert batches.count(True) == 1  # the three trees, all levels, in one batch
    assert len(batches) <= 2  # and at most one batch of object headers before it
    with h5py.File(path, "r") as f:
        for name in "abc":
            infos: list = []
            f[name].id.chunk_iter(infos.append)
            got = np.sort(np.asarray(ds[name].data.manifest._offsets).reshape(-1))
            assert got.tolist() == sorted(i.byte_offset for i in infos)
            assert len(infos) == 2000
