"""Threads parsing local files take turns (virtualizarr.io.turns)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from virtualizarr.io import open_source
from virtualizarr.io.turns import on_local_disk, parse_turn
from virtualizarr.parsers import HDFParser


def _files(tmp_path: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = tmp_path / f"t{i}.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("x", data=np.arange(1000.0) + i, chunks=(100,))
        paths.append(p)
    return paths


def test_unknown_devices_and_other_sources_take_no_turn() -> None:
    assert on_local_disk(-1) is False
    with parse_turn(None), parse_turn(object()):  # nothing to wait for
        pass


def test_a_local_parse_waits_for_the_turn_and_nesting_does_not(tmp_path: Path) -> None:
    a, b = _files(tmp_path, 2)
    with open_source(str(a)) as sa, open_source(str(b)) as sb:
        if not on_local_disk(sa.device):
            pytest.skip("the temporary folder is not on a local file system this reads as such")
        entered = threading.Event()

        def other() -> None:
            with parse_turn(sb):
                entered.set()

        with parse_turn(sa):
            with parse_turn(sb):  # the same thread again: no deadlock
                pass
            t = threading.Thread(target=other)
            t.start()
            assert not entered.wait(0.3)  # waits while this thread parses
        t.join(5)
        assert entered.is_set()
        with parse_turn(sa):  # released by the other thread too
            pass


def test_threads_give_the_same_manifests_as_serial(tmp_path: Path) -> None:
    paths = _files(tmp_path, 6)

    def parse(p: Path) -> tuple[list[int], list[float]]:
        store = HDFParser()(f"file://{p}")
        m = store._group.arrays["x"].manifest
        return m.offsets.ravel().tolist(), m.lengths.ravel().tolist()

    serial = [parse(p) for p in paths]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(parse, paths * 3)) == serial * 3


def test_a_failed_parse_gives_the_turn_back(tmp_path: Path) -> None:
    from virtualizarr.errors import ParserError

    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(ParserError, match=r"bad\.h5"):
        HDFParser()(f"file://{bad}")
    (good,) = _files(tmp_path, 1)
    with ThreadPoolExecutor(1) as pool:  # another thread gets the turn at once
        assert pool.submit(HDFParser(), f"file://{good}").result(timeout=10) is not None
