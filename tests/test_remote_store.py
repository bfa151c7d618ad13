"""ManifestStore reads of remote files: grouped per file, merged, concurrent, counted; and staleness.

Real NetCDF4 files written with h5py, served by the loopback HTTP server and moto S3 server
of ``tests/conftest.py``; values compared with h5py's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from tests.conftest import HTTPServer, S3Server
from virtualizarr import open_virtual_dataset
from virtualizarr.errors import ChunkReadError, SourceChangedError
from virtualizarr.io import open_source, total_stats
from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

h5py = pytest.importorskip("h5py")

N_CHUNKS, CHUNK = 96, 1000  # 96 chunks of 1000 float32 (4000 bytes), written one after another


def write_nc(path: Path, seed: int = 0) -> np.ndarray:
    values = np.random.default_rng(seed).standard_normal(N_CHUNKS * CHUNK).astype("f4")
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=values, chunks=(CHUNK,))
    return values


def gets(server: HTTPServer, path: Path) -> list[str | None]:
    name = "/" + path.relative_to(server.root).as_posix()
    return [r for m, p, r in server.requests if m == "GET" and p == name]


def chunk_keys() -> list[tuple[str, None]]:
    return [(f"v/c/{i}", None) for i in range(N_CHUNKS)]


def test_get_partial_values_is_one_merged_request(http_server: HTTPServer) -> None:
    path = http_server.mkdir() / "a.nc"
    values = write_nc(path)
    ds = open_virtual_dataset(http_server.url_for(path), loadable_variables=[])
    store = ds.vz.to_store()
    n_parse = len(gets(http_server, path))
    before = total_stats()
    got = sync(store.get_partial_values(default_buffer_prototype(), chunk_keys()))
    # 96 neighbouring chunks of one file: one request (with h5py's B-tree node between)
    assert len(gets(http_server, path)) == n_parse + 1
    assert N_CHUNKS * CHUNK * 4 <= (total_stats() - before).bytes < path.stat().st_size
    raw = np.concatenate([np.frombuffer(b.to_bytes(), "<f4") for b in got])
    np.testing.assert_array_equal(raw, values)


@pytest.mark.parametrize("pipeline", ["default", "fused"])
def test_zarr_read_fetches_each_byte_once_in_few_requests(
    http_server: HTTPServer, pipeline: str
) -> None:
    path = http_server.mkdir() / "b.nc"
    values = write_nc(path, seed=1)
    ds = open_virtual_dataset(http_server.url_for(path), loadable_variables=[])
    n_parse = len(gets(http_server, path))
    before = total_stats()
    if pipeline == "fused":
        got = ds.vz.open_data()["v"].values
    else:
        got = xr.open_zarr(ds.vz.to_store(), consolidated=False, zarr_format=3)["v"].values
    np.testing.assert_array_equal(got, values)
    # the first chunk read brings its neighbours (read-ahead): no byte twice, few requests
    assert N_CHUNKS * CHUNK * 4 <= (total_stats() - before).bytes < path.stat().st_size
    assert len(gets(http_server, path)) - n_parse <= 3


def test_dask_read(http_server: HTTPServer) -> None:
    pytest.importorskip("dask")
    path = http_server.mkdir() / "d.nc"
    values = write_nc(path, seed=2)
    ds = open_virtual_dataset(http_server.url_for(path), loadable_variables=[])
    n_parse = len(gets(http_server, path))
    before = total_stats()
    lazy = xr.open_zarr(ds.vz.to_store(), consolidated=False, zarr_format=3, chunks={})["v"]
    np.testing.assert_array_equal(lazy.values, values)
    assert N_CHUNKS * CHUNK * 4 <= (total_stats() - before).bytes < path.stat().st_size
    assert len(gets(http_server, path)) - n_parse <= 3


def test_s3_read_counts(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.make_bucket()
    values = write_nc(tmp_path / "s.nc", seed=3)
    url = s3_server.put(bucket, "s.nc", (tmp_path / "s.nc").read_bytes())
    registry = ObjectStoreRegistry({f"s3://{bucket}": s3_server.store(bucket)})
    before = total_stats()
    ds = open_virtual_dataset(url, registry=registry, loadable_variables=[])
    parse = total_stats() - before
    assert parse.requests == 1  # detection + parse: the file (< 1 MiB) came whole, once
    assert parse.bytes == (tmp_path / "s.nc").stat().st_size
    store = ds.vz.to_store(registry)
    before = total_stats()
    got = sync(store.get_partial_values(default_buffer_prototype(), chunk_keys()))
    assert (total_stats() - before).requests == 1
    raw = np.concatenate([np.frombuffer(b.to_bytes(), "<f4") for b in got])
    np.testing.assert_array_equal(raw, values)


def test_max_in_flight_is_validated_and_pickled() -> None:
    import pickle

    group = ManifestGroup(arrays={})
    with pytest.raises(ValueError, match="max_in_flight"):
        ManifestStore(group, max_in_flight=0)
    store = ManifestStore(group, max_in_flight=8, read_ahead=0)
    again = pickle.loads(pickle.dumps(store))
    assert again._reader.max_in_flight == 8
    assert again._reader.read_ahead == 0


def _one_chunk_array(url: str, length: int) -> ManifestArray:
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [4],
        "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0.0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    }
    manifest = ChunkManifest.from_arrays(paths=[url], offsets=[0], lengths=[length])
    return ManifestArray(meta, manifest)


def test_zero_length_reference_raises_chunk_read_error(tmp_path: Path) -> None:
    path = tmp_path / "z.bin"
    path.write_bytes(bytes(16))
    store = ManifestStore(ManifestGroup(arrays={"a": _one_chunk_array(path.as_uri(), 0)}))
    with pytest.raises(ChunkReadError, match=r"a/c/0.*z\.bin"):
        store.get_sync("a/c/0")
    with pytest.raises(ChunkReadError, match=r"z\.bin"):
        sync(store.get("a/c/0", default_buffer_prototype()))
    with pytest.raises(ChunkReadError, match=r"z\.bin"):
        zarr.open_array(store, path="a", mode="r", zarr_format=3)[:]


# -- staleness: a file modified after it was virtualized --------------------------------------


def _parsed_with_record(url: str, registry: ObjectStoreRegistry | None = None) -> ManifestStore:
    registry = registry if registry is not None else ObjectStoreRegistry()
    record = open_source(url, registry).record()
    ds = open_virtual_dataset(url, registry=registry, loadable_variables=[])
    return ManifestStore(ds.vz.to_store(registry).group, registry=registry, sources=[record])


def test_local_file_modified_after_parsing(tmp_path: Path) -> None:
    path = tmp_path / "m.nc"
    values = write_nc(path, seed=4)
    store = _parsed_with_record(str(path))
    assert np.array_equal(np.frombuffer(store.get_sync("v/c/0").to_bytes(), "<f4"), values[:CHUNK])
    write_nc(path, seed=5)  # same size, other values: the mtime differs
    with pytest.raises(SourceChangedError, match=r"m\.nc"):
        store.get_sync("v/c/0")
    with pytest.raises(SourceChangedError, match=r"m\.nc"):
        sync(store.get_partial_values(default_buffer_prototype(), chunk_keys()[:3]))
    with pytest.raises(SourceChangedError, match=r"m\.nc"):
        xr.open_zarr(store, consolidated=False, zarr_format=3)["v"].values  # noqa: B018


def test_remote_file_modified_after_parsing(http_server: HTTPServer) -> None:
    path = http_server.mkdir() / "r.nc"
    write_nc(path, seed=6)
    store = _parsed_with_record(http_server.url_for(path))
    with path.open("ab") as f:  # the conftest server sends no ETag: the size tells
        f.write(b"appended")
    with pytest.raises(SourceChangedError, match=r"r\.nc"):
        store.get_sync("v/c/1")


def test_s3_object_replaced_after_parsing(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.make_bucket()
    write_nc(tmp_path / "o.nc", seed=7)
    url = s3_server.put(bucket, "o.nc", (tmp_path / "o.nc").read_bytes())
    registry = ObjectStoreRegistry({f"s3://{bucket}": s3_server.store(bucket)})
    store = _parsed_with_record(url, registry)
    write_nc(tmp_path / "o.nc", seed=8)  # same size, new ETag
    s3_server.put(bucket, "o.nc", (tmp_path / "o.nc").read_bytes())
    with pytest.raises(SourceChangedError, match=r"o\.nc"):
        sync(store.get("v/c/2", default_buffer_prototype()))


def test_records_from_parsing_are_used_by_default(tmp_path: Path) -> None:
    path = tmp_path / "auto.nc"
    write_nc(path, seed=9)
    ds = open_virtual_dataset(str(path), loadable_variables=[])
    store = ds.vz.to_store()  # no sources= given: those open_source saw while parsing
    assert path.as_uri() in store.sources
    store.get_sync("v/c/0")
    write_nc(path, seed=10)
    with pytest.raises(SourceChangedError, match=r"auto\.nc.*changed since it was virtualized"):
        ds.vz.open_data()["v"].values  # noqa: B018
