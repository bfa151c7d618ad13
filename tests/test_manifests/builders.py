"""Build real chunked files in ``tmp_path`` and virtual arrays over them, and read them back.

Every helper writes actual bytes to disk (encoded with numcodecs, chunk by chunk) and
returns the ``ManifestArray`` that references them, so tests compare values decoded by
zarr through ``ManifestStore`` with the numpy array that was written.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from numcodecs.abc import Codec

from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
from virtualizarr.manifests.metadata import create_v3_array_metadata
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.store import ManifestStore

__all__ = [
    "chunk_slices",
    "expected_values",
    "read_xarray",
    "read_zarr",
    "v3_codecs",
    "virtual_array",
    "write_chunks",
]

GridIndex = tuple[int, ...]


def grid_shape(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, ...]:
    return tuple(-(-s // c) for s, c in zip(shape, chunks))


def chunk_slices(idx: GridIndex, shape: Sequence[int], chunks: Sequence[int]) -> tuple[slice, ...]:
    """The region of the array that chunk ``idx`` covers (clipped at the edges)."""
    return tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, shape))


def chunk_key(idx: GridIndex) -> str:
    """The manifest key (``"i.j"``; ``"0"`` for a scalar) of grid index ``idx``."""
    return ".".join(map(str, idx)) if idx else "0"


def full_chunk(data: np.ndarray, idx: GridIndex, chunks: Sequence[int], fill: Any) -> np.ndarray:
    """Chunk ``idx`` of ``data`` at full chunk shape (edge chunks padded with ``fill``)."""
    block = np.full(tuple(chunks), fill, dtype=data.dtype)
    part = data[chunk_slices(idx, data.shape, chunks)]
    block[tuple(slice(0, n) for n in part.shape)] = part
    return block


def encode(block: np.ndarray, codecs: Sequence[Codec]) -> bytes:
    out: Any = np.ascontiguousarray(block).tobytes()
    for codec in codecs:
        out = codec.encode(out)
    return bytes(out)


def v3_codecs(codecs: Sequence[Codec]) -> list[dict[str, Any]]:
    """The Zarr v3 spelling (``numcodecs.<id>``) of numcodecs codecs, in encode order."""
    return [
        {
            "name": f"numcodecs.{c.codec_id}",
            "configuration": {k: v for k, v in c.get_config().items() if k != "id"},
        }
        for c in codecs
    ]


def write_chunks(
    path: Path,
    data: np.ndarray,
    chunks: Sequence[int],
    codecs: Sequence[Codec] = (),
    *,
    fill_value: Any = 0,
    missing: Iterable[GridIndex] = (),
    inline: Iterable[GridIndex] = (),
    header: bytes = b"HDR!",
) -> ChunkManifest:
    """Write every chunk of ``data`` (encoded) to ``path`` and return the manifest.

    Chunks are written in reverse C order after a small header, so offsets are neither
    zero nor in grid order. ``missing`` chunks are not written; ``inline`` chunks are held
    in the manifest as bytes instead of in the file.
    """
    grid = grid_shape(data.shape, chunks)
    missing, inline = set(missing), set(inline)
    paths = np.full(grid, "", dtype=object)
    offsets = np.zeros(grid, dtype=np.uint64)
    lengths = np.zeros(grid, dtype=np.uint64)
    inlined: dict[GridIndex, bytes] = {}
    with open(path, "wb") as f:
        f.write(header)
        for idx in reversed(list(itertools.product(*map(range, grid)))):
            if idx in missing:
                continue
            buf = encode(full_chunk(data, idx, chunks, fill_value), codecs)
            if idx in inline:
                inlined[idx] = buf
                continue
            paths[idx] = str(path)
            offsets[idx] = f.tell()
            lengths[idx] = len(buf)
            f.write(buf)
    manifest = ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths)
    if not inlined:
        return manifest
    entries = manifest.to_dict()
    entries.update({chunk_key(idx): {"data": buf} for idx, buf in inlined.items()})
    return ChunkManifest(entries, shape=grid)


def virtual_array(
    path: Path,
    data: np.ndarray,
    chunks: Sequence[int],
    codecs: Sequence[Codec] = (),
    *,
    fill_value: Any = 0,
    missing: Iterable[GridIndex] = (),
    inline: Iterable[GridIndex] = (),
    dimension_names: Sequence[str] | None = None,
    attributes: dict[str, Any] | None = None,
) -> ManifestArray:
    """Write ``data`` chunk by chunk to ``path`` and return the virtual array over it."""
    manifest = write_chunks(
        path, data, chunks, codecs, fill_value=fill_value, missing=missing, inline=inline
    )
    meta = create_v3_array_metadata(
        shape=data.shape,
        data_type=data.dtype,
        chunk_shape=chunks,
        fill_value=fill_value,
        codecs=v3_codecs(codecs),
        dimension_names=dimension_names,
        attributes=attributes,
    )
    return ManifestArray(meta, manifest)


def expected_values(
    data: np.ndarray, chunks: Sequence[int], missing: Iterable[GridIndex], fill_value: Any
) -> np.ndarray:
    """What reading back should give: ``data`` with missing chunks set to ``fill_value``."""
    out = data.copy()
    for idx in missing:
        out[chunk_slices(idx, data.shape, chunks)] = fill_value
    return out


def store_of(
    arrays: dict[str, ManifestArray], registry: ObjectStoreRegistry | None = None
) -> ManifestStore:
    return ManifestStore(ManifestGroup(arrays=arrays), registry=registry)


def read_zarr(arr: ManifestArray, registry: ObjectStoreRegistry | None = None) -> np.ndarray:
    """The values of ``arr`` as zarr decodes them through a ManifestStore."""
    group = zarr.open_group(store_of({"a": arr}, registry), mode="r")
    return group["a"][...]


def read_xarray(arr: ManifestArray, registry: ObjectStoreRegistry | None = None) -> np.ndarray:
    """The values of ``arr`` as ``xr.open_zarr`` reads them (``arr`` needs dimension names)."""
    ds = xr.open_zarr(
        store_of({"a": arr}, registry), consolidated=False, zarr_format=3, mask_and_scale=False
    )
    return ds["a"].values
