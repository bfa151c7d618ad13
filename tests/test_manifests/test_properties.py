"""Property tests: operations on ManifestArrays read back exactly what numpy computes on the
real arrays. Each example writes small arrays chunk by chunk to real files (raw ``bytes``
codec, random byte order, random missing and inlined chunks) and reads the result of the
operation back through ManifestStore + zarr."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_manifests.builders import expected_values, grid_shape, read_zarr, virtual_array
from virtualizarr.manifests import ManifestArray

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DTYPES = ["<i2", ">i2", "<f4", ">f8", "u1", "<u4"]
FILL = 7
_counter = itertools.count()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


class Maker:
    """Writes random arrays to fresh files and returns (virtual array, expected values)."""

    def __init__(self, workdir: Path, draw: Any, dtype: str, chunks: tuple[int, ...]) -> None:
        self.workdir, self.draw, self.dtype, self.chunks = workdir, draw, dtype, chunks

    def __call__(self, shape: tuple[int, ...]) -> tuple[ManifestArray, np.ndarray]:
        seed = self.draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        data = rng.integers(0, 100, size=shape).astype(self.dtype)
        cells = list(np.ndindex(*grid_shape(shape, self.chunks)))
        kinds = self.draw(
            st.lists(st.sampled_from("rrrmi"), min_size=len(cells), max_size=len(cells))
        )
        missing = [c for c, k in zip(cells, kinds) if k == "m"]
        inline = [c for c, k in zip(cells, kinds) if k == "i"]
        arr = virtual_array(
            self.workdir / f"a{next(_counter)}.bin",
            data,
            self.chunks,
            fill_value=FILL,
            missing=missing,
            inline=inline,
        )
        return arr, expected_values(data, self.chunks, missing, FILL)


@st.composite
def makers(draw: Any, workdir: Path, min_ndim: int = 1, max_ndim: int = 3) -> Maker:
    ndim = draw(st.integers(min_ndim, max_ndim))
    chunks = tuple(draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim)))
    return Maker(workdir, draw, draw(st.sampled_from(DTYPES)), chunks)


def lengths_along(draw: Any, chunk: int, n: int) -> list[int]:
    """Lengths of ``n`` inputs along the join axis: whole chunks, except the last input."""
    whole = [chunk * draw(st.integers(0, 3)) for _ in range(n - 1)]
    return [*whole, draw(st.integers(0, 7))]


def check(arr: ManifestArray, expected: np.ndarray) -> None:
    assert arr.shape == expected.shape
    if arr.size:
        np.testing.assert_array_equal(read_zarr(arr), expected)


@SETTINGS
@given(data=st.data())
def test_concatenate(workdir: Path, data: st.DataObject) -> None:
    make = data.draw(makers(workdir))
    ndim = len(make.chunks)
    axis = data.draw(st.integers(-ndim, ndim - 1))
    base = list(data.draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    n = data.draw(st.integers(1, 3))
    pairs = []
    for length in lengths_along(data.draw, make.chunks[axis], n):
        base[axis] = length
        pairs.append(make(tuple(base)))
    result = np.concatenate([a for a, _ in pairs], axis=axis)
    check(result, np.concatenate([e for _, e in pairs], axis=axis))


@SETTINGS
@given(data=st.data())
def test_stack(workdir: Path, data: st.DataObject) -> None:
    make = data.draw(makers(workdir, max_ndim=2))
    shape = tuple(
        data.draw(st.lists(st.integers(1, 5), min_size=len(make.chunks), max_size=len(make.chunks)))
    )
    axis = data.draw(st.integers(0, len(shape)))
    pairs = [make(shape) for _ in range(data.draw(st.integers(1, 3)))]
    check(np.stack([a for a, _ in pairs], axis=axis), np.stack([e for _, e in pairs], axis=axis))


@SETTINGS
@given(data=st.data())
def test_chunk_aligned_slicing(workdir: Path, data: st.DataObject) -> None:
    make = data.draw(makers(workdir))
    shape = tuple(
        data.draw(st.lists(st.integers(1, 8), min_size=len(make.chunks), max_size=len(make.chunks)))
    )
    arr, expected = make(shape)
    key = []
    for n, c in zip(shape, make.chunks):
        bounds = sorted({*range(0, n, c), n})
        start = data.draw(st.sampled_from(bounds))
        stop = data.draw(st.sampled_from([b for b in bounds if b >= start] + [None]))
        key.append(slice(start, stop))
    if data.draw(st.booleans()):  # integers are allowed on axes whose chunks hold one element
        unit = [i for i, c in enumerate(make.chunks) if c == 1]
        for i in unit[:1]:
            key[i] = data.draw(st.integers(-shape[i], shape[i] - 1))
    check(arr[tuple(key)], expected[tuple(key)])


@SETTINGS
@given(data=st.data())
def test_expand_dims_and_broadcast(workdir: Path, data: st.DataObject) -> None:
    make = data.draw(makers(workdir, max_ndim=2))
    ndim = len(make.chunks)
    # axes of length 1 with chunk length 1 can be broadcast to any length
    ones = data.draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim))
    shape = tuple(1 if o else data.draw(st.integers(1, 4)) for o in ones)
    make.chunks = tuple(1 if o else c for o, c in zip(ones, make.chunks))
    arr, expected = make(shape)
    axis = data.draw(st.integers(-ndim - 1, ndim))
    check(np.expand_dims(arr, axis), np.expand_dims(expected, axis))
    n_new = data.draw(st.integers(0, 2))
    target = tuple(data.draw(st.integers(0, 3)) for _ in range(n_new)) + tuple(
        data.draw(st.integers(0, 3)) if o else s for o, s in zip(ones, shape)
    )
    check(np.broadcast_to(arr, target), np.broadcast_to(expected, target))


@SETTINGS
@given(data=st.data())
def test_transpose_then_slice_and_concatenate(workdir: Path, data: st.DataObject) -> None:
    make = data.draw(makers(workdir, min_ndim=2))
    ndim = len(make.chunks)
    shape = tuple(data.draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    arr, expected = make(shape)
    perm = data.draw(st.permutations(range(ndim)))
    t, te = np.transpose(arr, perm), np.transpose(expected, perm)
    check(t, te)
    perm2 = data.draw(st.permutations(range(ndim)))  # a second transpose folds into the codec
    check(np.transpose(t, perm2), np.transpose(te, perm2))
    # whole chunks of the transposed array, joined with itself along the first axis
    c0 = t.chunks[0]
    head = (t.shape[0] // c0) * c0
    if head:
        joined = np.concatenate([t[:head], t], axis=0)
        check(joined, np.concatenate([te[:head], te], axis=0))
