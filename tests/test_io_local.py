"""Local files read by pread (LocalFileReader) give exactly what the obstore path gives."""

from __future__ import annotations

import io
import random
from pathlib import Path

import h5py
import numpy as np
import pytest
from obstore.store import LocalStore

from virtualizarr.io import LocalFileReader, ObstoreReader, file_size, open_reader, read_range
from virtualizarr.registry import ObjectStoreRegistry

DATA = bytes(random.Random(0).randbytes(300_000))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "data.bin"
    p.write_bytes(DATA)
    return p


def _registered(tmp_path: Path) -> ObjectStoreRegistry:
    return ObjectStoreRegistry({f"file://{tmp_path}": LocalStore(tmp_path)})


def test_default_registry_reads_locally(path: Path, tmp_path: Path) -> None:
    local = open_reader(str(path), block_size=4096)
    remote = open_reader(str(path), _registered(tmp_path), block_size=4096)
    assert type(local) is LocalFileReader
    assert type(remote) is ObstoreReader
    assert local.size == remote.size == len(DATA)
    assert local.url == remote.url == f"file://{path}"
    rng = random.Random(1)
    for _ in range(200):  # random seeks and reads, some past the end
        pos, n = rng.randrange(len(DATA) + 10), rng.choice([0, 1, 7, 4096, 5000, 70_000])
        for r in (local, remote):
            r.seek(pos)
        a, b = local.read(n), remote.read(n)
        assert a == b == DATA[pos : pos + n]
        assert local.tell() == remote.tell()
    local.seek(-10, io.SEEK_END)
    assert local.read() == DATA[-10:]
    buf = bytearray(100)
    local.seek(5)
    assert local.readinto(buf) == 100
    assert bytes(buf) == DATA[5:105]
    local.close()
    remote.close()
    assert local.closed


def test_read_range_and_size_match(path: Path, tmp_path: Path) -> None:
    reg = _registered(tmp_path)
    for start, n in [(0, 10), (299_990, 100), (300_000, 5), (400_000, 5), (123, 0)]:
        assert read_range(str(path), start, n) == read_range(str(path), start, n, reg)
        assert read_range(str(path), start, n) == DATA[start : start + n]
    assert file_size(str(path)) == file_size(str(path), reg) == len(DATA)


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_unreadable_local_paths(tmp_path: Path, what: str) -> None:
    target = tmp_path / ("gone.bin" if what == "missing" else "")
    with pytest.raises(FileNotFoundError, match="Cannot read"):
        open_reader(str(target))
    with pytest.raises(FileNotFoundError, match="Cannot read"):
        file_size(str(target))
    if what == "missing":
        with pytest.raises(FileNotFoundError, match="Cannot read"):
            read_range(str(target), 0, 4)


def test_h5py_through_local_reader(tmp_path: Path) -> None:
    p = tmp_path / "f.h5"
    values = np.arange(1000, dtype="<i4").reshape(10, 100)
    with h5py.File(p, "w") as f:
        f.create_dataset("x", data=values, chunks=(2, 50))
    with open_reader(str(p), block_size=1024) as reader, h5py.File(reader, "r") as f:
        assert isinstance(reader, LocalFileReader)
        np.testing.assert_array_equal(f["x"][...], values)
