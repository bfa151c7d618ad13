"""HDFParser engines side by side: our HDF5 metadata reader (``engine="own"``) vs h5py.

For each file: best-of-N seconds locally for both engines, then the same parse through
``/work/shared/tools/latency_server.py`` (30 ms per request, 200 MB/s by default) with the
server's request and byte counts, and whether our reader fell back to h5py (and why).

    python benchmarks/hdf5_reader.py [FILES...] [--runs 3] [--no-remote]
    python benchmarks/hdf5_reader.py --per-file 200   # per-file costs only (see below)

Default files: every real file in ``../shared/data/real/netcdf4_hdf5`` and the
``hdf5_virtualize.py`` benchmark files when they are cached in the temp folder.
Targets (issue 11): 140,160 chunks <= 0.1 s locally, <= 1.0 s and <= 12 MB remotely;
a 5 MB netCDF-4 file in <= 4 requests; ref_hdf5_compat1.nc (2,001 datasets) <= 0.3 s.

``--per-file N``: ms per file (wall and CPU) of our reader, the h5py engine and kerchunk on
ref_hdf5_compat1.nc and on N small NetCDF4 files made as benchmarks/many_files.py makes them,
with the load average (issue 13: a small file's whole open_virtual_mfdataset <= 3.5 ms).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
    import gc
    import statistics

    # one parse takes a few ms locally: rounds alternate serial and threaded, and the
    # collector is frozen so that a full collection does not land in one of them
    gc.collect()
    gc.freeze()
    pool = ThreadPoolExecutor(threads)
    try:
        for name, batch, make in where:
            rounds = 15 if name == "local" else 3
            for engine in ("h5py", "own"):
                list(pool.map(lambda u, e=engine, m=make: parse(u, e, m()), batch))  # warm
                serial, par = [], []
                for _ in range(rounds):
                    t = time.perf_counter()
                    for u in batch:
                        parse(u, engine, make())
                    serial.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    list(pool.map(lambda u, e=engine, m=make: parse(u, e, m()), batch))
                    par.append(time.perf_counter() - t)
                s_med, p_med = statistics.median(serial), statistics.median(par)
                print(
                    f"{name} {engine}: 8 parses, median of {rounds} alternating rounds: serial "
                    f"{s_med:.3f} s, {threads} threads {p_med:.3f} s ({p_med / s_med:.2f}x; "
                    f"best {min(par) / min(serial):.2f}x)",
                    flush=True,
                )
    finally:
        pool.shutdown()
        gc.unfreeze()


def _small_files(n: int) -> list[Path]:
    """``n`` small NetCDF4 files as benchmarks/many_files.py makes them (4 variables, 16
    zlib chunks; copies of one file with their own time values), in the temp folder."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "many_files", Path(__file__).with_name("many_files.py")
    )
    assert spec is not None
    assert spec.loader is not None
    many_files = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(many_files)
    folder = Path(tempfile.gettempdir()) / "virtualizarr-bench" / "hdf5_reader_small"
    return many_files.make_files(folder, n)


def _kerchunk(url: str) -> None:
    from kerchunk.hdf import SingleHdf5ToZarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SingleHdf5ToZarr(url.removeprefix("file://")).translate()


def _timed(paths: list[Path], one: object, runs: int, warm: bool = True) -> tuple[float, float]:
    """Best of ``runs`` passes over ``paths``: (wall, CPU) ms per file."""
    urls = [f"file://{p}" for p in paths]
    for u in urls[:2] if warm else ():
        one(u)  # type: ignore[operator]  # warm: imports, page cache
    walls, cpus = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        for u in urls:
            one(u)  # type: ignore[operator]
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls) * 1e3 / len(urls), min(cpus) * 1e3 / len(urls)


def per_file_rows(runs: int, small_files: int) -> None:
    """Per-file cost of parsing (issues 11 and 13): the 2,001-dataset ref_hdf5_compat1.nc and
    small NetCDF4 files, ms per file (wall / CPU, best of ``runs``) for our reader, the h5py
    engine and kerchunk, with the load average (a shared machine inflates wall times).
    Targets: ref_hdf5_compat1.nc <= 300 ms; a small file's whole open_virtual_mfdataset
    <= 3.5 ms, of which the parse is a part."""
    from virtualizarr.registry import ObjectStoreRegistry

    registry = ObjectStoreRegistry()
    rows = []
    compat = SHARED / "data/real/netcdf4_hdf5/ref_hdf5_compat1.nc"
    if compat.exists():
        rows.append(("ref_hdf5_compat1.nc (2,001 datasets)", [compat]))
    rows.append((f"small NetCDF4 x{small_files} (4 vars, 16 chunks)", _small_files(small_files)))
    print(f"\nper file, ms (wall / CPU, best of {runs}); load average {os.getloadavg()}")
    print(f"{'file':40} {'own':>17} {'h5py':>17} {'kerchunk':>17}")
    for name, paths in rows:
        cells = []
        for one in (
            lambda u: parse(u, "own", registry),
            lambda u: parse(u, "h5py", registry),
            _kerchunk,
        ):
            if one is _kerchunk and len(paths) == 1:  # ~40 s for the 2,001 datasets: once
                wall, cpu = _timed(paths, one, 1, warm=False)
            else:
                wall, cpu = _timed(paths, one, runs)
            cells.append(f"{wall:>8.1f} /{cpu:>7.1f}")
        print(f"{name[:40]:40} " + " ".join(f"{c:>17}" for c in cells), flush=True)
    print(f"load average after: {os.getloadavg()}")


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
    ap.add_argument(
        "--per-file",
        type=int,
        default=0,
        metavar="N",
        help="only the per-file rows: ref_hdf5_compat1.nc and N small NetCDF4 files",
    )
    args = ap.parse_args()
    if args.per_file:
        per_file_rows(args.runs, args.per_file)
        return
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
