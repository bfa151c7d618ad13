"""The main job, end to end on a small sample archive (``make demo``).

1. Writes a few NetCDF4 files with netCDF4 (compressed, chunked, CF-packed) on first run.
2. Virtualizes and combines them along time with ``open_virtual_mfdataset``.
3. Writes kerchunk JSON and an Icechunk repository, reopens both with their real readers
   (fsspec's ReferenceFileSystem, Icechunk) and reads through our own ManifestStore.
4. Prints the dataset and a computed value, checked against netCDF4's reading of the originals.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["main", "make_sample_archive"]


def make_sample_archive(directory: Path, n_files: int = 4, steps: int = 6) -> list[Path]:
    """Write ``n_files`` NetCDF4 files of ``steps`` time steps each (skipped if present)."""
    import netCDF4

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(42)
    lat = np.linspace(-87.5, 87.5, 36, dtype="f4")
    lon = np.arange(0, 360, 5, dtype="f4")
    for i in range(n_files):
        path = directory / f"air_{i:02d}.nc"
        paths.append(path)
        if path.exists():
            continue
        tmp = path.with_suffix(".tmp")
        with netCDF4.Dataset(tmp, "w", format="NETCDF4") as nc:
            nc.title = "VirtualiZarr demo sample"
            nc.createDimension("time", None)
            nc.createDimension("lat", lat.size)
            nc.createDimension("lon", lon.size)
            t = nc.createVariable("time", "f8", ("time",))
            t.units, t.calendar = "hours since 2020-01-01", "standard"
            t[:] = np.arange(i * steps, (i + 1) * steps) * 6.0
            nc.createVariable("lat", "f4", ("lat",))[:] = lat
            nc.createVariable("lon", "f4", ("lon",))[:] = lon
            nc["lat"].units, nc["lon"].units = "degrees_north", "degrees_east"
            air = nc.createVariable(
                "air", "f4", ("time", "lat", "lon"), zlib=True, shuffle=True, chunksizes=(1, 18, 36)
            )
            air.units = "K"
            base = 273.15 + 30 * np.cos(np.deg2rad(lat))[:, None] + np.zeros((lat.size, lon.size))
            air[:] = base[None] + rng.normal(scale=2.0, size=(steps, lat.size, lon.size))
            pr = nc.createVariable(
                "precip",
                "i2",
                ("time", "lat", "lon"),
                zlib=True,
                chunksizes=(2, 36, 72),
                fill_value=-32767,
            )
            pr.scale_factor, pr.add_offset, pr.units = 0.01, 0.0, "mm"
            values = rng.gamma(0.5, 2.0, size=(steps, lat.size, lon.size))
            mask = np.zeros(values.shape, dtype=bool)
            mask[0, :3, :3] = True  # stored as _FillValue, read back as NaN
            pr[:] = np.ma.masked_array(values, mask=mask)
        tmp.rename(path)
    return paths


def _check(label: str, got: float, expected: float) -> None:
    ok = np.isclose(got, expected, rtol=1e-6)
    print(f"  {label:<34} {got:.6f}  {'OK' if ok else 'MISMATCH'}")
    if not ok:
        raise SystemExit(f"{label}: {got} != expected {expected}")


def main(argv: list[str] | None = None) -> int:
    """Run the demo in ``demo_output/`` (or the folder given as the first argument)."""
    import icechunk

    import virtualizarr as vz
    from virtualizarr.readers import open_icechunk

    icechunk.set_logs_filter("error")  # its local-storage concurrency warning is not for this demo

    out = Path((argv or sys.argv[1:] or ["demo_output"])[0]).resolve()
    files = make_sample_archive(out / "sample")
    print(f"Sample archive: {len(files)} NetCDF4 files in {out / 'sample'}")

    t0 = time.perf_counter()
    ds = vz.open_virtual_mfdataset(
        str(out / "sample" / "air_*.nc"), parallel="threads", progress=False
    )
    print(
        f"\nVirtualized and combined in {time.perf_counter() - t0:.2f} s "
        f"({ds.vz.nrefs()} chunk references, {ds.vz.nbytes} bytes in memory):"
    )
    print(ds)

    with xr.open_mfdataset(sorted(map(str, files)), engine="netcdf4", combine="by_coords") as orig:
        expected_air = float(orig["air"].mean())
        expected_pr = float(orig["precip"].sum())

    print("\nReading real values back, checked against netCDF4 on the original files:")
    store_ds = xr.open_zarr(ds.vz.to_store(), consolidated=False, zarr_format=3)
    _check("ManifestStore: mean(air)", float(store_ds["air"].mean()), expected_air)
    _check("ManifestStore: sum(precip)", float(store_ds["precip"].sum()), expected_pr)

    refs = out / "combined.json"
    ds.vz.to_kerchunk(refs, format="json")
    kc = xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={"consolidated": False, "storage_options": {"fo": str(refs)}},
    )
    _check("kerchunk JSON (fsspec): mean(air)", float(kc["air"].mean()), expected_air)
    _check("kerchunk JSON (fsspec): sum(precip)", float(kc["precip"].sum()), expected_pr)

    repo = out / "combined.icechunk"
    if repo.exists():
        shutil.rmtree(repo)
    ds.vz.to_icechunk(str(repo))
    ic = open_icechunk(str(repo))
    _check("Icechunk: mean(air)", float(ic["air"].mean()), expected_air)
    _check("Icechunk: sum(precip)", float(ic["precip"].sum()), expected_pr)
    print(f"\nWrote {refs} and {repo}. All values match the original files.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
