"""ManifestArray: a duck array of references; values only through ManifestStore."""

from __future__ import annotations

import copy
import operator
import pickle
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import xarray as xr

from tests.test_manifests.builders import read_zarr, virtual_array
from virtualizarr.errors import InvalidManifestError, ManifestConcatError, NeedsValuesError
from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.metadata import create_v3_array_metadata

DATA = np.arange(6 * 10, dtype="<f4").reshape(6, 10) / 7
CHUNKS = (2, 4)  # the last chunk along axis 1 is partial (10 = 4 + 4 + 2)


@pytest.fixture
def arr(tmp_path: Path) -> ManifestArray:
    return virtual_array(
        tmp_path / "a.bin", DATA, CHUNKS, [numcodecs.Zlib(level=1)], dimension_names=["y", "x"]
    )


@pytest.fixture
def arr3(tmp_path: Path) -> tuple[ManifestArray, np.ndarray]:
    data = np.random.default_rng(3).integers(-1000, 1000, size=(3, 4, 5)).astype(">i2")
    return virtual_array(tmp_path / "b.bin", data, (1, 2, 3), dimension_names=["t", "y", "x"]), data


def test_attributes(arr: ManifestArray) -> None:
    assert arr.shape == (6, 10)
    assert arr.dtype == np.dtype("<f4")
    assert arr.ndim == 2
    assert arr.size == 60
    assert len(arr) == 6
    assert arr.chunks == CHUNKS
    assert arr.nbytes == 240  # like numpy: the size of the values it stands for
    assert arr.nbytes_virtual == arr.manifest.nbytes
    assert arr.fill_value == 0
    assert [c.to_dict()["name"] for c in arr.codecs] == ["bytes", "numcodecs.zlib"]
    assert arr.manifest.shape_chunk_grid == (3, 3)
    assert arr.metadata.dimension_names == ("y", "x")


def test_big_endian_dtype_kept(arr3: tuple[ManifestArray, np.ndarray]) -> None:
    a, data = arr3
    assert a.dtype == np.dtype(">i2")
    assert a.codecs[0].to_dict() == {"name": "bytes", "configuration": {"endian": "big"}}
    np.testing.assert_array_equal(read_zarr(a), data)


def test_repr(arr: ManifestArray) -> None:
    text = repr(arr)
    for part in ("shape=(6, 10)", "dtype=float32", "chunks=(2, 4)", "'numcodecs.zlib'", "files=1"):
        assert part in text
    assert "refs=9" in arr._repr_inline_(80)
    assert len(arr._repr_inline_(10)) <= 10


def test_reads_back(arr: ManifestArray) -> None:
    np.testing.assert_array_equal(read_zarr(arr), DATA)


def test_from_dicts() -> None:
    meta = create_v3_array_metadata(shape=(4,), data_type="<i2", chunk_shape=(2,))
    a = ManifestArray(meta.to_dict(), {"1": {"path": "s3://b/x", "offset": 0, "length": 4}})
    assert a.shape == (4,)
    assert a.manifest.missing.tolist() == [True, False]


def test_grid_must_match_metadata() -> None:
    meta = create_v3_array_metadata(shape=(5,), data_type="<i2", chunk_shape=(2,))
    with pytest.raises(
        InvalidManifestError, match=r"grid \(2,\) does not match the chunk grid \(3,\)"
    ):
        ManifestArray(meta, ChunkManifest.empty((2,)))
    with pytest.raises(TypeError, match="ArrayV3Metadata"):
        ManifestArray("meta", ChunkManifest.empty((3,)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ChunkManifest"):
        ManifestArray(meta, [1, 2])  # type: ignore[arg-type]


def test_copy_and_pickle(arr: ManifestArray) -> None:
    assert copy.copy(arr) is arr
    assert copy.deepcopy(arr) is arr
    a2 = pickle.loads(pickle.dumps(arr))
    assert a2.manifest == arr.manifest
    assert a2.metadata.to_dict() == arr.metadata.to_dict()
    np.testing.assert_array_equal(read_zarr(a2), DATA)


def test_equal_to_itself_only_by_reference(arr: ManifestArray, tmp_path: Path) -> None:
    assert (arr == pickle.loads(pickle.dumps(arr))).all()
    other = virtual_array(tmp_path / "copy.bin", DATA, CHUNKS, [numcodecs.Zlib(level=1)])
    # same values, different bytes referenced: equality would need the values
    with pytest.raises(NeedsValuesError, match="compat='override'"):
        arr == other  # noqa: B015
    with pytest.raises(NeedsValuesError):
        arr == DATA  # noqa: B015


# -- anything that needs values raises NeedsValuesError, saying why and what to do --------------

NEEDS_VALUES = {
    "np.asarray": lambda a: np.asarray(a),
    "np.array": lambda a: np.array(a),
    "add": lambda a: a + 1,
    "radd": lambda a: 1 + a,
    "mul": lambda a: a * a,
    "neg": lambda a: -a,
    "lt": lambda a: a < 0,
    "ne": lambda a: operator.ne(a, a),
    "np.add": lambda a: np.add(a, 1),
    "np.equal-numpy-first": lambda a: np.equal(DATA, a),
    "numpy == virtual": lambda a: a == DATA,
    "np.sum": lambda a: np.sum(a),
    "np.mean": lambda a: np.mean(a),
    "np.where": lambda a: np.where(DATA > 0, a, 0),
    "astype": lambda a: a.astype("f8"),
    "xarray values": lambda a: xr.Variable(("y", "x"), a).values,
    "xarray arithmetic": lambda a: xr.Variable(("y", "x"), a) * 2,
    "xarray mean": lambda a: xr.Variable(("y", "x"), a).mean(),
    "misaligned slice": lambda a: a[1:3],
    "misaligned stop": lambda a: a[:, :5],
    "step": lambda a: a[::2],
    "integer on a chunked axis": lambda a: a[0],
    "fancy index": lambda a: a[[0, 1]],
    "boolean index": lambda a: a[np.ones(6, bool)],
    "concatenate with numpy": lambda a: np.concatenate([a, DATA]),
    "concatenate axis=None": lambda a: np.concatenate([a, a], axis=None),
}


@pytest.mark.parametrize("op", NEEDS_VALUES.values(), ids=NEEDS_VALUES.keys())
def test_needs_values(arr: ManifestArray, op: object) -> None:
    with pytest.raises(NeedsValuesError) as info:
        op(arr)  # type: ignore[operator]
    assert isinstance(info.value, NotImplementedError)  # catchable as the builtin it refines
    assert len(str(info.value)) > 40  # says why, not a bare exception


@pytest.mark.parametrize(
    ("op", "hint"),
    [
        (lambda a: np.asarray(a), "loadable_variables"),
        (lambda a: a + 1, "compat='override'"),
        (lambda a: a[1:3], "chunk boundaries"),
        (lambda a: a[0], "only whole chunks"),
    ],
)
def test_needs_values_messages(arr: ManifestArray, op: object, hint: str) -> None:
    with pytest.raises(NeedsValuesError, match=hint):
        op(arr)  # type: ignore[operator]


def test_astype_same_dtype_is_free(arr: ManifestArray) -> None:
    assert arr.astype("<f4") is arr


# -- indexing: whole chunks -----------------------------------------------------------------------

ALIGNED = {
    "all": (slice(None),),
    "rows": (slice(2, 6),),
    "empty": (slice(2, 2),),
    "cols to end (partial)": (slice(None), slice(4, None)),
    "cols stop=n": (slice(None), slice(8, 10)),
    "negative": (slice(-4, None), slice(-6, None)),
    "ellipsis": (Ellipsis, slice(0, 4)),
    "new axis": (None, slice(0, 2), Ellipsis),
    "trailing new axis": (Ellipsis, None),
    "past the end": (slice(4, 100),),
}


@pytest.mark.parametrize("key", ALIGNED.values(), ids=ALIGNED.keys())
def test_chunk_aligned_indexing(arr: ManifestArray, key: tuple) -> None:
    sub = arr[key]
    expected = DATA[key]
    assert isinstance(sub, ManifestArray)
    assert sub.shape == expected.shape
    if sub.size:
        np.testing.assert_array_equal(read_zarr(sub), expected)


def test_integer_index_on_size_one_chunk_axis(arr3: tuple[ManifestArray, np.ndarray]) -> None:
    a, data = arr3
    for key in [1, -1, (2, slice(2, 4)), (0, Ellipsis, slice(3, None))]:
        sub = a[key]
        assert sub.shape == data[key].shape
        np.testing.assert_array_equal(read_zarr(sub), data[key])
    assert a[1].metadata.dimension_names == ("y", "x")
    with pytest.raises(IndexError, match="out of bounds"):
        a[3]
    with pytest.raises(IndexError, match="too many indices"):
        a[0, 0, 0, 0]


# -- numpy functions that only move chunks ---------------------------------------------------------


def test_transpose_via_codec(arr3: tuple[ManifestArray, np.ndarray]) -> None:
    a, data = arr3
    for axes in [None, (1, 0, 2), (2, 0, 1), (0, 2, 1), (-1, -3, -2)]:
        t = np.transpose(a, axes)
        assert t.shape == np.transpose(data, axes).shape
        assert type(t.codecs[0]).__name__ == "TransposeCodec"
        np.testing.assert_array_equal(read_zarr(t), np.transpose(data, axes))
    np.testing.assert_array_equal(read_zarr(a.T), data.T)
    np.testing.assert_array_equal(read_zarr(a.transpose(2, 1, 0)), data.transpose(2, 1, 0))
    # transposing twice folds into one codec, and back to the identity removes it
    tt = a.transpose(1, 2, 0).transpose(2, 0, 1)
    assert [c.to_dict()["name"] for c in tt.codecs] == ["bytes"]
    np.testing.assert_array_equal(
        read_zarr(a.transpose(1, 2, 0).transpose(1, 0, 2)), data.transpose(2, 1, 0)
    )
    assert a.transpose(1, 2, 0).metadata.dimension_names == ("y", "x", "t")
    assert np.transpose(a, (0, 1, 2)) is a
    with pytest.raises(ValueError, match="permutation"):
        np.transpose(a, (0, 0, 1))


def test_transposed_arrays_refuse_adding_axes(arr3: tuple[ManifestArray, np.ndarray]) -> None:
    t = arr3[0].T
    with pytest.raises(NeedsValuesError, match="transpose"):
        np.expand_dims(t, 0)
    # slicing whole chunks of a transposed array is fine
    np.testing.assert_array_equal(read_zarr(t[0:3]), arr3[1].T[0:3])


def test_expand_dims(arr: ManifestArray) -> None:
    for axis in [0, 1, 2, -1, (0, 2)]:
        e = np.expand_dims(arr, axis)
        assert e.shape == np.expand_dims(DATA, axis).shape
        np.testing.assert_array_equal(read_zarr(e), np.expand_dims(DATA, axis))
    assert np.expand_dims(arr, 0).metadata.dimension_names == (None, "y", "x")
    with pytest.raises(ValueError, match="repeated axis"):
        np.expand_dims(arr, (0, -4))


def test_broadcast_to(arr: ManifestArray) -> None:
    row = arr[:, None][0:2, :, 0:4]  # shape (2, 1, 4): a length-1 axis with chunk length 1
    b = np.broadcast_to(row, (3, 2, 5, 4))
    assert b.shape == (3, 2, 5, 4)
    expected = np.broadcast_to(DATA[0:2, None, 0:4], (3, 2, 5, 4))
    np.testing.assert_array_equal(read_zarr(b), expected)
    assert np.broadcast_to(arr, arr.shape) is arr
    assert b.manifest.nbytes == row.manifest.nbytes  # repeated chunks are views, not copies


def test_broadcast_to_errors(arr: ManifestArray) -> None:
    with pytest.raises(ValueError, match="cannot broadcast"):
        np.broadcast_to(arr, (6, 11))
    with pytest.raises(ValueError, match="cannot broadcast"):
        np.broadcast_to(arr, (10,))
    meta = create_v3_array_metadata(shape=(1,), data_type="<i2", chunk_shape=(4,))
    one = ManifestArray(meta, ChunkManifest.from_arrays(paths="s3://b/x", offsets=[0], lengths=[8]))
    with pytest.raises(ManifestConcatError, match="chunk length there is 4"):
        np.broadcast_to(one, (3,))


def test_result_type_and_shape_functions(arr: ManifestArray) -> None:
    assert np.result_type(arr, np.float64) == np.float64
    assert np.result_type(arr, arr) == np.float32
    assert np.shape(arr) == (6, 10)
    assert np.ndim(arr) == 2
    assert np.size(arr) == 60


def test_rename_paths(arr: ManifestArray, tmp_path: Path) -> None:
    moved = tmp_path / "moved.bin"
    (tmp_path / "a.bin").rename(moved)
    renamed = arr.rename_paths(str(moved))
    assert renamed.manifest.used_paths() == [f"file://{moved}"]
    np.testing.assert_array_equal(read_zarr(renamed), DATA)


def test_dataset_load_says_values_are_needed(arr: ManifestArray) -> None:
    with pytest.raises(NeedsValuesError):
        xr.Dataset({"v": (("y", "x"), arr)}).load()
