"""ChunkManifest: constructors, the three kinds of entry, paths, equality, memory, pickling."""

from __future__ import annotations

import pickle
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from virtualizarr.errors import InvalidManifestError
from virtualizarr.manifests import ChunkManifest
from virtualizarr.manifests.manifest import (
    MISSING,
    concatenate_manifests,
    normalize_path,
)

REF = {"path": "s3://bucket/a.nc", "offset": 100, "length": 50}


def three_kinds() -> ChunkManifest:
    """A 2x2 grid with a reference, an inlined chunk, a missing chunk and another reference."""
    return ChunkManifest(
        {
            "0.0": REF,
            "0.1": {"data": b"\x01\x02\x03"},
            "1.1": {"path": "s3://bucket/b.nc", "offset": 0, "length": 8},
        },
        shape=(2, 2),
    )


# -- the three kinds of entry ------------------------------------------------------------------


def test_three_kinds_of_entry() -> None:
    m = three_kinds()
    assert m.get_entry((0, 0)) == REF
    assert m.get_entry((0, 1)) == {"data": b"\x01\x02\x03"}
    assert m.get_entry((1, 0)) is None
    assert m.missing.tolist() == [[False, False], [True, False]]
    assert m.inlined.tolist() == [[False, True], [False, False]]
    assert m.paths.tolist() == [["s3://bucket/a.nc", ""], ["", "s3://bucket/b.nc"]]
    assert m.used_paths() == ["s3://bucket/a.nc", "s3://bucket/b.nc"]
    assert len(m) == 3  # references and inlined chunks count; missing ones do not
    assert list(m) == ["0.0", "0.1", "1.1"]


def test_dict_round_trip() -> None:
    m = three_kinds()
    d = m.to_dict()
    assert d == {
        "0.0": REF,
        "0.1": {"data": b"\x01\x02\x03"},
        "1.1": {"path": "s3://bucket/b.nc", "offset": 0, "length": 8},
    }
    assert ChunkManifest(d, shape=(2, 2)) == m
    assert all(
        type(v) is int for e in d.values() for k, v in e.items() if k != "path" and k != "data"
    )


def test_empty_path_is_missing() -> None:
    m = ChunkManifest({"0": REF, "1": {"path": "", "offset": 0, "length": 0}})
    assert m.missing.tolist() == [False, True]
    assert len(m) == 1


def test_shape_inferred_from_keys() -> None:
    m = ChunkManifest({"1.2": REF})
    assert m.shape_chunk_grid == (2, 3)
    assert len(m) == 1
    assert m.missing.sum() == 5


def test_slash_separated_keys() -> None:
    assert ChunkManifest({"0/1": REF}).get_entry((0, 1)) == REF


def test_scalar_grid() -> None:
    m = ChunkManifest({"0": REF}, shape=())
    assert m.shape_chunk_grid == ()
    assert len(m) == 1
    assert m.to_dict() == {"0": REF}
    assert list(m) == ["0"]
    assert pickle.loads(pickle.dumps(m)) == m


def test_empty() -> None:
    m = ChunkManifest.empty((3, 4))
    assert m.shape_chunk_grid == (3, 4)
    assert len(m) == 0
    assert m.to_dict() == {}
    assert m.missing.all()
    assert ChunkManifest({}, shape=(3, 4)) == m


@pytest.mark.parametrize(
    ("entries", "shape", "match"),
    [
        ({"a.b": REF}, None, "not valid"),
        ({"0.-1": REF}, None, "not valid"),
        ({"2.0": REF}, (2, 2), "outside the chunk grid"),
        ({"0": REF}, (2, 2), "outside the chunk grid"),
        ({"0": REF, "0.0": REF}, None, "different numbers of dimensions"),
        ({}, None, "pass shape="),
        (
            {"0": {"path": "s3://b/x", "offset": 0}},
            None,
            "expected keys 'path', 'offset', 'length'",
        ),
        ({"0": {"path": "s3://b/x", "offset": -1, "length": 4}}, None, ">= 0"),
        ({"1": REF}, (), "0-d"),
    ],
)
def test_invalid_entries(entries: dict, shape: tuple | None, match: str) -> None:
    with pytest.raises(InvalidManifestError, match=match):
        ChunkManifest(entries, shape=shape)


# -- from_arrays / from_path_ids ---------------------------------------------------------------


def test_from_arrays_matches_dict_constructor() -> None:
    paths = np.array([["s3://b/x.nc", ""], ["s3://b/y.nc", "s3://b/x.nc"]])
    offsets = np.array([[0, 0], [10, 20]])
    lengths = np.array([[5, 0], [6, 7]])
    m = ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths)
    expected = ChunkManifest(
        {
            "0.0": {"path": "s3://b/x.nc", "offset": 0, "length": 5},
            "1.0": {"path": "s3://b/y.nc", "offset": 10, "length": 6},
            "1.1": {"path": "s3://b/x.nc", "offset": 20, "length": 7},
        },
        shape=(2, 2),
    )
    assert m == expected
    assert m.offsets.dtype == np.uint64
    assert m.lengths.dtype == np.uint64
    assert m.path_ids.dtype == np.uint32
    assert sorted(m.table) == ["s3://b/x.nc", "s3://b/y.nc"]  # each distinct path stored once


def test_from_arrays_single_path() -> None:
    m = ChunkManifest.from_arrays(paths="s3://b/x.nc", offsets=[0, 8, 16], lengths=[8, 8, 8])
    assert m.table == ("s3://b/x.nc",)
    assert m.to_dict()["2"] == {"path": "s3://b/x.nc", "offset": 16, "length": 8}


def test_from_arrays_none_and_empty_are_missing() -> None:
    m = ChunkManifest.from_arrays(
        paths=np.array(["s3://b/x.nc", None, ""], dtype=object),
        offsets=[0, 3, 4],
        lengths=[8, 5, 6],
    )
    assert m.missing.tolist() == [False, True, True]
    assert m.used_paths() == ["s3://b/x.nc"]
    # a missing chunk has no range: offsets/lengths are canonical so == ignores leftovers
    assert m.offsets.tolist() == [0, 0, 0]
    assert m.lengths.tolist() == [8, 0, 0]


@pytest.mark.parametrize(
    ("offsets", "lengths", "match"),
    [
        (np.array([-1, 0]), [1, 1], "offsets must be whole numbers >= 0"),
        ([0, 1], np.array([4, -4]), "lengths must be whole numbers >= 0"),
        ([0.5, 1], [1, 1], "whole numbers"),
        (["a", "b"], [1, 1], "must be integers"),
        ([0, 1, 2], [1, 1], "one shape"),
    ],
)
def test_from_arrays_rejects_bad_ranges(offsets: object, lengths: object, match: str) -> None:
    # a negative int64 cast to uint64 would silently become an offset near 2**64
    with pytest.raises(InvalidManifestError, match=match):
        ChunkManifest.from_arrays(paths=["s3://b/x", "s3://b/x"], offsets=offsets, lengths=lengths)


def test_from_path_ids_dedups_table_and_checks_ids() -> None:
    ids = np.array([0, 1, 2, MISSING], dtype=np.uint32)
    m = ChunkManifest.from_path_ids(
        table=["s3://b/x", "s3://b/x", b"inline"],
        ids=ids,
        offsets=np.array([0, 10, 0, 99]),
        lengths=np.array([10, 10, 6, 99]),
    )
    assert m.table == ("s3://b/x", b"inline")
    assert m.path_ids.tolist() == [0, 0, 1, int(MISSING)]
    assert m.get_entry((1,)) == {"path": "s3://b/x", "offset": 10, "length": 10}
    assert m.get_entry((2,)) == {"data": b"inline"}
    assert m.get_entry((3,)) is None
    with pytest.raises(InvalidManifestError, match="out of range"):
        ChunkManifest.from_path_ids(table=["s3://b/x"], ids=[1], offsets=[0], lengths=[1])
    with pytest.raises(InvalidManifestError, match=r"str \(paths\) or bytes"):
        ChunkManifest.from_path_ids(table=[3], ids=[0], offsets=[0], lengths=[1])


# -- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["s3://bucket/a.nc", "https://host:8080/d/a.nc", "gs://b/a", "file:///abs/a.nc", "memory:///x"],
)
def test_urls_kept(url: str) -> None:
    assert normalize_path(url) == url
    assert ChunkManifest({"0": {"path": url, "offset": 0, "length": 1}}).table == (url,)


def test_local_paths_normalised_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    expected = f"file://{tmp_path}/a.nc"
    spellings = ["a.nc", "./a.nc", "sub/../a.nc", str(tmp_path / "a.nc"), f"file:{tmp_path}/a.nc"]
    for s in spellings:
        assert normalize_path(s) == expected
    assert normalize_path(Path("a.nc")) == expected
    entries = {str(i): {"path": s, "offset": i, "length": 1} for i, s in enumerate(spellings)}
    m = ChunkManifest(entries)
    assert m.table == (expected,)  # one entry for all spellings of the same file
    arr = ChunkManifest.from_arrays(paths=np.array(spellings), offsets=range(5), lengths=[1] * 5)
    assert arr == m
    monkeypatch.setenv("HOME", str(tmp_path))
    assert normalize_path("~/a.nc") == expected


def test_rename_paths_with_a_string() -> None:
    m = ChunkManifest.from_arrays(paths="s3://old/x.nc", offsets=[0, 4], lengths=[4, 4])
    new = m.rename_paths("s3://new/y.nc")
    assert new.used_paths() == ["s3://new/y.nc"]
    assert new.offsets.tolist() == [0, 4]
    assert m.used_paths() == ["s3://old/x.nc"]  # the original is untouched


def test_rename_paths_with_a_string_refuses_several_files() -> None:
    m = three_kinds()
    with pytest.raises(ValueError, match="2 different files"):
        m.rename_paths("s3://new/one.nc")


def test_rename_paths_with_a_function_once_per_file(tmp_path: Path) -> None:
    n = 1000
    paths = np.where(np.arange(n) % 2, "s3://bucket/a.nc", "s3://bucket/b.nc")
    m = ChunkManifest.from_arrays(paths=paths, offsets=np.arange(n), lengths=np.ones(n))
    calls: list[str] = []

    def move(p: str) -> str:
        calls.append(p)
        return p.replace("s3://bucket", str(tmp_path))  # a local path: gets normalised

    new = m.rename_paths(move)
    assert sorted(calls) == ["s3://bucket/a.nc", "s3://bucket/b.nc"]
    assert new.paths[1] == f"file://{tmp_path}/a.nc"
    assert new.paths[0] == f"file://{tmp_path}/b.nc"
    assert np.array_equal(new.offsets, m.offsets)


def test_rename_paths_keeps_inlined_and_missing() -> None:
    new = three_kinds().rename_paths(lambda p: p.replace("bucket", "other"))
    assert new.get_entry((0, 1)) == {"data": b"\x01\x02\x03"}
    assert new.get_entry((1, 0)) is None
    assert new.used_paths() == ["s3://other/a.nc", "s3://other/b.nc"]
    with pytest.raises(TypeError, match="str or a callable"):
        three_kinds().rename_paths(3)  # type: ignore[arg-type]


# -- equality, repr, pickling -------------------------------------------------------------------


def test_equality() -> None:
    m = three_kinds()
    assert m == three_kinds()
    assert m != ChunkManifest(
        {**m.to_dict(), "1.1": {**m.to_dict()["1.1"], "offset": 1}}, shape=(2, 2)
    )
    assert m != ChunkManifest(
        {**m.to_dict(), "1.1": {**m.to_dict()["1.1"], "path": "s3://x/y"}}, shape=(2, 2)
    )
    assert m != ChunkManifest({**m.to_dict(), "0.1": {"data": b"other"}}, shape=(2, 2))
    assert m != ChunkManifest(m.to_dict(), shape=(2, 3))  # more (missing) chunks
    assert m != ChunkManifest({k: v for k, v in m.to_dict().items() if k != "0.0"}, shape=(2, 2))
    assert (m == "not a manifest") is False


def test_equality_ignores_table_order() -> None:
    a = ChunkManifest.from_path_ids(
        table=["s3://b/x", "s3://b/y"], ids=np.array([0, 1]), offsets=[1, 2], lengths=[3, 4]
    )
    b = ChunkManifest.from_path_ids(
        table=["s3://b/y", "s3://b/x"], ids=np.array([1, 0]), offsets=[1, 2], lengths=[3, 4]
    )
    assert a == b
    assert a.elementwise_eq(b).all()


def test_repr() -> None:
    assert repr(three_kinds()) == "ChunkManifest<shape_chunk_grid=(2, 2), entries=3, files=2>"


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle(protocol: int) -> None:
    m = three_kinds()
    m2 = pickle.loads(pickle.dumps(m, protocol=protocol))
    assert m2 == m
    assert m2.to_dict() == m.to_dict()
    assert m2.nbytes == m.nbytes  # regression: nbytes crashed on unpickled (bytes-backed) arrays


# -- grid operations -----------------------------------------------------------------------------


def test_getitem_broadcast_expand_dims() -> None:
    m = three_kinds()
    assert m[1].to_dict() == {"1": m.to_dict()["1.1"]}
    assert m[:, 1:].shape_chunk_grid == (2, 1)
    b = m[0].broadcast_to((3, 2))
    assert b.shape_chunk_grid == (3, 2)
    assert all(b.get_entry((i, 0)) == REF for i in range(3))
    e = m.expand_dims(1)
    assert e.shape_chunk_grid == (2, 1, 2)
    assert e.get_entry((0, 0, 1)) == {"data": b"\x01\x02\x03"}


def test_concatenate_merges_tables() -> None:
    a = ChunkManifest({"0": {"path": "s3://b/x", "offset": 0, "length": 4}, "1": {"data": b"i1"}})
    b = ChunkManifest({"0": {"data": b"i2"}, "1": {"path": "s3://b/y", "offset": 4, "length": 4}})
    c = concatenate_manifests([a, b, a], axis=0)
    assert c.shape_chunk_grid == (6,)
    assert [c.get_entry((i,)) for i in range(6)] == [
        *(a.get_entry((i,)) for i in range(2)),
        *(b.get_entry((i,)) for i in range(2)),
        *(a.get_entry((i,)) for i in range(2)),
    ]
    assert sorted(map(str, c.table)) == sorted(map(str, ["s3://b/x", "s3://b/y", b"i1", b"i2"]))


# -- memory: no per-chunk Python objects ---------------------------------------------------------

N_FILES, CHUNKS_PER_FILE = 20, 5_000


def _big_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    paths = np.repeat(
        [f"s3://bucket/data/file_{i:04d}.nc" for i in range(N_FILES)], CHUNKS_PER_FILE
    )
    offsets = np.tile(np.arange(CHUNKS_PER_FILE, dtype=np.uint64) * 4096 + 512, N_FILES)
    lengths = np.full(N_FILES * CHUNKS_PER_FILE, 4096, dtype=np.uint64)
    grid = (N_FILES, CHUNKS_PER_FILE)
    return paths.reshape(grid), offsets.reshape(grid), lengths.reshape(grid)


def test_memory_per_chunk_reference_from_arrays() -> None:
    paths, offsets, lengths = _big_arrays()
    n = paths.size
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        m = ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths)
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(m) == n
    assert m.nbytes / n <= 24
    assert retained / n <= 24, f"{retained / n:.1f} bytes retained per chunk reference"


def test_memory_per_chunk_reference_after_concatenation() -> None:
    parts = [
        ChunkManifest.from_arrays(
            paths=f"s3://bucket/data/file_{i:04d}.nc",
            offsets=np.arange(CHUNKS_PER_FILE) * 4096,
            lengths=np.full(CHUNKS_PER_FILE, 4096),
        )
        for i in range(N_FILES)
    ]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        m = concatenate_manifests(parts, axis=0)
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    n = N_FILES * CHUNKS_PER_FILE
    assert len(m) == n
    assert len(m.used_paths()) == N_FILES
    assert m.nbytes / n <= 24
    assert retained / n <= 24, f"{retained / n:.1f} bytes retained per chunk reference"


def test_nbytes_counts_arrays_and_table() -> None:
    m = ChunkManifest.from_arrays(paths="s3://b/x", offsets=np.arange(1000), lengths=np.ones(1000))
    assert 20_000 <= m.nbytes <= 20_000 + 200
    # views share the parent's buffers: slicing reports the memory it keeps alive
    assert m[:10].nbytes == m.nbytes
    assert sys.getsizeof("s3://b/x") <= m.nbytes - 20_000


@pytest.mark.parametrize("order", ["runs", "shuffled", "alternating"])
def test_from_arrays_any_path_order(order: str) -> None:
    names = np.array(["s3://b/c.nc", "", "s3://b/a.nc", "s3://b/b.nc"])
    n = 400
    idx = {
        "runs": np.repeat(np.arange(4), n // 4),
        "shuffled": np.random.default_rng(0).integers(0, 4, n),
        "alternating": np.arange(n) % 4,
    }[order]
    paths = names[idx].reshape(20, 20)
    m = ChunkManifest.from_arrays(
        paths=paths, offsets=np.arange(n).reshape(20, 20), lengths=np.ones((20, 20))
    )
    assert m.paths.tolist() == paths.tolist()
    assert sorted(m.table) == ["s3://b/a.nc", "s3://b/b.nc", "s3://b/c.nc"]
    assert m.missing.tolist() == (paths == "").tolist()


def test_grids_are_read_only() -> None:
    offsets = np.arange(4, dtype=np.uint64)
    m = ChunkManifest.from_arrays(paths="s3://b/x", offsets=offsets, lengths=np.ones(4, np.uint64))
    view = m[1:]  # shares memory with m
    for arr in (m.offsets, m.lengths, m.path_ids, view.offsets):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 99
    assert m.offsets.tolist() == [0, 1, 2, 3]
    offsets[0] = 5  # the caller's own array stays writable (the manifest does not copy it)
    assert pickle.loads(pickle.dumps(m)) == m


def test_dict_is_an_alias_of_to_dict() -> None:
    m = ChunkManifest({"0": REF})
    assert m.dict() == m.to_dict() == {"0": REF}


def test_with_table_shares_grids_and_refuses_other_entries() -> None:
    from virtualizarr.manifests.sources import SourceRecord, SourceURL

    m = ChunkManifest.from_path_ids(
        table=["/d/a.nc", b"inline"],
        ids=np.array([0, 1, MISSING], dtype=np.uint32),
        offsets=np.array([8, 0, 0]),
        lengths=np.array([4, 6, 0]),
    )
    rec = SourceRecord("file:///d/a.nc", 100, "etag")
    m2 = m.with_table([SourceURL("file:///d/a.nc", rec), b"inline"])
    assert m2 == m
    assert m2.table[0].record == rec
    assert m2.path_ids is m.path_ids
    assert m2.offsets is m.offsets
    with pytest.raises(ValueError, match="equal"):
        m.with_table(["file:///d/b.nc", b"inline"])
    with pytest.raises(ValueError, match="equal"):
        m.with_table(["file:///d/a.nc"])
