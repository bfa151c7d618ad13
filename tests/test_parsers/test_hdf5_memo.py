"""The bounded caches of decoded HDF5 messages (``parsers/hdf5/memo.py``) that our reader
shares between the files it parses: bounded in entries and in message size, and files
parsed one after the other or on several threads at once, with caches filling and
emptying under them, give the very ManifestGroup the h5py engine gives."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tests.test_parsers.test_hdf5_reader import _describe, _parse
from virtualizarr.parsers.hdf5 import netcdf, own
from virtualizarr.parsers.hdf5.memo import MAX_BYTES, BoundedCache

h5py = pytest.importorskip("h5py")


def test_bounded_cache_limits_entries_and_message_size() -> None:
    cache: BoundedCache[bytes, int] = BoundedCache(limit=3)
    for i in range(3):
        assert cache.put(bytes([i]), i, 1) == i
    assert set(cache) == {b"\x00", b"\x01", b"\x02"}
    assert [cache.get(k) for k in cache] == [0, 1, 2]
    cache.put(b"\x03", 3)  # full: emptied first
    assert set(cache) == {b"\x03"}
    assert cache.get(b"\x03", -1) == 3
    assert b"\x03" in cache
    assert cache.get(b"\x00", -1) == -1
    big = b"x" * (MAX_BYTES + 1)
    assert cache.put(big, 4, len(big)) == 4  # handed back, not kept
    assert big not in cache
    assert cache.get(big) is None
    cache.put(b"y" * MAX_BYTES, 5, MAX_BYTES)  # up to MAX_BYTES are kept
    assert cache.get(b"y" * MAX_BYTES) == 5
    tiny: BoundedCache[str, int] = BoundedCache(2, max_bytes=0)
    tiny.put("kept", 1)
    tiny.put("dropped", 2, 1)
    assert list(tiny) == ["kept"]


def _write(path: Path, i: int) -> None:
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["title"] = "same in every file"
        f.attrs["history"] = f"file {i}"
        t = f.create_dataset(
            "t", data=np.arange(10, dtype="f4") + i, chunks=(5,), compression="gzip"
        )
        t.attrs["units"] = np.bytes_(b"K")
        t.attrs["scale_factor"] = np.float32(0.5)
        t.attrs["valid_range"] = np.array([0, 100], "i2")
        t.attrs["big"] = np.arange(MAX_BYTES // 8 + 16, dtype="f8")  # message > MAX_BYTES
        c = f.create_dataset("c", data=np.full((3, 4), i, "i4"), fillvalue=-9)
        c.attrs["units"] = np.bytes_(b"K")
        f.create_dataset("compact", data=np.arange(4, dtype="u1"), fillvalue=7)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / f"f{i}.h5" for i in range(6)]
    for i, p in enumerate(paths):
        _write(p, i)
    return paths


def _fresh_caches(monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """Empty caches of ``limit`` entries in place of the process's (restored after)."""
    for module, name in ((own, "_ATTR_VALUES"), (own, "_LAYOUTS"), (own, "_FILTERS"),
                         (own, "_FILLS"), (own, "_CLASSIFIED"), (own, "_DENSE_INFOS"),
                         (netcdf, "_JSON_VALUES")):  # fmt: skip
        monkeypatch.setattr(module, name, BoundedCache(limit))


def test_repeated_messages_decoded_once_and_big_ones_not_kept(
    files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fresh_caches(monkeypatch, 8192)
    expected = [_describe(_parse(p, "h5py")) for p in files]
    assert [_describe(_parse(p, "own")) for p in files] == expected
    names = [body for _, _, body in own._ATTR_VALUES]
    assert any(b"units\0" in b for b in names)
    assert any(b"valid_range\0" in b for b in names)
    assert not any(b"big\0" in b for b in names)  # its message is over MAX_BYTES
    assert not any(b"history\0" in b for b in names)  # a variable-length string: heap data
    assert all(len(body) <= MAX_BYTES for *_, body in own._LAYOUTS)
    assert len(own._FILTERS) == 1  # one gzip pipeline for all six files
    # values handed out again are read-only: one file's caller cannot change another's
    cached = [v for v, _ in own._ATTR_VALUES.values() if isinstance(v, np.ndarray)]
    assert cached
    assert not any(v.flags.writeable for v in cached)
    assert netcdf._JSON_VALUES
    assert all(isinstance(v, (str, int, float)) for v in netcdf._JSON_VALUES.values())


def test_tiny_caches_on_threads_match_h5py(
    files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Caches of 2 entries empty themselves all the time while 4 threads parse."""
    _fresh_caches(monkeypatch, 2)
    expected = [_describe(_parse(p, "h5py")) for p in files]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: _describe(_parse(p, "own")), files * 4))
    assert got == expected * 4
    # threads between another's size check and its put may each add one entry more
    assert len(own._ATTR_VALUES) <= 2 + 4
    assert len(netcdf._JSON_VALUES) <= 2 + 4
