"""ManifestStore fast paths: batched ranges per file, the sync surface, cached URL resolution.

Each fast path must return exactly the bytes of the plain ``get`` (or of the file).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import xarray as xr
import zarr
from obstore.store import LocalStore, MemoryStore
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype

from tests.test_manifests.builders import virtual_array
from virtualizarr.errors import ChunkReadError
from virtualizarr.io import read_local_ranges
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

PROTO = default_buffer_prototype()
FUSED = {"codec_pipeline.path": "zarr.core.codec_pipeline.FusedCodecPipeline"}
A = np.arange(6 * 8, dtype="<f4").reshape(6, 8)
B = np.arange(5, dtype=">i8") * 7


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _group(tmp_path: Path) -> ManifestGroup:
    """Two files; a zlib array with a missing and an inlined chunk; a group named "c"."""
    a = virtual_array(
        tmp_path / "a.bin",
        A,
        (2, 3),
        [numcodecs.Shuffle(4), numcodecs.Zlib(level=1)],
        missing=[(1, 1)],
        inline=[(0, 2)],
        fill_value=-1.0,
        dimension_names=["y", "x"],
    )
    b = virtual_array(tmp_path / "b.bin", B, (2,), dimension_names=["z"])
    (tmp_path / "s.bin").write_bytes(np.float64(2.5).tobytes())
    scalar = ManifestArray(
        create_v3_array_metadata(shape=(), data_type="<f8", chunk_shape=(), dimension_names=[]),
        ChunkManifest({"0": {"path": str(tmp_path / "s.bin"), "offset": 0, "length": 8}}, shape=()),
    )
    # a group and an array both named "c": chunk keys must still find the right array
    c = ManifestGroup(arrays={"c": b, "s": scalar})
    return ManifestGroup(arrays={"a": a, "b": b}, groups={"c": c})


KEYS = [
    "a/c/0/0",
    "a/c/2/2",
    "a/c/0/2",  # inlined
    "a/c/1/1",  # missing
    "a/c/3/0",  # outside the grid
    "a/c/0/x",
    "a/c/0",
    "b/c/2",
    "c/c/c/1",
    "c/s/c",
    "c/c/c",
    "c/zarr.json",
    "zarr.json",
    "a/zarr.json",
    "nope/c/0",
]
RANGES = [
    None,
    RangeByteRequest(1, 5),
    OffsetByteRequest(3),
    SuffixByteRequest(2),
    RangeByteRequest(2, 10_000),
]


def _registries(tmp_path: Path) -> dict[str, ObjectStoreRegistry]:
    # the default LocalStore (read with pread), and a registered store (read through obstore)
    return {
        "default": ObjectStoreRegistry(),
        "registered": ObjectStoreRegistry({f"file://{tmp_path}": LocalStore(tmp_path)}),
    }


@pytest.mark.parametrize("which", ["default", "registered"])
def test_partial_values_match_get(tmp_path: Path, which: str) -> None:
    store = ManifestStore(_group(tmp_path), registry=_registries(tmp_path)[which])
    requests = [(k, r) for k in KEYS for r in RANGES]
    got = run(store.get_partial_values(PROTO, iter(requests)))
    assert len(got) == len(requests)
    for (key, byte_range), buf in zip(requests, got):
        want = run(store.get(key, PROTO, byte_range))
        assert (buf is None) == (want is None), key
        if buf is not None:
            assert buf.to_bytes() == want.to_bytes(), (key, byte_range)
    assert sum(b is not None for b in got) == 9 * len(RANGES)


@pytest.mark.parametrize("which", ["default", "registered"])
def test_get_sync_matches_get(tmp_path: Path, which: str) -> None:
    store = ManifestStore(_group(tmp_path), registry=_registries(tmp_path)[which])
    for key in KEYS:
        for byte_range in RANGES:
            want = run(store.get(key, PROTO, byte_range))
            got = store.get_sync(key, byte_range=byte_range)  # prototype defaults
            assert (got is None) == (want is None), key
            if got is not None:
                assert got.to_bytes() == want.to_bytes(), (key, byte_range)


def test_chunk_bytes_are_the_files(tmp_path: Path) -> None:
    group = _group(tmp_path)
    store = ManifestStore(group)
    raw = (tmp_path / "a.bin").read_bytes()
    entry = group.arrays["a"].manifest.get_entry((2, 1))
    assert entry is not None
    assert "path" in entry
    want = raw[entry["offset"] : entry["offset"] + entry["length"]]
    assert store.get_sync("a/c/2/1").to_bytes() == want
    assert run(store.get_partial_values(PROTO, [("a/c/2/1", None)]))[0].to_bytes() == want


def test_sync_writes_refused(tmp_path: Path) -> None:
    store = ManifestStore(_group(tmp_path))
    with pytest.raises(ValueError, match="read-only"):
        store.set_sync("a/c/0/0", PROTO.buffer.from_bytes(b"x"))
    with pytest.raises(ValueError, match="read-only"):
        store.delete_sync("a/c/0/0")


def test_fused_pipeline_reads_same_values(tmp_path: Path) -> None:
    # zarr's FusedCodecPipeline reads through get_sync in worker threads
    store = ManifestStore(_group(tmp_path))
    expected = A.copy()
    expected[2:4, 3:6] = -1.0  # the missing chunk reads as the fill value
    with zarr.config.set(FUSED):
        arr = zarr.open_group(store, mode="r")["a"]
        ds = xr.open_dataset(store, engine="zarr", consolidated=False, zarr_format=3, chunks=None)
    assert type(arr._async_array.codec_pipeline).__name__ == "FusedCodecPipeline"
    np.testing.assert_array_equal(arr[...], expected)
    np.testing.assert_array_equal(ds["a"].values, expected)
    np.testing.assert_array_equal(ds["b"].values, B)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["a"][...], expected)


@pytest.mark.parametrize("how", ["get", "get_sync", "partial"])
@pytest.mark.parametrize("which", ["default", "registered"])
def test_unreadable_raise_chunk_read_error(tmp_path: Path, how: str, which: str) -> None:
    (tmp_path / "short.bin").write_bytes(b"\0" * 20)
    meta = create_v3_array_metadata(
        shape=(2,), data_type="<f8", chunk_shape=(1,), dimension_names=["x"]
    )
    manifest = ChunkManifest(
        {
            "0": {"path": str(tmp_path / "short.bin"), "offset": 8, "length": 16},
            "1": {"path": str(tmp_path / "gone.bin"), "offset": 0, "length": 8},
        }
    )
    store = ManifestStore(
        ManifestGroup(arrays={"x": ManifestArray(meta, manifest)}),
        registry=_registries(tmp_path)[which],
    )
    read = {
        "get": lambda k: run(store.get(k, PROTO)),
        "get_sync": lambda k: store.get_sync(k),
        "partial": lambda k: run(store.get_partial_values(PROTO, [(k, None), ("zarr.json", None)])),
    }[how]
    with pytest.raises(ChunkReadError, match=r"short\.bin"):
        read("x/c/0")
    with pytest.raises(ChunkReadError, match=r"gone\.bin"):
        read("x/c/1")


def test_registered_memory_store_batched(tmp_path: Path) -> None:
    # several ranges of one object in one obstore call, through a non-local store
    mem = MemoryStore()
    payload = bytes(range(256)) * 4
    mem.put("d/f.bin", payload)
    meta = create_v3_array_metadata(
        shape=(4,), data_type="u1", chunk_shape=(1,), dimension_names=["x"]
    )
    manifest = ChunkManifest.from_arrays(
        paths="memory://m/d/f.bin", offsets=[0, 100, 101, 1000], lengths=[1, 1, 1, 1]
    )
    store = ManifestStore(
        ManifestGroup(arrays={"x": ManifestArray(meta, manifest)}),
        registry=ObjectStoreRegistry({"memory://m": mem}),
    )
    got = run(store.get_partial_values(PROTO, [(f"x/c/{i}", None) for i in range(4)]))
    assert [b.to_bytes() for b in got] == [payload[i : i + 1] for i in (0, 100, 101, 1000)]
    assert [store.get_sync(f"x/c/{i}").to_bytes() for i in range(4)] == [
        payload[i : i + 1] for i in (0, 100, 101, 1000)
    ]


def test_read_local_ranges(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(bytes(range(100)))
    assert read_local_ranges(str(p), [0, 95, 200, 10], [3, 10, 4, 0]) == [
        b"\x00\x01\x02",
        bytes(range(95, 100)),  # short where the file ends
        b"",
        b"",
    ]
    with pytest.raises(FileNotFoundError):
        read_local_ranges(str(tmp_path / "gone.bin"), [0], [1])


def test_registry_cache_follows_register(tmp_path: Path) -> None:
    reg = ObjectStoreRegistry()
    url = f"file://{tmp_path}/x/a.nc"
    store, key = reg.resolve(url)
    assert key == f"{tmp_path}/x/a.nc".lstrip("/")
    assert reg.local_path(url) == f"{tmp_path}/x/a.nc"
    assert reg.resolve(url)[0] is store  # cached
    mine = LocalStore(tmp_path)
    reg.register(f"file://{tmp_path}", mine)  # a registered store now serves it
    assert reg.resolve(url) == (mine, "x/a.nc")
    assert reg.local_path(url) is None
    assert reg.local_path("s3://bucket/a.nc") is None


def test_fused_pipeline_reads_sharded_arrays(tmp_path: Path) -> None:
    # the sharding codec reads inner chunks with byte ranges through get_sync
    from virtualizarr import open_virtual_dataset
    from virtualizarr.parsers import ZarrParser

    path = tmp_path / "s.zarr"
    values = np.arange(40 * 30, dtype="f4").reshape(40, 30)
    arr = zarr.create_array(
        path,
        name="x",
        shape=(40, 30),
        chunks=(5, 5),
        shards=(10, 15),
        dtype="f4",
        dimension_names=["y", "x"],
        fill_value=np.nan,
    )
    arr[...] = values
    arr[0:10, 0:15] = np.nan  # an all-fill shard: never written
    values[0:10, 0:15] = np.nan
    store = open_virtual_dataset(str(path), parser=ZarrParser()).vz.to_store()
    with zarr.config.set(FUSED):
        z = zarr.open_group(store, mode="r")["x"]
    np.testing.assert_array_equal(z[...], values)
    np.testing.assert_array_equal(z[3:17, 4:29], values[3:17, 4:29])
