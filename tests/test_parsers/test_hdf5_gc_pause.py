"""The h5py chunk-index path pauses the cyclic garbage collector and leaves it as it was,
also when parses run on threads."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from virtualizarr.parsers import HDFParser
from virtualizarr.parsers.hdf5.chunks import gc_paused


@pytest.fixture
def gc_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def _file(tmp_path: Path, i: int = 0) -> str:
    p = tmp_path / f"g{i}.h5"
    with h5py.File(p, "w") as f:
        for k in range(20):
            f.create_dataset(f"v{k}", data=np.arange(10.0) + i + k, chunks=(5,))
    return f"file://{p}"


def test_nested_pauses_resume_once_and_only_if_it_was_on(gc_restored: None) -> None:
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still runs
    assert gc.isenabled()
    gc.disable()  # a user's choice is kept
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_h5py_parses_on_threads_leave_the_collector_on(tmp_path: Path, gc_restored: None) -> None:
    gc.enable()
    urls = [_file(tmp_path, i) for i in range(6)]
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(HDFParser(engine="h5py"), urls * 3))
    assert gc.isenabled()
    assert [sorted(s._group.arrays) for s in stores] == [sorted(stores[0]._group.arrays)] * 18
    gc.disable()
    HDFParser(engine="h5py")(urls[0])
    assert not gc.isenabled()
