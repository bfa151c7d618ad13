"""A big HDF5 chunk index through a server that behaves like a distant object store.

Virtualizes (``loadable_variables=[]``, default engine) the NetCDF4 file of 140,160 chunks
of ``benchmarks/remote.py --big`` (61 MB; 2,459 v1 B-tree leaves, one every 24.9 KB) and,
with ``--t2m``, the 1.2 GB file of ``benchmarks/hdf5_virtualize.py`` if it was written
(140,160 zlib chunks; 2,459 leaves, one every ~490 KB), through
``../shared/tools/latency_server.py`` and/or ``benchmarks/latency_server.mjs`` (``--server
python|node|both``; 30 ms before each response, 200 MB/s per request), for each
``--in-flight`` value (``virtualizarr.io.remote.BATCH_IN_FLIGHT``).

Per run it prints requests, MB, round trips (the head plus each blocking batch of
``RemoteSource``), seconds, the client's CPU seconds (this process: obstore, Python, the
parse), the server's CPU seconds (read from ``/proc``: the Python server is one process
under one GIL, so its CPU is a floor on the wall time; Node's costs ~1/3 of that)
and the load average, since on a shared machine the wall time says as much about the
neighbours as about the code.

    python benchmarks/remote_index.py [--in-flight 64 128] [--repeat 3] [--t2m] [--server both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from remote import make_many_chunks, make_many_datasets

from _support import SERVER_KINDS, LatencyServer


class Rounds:
    """Counts the blocking fetches of every RemoteSource (one round trip each)."""

    def __init__(self) -> None:
        from virtualizarr.io import source

        self.count = 0
        original = source.RemoteSource._fetch

        def fetch(src: Any, gaps: list[tuple[int, int]], *args: Any) -> None:
            self.count += 1
            original(src, gaps, *args)

        source.RemoteSource._fetch = fetch  # type: ignore[method-assign]


def run(server: LatencyServer, url: str, rounds: Rounds) -> dict[str, float]:
    import virtualizarr as vz

    server.stats()
    rounds.count = 0
    s0, c0, t0 = server.cpu(), time.process_time(), time.perf_counter()
    ds = vz.open_virtual_dataset(url, loadable_variables=[])
    wall = time.perf_counter() - t0
    client, srv = time.process_time() - c0, server.cpu() - s0
    st = server.stats()
    chunks = sum(len(v.data.manifest) for v in ds.variables.values() if hasattr(v.data, "manifest"))
    return {
        "requests": st["requests"] + st["heads"],
        "mb": st["bytes"] / 1e6,
        "rounds": 1 + rounds.count,  # the first request (head) is not a _fetch
        "wall": wall,
        "client": client,
        "server": srv,
        "load": os.getloadavg()[0],
        "chunks": chunks,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--in-flight", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=30)
    ap.add_argument("--mbps", type=float, default=200)
    ap.add_argument("--t2m", action="store_true", help="also the 1.2 GB hdf5_virtualize file")
    ap.add_argument("--server", choices=[*SERVER_KINDS, "both"], default="python")
    ap.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "vz_bench_remote"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from virtualizarr.io import remote

    gen = Path(args.folder) / "gen"
    gen.mkdir(parents=True, exist_ok=True)
    files = {"140,160 chunks x 400 B (61 MB)": make_many_chunks(gen / "many_chunks.nc")}
    warm = make_many_datasets(gen / "many_datasets.nc")
    t2m = Path(tempfile.gettempdir()) / "virtualizarr-bench" / "hdf5_virtualize_8760x180x360.nc"
    if args.t2m:
        if t2m.exists():
            link = gen / "t2m.nc"
            if not link.exists():
                link.symlink_to(t2m)
            files["140,160 zlib chunks (1.2 GB)"] = link
        else:
            print(f"{t2m} not written yet (run benchmarks/hdf5_virtualize.py): skipped")
    rounds = Rounds()
    import virtualizarr as vz

    print(f"latency {args.latency_ms:g} ms, {args.mbps:g} MB/s per request; medians of "
          f"{args.repeat} runs (CPU: s of this process / of the server process)")  # fmt: skip
    kinds = SERVER_KINDS if args.server == "both" else (args.server,)
    for kind in kinds:
        with LatencyServer(gen, args.latency_ms, args.mbps, kind=kind) as server:
            vz.open_virtual_dataset(f"{server.url}/{warm.name}", loadable_variables=[])  # imports
            print(f"\n{kind} server ({server.proc.args[1]})")
            head = f"{'file':<32}{'in flight':>10}{'req':>7}{'MB':>7}{'rounds':>7}"
            print(head + f"{'s':>7}{'client CPU':>11}{'server CPU':>11}{'load':>6}")
            for name, path in files.items():
                for n in args.in_flight:
                    remote.BATCH_IN_FLIGHT = n
                    url = f"{server.url}/{path.name}"
                    runs = [run(server, url, rounds) for _ in range(args.repeat)]
                    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                    print(
                        f"{name:<32}{n:>10}{med['requests']:>7.0f}{med['mb']:>7.2f}"
                        f"{med['rounds']:>7.0f}{med['wall']:>7.2f}{med['client']:>11.2f}"
                        f"{med['server']:>11.2f}{med['load']:>6.1f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
