"""Open + combine many NetCDF4 files, then read a mean through each reader, side by side.

Files: N NetCDF4 files (default 100) of 24 x 180 x 360, three float32 variables chunked
(1, 90, 180) with zlib + shuffle (N * 288 references). Cached in a temp folder between runs.

    python benchmarks/combine_and_read.py [--n-files 100] [--repeat 3]

Columns: seconds (median of --repeat runs) and the ratio to the reference row.
Targets (issue 4): open + combine >= 4x faster than kerchunk; the mean read through our
ManifestStore >= 2x faster than xr.open_mfdataset and faster than fsspec reference://.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

VARS = ("t2m", "u10", "v10")


def make_files(folder: Path, n: int) -> list[Path]:
    import netCDF4

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    lat = np.linspace(-89.5, 89.5, 180)
    lon = np.linspace(0.5, 359.5, 360)
    for i in range(n):
        p = folder / f"f{i:03d}.nc"
        paths.append(p)
        if p.exists():
            continue
        tmp = p.with_suffix(".tmp")
        with netCDF4.Dataset(tmp, "w") as nc:
            nc.createDimension("time", 24)
            nc.createDimension("lat", 180)
            nc.createDimension("lon", 360)
            t = nc.createVariable("time", "f8", ("time",))
            t.units = "hours since 2000-01-01"
            t[:] = np.arange(i * 24, (i + 1) * 24)
            nc.createVariable("lat", "f4", ("lat",))[:] = lat
            nc.createVariable("lon", "f4", ("lon",))[:] = lon
            base = np.cos(np.deg2rad(lat))[:, None] * np.sin(np.deg2rad(lon))[None, :]
            for k, name in enumerate(VARS):
                v = nc.createVariable(
                    name,
                    "f4",
                    ("time", "lat", "lon"),
                    zlib=True,
                    shuffle=True,
                    chunksizes=(1, 90, 180),
                )
                v[:] = (base[None] * (k + 1) + np.arange(24)[:, None, None] * 0.01 + i).astype("f4")
        tmp.rename(p)
    return paths


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-files", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "vz_bench_combine"))
    args = ap.parse_args()

    import virtualizarr as vz

    folder = Path(args.folder) / f"n{args.n_files}"
    paths = make_files(folder, args.n_files)
    urls = [str(p) for p in paths]
    rows: list[tuple[str, str, float]] = []

    def kerchunk_combine() -> dict:
        from kerchunk.combine import MultiZarrToZarr
        from kerchunk.hdf import SingleHdf5ToZarr

        singles = []
        for u in urls:
            with open(u, "rb") as f:
                singles.append(SingleHdf5ToZarr(f, u, inline_threshold=0).translate())
        return MultiZarrToZarr(
            singles, concat_dims=["time"], identical_dims=["lat", "lon"]
        ).translate()

    t_kc, _ = timed(kerchunk_combine, 1)
    rows.append(("open + combine", "kerchunk SingleHdf5ToZarr x N + MultiZarrToZarr", t_kc))
    t_vz, ds = timed(lambda: vz.open_virtual_mfdataset(urls, progress=False), args.repeat)
    rows.append(("open + combine", "virtualizarr open_virtual_mfdataset (serial)", t_vz))
    t_vzt, _ = timed(
        lambda: vz.open_virtual_mfdataset(urls, parallel="threads", progress=False), args.repeat
    )
    rows.append(("open + combine", "virtualizarr open_virtual_mfdataset (threads)", t_vzt))

    work = Path(tempfile.mkdtemp(prefix="vz_bench_out_"))
    try:
        refs_path = work / "refs.json"
        ds.vz.to_kerchunk(refs_path, format="json")
        repo = work / "repo.icechunk"
        ds.vz.to_icechunk(str(repo))
        var = VARS[0]

        def mean_netcdf() -> float:
            with xr.open_mfdataset(
                urls, engine="netcdf4", combine="by_coords", parallel=False
            ) as d:
                return float(d[var].mean())

        def mean_fsspec() -> float:
            d = xr.open_dataset(
                "reference://",
                engine="zarr",
                chunks=None,
                backend_kwargs={"consolidated": False, "storage_options": {"fo": str(refs_path)}},
            )
            return float(d[var].mean())

        def mean_icechunk() -> float:
            from virtualizarr.writers.icechunk import open_icechunk

            return float(open_icechunk(str(repo), chunks=None)[var].mean())

        def mean_store() -> float:
            d = xr.open_dataset(
                ds.vz.to_store(), engine="zarr", consolidated=False, zarr_format=3, chunks=None
            )
            return float(d[var].mean())

        results = {}
        for label, fn in [
            ("xr.open_mfdataset (netCDF4)", mean_netcdf),
            ("fsspec reference:// on our kerchunk JSON", mean_fsspec),
            ("Icechunk (virtual chunks)", mean_icechunk),
            ("virtualizarr ManifestStore", mean_store),
        ]:
            try:
                t, value = timed(fn, args.repeat)
            except Exception as e:  # noqa: BLE001  (one failing reader must not hide the other rows)
                print(f"{label}: failed: {type(e).__name__}: {e}")
                continue
            results[label] = value
            rows.append((f"mean({var})", label, t))
        values = list(results.values())
        assert all(np.isclose(v, values[0], rtol=1e-6) for v in values), results
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n_refs = ds.vz.nrefs()
    print(
        f"\n{args.n_files} files, {n_refs} references; median of {args.repeat} runs (kerchunk combine: 1 run)\n"
    )
    print(f"{'task':<16} {'method':<50} {'seconds':>9} {'vs first':>9}")
    first: dict[str, float] = {}
    for task, label, t in rows:
        first.setdefault(task, t)
        print(f"{task:<16} {label:<50} {t:9.3f} {first[task] / t:8.2f}x")
    print(json.dumps({"n_files": args.n_files, "rows": rows}))


if __name__ == "__main__":
    main()
