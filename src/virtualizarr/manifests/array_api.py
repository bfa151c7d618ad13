"""The numpy functions a ManifestArray supports: those that only move chunks around.

Each one checks that the result can be expressed without touching the bytes, and
otherwise raises an error that names the property and both values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.codecs import TransposeCodec

from virtualizarr.errors import ManifestConcatError, NeedsValuesError
from virtualizarr.manifests.manifest import ChunkManifest, concatenate_manifests
from virtualizarr.manifests.metadata import cf_encoding_mismatch, fill_values_equal, with_metadata

if TYPE_CHECKING:
    # array.py imports this module (it dispatches to it), so the class is only named here;
    # results are built with type(x)(metadata, manifest) from an input array.
    from virtualizarr.manifests.array import ManifestArray

__all__ = [
    "HANDLED_FUNCTIONS",
    "check_no_transpose",
    "dimension_names",
    "is_virtual",
    "metadata_mismatch",
]

HANDLED_FUNCTIONS: dict[Callable[..., Any], Callable[..., Any]] = {}


def implements(func: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(impl: Callable[..., Any]) -> Callable[..., Any]:
        HANDLED_FUNCTIONS[func] = impl
        return impl

    return register


def is_virtual(x: object) -> bool:
    """Whether ``x`` is a virtual array (it carries a :class:`ChunkManifest`)."""
    return isinstance(getattr(x, "manifest", None), ChunkManifest)


def _codec_names(codecs: Sequence[Any]) -> list[Any]:
    return [c.to_dict() for c in codecs]


def metadata_mismatch(
    a: ManifestArray, b: ManifestArray, *, include_shape: bool = True
) -> tuple[str, Any, Any] | None:
    """The first property that differs between two arrays' metadata, with both values."""
    if a.dtype != b.dtype:
        return "dtype", a.dtype, b.dtype
    if a.chunks != b.chunks:
        return "chunk shape", a.chunks, b.chunks
    if tuple(a.codecs) != tuple(b.codecs):
        return "codecs", _codec_names(a.codecs), _codec_names(b.codecs)
    if not fill_values_equal(a.fill_value, b.fill_value):
        return "fill value", a.fill_value, b.fill_value
    if include_shape and a.shape != b.shape:
        return "shape", a.shape, b.shape
    return None


def _check_all(arrays: Sequence[Any], op: str, *, skip_axis: int | None) -> list[ManifestArray]:
    arrays = list(arrays)
    if not arrays:
        raise ValueError(f"need at least one array to {op}")
    for i, arr in enumerate(arrays):
        if not is_virtual(arr):
            raise NeedsValuesError(
                f"Cannot {op} a virtual array with a {type(arr).__name__} (input {i}): the result "
                "would mix references with values. Load the virtual variable, or make both virtual."
            )
    first = arrays[0]
    for i, arr in enumerate(arrays[1:], start=1):
        if arr.ndim != first.ndim:
            raise ManifestConcatError(
                f"Cannot {op} virtual arrays: number of dimensions differs: {first.ndim} (input 0) "
                f"vs {arr.ndim} (input {i})."
            )
        bad = metadata_mismatch(first, arr, include_shape=False)
        cf = cf_encoding_mismatch(first.metadata.attributes, arr.metadata.attributes)
        if bad is None and cf is not None:
            bad = (f"CF attribute {cf[0]!r}", cf[1], cf[2])
        if bad is not None:
            prop, x, y = bad
            raise ManifestConcatError(
                f"Cannot {op} virtual arrays: {prop} differs: {x!r} (input 0) vs {y!r} (input {i}). "
                "Virtual arrays can only be joined when their chunks decode the same way."
            )
        for ax, (s0, s1) in enumerate(zip(first.shape, arr.shape)):
            if ax != skip_axis and s0 != s1:
                raise ManifestConcatError(
                    f"Cannot {op} virtual arrays: shape differs on axis {ax}: {first.shape} "
                    f"(input 0) vs {arr.shape} (input {i})."
                )
    return arrays


def _norm_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim


@implements(np.concatenate)
def concatenate(
    arrays: Sequence[ManifestArray], /, axis: int | None = 0, **kwargs: Any
) -> ManifestArray:
    if axis is None:
        raise NeedsValuesError("np.concatenate(axis=None) flattens, which needs the values.")
    if kwargs.get("out") is not None or kwargs.get("dtype") is not None:
        raise NeedsValuesError("np.concatenate with out= or dtype= needs the values.")
    arrays = _check_all(
        arrays, "concatenate", skip_axis=None if not arrays else _norm_axis(axis, arrays[0].ndim)
    )
    if arrays[0].ndim == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = _norm_axis(axis, arrays[0].ndim)
    chunk = arrays[0].chunks[axis]
    for i, arr in enumerate(arrays[:-1]):
        if arr.shape[axis] % chunk:
            raise ManifestConcatError(
                f"Cannot concatenate virtual arrays along axis {axis}: input {i} has length "
                f"{arr.shape[axis]}, not a multiple of the chunk length {chunk}, so its last chunk "
                "is partial and would sit in the middle of the result. Only the last input may end "
                "in a partial chunk."
            )
    new_shape = list(arrays[0].shape)
    new_shape[axis] = sum(a.shape[axis] for a in arrays)
    manifest = concatenate_manifests([a.manifest for a in arrays], axis=axis)
    return type(arrays[0])(with_metadata(arrays[0].metadata, shape=tuple(new_shape)), manifest)


@implements(np.stack)
def stack(arrays: Sequence[ManifestArray], /, axis: int = 0, **kwargs: Any) -> ManifestArray:
    if kwargs.get("out") is not None:
        raise NeedsValuesError("np.stack with out= needs the values.")
    arrays = _check_all(arrays, "stack", skip_axis=None)
    axis = _norm_axis(axis, arrays[0].ndim + 1)
    expanded = [expand_dims(a, axis) for a in arrays]
    return concatenate(expanded, axis=axis) if len(expanded) > 1 else expanded[0]


def dimension_names(arr: ManifestArray) -> list[str | None] | None:
    names = arr.metadata.dimension_names
    return None if names is None else list(names)


def check_no_transpose(arr: ManifestArray, op: str) -> None:
    if any(isinstance(c, TransposeCodec) for c in arr.codecs):
        raise NeedsValuesError(
            f"Cannot {op} a virtual array whose codecs include a transpose: the axes of its "
            "stored chunks would no longer line up. Load the variable instead."
        )


@implements(np.expand_dims)
def expand_dims(x: ManifestArray, /, axis: int | Sequence[int] = 0) -> ManifestArray:
    axes = [axis] if isinstance(axis, int) else list(axis)
    normalized = sorted(_norm_axis(a, x.ndim + len(axes)) for a in axes)
    if len(set(normalized)) != len(normalized):
        raise ValueError("repeated axis")  # as numpy says (it would otherwise add both)
    out = x
    for ax in normalized:
        check_no_transpose(out, "add an axis to")
        shape = list(out.shape)
        chunks = list(out.chunks)
        shape.insert(ax, 1)
        chunks.insert(ax, 1)
        names = dimension_names(out)
        if names is not None:
            names.insert(ax, None)
        meta = with_metadata(
            out.metadata, shape=tuple(shape), chunk_shape=chunks, dimension_names=names
        )
        out = type(x)(meta, out.manifest.expand_dims(ax))
    return out


@implements(np.broadcast_to)
def broadcast_to(x: ManifestArray, /, shape: tuple[int, ...], **kwargs: Any) -> ManifestArray:
    shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    if len(shape) < x.ndim:
        raise ValueError(f"cannot broadcast an array of shape {x.shape} to {shape}")
    if shape == x.shape:
        return x
    n_new = len(shape) - x.ndim
    out = expand_dims(x, list(range(n_new))) if n_new else x
    grid = list(out.manifest.shape_chunk_grid)
    chunks = list(out.chunks)
    for ax, (old, new) in enumerate(zip(out.shape, shape)):
        if old == new:
            continue
        if old != 1:
            raise ValueError(f"cannot broadcast an array of shape {x.shape} to {shape}")
        if chunks[ax] != 1:
            raise ManifestConcatError(
                f"Cannot broadcast a virtual array along axis {ax}: its chunk length there is "
                f"{chunks[ax]}, and only a chunk of length 1 can be repeated without new bytes."
            )
        grid[ax] = new
    meta = with_metadata(out.metadata, shape=shape, chunk_shape=chunks)
    return type(x)(meta, out.manifest.broadcast_to(tuple(grid)))


@implements(np.result_type)
def result_type(*arrays_and_dtypes: Any) -> np.dtype:
    return np.result_type(*(a.dtype if is_virtual(a) else a for a in arrays_and_dtypes))


@implements(np.transpose)
def transpose(x: ManifestArray, /, axes: Sequence[int] | None = None) -> ManifestArray:
    """Permute axes by adding (or folding into) a leading ``transpose`` codec."""
    perm = list(range(x.ndim))[::-1] if axes is None else [_norm_axis(a, x.ndim) for a in axes]
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"axes {axes} are not a permutation of {x.ndim} axes")
    if perm == list(range(x.ndim)):
        return x
    codecs = list(x.codecs)
    # Encoding the result must give back x's layout: result.transpose(argsort(perm)) == x.
    order = [int(i) for i in np.argsort(perm)]
    if codecs and isinstance(codecs[0], TransposeCodec):
        prior = list(codecs.pop(0).order)
        order = [order[i] for i in prior]
    if order != list(range(x.ndim)):
        codecs.insert(0, TransposeCodec(order=order))
    names = dimension_names(x)
    meta = with_metadata(
        x.metadata,
        shape=tuple(x.shape[p] for p in perm),
        chunk_shape=[x.chunks[p] for p in perm],
        codecs=codecs,
        dimension_names=None if names is None else [names[p] for p in perm],
    )
    return type(x)(meta, x.manifest._map(lambda a: np.transpose(a, perm)))


@implements(np.shape)
def shape(x: ManifestArray) -> tuple[int, ...]:
    return x.shape


@implements(np.ndim)
def ndim(x: ManifestArray) -> int:
    return x.ndim


@implements(np.size)
def size(x: ManifestArray) -> int:
    return x.size
