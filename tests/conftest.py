from __future__ import annotations

import pytest

from virtualizarr.testing.ground_truth import REAL_DATA, ground_truth

HAVE_REAL_DATA = (REAL_DATA / "ground_truth.json").exists()

requires_real_data = pytest.mark.skipif(
    not HAVE_REAL_DATA, reason=f"real sample data not found at {REAL_DATA} (only CI and developers have ../shared)"
)


def real_files(subdir: str, suffixes: tuple[str, ...] = ()) -> list[str]:
    """Relative paths (as keys of ground_truth) of the real files in ``subdir``; [] without data."""
    if not HAVE_REAL_DATA:
        return []
    return sorted(k for k in ground_truth() if k.startswith(subdir + "/") and (not suffixes or k.endswith(suffixes)))


@pytest.fixture
def gt() -> dict:
    if not HAVE_REAL_DATA:
        pytest.skip("real sample data not available")
    return ground_truth()
