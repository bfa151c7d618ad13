"""Codec pipelines that say which file and chunk failed when referenced bytes do not decode.

zarr decodes the bytes a :class:`~virtualizarr.store.ManifestStore` serves with the
array's codecs. When those bytes are corrupt (a damaged file, a wrong reference), a
standard codec raises ``zlib.error``, an imagecodecs error or a numpy ``ValueError``
that names neither the file nor the chunk. The pipelines here are zarr's own
(:class:`CheckedFusedCodecPipeline` is zarr's ``FusedCodecPipeline``,
:class:`CheckedBatchedCodecPipeline` its default ``BatchedCodecPipeline``) with one
``try`` around each chunk's decode: a failure of a chunk served by a ManifestStore is
raised again as :class:`~virtualizarr.errors.ChunkReadError` naming the source file, the
byte range, the array and the chunk key, the original exception chained as
``__cause__``. Errors that already name the file (the store's own: short reads, changed
sources) pass through unchanged, and so does everything read from other stores.

``ds.vz.open_data()`` and :func:`virtualizarr.verify.verify` use the fused one. zarr picks
an array's pipeline when the array is opened, so for ``xr.open_zarr`` a scoped setting
around the open is enough:

>>> # with virtualizarr.pipeline.checked():
>>> #     ds = xr.open_zarr(vds.vz.to_store(), consolidated=False, zarr_format=3)
>>> # ds["air"].values  # a corrupt chunk -> ChunkReadError: Chunk 'air/c/0/0/0' ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from zarr.core.chunk_utils import decode_and_scatter_chunk
from zarr.core.codec_pipeline import BatchedCodecPipeline, FusedCodecPipeline
from zarr.registry import register_pipeline

from virtualizarr.errors import ChunkReadError, SourceReadError

if TYPE_CHECKING:
    from zarr.abc.codec import GetResult
    from zarr.abc.store import ByteGetter
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import NDBuffer
    from zarr.core.indexing import SelectorTuple

    BatchItem = tuple[ByteGetter, ArraySpec, SelectorTuple, SelectorTuple, bool]

__all__ = [
    "BATCHED",
    "CheckedBatchedCodecPipeline",
    "CheckedFusedCodecPipeline",
    "FUSED",
    "checked",
    "chunk_error",
]

FUSED = "virtualizarr.pipeline.CheckedFusedCodecPipeline"
"""``codec_pipeline.path`` of :class:`CheckedFusedCodecPipeline` (zarr config)."""
BATCHED = "virtualizarr.pipeline.CheckedBatchedCodecPipeline"
"""``codec_pipeline.path`` of :class:`CheckedBatchedCodecPipeline` (zarr config)."""


def _manifest_store(store: Any) -> Any:
    """The ManifestStore behind ``store`` (through zarr's wrapper stores), or None."""
    from virtualizarr.store import ManifestStore

    for _ in range(8):  # wrappers of wrappers, bounded
        if isinstance(store, ManifestStore):
            return store
        store = getattr(store, "_store", None)
        if store is None:
            return None
    return None


def _name(e: BaseException) -> str:
    t = type(e)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def chunk_error(byte_getter: Any, error: Exception, codecs: Iterable[Any] = ()) -> Exception | None:
    """The :class:`ChunkReadError` to raise for ``error`` met reading ``byte_getter``'s chunk.

    ``None`` when the error should propagate as it is: the chunk is not served by a
    ManifestStore, or the error already names the chunk's file (the store's own errors).

    >>> # chunk_error(StorePath(store, "air/c/0/0/0"), zlib.error("invalid"))
    >>> # ChunkReadError("Chunk 'air/c/0/0/0' of array 'air' (bytes 1024-5120 of file:///a.nc) ...")
    """
    store = _manifest_store(getattr(byte_getter, "store", None))
    key = getattr(byte_getter, "path", None)
    if store is None or not isinstance(key, str):
        return None
    try:
        loc = store.locate(key)
    except ChunkReadError:  # an empty reference: locate's own error names it
        return None
    if loc is None:
        return None
    if loc.data is None:
        if isinstance(error, (ChunkReadError, SourceReadError)) and loc.url in str(error):
            return None
        where = f"bytes {loc.offset}-{loc.offset + loc.length} of {loc.url}"
    else:
        where = f"{len(loc.data)} bytes inlined in the references"
    found = store._find_chunk(key)
    array = found[0] if found is not None else key
    names = ", ".join(type(c).__name__ for c in codecs)
    with_codecs = f" with codecs [{names}]" if names else ""
    return ChunkReadError(
        f"Chunk {key!r} of array {array!r} ({where}) does not decode{with_codecs}: "
        f"{_name(error)}: {error}"
    )


async def _checked_async_read(
    read: Callable[[list[BatchItem], NDBuffer, tuple[int, ...]], Awaitable[tuple[GetResult, ...]]],
    batch: list[BatchItem],
    out: NDBuffer,
    drop_axes: tuple[int, ...],
    codecs: Iterable[Any],
) -> tuple[GetResult, ...]:
    """``read(batch)``; a failure is located by reading the batch's chunks one by one.

    zarr's async paths decode a batch codec by codec, so a failure does not say which
    chunk it came from. The default batch holds one chunk (``codec_pipeline.batch_size``);
    larger batches pay the chunk-by-chunk read only after a failure.
    """
    try:
        return await read(batch, out, drop_axes)
    except Exception as e:
        if len(batch) == 1:
            err = chunk_error(batch[0][0], e, codecs)
            if err is None:
                raise
            raise err from e
        for item in batch:
            try:
                await read([item], out, drop_axes)
            except Exception as e1:
                err = chunk_error(item[0], e1, codecs)
                if err is None:
                    raise
                raise err from e1
        raise


class CheckedFusedCodecPipeline(FusedCodecPipeline):
    """zarr's ``FusedCodecPipeline`` whose per-chunk decode raises a located ChunkReadError.

    The only work added per chunk is a ``try``: the fetch, decode and scatter are zarr's.

    >>> # zarr.config.set({"codec_pipeline.path": virtualizarr.pipeline.FUSED})
    """

    def read_sync(
        self,
        batch_info: Iterable[BatchItem],
        out: NDBuffer,
        drop_axes: tuple[int, ...] = (),
        max_workers: int = 1,
    ) -> tuple[GetResult, ...]:
        transform = self.sync_transform
        if transform is None:  # zarr's own message (use the async path)
            return super().read_sync(batch_info, out, drop_axes, max_workers)
        batch = list(batch_info)
        if not batch:
            return ()
        codecs = self.codecs
        one: Callable[[BatchItem], GetResult]
        if self.supports_partial_decode and hasattr(self.array_bytes_codec, "_decode_partial_sync"):
            # sharded: the codec fetches its inner chunks itself; zarr's path chunk by chunk
            read = super().read_sync

            def one(item: BatchItem) -> GetResult:
                try:
                    return read([item], out, drop_axes, 1)[0]
                except Exception as e:
                    err = chunk_error(item[0], e, codecs)
                    if err is None:
                        raise
                    raise err from e

        else:
            decode = transform.decode_chunk

            def one(item: BatchItem) -> GetResult:
                byte_getter, chunk_spec, chunk_selection, out_selection, _ = item
                # fetch errors are the store's own and name the file already
                raw = byte_getter.get_sync(prototype=chunk_spec.prototype)  # type: ignore[attr-defined]
                try:
                    return decode_and_scatter_chunk(
                        raw,
                        out,
                        chunk_spec=chunk_spec,
                        chunk_selection=chunk_selection,
                        out_selection=out_selection,
                        drop_axes=drop_axes,
                        decode=decode,
                    )
                except Exception as e:
                    err = chunk_error(byte_getter, e, codecs)
                    if err is None:
                        raise
                    raise err from e

        if max_workers > 1 and len(batch) > 1:
            from zarr.core.codec_pipeline import _get_pool  # zarr's shared decode threads

            return tuple(_get_pool(max_workers).map(one, batch))
        return tuple(map(one, batch))

    async def read(
        self,
        batch_info: Iterable[BatchItem],
        out: NDBuffer,
        drop_axes: tuple[int, ...] = (),
    ) -> tuple[GetResult, ...]:
        if self.sync_transform is not None:
            # sync stores (ours) go to read_sync, checked per chunk; other stores untouched
            return await super().read(batch_info, out, drop_axes)
        # a codec without a synchronous decode: zarr's async path, a batch at a time
        return await _checked_async_read(
            super().read, list(batch_info), out, drop_axes, self.codecs
        )


class CheckedBatchedCodecPipeline(BatchedCodecPipeline):
    """zarr's default ``BatchedCodecPipeline`` whose reads raise a located ChunkReadError.

    >>> # zarr.config.set({"codec_pipeline.path": virtualizarr.pipeline.BATCHED})
    """

    async def read_batch(
        self,
        batch_info: Iterable[BatchItem],
        out: NDBuffer,
        drop_axes: tuple[int, ...] = (),
    ) -> tuple[GetResult, ...]:
        return await _checked_async_read(
            super().read_batch, list(batch_info), out, drop_axes, tuple(self)
        )


register_pipeline(CheckedFusedCodecPipeline)
register_pipeline(CheckedBatchedCodecPipeline)


@contextmanager
def checked(fused: bool = True) -> Iterator[None]:
    """Arrays opened inside use a checked pipeline (fused by default, else zarr's default one).

    >>> # with checked():
    >>> #     ds = xr.open_zarr(vds.vz.to_store(), consolidated=False, zarr_format=3)
    """
    import zarr

    with zarr.config.set({"codec_pipeline.path": FUSED if fused else BATCHED}):
        yield
