"""An xarray chunk manager for ManifestArray, so that xarray's compute paths explain themselves.

xarray treats any duck array with ``.chunks`` as a chunked array and asks a registered
chunk manager to compute it (``ds.load()``, ``compat="equals"`` while combining...).
Without one it fails with "Could not find a Chunk Manager"; this one instead says that
virtual variables have no values and what to do about it.
"""

from __future__ import annotations

from typing import Any, NoReturn

from xarray.namedarray.parallelcompat import ChunkManagerEntrypoint

from virtualizarr.errors import NEEDS_VALUES_HINT, NeedsValuesError
from virtualizarr.manifests.array import ManifestArray

__all__ = ["ManifestChunkManager"]

_COMBINE_HINT = (
    "If xarray asked for them while combining datasets, pass compat='override', "
    "coords='minimal' and data_vars='minimal' (the defaults of open_virtual_mfdataset)."
)


# ManifestArray is not one of xarray's chunked arrays (no rechunk/compute: it has no values);
# this manager exists so that xarray's compute paths raise an error that explains why.
class ManifestChunkManager(ChunkManagerEntrypoint[Any]):
    """Registered under the ``xarray.chunkmanagers`` entry point ``virtualizarr``."""

    available = True

    def __init__(self) -> None:
        self.array_cls = ManifestArray

    def is_chunked_array(self, data: Any) -> bool:
        return isinstance(data, ManifestArray)

    def chunks(self, data: ManifestArray) -> tuple[tuple[int, ...], ...]:
        out = []
        for size, c in zip(data.shape, data.chunks):
            full, rest = divmod(size, c) if c else (0, 0)
            out.append((c,) * full + ((rest,) if rest else ()))
        return tuple(out)

    def normalize_chunks(
        self,
        chunks: Any,
        shape: Any = None,
        limit: Any = None,
        dtype: Any = None,
        previous_chunks: Any = None,
    ) -> Any:
        raise NeedsValuesError(
            f"Virtual arrays cannot be rechunked: their chunks are the file's. {NEEDS_VALUES_HINT}"
        )

    def from_array(self, data: Any, chunks: Any, **kwargs: Any) -> ManifestArray:
        raise NeedsValuesError(
            "In-memory data cannot become a virtual array; use dask to chunk it (ds.chunk() with dask installed)."
        )

    def compute(self, *data: Any, **kwargs: Any) -> NoReturn:
        raise NeedsValuesError(
            f"This needs the values of a virtual variable. {_COMBINE_HINT} {NEEDS_VALUES_HINT}"
        )

    def apply_gufunc(self, func: Any, signature: str, *args: Any, **kwargs: Any) -> Any:
        raise NeedsValuesError(
            f"Computing on a virtual variable needs its values. {NEEDS_VALUES_HINT}"
        )
