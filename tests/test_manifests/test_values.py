"""read_arrays (coordinate loading without zarr's async path) reads what zarr reads."""

from __future__ import annotations

from pathlib import Path

import numcodecs
import numpy as np
import pytest
from obstore.store import MemoryStore

from tests.test_manifests.builders import read_zarr, virtual_array
from virtualizarr import values as values_mod
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore
from virtualizarr.values import read_arrays

# fixed-width bytes have no Zarr v3 spec yet; zarr says so on every use
pytestmark = pytest.mark.filterwarnings("ignore:The data type .* does not have a Zarr V3")


def _arrays(tmp_path: Path) -> dict[str, ManifestArray]:
    rng = np.random.default_rng(0)
    grid = rng.normal(size=(7, 10)).astype(">f8")
    (tmp_path / "s.bin").write_bytes(np.int16(-3).tobytes())
    return {
        # edge chunks, a missing chunk (fill value), an inlined chunk, shuffle + zlib
        "grid": virtual_array(
            tmp_path / "g.bin",
            grid,
            (3, 4),
            [numcodecs.Shuffle(8), numcodecs.Zlib(level=1)],
            missing=[(1, 1)],
            inline=[(2, 0)],
            fill_value=-999.0,
            dimension_names=["y", "x"],
        ),
        "time": virtual_array(
            tmp_path / "t.bin", np.arange(24, dtype="<i8") * 3600, (5,), dimension_names=["t"]
        ),
        "name": virtual_array(
            tmp_path / "n.bin",
            np.array([b"ab", b"cde", b""], dtype="S3"),
            (2,),
            dimension_names=["n"],
        ),
        "scalar": ManifestArray(
            create_v3_array_metadata(shape=(), data_type="<i2", chunk_shape=(), dimension_names=[]),
            ChunkManifest(
                {"0": {"path": str(tmp_path / "s.bin"), "offset": 0, "length": 2}}, shape=()
            ),
        ),
        "empty": ManifestArray(
            create_v3_array_metadata(
                shape=(0,), data_type="<f4", chunk_shape=(4,), dimension_names=["e"]
            ),
            ChunkManifest.empty((0,)),
        ),
    }


def _check(store: ManifestStore, names: list[str]) -> None:
    got = read_arrays(store, names)
    assert len(got) == len(names)
    for name, values in zip(names, got):
        want = read_zarr(store.group.arrays[name], store.registry)
        assert values.dtype == want.dtype, name
        assert values.shape == want.shape, name
        np.testing.assert_array_equal(values, want, err_msg=name)


def test_local_files_match_zarr(tmp_path: Path) -> None:
    arrays = _arrays(tmp_path)
    _check(ManifestStore(ManifestGroup(arrays=arrays)), list(arrays))
    grid = read_arrays(ManifestStore(ManifestGroup(arrays=arrays)), ["grid"])[0]
    assert (grid[3:6, 4:8] == -999.0).all()  # the missing chunk


def test_remote_files_match_zarr(tmp_path: Path) -> None:
    # through a registered (non-local) store: bytes come from one batched async request
    arrays = _arrays(tmp_path)
    mem = MemoryStore()
    for name in ("g.bin", "t.bin", "n.bin", "s.bin"):
        mem.put(name, (tmp_path / name).read_bytes())
    prefix = f"file://{tmp_path}"
    moved = {
        n: a.rename_paths(lambda p: p.replace(prefix, "memory://bucket")) for n, a in arrays.items()
    }
    registry = ObjectStoreRegistry({"memory://bucket": mem})
    _check(ManifestStore(ManifestGroup(arrays=moved), registry=registry), list(moved))


def test_many_chunks_go_through_zarr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = _arrays(tmp_path)
    monkeypatch.setattr(values_mod, "_MAX_CHUNKS", 4)  # "grid" (9 chunks) and "time" (5) via zarr
    _check(ManifestStore(ManifestGroup(arrays=arrays)), ["time", "grid", "name", "scalar"])


def test_local_raw_numbers_read_directly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # uncompressed numbers in local files (most coordinates) are read by walking the manifest
    # and viewing the bytes: neither chunk keys nor zarr's async path are involved
    arrays = {
        "big": virtual_array(
            tmp_path / "b.bin", np.linspace(-1, 1, 11).astype(">f4"), (4,), missing=[(1,)]
        ),
        "u8": virtual_array(tmp_path / "u.bin", np.arange(9, dtype="u1").reshape(3, 3), (2, 2)),
        "i2": virtual_array(tmp_path / "i.bin", np.arange(-6, 6, dtype="<i2"), (5,), inline=[(0,)]),
        "zlib": virtual_array(
            tmp_path / "z.bin", np.arange(10, dtype="<f8"), (3,), [numcodecs.Zlib(level=1)]
        ),
    }
    store = ManifestStore(ManifestGroup(arrays=arrays))
    want = {n: read_zarr(a, store.registry) for n, a in arrays.items()}

    def refuse(*args: object) -> None:
        raise AssertionError("the general path ran")

    monkeypatch.setattr(values_mod, "_plan", refuse)
    monkeypatch.setattr(values_mod, "_read_with_zarr", refuse)
    got = read_arrays(store, list(arrays))
    for (name, w), g in zip(want.items(), got):
        assert g.dtype == w.dtype, name
        np.testing.assert_array_equal(g, w, err_msg=name)
    assert got[0].dtype.isnative  # big-endian storage, native values (as zarr returns them)


def test_local_short_chunk_is_an_error(tmp_path: Path) -> None:
    # a reference one byte short of a raw chunk: the decode error zarr gives, not garbage
    arr = virtual_array(tmp_path / "t.bin", np.arange(8, dtype="<i4"), (8,))
    m = arr.manifest
    short = ChunkManifest.from_path_ids(
        table=m.table, ids=m.path_ids, offsets=m.offsets, lengths=m.lengths - 1
    )
    store = ManifestStore(ManifestGroup(arrays={"t": ManifestArray(arr.metadata, short)}))
    with pytest.raises(ValueError):  # zarr's reshape error
        read_arrays(store, ["t"])
