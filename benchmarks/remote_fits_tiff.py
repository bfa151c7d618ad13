"""FITS and TIFF parses through a server that behaves like a distant object store.

Serves the real FITS/TIFF sample files and three generated large files (a 19 MB FITS of 13
HDUs, a 12 MB strip TIFF with its IFDs after the pixels, a 22 MB tiled 6-IFD TIFF) through
``../shared/tools/latency_server.py`` (30 ms before each response, 200 MB/s by default) on
127.0.0.1, parses each by URL and prints requests, bytes (against the 1.1 x size + 64 KiB
budget) and seconds per file.

    python benchmarks/remote_fits_tiff.py [--latency-ms 30] [--mbps 200]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from _support import REAL, LatencyServer


def _generate(folder: Path) -> None:
    import tifffile
    from astropy.io import fits

    rng = np.random.default_rng(0)
    if not (folder / "many_hdus.fits").exists():
        hdus = [fits.PrimaryHDU()] + [
            fits.ImageHDU(rng.normal(size=(768, 256)).astype(">f8"), name=f"SCI{k}")
            for k in range(12)
        ]
        fits.HDUList(hdus).writeto(folder / "many_hdus.fits")
    if not (folder / "strips_ifds_last.tif").exists():
        with tifffile.TiffWriter(folder / "strips_ifds_last.tif") as tw:
            for _ in range(3):
                tw.write(rng.integers(0, 255, (2000, 2000), dtype="u1"), rowsperstrip=4)
    if not (folder / "tiled_6_ifds.tif").exists():
        base = rng.integers(0, 255, (4096, 4096), dtype="u1")
        with tifffile.TiffWriter(folder / "tiled_6_ifds.tif") as tw:
            tw.write(base, tile=(256, 256), compression="zlib")
            for k in range(1, 6):
                tw.write(base[:: 2**k, :: 2**k], tile=(256, 256), subfiletype=1, compression="zlib")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=float, default=30)
    ap.add_argument("--mbps", type=float, default=200)
    args = ap.parse_args()

    from virtualizarr.parsers import FITSParser, TIFFParser
    from virtualizarr.registry import ObjectStoreRegistry

    folder = Path(tempfile.gettempdir()) / "vz_bench_fits_tiff"
    folder.mkdir(exist_ok=True)
    for sub in ("fits", "tiff"):
        for f in sorted((REAL / sub).glob("*.fit*")) + sorted((REAL / sub).glob("*.tif")):
            if not (folder / f.name).exists():
                shutil.copyfile(f, folder / f.name)
    _generate(folder)
    with LatencyServer(folder, args.latency_ms, args.mbps) as server:
        print(
            f"{'file':32} {'size':>10} {'requests':>8} {'bytes':>10} {'x size':>7} {'budget':>6} {'s':>6}"
        )
        worst = 0.0
        for f in sorted(folder.iterdir()):
            parser = FITSParser() if f.suffix.startswith(".fit") else TIFFParser()
            server.stats()  # reset the counters
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parser(f"{server.url}/{f.name}", ObjectStoreRegistry())
            seconds = time.perf_counter() - t
            stats = server.stats()
            size = f.stat().st_size
            ok = stats["bytes"] <= 1.1 * size + 65536
            worst = max(worst, stats["bytes"] / size)
            requests = stats["requests"] + stats.get("heads", 0)
            print(
                f"{f.name:32} {size:>10} {requests:>8} {stats['bytes']:>10} "
                f"{stats['bytes'] / size:>7.2f} {'ok' if ok else 'OVER':>6} {seconds:>6.2f}"
            )
        print(f"largest transfer / size: {worst:.2f}")


if __name__ == "__main__":
    main()
