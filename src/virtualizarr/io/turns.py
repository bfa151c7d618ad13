"""Turns at parsing local files: one thread at a time, as the GIL serialises Python anyway.

Parsing a file from a local disk is pure Python apart from a few ``pread`` calls, each of
which releases the GIL. Threads parsing at once then hand the GIL to one another at every
read, each handoff waking a thread on another CPU with cold caches: 8 parses of 12.9 MB
netCDF-4 files on 4 threads took 1.2-1.3x the serial time (``benchmarks/hdf5_reader.py
--threads 4``), for no gain, since only one thread runs Python at a time.

:func:`parse_turn` makes such parses take turns: the others wait on a plain lock (without
asking for the GIL), so the holder runs without handoffs and threads cost what serial
costs. Only files on local file systems take turns (ext4, xfs, btrfs, tmpfs, ..., read
from ``/proc/self/mountinfo``): on NFS, Lustre, GPFS or FUSE mounts a read waits on the
network, and threads overlap those waits. Remote sources never take turns, and neither
does a free-threaded Python (no GIL to share).

>>> with parse_turn(None):  # not a local source: no turn
...     pass
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["LOCAL_FILE_SYSTEMS", "on_local_disk", "parse_turn"]

LOCAL_FILE_SYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "overlay", "zfs", "f2fs", "bcachefs"}
)
"""File system types whose reads come from this machine's page cache or disks."""

_LOCK = threading.Lock()
_STATE = threading.local()  # .held: this thread is inside a parse_turn


def _after_fork_in_child() -> None:
    # a child forked while another thread parsed would inherit the lock held for ever
    global _LOCK
    _LOCK = threading.Lock()
    _STATE.held = False


os.register_at_fork(after_in_child=_after_fork_in_child)


@functools.lru_cache(maxsize=64)
def on_local_disk(device: int) -> bool:
    """Whether files of ``device`` (``st_dev``) live on a local file system; False where
    that cannot be told (no ``/proc``: not Linux).

    >>> on_local_disk(-1)
    False
    """
    if device < 0:
        return False
    key = f"{os.major(device)}:{os.minor(device)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                # "id parent major:minor root mountpoint options... - fstype source ..."
                if len(fields) > 3 and fields[2] == key and " - " in line:
                    fstype = line.split(" - ", 1)[1].split(maxsplit=1)[0]
                    return fstype in LOCAL_FILE_SYSTEMS
    except OSError:
        pass
    return False


def _gil_enabled() -> bool:
    check = getattr(sys, "_is_gil_enabled", None)
    return True if check is None else bool(check())


@contextmanager
def parse_turn(source: Any) -> Iterator[None]:
    """Hold the local-parse turn while the body parses ``source`` (see the module
    docstring); a no-op when nested in a thread's turn and for other sources."""
    from virtualizarr.io.local import LocalSource

    if (
        not isinstance(source, LocalSource)
        or getattr(_STATE, "held", False)  # nested: this thread's outer parse holds it
        or not on_local_disk(source.device)
        or not _gil_enabled()
    ):
        yield
        return
    with _LOCK:
        _STATE.held = True
        try:
            yield
        finally:
            _STATE.held = False
