"""Time writing kerchunk references: ours (dict, JSON, parquet) next to kerchunk's own.

The dataset is built by hand (no files): ``air`` of shape (8760, 512, 512) float32,
chunked (1, 128, 128) with shuffle + zlib = 140,160 references into 365 daily files,
plus a loaded ``time`` coordinate.

    python benchmarks/kerchunk_write.py [--repeat 5]

Target (issue 4): JSON for 140,160 references in <= 0.3 s. The last rows time reading the
written references back with our parsers.
Rows marked "kerchunk" write the same references the way kerchunk users do:
``ujson.dump``/``json.dump`` of the dict, and ``kerchunk.df.refs_to_dataframe`` for parquet.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from _support import timings
from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.writers.kerchunk import to_kerchunk

N_DAYS, HOURS, NY, NX, CY, CX = 365, 24, 512, 512, 128, 128


def make_dataset() -> xr.Dataset:
    """140,160 chunk references: 24 hours x 16 tiles per daily file, 365 files."""
    grid = (N_DAYS * HOURS, NY // CY, NX // CX)
    n = int(np.prod(grid))
    files = [f"s3://bucket/era/air_{d:03d}.nc" for d in range(N_DAYS)]
    hour = np.arange(grid[0])
    ids = np.broadcast_to((hour // HOURS).astype(np.uint32)[:, None, None], grid)
    rng = np.random.default_rng(0)
    lengths = rng.integers(20_000, 60_000, size=grid, dtype=np.uint64)
    per_file = lengths.reshape(N_DAYS, -1)  # chunks of a file are back to back after a header
    offsets = (4096 + np.cumsum(per_file, axis=1) - per_file).reshape(grid).astype(np.uint64)
    manifest = ChunkManifest.from_path_ids(table=files, ids=ids, offsets=offsets, lengths=lengths)
    meta = create_v3_array_metadata(
        shape=(grid[0], NY, NX),
        data_type=np.dtype("<f4"),
        chunk_shape=(1, CY, CX),
        fill_value=np.nan,
        codecs=[
            {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}},
            {"name": "numcodecs.zlib", "configuration": {"level": 4}},
        ],
        attributes={"units": "K", "_FillValue": np.nan},
        dimension_names=("time", "y", "x"),
    )
    assert len(manifest) == n == 140_160
    air = xr.Variable(("time", "y", "x"), ManifestArray(meta, manifest), {"units": "K"})
    time_ = xr.Variable("time", np.arange(grid[0], dtype="f8"), {"units": "hours since 2020-01-01"})
    return xr.Dataset({"air": air}, coords={"time": time_})


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` calls (no warm-up call)."""
    return statistics.median(timings(fn, repeat, warm=False)[0])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    ds = make_dataset()
    tmp = Path(tempfile.mkdtemp(prefix="vz-kerchunk-bench-"))
    refs = to_kerchunk(ds, format="dict")
    assert refs is not None
    rows: list[tuple[str, float]] = [
        (
            "virtualizarr to_kerchunk dict",
            timed(lambda: to_kerchunk(ds, format="dict"), args.repeat),
        ),
        (
            "virtualizarr to_kerchunk json",
            timed(lambda: to_kerchunk(ds, tmp / "a.json", format="json"), args.repeat),
        ),
        (
            "virtualizarr to_kerchunk parquet",
            timed(lambda: to_kerchunk(ds, tmp / "a.parq", format="parquet"), args.repeat),
        ),
    ]

    def dump_json() -> None:
        with open(tmp / "k.json", "w") as f:
            json.dump(refs, f)

    rows.append(("kerchunk-style json.dump(refs)", timed(dump_json, args.repeat)))
    try:
        import ujson

        def dump_ujson() -> None:
            with open(tmp / "k2.json", "w") as f:
                ujson.dump(refs, f)

        rows.append(("kerchunk-style ujson.dump(refs)", timed(dump_ujson, args.repeat)))
    except ImportError:
        pass
    try:
        from kerchunk.df import refs_to_dataframe

        rows.append(
            (
                "kerchunk.df.refs_to_dataframe",
                timed(
                    lambda: refs_to_dataframe(refs, str(tmp / "k.parq"), record_size=100_000),
                    args.repeat,
                ),
            )
        )
    except ImportError:
        pass
    from virtualizarr.parsers.kerchunk import KerchunkJSONParser, KerchunkParquetParser
    from virtualizarr.registry import ObjectStoreRegistry

    reg = ObjectStoreRegistry()
    rows.append(
        (
            "read back: KerchunkJSONParser",
            timed(lambda: KerchunkJSONParser()(str(tmp / "a.json"), reg), args.repeat),
        )
    )
    rows.append(
        (
            "read back: KerchunkParquetParser",
            timed(lambda: KerchunkParquetParser()(str(tmp / "a.parq"), reg), args.repeat),
        )
    )
    print(f"{'writer (140,160 refs)':<38} {'seconds':>8}")
    for name, sec in rows:
        print(f"{name:<38} {sec:8.3f}")
    print(f"JSON size: {(tmp / 'a.json').stat().st_size / 1e6:.1f} MB; target: JSON <= 0.3 s")


if __name__ == "__main__":
    main()
