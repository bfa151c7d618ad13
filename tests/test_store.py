"""ManifestStore: the read side of zarr's Store ABC, and real values through zarr and xarray."""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype

from tests.test_manifests.builders import expected_values, virtual_array
from virtualizarr.errors import ChunkReadError
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

PROTO = default_buffer_prototype()
TEMP = np.arange(4 * 6, dtype="<f4").reshape(4, 6) / 4
PRESSURE = (np.arange(5) * 1000).astype(">i8")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def collect(it: AsyncIterator[str]) -> list[str]:
    return [k async for k in it]


class Tree:
    """A hierarchy over two real files: root/{temp, sub/{pressure, deeper/{scalar}}}."""

    def __init__(self, tmp_path: Path) -> None:
        self.temp = virtual_array(
            tmp_path / "temp.bin",
            TEMP,
            (2, 3),
            [numcodecs.Zlib(level=1)],
            missing=[(1, 1)],
            inline=[(0, 1)],
            fill_value=np.nan,
            dimension_names=["y", "x"],
            attributes={"units": "K", "long_name": "temperature"},
        )
        self.temp_values = expected_values(TEMP, (2, 3), [(1, 1)], np.nan)
        self.pressure = virtual_array(
            tmp_path / "p.bin", PRESSURE, (2,), dimension_names=["z"], attributes={"units": "Pa"}
        )
        (tmp_path / "s.bin").write_bytes(np.float64(2.5).tobytes())
        self.scalar = ManifestArray(
            create_v3_array_metadata(shape=(), data_type="<f8", chunk_shape=(), dimension_names=[]),
            ChunkManifest(
                {"0": {"path": str(tmp_path / "s.bin"), "offset": 0, "length": 8}}, shape=()
            ),
        )
        deeper = ManifestGroup(arrays={"scalar": self.scalar}, attributes={"depth": 2})
        sub = ManifestGroup(arrays={"pressure": self.pressure}, groups={"deeper": deeper})
        self.group = ManifestGroup(
            arrays={"temp": self.temp}, groups={"sub": sub}, attributes={"title": "test", "n": 1}
        )
        self.store = ManifestStore(self.group)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


# -- metadata documents -----------------------------------------------------------------------------


def test_group_documents(tree: Tree) -> None:
    root = json.loads(run(tree.store.get("zarr.json", PROTO)).to_bytes())
    assert root == {"zarr_format": 3, "node_type": "group", "attributes": {"title": "test", "n": 1}}
    sub = json.loads(run(tree.store.get("sub/zarr.json", PROTO)).to_bytes())
    assert sub["node_type"] == "group"
    deeper = json.loads(run(tree.store.get("sub/deeper/zarr.json", PROTO)).to_bytes())
    assert deeper["attributes"] == {"depth": 2}


def test_array_documents(tree: Tree) -> None:
    doc = json.loads(run(tree.store.get("temp/zarr.json", PROTO)).to_bytes())
    assert doc["node_type"] == "array"
    assert doc["shape"] == [4, 6]
    assert doc["data_type"] == "float32"
    assert doc["chunk_grid"]["configuration"]["chunk_shape"] == [2, 3]
    assert doc["dimension_names"] == ["y", "x"]
    assert [c["name"] for c in doc["codecs"]] == ["bytes", "numcodecs.zlib"]
    assert doc["attributes"]["units"] == "K"
    p = json.loads(run(tree.store.get("sub/pressure/zarr.json", PROTO)).to_bytes())
    assert p["codecs"] == [{"name": "bytes", "configuration": {"endian": "big"}}]
    assert run(tree.store.get("sub/deeper/scalar/zarr.json", PROTO)) is not None
    assert run(tree.store.get("nope/zarr.json", PROTO)) is None


# -- chunk keys ---------------------------------------------------------------------------------------


def test_chunk_keys_return_referenced_bytes(tree: Tree, tmp_path: Path) -> None:
    file_bytes = (tmp_path / "temp.bin").read_bytes()
    m = tree.temp.manifest
    for key, idx in [("temp/c/0/0", (0, 0)), ("temp/c/1/0", (1, 0))]:
        entry = m.get_entry(idx)
        got = run(tree.store.get(key, PROTO)).to_bytes()
        assert got == file_bytes[entry["offset"] : entry["offset"] + entry["length"]]
        assert numcodecs.Zlib().decode(got)  # a real zlib stream, not an arbitrary slice
    assert run(tree.store.get("temp/c/0/1", PROTO)).to_bytes() == m.get_entry((0, 1))["data"]
    assert run(tree.store.get("temp/c/1/1", PROTO)) is None  # missing chunk
    assert run(tree.store.get("sub/deeper/scalar/c", PROTO)).to_bytes() == np.float64(2.5).tobytes()
    pressure = run(tree.store.get("sub/pressure/c/2", PROTO)).to_bytes()
    assert np.frombuffer(pressure, ">i8").tolist() == [4000, 0]  # the padded partial chunk


@pytest.mark.parametrize(
    "key",
    [
        "temp/c/2/0",
        "temp/c/0/3",
        "temp/c/0",
        "temp/c/0/0/0",
        "temp/c/-1/0",
        "temp/c/a/0",
        "temp/0/0",
        "temp",
        "c/0",
        "sub/c/0",
        "sub/pressure/c",
        "nope/c/0",
        "zarr.jsonx",
        "",
    ],
)
def test_unknown_keys(tree: Tree, key: str) -> None:
    assert run(tree.store.get(key, PROTO)) is None
    assert not run(tree.store.exists(key))


RANGES = {
    "range": (RangeByteRequest(2, 7), slice(2, 7)),
    "range past end": (RangeByteRequest(3, 10_000), slice(3, None)),
    "offset": (OffsetByteRequest(5), slice(5, None)),
    "suffix": (SuffixByteRequest(4), slice(-4, None)),
    "suffix longer than value": (SuffixByteRequest(10_000), slice(None)),
    "none": (None, slice(None)),
}


@pytest.mark.parametrize(
    "key", ["temp/c/1/0", "temp/c/0/1", "temp/zarr.json"], ids=["ref", "inlined", "doc"]
)
@pytest.mark.parametrize(("byte_range", "expected"), RANGES.values(), ids=RANGES.keys())
def test_byte_ranges(tree: Tree, key: str, byte_range: Any, expected: slice) -> None:
    whole = run(tree.store.get(key, PROTO)).to_bytes()
    assert len(whole) > 8
    got = run(tree.store.get(key, PROTO, byte_range=byte_range)).to_bytes()
    assert got == whole[expected]


def test_bad_byte_range(tree: Tree) -> None:
    with pytest.raises(TypeError, match="Unexpected byte_range, got"):
        run(tree.store.get("temp/c/0/0", PROTO, byte_range=(0, 2)))


def test_get_partial_values(tree: Tree) -> None:
    requests = [
        ("temp/c/0/0", RangeByteRequest(0, 4)),
        ("temp/c/0/1", SuffixByteRequest(3)),
        ("temp/c/1/1", None),
        ("zarr.json", OffsetByteRequest(1)),
    ]
    got = run(tree.store.get_partial_values(PROTO, (r for r in requests)))  # a one-shot iterable
    assert len(got) == 4
    assert got[2] is None
    for (key, byte_range), buf in zip(requests, got):
        if buf is not None:
            assert buf.to_bytes() == run(tree.store.get(key, PROTO, byte_range)).to_bytes()


def test_exists_and_sizes(tree: Tree) -> None:
    for key in ["zarr.json", "temp/zarr.json", "temp/c/0/0", "temp/c/0/1", "sub/deeper/scalar/c"]:
        assert run(tree.store.exists(key)), key
    assert not run(tree.store.exists("temp/c/1/1"))
    assert run(tree.store.getsize("temp/c/0/1")) == len(
        tree.temp.manifest.get_entry((0, 1))["data"]
    )
    with pytest.raises(FileNotFoundError):
        run(tree.store.getsize("temp/c/1/1"))
    ref = tree.temp.manifest.get_entry((1, 0))
    assert run(tree.store.getsize("temp/c/1/0")) == ref["length"]
    assert run(tree.store.getsize("zarr.json")) == len(run(tree.store.get("zarr.json", PROTO)))
    sizes = [
        run(tree.store.getsize(k)) for k in run(collect(tree.store.list_prefix("sub/pressure/")))
    ]
    assert run(tree.store.getsize_prefix("sub/pressure")) == sum(sizes)


# -- listing ------------------------------------------------------------------------------------------


def test_list(tree: Tree) -> None:
    keys = run(collect(tree.store.list()))
    temp_chunks = [f"temp/c/{i}/{j}" for i in range(2) for j in range(2) if (i, j) != (1, 1)]
    expected = {
        "zarr.json",
        "temp/zarr.json",
        *temp_chunks,
        "sub/zarr.json",
        "sub/pressure/zarr.json",
        "sub/pressure/c/0",
        "sub/pressure/c/1",
        "sub/pressure/c/2",
        "sub/deeper/zarr.json",
        "sub/deeper/scalar/zarr.json",
        "sub/deeper/scalar/c",
    }
    assert len(keys) == len(set(keys))
    assert set(keys) == expected
    assert all(run(tree.store.exists(k)) for k in keys)


def test_list_prefix(tree: Tree) -> None:
    assert set(run(collect(tree.store.list_prefix("sub/deeper/")))) == {
        "sub/deeper/zarr.json",
        "sub/deeper/scalar/zarr.json",
        "sub/deeper/scalar/c",
    }
    assert set(run(collect(tree.store.list_prefix("")))) == set(run(collect(tree.store.list())))
    assert run(collect(tree.store.list_prefix("nothing"))) == []


def test_list_dir(tree: Tree) -> None:
    assert sorted(run(collect(tree.store.list_dir("")))) == ["sub", "temp", "zarr.json"]
    assert sorted(run(collect(tree.store.list_dir("sub")))) == ["deeper", "pressure", "zarr.json"]
    assert sorted(run(collect(tree.store.list_dir("sub/")))) == ["deeper", "pressure", "zarr.json"]
    assert sorted(run(collect(tree.store.list_dir("temp/c")))) == ["0", "1"]
    assert sorted(run(collect(tree.store.list_dir("sub/pressure/c")))) == ["0", "1", "2"]
    assert run(collect(tree.store.list_dir("su"))) == []  # whole segments only
    assert not run(tree.store.is_empty(""))
    assert not run(tree.store.is_empty("sub"))
    assert run(tree.store.is_empty("nothing/"))


# -- read-only, equality, pickling -------------------------------------------------------------------


def test_read_only(tree: Tree) -> None:
    store = tree.store
    assert store.read_only
    assert not store.supports_writes
    assert not store.supports_deletes
    assert store.supports_listing
    buf = PROTO.buffer.from_bytes(b"x")
    msg = "store was opened in read-only mode and does not support writing"
    with pytest.raises(ValueError, match=msg):
        run(store.set("temp/c/0/0", buf))
    with pytest.raises(ValueError, match=msg):
        run(store.delete("temp/c/0/0"))
    assert store.with_read_only(True) is store
    with pytest.raises(NotImplementedError, match="with_read_only is not implemented"):
        store.with_read_only(False)
    with pytest.raises(ValueError, match="read-only"):
        zarr.open_group(store, mode="w")


def test_equality_repr_and_pickle(tree: Tree, tmp_path: Path) -> None:
    store = tree.store
    assert store == ManifestStore(tree.group)
    assert store != ManifestStore(ManifestGroup(arrays={"temp": tree.temp}))
    assert "arrays=3" in repr(store)
    assert "groups=3" in repr(store)
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store
    assert clone.read_only
    np.testing.assert_array_equal(zarr.open_group(clone, mode="r")["temp"][:], tree.temp_values)


def test_constructor_checks() -> None:
    with pytest.raises(TypeError, match="ManifestGroup"):
        ManifestStore({"a": 1})  # type: ignore[arg-type]
    assert isinstance(ManifestStore(ManifestGroup()).registry, ObjectStoreRegistry)


# -- real values through zarr and xarray -----------------------------------------------------------


def test_zarr_open_group(tree: Tree) -> None:
    g = zarr.open_group(tree.store, mode="r")
    assert dict(g.attrs) == {"title": "test", "n": 1}
    np.testing.assert_array_equal(g["temp"][:], tree.temp_values)
    np.testing.assert_array_equal(g["temp"][1:3, 2:5], tree.temp_values[1:3, 2:5])
    np.testing.assert_array_equal(g["sub/pressure"][:], PRESSURE)
    assert g["sub/deeper/scalar"][()] == 2.5
    assert g["temp"].attrs["units"] == "K"
    assert sorted(g.group_keys()) == ["sub"]
    assert sorted(g["sub"].array_keys()) == ["pressure"]


def test_xarray_open_zarr(tree: Tree) -> None:
    ds = xr.open_zarr(tree.store, consolidated=False, zarr_format=3)
    assert ds.attrs == {"title": "test", "n": 1}
    assert ds["temp"].dims == ("y", "x")
    assert ds["temp"].attrs["long_name"] == "temperature"
    np.testing.assert_array_equal(ds["temp"].values, tree.temp_values)
    sub = xr.open_zarr(tree.store, group="sub", consolidated=False, zarr_format=3)
    np.testing.assert_array_equal(sub["pressure"].values, PRESSURE)
    eager = xr.open_dataset(
        tree.store, engine="zarr", consolidated=False, zarr_format=3, chunks=None
    )
    np.testing.assert_array_equal(eager["temp"].values, tree.temp_values)
    deeper = xr.open_dataset(
        tree.store, engine="zarr", group="sub/deeper", consolidated=False, zarr_format=3
    )
    assert float(deeper["scalar"]) == 2.5


def test_open_datatree(tree: Tree) -> None:
    dt = xr.open_datatree(tree.store, engine="zarr", consolidated=False, zarr_format=3)
    np.testing.assert_array_equal(dt["sub/pressure"].values, PRESSURE)
    assert float(dt["sub/deeper/scalar"]) == 2.5


# -- errors: never silent fill values --------------------------------------------------------------


def _single(path: str, offset: int = 0, length: int = 16) -> ManifestStore:
    meta = create_v3_array_metadata(
        shape=(2,), data_type="<f8", chunk_shape=(2,), dimension_names=["x"]
    )
    manifest = ChunkManifest({"0": {"path": path, "offset": offset, "length": length}})
    return ManifestStore(ManifestGroup(arrays={"a": ManifestArray(meta, manifest)}))


@pytest.mark.parametrize("case", ["missing file", "truncated", "offset past the end"])
def test_unreadable_chunks_raise(tmp_path: Path, case: str) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(np.arange(2, dtype="<f8").tobytes())
    store = {
        "missing file": _single(str(tmp_path / "gone.bin")),
        "truncated": _single(str(path), offset=8),
        "offset past the end": _single(str(path), offset=100),
    }[case]
    url = str(tmp_path / ("gone.bin" if case == "missing file" else "data.bin"))
    with pytest.raises(ChunkReadError, match=url) as info:
        run(store.get("a/c/0", PROTO))
    assert isinstance(info.value, OSError)
    with pytest.raises(ChunkReadError):
        zarr.open_group(store, mode="r")["a"][:]
    with pytest.raises(ChunkReadError):
        xr.open_zarr(store, consolidated=False, zarr_format=3)["a"].values  # noqa: B018
    # and the metadata is still readable: only the chunk fails
    assert zarr.open_group(store, mode="r")["a"].shape == (2,)


def test_getsize_reads_no_chunk(tmp_path: Path) -> None:
    # sizes come from the manifest: nothing is fetched, so even a vanished file has sizes
    assert run(_single(str(tmp_path / "gone.bin"), length=16).getsize("a/c/0")) == 16
    assert zarr.open_group(_single(str(tmp_path / "gone.bin")), mode="r")["a"].nbytes_stored() > 16


def test_truncated_message_says_what_happened(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"\0" * 20)
    with pytest.raises(ChunkReadError, match=r"Read 12 bytes instead of 16 .*truncated"):
        run(_single(str(path), offset=8).get("a/c/0", PROTO))


def test_usable_without_open_and_as_context_manager(tree: Tree) -> None:
    # zarr's StoreTests: a store that was never opened still serves reads, and `with` closes it
    store = ManifestStore(tree.group)
    assert not store._is_open
    assert run(store.get("temp/c/0/1", PROTO)) is not None
    with ManifestStore(tree.group) as opened:
        np.testing.assert_array_equal(
            zarr.open_group(opened, mode="r")["temp"][:], tree.temp_values
        )
    assert not opened._is_open
