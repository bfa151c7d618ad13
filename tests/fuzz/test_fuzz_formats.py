"""The fuzz harness over HDF5 (h5py engine), DMR++, Zarr stores and kerchunk JSON/parquet.

Seeded, small by default (``VIRTUALIZARR_FUZZ=N`` mutants per file for longer runs); every
case must end in ``ok`` or a named error. NetCDF3 has its own module (with hypothesis).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import HAVE_REAL_DATA, requires_real_data
from tests.fuzz.harness import (
    Runner,
    assert_no_bad,
    file_mutants,
    fuzz_count,
    special_mutants,
    summarize,
    tree_mutants,
)
from virtualizarr.testing.ground_truth import REAL_DATA

h5py = pytest.importorskip("h5py")


def _h5_files(tmp: Path) -> list[Path]:
    """Small HDF5 files written here (the real ones too, when ../shared is there)."""
    path = tmp / "made.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.arange(200.0).reshape(10, 20), chunks=(5, 5))
        f.create_dataset("b", data=np.arange(30, dtype="i2"), compression="gzip", shuffle=True)
        f.create_group("g").create_dataset("c", data=np.ones(7, dtype="f4"))
        f.attrs["title"] = "fuzz"
    files = [path]
    if HAVE_REAL_DATA:
        real = sorted((REAL_DATA / "netcdf4_hdf5").iterdir())
        files += [p for p in real if p.stat().st_size < 300_000][::3]
    return files


def _run(tmp: Path, sources: list[tuple[Path, list[str] | None]], n: int, **kw: object) -> list:
    outcomes = []
    with Runner(tmp / "work", timeout=60) as run:
        for i, (src, members) in enumerate(sources):
            if members is None:
                cases = file_mutants(src.read_bytes(), seed=100 + i, n=n)
            else:
                cases = tree_mutants(src, members, seed=100 + i, n=n)
            if i == 0:
                cases += special_mutants()
            for o in run.many(src, cases, **kw):  # type: ignore[arg-type]
                o.mutant = f"{src.name}:{o.mutant}"
                outcomes.append(o)
    return outcomes


def test_hdf5_h5py_engine(tmp_path: Path) -> None:
    files = _h5_files(tmp_path)
    outcomes = _run(
        tmp_path,
        [(f, None) for f in files],
        fuzz_count(10),
        parser="HDFParser",
        parser_kwargs={"engine": "h5py"},
    )
    print(summarize(outcomes, "hdf5 (h5py): "))
    assert_no_bad(outcomes, "hdf5 (h5py): ")


def test_dmrpp(tmp_path: Path) -> None:
    from tests.test_parsers.dmrpp_writer import write_dmrpp

    sources = []
    for h5 in _h5_files(tmp_path):
        dest = tmp_path / f"{h5.name}.dmrpp"
        try:
            write_dmrpp(h5, dest)
        except Exception:  # noqa: BLE001, S112  (types the test writer cannot describe)
            continue
        sources.append((dest, None))
    outcomes = _run(tmp_path, sources, fuzz_count(10), parser="DMRPPParser")
    print(summarize(outcomes, "dmrpp: "))
    assert_no_bad(outcomes, "dmrpp: ")


def _kerchunk_sources(tmp: Path, fmt: str) -> list[tuple[Path, list[str] | None]]:
    from virtualizarr import open_virtual_dataset

    out: list[tuple[Path, list[str] | None]] = []
    for src in _h5_files(tmp)[:4]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = open_virtual_dataset(src, loadable_variables=[])
            except Exception:  # noqa: BLE001, S112  (files we cannot open are not inputs here)
                continue
            dest = tmp / f"{src.name}.{fmt}"
            if fmt == "json":
                ds.vz.to_kerchunk(dest, format="json")
                out.append((dest, None))
            else:
                ds.vz.to_kerchunk(dest, format="parquet", record_size=10)
                members = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
                out.append((dest, members))
    return out


def test_kerchunk_json(tmp_path: Path) -> None:
    sources = _kerchunk_sources(tmp_path, "json")
    outcomes = _run(tmp_path, sources, fuzz_count(12), parser="KerchunkJSONParser")
    print(summarize(outcomes, "kerchunk json: "))
    assert_no_bad(outcomes, "kerchunk json: ")


def test_kerchunk_parquet(tmp_path: Path) -> None:
    sources = _kerchunk_sources(tmp_path, "parq")
    outcomes = _run(tmp_path, sources, fuzz_count(12), parser="KerchunkParquetParser")
    print(summarize(outcomes, "kerchunk parquet: "))
    assert_no_bad(outcomes, "kerchunk parquet: ")


def _zarr_sources(tmp: Path) -> list[tuple[Path, list[str]]]:
    import zarr

    made = tmp / "made.zarr"
    root = zarr.open_group(str(made), mode="w", zarr_format=2)
    a = root.create_array(
        "a",
        shape=(10, 20),
        chunks=(5, 5),
        dtype="<f8",
        attributes={"_ARRAY_DIMENSIONS": ["y", "x"]},
    )
    a[...] = np.arange(200.0).reshape(10, 20)
    stores = [made]
    if HAVE_REAL_DATA:
        stores += sorted((REAL_DATA / "zarr").iterdir())[::2]
    names = (".zarray", ".zattrs", ".zgroup", "zarr.json", ".zmetadata")
    return [
        (s, sorted(str(p.relative_to(s)) for p in s.rglob("*") if p.name in names)) for s in stores
    ]


def test_zarr(tmp_path: Path) -> None:
    outcomes = _run(tmp_path, _zarr_sources(tmp_path), fuzz_count(12), parser="ZarrParser")
    print(summarize(outcomes, "zarr: "))
    assert_no_bad(outcomes, "zarr: ")


@requires_real_data
def test_hdf5_root_with_bad_checksum_is_corrupt_file_error(tmp_path: Path) -> None:
    """A bit flip that makes h5py's get('/') return None (metadata checksum): CorruptFileError
    naming the file, not AttributeError (found by the harness on air.nc)."""
    from virtualizarr.errors import CorruptFileError
    from virtualizarr.parsers import HDFParser
    from virtualizarr.registry import ObjectStoreRegistry

    data = bytearray((REAL_DATA / "netcdf4_hdf5/air.nc").read_bytes())
    for pos, bit in ((2438, 5), (667, 0), (406, 0)):
        data[pos] ^= 1 << bit
    path = tmp_path / "air.nc"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"air\.nc") as info:
        HDFParser(engine="h5py")(str(path), ObjectStoreRegistry())
    assert str(path) in str(info.value)


def test_json_mutants_stay_json_shaped(tmp_path: Path) -> None:
    """tree_mutants writes huge numbers over a JSON document's digits (still valid JSON)."""
    doc = json.dumps({"zarr_format": 2, "shape": [10, 20], "chunks": [5, 5]}).encode()
    (tmp_path / ".zarray").write_bytes(doc)
    ms = tree_mutants(tmp_path, [".zarray"], seed=0, n=30)
    huge = [m for m in ms if re.search(r":huge@\d+=", m.name)]  # digits over digits
    assert huge
    for m in huge:
        assert m.data is not None
        assert isinstance(json.loads(m.data), dict)  # 10**400 is a valid JSON number
