"""Openers for the FITS and TIFF fuzz tests (run in the harness's child process).

``parse_and_read`` parses a mutant with one parser, checks that every reference lies inside
the file, and reads every array's values through zarr. A read that fails with a named
error (``ChunkReadError``...) is an expected outcome of a corrupt chunk; an exception of
another type raised inside VirtualiZarr's own code is ``BAD``; one raised by a third-party
codec (numcodecs' zlib, imagecodecs) is reported in the note as ``foreign-read-error``.
"""

from __future__ import annotations

import os
import traceback
import warnings
from typing import Any

__all__ = ["parse_and_read"]

_MAX_READ = 64 << 20  # do not decode arrays larger than this (a bound, not a check)


def _ours(e: BaseException) -> bool:
    """Whether the innermost frame of ``e`` is VirtualiZarr's code (not a library's)."""
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and f"{os.sep}virtualizarr{os.sep}" in frames[-1].filename


def parse_and_read(path: str, parser: str | None = None, read: bool = True) -> str:
    import numpy as np
    import zarr

    from virtualizarr import parsers
    from virtualizarr.errors import VirtualiZarrError
    from virtualizarr.registry import ObjectStoreRegistry

    size = os.path.getsize(path) if os.path.isfile(path) else -1
    url = "file://" + path if path.startswith("/") else path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = getattr(parsers, parser or "FITSParser")()(url, ObjectStoreRegistry())
        nodes: list[tuple[str, Any]] = []
        for node_path, node in store.group.walk():
            for name, arr in getattr(node, "arrays", {}).items():
                nodes.append((f"{node_path}/{name}".strip("/"), arr))
        for name, arr in nodes:
            m = arr.manifest
            in_file = ~m.missing & ~m.inlined  # inlined chunks carry their bytes
            if size >= 0 and in_file.any():
                ends = m.offsets[in_file].astype(object) + m.lengths[in_file].astype(object)
                if max(ends) > size:
                    return (
                        f"BAD:{name}: a reference ends at {max(ends)}, past the file's {size} bytes"
                    )
        if not read:
            return f"{len(nodes)} arrays"
        errors: list[str] = []
        group = zarr.open_group(store, mode="r", zarr_format=3)
        for name, arr in nodes:
            if arr.metadata.dtype.to_native_dtype().itemsize * int(np.prod(arr.shape)) > _MAX_READ:
                continue
            try:
                np.asarray(group[name][...])
            except VirtualiZarrError as e:
                errors.append(type(e).__name__)
            except Exception as e:
                if _ours(e):
                    raise
                errors.append(f"foreign-read-error {type(e).__name__}")
    return f"{len(nodes)} arrays" + (f"; read: {', '.join(sorted(set(errors)))}" if errors else "")
