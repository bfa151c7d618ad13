"""Remote virtualization and reads through a server that behaves like a distant object store.

Serves the real sample files and generated ones through ``../shared/tools/latency_server.py``
and/or ``benchmarks/latency_server.mjs`` (``--server python|node|both``: one table per server;
default 30 ms before each response, 200 MB/s per response) on 127.0.0.1 and prints, per
workload, the requests, bytes, seconds and server CPU seconds of VirtualiZarr (default engine),
of its h5py path (``HDFParser(engine="h5py")``) and of kerchunk over fsspec, side by side
(the Python server's own CPU, ~0.5 ms per request on this machine, is part of the seconds):

- one NetCDF4 file of 3 variables x 96 chunks with coordinates loaded, as in issue 10's first
  row: a 4.8 MB one (values kept to 3 decimals) and the 12.9 MB first file of ``--n-files``
  (full-precision values; its chunk-index nodes lie between megabytes of data);
- one NetCDF4 file of 140,160 chunks (``--big``; generated once, 61 MB);
- ``--n-files`` such files (9-13 MB each) with ``open_virtual_mfdataset(parallel="threads")``;
- a 1.6 MB NetCDF4 file of 2,001 small datasets;
- the 744-message ERA5 GRIB file of the sample data;
- the mean of one variable of 10 files through ``ds.vz.open_data()`` and through fsspec
  ``reference://`` on the same kerchunk references;
- every real sample file (``--all-real``): transfer against the budget 1.1 x size + 64 KiB.

    python benchmarks/remote.py [--latency-ms 30] [--mbps 200] [--n-files 20] [--big] [--all-real]
        [--server python|node|both]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _support import REAL, SERVER_KINDS, LatencyServer


def measure(server: LatencyServer, fn: Callable[[], Any]) -> tuple[str, Any]:
    """``"N req, X MB, T s, server CPU"`` of running ``fn`` (requests include HEADs)."""
    server.stats()
    c = server.cpu()
    t = time.perf_counter()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001  (a failing row must not stop the table)
        return f"failed: {type(e).__name__}: {str(e)[:60]}", None
    dt = time.perf_counter() - t
    cpu = server.cpu() - c
    s = server.stats()
    req = s["requests"] + s["heads"]
    return f"{req:>6} req {s['bytes'] / 1e6:8.2f} MB {dt:6.2f} s srv {cpu:4.2f}", out


def engines(server: LatencyServer, url: str, **kwargs: Any) -> list[str]:
    """The cells of one file's row: our default engine, our h5py path, kerchunk (fsspec)."""
    return [
        measure(server, lambda: vz_open(url, **kwargs))[0],
        measure(server, lambda: vz_open(url, engine="h5py", **kwargs))[0],
        measure(server, lambda: kerchunk_hdf(url))[0],
    ]


# -- generated files ---------------------------------------------------------------------------


def make_many_chunks(path: Path) -> Path:
    """A NetCDF4 file of 140,160 chunks of 100 float32 (58 MB)."""
    import h5py

    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with h5py.File(tmp, "w") as f:
            data = np.random.default_rng(0).standard_normal(140_160 * 100).astype("f4")
            f.create_dataset("v", data=data, chunks=(100,))
        tmp.rename(path)
    return path


def make_many_datasets(path: Path) -> Path:
    """A 0.86 MB NetCDF4 file of 2,001 small datasets."""
    import h5py

    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with h5py.File(tmp, "w") as f:
            f.create_dataset("x", data=np.arange(100, dtype="f4"))
            for i in range(2000):
                f.create_dataset(f"v{i:04d}", data=np.full(100, i, dtype="f4"))
        tmp.rename(path)
    return path


# -- the tools being compared -------------------------------------------------------------------


def vz_open(url: str, engine: str | None = None, **kwargs: Any) -> Any:
    import virtualizarr as vz

    parser = None
    if engine is not None:
        from virtualizarr.parsers import HDFParser

        parser = HDFParser(engine=engine)
    return vz.open_virtual_dataset(url, parser=parser, **kwargs)


def kerchunk_hdf(url: str) -> dict[str, Any]:
    import fsspec
    from kerchunk.hdf import SingleHdf5ToZarr

    with fsspec.open(url, "rb") as f:
        return SingleHdf5ToZarr(f, url).translate()


def row(name: str, cells: list[str]) -> None:
    print(f"{name:<44}" + " | ".join(f"{c:<42}" for c in cells), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=float, default=30)
    ap.add_argument("--mbps", type=float, default=200)
    ap.add_argument("--n-files", type=int, default=20)
    ap.add_argument("--big", action="store_true", help="include the 140,160-chunk file")
    ap.add_argument("--all-real", action="store_true", help="check every real file's transfer")
    ap.add_argument("--server", choices=[*SERVER_KINDS, "both"], default="python")
    ap.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "vz_bench_remote"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    sys.path.insert(0, str(HERE))
    from combine_and_read import make_files

    folder = Path(args.folder)
    root = folder / "served"
    root.mkdir(parents=True, exist_ok=True)
    n_files = max(args.n_files, 10)
    files = make_files(folder / "nc", n_files)
    gen = folder / "gen"
    gen.mkdir(exist_ok=True)
    links = {"nc": folder / "nc", "gen": gen}
    if REAL.exists():
        links["real"] = REAL
    for name, target in links.items():
        if not (root / name).exists():
            (root / name).symlink_to(target, target_is_directory=True)
    many_ds = make_many_datasets(gen / "many_datasets.nc")
    # issue 10's first row: 3 variables x 96 chunks with coordinates, 4.8 MB (the same files
    # with values kept to 3 decimals, as many archives keep them)
    five = make_files(gen / "five_mb", 1, least_significant_digit=3)[0]
    big = make_many_chunks(gen / "many_chunks.nc") if args.big else None

    kinds = SERVER_KINDS if args.server == "both" else (args.server,)
    for kind in kinds:
        with LatencyServer(root, args.latency_ms, args.mbps, kind=kind) as server:
            table(server, args, files, many_ds, big, five)


def table(
    server: LatencyServer,
    args: argparse.Namespace,
    files: list[Path],
    many_ds: Path,
    big: Path | None,
    five: Path,
) -> None:
    """The rows of every workload through ``server``."""
    import virtualizarr as vz

    base = server.url
    nc_urls = [f"{base}/nc/{p.name}" for p in files]
    # imports and first-call costs out of the way (the GRIB parser's decoder library too)
    vz_open(f"{base}/gen/many_datasets.nc", loadable_variables=[])
    gribs = sorted((REAL / "grib").glob("*.grib*"), key=lambda p: p.stat().st_size)
    if gribs:
        vz_open(f"{base}/real/grib/{gribs[0].name}", loadable_variables=[])
    print(
        f"\n{server.kind} server ({server.proc.args[1]}): latency {args.latency_ms:g} ms, "
        f"{args.mbps:g} MB/s per response; requests include HEADs; srv: the server's CPU "
        f"seconds; load {os.getloadavg()[0]:.1f}\n",
        flush=True,
    )
    probe = server.reused_connection_ms(f"/nc/{files[0].name}")
    print(
        "small ranges one after another on one connection: "
        + ", ".join(f"{ms:.0f}" for ms in probe)
        + " ms (see LatencyServer.reused_connection_ms)\n",
        flush=True,
    )
    row("workload", ["virtualizarr", "virtualizarr, h5py path", "kerchunk (fsspec)"])
    row("-" * 44, ["-" * 42] * 3)

    fu = f"{base}/gen/five_mb/{five.name}"
    row(
        f"NetCDF4, 3 vars x 96 chunks, coords ({five.stat().st_size / 1e6:.1f} MB)",
        engines(server, fu),
    )
    url = nc_urls[0]
    row(
        f"NetCDF4, 3 vars x 96 chunks, coords ({files[0].stat().st_size / 1e6:.1f} MB)",
        engines(server, url),
    )
    if big is not None:
        bu = f"{base}/gen/{big.name}"
        row(
            f"140,160-chunk NetCDF4 ({big.stat().st_size / 1e6:.0f} MB)",
            engines(server, bu, loadable_variables=[]),
        )

    def mf(engine: str | None = None) -> Any:
        from virtualizarr.parsers import HDFParser

        return vz.open_virtual_mfdataset(
            nc_urls[: args.n_files],
            parser=HDFParser(engine=engine) if engine else None,
            combine="nested",
            concat_dim="time",
            parallel="threads",
        )

    sizes = [p.stat().st_size / 1e6 for p in files[: args.n_files]]
    row(
        f"{args.n_files} x {min(sizes):.1f}-{max(sizes):.1f} MB files, parallel='threads'",
        [measure(server, mf)[0], measure(server, lambda: mf("h5py"))[0], ""],
    )
    mu = f"{base}/gen/{many_ds.name}"
    row(
        f"NetCDF4 of 2,001 datasets ({many_ds.stat().st_size / 1e6:.2f} MB)",
        engines(server, mu, loadable_variables=[]),
    )
    grib = REAL / "grib" / "era5-2mt-2019-03-uk.grib"
    if grib.exists():
        gu = f"{base}/real/grib/{grib.name}"
        row(
            f"GRIB, 744 messages ({grib.stat().st_size / 1e6:.1f} MB)",
            [measure(server, lambda: vz_open(gu, loadable_variables=[]))[0], "", ""],
        )

    # reads: the mean of one variable of 10 files
    ten = vz.open_virtual_mfdataset(nc_urls[:10], combine="nested", concat_dim="time")
    var = next(iter(ten.data_vars))
    refs = ten.vz.to_kerchunk(format="dict")

    def read_vz() -> float:
        return float(ten.vz.open_data()[var].mean())

    def read_fsspec() -> float:
        import fsspec
        import xarray as xr
        import zarr

        fs = fsspec.filesystem(
            "reference",
            fo=refs,
            remote_protocol="http",
            asynchronous=True,  # zarr 3 wants an async filesystem
            remote_options={"asynchronous": True},
        )
        store = zarr.storage.FsspecStore(fs, read_only=True, path="")
        ds = xr.open_zarr(store, consolidated=False, zarr_format=2, chunks=None)
        return float(ds[var].mean())

    a, va = measure(server, read_vz)
    b, vb = measure(server, read_fsspec)
    row(f"mean of {var!r} of 10 files (open_data)", [a, "", b])
    if va is not None and vb is not None and not np.isclose(va, vb):
        print(f"  values differ: {va} vs {vb}")

    tiny = []
    if REAL.exists():
        for d in sorted(p for p in REAL.iterdir() if p.is_dir()):
            cands = sorted(
                (p for p in d.iterdir() if p.is_file() and p.suffix not in (".md", ".json")),
                key=lambda p: p.stat().st_size,
            )
            if cands:
                tiny.append(cands[0])
    for p in tiny:
        u = f"{base}/real/{p.parent.name}/{p.name}"
        row(
            f"tiny {p.parent.name}: {p.name[:24]} ({p.stat().st_size} B)",
            [measure(server, lambda u=u: vz_open(u, loadable_variables=[]))[0], "", ""],
        )

    if args.all_real and REAL.exists():
        print("\nevery real file: transfer vs 1.1 x size + 64 KiB (parse, no coordinates)")
        over = 0
        for p in sorted(REAL.rglob("*")):
            if not p.is_file() or p.suffix in (".md",) or p.name == "ground_truth.json":
                continue
            if any(part.endswith(".zarr") for part in p.parts):
                continue  # a Zarr store's pieces are not files to virtualize
            u = f"{base}/real/{p.relative_to(REAL).as_posix()}"
            server.stats()
            try:
                vz_open(u, loadable_variables=[])
                ok = "ok"
            except Exception as e:  # noqa: BLE001  (reported in the table)
                ok = f"error {type(e).__name__}"
            s = server.stats()
            budget = 1.1 * p.stat().st_size + 65536
            flag = "" if s["bytes"] <= budget else "  OVER BUDGET"
            over += bool(flag)
            print(
                f"  {p.relative_to(REAL).as_posix()[:60]:<60} {p.stat().st_size:>10} B "
                f"{s['requests'] + s['heads']:>5} req {s['bytes']:>10} B {ok}{flag}"
            )
        print(f"{over} files over budget")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
