"""Time NetCDF3Parser on a many-variable header.

Run: ``.venv/bin/python benchmarks/netcdf3_header.py [file.nc]``. Without an argument it
uses ``ref_nccopy3_subset.nc`` (367 variables) from the shared real data, or, when that is
absent, a 367-variable file written with netCDF4-python into a temporary directory.

It reports the header parse alone (bytes already in memory) and the whole parser call
(file size + header read through obstore, and building the Zarr metadata and manifests).
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

from _support import timings
from virtualizarr.parsers.netcdf3 import NetCDF3Parser, parse_header
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.testing.ground_truth import real_file


def best_ms(func: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls, in milliseconds (after one warm-up call)."""
    return min(timings(func, repeat)[0]) * 1000


def synthetic_file(directory: Path, n_vars: int = 367) -> Path:
    """A CDF-1 file with ``n_vars`` small variables (half of them record variables)."""
    import netCDF4

    path = directory / "many_vars.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("time", None)
        nc.createDimension("x", 4)
        for i in range(n_vars):
            dims = ("time", "x") if i % 2 else ("x",)
            var = nc.createVariable(f"var_{i:03d}", "f4", dims)
            var.setncattr("units", "m")
            var.setncattr("long_name", f"variable number {i}")
            var[...] = 1.0 if i % 2 == 0 else [[1.0] * 4] * 10
    return path


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")  # zarr's note on char (null_terminated_bytes) arrays
    with tempfile.TemporaryDirectory() as tmp:
        if argv:
            path = Path(argv[0])
        elif real_file("netcdf3/ref_nccopy3_subset.nc").exists():
            path = real_file("netcdf3/ref_nccopy3_subset.nc")
        else:
            path = synthetic_file(Path(tmp))
        data = path.read_bytes()
        header = parse_header(data, str(path))
        parse_ms = best_ms(lambda: parse_header(data, str(path)), repeat=50)
        parser, registry = NetCDF3Parser(), ObjectStoreRegistry()
        call_ms = best_ms(lambda: parser(str(path), registry), repeat=10)
    print(f"{path.name}: {len(header.variables)} variables, header {header.size} bytes")
    print(f"  parse_header          {parse_ms:8.2f} ms")
    print(f"  NetCDF3Parser()(url)  {call_ms:8.2f} ms  (header + Zarr metadata + manifests)")


if __name__ == "__main__":
    main(sys.argv[1:])
