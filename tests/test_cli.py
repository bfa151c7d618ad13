"""The ``virtualizarr`` command (info | kerchunk | icechunk | demo), run as a user runs it: in a
subprocess, on small NetCDF4 files written by the demo's own generator. Values read back through
the outputs are compared with netCDF4's reading of the files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("netCDF4")
pytest.importorskip("h5py")

from virtualizarr.demo import make_sample_archive


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "virtualizarr.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        check=False,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    # 4 steps: whole time chunks (the demo's files are chunked by 2 along time)
    return make_sample_archive(tmp_path_factory.mktemp("cli") / "sample", n_files=2, steps=4)


def _expected(files: list[Path]) -> float:
    with xr.open_mfdataset(sorted(map(str, files)), engine="netcdf4", combine="by_coords") as ds:
        return float(ds["air"].mean())


def test_sample_archive_is_what_the_demo_says(files: list[Path]) -> None:
    assert [f.name for f in files] == ["air_00.nc", "air_01.nc"]
    with xr.open_dataset(files[1], engine="netcdf4") as ds:
        assert ds.sizes["time"] == 4
        assert {"air", "precip"} <= set(ds.data_vars)


def test_info(files: list[Path]) -> None:
    out = run("info", str(files[0]))
    assert out.returncode == 0, out.stderr
    assert "air" in out.stdout
    assert "chunk references" in out.stdout


def test_info_stats_on_a_glob(files: list[Path]) -> None:
    out = run("info", str(files[0].parent / "air_*.nc"), "--stats")
    assert out.returncode == 0, out.stderr
    assert "requests" in out.stdout
    assert "time: 8" in out.stdout  # both files, combined along time


def test_kerchunk_json_reads_back_the_values(files: list[Path], tmp_path: Path) -> None:
    refs = tmp_path / "refs.json"
    out = run("kerchunk", *map(str, files), "-o", str(refs))
    assert out.returncode == 0, out.stderr
    assert refs.is_file()
    ds = xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={"consolidated": False, "storage_options": {"fo": str(refs)}},
    )
    assert ds.sizes["time"] == 8
    np.testing.assert_allclose(float(ds["air"].mean()), _expected(files), rtol=1e-6)


def test_icechunk_reads_back_the_values(files: list[Path], tmp_path: Path) -> None:
    pytest.importorskip("icechunk")
    from virtualizarr.readers import open_icechunk

    repo = tmp_path / "repo"
    out = run("icechunk", *map(str, files), "-o", str(repo))
    assert out.returncode == 0, out.stderr
    assert "committed" in out.stdout
    ds = open_icechunk(repo)
    np.testing.assert_allclose(float(ds["air"].mean()), _expected(files), rtol=1e-6)


def test_missing_file_fails_naming_it(tmp_path: Path) -> None:
    out = run("info", str(tmp_path / "nope.nc"))
    assert out.returncode != 0
    assert "nope.nc" in out.stderr


def test_bad_arguments_exit_2() -> None:
    out = run("kerchunk", "x.nc")  # -o is required
    assert out.returncode == 2
    assert "--output" in out.stderr


def test_console_script_is_installed() -> None:
    exe = shutil.which("virtualizarr", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("the virtualizarr console script is not installed next to this Python")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0
    assert "kerchunk" in out.stdout


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("icechunk")
    out = run("demo", str(tmp_path / "demo"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "All values match the original files" in out.stdout
    assert (tmp_path / "demo" / "combined.json").is_file()
    assert (tmp_path / "demo" / "combined.icechunk").is_dir()
