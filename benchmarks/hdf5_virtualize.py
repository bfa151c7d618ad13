"""Virtualize one big NetCDF4 file: HDFParser vs open_virtual_dataset vs kerchunk vs bare h5py.

File: one float32 variable of shape (8760, 180, 360) chunked (1, 45, 90) with zlib +
shuffle: 140,160 chunks (``--small``: 876 time steps, 14,016 chunks). It is written once
with netCDF4-python and cached in the temp folder (writing the full file takes minutes).

    python benchmarks/hdf5_virtualize.py [--small] [--repeat 5]

Rows: the floor (h5py opening the file and collecting every chunk's offset with
``chunk_iter``), the same with Python's garbage collector paused (as the parser does while
it reads a chunk index), our own chunk index reader alone (``parsers/hdf5/layout.py``:
superblock, the variable's object header, layout message, the v1 B-tree level by level;
target a few tens of ms), ``HDFParser()(url, registry)``, ``open_virtual_dataset`` and
kerchunk's ``SingleHdf5ToZarr(...).translate()``. Columns: median seconds, ratio to the floor, and
peak memory of one run above the memory after imports (each tool measured in a fresh
process: RSS high-water mark, and tracemalloc's peak of Python/numpy allocations).
Targets (issue 3): HDFParser within 1.5x of the floor (about 5x faster than kerchunk),
less than 100 MB over the imports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FULL_STEPS, SMALL_STEPS = 8760, 876
LAT, LON, CHUNKS = 180, 360, (1, 45, 90)


def make_file(steps: int) -> Path:
    """The benchmark file for ``steps`` time steps, written once and cached."""
    import netCDF4

    folder = Path(tempfile.gettempdir()) / "virtualizarr-bench"
    folder.mkdir(exist_ok=True)
    path = folder / f"hdf5_virtualize_{steps}x{LAT}x{LON}.nc"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    lat = np.deg2rad(np.linspace(-89.5, 89.5, LAT))[:, None]
    lon = np.deg2rad(np.linspace(0.5, 359.5, LON))[None, :]
    with netCDF4.Dataset(tmp, "w") as nc:
        nc.createDimension("time", steps)
        nc.createDimension("lat", LAT)
        nc.createDimension("lon", LON)
        v = nc.createVariable("t2m", "f4", ("time", "lat", "lon"), zlib=True, complevel=1,
                              shuffle=True, chunksizes=CHUNKS)  # fmt: skip
        v.units = "K"
        base = 280 + 20 * np.cos(lat) * np.sin(lon)
        block = 24
        for t0 in range(0, steps, block):
            n = min(block, steps - t0)
            phase = np.arange(t0, t0 + n)[:, None, None] * (2 * np.pi / 24)
            v[t0 : t0 + n] = (base[None] + 5 * np.sin(phase + lon[None])).astype("f4")
    tmp.rename(path)
    return path


# -- the contenders --------------------------------------------------------------------------


def run_floor(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        infos: list = []
        f["t2m"].id.chunk_iter(infos.append)
        offsets = np.array([i.byte_offset for i in infos], dtype=np.uint64)
    return len(offsets)


def run_floor_gc_paused(path: Path) -> int:
    """The floor with Python's garbage collector paused, as the parser does."""
    import gc

    gc.disable()
    try:
        return run_floor(path)
    finally:
        gc.enable()


_HEADER_ADDRESS: dict[Path, int] = {}


def run_chunk_index(path: Path) -> int:
    """Our chunk index reader alone (``parsers/hdf5/layout.py``): open the file, read the
    superblock and the variable's object header, decode its layout message and read the
    whole chunk index level by level with numpy. The header's address is asked of h5py
    once, outside the timing (the group walk is the metadata reader's business)."""
    from virtualizarr.io import open_source
    from virtualizarr.parsers.hdf5.layout import parse_layout_message, read_chunk_index
    from virtualizarr.parsers.hdf5.object_header import LAYOUT, read_headers
    from virtualizarr.parsers.hdf5.superblock import H5File, read_superblock

    if path not in _HEADER_ADDRESS:
        import h5py

        with h5py.File(path, "r") as f:
            _HEADER_ADDRESS[path] = h5py.h5o.get_info(f["t2m"].id).addr
    with open_source(str(path)) as src:
        f = H5File(src, str(path))
        sb = read_superblock(f)
        [hdr] = read_headers(f, [_HEADER_ADDRESS[path]])
        layout = parse_layout_message(
            hdr.find(LAYOUT).body, sizeof_offsets=f.so, sizeof_lengths=f.sl, ndim=3, where=str(path)
        )
        table = read_chunk_index(
            src, layout, shape=(len_time(path), LAT, LON), dtype_size=4, filtered=True,
            sizeof_offsets=f.so, sizeof_lengths=f.sl, where=str(path),
            btree1_k=sb.indexed_storage_k,
        )  # fmt: skip
    return len(table)


def len_time(path: Path) -> int:
    """The number of time steps, from the file name."""
    return int(path.name.split("_")[-1].split("x")[0])


def run_parser(path: Path) -> int:
    from virtualizarr.parsers import HDFParser
    from virtualizarr.registry import ObjectStoreRegistry

    store = HDFParser()(str(path), ObjectStoreRegistry())
    return len(store.group["t2m"].manifest)


def run_open_virtual_dataset(path: Path) -> int:
    from virtualizarr import open_virtual_dataset

    ds = open_virtual_dataset(str(path))
    return len(ds["t2m"].data.manifest)


def run_kerchunk(path: Path) -> int:
    from kerchunk.hdf import SingleHdf5ToZarr

    refs = SingleHdf5ToZarr(str(path)).translate()
    return sum(
        1 for k in refs["refs"] if k.startswith("t2m/") and not k.split("/")[-1].startswith(".")
    )


CONTENDERS: dict[str, Callable[[Path], int]] = {
    "h5py chunk_iter (floor)": run_floor,
    "  same, GC paused": run_floor_gc_paused,
    "chunk index (layout.py)": run_chunk_index,
    "HDFParser": run_parser,
    "open_virtual_dataset": run_open_virtual_dataset,
    "kerchunk SingleHdf5ToZarr": run_kerchunk,
}
IMPORTS = {  # what each contender needs loaded before its run is measured
    "h5py chunk_iter (floor)": ["h5py"],
    "  same, GC paused": ["h5py"],
    "chunk index (layout.py)": [
        "h5py",
        "numpy",
        "virtualizarr.parsers.hdf5.layout",
        "virtualizarr.parsers.hdf5.btree1",
        "virtualizarr.io",
    ],
    "HDFParser": ["h5py", "zarr", "virtualizarr.parsers.hdf5", "virtualizarr.parsers.hdf5.arrays"],
    "open_virtual_dataset": ["h5py", "zarr", "virtualizarr", "virtualizarr.parsers.hdf5.arrays"],
    "kerchunk SingleHdf5ToZarr": ["h5py", "kerchunk.hdf"],
}


def available(name: str) -> bool:
    if name == "open_virtual_dataset":
        try:
            from virtualizarr import open_virtual_dataset  # noqa: F401
        except ImportError:
            return False
    if name.startswith("kerchunk"):
        try:
            import kerchunk.hdf  # noqa: F401
        except ImportError:
            return False
    return True


def time_it(fn: Callable[[Path], int], path: Path, repeat: int) -> tuple[float, int]:
    fn(path)  # warm the page cache and imports
    times, n = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn(path)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def child_memory(name: str, path: Path) -> None:
    """In a fresh process: peak memory of one run above the memory after imports."""
    import importlib
    import resource
    import tracemalloc

    for module in IMPORTS[name]:
        importlib.import_module(module)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    CONTENDERS[name](path)
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base  # KiB on Linux
    print(json.dumps({"rss_mb": rss / 1024, "traced_mb": traced / 2**20}))


def measure_memory(name: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="876 time steps instead of 8760")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_memory(args.child[0], Path(args.child[1]))
        return
    t0 = time.perf_counter()
    path = make_file(SMALL_STEPS if args.small else FULL_STEPS)
    print(
        f"file: {path} ({path.stat().st_size / 2**20:.0f} MiB, ready in {time.perf_counter() - t0:.0f} s)"
    )
    rows = []
    for name, fn in CONTENDERS.items():
        if not available(name):
            print(f"{name}: not available, skipped")
            continue
        seconds, n = time_it(fn, path, args.repeat)
        rows.append((name, seconds, n, measure_memory(name, path)))
    floor = rows[0][1]
    print(
        f"\n{'':28s} {'median s':>9s} {'x floor':>8s} {'chunks':>8s} {'peak RSS MB':>12s} {'traced MB':>10s}"
    )
    for name, seconds, n, mem in rows:
        print(f"{name:28s} {seconds:9.3f} {seconds / floor:8.2f} {n:8d} "
              f"{mem['rss_mb']:12.1f} {mem['traced_mb']:10.1f}")  # fmt: skip
    by_name = {r[0]: r[1] for r in rows}
    if "kerchunk SingleHdf5ToZarr" in by_name:
        ratio = by_name["kerchunk SingleHdf5ToZarr"] / by_name["HDFParser"]
        print(f"\nHDFParser is {ratio:.1f}x faster than kerchunk")


if __name__ == "__main__":
    main()
