"""Many small NetCDF4 files: open_virtual_mfdataset per parallel option, side by side with kerchunk.

Files: N copies of one small NetCDF4 file (time 2 x lat 8 x lon 16; ``air`` float32 in 16
zlib+shuffle chunks of (1, 4, 4); time/lat/lon coordinates), each with its own time values
patched into the copy (so making 100k files takes seconds, not an hour). Cached in
``--folder`` between runs (~18 KB per file).

    python benchmarks/many_files.py [--sizes 1000,10000] [--modes serial,threads,processes,dask]
        # add 2xserial (after serial) for two serial runs at once: what 2 busy processes get
                                    [--kerchunk-max 1000] [--folder /tmp/vz_many_files]

Each measurement runs in a fresh Python process (so peak RSS is that of one run):
wall seconds, CPU seconds (the process plus its workers when they were forked; fork-server
workers are not its children, then it is the client's CPU only; in brackets: the
client's own), ms per file (wall), peak RSS of
the client process (MB), the result's ``ds.vz.nbytes`` and bytes per reference.
The machine's load average is printed: on a shared machine wall times inflate, CPU
seconds much less so.
Targets (issue 13): 10k files serial <= 35 s, processes/dask <= 0.55x serial on 2 cores,
peak RSS <= 2x the result + 300 MB at 100k files.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

STEPS = 2


def _template(path: Path) -> None:
    import netCDF4

    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", 8)
        nc.createDimension("lon", 16)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "hours since 2000-01-01", "standard"
        t[:] = np.arange(float(STEPS))
        nc.createVariable("lat", "f4", ("lat",))[:] = np.linspace(-70, 70, 8)
        nc.createVariable("lon", "f4", ("lon",))[:] = np.arange(0, 360, 22.5)
        v = nc.createVariable(
            "air", "f4", ("time", "lat", "lon"), zlib=True, shuffle=True, chunksizes=(1, 4, 4)
        )
        v.units, v.long_name = "K", "air temperature"
        v[:] = 280 + np.random.default_rng(0).normal(size=(STEPS, 8, 16))


def make_files(folder: Path, n: int) -> list[Path]:
    """``n`` files ``f000000.nc``...: copies of a template with their own time values."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    template = folder / "template.nc.tmpl"
    if not template.exists():
        _template(template)
    with h5py.File(template, "r") as f:
        offset = f["time"].id.get_chunk_info(0).byte_offset  # the time chunk, stored raw
    raw = bytearray(template.read_bytes())
    paths = [folder / f"f{i:06d}.nc" for i in range(n)]
    for i, p in enumerate(paths):
        if p.exists():
            continue
        raw[offset : offset + 8 * STEPS] = np.arange(
            i * STEPS, (i + 1) * STEPS, dtype="<f8"
        ).tobytes()
        p.write_bytes(raw)
    return paths


def _one(folder: Path, n: int, mode: str) -> dict:
    """Run one measurement in this process; returns the row."""
    paths = [str(p) for p in make_files(folder, n)]
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "kerchunk":
        from kerchunk.combine import MultiZarrToZarr
        from kerchunk.hdf import SingleHdf5ToZarr

        refs = []
        for p in paths:
            with open(p, "rb") as f:
                refs.append(SingleHdf5ToZarr(f, p).translate())
        out = MultiZarrToZarr(refs, concat_dims=["time"], identical_dims=["lat", "lon"]).translate()
        nrefs = sum(
            1
            for k in out["refs"]
            if k.startswith("air/") and not k.endswith((".zarray", ".zattrs"))
        )
        nbytes = len(json.dumps(out))
    else:
        from virtualizarr import open_virtual_mfdataset

        parallel = {
            "serial": False,
            "threads": "threads",
            "processes": "processes",
            "dask": "dask",
        }[mode]
        ds = open_virtual_mfdataset(paths, parallel=parallel, progress=False)
        assert ds.sizes["time"] == n * STEPS, ds.sizes
        nrefs = ds.vz.nrefs()
        nbytes = ds.vz.nbytes
    wall = time.perf_counter() - t0
    client_cpu = time.process_time() - c0
    from virtualizarr.mfdataset import shutdown_pool

    shutdown_pool()  # forked workers are children: their CPU counts once they have exited
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = client_cpu + children.ru_utime + children.ru_stime
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n": n,
        "mode": mode,
        "wall": wall,
        "cpu": cpu,
        "client_cpu": client_cpu,
        "ms_per_file": wall / n * 1e3,
        "rss_mb": rss,
        "nbytes": nbytes,
        "bytes_per_ref": nbytes / max(nrefs, 1),
    }


def _memory_only(folder: Path, n: int) -> dict:
    """Client memory of combining ``n`` files, without parsing ``n`` files.

    One real file is parsed; its part is then repeated ``n`` times with each file's own path
    and time values (exactly what the parser would return for the copies), fed to the same
    collector and combine that ``open_virtual_mfdataset`` uses. Parsing is per-file transient
    memory, so this is the client's peak RSS for ``n`` files, measured in minutes instead of
    hours on a shared 2-core machine.
    """
    import dataclasses

    from virtualizarr.manifests import ChunkManifest, ManifestArray
    from virtualizarr.mfdataset import Collector, fast_combine, virtualize_part

    template = make_files(folder, 1)[0]
    part = virtualize_part(str(template))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    col = Collector()
    for i in range(n):
        url = f"file://{folder}/f{i:06d}.nc"
        virtual = {}
        for name, arr in part.virtual.items():
            m = arr.manifest
            m2 = ChunkManifest.from_path_ids(
                table=[url],
                ids=m.path_ids.copy(),
                offsets=m.offsets.copy(),
                lengths=m.lengths.copy(),
            )
            virtual[name] = ManifestArray(arr.metadata, m2)
        loaded = dict(part.loaded)
        dims, attrs, _ = loaded["time"]
        loaded["time"] = (dims, attrs, np.arange(i * STEPS, (i + 1) * STEPS, dtype="f8"))
        col.add(dataclasses.replace(part, source=url, virtual=virtual, loaded=loaded))
    ds = fast_combine(
        col, combine="by_coords", concat_dim=None, decode_times=None, sources=list(col.sources)
    )
    assert ds.sizes["time"] == n * STEPS
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "n": n,
        "mode": "memory (synthetic parts)",
        "wall": wall,
        "cpu": time.process_time(),
        "ms_per_file": wall / n * 1e3,
        "rss_mb": rss,
        "rss_before_mb": rss0,
        "nbytes": ds.vz.nbytes,
        "bytes_per_ref": ds.vz.nbytes / ds.vz.nrefs(),
    }


def _two_serial(folder: Path, n: int, serial: float | None) -> None:
    """Two serial runs of the same ``n`` files at once, in two processes: what two busy
    processes get from this machine's two cores (``--modes ...,2xserial`` after ``serial``).

    Each does the same work as the serial row, alone on "its" core; on a machine whose
    cores are independent, each takes the serial row's time. The factor by which they take
    longer bounds what ``parallel="processes"`` can reach: about ``0.5 x factor`` of serial.
    """
    cmd = [sys.executable, __file__, "--folder", str(folder), "--one", str(n), "serial"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    rows = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode:
            print(f"| {n} | 2 x serial at once | failed: {err.strip().splitlines()[-1]} |")
            return
        rows.append(json.loads(out.strip().splitlines()[-1]))
    walls = [r["wall"] for r in rows]
    factor = f"{sum(walls) / 2 / serial:.2f}x serial each" if serial else ""
    print(
        f"| {n:,} | 2 x serial at once | {walls[0]:.1f}, {walls[1]:.1f} | "
        f"{rows[0]['cpu']:.1f}, {rows[1]['cpu']:.1f} | | {factor} | | | |",
        flush=True,
    )
    if serial:
        print(
            f"  (two busy processes each run {sum(walls) / 2 / serial:.2f}x slower than one "
            f"alone: processes/dask cannot go much below {sum(walls) / 4 / serial:.2f}x serial "
            "here)",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--modes", default="serial,threads,processes,dask")
    ap.add_argument("--kerchunk-max", type=int, default=1000)
    ap.add_argument("--folder", default="/tmp/vz_many_files")
    ap.add_argument(
        "--memory",
        default="",
        help="also measure the client's combine memory at these sizes (e.g. 100000), from one "
        "parsed file's part repeated with each file's own path and times",
    )
    ap.add_argument("--one", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    folder = Path(args.folder)
    if args.one:
        n, mode = int(args.one[0]), args.one[1]
        row = _memory_only(folder, n) if mode == "memory" else _one(folder, n, mode)
        print(json.dumps(row))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    make_files(folder, max(sizes))
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    head = (
        "| files | method | wall s | CPU s (client) | ms/file | x serial | peak RSS MB "
        "| result MB | bytes/ref |"
    )
    print(head)
    print("|---" * 9 + "|")
    runs = [
        (n, args.modes.split(",") + (["kerchunk"] if n <= args.kerchunk_max else [])) for n in sizes
    ]
    runs += [(int(n), ["memory"]) for n in args.memory.split(",") if n]
    for n, modes in runs:
        serial = None
        for mode in modes:
            if mode == "2xserial":
                _two_serial(folder, n, serial)
                continue
            proc = subprocess.run(
                [sys.executable, __file__, "--folder", str(folder), "--one", str(n), mode],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                print(f"| {n} | {mode} | failed: {proc.stderr.strip().splitlines()[-1]} |")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if mode == "serial":
                serial = r["wall"]
            ratio = f"{r['wall'] / serial:.2f}" if serial else ""
            if mode == "memory":
                limit = 2 * r["nbytes"] / 2**20 + 300
                print(
                    f"| {n:,} | combine memory only | {r['wall']:.1f} | | {r['ms_per_file']:.3f} | | "
                    f"{r['rss_mb']:.0f} (before: {r['rss_before_mb']:.0f}; limit {limit:.0f}) | "
                    f"{r['nbytes'] / 1e6:.1f} | {r['bytes_per_ref']:.1f} |",
                    flush=True,
                )
                continue
            print(
                f"| {n:,} | {mode} | {r['wall']:.1f} | {r['cpu']:.1f} ({r.get('client_cpu', r['cpu']):.1f}) | "
                f"{r['ms_per_file']:.2f} | "
                f"{ratio} | {r['rss_mb']:.0f} | {r['nbytes'] / 1e6:.1f} | {r['bytes_per_ref']:.1f} |",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
