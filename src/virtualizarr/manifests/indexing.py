"""Chunk-aligned indexing of ManifestArrays: slices on chunk boundaries, integers on
axes whose chunks hold one element, and ``None``/``...`` -- selections that keep whole
chunks, so the result is again a set of references."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from virtualizarr.errors import NEEDS_VALUES_HINT, NeedsValuesError
from virtualizarr.manifests.array_api import check_no_transpose, dimension_names
from virtualizarr.manifests.metadata import with_metadata

if TYPE_CHECKING:
    # array.py imports this module; the result is built with type(arr)(metadata, manifest)
    from virtualizarr.manifests.array import ManifestArray

__all__ = ["getitem"]


def _expand_key(key: Any, ndim: int) -> list[Any]:
    key = list(key) if isinstance(key, tuple) else [key]
    n_ellipsis = sum(k is Ellipsis for k in key)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_real = sum(k is not None and k is not Ellipsis for k in key)
    if n_real > ndim:
        raise IndexError(
            f"too many indices for array: array is {ndim}-dimensional, but {n_real} were indexed"
        )
    if n_ellipsis:
        i = key.index(Ellipsis)
        key[i : i + 1] = [slice(None)] * (ndim - n_real)
    else:
        key += [slice(None)] * (ndim - n_real)
    return key


def getitem(arr: ManifestArray, key: Any) -> ManifestArray:
    """Select whole chunks of ``arr``; anything else raises NeedsValuesError."""
    key = _expand_key(key, arr.ndim)
    shape: list[int] = []
    chunks: list[int] = []
    grid_key: list[int | slice | None] = []
    names = dimension_names(arr)
    new_names: list[str | None] = []
    changes_axes = False
    axis = 0
    for k in key:
        if k is None:
            shape.append(1)
            chunks.append(1)
            grid_key.append(None)
            new_names.append(None)
            changes_axes = True
            continue
        n, c = arr.shape[axis], arr.chunks[axis]
        name = names[axis] if names is not None else None
        if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}")
            if c != 1:
                raise NeedsValuesError(
                    f"Cannot take index {k} on axis {axis} of a virtual array whose chunks there "
                    f"have length {c}: only whole chunks can be selected. {NEEDS_VALUES_HINT}"
                )
            grid_key.append(i)
            changes_axes = True
        elif isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step != 1:
                raise NeedsValuesError(
                    f"Cannot take a slice with step {step} of a virtual array. {NEEDS_VALUES_HINT}"
                )
            stop = max(stop, start)
            if stop == start:  # an empty selection holds no chunks, aligned or not
                start = stop = 0
            elif start % c or (stop % c and stop != n):
                raise NeedsValuesError(
                    f"Slice {start}:{stop} on axis {axis} does not fall on chunk boundaries "
                    f"(chunk length {c}); only whole chunks of a virtual array can be selected. "
                    f"{NEEDS_VALUES_HINT}"
                )
            shape.append(stop - start)
            chunks.append(c)
            grid_key.append(slice(start // c, math.ceil(stop / c)))
            new_names.append(name)
        else:
            raise NeedsValuesError(
                f"Cannot index a virtual array with {type(k).__name__}; only chunk-aligned slices, "
                f"integers and None are supported. {NEEDS_VALUES_HINT}"
            )
        axis += 1
    if changes_axes:
        check_no_transpose(arr, "add or drop axes of")
    meta = with_metadata(
        arr.metadata,
        shape=tuple(shape),
        chunk_shape=chunks,
        dimension_names=None if names is None else new_names,
    )
    return type(arr)(meta, arr.manifest[tuple(grid_key)])
