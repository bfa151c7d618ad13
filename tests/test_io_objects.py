"""virtualizarr.io.objects: listing, whole-object reads, writes, copies and deletes, against the
moto S3 server and local files of tests/conftest.py, with errors that name the URL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import HTTPServer, S3Server
from virtualizarr.errors import ListingNotSupportedError, ObjectStoreError, WriterError
from virtualizarr.io import total_stats
from virtualizarr.io.objects import (
    any_object,
    copy_object,
    delete_objects,
    get_object,
    list_children,
    list_objects,
    put_object,
    read_ranges,
)
from virtualizarr.mfdataset import expand_paths
from virtualizarr.registry import ObjectStoreRegistry

FILES = {
    "d/a.nc": b"aaaa",
    "d/sub/b.nc": b"bb",
    "d/sub/deeper/c.nc": b"c" * 1000,
    "dx/not-below-d.nc": b"x",
}


def fill(base: str, registry: ObjectStoreRegistry) -> None:
    for rel, data in FILES.items():
        put_object(f"{base}/{rel}", data, registry)


@pytest.fixture(params=["s3", "local"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, ObjectStoreRegistry]:
    """A fresh base URL (an S3 bucket on moto, or a local directory) and its registry."""
    if request.param == "local":
        return f"file://{tmp_path}", ObjectStoreRegistry()
    s3: S3Server = request.getfixturevalue("s3_server")
    bucket = s3.make_bucket()
    return f"s3://{bucket}", ObjectStoreRegistry({f"s3://{bucket}": s3.store(bucket)})


def test_list_put_get_copy_delete(place: tuple[str, ObjectStoreRegistry]) -> None:
    base, reg = place
    fill(base, reg)
    before = total_stats()
    names, sizes = list_objects(f"{base}/d", reg)
    # a listing counts as one request
    assert (total_stats() - before).requests == 1
    got = dict(zip(names, sizes.tolist()))
    # everything below d/ at any depth, relative to it; d/ is a directory, not a name prefix
    assert got == {"a.nc": 4, "sub/b.nc": 2, "sub/deeper/c.nc": 1000}
    assert sizes.dtype == np.uint64
    assert list_children(f"{base}/d", reg) == ["sub"]
    assert list_children(f"{base}/", reg) == ["d", "dx"]
    assert any_object(f"{base}/d/sub", reg)
    assert not any_object(f"{base}/nothing-here", reg)
    assert list_objects(f"{base}/nothing-here", reg)[0] == []

    assert get_object(f"{base}/d/sub/b.nc", reg) == b"bb"
    assert read_ranges(f"{base}/d/sub/deeper/c.nc", [0, 990, 5], [3, 10, 0], reg) == [
        b"ccc",
        b"c" * 10,
        b"",
    ]

    copy_object(f"{base}/d/a.nc", f"{base}/e/a-copy.nc", reg)
    assert get_object(f"{base}/e/a-copy.nc", reg) == b"aaaa"
    put_object(f"{base}/e/a-copy.nc", b"new", reg)  # replaces
    assert get_object(f"{base}/e/a-copy.nc", reg) == b"new"

    delete_objects([f"{base}/e/a-copy.nc", f"{base}/d/a.nc", f"{base}/d/never-was.nc"], reg)
    assert list_objects(f"{base}/e", reg)[0] == []
    assert sorted(list_objects(f"{base}/d", reg)[0]) == ["sub/b.nc", "sub/deeper/c.nc"]


def test_missing_objects_raise_naming_the_url(place: tuple[str, ObjectStoreRegistry]) -> None:
    base, reg = place
    url = f"{base}/no/such.json"
    with pytest.raises(FileNotFoundError, match=r"no/such\.json"):
        get_object(url, reg)
    with pytest.raises(FileNotFoundError, match=r"no/such\.json"):
        read_ranges(url, [0], [4], reg)
    with pytest.raises(FileNotFoundError, match=r"no/such\.json"):
        copy_object(url, f"{base}/elsewhere.json", reg)


def test_s3_failures_are_our_errors(s3_server: S3Server) -> None:
    """A bucket that does not exist: every operation raises one of our OSErrors, naming the URL."""
    name = "no-such-bucket-" + s3_server.make_bucket()[5:]
    reg = ObjectStoreRegistry({f"s3://{name}": s3_server.store(name)})
    url = f"s3://{name}/k/a.bin"
    for call in (
        lambda: put_object(url, b"x", reg),
        lambda: list_objects(f"s3://{name}/k", reg),
        lambda: get_object(url, reg),
    ):
        with pytest.raises(OSError, match=f"s3://{name}/k") as info:
            call()
        assert isinstance(info.value, (FileNotFoundError, PermissionError, ObjectStoreError))
        assert info.value.__cause__ is not None  # obstore's error, kept for the details


def test_http_cannot_list(http_server: HTTPServer) -> None:
    from obstore.store import HTTPStore

    path = http_server.mkdir() / "a.nc"
    path.write_bytes(b"x")
    base = http_server.url_for(path.parent)
    # no obstore retries of the server's 501, so the test takes milliseconds
    store = HTTPStore.from_url(
        http_server.url, client_options={"allow_http": True}, retry_config={"max_retries": 0}
    )
    reg = ObjectStoreRegistry({http_server.url: store})
    for call in (list_objects, list_children):
        with pytest.raises(ListingNotSupportedError, match=r"Cannot list http://127\.0\.0\.1"):
            call(base, reg)
    with pytest.raises(ListingNotSupportedError, match="Give the files' URLs instead"):
        expand_paths(f"{base}/*.nc", reg)
    # reading one object needs no listing
    assert get_object(http_server.url_for(path), reg) == b"x"


def test_glob_of_object_store_urls(s3_server: S3Server) -> None:
    bucket = s3_server.make_bucket()
    reg = ObjectStoreRegistry({f"s3://{bucket}": s3_server.store(bucket)})
    fill(f"s3://{bucket}", reg)
    assert expand_paths(f"s3://{bucket}/d/*.nc", reg) == [f"s3://{bucket}/d/a.nc"]
    assert expand_paths(f"s3://{bucket}/d/*/*.nc", reg) == [f"s3://{bucket}/d/sub/b.nc"]
    assert expand_paths(f"s3://{bucket}/d*/*.nc", reg) == [
        f"s3://{bucket}/d/a.nc",
        f"s3://{bucket}/dx/not-below-d.nc",
    ]
    # ** spans directories, as glob.glob(recursive=True) reads local paths
    assert expand_paths(f"s3://{bucket}/d/**/*.nc", reg) == [
        f"s3://{bucket}/d/a.nc",
        f"s3://{bucket}/d/sub/b.nc",
        f"s3://{bucket}/d/sub/deeper/c.nc",
    ]
    with pytest.raises(FileNotFoundError, match="No files match"):
        expand_paths(f"s3://{bucket}/d/*.grib", reg)


def test_registered_prefix_store(s3_server: S3Server) -> None:
    """A store registered at a prefix: names stay relative to the URL listed."""
    bucket = s3_server.make_bucket()
    s3_server.put(bucket, "deep/dir/x.bin", b"12345")
    reg = ObjectStoreRegistry({f"s3://{bucket}/deep": s3_server.store(bucket, prefix="deep")})
    assert list_objects(f"s3://{bucket}/deep", reg)[0] == ["dir/x.bin"]
    assert list_objects(f"s3://{bucket}/deep/dir", reg)[0] == ["x.bin"]
    assert expand_paths(f"s3://{bucket}/deep/dir/*.bin", reg) == [f"s3://{bucket}/deep/dir/x.bin"]


def test_writer_put_failure_is_a_writer_error(s3_server: S3Server) -> None:
    from virtualizarr.writers.output import put_object as writer_put

    name = "no-such-bucket-" + s3_server.make_bucket()[5:]
    reg = ObjectStoreRegistry({f"s3://{name}": s3_server.store(name)})
    with pytest.raises(WriterError, match=f"Cannot write s3://{name}/refs.json"):
        writer_put(f"s3://{name}/refs.json", b"{}", reg)


def test_parquet_references_written_to_s3_and_rewritten(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """The parquet writer stages, copies and deletes through io.objects: a second write with
    bigger records leaves no stale record file and no staging prefix, and reads back."""
    import h5py
    import xarray as xr

    import virtualizarr as vz
    from virtualizarr.parsers.kerchunk import KerchunkParquetParser

    nc = tmp_path / "a.nc"
    values = np.arange(24 * 10, dtype="f4").reshape(24, 10)
    with h5py.File(nc, "w") as f:
        f.create_dataset("v", data=values, chunks=(2, 10))
    ds = vz.open_virtual_dataset(str(nc), loadable_variables=[])
    bucket = s3_server.make_bucket()
    reg = ObjectStoreRegistry({f"s3://{bucket}": s3_server.store(bucket)})
    url = f"s3://{bucket}/refs/out.parq"
    ds.vz.to_kerchunk(url, format="parquet", registry=reg, record_size=3)  # 4 record files
    first, _ = list_objects(url, reg)
    assert "v/refs.3.parq" in first
    ds.vz.to_kerchunk(url, format="parquet", registry=reg, record_size=12)  # 1 record file
    names, _ = list_objects(f"s3://{bucket}", reg)
    assert sorted(names) == ["refs/out.parq/.zmetadata", "refs/out.parq/v/refs.0.parq"]
    store = KerchunkParquetParser()(url, reg)
    got = xr.open_zarr(store, consolidated=False, zarr_format=3)
    np.testing.assert_array_equal(got["v"].values, values)
