"""Bob Jenkins' lookup3 hash (``hashlittle``, initial value 0): HDF5's metadata checksum.

Version 2 B-tree nodes, fixed and extensible array blocks, version-2 object headers and
superblocks end with this checksum of their bytes. The hash runs through a block's 12-byte
words one after the other, so it cannot be vectorised within a block; numcodecs (a
dependency of zarr) ships it compiled (``numcodecs.jenkins``, the function its
``JenkinsLookup3`` checksum codec uses), about 100x faster than Python integers, so every
block is hashed there.

>>> hex(lookup3(b""))
'0xdeadbeef'
>>> hex(lookup3(b"Four score and seven years ago"))
'0x17770551'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numcodecs.jenkins import jenkins_lookup3

__all__ = ["lookup3", "verify_checksums"]


def lookup3(data: bytes | memoryview) -> int:
    """The lookup3 hash of one byte string."""
    return int(jenkins_lookup3(data if isinstance(data, bytes) else bytes(data), 0))


def verify_checksums(blocks: Sequence[bytes | memoryview], stored: np.ndarray) -> np.ndarray:
    """Boolean array: does the hash of ``blocks[i]`` equal ``stored[i]``?

    >>> verify_checksums([b"", b"x"], np.array([0xDEADBEEF, 0], np.uint32)).tolist()
    [True, False]
    """
    want = np.asarray(stored, np.uint32).tolist()
    return np.fromiter(
        (lookup3(block) == w for block, w in zip(blocks, want)), bool, count=len(blocks)
    )
