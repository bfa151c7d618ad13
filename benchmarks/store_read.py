"""Where the time of a ManifestStore read goes: chunk fetches alone, then whole-array reads.

Uses the files of ``combine_and_read.py`` (made there if absent). Rows, all for every chunk
of one variable (``--n-files`` x 96 chunks of ~44 kB, zlib + shuffle):

- fetch only: ``get`` (async, zarr's default concurrency 10), ``get_partial_values``
  (one request per file) and ``get_sync`` (what zarr's FusedCodecPipeline calls);
- zarr array read through the store with zarr's default pipeline, FusedCodecPipeline and
  virtualizarr.pipeline's checked FusedCodecPipeline (open_data's; one try per chunk);
- the same array read through fsspec ``reference://`` on the kerchunk JSON, for scale.

    python benchmarks/store_read.py [--n-files 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FUSED = {"codec_pipeline.path": "zarr.core.codec_pipeline.FusedCodecPipeline"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-files", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "vz_bench_combine"))
    args = ap.parse_args()

    import fsspec
    import zarr
    from combine_and_read import make_files
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.common import concurrent_map
    from zarr.core.sync import sync
    from zarr.storage import FsspecStore

    import virtualizarr as vz
    from virtualizarr.manifests.manifest import MISSING

    urls = [str(p) for p in make_files(Path(args.folder) / f"n{args.n_files}", args.n_files)]
    ds = vz.open_virtual_mfdataset(urls, progress=False)
    store = ds.vz.to_store()
    arr = store.group.arrays["t2m"]
    enc = arr.metadata.chunk_key_encoding
    keys = [
        "t2m/" + enc.encode_chunk_key(tuple(int(i) for i in idx))
        for idx in np.argwhere(arr.manifest.path_ids != MISSING)
    ]
    proto = default_buffer_prototype()
    work = Path(tempfile.mkdtemp(prefix="vz_bench_store_"))
    refs = work / "refs.json"
    ds.vz.to_kerchunk(refs, format="json")

    def get_async() -> object:
        async def run() -> list:
            return await concurrent_map([(k,) for k in keys], lambda k: store.get(k, proto), 10)

        return sync(run())

    def open_array(st: object, fmt: int) -> zarr.Array:
        return zarr.open_group(st, mode="r", zarr_format=fmt)["t2m"]  # type: ignore[arg-type]

    default_array = open_array(store, 3)
    with zarr.config.set(FUSED):
        fused_array = open_array(store, 3)
    from virtualizarr.pipeline import checked

    with checked():  # what ds.vz.open_data() uses: names file and chunk of undecodable bytes
        checked_array = open_array(store, 3)
    fs = fsspec.filesystem("reference", fo=str(refs), asynchronous=True)
    fsspec_array = open_array(FsspecStore(fs, read_only=True, path=""), 2)

    fns: dict[str, Callable[[], object]] = {
        "fetch: get (async, concurrency 10)": get_async,
        "fetch: get_partial_values (one request per file)": lambda: sync(
            store.get_partial_values(proto, [(k, None) for k in keys])
        ),
        "fetch: get_sync": lambda: [store.get_sync(k, prototype=proto) for k in keys],
        "read: zarr default pipeline": lambda: default_array[...],
        "read: zarr FusedCodecPipeline": lambda: fused_array[...],
        "read: virtualizarr CheckedFusedCodecPipeline": lambda: checked_array[...],
        "read: fsspec reference:// (zarr v2)": lambda: fsspec_array[...],
    }
    for fn in fns.values():  # warm-up: imports, OS cache, thread pools
        fn()
    times: dict[str, list[float]] = {label: [] for label in fns}
    for _ in range(args.repeat):
        for label, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t0)
    np.testing.assert_array_equal(default_array[...], fused_array[...])
    print(f"\n{args.n_files} files, {len(keys)} chunks; median of {args.repeat} interleaved runs\n")
    for label, ts in times.items():
        t = statistics.median(ts)
        print(f"{label:<52} {t:8.3f} s {1e6 * t / len(keys):8.1f} us/chunk")


if __name__ == "__main__":
    main()
