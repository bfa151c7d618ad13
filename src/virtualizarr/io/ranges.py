"""Grouping byte ranges into few requests (vectorised with numpy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["coalesce"]


def coalesce(
    starts: Sequence[int] | np.ndarray, lengths: Sequence[int] | np.ndarray, gap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge ranges whose distance is at most ``gap`` bytes: ``(group_starts, group_ends, group_of)``.

    ``group_of[i]`` is the group holding range ``i``; a range lies inside its group,
    at ``starts[i] - group_starts[group_of[i]]``. Overlapping and duplicate ranges share
    a group, so each byte is requested once.

    >>> gs, ge, of = coalesce([0, 100, 5000], [10, 10, 10], gap=1000)
    >>> gs.tolist(), ge.tolist(), of.tolist()
    ([0, 5000], [110, 5010], [0, 0, 1])
    """
    s = np.asarray(starts, dtype=np.int64)
    e = s + np.asarray(lengths, dtype=np.int64)
    if s.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    order = np.argsort(s, kind="stable")
    ss, ee = s[order], e[order]
    reach = np.maximum.accumulate(ee)  # the furthest byte covered by ranges so far
    new = np.empty(ss.size, dtype=bool)
    new[0] = True
    new[1:] = ss[1:] > reach[:-1] + gap
    firsts = np.flatnonzero(new)
    group_sorted = np.cumsum(new) - 1
    group_of = np.empty_like(group_sorted)
    group_of[order] = group_sorted
    return ss[firsts], np.maximum.reduceat(ee, firsts), group_of
