"""Open + combine many NetCDF4 files, then read a mean through each reader, side by side.

Files: N NetCDF4 files (default 100) of 24 x 180 x 360, three float32 variables chunked
(1, 90, 180) with zlib + shuffle (N * 288 references). Cached in a temp folder between runs.

    python benchmarks/combine_and_read.py [--n-files 100] [--repeat 3]

Columns: seconds (median of --repeat runs, interleaved after one warm-up run of every
method, so each reads from a warm OS file cache) and the ratio to the first row of the task.
ManifestStore is timed with zarr's default codec pipeline and with its FusedCodecPipeline
(set around the open only; see the ManifestStore docstring).
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


def make_files(folder: Path, n: int, least_significant_digit: int | None = None) -> list[Path]:
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
                    least_significant_digit=least_significant_digit,
                )
                v[:] = (base[None] * (k + 1) + np.arange(24)[:, None, None] * 0.01 + i).astype("f4")
        tmp.rename(p)
    return paths


def interleaved(
    fns: dict[str, Callable[[], object]], repeat: int
) -> dict[str, tuple[float, object]]:
    """Median seconds and last result of each function.

    Each runs once untimed first (imports, OS file cache, fork server), then the timed
    runs go round-robin, so load from other processes hits every method alike.
    """
    results: dict[str, object] = {label: fn() for label, fn in fns.items()}
    times: dict[str, list[float]] = {label: [] for label in fns}
    for _ in range(repeat):
        for label, fn in fns.items():
            t0 = time.perf_counter()
            results[label] = fn()
            times[label].append(time.perf_counter() - t0)
    return {label: (statistics.median(times[label]), results[label]) for label in fns}


FUSED = {"codec_pipeline.path": "zarr.core.codec_pipeline.FusedCodecPipeline"}


def read_rows(ds: xr.Dataset, urls: list[str], repeat: int) -> list[tuple[str, str, float]]:
    """Time reading a mean through each reader of the combined virtual dataset ``ds``."""
    import zarr

    rows: list[tuple[str, str, float]] = []
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
            from virtualizarr.readers import open_icechunk

            return float(open_icechunk(str(repo), chunks=None)[var].mean())

        def mean_store() -> float:
            d = xr.open_dataset(
                ds.vz.to_store(), engine="zarr", consolidated=False, zarr_format=3, chunks=None
            )
            return float(d[var].mean())

        def mean_store_fused() -> float:
            # the pipeline is chosen when the array is opened: scoping the open is enough
            with zarr.config.set(FUSED):
                d = xr.open_dataset(
                    ds.vz.to_store(), engine="zarr", consolidated=False, zarr_format=3, chunks=None
                )
            return float(d[var].mean())

        readers = {
            "xr.open_mfdataset (netCDF4)": mean_netcdf,
            "fsspec reference:// on our kerchunk JSON": mean_fsspec,
            "Icechunk (virtual chunks)": mean_icechunk,
            "virtualizarr ManifestStore (zarr default pipeline)": mean_store,
            "virtualizarr ManifestStore (FusedCodecPipeline)": mean_store_fused,
        }
        working = {}
        for label, fn in readers.items():
            try:
                fn()
            except Exception as e:  # noqa: BLE001  (one failing reader must not hide the other rows)
                print(f"{label}: failed: {type(e).__name__}: {e}")
                continue
            working[label] = fn
        means = interleaved(working, repeat)
        rows += [(f"mean({var})", label, t) for label, (t, _) in means.items()]
        values = [v for _, v in means.values()]
        assert all(np.isclose(v, values[0], rtol=1e-6) for v in values), means
    finally:
        shutil.rmtree(work, ignore_errors=True)

    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-files", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "vz_bench_combine"))
    ap.add_argument("--skip-read", action="store_true", help="time only the open + combine rows")
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

    combine = interleaved(
        {
            "kerchunk SingleHdf5ToZarr x N + MultiZarrToZarr": kerchunk_combine,
            "virtualizarr open_virtual_mfdataset (serial)": lambda: vz.open_virtual_mfdataset(
                urls, progress=False
            ),
            "virtualizarr open_virtual_mfdataset (threads)": lambda: vz.open_virtual_mfdataset(
                urls, parallel="threads", progress=False
            ),
            "virtualizarr open_virtual_mfdataset (processes)": lambda: vz.open_virtual_mfdataset(
                urls, parallel="processes", progress=False
            ),
        },
        args.repeat,
    )
    rows += [("open + combine", label, t) for label, (t, _) in combine.items()]
    ds = combine["virtualizarr open_virtual_mfdataset (serial)"][1]
    assert isinstance(ds, xr.Dataset)

    if not args.skip_read:
        rows += read_rows(ds, urls, args.repeat)

    n_refs = ds.vz.nrefs()
    print(
        f"\n{args.n_files} files, {n_refs} references; median of {args.repeat} interleaved runs "
        "after one untimed warm-up run of each method\n"
    )
    print(f"{'task':<16} {'method':<52} {'seconds':>9} {'vs first':>9}")
    first: dict[str, float] = {}
    for task, label, t in rows:
        first.setdefault(task, t)
        print(f"{task:<16} {label:<52} {t:9.3f} {first[task] / t:8.2f}x")
    print(json.dumps({"n_files": args.n_files, "rows": rows}))


if __name__ == "__main__":
    main()
