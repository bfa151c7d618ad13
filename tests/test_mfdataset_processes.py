"""parallel='processes': files handed out a few per task still come back in input order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("virtualizarr.parsers.hdf5")
pytest.importorskip("netCDF4")

from tests.test_mfdataset import STEPS, write_file
from virtualizarr import open_virtual_mfdataset
from virtualizarr.mfdataset import _worker_modules


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
