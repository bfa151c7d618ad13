"""Virtualizing GRIB files over a slow HTTP server: requests, bytes and seconds per file.

    python benchmarks/grib_remote.py [--latency-ms 30] [--mbps 200] [--runs 3] [FILE ...]

Starts ``../shared/tools/latency_server.py`` on a free loopback port over the files'
directory (default: every file of ``../shared/data/real/grib``), parses each file with
``GRIBParser`` through ``http://127.0.0.1:PORT/...`` and prints, per file, the requests
and bytes the server saw (``/__stats``), the transfer against the issue-10 budget
(1.1 x size + 64 KiB) and the best wall time of ``--runs`` parses. A ``.idx`` sidecar next
to a file is used by the parser when the file is large (see ``parsers/grib/scan.py``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _support import REAL, LatencyServer


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--latency-ms", type=float, default=30)
    ap.add_argument("--mbps", type=float, default=200)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--verbose", action="store_true", help="print the raw server counts")
    args = ap.parse_args()
    files = args.files or sorted(
        p for p in (REAL / "grib").iterdir() if p.suffix not in (".md", ".json", ".idx")
    )
    root = files[0].resolve().parent
    with LatencyServer(root, args.latency_ms, args.mbps) as server:
        base = server.url
        from obstore.store import HTTPStore

        from virtualizarr.parsers import GRIBParser
        from virtualizarr.registry import ObjectStoreRegistry

        print(f"GRIB over HTTP, {args.latency_ms:g} ms per request, {args.mbps:g} MB/s")
        print(
            f"{'file':48} {'size':>10} {'requests':>8} {'bytes':>10} {'budget':>10} {'best s':>7}"
        )
        for path in files:
            url = f"{base}/{path.resolve().relative_to(root).as_posix()}"
            best, counts = float("inf"), None
            for _ in range(args.runs):
                store = HTTPStore.from_url(base, client_options={"allow_http": True})
                registry = ObjectStoreRegistry({base: store})
                server.stats()  # reset
                t = time.perf_counter()
                GRIBParser()(url, registry)
                best = min(best, time.perf_counter() - t)
                counts = server.stats()
            size = path.stat().st_size
            budget = int(1.1 * size) + 65536
            assert counts is not None
            flag = "" if counts["bytes"] <= budget else "  OVER BUDGET"
            flag += f"  {counts}" if args.verbose else ""
            print(
                f"{path.name[:48]:48} {size:>10} {counts['requests'] + counts.get('heads', 0):>8} "
                f"{counts['bytes']:>10} {budget:>10} {best:>7.3f}{flag}"
            )


if __name__ == "__main__":
    main()
