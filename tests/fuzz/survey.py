"""Fuzz every real file of some formats and print one table (a long run, not a test).

usage: python tests/fuzz/survey.py [--n 40] [--seed 1] [--opener open] FORMAT...
FORMAT is a directory of ``../shared/data/real`` (netcdf3, netcdf4_hdf5, tiff, fits, grib, zarr)
or ``dmrpp`` / ``kerchunk_json`` / ``kerchunk_parquet`` (written from the netCDF files first).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.harness import (
    Runner,
    file_mutants,
    special_mutants,
    summarize,
    tree_mutants,
)

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


def sources(fmt: str, tmp: Path) -> list[tuple[Path, list[str] | None]]:
    """(path, tree members or None for a plain file) for one format."""
    if fmt == "dmrpp":
        from tests.test_parsers.dmrpp_writer import write_dmrpp

        out = []
        for h5 in sorted((REAL / "netcdf4_hdf5").iterdir()):
            dest = tmp / (h5.name + ".dmrpp")
            try:
                write_dmrpp(h5, dest)
            except Exception:  # noqa: BLE001, S112  (files the test writer cannot describe)
                continue
            out.append((dest, None))
        return out
    if fmt.startswith("kerchunk"):
        import warnings

        from virtualizarr import open_virtual_dataset

        out = []
        for f in sorted([*(REAL / "netcdf3").iterdir(), *(REAL / "netcdf4_hdf5").iterdir()])[::3]:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = open_virtual_dataset(f, loadable_variables=[])
                    if fmt == "kerchunk_json":
                        dest = tmp / (f.name + ".json")
                        ds.vz.to_kerchunk(dest, format="json")
                        out.append((dest, None))
                    else:
                        dest = tmp / (f.name + ".parq")
                        ds.vz.to_kerchunk(dest, format="parquet", record_size=10)
                        members = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
                        out.append((dest, [m for m in members if (dest / m).is_file()]))
            except Exception:  # noqa: BLE001, S112  (stores this survey cannot copy)
                continue
        return out
    if fmt == "zarr":
        out = []
        for store in sorted((REAL / "zarr").iterdir()):
            members = sorted(
                str(p.relative_to(store))
                for p in store.rglob("*")
                if p.is_file() and p.name in (".zarray", ".zattrs", ".zgroup", "zarr.json")
            )
            out.append((store, members))
        return out
    return [(p, None) for p in sorted((REAL / fmt).iterdir()) if p.is_file()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("formats", nargs="+")
    ap.add_argument("--n", type=int, default=40, help="mutants per file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--opener", default="open")
    ap.add_argument("--timeout", type=float, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with Runner(tmp / "work", timeout=args.timeout) as run:
            for fmt in args.formats:
                t0 = time.time()
                outcomes = []
                for src, members in sources(fmt, tmp):
                    if members is None:
                        cases = file_mutants(src.read_bytes(), seed=args.seed, n=args.n)
                    else:
                        cases = tree_mutants(src, members, seed=args.seed, n=args.n)
                    if src is not None and not outcomes:
                        cases += special_mutants()
                    t1 = time.time()
                    for m in cases:
                        o = run.one(src, m, opener=args.opener)
                        o.mutant = f"{src.name}:{o.mutant}"
                        outcomes.append(o)
                        if o.status == "BAD":
                            print(f"  {str(o)[:300]}", file=sys.stderr, flush=True)
                    print(
                        f"{fmt} {src.name}: {len(cases)} cases, {time.time() - t1:.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )
                print(summarize(outcomes, f"{fmt}: "), f"[{time.time() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main()
