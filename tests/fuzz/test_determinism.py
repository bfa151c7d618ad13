"""Output does not depend on PYTHONHASHSEED: the same file gives the same kerchunk JSON bytes.

Set iteration order changes with the hash seed; anything that orders variables, coordinates
or attributes by a set would make ``to_kerchunk`` write different bytes on every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import HAVE_REAL_DATA
from virtualizarr.testing.ground_truth import REAL_DATA

netCDF4 = pytest.importorskip("netCDF4")

_SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
from virtualizarr import open_virtual_dataset
for src, out in zip(sys.argv[1::2], sys.argv[2::2]):
    ds = open_virtual_dataset(src, loadable_variables=[])
    ds.vz.to_kerchunk(out, format="json")
"""


def _refs_bytes(paths: list[Path], outdir: Path, seed: int) -> list[bytes]:
    """The kerchunk JSON of each file, written by one child process with ``seed``."""
    outdir.mkdir()
    outs = [outdir / f"{i}.json" for i in range(len(paths))]
    args = [str(p) for pair in zip(paths, outs) for p in pair]
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    subprocess.run([sys.executable, "-c", _SCRIPT, *args], check=True, env=env, timeout=300)
    return [o.read_bytes() for o in outs]


def _many_coordinates(path: Path) -> Path:
    """A netCDF-3 file whose variables name 8 auxiliary coordinates (set order varies)."""
    with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC") as nc:
        nc.createDimension("x", 3)
        names = [f"c{i}" for i in range(8)]
        for n in names:
            nc.createVariable(n, "f4", ("x",))[:] = np.arange(3)
        v = nc.createVariable("data", "f8", ("x",))
        v.coordinates = " ".join(names)
        v[:] = np.arange(3.0)
        nc.coordinates = "c0 c1"
    return path


def _cases(tmp_path: Path) -> list[Path]:
    files = [_many_coordinates(tmp_path / "coords.nc")]
    if HAVE_REAL_DATA:  # ones whose bytes changed with the seed before
        files += [
            REAL_DATA / "netcdf3/ref_null_byte_padding_test.nc",
            REAL_DATA / "netcdf4_hdf5/20171025_2056.Cloud_Top_Height.nc",
        ]
    return files


def test_kerchunk_bytes_do_not_depend_on_hash_seed(tmp_path: Path) -> None:
    paths = _cases(tmp_path)
    first = _refs_bytes(paths, tmp_path / "seed1", seed=1)
    second = _refs_bytes(paths, tmp_path / "seed2", seed=2)
    for path, a, b in zip(paths, first, second):
        assert a == b, f"{path.name}: the kerchunk JSON differs between PYTHONHASHSEED 1 and 2"
    # the coordinates attribute keeps the file's order (not a set's)
    assert b"c0 c1 c2 c3 c4 c5 c6 c7" in first[0]
