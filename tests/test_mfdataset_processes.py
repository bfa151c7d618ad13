"""parallel='processes': files handed out a few per task still come back in input order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("virtualizarr.parsers.hdf5")
pytest.importorskip("netCDF4")

from tests.test_mfdataset import STEPS, write_file
from virtualizarr import open_virtual_mfdataset
from virtualizarr.mfdataset.executors import _worker_modules


@pytest.mark.slow
def test_processes_keep_nested_order(tmp_path: Path) -> None:
    paths = [tmp_path / f"f{i:02d}.nc" for i in range(40)]  # > 8 per worker: chunked tasks
    for i, p in enumerate(paths):
        write_file(p, i)
    order = [str(paths[i]) for i in np.random.default_rng(1).permutation(len(paths))]
    ds = open_virtual_mfdataset(order, combine="nested", concat_dim="time", parallel="processes")
    serial = open_virtual_mfdataset(order, combine="nested", concat_dim="time")
    starts = [int(Path(u).stem[1:]) * STEPS for u in order]
    want = np.concatenate([np.arange(s, s + STEPS) for s in starts])
    days = (ds["time"].values - np.datetime64("2000-01-01")) // np.timedelta64(1, "D")
    np.testing.assert_array_equal(days, want)
    assert ds["air"].data.manifest == serial["air"].data.manifest


def test_worker_modules_importable() -> None:
    import importlib

    mods = _worker_modules()
    assert "virtualizarr.mfdataset" in mods
    for m in mods:
        importlib.import_module(m)


def test_fork_only_when_safe() -> None:
    import threading

    from virtualizarr.mfdataset.executors import _fork_is_safe

    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not _fork_is_safe()  # a second Python thread: the child could deadlock
    finally:
        stop.set()
        t.join()


_START_METHOD = """
import sys
import numpy, xarray  # BLAS and allocator threads: fork-safe
from virtualizarr.mfdataset.executors import _process_pool
pool = _process_pool(1)
print(pool._mp_context.get_start_method())
assert pool.submit(sum, [1, 2]).result() == 3
# forked with the client's objects frozen: the workers' GC never walks them; ours does
import gc
assert gc.get_freeze_count() == 0
assert pool.submit(gc.get_freeze_count).result() > 0
pool.shutdown()
if sys.argv[1] == "io":
    import obstore
    from obstore.store import LocalStore
    obstore.get(LocalStore(sys.argv[2]), "x").bytes()  # starts the I/O runtime's threads
    pool = _process_pool(1)
    print(pool._mp_context.get_start_method())
    assert pool.submit(sum, [1, 2]).result() == 3
    pool.shutdown()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is chosen on Linux only")
def test_pool_forks_a_fresh_process_not_one_with_an_io_runtime(tmp_path: Path) -> None:
    # a fresh process: fork (workers start at once); once obstore's tokio threads run: a
    # fork server (forking them could deadlock the workers)
    (tmp_path / "x").write_bytes(b"1")
    out = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::DeprecationWarning",
            "-c",
            _START_METHOD,
            "io",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert out.stdout.split() == ["fork", "forkserver"], out.stderr


_WITH_PROGRESS_BAR = """
import sys
from tests.test_mfdataset import STEPS, write_file
import virtualizarr.mfdataset.executors as mf
from virtualizarr import open_virtual_mfdataset
paths = [f"{sys.argv[1]}/f{i}.nc" for i in range(3)]
for i, p in enumerate(paths):
    write_file(p, i)
ds = open_virtual_mfdataset(paths, parallel="processes", progress=True)
assert ds.sizes["time"] == 3 * STEPS
print(mf._POOL._mp_context.get_start_method())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is chosen on Linux only")
def test_pool_forked_before_the_progress_bar_starts_its_thread(tmp_path: Path) -> None:
    pytest.importorskip("tqdm")
    out = subprocess.run(
        [sys.executable, "-c", _WITH_PROGRESS_BAR, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.split() == ["fork"], out.stderr
