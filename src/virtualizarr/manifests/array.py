"""ManifestArray: a duck array of chunk references that xarray can wrap."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin
from zarr.core.metadata.v3 import ArrayV3Metadata

from virtualizarr.errors import NEEDS_VALUES_HINT, InvalidManifestError, NeedsValuesError
from virtualizarr.manifests.array_api import HANDLED_FUNCTIONS, metadata_mismatch, transpose
from virtualizarr.manifests.indexing import getitem
from virtualizarr.manifests.manifest import ChunkManifest
from virtualizarr.manifests.metadata import chunk_grid_shape, chunk_shape_of, metadata_from_dict

__all__ = ["ManifestArray"]


class ManifestArray(NDArrayOperatorsMixin):
    """A virtual array: Zarr v3 metadata plus a :class:`ChunkManifest`.

    It behaves like a numpy array for everything that only moves chunks around
    (``np.concatenate``, ``np.stack``, ``np.expand_dims``, ``np.broadcast_to``,
    chunk-aligned indexing), which is all xarray needs to concatenate and merge
    virtual datasets. Anything that needs values raises :class:`NeedsValuesError`
    (arithmetic operators included: they are routed through ``__array_ufunc__``).

    >>> from virtualizarr.manifests.metadata import create_v3_array_metadata
    >>> meta = create_v3_array_metadata(shape=(4,), data_type="<f4", chunk_shape=(2,))
    >>> m = ChunkManifest({"0": {"path": "s3://b/a", "offset": 0, "length": 8},
    ...                    "1": {"path": "s3://b/a", "offset": 8, "length": 8}})
    >>> a = ManifestArray(meta, m)
    >>> np.concatenate([a, a]).shape
    (8,)
    """

    __slots__ = ("_manifest", "_metadata")

    def __init__(
        self,
        metadata: ArrayV3Metadata | dict[str, Any],
        chunkmanifest: ChunkManifest | dict[str, Any],
    ) -> None:
        if isinstance(metadata, dict):
            metadata = ArrayV3Metadata.from_dict(metadata)
        if not isinstance(metadata, ArrayV3Metadata):
            raise TypeError(f"expected ArrayV3Metadata or dict, got {type(metadata).__name__}")
        grid = chunk_grid_shape(metadata.shape, chunk_shape_of(metadata))
        if isinstance(chunkmanifest, dict):
            chunkmanifest = ChunkManifest(chunkmanifest, shape=grid)
        if not isinstance(chunkmanifest, ChunkManifest):
            raise TypeError(f"expected ChunkManifest or dict, got {type(chunkmanifest).__name__}")
        if chunkmanifest.shape_chunk_grid != grid:
            raise InvalidManifestError(
                f"Manifest grid {chunkmanifest.shape_chunk_grid} does not match the chunk grid "
                f"{grid} of an array of shape {metadata.shape} with chunks {chunk_shape_of(metadata)}."
            )
        self._metadata = metadata
        self._manifest = chunkmanifest

    def with_equal_manifest(self, manifest: ChunkManifest) -> ManifestArray:
        """This array with ``manifest``, which must equal its own (the same grids, table
        entries equal: a path now carrying its source record); not validated again.

        >>> # arr.with_equal_manifest(arr.manifest.with_table(tagged_paths))
        """
        if manifest.shape_chunk_grid != self._manifest.shape_chunk_grid:
            raise ValueError("with_equal_manifest needs a manifest of the same chunk grid")
        out = object.__new__(type(self))
        out._metadata, out._manifest = self._metadata, manifest
        return out

    # -- attributes --------------------------------------------------------------------------

    @property
    def metadata(self) -> ArrayV3Metadata:
        return self._metadata

    @property
    def manifest(self) -> ChunkManifest:
        return self._manifest

    @property
    def shape(self) -> tuple[int, ...]:
        # zarr parses the shape into a tuple of ints already; xarray asks for it thousands
        # of times while combining
        return self._metadata.shape

    @property
    def chunks(self) -> tuple[int, ...]:
        return chunk_shape_of(self._metadata)

    @property
    def dtype(self) -> np.dtype:
        return self._metadata.dtype.to_native_dtype()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Size of the values this array stands for (like numpy); see ``nbytes_virtual``."""
        return self.size * self.dtype.itemsize

    @property
    def nbytes_virtual(self) -> int:
        """Memory held by the references themselves."""
        return self._manifest.nbytes

    @property
    def fill_value(self) -> Any:
        return self._metadata.fill_value

    @property
    def codecs(self) -> tuple[Any, ...]:
        return tuple(self._metadata.codecs)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __repr__(self) -> str:
        codecs = [c.to_dict()["name"] for c in self.codecs]
        return (
            f"ManifestArray<shape={self.shape}, dtype={self.dtype}, chunks={self.chunks}, "
            f"codecs={codecs}, files={len(self._manifest.used_paths())}>"
        )

    def _repr_inline_(self, max_width: int) -> str:
        text = f"ManifestArray<chunks={self.chunks}, refs={len(self._manifest)}>"
        return text if len(text) <= max_width else text[: max_width - 3] + "..."

    # -- immutable: copies are free ----------------------------------------------------------

    def __copy__(self) -> ManifestArray:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ManifestArray:
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {"metadata": self._metadata.to_dict(), "manifest": self._manifest}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._metadata = metadata_from_dict(state["metadata"])
        self._manifest = state["manifest"]

    # -- numpy protocols ---------------------------------------------------------------------

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise NeedsValuesError(f"Cannot convert {self!r} to a numpy array. {NEEDS_VALUES_HINT}")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func not in HANDLED_FUNCTIONS:
            raise NeedsValuesError(
                f"np.{func.__name__} is not supported on virtual arrays: it would need the "
                f"values. {NEEDS_VALUES_HINT}"
            )
        return HANDLED_FUNCTIONS[func](*args, **kwargs)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if (
            ufunc is np.equal
            and method == "__call__"
            and len(inputs) == 2
            and all(isinstance(x, ManifestArray) for x in inputs)
        ):
            # Only between two virtual arrays: with a numpy operand, `==` would dispatch
            # straight back here and recurse forever.
            return inputs[0].__eq__(inputs[1])
        raise NeedsValuesError(
            f"np.{ufunc.__name__} needs the values of a virtual array. If xarray called it to "
            "compare variables while combining, pass compat='override' (and coords='minimal', "
            f"data_vars='minimal') so it does not. {NEEDS_VALUES_HINT}"
        )

    def __eq__(self, other: object) -> np.ndarray:  # type: ignore[override]
        """Element-wise: True where both arrays reference the same encoded bytes.

        Where the references differ the values may still be equal, which cannot be known
        without reading them, so that raises :class:`NeedsValuesError`.
        """
        if not isinstance(other, ManifestArray):
            raise NeedsValuesError(
                f"Comparing a virtual array with {type(other).__name__} needs its values. "
                f"{NEEDS_VALUES_HINT}"
            )
        if self.shape != other.shape:
            raise ValueError(f"shapes {self.shape} and {other.shape} differ")
        same = (
            metadata_mismatch(self, other, include_shape=False) is None
            and self._manifest.elementwise_eq(other._manifest).all()
        )
        if not same:
            raise NeedsValuesError(
                "These virtual arrays reference different bytes, so telling whether their values "
                "are equal needs the values. When combining, pass compat='override' (or load the "
                f"variable). {NEEDS_VALUES_HINT}"
            )
        return np.ones(self.shape, dtype=bool)

    __hash__ = None  # type: ignore[assignment]

    def astype(self, dtype: Any, /, *, copy: bool = True, **kwargs: Any) -> ManifestArray:
        if np.dtype(dtype) == self.dtype:
            return self
        raise NeedsValuesError(f"Casting {self!r} to {dtype} needs its values. {NEEDS_VALUES_HINT}")

    def transpose(self, *axes: Any) -> ManifestArray:
        return transpose(
            self, axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes or None
        )

    @property
    def T(self) -> ManifestArray:
        return self.transpose()

    def __getitem__(self, key: Any) -> ManifestArray:
        return getitem(self, key)

    def rename_paths(self, new: Any) -> ManifestArray:
        """A copy whose references point at other files (see ChunkManifest.rename_paths)."""
        return ManifestArray(self._metadata, self._manifest.rename_paths(new))
