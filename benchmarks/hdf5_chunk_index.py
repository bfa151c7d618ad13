"""Our HDF5 chunk index readers (``parsers/hdf5/layout.py``) vs h5py's ``chunk_iter``, per index type.

For each index type HDF5 writes, one dataset of ``--chunks`` chunks (default 140,160, as
``hdf5_virtualize.py``), gzip-filtered or not, is written once with h5py (chunks of 4 bytes
via ``write_direct_chunk``, so writing is quick) and cached in the temp folder. Rows: median
seconds to read the whole index with ``read_chunk_index`` (checksums verified, and not) and
with h5py's ``chunk_iter`` (garbage collector paused), the read requests (batches) ours
made, and the speed-up.

    python benchmarks/hdf5_chunk_index.py [--chunks 140160] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from _support import timings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_parsers.hdf5_raw import layout_of, superblock

from virtualizarr.parsers.hdf5.layout import read_chunk_index

KINDS = {  # name: (libver, maxshape of a 1-d dataset)
    "v1 B-tree": ("earliest", (None,)),
    "fixed array": ("latest", "shape"),
    "extensible array": ("latest", (None,)),
    "v2 B-tree": ("latest", (None, None)),
}


class Pread:
    """``size``/``read``/``read_many`` with ``os.pread``, counting batches."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        self.batches = 0

    def read(self, offset: int, length: int) -> bytes:
        self.batches += 1
        return os.pread(self.fd, length, offset)

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        self.batches += 1
        return [os.pread(self.fd, n, o) for o, n in ranges]

    def close(self) -> None:
        os.close(self.fd)


def make_file(kind: str, n: int, filtered: bool) -> Path:
    folder = Path(tempfile.gettempdir()) / "virtualizarr-bench"
    folder.mkdir(exist_ok=True)
    path = folder / f"chunk_index_{kind.replace(' ', '_')}_{n}_{'gzip' if filtered else 'raw'}.h5"
    if path.exists():
        return path
    libver, maxshape = KINDS[kind]
    shape: tuple[int, ...] = (n,) if len(maxshape) == 1 else (n, 1)
    chunks = (1,) * len(shape)
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w", libver=libver) as f:
        d = f.create_dataset(
            "x",
            shape=shape,
            chunks=chunks,
            dtype="i4",
            maxshape=shape if maxshape == "shape" else maxshape,
            compression="gzip" if filtered else None,
        )
        raw = np.int32(7).tobytes()
        data = zlib.compress(raw) if filtered else raw
        for i in range(n):
            d.id.write_direct_chunk((i,) + (0,) * (len(shape) - 1), data)
    tmp.rename(path)
    return path


def ours(path: Path, verify: bool) -> Callable[[], tuple[int, int]]:
    sb = superblock(path.read_bytes()[:4096])
    with h5py.File(path, "r") as f:
        d = f["x"]
        layout = layout_of(d, path.read_bytes(), sb)
        kw: dict[str, Any] = {
            "shape": d.shape,
            "maxshape": d.maxshape,
            "dtype_size": 4,
            "filtered": d.compression is not None,
            "sizeof_offsets": sb.sizeof_offsets,
            "sizeof_lengths": sb.sizeof_lengths,
            "where": str(path),
            "btree1_k": sb.btree_k,
            "verify_checksums": verify,
        }

    def run() -> tuple[int, int]:
        src = Pread(path)
        try:
            return len(read_chunk_index(src, layout, **kw)), src.batches
        finally:
            src.close()

    return run


def floor(path: Path) -> Callable[[], tuple[int, int]]:
    def run() -> tuple[int, int]:
        gc.disable()
        try:
            with h5py.File(path, "r") as f:
                infos: list = []
                f["x"].id.chunk_iter(infos.append)
                np.array([i.byte_offset for i in infos], dtype=np.uint64)
            return len(infos), 0
        finally:
            gc.enable()

    return run


def time_it(fn: Callable[[], tuple[int, int]], repeat: int) -> tuple[float, int, int]:
    """Median seconds (after a warm-up call), chunks and batches."""
    times, (n, batches) = timings(fn, repeat)
    return statistics.median(times), n, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=140_160)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{'index':26s} {'chunks':>8s} {'ours s':>8s} {'no cksum':>9s} {'batches':>8s} "
        f"{'h5py s':>8s} {'speed-up':>9s}"
    )
    for kind in KINDS:
        for filtered in (False, True):
            path = make_file(kind, args.chunks, filtered)
            t_ours, n, batches = time_it(ours(path, True), args.repeat)
            t_fast, _, _ = time_it(ours(path, False), args.repeat)
            t_h5py, n2, _ = time_it(floor(path), args.repeat)
            assert n == n2, (kind, n, n2)
            name = f"{kind}{' (gzip)' if filtered else ''}"
            print(
                f"{name:26s} {n:8d} {t_ours:8.3f} {t_fast:9.3f} {batches:8d} {t_h5py:8.3f} "
                f"{t_h5py / t_ours:8.1f}x"
            )


if __name__ == "__main__":
    main()
