"""Bob Jenkins' lookup3 hash (``hashlittle``, initial value 0): HDF5's metadata checksum.

Version 2 B-tree nodes, fixed and extensible array blocks (and other version-2 metadata)
end with this checksum of their bytes. The hash runs through a block's 12-byte words one
after the other, so it is vectorised across blocks instead: :func:`lookup3_rows` hashes
many equally long byte strings at once, one numpy operation per step for all of them.

Still, hashing in Python costs about a microsecond per byte: when h5py is loaded (it is
installed with VirtualiZarr), the same function of the HDF5 library h5py links
(``H5_checksum_lookup3``, a pure function) is called through ctypes instead, after a check
that it gives the known values; without it, the numpy/Python code above is used.

>>> hex(lookup3(b""))
'0xdeadbeef'
>>> hex(lookup3(b"Four score and seven years ago"))
'0x17770551'
"""

from __future__ import annotations

import struct as _struct
import sys
import threading
from collections.abc import Callable

import numpy as np

__all__ = ["lookup3", "lookup3_rows", "verify_checksums"]

_M = 0xFFFFFFFF
_NATIVE_MIN_BYTES = 256
"""Blocks at least this long are hashed by HDF5's function when it is available."""
_native_fn: Callable[[bytes, int, int], int] | None = None
_native_tried = False
_native_lock = threading.Lock()


def _native() -> Callable[[bytes, int, int], int] | None:
    """HDF5's ``H5_checksum_lookup3(key, length, initval)`` through ctypes, or None.

    Looked up through h5py's extension module (which links the HDF5 library, bundled or
    the system's), and only if h5py is already imported (importing it costs more than
    hashing a few blocks). Accepted only if it returns the hash's known values.
    """
    global _native_fn, _native_tried
    if _native_tried:
        return _native_fn
    h5 = sys.modules.get("h5py.h5")
    if h5 is None:
        return None
    with _native_lock:
        if not _native_tried:
            try:
                import ctypes

                fn = ctypes.CDLL(h5.__file__)["H5_checksum_lookup3"]
                fn.restype = ctypes.c_uint32
                fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32]
                probe = b"Four score and seven years ago"
                if fn(probe, len(probe), 0) == 0x17770551 and fn(b"", 0, 0) == 0xDEADBEEF:
                    _native_fn = fn
            except (OSError, AttributeError, ImportError):
                _native_fn = None
            _native_tried = True
    return _native_fn


_SHIFTS = {k: (np.uint32(k), np.uint32(32 - k)) for k in (4, 6, 8, 11, 14, 16, 19, 24, 25)}


def lookup3_rows(rows: np.ndarray) -> np.ndarray:
    """The lookup3 hash of every row of ``rows`` (``(m, length)`` uint8), as uint32."""
    rows = np.asarray(rows, dtype=np.uint8)
    m, length = rows.shape
    init = np.uint32((0xDEADBEEF + length) & 0xFFFFFFFF)
    a = np.full(m, init, np.uint32)
    b = a.copy()
    c = a.copy()
    if length == 0:
        return c
    nblocks = -(-length // 12)
    padded = np.zeros((m, nblocks * 12), np.uint8)
    padded[:, :length] = rows
    # (block, word, row): each step reads one contiguous row of m words
    words = np.ascontiguousarray(padded.view("<u4").reshape(m, nblocks, 3).transpose(1, 2, 0))
    words = words.astype(np.uint32, copy=False)
    t = np.empty(m, np.uint32)
    u = np.empty(m, np.uint32)
    lsh, rsh, bor = np.left_shift, np.right_shift, np.bitwise_or

    def rot(x: np.ndarray, k: int) -> np.ndarray:  # in the scratch arrays: no allocation
        left, right = _SHIFTS[k]
        lsh(x, left, out=t)
        rsh(x, right, out=u)
        return bor(t, u, out=t)

    # every block but the last goes through mix(); the last (1-12 bytes, zero padded, which
    # adds nothing) through final()
    for i in range(nblocks - 1):
        w = words[i]
        a += w[0]
        b += w[1]
        c += w[2]
        a -= c
        a ^= rot(c, 4)
        c += b
        b -= a
        b ^= rot(a, 6)
        a += c
        c -= b
        c ^= rot(b, 8)
        b += a
        a -= c
        a ^= rot(c, 16)
        c += b
        b -= a
        b ^= rot(a, 19)
        a += c
        c -= b
        c ^= rot(b, 4)
        b += a
    w = words[-1]
    a += w[0]
    b += w[1]
    c += w[2]
    c ^= b
    c -= rot(b, 14)
    a ^= c
    a -= rot(c, 11)
    b ^= a
    b -= rot(a, 25)
    c ^= b
    c -= rot(b, 16)
    a ^= c
    a -= rot(c, 4)
    b ^= a
    b -= rot(a, 14)
    c ^= b
    c -= rot(b, 24)
    return c


def lookup3(data: bytes) -> int:
    """The lookup3 hash of one byte string (HDF5's function for long ones, when loaded)."""
    length = len(data)
    if length >= _NATIVE_MIN_BYTES and (fn := _native()) is not None:
        return int(fn(bytes(data), length, 0))
    return _lookup3_python(data)


def _lookup3_python(data: bytes) -> int:
    """The lookup3 hash in plain Python integers (one block is sequential)."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length) & _M
    if length == 0:
        return c
    nblocks = -(-length // 12)
    words = _struct.unpack(f"<{3 * nblocks}I", bytes(data) + bytes(nblocks * 12 - length))
    for i in range(0, 3 * (nblocks - 1), 3):
        a = (a + words[i]) & _M
        b = (b + words[i + 1]) & _M
        c = (c + words[i + 2]) & _M
        a = (a - c) & _M
        a ^= ((c << 4) | (c >> 28)) & _M
        c = (c + b) & _M
        b = (b - a) & _M
        b ^= ((a << 6) | (a >> 26)) & _M
        a = (a + c) & _M
        c = (c - b) & _M
        c ^= ((b << 8) | (b >> 24)) & _M
        b = (b + a) & _M
        a = (a - c) & _M
        a ^= ((c << 16) | (c >> 16)) & _M
        c = (c + b) & _M
        b = (b - a) & _M
        b ^= ((a << 19) | (a >> 13)) & _M
        a = (a + c) & _M
        c = (c - b) & _M
        c ^= ((b << 4) | (b >> 28)) & _M
        b = (b + a) & _M
    a = (a + words[-3]) & _M
    b = (b + words[-2]) & _M
    c = (c + words[-1]) & _M
    c ^= b
    c = (c - (((b << 14) | (b >> 18)) & _M)) & _M
    a ^= c
    a = (a - (((c << 11) | (c >> 21)) & _M)) & _M
    b ^= a
    b = (b - (((a << 25) | (a >> 7)) & _M)) & _M
    c ^= b
    c = (c - (((b << 16) | (b >> 16)) & _M)) & _M
    a ^= c
    a = (a - (((c << 4) | (c >> 28)) & _M)) & _M
    b ^= a
    b = (b - (((a << 14) | (a >> 18)) & _M)) & _M
    c ^= b
    c = (c - (((b << 24) | (b >> 8)) & _M)) & _M
    return c


def verify_checksums(blocks: list[bytes] | list[memoryview], stored: np.ndarray) -> np.ndarray:
    """Boolean array: does the hash of ``blocks[i]`` equal ``stored[i]``?

    Blocks are grouped by length and each group hashed in one vectorised pass.
    """
    ok = np.ones(len(blocks), bool)
    fn = _native()
    if fn is not None:
        for i, (block, want) in enumerate(zip(blocks, np.asarray(stored).tolist())):
            data = bytes(block)
            ok[i] = fn(data, len(data), 0) == want
        return ok
    lengths = np.fromiter((len(b) for b in blocks), np.int64, count=len(blocks))
    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        if len(idx) <= 4:  # too few to pay for numpy's per-call cost
            for j in idx:  # numpy integers (``i`` above is an int)
                ok[j] = _lookup3_python(bytes(blocks[j])) == int(stored[j])
            continue
        rows = np.frombuffer(b"".join(bytes(blocks[i]) for i in idx), np.uint8)
        hashes = lookup3_rows(rows.reshape(len(idx), int(length)))
        ok[idx] = hashes == np.asarray(stored, np.uint32)[idx]
    return ok
