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
