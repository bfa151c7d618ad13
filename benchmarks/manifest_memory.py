"""Memory and time of a 1,000,000-chunk manifest (100 files x 10,000 chunks).

Run: ``.venv/bin/python benchmarks/manifest_memory.py [--files 100 --chunks-per-file 10000]``

Prints, for each way of building the manifest, the memory retained per chunk reference
(measured with ``tracemalloc`` and reported by ``ChunkManifest.nbytes``), the peak during
construction, and the time taken. The target is <= 24 bytes per reference; the script
exits with status 1 if any method exceeds it.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.manifest import concatenate_manifests
from virtualizarr.manifests.metadata import create_v3_array_metadata

TARGET_BYTES_PER_REF = 24


@dataclass
class Row:
    method: str
    n_refs: int
    seconds: float
    traced_bytes: int
    peak_bytes: int
    nbytes: int

    def cells(self) -> list[str]:
        n = self.n_refs
        return [
            self.method,
            f"{n:,}",
            f"{self.seconds * 1e3:,.0f}",
            f"{self.traced_bytes / n:.2f}",
            f"{self.nbytes / n:.2f}",
            f"{self.peak_bytes / n:.2f}",
        ]


def urls(n_files: int) -> list[str]:
    return [f"s3://bucket/archive/year=2024/file_{i:05d}.nc" for i in range(n_files)]


def measure(method: str, build: Callable[[], ChunkManifest]) -> Row:
    """Time ``build`` (without tracing), then measure what its result retains (with tracing)."""
    gc.collect()
    t0 = time.perf_counter()
    result = build()
    seconds = time.perf_counter() - t0
    del result
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        manifest = build()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return Row(method, len(manifest), seconds, current - before, peak - before, manifest.nbytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--chunks-per-file", type=int, default=10_000)
    args = parser.parse_args(argv)
    n_files, per_file = args.files, args.chunks_per_file
    grid = (n_files, per_file)
    files = urls(n_files)

    # Inputs are built before measuring: a parser holds them anyway, the manifest must not
    # keep more than its three numeric grids and one copy of each distinct path.
    offsets = np.tile(np.arange(per_file, dtype=np.uint64) * 65_536 + 4_096, n_files).reshape(grid)
    lengths = np.full(grid, 65_536, dtype=np.uint64)
    paths_unicode = np.repeat(np.array(files), per_file).reshape(grid)
    paths_stringdtype = paths_unicode.astype(np.dtypes.StringDType())
    ids = np.repeat(np.arange(n_files, dtype=np.uint32), per_file).reshape(grid)
    per_file_parts = [
        ChunkManifest.from_arrays(paths=f, offsets=offsets[i], lengths=lengths[i])
        for i, f in enumerate(files)
    ]
    meta = create_v3_array_metadata(
        shape=(per_file * 10,), data_type="<f4", chunk_shape=(10,), dimension_names=["x"]
    )
    arrays = [ManifestArray(meta, m) for m in per_file_parts]

    rows = [
        measure(
            "from_path_ids (parser fast path)",
            lambda: ChunkManifest.from_path_ids(
                table=files, ids=ids, offsets=offsets, lengths=lengths
            ),
        ),
        measure(
            "from_arrays (paths: <U array)",
            lambda: ChunkManifest.from_arrays(
                paths=paths_unicode, offsets=offsets, lengths=lengths
            ),
        ),
        measure(
            "from_arrays (paths: StringDType)",
            lambda: ChunkManifest.from_arrays(
                paths=paths_stringdtype, offsets=offsets, lengths=lengths
            ),
        ),
        measure(
            f"concatenate {n_files} manifests",
            lambda: concatenate_manifests(per_file_parts, axis=0),
        ),
        measure(
            f"np.concatenate {n_files} ManifestArrays",
            lambda: np.concatenate(arrays).manifest,
        ),
    ]

    headers = ["method", "refs", "time ms", "B/ref traced", "B/ref nbytes", "B/ref peak"]
    table = [headers, *(r.cells() for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    for i, row in enumerate(table):
        print(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    worst = max(max(r.traced_bytes, r.nbytes) / r.n_refs for r in rows)
    ok = worst <= TARGET_BYTES_PER_REF
    print(
        f"\nretained memory per chunk reference: at most {worst:.2f} bytes "
        f"(target <= {TARGET_BYTES_PER_REF}): {'OK' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
