"""Compare decoded values with the statistics in ``shared/data/real/ground_truth.json``.

The ground truth records, per variable, ``sha256`` of the values as little-endian C-order
bytes (bool as uint8, strings as text joined by NUL) and ``count``/``min``/``max``/``sum``
over the finite values. ``assert_values_match`` checks an array against such a record.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["REAL_DATA", "assert_values_match", "ground_truth", "real_file", "sha256_of_values"]

REAL_DATA = Path(
    os.environ.get(
        "VIRTUALIZARR_REAL_DATA", Path(__file__).parents[3] / ".." / "shared" / "data" / "real"
    )
).resolve()


@functools.cache
def ground_truth() -> dict[str, Any]:
    """The ``files`` table of ground_truth.json, keyed by path relative to REAL_DATA."""
    with open(REAL_DATA / "ground_truth.json") as f:
        return json.load(f)["files"]


def real_file(rel: str) -> Path:
    return REAL_DATA / rel


def sha256_of_values(values: Any) -> str:
    """sha256 as ground_truth.json computes it."""
    arr = np.asarray(values)
    if arr.dtype.kind == "S":  # fixed-width bytes (e.g. netCDF char) are hashed as raw bytes
        return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
    if arr.dtype.kind in "OUT":  # T: numpy's variable-width StringDType
        items = [
            x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr.ravel()
        ]
        return hashlib.sha256("\0".join(items).encode()).hexdigest()
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    if arr.dtype.names:
        h = hashlib.sha256()
        for name in arr.dtype.names:
            h.update(bytes.fromhex(sha256_of_values(arr[name])))
        return h.hexdigest()
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False))
    return hashlib.sha256(arr.tobytes()).hexdigest()


def assert_values_match(
    values: Any, stats: dict[str, Any], *, name: str = "", exact: bool = True
) -> None:
    """Assert ``values`` equal a ground-truth record: shape, sha256 (when ``exact``) and stats."""
    arr = np.asarray(values)
    if "shape" in stats:
        assert list(arr.shape) == list(stats["shape"]), (
            f"{name}: shape {arr.shape} != {stats['shape']}"
        )
    if exact and "sha256" in stats:
        assert sha256_of_values(arr) == stats["sha256"], (
            f"{name}: sha256 of values differs from ground truth"
        )
    if arr.dtype.kind in "iufb" and "sum" in stats and arr.size:
        flt = arr.astype(np.float64)
        finite = flt[np.isfinite(flt)]
        # ground truth's count is every value, NaN included (n_nan of them); +-inf are
        # counted but, like NaN, left out of sum/min/max
        n_not_nan = int(np.count_nonzero(~np.isnan(flt)))
        expected = stats.get("count", n_not_nan) - stats.get("n_nan", 0)
        assert n_not_nan == expected, f"{name}: {n_not_nan} non-NaN values, expected {expected}"
        if finite.size:
            np.testing.assert_allclose(finite.sum(), stats["sum"], rtol=1e-6, err_msg=name)
            np.testing.assert_allclose(finite.min(), stats["min"], rtol=1e-7, err_msg=name)
            np.testing.assert_allclose(finite.max(), stats["max"], rtol=1e-7, err_msg=name)
