"""Our HDF5 chunk index readers against h5py, for every index type HDF5 writes.

Files are written with h5py (``libver`` earliest: v1 B-trees; latest: single chunk,
implicit, fixed array, extensible array, v2 B-tree), the data layout message is found by a
minimal object-header walk (``hdf5_raw``), and the :class:`ChunkTable` read by
``read_chunk_index`` must equal what h5py's ``chunk_iter`` reports, chunk for chunk
(grid position, byte offset, stored size, filter mask). Damaged files must raise
:class:`CorruptFileError` naming the file and the structure.
"""

from __future__ import annotations

import functools
import math
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from tests.conftest import REAL_DATA, requires_real_data
from tests.test_parsers.hdf5_raw import (
    FileBytes,
    h5py_chunks,
    layout_of,
    superblock,
    table_dict,
)
from virtualizarr.errors import CorruptFileError
from virtualizarr.parsers.hdf5.layout import (
    ChunkIndexType,
    ChunkTable,
    LayoutClass,
    parse_layout_message,
    read_chunk_index,
)
from virtualizarr.parsers.hdf5.lookup3 import lookup3, verify_checksums

# -- helpers ---------------------------------------------------------------------------------


class MemoryBytes(FileBytes):
    """A reader over bytes in memory (a damaged copy of a file)."""

    def __init__(self, data: bytes, name: str = "memory") -> None:
        self.path, self.data, self.size = name, bytes(data), len(data)
        self.calls = self.ranges = 0


def our_table(path: str | Path, name: str, reader: Any = None, **kw: Any) -> tuple[ChunkTable, Any]:
    """``(our ChunkTable, layout)`` of dataset ``name``."""
    data = Path(path).read_bytes()
    sb = superblock(data)
    with h5py.File(path, "r") as f:
        d = f[name]
        layout = layout_of(d, data, sb, where=str(path))
        table = read_chunk_index(
            reader if reader is not None else FileBytes(path),
            layout,
            shape=d.shape,
            dtype_size=d.id.get_type().get_size(),
            filtered=d.id.get_create_plist().get_nfilters() > 0,
            sizeof_offsets=sb.sizeof_offsets,
            sizeof_lengths=sb.sizeof_lengths,
            where=str(path),
            maxshape=d.maxshape,
            btree1_k=sb.btree_k,
            **kw,
        )
    return table, layout


def assert_same_as_h5py(path: str | Path, name: str, index_type: ChunkIndexType) -> ChunkTable:
    table, layout = our_table(path, name)
    assert layout.index_type == index_type
    with h5py.File(path, "r") as f:
        expected = h5py_chunks(f[name])
    got = table_dict(table)
    assert got == expected
    assert table.grid_coords.dtype == np.int64
    assert table.offsets.dtype == np.uint64
    assert table.lengths.dtype == np.uint64
    assert table.filter_masks.dtype == np.uint32
    return table


def assert_bytes_match(path: str | Path, name: str, table: ChunkTable, limit: int = 300) -> None:
    """Each chunk's bytes at our offset equal h5py's raw chunk at that position."""
    data = Path(path).read_bytes()
    with h5py.File(path, "r") as f:
        d = f[name]
        rows = np.linspace(0, len(table) - 1, min(limit, len(table))).astype(int)
        for i in np.unique(rows):
            start = tuple(int(x) for x in table.element_offsets()[i])
            mask, raw = d.id.read_direct_chunk(start)
            o, n = int(table.offsets[i]), int(table.lengths[i])
            assert data[o : o + n] == raw
            assert mask == int(table.filter_masks[i])


def early_dcpl() -> Any:
    """A dataset creation property list with early allocation (-> implicit index)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


# -- layout messages ---------------------------------------------------------------------------


def test_layout_contiguous_and_compact(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("contig", data=np.arange(1000, dtype="f4"))
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        f.create_dataset("compact", data=np.arange(10, dtype="i2"), dcpl=dcpl)
    data = path.read_bytes()
    sb = superblock(data)
    with h5py.File(path, "r") as f:
        lay = layout_of(f["contig"], data, sb)
        assert lay.layout_class == LayoutClass.CONTIGUOUS
        assert lay.address == f["contig"].id.get_offset()
        assert lay.size == 4000
        assert data[lay.address : lay.address + lay.size] == np.arange(1000, dtype="f4").tobytes()
        lay = layout_of(f["compact"], data, sb)
        assert lay.layout_class == LayoutClass.COMPACT
        assert lay.compact_data == np.arange(10, dtype="i2").tobytes()


def test_layout_message_errors() -> None:
    with pytest.raises(CorruptFileError, match=r"f.h5: data layout message .*truncated"):
        parse_layout_message(b"\x03\x01\x00", sizeof_offsets=8, sizeof_lengths=8, where="f.h5")
    with pytest.raises(CorruptFileError, match="unknown version 9"):
        parse_layout_message(b"\x09\x01", sizeof_offsets=8, sizeof_lengths=8, where="f.h5")
    body = bytes([3, 2, 3]) + (100).to_bytes(8, "little") + b"\x02\0\0\0" * 3
    with pytest.raises(CorruptFileError, match="rank 1"):
        parse_layout_message(body, sizeof_offsets=8, sizeof_lengths=8, ndim=1, where="f.h5")
    lay = parse_layout_message(body, sizeof_offsets=8, sizeof_lengths=8, ndim=2, where="f.h5")
    assert lay.chunk_shape == (2, 2)
    assert lay.chunk_nbytes == 8


def test_layout_versions_1_and_2() -> None:
    """Old layout messages (HDF5 1.4 era), built by hand from the specification."""
    parse = functools.partial(
        parse_layout_message, sizeof_offsets=8, sizeof_lengths=8, where="old.h5"
    )
    addr = (4096).to_bytes(8, "little")
    dims = b"".join(d.to_bytes(4, "little") for d in (10, 20, 8))
    for version in (1, 2):
        head = bytes([version, 3, 2]) + bytes(5)
        lay = parse(head + addr + dims, ndim=2)
        assert lay.layout_class == LayoutClass.CHUNKED
        assert lay.index_type == ChunkIndexType.BTREE1
        assert (lay.address, lay.chunk_shape, lay.chunk_nbytes) == (4096, (10, 20), 1600)
        lay = parse(head + addr + dims + (8).to_bytes(4, "little"))
        assert lay.element_size == 8
        lay = parse(bytes([version, 2, 1]) + bytes(5) + addr + dims[:8])
        assert (lay.layout_class, lay.address, lay.size) == (LayoutClass.CONTIGUOUS, 4096, None)
        body = bytes([version, 1, 0]) + bytes(5) + dims[:4] + (3).to_bytes(4, "little") + b"abc"
        lay = parse(body)
        assert (lay.layout_class, lay.compact_data) == (LayoutClass.COMPACT, b"abc")
    with pytest.raises(CorruptFileError, match=r"old.h5: data layout message .* truncated"):
        parse(bytes([1, 1, 0]) + bytes(5) + dims[:4] + (9).to_bytes(4, "little"))


def _lookup3_reference(data: bytes) -> int:
    """lookup3 (hashlittle) written out from Bob Jenkins' description, in Python integers."""
    m = 0xFFFFFFFF

    def rot(x: int, k: int) -> int:
        return ((x << k) | (x >> (32 - k))) & m

    # mix(): x -= y; x ^= rot(y, r); y += z, on the registers (x, y, z) of each step
    mix = [(0, 2, 1, 4), (1, 0, 2, 6), (2, 1, 0, 8), (0, 2, 1, 16), (1, 0, 2, 19), (2, 1, 0, 4)]
    # final(): x ^= y; x -= rot(y, r)
    final = [(2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24)]
    abc = [(0xDEADBEEF + len(data)) & m] * 3
    if not data:
        return abc[2]
    n = -(-len(data) // 12)
    words = list(np.frombuffer(data + bytes(12 * n - len(data)), "<u4").tolist())
    for i in range(0, 3 * n, 3):
        abc = [(v + w) & m for v, w in zip(abc, words[i : i + 3])]
        if i < 3 * (n - 1):  # the last block (zero-padded) goes through final() instead
            for x, y, z, r in mix:
                abc[x] = ((abc[x] - abc[y]) & m) ^ rot(abc[y], r)
                abc[y] = (abc[y] + abc[z]) & m
    for x, y, r in final:
        abc[x] = ((abc[x] ^ abc[y]) - rot(abc[y], r)) & m
    return abc[2]


def test_lookup3_known_values() -> None:
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert _lookup3_reference(b"Four score and seven years ago") == 0x17770551
    rng = np.random.default_rng(1)
    for n in (1, 11, 12, 13, 24, 25, 255, 256, 1000, 5000):
        for r in rng.integers(0, 256, (5, n), dtype=np.uint8):
            assert lookup3(r.tobytes()) == _lookup3_reference(r.tobytes())
            assert lookup3(memoryview(r.tobytes())) == _lookup3_reference(r.tobytes())


def test_verify_checksums_flags_the_changed_block() -> None:
    blocks = [bytes(range(256)) * 4, b"x" * 300, b"short"]
    stored = np.array([_lookup3_reference(b) for b in blocks], np.uint32)
    assert verify_checksums(blocks, stored).all()
    stored[1] ^= 1
    assert verify_checksums(blocks, stored).tolist() == [True, False, True]


def test_lookup3_matches_hdf5_superblock(tmp_path: Path) -> None:
    path = tmp_path / "sb.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["a"] = 1
    data = path.read_bytes()
    assert data[8] in (2, 3)
    n = 12 + 4 * data[9]  # signature .. root object header address
    assert lookup3(data[:n]) == int.from_bytes(data[n : n + 4], "little")


# -- version 1 B-trees ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "chunks", "compression"),
    [
        ((1000,), (7,), None),
        ((100, 1000), (7, 30), "gzip"),
        ((20, 30, 40), (3, 7, 11), None),
        ((6, 7, 8, 9), (2, 3, 4, 5), "gzip"),
        ((5000,), (1,), None),  # thousands of chunks: three levels
    ],
)
def test_btree1(tmp_path: Path, shape: tuple, chunks: tuple, compression: str | None) -> None:
    path = tmp_path / "b1.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        data = np.arange(math.prod(shape), dtype="f8").reshape(shape)
        f.create_dataset("x", data=data, chunks=chunks, compression=compression)
    table = assert_same_as_h5py(path, "x", ChunkIndexType.BTREE1)
    assert len(table) == math.prod(-(-s // c) for s, c in zip(shape, chunks))
    assert_bytes_match(path, "x", table, limit=50)


def test_btree1_sparse_and_masks(tmp_path: Path) -> None:
    path = tmp_path / "b1s.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        d = f.create_dataset("x", shape=(1000, 50), chunks=(10, 10), dtype="i4", compression="gzip")
        d[5:17] = 1
        d[500:503, 40:] = 3
        raw = zlib.compress(np.ones((10, 10), "i4").tobytes())
        d.id.write_direct_chunk((900, 0), np.ones((10, 10), "i4").tobytes(), filter_mask=1)
        d.id.write_direct_chunk((910, 10), raw, filter_mask=0)
    table = assert_same_as_h5py(path, "x", ChunkIndexType.BTREE1)
    assert sorted(set(table.filter_masks.tolist())) == [0, 1]
    assert len(table) == 5 * 2 + 1 + 2


def test_btree1_empty_dataset(tmp_path: Path) -> None:
    path = tmp_path / "b1e.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        f.create_dataset("x", shape=(100,), chunks=(10,), dtype="i4")
    table, _ = our_table(path, "x")
    assert len(table) == 0
    assert table.grid_coords.shape == (0, 1)


def test_btree1_small_k_guess_rereads(tmp_path: Path) -> None:
    """A wrong guess of the nodes' capacity costs a re-read, not a wrong answer."""
    path = tmp_path / "k.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        f.create_dataset("x", data=np.arange(3000, dtype="i2"), chunks=(1,))
    data = path.read_bytes()
    sb = superblock(data)
    with h5py.File(path, "r") as f:
        d = f["x"]
        layout = layout_of(d, data, sb)
        kw = {
            "shape": d.shape,
            "dtype_size": 2,
            "filtered": False,
            "sizeof_offsets": 8,
            "sizeof_lengths": 8,
            "where": str(path),
        }
        expected = table_dict(read_chunk_index(FileBytes(path), layout, **kw))
        for k in (1, 4, 500):
            assert (
                table_dict(read_chunk_index(FileBytes(path), layout, btree1_k=k, **kw)) == expected
            )
        assert expected == h5py_chunks(d)


def test_btree1_one_batch_per_level(tmp_path: Path) -> None:
    path = tmp_path / "lv.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        f.create_dataset("x", data=np.arange(20000, dtype="i2"), chunks=(2,))  # 10,000 chunks
    reader = FileBytes(path)
    table, _ = our_table(path, "x", reader=reader)
    assert len(table) == 10000
    assert reader.calls == 3  # root, internal level, leaves


# -- layout version 4 indexes ---------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_single_chunk(tmp_path: Path, compression: str | None) -> None:
    path = tmp_path / "s.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset(
            "x",
            data=np.arange(1200, dtype="i2").reshape(30, 40),
            chunks=(30, 40),
            compression=compression,
        )
    _, layout = our_table(path, "x")
    assert bool(layout.flags & 2) == (compression is not None)
    assert_same_as_h5py(path, "x", ChunkIndexType.SINGLE_CHUNK)


def test_single_chunk_filter_mask(tmp_path: Path) -> None:
    path = tmp_path / "sm.h5"
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset("x", shape=(30, 40), chunks=(30, 40), dtype="i2", compression="gzip")
        d.id.write_direct_chunk((0, 0), np.ones((30, 40), "i2").tobytes(), filter_mask=1)
    table = assert_same_as_h5py(path, "x", ChunkIndexType.SINGLE_CHUNK)
    assert table.filter_masks.tolist() == [1]


def test_single_chunk_unwritten(tmp_path: Path) -> None:
    path = tmp_path / "su.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("x", shape=(30, 40), chunks=(30, 40), dtype="i2")
    table, layout = our_table(path, "x")
    assert layout.index_type == ChunkIndexType.SINGLE_CHUNK
    assert len(table) == 0


@pytest.mark.parametrize(
    ("shape", "chunks"), [((30, 40), (7, 9)), ((100,), (8,)), ((5, 6, 7), (2, 2, 2))]
)
def test_implicit(tmp_path: Path, shape: tuple, chunks: tuple) -> None:
    path = tmp_path / "i.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("x", shape=shape, chunks=chunks, dtype="i2", dcpl=early_dcpl())
        f["x"][...] = 1
    table = assert_same_as_h5py(path, "x", ChunkIndexType.IMPLICIT)
    assert_bytes_match(path, "x", table, limit=20)


def test_implicit_maximum_extent_larger(tmp_path: Path) -> None:
    """Chunks are numbered on the grid of the maximum extent, only the current ones listed."""
    path = tmp_path / "im.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset(
            "x", shape=(30, 40), maxshape=(60, 80), chunks=(7, 9), dtype="i2", dcpl=early_dcpl()
        )
        f["x"][...] = 1
    table = assert_same_as_h5py(path, "x", ChunkIndexType.IMPLICIT)
    assert len(table) == 25


@pytest.mark.parametrize(
    ("shape", "maxshape", "chunks", "compression"),
    [
        ((100, 1000), None, (7, 30), None),
        ((100, 1000), None, (7, 30), "gzip"),
        ((300, 400), None, (5, 5), None),  # 4,800 chunks: paged data block
        ((300, 400), None, (5, 5), "gzip"),
        ((30, 40), (60, 80), (7, 9), "gzip"),  # maximum extent larger than the extent
        ((30, 40), (60, 80), (7, 9), None),
        ((4, 5, 6, 7), None, (2, 2, 2, 2), "gzip"),
    ],
)
def test_fixed_array(
    tmp_path: Path, shape: tuple, maxshape: tuple | None, chunks: tuple, compression: str | None
) -> None:
    path = tmp_path / "fa.h5"
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset(
            "x", shape=shape, maxshape=maxshape, chunks=chunks, dtype="i2", compression=compression
        )
        d[...] = np.arange(math.prod(shape)).reshape(shape) % 1000
    table = assert_same_as_h5py(path, "x", ChunkIndexType.FIXED_ARRAY)
    assert_bytes_match(path, "x", table, limit=30)


def test_fixed_array_sparse_pages(tmp_path: Path) -> None:
    """Pages never written are absent (their bit in the page bitmap is clear)."""
    path = tmp_path / "fas.h5"
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset("x", shape=(300, 400), chunks=(5, 5), dtype="i2", compression="gzip")
        d[:20] = 1
        d[200:250, 100:107] = 3
        d.id.write_direct_chunk((295, 395), np.ones((5, 5), "i2").tobytes(), filter_mask=1)
    table = assert_same_as_h5py(path, "x", ChunkIndexType.FIXED_ARRAY)
    assert 1 in table.filter_masks.tolist()


@pytest.mark.parametrize(
    ("shape", "chunks", "compression"),
    [
        ((100,), (1,), None),
        ((5000, 30), (1, 7), None),
        ((5000, 30), (1, 7), "gzip"),
        pytest.param((300000,), (1,), None, marks=pytest.mark.slow),  # all pages written
        ((40, 3, 4, 5), (1, 2, 2, 2), "gzip"),
    ],
)
def test_extensible_array(
    tmp_path: Path, shape: tuple, chunks: tuple, compression: str | None
) -> None:
    path = tmp_path / "ea.h5"
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset(
            "x",
            shape=shape,
            maxshape=(None, *shape[1:]),
            chunks=chunks,
            dtype="i1",
            compression=compression,
        )
        d[...] = 1
    table = assert_same_as_h5py(path, "x", ChunkIndexType.EXTENSIBLE_ARRAY)
    assert_bytes_match(path, "x", table, limit=30)


def test_extensible_array_sparse_and_masks(tmp_path: Path) -> None:
    """Paged data blocks with unwritten pages, unwritten data blocks and super blocks.

    With HDF5's parameters (16 elements per first data block, 1024 per page), data blocks
    are paged from element 131,060 on (2,048 elements: 2 pages).
    """
    path = tmp_path / "eas.h5"
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset(
            "x", shape=(300000,), maxshape=(None,), chunks=(1,), dtype="i2", compression="gzip"
        )
        d[:100] = 1
        d[150000:150100] = 2  # page 0 of a paged data block; page 1 never written
        d[200000:200001] = 3
        d.id.write_direct_chunk((299999,), np.ones(1, "i2").tobytes(), filter_mask=1)
    table = assert_same_as_h5py(path, "x", ChunkIndexType.EXTENSIBLE_ARRAY)
    assert len(table) == 100 + 100 + 1 + 1
    assert table.filter_masks.tolist().count(1) == 1


def test_extensible_array_unlimited_axis_not_first(tmp_path: Path) -> None:
    """Elements are numbered with the unlimited axis moved first.

    HDF5 2.0's ``chunk_iter`` reports wrong positions for such datasets (the element
    number instead of the position), so positions are checked with ``read_direct_chunk``
    (which looks each chunk up by position) and offsets against ``chunk_iter``'s.
    """
    path = tmp_path / "eau.h5"
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset(
            "x",
            shape=(30, 2000),
            maxshape=(30, None),
            chunks=(7, 1),
            dtype="i2",
            compression="gzip",
        )
        d[:, 1500:1900] = np.arange(400, dtype="i2")
        d[:, 3] = 1
    table, layout = our_table(path, "x")
    assert layout.index_type == ChunkIndexType.EXTENSIBLE_ARRAY
    with h5py.File(path, "r") as f:
        expected = h5py_chunks(f["x"])
    assert sorted(v for v in table_dict(table).values()) == sorted(expected.values())
    assert_bytes_match(path, "x", table, limit=200)
    assert table_dict(table)[(3, 1615)][0] > 0


@pytest.mark.parametrize(
    ("shape", "maxshape", "chunks", "compression"),
    [
        ((10, 10), (None, None), (3, 3), None),
        ((300, 400), (None, None), (3, 3), None),  # 13,400 records: internal nodes
        ((300, 400), (None, None), (3, 3), "gzip"),
        ((20, 30, 40, 5), (None, 30, None, None), (3, 4, 5, 2), "gzip"),
    ],
)
def test_btree2(
    tmp_path: Path, shape: tuple, maxshape: tuple, chunks: tuple, compression: str | None
) -> None:
    path = tmp_path / "bt2.h5"
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset(
            "x",
            shape=shape,
            maxshape=maxshape,
            chunks=chunks,
            dtype="f8",
            compression=compression,
            shuffle=compression is not None,
        )
        d[::2] = 1
    table = assert_same_as_h5py(path, "x", ChunkIndexType.BTREE2)
    assert_bytes_match(path, "x", table, limit=30)


def test_btree2_masks(tmp_path: Path) -> None:
    path = tmp_path / "bt2m.h5"
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset(
            "x",
            shape=(100, 100),
            maxshape=(None, None),
            chunks=(10, 10),
            dtype="i4",
            compression="gzip",
        )
        d[:50] = 1
        d.id.write_direct_chunk((90, 90), np.ones((10, 10), "i4").tobytes(), filter_mask=1)
    table = assert_same_as_h5py(path, "x", ChunkIndexType.BTREE2)
    assert table.filter_masks.tolist().count(1) == 1


# -- damaged files --------------------------------------------------------------------------------


def _damaged(path: Path, name: str, edit: Any) -> None:
    """Read ``name`` from a copy of the file changed by ``edit(bytearray, layout)``."""
    data = bytearray(path.read_bytes())
    _, layout = our_table(path, name)
    edit(data, layout)
    our_table(path, name, reader=MemoryBytes(data, str(path)))


def _flip(offset: int) -> Any:
    def edit(data: bytearray, layout: Any) -> None:
        data[layout.address + offset] ^= 0x5A

    return edit


def _truncate(data: bytearray, layout: Any) -> None:
    del data[layout.address + 10 :]


CASES = {
    "btree1": ("earliest", {"shape": (5000,), "chunks": (1,)}),
    "fixed": ("latest", {"shape": (300, 400), "chunks": (5, 5)}),
    "extensible": ("latest", {"shape": (3000,), "maxshape": (None,), "chunks": (1,)}),
    "btree2": ("latest", {"shape": (300, 40), "maxshape": (None, None), "chunks": (3, 3)}),
}


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_flip(0), "signature"),
        (_flip(5), "corrupt"),  # version / type / level / checksum
        (_truncate, "past the end of the file|truncated|read"),
    ],
)
def test_damaged_index_raises(tmp_path: Path, kind: str, edit: Any, match: str) -> None:
    libver, kw = CASES[kind]
    path = tmp_path / f"{kind}.h5"
    with h5py.File(path, "w", libver=libver) as f:
        d = f.create_dataset("x", dtype="i2", compression="gzip", **kw)
        d[...] = 1
    with pytest.raises(CorruptFileError, match=match) as info:
        _damaged(path, "x", edit)
    assert str(path) in str(info.value)
    assert "chunk index" in str(info.value)


@pytest.mark.parametrize("kind", ["fixed", "extensible", "btree2"])
def test_damaged_deeper_block_checksum(tmp_path: Path, kind: str) -> None:
    """A changed byte inside a data block / node is caught by its checksum."""
    libver, kw = CASES[kind]
    path = tmp_path / f"{kind}.h5"
    with h5py.File(path, "w", libver=libver) as f:
        d = f.create_dataset("x", dtype="i2", **kw)
        d[...] = 1
    table, layout = our_table(path, "x")
    data = bytearray(path.read_bytes())
    # a chunk address inside the index: find its bytes after the header and change one
    needle = int(table.offsets[len(table) // 2]).to_bytes(8, "little")
    pos = data.find(needle, layout.address)
    assert pos > 0
    data[pos] ^= 0x01
    with pytest.raises(CorruptFileError, match="checksum"):
        our_table(path, "x", reader=MemoryBytes(data, str(path)))
    # without verification the changed address is read as it is, and lies inside the file
    got, _ = our_table(path, "x", reader=MemoryBytes(data, str(path)), verify_checksums=False)
    assert len(got) == len(table)


@pytest.mark.parametrize(
    ("child", "match"),
    [("root", "level"), ("past_eof", r"past the end|points to")],
    ids=["cycle_cannot_loop", "past_eof"],
)
def test_btree1_bad_child(tmp_path: Path, child: str, match: str) -> None:
    """The root's first child pointing back at the root (caught by the level check) or past
    the end of the file."""
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        f.create_dataset("x", data=np.arange(5000, dtype="i2"), chunks=(1,))
    _, layout = our_table(path, "x")
    data = bytearray(path.read_bytes())
    root = layout.address
    assert data[root + 5] > 0  # an internal root
    first_child = root + 24 + (8 + 8 * 2)  # header (8 + 2 * 8), first key (4 + 4 + 2 * 8)
    target = root if child == "root" else len(data) + 4096
    data[first_child : first_child + 8] = target.to_bytes(8, "little")
    with pytest.raises(CorruptFileError, match=match):
        our_table(path, "x", reader=MemoryBytes(data, str(path)))


# -- real files ----------------------------------------------------------------------------------


def _chunked_datasets(path: Path) -> list[str]:
    names: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.chunks is not None and not obj.is_virtual:
            names.append(name)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return names


def _real_hdf5_files() -> list[Path]:
    folder = REAL_DATA / "netcdf4_hdf5"
    if not folder.is_dir():
        return []
    return [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    ]


@requires_real_data
@pytest.mark.parametrize("path", _real_hdf5_files(), ids=lambda p: p.name)
def test_real_files(path: Path) -> None:
    with h5py.File(path, "r") as f:
        for name in _chunked_datasets(path):
            table, layout = our_table(path, name)
            expected = h5py_chunks(f[name])
            unlimited = [i for i, m in enumerate(f[name].maxshape) if m is None]
            if layout.index_type == ChunkIndexType.EXTENSIBLE_ARRAY and unlimited[0] > 0:
                # HDF5 2.0's chunk_iter misplaces these (see the test of that name above)
                assert sorted(table_dict(table).values()) == sorted(expected.values()), name
            else:
                assert table_dict(table) == expected, name


def test_real_files_listed_or_skipped() -> None:
    """Without ../shared the parametrised test above has no cases: say so, don't pass silently."""
    if not _real_hdf5_files():
        pytest.skip(f"real sample data not found at {REAL_DATA}")
    assert len(_real_hdf5_files()) >= 10


@pytest.mark.parametrize("libver", ["v110", "v114", "latest"])
def test_layout_versions_4_and_5(tmp_path: Path, libver: str) -> None:
    """HDF5 1.10-1.14 write layout version 4, HDF5 2.0 version 5 (same layout; filtered
    chunk sizes may be stored in another width, which the index headers give)."""
    path = tmp_path / f"{libver}.h5"
    with h5py.File(path, "w", libver=(libver, libver)) as f:
        kw = {"dtype": "i2", "compression": "gzip"}
        f.create_dataset("fa", shape=(300, 400), chunks=(5, 5), **kw)[...] = 1
        f.create_dataset("ea", shape=(30000,), maxshape=(None,), chunks=(10,), **kw)[...] = 1
        f.create_dataset("bt2", shape=(300, 40), maxshape=(None, None), chunks=(3, 3), **kw)[
            ...
        ] = 1
        f.create_dataset("s", shape=(30, 40), chunks=(30, 40), **kw)[...] = 1
    expected_version = 5 if libver == "latest" else 4
    for name, itype in [
        ("fa", ChunkIndexType.FIXED_ARRAY),
        ("ea", ChunkIndexType.EXTENSIBLE_ARRAY),
        ("bt2", ChunkIndexType.BTREE2),
        ("s", ChunkIndexType.SINGLE_CHUNK),
    ]:
        _, layout = our_table(path, name)
        assert layout.version == expected_version
        assert_same_as_h5py(path, name, itype)


def test_btree1_repeated_key(tmp_path: Path) -> None:
    """Two leaf keys naming the same chunk (the keys of a B-tree must increase)."""
    path = tmp_path / "dup1.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        f.create_dataset("x", data=np.arange(500, dtype="i2"), chunks=(1,))
    data = bytearray(path.read_bytes())
    key = (2).to_bytes(4, "little") + bytes(4) + (11).to_bytes(8, "little") + bytes(8)
    assert data.count(key) == 1
    pos = data.find(key) + 8
    data[pos : pos + 8] = (10).to_bytes(8, "little")
    with pytest.raises(CorruptFileError, match="out of order or repeated"):
        our_table(path, "x", reader=MemoryBytes(data, str(path)))


def test_btree2_repeated_record(tmp_path: Path) -> None:
    """Two records naming the same chunk (checksums off, so the records themselves are read)."""
    path = tmp_path / "dup2.h5"
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset("x", shape=(30, 30), maxshape=(None, None), chunks=(3, 3), dtype="i2")
        d[...] = 1
    table, _ = our_table(path, "x")
    data = bytearray(path.read_bytes())
    row = int(np.flatnonzero((table.grid_coords == [0, 1]).all(axis=1))[0])
    record = int(table.offsets[row]).to_bytes(8, "little") + (0).to_bytes(8, "little")
    record += (1).to_bytes(8, "little")
    assert data.count(record) == 1
    pos = data.find(record) + 16
    data[pos : pos + 8] = (0).to_bytes(8, "little")  # now (0, 0), as another record
    with pytest.raises(CorruptFileError, match="same chunk"):
        our_table(path, "x", reader=MemoryBytes(data, str(path)), verify_checksums=False)
    with pytest.raises(CorruptFileError, match="checksum"):
        our_table(path, "x", reader=MemoryBytes(data, str(path)))


def test_btree1_huge_entry_count(tmp_path: Path) -> None:
    """A leaf claiming 65,535 entries does not make every node of its level be read at
    3 MB: it is refused."""
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        f.create_dataset("x", data=np.zeros(20000, "i1"), chunks=(1,))
    data = bytearray(path.read_bytes())
    table, _ = our_table(path, "x")
    leaf = data.find(b"TREE\x01\x00", 0)  # the first leaf written
    assert leaf >= 0
    data[leaf + 6 : leaf + 8] = (65535).to_bytes(2, "little")
    with pytest.raises(CorruptFileError, match=r"implausibly many|past the end"):
        our_table(path, "x", reader=MemoryBytes(data, str(path)))
    assert len(table) == 20000


class _Recording(MemoryBytes):
    """Remembers the ranges read, to aim mutations at the chunk index's own bytes."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.log: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self.log.append((offset, length))
        return super().read(offset, length)

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        self.log.extend(ranges)
        return super().read_many(ranges)


@pytest.mark.parametrize("kind", list(CASES))
def test_mutated_index_bytes(tmp_path: Path, kind: str) -> None:
    """Seeded random damage to the bytes the reader reads: the answer is a table of chunks
    inside the file, or CorruptFileError / UnsupportedFeatureError, never another exception."""
    import random

    from virtualizarr.errors import UnsupportedFeatureError

    libver, kw = CASES[kind]
    path = tmp_path / f"{kind}.h5"
    with h5py.File(path, "w", libver=libver) as f:
        f.create_dataset("x", dtype="i2", compression="gzip", **kw)[...] = 1
    data = path.read_bytes()
    rec = _Recording(data)
    our_table(path, "x", reader=rec)
    rng = random.Random(kind)
    for _ in range(20):
        damaged = bytearray(data)
        offset, length = rng.choice(rec.log)
        for _ in range(rng.choice([1, 2, 4])):
            pos = offset + rng.randrange(max(length, 1))
            damaged[pos] = rng.choice([0, 0xFF, rng.randrange(256), damaged[pos] ^ 1])
        if rng.random() < 0.15:
            del damaged[offset + rng.randrange(max(length, 1)) :]
        for verify in (False, True):
            message = ""
            try:
                table, _ = our_table(
                    path, "x", reader=MemoryBytes(damaged, str(path)), verify_checksums=verify
                )
            except (CorruptFileError, UnsupportedFeatureError) as e:
                message = str(e)
            if message:
                assert str(path) in message
            else:
                assert int((table.offsets + table.lengths).max(initial=0)) <= len(damaged)


@pytest.mark.xfail(
    strict=True,
    reason="HDF5 2.0's chunk_iter/get_chunk_info report element numbers as chunk positions "
    "for extensible-array datasets whose unlimited axis is not the first: the h5py engine "
    "drops or misplaces those chunks (the own engine reads the index itself and is right)",
)
def test_h5py_engine_extensible_array_unlimited_axis_not_first(tmp_path: Path) -> None:
    from virtualizarr.parsers import HDFParser
    from virtualizarr.registry import ObjectStoreRegistry

    path = tmp_path / "eau.h5"
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset(
            "x", shape=(30, 20), maxshape=(30, None), chunks=(7, 1), dtype="i2", compression="gzip"
        )
        d[:, 15:19] = np.arange(4, dtype="i2")
        d[:, 3] = 1
    own = HDFParser(engine="own")(str(path), ObjectStoreRegistry()).group["x"].manifest
    assert int((own.path_ids == 0).sum()) == 25
    via_h5py = HDFParser(engine="h5py")(str(path), ObjectStoreRegistry()).group["x"].manifest
    assert via_h5py == own
