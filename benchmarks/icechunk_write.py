"""Time writing virtual references into Icechunk: the columnar path vs per-chunk specs.

Run: ``.venv/bin/python benchmarks/icechunk_write.py [n_chunks]`` (default 1,000,000).
The references point at files that need not exist: nothing is read.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np
import xarray as xr


def virtual_dataset(n_chunks: int, n_files: int = 1000) -> xr.Dataset:
    from virtualizarr.manifests import ChunkManifest, ManifestArray
    from virtualizarr.manifests.metadata import create_v3_array_metadata

    side = round(n_chunks**0.5)
    grid = (side, side)
    ids = (np.arange(side * side, dtype=np.uint32) % n_files).reshape(grid)
    manifest = ChunkManifest.from_path_ids(
        table=[f"s3://bucket/data/file_{i:05d}.nc" for i in range(n_files)],
        ids=ids,
        offsets=np.arange(side * side, dtype=np.uint64).reshape(grid) * 4096,
        lengths=np.full(grid, 4096, dtype=np.uint64),
    )
    meta = create_v3_array_metadata(
        shape=(side * 32, side * 32),
        data_type="<f4",
        chunk_shape=(32, 32),
        dimension_names=["y", "x"],
    )
    return xr.Dataset({"v": xr.Variable(("y", "x"), ManifestArray(meta, manifest))})


def main(n_chunks: int) -> None:
    import icechunk

    from virtualizarr.writers.icechunk import to_icechunk

    ds = virtual_dataset(n_chunks)
    n = ds["v"].data.manifest.path_ids.size
    with tempfile.TemporaryDirectory() as tmp:
        cfg = icechunk.RepositoryConfig.default()
        cfg.set_virtual_chunk_container(
            icechunk.VirtualChunkContainer("s3://bucket/", icechunk.s3_store(region="us-east-1"))
        )
        repo = icechunk.Repository.create(icechunk.local_filesystem_storage(tmp), config=cfg)
        session = repo.writable_session("main")
        t0 = time.perf_counter()
        to_icechunk(ds, session.store)
        t1 = time.perf_counter()
        session.commit("bench")
        t2 = time.perf_counter()
        print(
            f"columnar: {n:,} refs written in {t1 - t0:.2f} s ({n / (t1 - t0):,.0f} refs/s), "
            f"commit {t2 - t1:.2f} s"
        )

        # the per-chunk API, for comparison (on at most 200k chunks: it is slow)
        m = ds["v"].data.manifest
        k = min(n, 200_000)
        session = repo.writable_session("main")
        t0 = time.perf_counter()
        table, side = m.table, m.shape_chunk_grid[1]
        specs = [
            icechunk.VirtualChunkSpec(
                index=[i // side, i % side],
                location=table[m.path_ids.flat[i]],
                offset=int(m.offsets.flat[i]),
                length=int(m.lengths.flat[i]),
            )
            for i in range(k)
        ]
        session.store.set_virtual_refs("v", specs)
        t1 = time.perf_counter()
        print(f"per-chunk specs: {k:,} refs in {t1 - t0:.2f} s ({k / (t1 - t0):,.0f} refs/s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
