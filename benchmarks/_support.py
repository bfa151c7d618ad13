"""What the benchmarks share: timing a call, and the latency server on a free loopback port.

``../shared/tools/latency_server.py`` (``kind="python"``) or ``benchmarks/latency_server.mjs``
(``kind="node"``: the same behaviour on Node's event loop, ~1/3 of the server CPU per request)
serves a folder with Range support, waits ``latency_ms`` before each response and sends at
``mbps`` per response; ``GET /__stats`` returns and resets the requests, bytes and HEADs it
served. Scripts import this module by its bare name (``python benchmarks/x.py`` puts
``benchmarks/`` on ``sys.path``).

>>> # with LatencyServer(folder, latency_ms=30, mbps=200, kind="node") as server:
>>> #     server.stats(); parse(f"{server.url}/a.nc"); print(server.stats(), server.cpu())
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Self

SHARED = Path(__file__).resolve().parents[2] / "shared"
"""The shared folder next to the checkout: ``data/real/<format>/`` and ``tools/``."""

REAL = SHARED / "data" / "real"
SERVER = SHARED / "tools" / "latency_server.py"
NODE_SERVER = Path(__file__).resolve().parent / "latency_server.mjs"
SERVER_KINDS = ("python", "node")
"""``LatencyServer(kind=...)``: the shared Python server or our Node.js one."""


def timings[T](fn: Callable[[], T], repeat: int, *, warm: bool = True) -> tuple[list[float], T]:
    """Seconds of each of ``repeat`` calls of ``fn`` (after one untimed call when ``warm``:
    imports, caches), and the last call's result.

    >>> times, _ = timings(lambda: sum(range(100)), 3)
    >>> len(times)
    3
    """
    result = fn() if warm else None
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result  # type: ignore[return-value]  # repeat >= 1


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LatencyServer:
    """The latency server over ``root`` on a free loopback port, ready when constructed.

    ``kind="python"``: ``../shared/tools/latency_server.py`` (a thread per connection under one
    GIL, ~0.5-0.8 ms of CPU per request, accept queue of 5); ``kind="node"``:
    ``benchmarks/latency_server.mjs`` (same answers and counts; needs ``node`` on PATH).
    """

    def __init__(
        self, root: Path, latency_ms: float = 30, mbps: float = 200, kind: str = "python"
    ) -> None:
        if kind not in SERVER_KINDS:
            raise ValueError(f"kind must be one of {SERVER_KINDS}, not {kind!r}")
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if kind == "node":
            node = shutil.which("node")
            if node is None:
                raise RuntimeError("kind='node' needs Node.js (`node`) on PATH")
            cmd = [node, str(NODE_SERVER), str(root), str(self.port)]
        else:
            cmd = [sys.executable, str(SERVER), str(root), str(self.port)]
        cmd += ["--latency-ms", str(latency_ms), "--mbps", str(mbps)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError(f"the {kind} latency server on port {self.port} did not start")

    def stats(self) -> dict[str, int]:
        """Requests, bytes and HEADs since the last call (the server resets them)."""
        with urllib.request.urlopen(f"{self.url}/__stats") as r:
            return json.load(r)

    def cpu(self) -> float:
        """User + system CPU seconds of the server process so far (from ``/proc``)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def reused_connection_ms(self, path: str, n: int = 5, nbytes: int = 6144) -> list[float]:
        """Milliseconds of ``n`` small range requests of ``path`` one after another on ONE
        kept-alive connection (the first opens it), as object-store clients send them.

        Against S3 or the Node server each takes about the latency. The Python server writes
        a response's headers and body in two sends without ``TCP_NODELAY``, so from the
        second request on a connection, Nagle's algorithm holds the body until the client's
        delayed ACK (~40 ms on Linux): measured 33 ms for the first and 72 ms for each later
        one at 30 ms latency. That is the server's cost, not the client's, and it lands on
        every request after the first on a connection.
        """
        import http.client

        out = []
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for i in range(n):
                t = time.perf_counter()
                lo = i * 100_000
                conn.request("GET", path, headers={"Range": f"bytes={lo}-{lo + nbytes - 1}"})
                conn.getresponse().read()
                out.append((time.perf_counter() - t) * 1000)
        finally:
            conn.close()
        self.stats()  # the probe's requests are not counted against anything
        return out

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
