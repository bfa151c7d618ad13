"""HDFParser engines side by side: our HDF5 metadata reader (``engine="own"``) vs h5py.

For each file: best-of-N seconds locally for both engines, then the same parse through
``/work/shared/tools/latency_server.py`` (30 ms per request, 200 MB/s by default) with the
server's request and byte counts, and whether our reader fell back to h5py (and why).

    python benchmarks/hdf5_reader.py [FILES...] [--runs 3] [--no-remote]

Default files: every real file in ``../shared/data/real/netcdf4_hdf5`` and the
``hdf5_virtualize.py`` benchmark files when they are cached in the temp folder.
Targets (issue 11): 140,160 chunks <= 0.1 s locally, <= 1.0 s and <= 12 MB remotely;
a 5 MB netCDF-4 file in <= 4 requests; ref_hdf5_compat1.nc (2,001 datasets) <= 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


class _Fallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "read with h5py" in msg:
            self.messages.append(msg.split("read with h5py: ", 1)[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_stats(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/__stats") as r:
        return json.loads(r.read())


def parse(url: str, engine: str, registry: object) -> float:
    from virtualizarr.parsers.hdf5 import HDFParser

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        HDFParser(engine=engine)(url, registry)
    return time.perf_counter() - t


def default_files() -> list[Path]:
    real = SHARED / "data/real/netcdf4_hdf5"
    files = sorted(p for p in real.glob("*") if p.suffix in (".nc", ".h5", ".hdf5"))
    bench = Path(tempfile.gettempdir()) / "virtualizarr-bench"
    files += sorted(bench.glob("hdf5_virtualize_*.nc"))
    return files


def threads_rows(files: list[Path], threads: int, base: str | None) -> None:
    """8 parses (the files, repeated) one after the other vs on ``threads`` threads."""
    from concurrent.futures import ThreadPoolExecutor

    from virtualizarr.registry import ObjectStoreRegistry

    urls = [f"file://{p}" for p in (files * 8)[:8]]
    where = [("local", urls, lambda: ObjectStoreRegistry())]
    if base:
        from obstore.store import HTTPStore

        where.append(
            (
                "remote",
                [f"{base}{p}" for p in (files * 8)[:8]],
                lambda: ObjectStoreRegistry(
                    {base: HTTPStore.from_url(base, client_options={"allow_http": True})}
                ),
            )
        )
    for name, batch, make in where:
        for engine in ("h5py", "own"):
            t = time.perf_counter()
            for u in batch:
                parse(u, engine, make())
            serial = time.perf_counter() - t
            t = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda u, e=engine, m=make: parse(u, e, m()), batch))
            par = time.perf_counter() - t
            print(
                f"{name} {engine}: 8 parses serial {serial:.3f} s, {threads} threads {par:.3f} s "
                f"({par / serial:.2f}x)",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=30)
    ap.add_argument("--mbps", type=float, default=200)
    ap.add_argument("--no-remote", action="store_true")
    ap.add_argument(
        "--threads", type=int, default=0, help="also time 8 parses serially vs this many threads"
    )
    args = ap.parse_args()
    files = [p.resolve() for p in (args.files or default_files())]

    from virtualizarr.registry import ObjectStoreRegistry

    handler = _Fallbacks()
    logger = logging.getLogger("virtualizarr.parsers.hdf5.parser")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)

    server = base = None
    if not args.no_remote:
        root = Path("/")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, str(SHARED / "tools/latency_server.py"), str(root), str(port),
             "--latency-ms", str(args.latency_ms), "--mbps", str(args.mbps)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                server_stats(base)
                break
            except OSError:
                time.sleep(0.05)
    head = f"{'file':40} {'MB':>7} {'h5py s':>8} {'own s':>8} {'x':>5}"
    if base:
        head += f" | {'h5py s':>7} {'req':>5} {'MB':>6} | {'own s':>7} {'req':>5} {'MB':>6}"
    print(head + "  fallback")
    try:
        for path in files:
            url = f"file://{path}"
            local = ObjectStoreRegistry()
            times = {}
            for engine in ("h5py", "own"):
                parse(url, engine, local)  # warm: imports, OS page cache
                times[engine] = min(parse(url, engine, local) for _ in range(args.runs))
            handler.messages.clear()
            parse(url, "own", local)
            why = "; ".join(sorted(set(handler.messages)))
            row = (
                f"{path.name[:40]:40} {path.stat().st_size / 1e6:>7.1f} {times['h5py']:>8.3f} "
                f"{times['own']:>8.3f} {times['h5py'] / times['own']:>5.1f}"
            )
            if base:
                from obstore.store import HTTPStore

                for engine in ("h5py", "own"):
                    store = HTTPStore.from_url(base, client_options={"allow_http": True})
                    registry = ObjectStoreRegistry({base: store})
                    server_stats(base)  # reset the counts
                    t = parse(f"{base}{path}", engine, registry)
                    c = server_stats(base)
                    nreq = c["requests"] + c.get("heads", 0)
                    row += f" | {t:>7.3f} {nreq:>5} {c['bytes'] / 1e6:>6.2f}"
            print(row + ("  " + why if why else ""), flush=True)
        if args.threads:
            threads_rows(files, args.threads, base)
    finally:
        if server is not None:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
