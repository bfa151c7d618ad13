"""benchmarks/latency_server.mjs (Node.js) against ../shared/tools/latency_server.py.

Both serve the same folder (real sample files and a generated many-chunk HDF5 file) on
loopback; every answer must be the same: status, body bytes, Content-Length, Content-Range,
ETag, Last-Modified, and the ``/__stats`` counts, for raw HTTP requests and for
``open_source`` / ``open_virtual_dataset`` runs through each. Skipped without ``node`` or
without ``../shared`` (the Python server and the real files live there).
"""

from __future__ import annotations

import http.client
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import HAVE_REAL_DATA
from virtualizarr.testing.ground_truth import REAL_DATA

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
PY_SERVER = Path(__file__).resolve().parents[2] / "shared" / "tools" / "latency_server.py"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js (`node`) not installed"),
    pytest.mark.skipif(
        not (HAVE_REAL_DATA and PY_SERVER.exists()),
        reason="../shared (the Python latency server and real files) not available",
    ),
]


def _servers_module() -> Any:
    """benchmarks/_support.py (LatencyServer), loaded by path under a name of its own."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_support", BENCH / "_support.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(root, {"python": server, "node": server})`` over the same folder (2 ms, 200 MB/s)."""
    import h5py

    support = _servers_module()
    root = tmp_path_factory.mktemp("latency_root")
    (root / "real").symlink_to(REAL_DATA, target_is_directory=True)
    with h5py.File(root / "chunks.nc", "w") as f:  # v1 B-tree of 4,000 chunks: several levels
        data = np.random.default_rng(0).standard_normal(4000 * 50).astype("f4")
        f.create_dataset("v", data=data, chunks=(50,))
    (root / "empty.bin").write_bytes(b"")
    servers = {
        k: support.LatencyServer(root, latency_ms=2, mbps=200, kind=k) for k in ("python", "node")
    }
    try:
        yield root, servers
    finally:
        for s in servers.values():
            s.close()


def _counts(server: Any) -> dict[str, int]:
    st = server.stats()
    return {k: st[k] for k in ("requests", "bytes", "heads")}


def _ask(url: str, method: str, path: str, rng: str | None) -> tuple[int, bytes, dict[str, str]]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, headers={"Range": rng} if rng else {})
        r = conn.getresponse()
        body = r.read()
        keep = ("Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified")
        return r.status, body, {k: r.getheader(k) for k in keep if r.getheader(k) is not None}
    finally:
        conn.close()


def test_raw_answers_and_counts_match(served: tuple[Path, dict[str, Any]]) -> None:
    root, servers = served
    files = ["real/netcdf4_hdf5/air.nc", "real/netcdf4_hdf5/tdset.h5", "chunks.nc"]
    asks: list[tuple[str, str, str | None]] = [("GET", "/empty.bin", None)]
    for name in files:
        size = (root / name).stat().st_size
        asks += [
            ("HEAD", f"/{name}", None),
            ("GET", f"/{name}", None),
            ("GET", f"/{name}", "bytes=0-99"),
            ("GET", f"/{name}", "bytes=100-"),
            ("GET", f"/{name}", "bytes=-50"),
            ("GET", f"/{name}", f"bytes={size - 10}-{size + 1000}"),  # clipped to the end
            ("GET", f"/{name}", f"bytes={size}-"),  # 416
            ("GET", f"/{name}?x=1", "bytes=5-5"),  # the query is ignored
        ]
    asks += [
        ("GET", "/missing.nc", None),
        ("HEAD", "/missing.nc", None),
        ("GET", "/../../etc/passwd", None),
        ("GET", "/real", None),  # a folder
    ]
    answers = {}
    for kind, server in servers.items():
        _counts(server)
        answers[kind] = [_ask(server.url, *a) for a in asks]
        answers[kind + " stats"] = _counts(server)
    for ask, a, b in zip(asks, answers["python"], answers["node"], strict=True):
        assert a == b, ask
    # the answers themselves are right, not only equal
    statuses = [a[0] for a in answers["node"]]
    assert statuses.count(416) == len(files)
    assert statuses[-4:] == [404] * 4
    got = dict(zip(asks, answers["node"], strict=True))
    air = (REAL_DATA / "netcdf4_hdf5" / "air.nc").read_bytes()
    assert got[("GET", "/real/netcdf4_hdf5/air.nc", "bytes=-50")][1] == air[-50:]
    assert got[("GET", "/real/netcdf4_hdf5/air.nc", None)][1] == air
    status, body, headers = got[("GET", "/real/netcdf4_hdf5/air.nc", "bytes=100-")]
    assert (status, body) == (206, air[100:])
    assert headers["Content-Range"] == f"bytes 100-{len(air) - 1}/{len(air)}"
    ok = [a for (m, _, _), a in got.items() if m == "GET" and a[0] in (200, 206)]
    heads = sum(m == "HEAD" for m, _, _ in asks)
    expected = {"requests": len(ok), "bytes": sum(len(a[1]) for a in ok), "heads": heads}
    assert answers["python stats"] == answers["node stats"] == expected


def test_open_source_through_both(served: tuple[Path, dict[str, Any]]) -> None:
    from virtualizarr.io import open_source

    root, servers = served
    data = (root / "chunks.nc").read_bytes()
    ranges = [(0, 10), (5000, 300), (400_000, 70_000), (len(data) - 20, 100)]
    counts = {}
    for kind, server in servers.items():
        _counts(server)
        # no whole-file fetch, a small head: several requests of the sizes asked
        with open_source(f"{server.url}/chunks.nc", whole_below=0, head_bytes=4096) as src:
            assert src.size == len(data)
            assert src.read(1000, 16) == data[1000:1016]
            assert src.read_many(ranges) == [data[o : o + n] for o, n in ranges]
        counts[kind] = _counts(server)
    assert counts["python"] == counts["node"]
    assert counts["node"]["requests"] >= 2
    assert counts["node"]["bytes"] <= len(data)


def _manifests(ds: Any, base: str) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    out = {}
    for name, var in ds.variables.items():
        manifest = getattr(var.data, "manifest", None)
        if manifest is None:
            continue
        paths = [str(p).replace(base, "BASE") for p in np.asarray(manifest.paths).ravel()]
        out[name] = (paths, np.asarray(manifest.offsets), np.asarray(manifest.lengths))
    return out


@pytest.mark.parametrize(
    "name", ["chunks.nc", "real/netcdf4_hdf5/air.nc", "real/netcdf4_hdf5/basin_mask.nc"]
)
def test_open_virtual_dataset_through_both(served: tuple[Path, dict[str, Any]], name: str) -> None:
    import virtualizarr as vz

    root, servers = served
    runs = {}
    for kind, server in servers.items():
        _counts(server)
        ds = vz.open_virtual_dataset(f"{server.url}/{name}", loadable_variables=[])
        runs[kind] = (_counts(server), _manifests(ds, server.url))
    (py_counts, py_man), (node_counts, node_man) = runs["python"], runs["node"]
    assert py_counts == node_counts
    assert node_counts["requests"] >= 1
    assert py_man.keys() == node_man.keys()
    assert node_man
    for var in py_man:
        assert py_man[var][0] == node_man[var][0]
        np.testing.assert_array_equal(py_man[var][1], node_man[var][1])
        np.testing.assert_array_equal(py_man[var][2], node_man[var][2])
    if name == "chunks.nc":  # the manifest is h5py's chunk index, not only the same twice
        import h5py

        with h5py.File(root / name) as f:
            offsets = sorted(c.byte_offset for c in _chunk_iter(f["v"]))
        assert sorted(node_man["v"][1].ravel().tolist()) == offsets


def _chunk_iter(d: Any) -> list[Any]:
    out: list[Any] = []
    d.id.chunk_iter(out.append)
    return out


@pytest.mark.parametrize("kind", ["python", "node"])
def test_latency_and_rate_are_per_response(tmp_path: Path, kind: str) -> None:
    """50 ms before the first byte, then 10 MB/s for each response: one 1 MB GET takes at
    least 0.15 s, and four at once take about as long (a global cap would need 0.45 s more)."""
    import threading
    import time

    data = np.random.default_rng(1).bytes(1_000_000)
    (tmp_path / "a.bin").write_bytes(data)
    support = _servers_module()
    with support.LatencyServer(tmp_path, latency_ms=50, mbps=10, kind=kind) as server:
        got: list[bytes] = []

        def fetch() -> None:
            got.append(_ask(server.url, "GET", "/a.bin", None)[1])

        t = time.perf_counter()
        fetch()
        one = time.perf_counter() - t
        threads = [threading.Thread(target=fetch) for _ in range(4)]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        four = time.perf_counter() - t
        assert got == [data] * 5
        assert one >= 0.05 + 0.1
        assert four >= 0.15
        assert four < 0.15 + 0.3, (one, four)
        assert _counts(server) == {"requests": 5, "bytes": 5_000_000, "heads": 0}
