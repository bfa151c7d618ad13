"""What a remote source fetches at a cache miss (io/source.py, ``WHOLE_BELOW``,
``WHOLE_AFTER_MISSES``): small files whole, larger ones only where the parse reads, and
every real sample file of every format in 1-2 requests within 1.1x its size + 64 KiB.

Requests and bytes are counted by the loopback HTTP server of ``tests/conftest.py``.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests._support import http_served
from tests.conftest import HTTPServer, real_files
from virtualizarr.io import HEAD_BYTES, RemoteSource, open_source
from virtualizarr.io.source import WHOLE_AFTER_MISSES, WHOLE_BELOW, WHOLE_REST_BELOW
from virtualizarr.registry import ObjectStoreRegistry

KiB, MiB = 1 << 10, 1 << 20


def served_file(server: HTTPServer, size: int) -> tuple[Path, bytes]:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = server.mkdir() / "f.bin"
    path.write_bytes(data)
    return path, data


def test_small_file_comes_whole_at_its_first_miss_from_read_many(http_server: HTTPServer) -> None:
    path, data = served_file(http_server, WHOLE_BELOW)
    src = open_source(http_server.url_for(path))
    assert isinstance(src, RemoteSource)
    # scattered metadata (as an HDF5 parse asks for it) past the head: one request for all
    ranges = [(HEAD_BYTES + 10, 100), (2 * MiB, 50), (WHOLE_BELOW - 7, 7)]
    assert src.read_many(ranges) == [data[o : o + n] for o, n in ranges]
    assert src.read_many([(3 * MiB, 10)]) == [data[3 * MiB : 3 * MiB + 10]]
    assert http_served(http_server, path) == (2, WHOLE_BELOW)


def test_larger_file_fetches_only_what_is_read(http_server: HTTPServer) -> None:
    size = WHOLE_BELOW + 5 * MiB
    path, data = served_file(http_server, size)
    src = open_source(http_server.url_for(path))
    ranges = [(6 * MiB, 300), (8 * MiB + 5, 200)]  # 2 MiB apart: two concurrent requests
    assert src.read_many(ranges) == [data[o : o + n] for o, n in ranges]
    requests, nbytes = http_served(http_server, path)
    assert requests == 3
    assert nbytes == HEAD_BYTES + 500


def test_a_parse_that_keeps_missing_gets_the_rest_whole(http_server: HTTPServer) -> None:
    """After WHOLE_AFTER_MISSES misses, the next one brings the rest (when it is small enough);
    from then on nothing is fetched."""
    size = WHOLE_BELOW + 3 * MiB
    assert size - HEAD_BYTES <= WHOLE_REST_BELOW
    path, data = served_file(http_server, size)
    src = open_source(http_server.url_for(path))
    step = (size - HEAD_BYTES) // (WHOLE_AFTER_MISSES + 2)
    offsets = [HEAD_BYTES + i * step for i in range(WHOLE_AFTER_MISSES + 1)]
    for o in offsets[:-1]:  # each miss: only its 64 bytes
        assert src.read_many([(o, 64)]) == [data[o : o + 64]]
    assert http_served(http_server, path) == (
        1 + WHOLE_AFTER_MISSES,
        HEAD_BYTES + 64 * WHOLE_AFTER_MISSES,
    )
    o = offsets[-1]
    assert src.read_many([(o, 64)]) == [data[o : o + 64]]
    # the rest, once: the holes between what was cached, in one concurrent batch
    requests, nbytes = http_served(http_server, path)
    assert nbytes == size
    assert requests <= 1 + WHOLE_AFTER_MISSES + WHOLE_AFTER_MISSES + 1
    assert src.read(size - 100, 100) == data[-100:]
    assert src.read_many([(HEAD_BYTES + 7, 1000), (size - MiB, 10)])[1] == data[-MiB : -MiB + 10]
    assert http_served(http_server, path) == (requests, size)


def test_late_misses_of_a_big_file_stay_piecewise(http_server: HTTPServer) -> None:
    """A file whose rest exceeds WHOLE_REST_BELOW is never fetched whole."""
    size = WHOLE_REST_BELOW + 2 * MiB
    path, data = served_file(http_server, size)
    src = open_source(http_server.url_for(path), read_ahead=0)
    offsets = [HEAD_BYTES + i * MiB for i in range(1, WHOLE_AFTER_MISSES + 4)]
    for o in offsets:
        assert src.read(o, 32) == data[o : o + 32]
    requests, nbytes = http_served(http_server, path)
    assert requests == 1 + len(offsets)
    assert nbytes < HEAD_BYTES + len(offsets) * 100 * KiB  # what was read, plus READ_BEHIND


REAL = (
    real_files("netcdf4_hdf5")
    + real_files("netcdf3")
    + real_files("grib")
    + real_files("fits")
    + real_files("tiff")
)


@pytest.mark.parametrize("rel", REAL)
def test_every_real_file_in_one_or_two_requests(http_server: HTTPServer, rel: str) -> None:
    """Parsing (no coordinates loaded) costs 1 request for a file within the first read,
    2 above it, and at most 1.1x the file + 64 KiB."""
    import virtualizarr as vz
    from virtualizarr.testing.ground_truth import real_file

    src = real_file(rel)
    path = http_server.mkdir() / src.name
    shutil.copyfile(src, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vz.open_virtual_dataset(
            http_server.url_for(path), registry=ObjectStoreRegistry(), loadable_variables=[]
        )
    size = path.stat().st_size
    requests, nbytes = http_served(http_server, path)
    assert nbytes <= 1.1 * size + 64 * KiB, (rel, nbytes, size)
    assert requests <= (1 if size <= HEAD_BYTES else 2), (rel, requests)
