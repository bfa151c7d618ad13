"""Source records attached by ManifestStore: shared per file, found without a grid pass
when nothing is new, and the values read through the store unchanged."""

from __future__ import annotations

import os

import netCDF4
import numpy as np
import pytest
import zarr

from tests.conftest import requires_real_data
from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.manifests.sources import (
    SourceRecord,
    SourceURL,
    group_with_records,
    records_of,
    with_records,
)
from virtualizarr.parsers import NetCDF3Parser
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore
from virtualizarr.testing.ground_truth import real_file

MANY_VARS = "netcdf3/ref_nccopy3_subset.nc"  # 367 variables in one file


@requires_real_data
def test_every_variable_of_a_file_shares_one_recorded_path() -> None:
    path = real_file(MANY_VARS)
    store = NetCDF3Parser()(str(path), ObjectStoreRegistry())
    arrays = store.group.arrays
    assert len(arrays) > 300
    tables = [a.manifest.table for a in arrays.values() if a.manifest.used_paths()]
    entries = {id(t[0]) for t in tables}
    assert len(entries) == 1  # one SourceURL object for the file, not one per variable
    url = tables[0][0]
    assert isinstance(url, SourceURL)
    assert url.record == SourceRecord(url, path.stat().st_size, url.record.etag)
    assert records_of(a.manifest for a in arrays.values()) == {url: url.record}
    # a second store over the same group finds everything recorded: the group is kept
    again = ManifestStore(store.group, registry=ObjectStoreRegistry())
    assert again.group is store.group
    assert group_with_records(store.group, {url: url.record}) is store.group


@requires_real_data
def test_values_read_through_the_recorded_store_equal_netcdf4() -> None:
    path = real_file(MANY_VARS)
    store = NetCDF3Parser()(str(path), ObjectStoreRegistry())
    root = zarr.open_group(store, mode="r", zarr_format=3)
    with netCDF4.Dataset(path) as nc:
        names = [n for n, v in nc.variables.items() if v.dtype != str and v.size][:40]
        assert names
        for name in names:
            want = nc.variables[name]
            want.set_auto_maskandscale(False)
            np.testing.assert_array_equal(root[name][...], want[...], err_msg=name)


def test_a_new_record_replaces_the_old_one_and_an_unused_path_gives_none(tmp_path) -> None:
    m = ChunkManifest.from_path_ids(
        table=[str(tmp_path / "a.nc"), str(tmp_path / "b.nc")],
        ids=np.zeros(2, np.uint32),
        offsets=[0, 8],
        lengths=[8, 8],
    )
    a, b = m.table  # file:// URLs
    assert records_of([m]) == {}  # no records yet
    old, new = SourceRecord(a, 16, "x"), SourceRecord(a, 16, "y")

    tagged = with_records(m, {a: old, b: SourceRecord(b, 4)})
    assert [getattr(t, "record", None) for t in tagged.table] == [old, SourceRecord(b, 4)]
    assert records_of([tagged]) == {a: old}  # b is in the table, but no chunk uses it
    assert with_records(tagged, {a: old}) is tagged  # nothing new: the same manifest
    retagged = with_records(tagged, {a: new})
    assert retagged.table[0].record == new
    assert retagged == m
    meta = create_v3_array_metadata(shape=(4,), data_type="<f4", chunk_shape=(2,))
    other = ChunkManifest.from_path_ids(
        table=[a], ids=np.zeros(3, np.uint32), offsets=[0, 8, 16], lengths=[8, 8, 8]
    )
    arr = ManifestArray(meta, m)
    with pytest.raises(ValueError, match="same chunk grid"):
        arr.with_equal_manifest(other)


@requires_real_data
def test_async_local_reads_notice_a_rewritten_source(tmp_path) -> None:
    """store.get (async) checks the file's stat against its record on every read, also
    after a read that found it unchanged."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    from virtualizarr.errors import SourceChangedError

    path = tmp_path / "copy.nc"
    path.write_bytes(real_file(MANY_VARS).read_bytes())
    store = NetCDF3Parser()(str(path), ObjectStoreRegistry())
    name = next(n for n, a in store.group.arrays.items() if a.manifest.used_paths())
    key = f"{name}/c/" + "/".join("0" * len(store.group.arrays[name].metadata.shape))
    proto = default_buffer_prototype()
    first = sync(store.get(key, proto))
    assert sync(store.get(key, proto)).to_bytes() == first.to_bytes()
    st = path.stat()
    path.write_bytes(path.read_bytes())  # same bytes and size, a new modification time
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(SourceChangedError, match=r"copy\.nc"):
        sync(store.get(key, proto))


def test_one_gather_of_reads_checks_the_source_and_the_next_gather_again(tmp_path) -> None:
    """zarr's async pipeline gathers a read's chunk gets: one stat of the file vouches for
    the whole gather (they start in one event-loop iteration); the next gather, after the
    file changed, raises."""
    import asyncio

    import h5py
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    from virtualizarr.errors import SourceChangedError
    from virtualizarr.parsers import HDFParser

    path = tmp_path / "chunks.h5"
    data = np.arange(1000.0)
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, chunks=(100,))
    store = HDFParser()(str(path), ObjectStoreRegistry())
    proto = default_buffer_prototype()

    async def gather() -> list[bytes]:
        got = await asyncio.gather(*(store.get(f"x/c/{i}", proto) for i in range(10)))
        return [b.to_bytes() for b in got]

    first = sync(gather())
    assert np.array_equal(np.frombuffer(b"".join(first), "<f8"), data)
    assert sync(gather()) == first  # unchanged: checked again, still fine
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(SourceChangedError, match=r"chunks\.h5"):
        sync(gather())
