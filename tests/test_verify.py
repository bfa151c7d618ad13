"""``virtualizarr verify``: references checked against the real files they point into."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

netCDF4 = pytest.importorskip("netCDF4")
pytest.importorskip("h5py")

import virtualizarr as vz
from virtualizarr.manifests.sources import SourceRecord, records_of
from virtualizarr.verify import verify


def write_nc(path: Path, *, zlib: bool = True, offset: float = 0.0) -> Path:
    """A netCDF-4 file with one chunked variable ``v`` of 4 chunks."""
    with netCDF4.Dataset(path, "w") as f:
        f.createDimension("t", 8)
        f.createDimension("x", 10)
        v = f.createVariable("v", "f4", ("t", "x"), chunksizes=(2, 10), zlib=zlib)
        v[:] = np.arange(80, dtype="f4").reshape(8, 10) + offset
    return path


def refs_of(path: Path, out: Path) -> Path:
    ds = vz.open_virtual_dataset(str(path), loadable_variables=[])
    ds.vz.to_kerchunk(str(out), format="json")
    return out


def chunk_entry(refs: Path, key: str) -> list:
    return json.loads(refs.read_text())["refs"][key]


def test_clean_references_pass_every_check(tmp_path: Path) -> None:
    src = write_nc(tmp_path / "a.nc")
    report = verify(refs_of(src, tmp_path / "a.json"), against_source=True)
    assert report.ok, str(report)
    assert report.sources == 1
    assert report.chunks_decoded == 4
    assert report.values_compared == 1


def test_references_record_their_sources(tmp_path: Path) -> None:
    src = write_nc(tmp_path / "a.nc")
    ds = vz.open_virtual_dataset(str(src), loadable_variables=[])
    rec = records_of([ds["v"].data.manifest])[f"file://{src}"]
    assert rec.size == os.path.getsize(src)
    doc = json.loads(refs_of(src, tmp_path / "a.json").read_text())
    assert doc["virtualizarr"]["sources"][f"file://{src}"]["size"] == rec.size
    # the records survive reading the references back and combining
    back = vz.open_virtual_dataset(str(tmp_path / "a.json"), loadable_variables=[])
    assert records_of([back["v"].data.manifest]) == {f"file://{src}": rec}


def test_a_source_rewritten_in_place_is_reported_stale(tmp_path: Path) -> None:
    src = write_nc(tmp_path / "a.nc", zlib=False)
    refs = refs_of(src, tmp_path / "a.json")
    before = os.stat(src)
    write_nc(src, zlib=False, offset=1000.0)  # same layout and size, other values
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert os.path.getsize(src) == before.st_size
    report = verify(refs)
    assert not report.ok
    (problem,) = [p for p in report.problems if p.kind == "stale"]
    assert problem.url == f"file://{src}"
    assert "virtualized" in problem.message


def test_truncated_and_missing_sources(tmp_path: Path) -> None:
    src = write_nc(tmp_path / "a.nc")
    refs = refs_of(src, tmp_path / "a.json")
    last = chunk_entry(refs, "v/3.0")
    with open(src, "r+b") as f:
        f.truncate(last[1] + 1)
    kinds = {p.kind for p in verify(refs).problems}
    assert {"stale", "out_of_range"} <= kinds
    out_of_range = next(p for p in verify(refs).problems if p.kind == "out_of_range")
    assert (out_of_range.variable, out_of_range.chunk) == ("v", "3.0")
    src.unlink()
    (problem,) = verify(refs).problems
    assert problem.kind == "missing"


def test_corrupt_chunk_bytes_fail_to_decode(tmp_path: Path) -> None:
    src = write_nc(tmp_path / "a.nc")
    refs = refs_of(src, tmp_path / "a.json")
    _, offset, _ = chunk_entry(refs, "v/1.0")
    st = os.stat(src)
    with open(src, "r+b") as f:
        f.seek(offset)
        f.write(b"\x00" * 8)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide the change from the record
    report = verify(refs, against_source=True)
    decode = [p for p in report.problems if p.kind == "decode"]
    assert [(p.variable, p.chunk) for p in decode] == [("v", "1.0")]
    assert report.chunks_decoded == 3


def test_wrong_offsets_are_caught_against_the_source(tmp_path: Path) -> None:
    """Uncompressed chunks decode whatever bytes they point at: only values tell."""
    src = write_nc(tmp_path / "a.nc", zlib=False)
    refs = refs_of(src, tmp_path / "a.json")
    doc = json.loads(refs.read_text())
    doc["refs"]["v/2.0"][1] += 4  # one float32 further on
    refs.write_text(json.dumps(doc))
    assert verify(refs).ok  # decodes fine...
    report = verify(refs, against_source=True)
    (problem,) = report.problems
    assert (problem.kind, problem.variable) == ("mismatch", "v")


def test_sample_decodes_that_many_chunks(tmp_path: Path) -> None:
    src = write_nc(tmp_path / "a.nc")
    refs = refs_of(src, tmp_path / "a.json")
    assert verify(refs, sample=2).chunks_decoded == 2
    assert verify(refs, sample=2, seed=1).chunks_decoded == 2
    with pytest.raises(ValueError, match="sample"):
        verify(refs, sample=-1)


def test_combined_dataset_is_verified_per_file(tmp_path: Path) -> None:
    a = write_nc(tmp_path / "a.nc")
    b = write_nc(tmp_path / "b.nc", offset=80.0)
    ds = vz.open_virtual_mfdataset(
        [str(a), str(b)], combine="nested", concat_dim="t", loadable_variables=[]
    )
    report = verify(ds, against_source=True)
    assert report.ok, str(report)
    assert (report.sources, report.chunks_decoded, report.values_compared) == (2, 8, 2)
    b.unlink()
    assert [p.kind for p in verify(ds).problems] == ["missing"]


def test_record_changes() -> None:
    rec = SourceRecord("s3://b/a.nc", 10, etag="a")
    assert rec.changes(10, "a") is None
    assert rec.changes(10, None) is None  # no ETag to compare: the size decides
    assert "ETag b" in (rec.changes(10, "b") or "")
    assert "11 bytes" in (rec.changes(11, "a") or "")
    assert SourceRecord.from_json("s3://b/a.nc", rec.to_json()) == rec
    with pytest.raises(ValueError, match="not a source record"):
        SourceRecord.from_json("s3://b/a.nc", {"etag": "x"})


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "virtualizarr.cli", "verify", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_exit_codes(tmp_path: Path) -> None:
    src = write_nc(tmp_path / "a.nc")
    refs = refs_of(src, tmp_path / "a.json")
    ok = run_cli(str(refs), "--against-source")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK")
    src.unlink()
    bad = run_cli(str(refs))
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[0].startswith(f"missing: file://{src}")
    unreadable = run_cli(str(tmp_path / "nothing.json"))
    assert unreadable.returncode == 2
    assert "nothing.json" in unreadable.stderr
    usage = run_cli(str(refs), "--sample", "many")
    assert usage.returncode == 2
