"""What the benchmarks share: timing a call, and the latency server on a free loopback port.

``../shared/tools/latency_server.py`` serves a folder with Range support, waits
``latency_ms`` before each response and sends at ``mbps``; ``GET /__stats`` returns and
resets the requests, bytes and HEADs it served. Scripts import this module by its bare
name (``python benchmarks/x.py`` puts ``benchmarks/`` on ``sys.path``).

>>> # with LatencyServer(folder, latency_ms=30, mbps=200) as server:
>>> #     server.stats(); parse(f"{server.url}/a.nc"); print(server.stats())
"""

from __future__ import annotations

import json
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
    """The latency server over ``root`` on a free loopback port, ready when constructed."""

    def __init__(self, root: Path, latency_ms: float = 30, mbps: float = 200) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
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
        raise RuntimeError(f"the latency server on port {self.port} did not start")

    def stats(self) -> dict[str, int]:
        """Requests, bytes and HEADs since the last call (the server resets them)."""
        with urllib.request.urlopen(f"{self.url}/__stats") as r:
            return json.load(r)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
