"""open_virtual_mfdataset at scale: the column-wise combine equals xarray's, on_error and
retries, a multi-process dask.distributed cluster whose workers read the files themselves."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("virtualizarr.parsers.hdf5")
pytest.importorskip("netCDF4")

from tests.test_mfdataset import N_FILES, STEPS, write_file
from virtualizarr import open_virtual_mfdataset
from virtualizarr.errors import ParserError
from virtualizarr.manifests import ManifestArray
from virtualizarr.parsers import HDFParser


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("mfscale")
    paths = [d / f"f{i:02d}.nc" for i in range(N_FILES)]
    for i, p in enumerate(paths):
        write_file(p, i)
    return paths


def _general(paths, **kw) -> xr.Dataset:
    # preprocess= always takes xarray's combine of one Dataset per file
    return open_virtual_mfdataset(paths, preprocess=lambda d: d, **kw)


def assert_same_virtual(a: xr.Dataset, b: xr.Dataset) -> None:
    # (xr.testing.assert_identical would need the values of virtual variables)
    assert a.attrs == b.attrs
    assert dict(a.sizes) == dict(b.sizes)
    assert list(a.coords) == list(b.coords)
    assert list(a.data_vars) == list(b.data_vars)
    assert list(a.xindexes) == list(b.xindexes)
    assert list(a.variables) == list(b.variables)
    assert a.encoding["source"] == b.encoding["source"]
    for name, var in a.variables.items():
        other = b.variables[name]
        assert var.dims == other.dims, name
        assert var.attrs == other.attrs, name
        assert var.encoding == other.encoding, name
        if isinstance(var.data, ManifestArray):
            assert isinstance(other.data, ManifestArray)
            assert var.data.manifest == other.data.manifest, name
            assert var.data.metadata.to_dict() == other.data.metadata.to_dict(), name
        else:
            np.testing.assert_array_equal(var.values, other.values)


@pytest.mark.parametrize("order", ["sorted", "reversed", "shuffled"])
def test_fast_combine_equals_xarray_combine(files, order):
    paths = [str(f) for f in files]
    if order == "reversed":
        paths = paths[::-1]
    elif order == "shuffled":
        paths = [paths[i] for i in np.random.default_rng(3).permutation(len(paths))]
    fast = open_virtual_mfdataset(paths)
    assert_same_virtual(fast, _general(paths))
    assert fast.sizes["time"] == N_FILES * STEPS
    # and what xarray itself makes of the same files
    with xr.open_mfdataset(
        paths, engine="netcdf4", compat="override", coords="minimal", data_vars="minimal"
    ) as ref:
        np.testing.assert_array_equal(fast["time"].values, ref["time"].values)
        assert fast.attrs == ref.attrs
        assert list(fast.data_vars) == list(ref.data_vars)


def test_fast_nested_and_kwargs_equal_xarray(files):
    paths = [str(f) for f in files[:6]]
    for kw in (
        {"combine": "nested", "concat_dim": "time"},
        {"loadable_variables": [], "combine": "nested", "concat_dim": "time"},
        {"drop_variables": ["mask"], "decode_times": False},
    ):
        assert_same_virtual(open_virtual_mfdataset(paths, **kw), _general(paths, **kw))


def _reverse_time(path: Path) -> None:
    import netCDF4

    with netCDF4.Dataset(path, "a") as nc:
        nc["time"][:] = nc["time"][:][::-1]


def test_decreasing_duplicate_and_unordered_files_match_xarray(tmp_path):
    for i in range(4):
        write_file(tmp_path / f"f{i}.nc", i)
        _reverse_time(tmp_path / f"f{i}.nc")
    paths = [str(tmp_path / f"f{i}.nc") for i in range(4)]
    # every file decreasing: ordered by decreasing first value
    fast = open_virtual_mfdataset(paths)
    assert_same_virtual(fast, _general(paths))
    assert (np.diff(fast["time"].values) < np.timedelta64(0)).all()
    # a file given twice: xarray keeps one of them (no error), so do we
    assert_same_virtual(open_virtual_mfdataset([*paths, paths[0]]), _general([*paths, paths[0]]))
    # one file increasing among decreasing ones: xarray's error
    _reverse_time(tmp_path / "f2.nc")
    with pytest.raises(ValueError, match="monoton") as fast_err:
        open_virtual_mfdataset(paths)
    with pytest.raises(ValueError, match="monoton") as general_err:
        _general(paths)
    assert str(fast_err.value) == str(general_err.value)


def _bad_file(folder: Path) -> Path:
    bad = folder / "f99_bad.nc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)  # an HDF5 signature, nothing after it
    return bad


def test_on_error_raise_warn_skip(files, tmp_path):
    good = [str(f) for f in files[:5]]
    bad = str(_bad_file(tmp_path))
    paths = [*good[:2], bad, *good[2:]]
    with pytest.raises(ParserError, match=r"f99_bad\.nc"):
        open_virtual_mfdataset(paths)
    expected = open_virtual_mfdataset(good)
    with pytest.warns(RuntimeWarning, match=r"1 of 6 files.*f99_bad\.nc"):
        warned = open_virtual_mfdataset(paths, on_error="warn")
    assert_same_virtual(warned, expected)
    assert list(warned.encoding["failed"]) == [bad]
    assert next(iter(warned.encoding["failed"].values())).startswith("CorruptFileError: ")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        skipped = open_virtual_mfdataset(paths, on_error="skip", parallel="threads")
    assert skipped["air"].data.manifest == expected["air"].data.manifest
    with pytest.raises(ValueError, match="on_error"):
        open_virtual_mfdataset(good, on_error="ignore")


class FlakyParser:
    """The real HDF5 parser, but each file's first ``fails`` attempts raise ConnectionError
    (what a dropped connection to an object store raises)."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.seen: dict[str, int] = {}
        self.inner = HDFParser()

    def __call__(self, url, registry=None):
        self.seen[url] = self.seen.get(url, 0) + 1
        if self.seen[url] <= self.fails:
            raise ConnectionError(f"connection reset while reading {url}")
        return self.inner(url, registry)


def test_transient_errors_are_retried(files):
    paths = [str(f) for f in files[:4]]
    parser = FlakyParser(fails=2)
    ds = open_virtual_mfdataset(paths, parser=parser, retries=2)
    assert ds.sizes["time"] == 4 * STEPS
    assert set(parser.seen.values()) == {3}
    parser = FlakyParser(fails=2)
    with pytest.raises(ConnectionError, match="connection reset"):
        open_virtual_mfdataset(paths, parser=parser, retries=1)
    # a format error is not retried: it would fail the same way again
    parser = FlakyParser(fails=0)
    with pytest.raises(ParserError):
        open_virtual_mfdataset([*paths, str(_bad_file(Path(paths[0]).parent))], parser=parser)


class PidLoggingParser:
    """The real HDF5 parser, noting which process parsed each file (in ``folder``)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.inner = HDFParser()

    def __call__(self, url, registry=None):
        Path(self.folder, f"{os.getpid()}-{Path(url).name}").touch()
        return self.inner(url, registry)


@pytest.mark.slow
@pytest.mark.dask
def test_distributed_cluster_workers_read_files(files, tmp_path):
    distributed = pytest.importorskip("distributed")
    paths = [str(f) for f in files]
    bad = str(_bad_file(tmp_path))
    log = tmp_path / "pids"
    log.mkdir()
    expected = open_virtual_mfdataset(paths)
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        worker_pids = set(client.run(os.getpid).values())
        with pytest.warns(RuntimeWarning, match="f99_bad"):
            ds = open_virtual_mfdataset(
                [*paths, bad], parallel=client, on_error="warn", parser=PidLoggingParser(str(log))
            )
        # parallel="dask" finds the active client too
        ds2 = open_virtual_mfdataset(paths, parallel="dask")
    assert ds["air"].data.manifest == expected["air"].data.manifest
    assert ds2["air"].data.manifest == expected["air"].data.manifest
    assert list(ds.encoding["failed"]) == [bad]
    parsed_by = {int(p.name.split("-")[0]) for p in log.iterdir()}
    assert parsed_by <= worker_pids
    assert os.getpid() not in parsed_by
    assert len(list(log.iterdir())) == len(paths) + 1


def test_merged_batches_take_the_column_wise_combine(files):
    import pickle

    from virtualizarr.mfdataset import Collector, fast_combine, virtualize_part

    batches = []
    for k in range(0, 12, 4):  # three batches, as three workers return them
        c = Collector()
        for f in files[k : k + 4]:
            c.add(virtualize_part(str(f)))
        batches.append(pickle.loads(pickle.dumps(c)))
    col = batches[0]
    for b in batches[1:]:
        col.merge(b)
    assert len({id(x) for x in col.names}) == 1  # one shared description: no fallback
    ds = fast_combine(
        col, combine="by_coords", concat_dim=None, decode_times=None, sources=list(col.sources)
    )
    assert_same_virtual(ds, open_virtual_mfdataset([str(f) for f in files[:12]]))


def test_collector_keeps_each_files_variables_when_they_differ(files):
    import pickle

    from virtualizarr.mfdataset import Collector, virtualize_part

    parts = [virtualize_part(str(f)) for f in files[:6]]
    parts[1].virtual.pop("mask")  # file 1 lacks 'mask'
    parts[1].names = tuple(x for x in parts[1].names if x[0] != "mask")
    whole = Collector()
    for p in parts:
        whole.add(p)
    # the same files collected in two batches (as workers do), pickled, and merged
    a, b = Collector(), Collector()
    for p in parts[:3]:
        a.add(p)
    for p in parts[3:]:
        b.add(p)
    a = pickle.loads(pickle.dumps(a))
    a.merge(pickle.loads(pickle.dumps(b)))
    for col in (whole, a):
        table = col.table_tuple()
        for i, p in enumerate(parts):
            got = col.part(i, table)
            assert got.names == p.names
            assert got.source == p.source
            for name, arr in p.virtual.items():
                assert got.virtual[name].manifest == arr.manifest, (i, name)
            for name, (dims, _, values) in p.loaded.items():
                assert got.loaded[name][0] == dims
                np.testing.assert_array_equal(got.loaded[name][2], values)


def test_remote_files_default_to_threads_and_equal_local(files, http_server):
    import shutil

    from virtualizarr.mfdataset import REMOTE_THREADS
    from virtualizarr.mfdataset.paths import is_remote

    folder = http_server.mkdir()
    local = [str(f) for f in files[:8]]
    urls = []
    for f in files[:8]:
        shutil.copy(f, folder / f.name)
        urls.append(http_server.url_for(folder / f.name))
    assert is_remote(urls[0])
    assert not is_remote(local[0])
    assert REMOTE_THREADS >= 4
    before = len(http_server.requests)
    remote = open_virtual_mfdataset(urls)  # parallel=None: threads, for remote URLs
    served = [r for r in http_server.requests[before:] if folder.name in r[1]]
    assert {Path(r[1]).name for r in served} == {f.name for f in files[:8]}
    ds = open_virtual_mfdataset(local)
    renamed = remote.vz.rename_paths(lambda u: "file://" + str(files[0].parent / Path(u).name))
    assert renamed["air"].data.manifest == ds["air"].data.manifest
    np.testing.assert_array_equal(remote["time"].values, ds["time"].values)


def test_collector_loaded_values_round_trip_through_packing_and_merges():
    # files' coordinate values are kept as bytes relative to their column's first file; a
    # merge whose batch starts with other values (or another dtype) re-packs them
    import pickle

    from virtualizarr.mfdataset import Collector, FilePart

    def part(i: int, values: np.ndarray) -> FilePart:
        return FilePart(
            source=f"file:///f{i}.nc",
            names=(("time", True),),
            attrs={},
            virtual={},
            loaded={"time": (("time",), {"units": "days since 2000-01-01"}, values)},
        )

    rows = [
        np.array([0.0, 1.0]),
        np.array([0.0, 1.0]),  # equal to the first: kept as "same"
        np.array([2.0, 3.0]),
        np.array([4, 5], dtype="i4"),  # another dtype: kept as an array
        np.array([6.0, 7.0, 8.0]),  # another shape
        np.array([9.0, 10.0]),
    ]
    whole = Collector()
    for i, v in enumerate(rows):
        whole.add(part(i, v))
    a, b = Collector(), Collector()
    for i, v in enumerate(rows[:2]):
        a.add(part(i, v))
    for i, v in enumerate(rows[2:], start=2):
        b.add(part(i, v))
    a = pickle.loads(pickle.dumps(a))
    a.merge(pickle.loads(pickle.dumps(b)))
    for col in (whole, a):
        for i, v in enumerate(rows):
            got = col.values("time", i)
            assert got.dtype == v.dtype
            np.testing.assert_array_equal(got, v)
    assert any(isinstance(v, bytes) for v in whole.loaded["time"].values)


@pytest.mark.parametrize("axis", [0, 1])
def test_collector_concat_values_of_packed_files(axis):
    from virtualizarr.mfdataset import Collector, FilePart

    rng = np.random.default_rng(3)
    rows = [rng.normal(size=(2, 3)) for _ in range(5)]
    rows[2] = rows[0].copy()  # kept as "same as the first"
    col = Collector()
    for i, v in enumerate(rows):
        col.add(
            FilePart(
                source=f"file:///f{i}.nc",
                names=(("x", True),),
                attrs={},
                virtual={},
                loaded={"x": (("a", "b"), {}, v)},
            )
        )
    got, sizes = col.concat_values("x", axis)
    np.testing.assert_array_equal(got, np.concatenate(rows, axis=axis))
    assert sizes.tolist() == [rows[0].shape[axis]] * len(rows)
    assert got.flags.writeable
