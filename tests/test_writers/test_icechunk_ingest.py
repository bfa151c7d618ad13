"""ingest_icechunk: many files in committed batches, and a real interruption then a resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

icechunk = pytest.importorskip("icechunk")
pytest.importorskip("netCDF4")
pytest.importorskip("virtualizarr.parsers.hdf5")

from tests.test_mfdataset import STEPS, write_file
from virtualizarr import open_virtual_mfdataset
from virtualizarr.errors import ParserError
from virtualizarr.ingest import ingest_icechunk, ingested_files
from virtualizarr.manifests.manifest import normalize_path

N = 12


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    d = tmp_path / "nc"
    d.mkdir()
    paths = [d / f"f{i:02d}.nc" for i in range(N)]
    for i, p in enumerate(paths):
        write_file(p, i)
    return paths


def read(repo_path: Path) -> xr.Dataset:
    from virtualizarr.readers import open_icechunk

    return open_icechunk(str(repo_path)).load()


def commits(repo_path: Path) -> list[dict]:
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(repo_path)))
    return [s.metadata for s in repo.ancestry(branch="main")]


def reference(files: list[Path]) -> xr.Dataset:
    with xr.open_mfdataset(
        files, engine="netcdf4", compat="override", coords="minimal", data_vars="minimal"
    ) as ds:
        return ds.load()


def test_batches_commit_each(files, tmp_path):
    repo = tmp_path / "repo"
    report = ingest_icechunk([str(f) for f in files], str(repo), append_dim="time", batch_size=5)
    assert len(report.snapshots) == 3  # 5 + 5 + 2 files
    assert report.ingested == N
    assert report.already == 0
    metas = [m["virtualizarr_ingest"] for m in commits(repo) if "virtualizarr_ingest" in m]
    assert sorted(len(m["files"]) for m in metas) == [2, 5, 5]
    got, want = read(repo), reference(files)
    assert got.sizes["time"] == N * STEPS
    for name in ("air", "pr", "time", "lat"):
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)
    # run again: everything is there already, nothing is committed
    again = ingest_icechunk([str(f) for f in files], str(repo), append_dim="time", batch_size=5)
    assert again.snapshots == []
    assert again.already == N


def test_interrupted_ingestion_resumes_from_the_last_commit(files, tmp_path):
    repo = tmp_path / "repo"
    paths = [str(f) for f in files]
    # file 7 is damaged: the second batch (files 4..7) raises, after batch one was committed
    good = files[7].read_bytes()
    files[7].write_bytes(good[:200])
    with pytest.raises(ParserError, match=r"f07\.nc"):
        ingest_icechunk(paths, str(repo), append_dim="time", batch_size=4)
    storage = icechunk.local_filesystem_storage(str(repo))
    done = ingested_files(icechunk.Repository.open(storage))
    assert done == {normalize_path(p) for p in paths[:4]}
    assert read(repo).sizes["time"] == 4 * STEPS  # nothing of the failed batch reached main

    files[7].write_bytes(good)  # repaired: the rerun continues with files 4..11
    report = ingest_icechunk(paths, str(repo), append_dim="time", batch_size=4)
    assert report.already == 4
    assert report.ingested == N - 4
    assert len(report.snapshots) == 2
    got, want = read(repo), reference(files)
    np.testing.assert_array_equal(got["time"].values, want["time"].values)
    np.testing.assert_array_equal(got["air"].values, want["air"].values)
    # the same references as one ingestion in one go
    one_go = open_virtual_mfdataset(paths)
    assert got.sizes == one_go.sizes


def test_skip_records_failed_files_and_a_resume_does_not_retry_them(files, tmp_path):
    repo = tmp_path / "repo"
    paths = [str(f) for f in files[:6]]
    files[2].write_bytes(b"not a netcdf file at all" * 10)
    report = ingest_icechunk(paths, str(repo), append_dim="time", batch_size=3, on_error="skip")
    assert list(report.failed) == [paths[2]]
    assert report.ingested == 5
    assert read(repo).sizes["time"] == 5 * STEPS
    again = ingest_icechunk(paths, str(repo), append_dim="time", batch_size=3, on_error="skip")
    assert again.snapshots == []
    assert again.already == 6


def test_old_import_location_still_works() -> None:
    """``ingest_icechunk`` moved to virtualizarr.ingest; the writer module still hands it out."""
    import virtualizarr.writers.icechunk as writer
    from virtualizarr import ingest
    from virtualizarr.writers.icechunk import IngestReport
    from virtualizarr.writers.icechunk import ingest_icechunk as old

    assert old is ingest.ingest_icechunk
    assert IngestReport is ingest.IngestReport
    assert writer.ingested_files is ingest.ingested_files
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        writer.nope  # noqa: B018
