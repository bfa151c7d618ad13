"""ChunkManifest.one_chunk (the HDF5 parser's contiguous datasets) makes what
from_path_ids makes of the same one-chunk grids."""

from __future__ import annotations

import numpy as np
import pytest

from virtualizarr.errors import InvalidManifestError
from virtualizarr.manifests import ChunkManifest
from virtualizarr.manifests.manifest import MISSING

URL = "file:///data/a.nc"


def _slow(offset: int | None, length: int, grid: tuple[int, ...]) -> ChunkManifest:
    present = offset is not None and all(grid)
    return ChunkManifest.from_path_ids(
        table=[URL],
        ids=np.full(grid, 0 if present else MISSING, np.uint32),
        offsets=np.full(grid, offset if present else 0, np.uint64),
        lengths=np.full(grid, length if present else 0, np.uint64),
        normalize=False,
    )


@pytest.mark.parametrize(
    ("offset", "length", "grid"),
    [(96, 40, (1,)), (0, 8, ()), (2**40, 2**33, (1, 1, 1)), (None, 40, (1, 1)), (96, 0, (0,)),
     (96, 40, (1, 0)), (None, 0, (0, 1))],
)  # fmt: skip
def test_one_chunk_equals_from_path_ids(offset, length, grid):
    fast, slow = ChunkManifest.one_chunk(URL, offset, length, grid), _slow(offset, length, grid)
    assert fast == slow
    assert fast.table == slow.table
    assert fast.shape_chunk_grid == slow.shape_chunk_grid == grid
    for a, b in ((fast.path_ids, slow.path_ids), (fast.offsets, slow.offsets),
                 (fast.lengths, slow.lengths)):  # fmt: skip
        assert a.dtype == b.dtype
        assert a.shape == b.shape
        assert np.array_equal(a, b)
        assert not a.flags.writeable  # shared by slices and broadcasts: never written
    assert fast.to_dict() == slow.to_dict()


def test_one_chunk_rejects_negative_ranges():
    with pytest.raises(InvalidManifestError, match=">= 0"):
        ChunkManifest.one_chunk(URL, -1, 4, (1,))
