"""Combining collected parts: column by column with numpy when the files line up along
one dimension, else per-file Datasets for xarray's combine (``UseXarrayCombine``)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from virtualizarr.conversion import dataset_from_group
from virtualizarr.errors import ManifestConcatError
from virtualizarr.manifests import ChunkManifest, ManifestArray
from virtualizarr.manifests.array_api import concatenate
from virtualizarr.manifests.metadata import cf_encoding_mismatch, with_metadata
from virtualizarr.mfdataset.collector import Collector
from virtualizarr.xarray import decode_variables

__all__ = ["UseXarrayCombine", "check_cf_compatible", "fast_combine"]


def _meta_dims(name: str, meta: Any) -> tuple[str, ...]:
    dims = meta.dimension_names
    if dims is None or any(d is None for d in dims):
        raise ValueError(
            f"Array {name!r} has no dimension names; the parser must set them (zarr dimension_names)."
        )
    return tuple(str(d) for d in dims)


class UseXarrayCombine(Exception):
    """The fast combine does not apply: combine per-file Datasets with xarray instead."""


def _check_cf(col: Collector, name: str) -> None:
    """check_cf_compatible over one column (only distinct metadata need comparing)."""
    metas = col.virtual[name].metas
    first = metas[0]
    seen = {id(first)}
    for i, m in enumerate(metas):
        if id(m) in seen:
            continue
        seen.add(id(m))
        bad = cf_encoding_mismatch(first.attributes, m.attributes)
        if bad is not None:
            raise _cf_error(name, bad, col.sources[0], col.sources[i])


def _cf_error(name: Hashable, bad: tuple[str, Any, Any], src_a: str, src_b: str) -> Exception:
    key, a, b = bad
    return ManifestConcatError(
        f"Cannot combine virtual variable {name!r}: its {key!r} differs between files: "
        f"{a!r} in {src_a} vs {b!r} in {src_b}. The combined variable would decode "
        "one file's values with the other's encoding. Load the variable "
        "(loadable_variables=[...]) or fix the encoding with preprocess=."
    )


def _monotonic(values: np.ndarray, starts: np.ndarray, sign: int) -> bool:
    """Whether every file's slice of ``values`` is monotonic (non-strictly) in direction ``sign``."""
    if values.size < 2:
        return True
    d = np.diff(values)
    if d.dtype.kind == "m":
        d = d.astype(np.int64)
    inner = np.ones(d.size, dtype=bool)
    inner[starts[1:] - 1] = False  # differences across file boundaries do not count
    return bool(np.all(d[inner] * sign >= 0))


def fast_combine(
    col: Collector,
    *,
    combine: str,
    concat_dim: Any,
    decode_times: bool | None,
    sources: list[str],
) -> xr.Dataset:
    """The Dataset xarray's combine gives for the files of ``col``, built column by column.

    Raises ``UseXarrayCombine`` when the files do not line up along one dimension (then the
    general combine runs).
    """
    n = len(col)
    names = col.names[0]
    if any(nm is not names for nm in col.names):
        raise UseXarrayCombine("files have different variables")
    loaded_names = [nm for nm, ld in names if ld]
    for nm in loaded_names:
        lc = col.loaded[nm]
        if any(d is not lc.dims[0] for d in lc.dims) or any(a is not lc.attrs[0] for a in lc.attrs):
            raise UseXarrayCombine(f"{nm}: dims or attributes differ between files")
    dims_of = {nm: col.loaded[nm].dims[0] for nm in loaded_names}
    for nm, ld in names:
        if not ld:
            dims_of[nm] = _meta_dims(nm, col.virtual[nm].metas[0])

    if combine == "nested":
        dim = (
            concat_dim[0]
            if isinstance(concat_dim, (list, tuple)) and len(concat_dim) == 1
            else concat_dim
        )
        if not isinstance(dim, str) or not any(dim in d for d in dims_of.values()):
            raise UseXarrayCombine("nested combine along a new or several dimensions")
    else:
        varying = [
            nm
            for nm in loaded_names
            if dims_of[nm] == (nm,) and any(v is not None for v in col.loaded[nm].values[1:])
        ]
        if n > 1 and len(varying) != 1:
            raise UseXarrayCombine("not exactly one dimension coordinate differs between files")
        dim = varying[0] if varying else None
    for nm in loaded_names:
        if (dim is None or dim not in dims_of[nm]) and any(
            v is not None for v in col.loaded[nm].values[1:]
        ):
            raise UseXarrayCombine(
                f"{nm} differs between files but is not along the concat dimension"
            )

    # one CF decode per loaded variable: of the concatenation for those along `dim`
    decoded: dict[str, xr.Variable] = {}
    bounds: dict[str, np.ndarray] = {}
    for nm in loaded_names:
        lc = col.loaded[nm]
        d = dims_of[nm]
        if dim is not None and dim in d and n > 1:
            ax = d.index(dim)
            raw, sizes = col.concat_values(nm, ax)
            bounds[nm] = np.concatenate([[0], np.cumsum(sizes)])
        else:
            raw = col.values(nm, 0)
        var = xr.Variable(d, raw, attrs=dict(lc.attrs[0]))
        decoded[nm] = decode_variables({nm: var}, decode_times, f"{n} files ({col.sources[0]}...)")[
            nm
        ]

    order = np.arange(n)
    if combine != "nested" and dim is not None and n > 1:
        coord = decoded[dim]
        vals = np.asarray(coord.values)
        b = bounds[dim]
        if vals.dtype.kind not in "iufM" or (np.diff(b) == 0).any():
            raise UseXarrayCombine("concat coordinate is not numeric/datetime or a file has none")
        if vals.dtype.kind in "fM" and np.isnan(vals).any():
            raise UseXarrayCombine("NaN/NaT in the concat coordinate")
        starts = b[:-1]
        if _monotonic(vals, starts, 1):
            sign = 1
        elif _monotonic(vals, starts, -1):
            sign = -1
        else:
            raise UseXarrayCombine("not monotonic in every file")
        first = vals[starts]
        if np.unique(first).size != n:
            raise UseXarrayCombine("two files start at the same coordinate value")
        order = np.argsort(first, kind="stable")
        if sign < 0:
            order = order[::-1]
        if not _monotonic(vals[_ranges(b, order)], np.array([0]), sign):
            raise UseXarrayCombine("resulting index is not monotonic")

    # virtual variables
    for nm, ld in names:
        if not ld:
            _check_cf(col, nm)
    table = col.table_tuple()
    first_i = int(order[0])
    arrays: dict[str, Any] = {}
    loaded: dict[str, xr.Variable] = {}
    for nm, ld in names:
        d = dims_of[nm]
        along = dim is not None and dim in d and n > 1
        if ld:
            var = decoded[nm]
            if along and not np.array_equal(order, np.arange(n)):
                var = var.isel({dim: _ranges(bounds[nm], order)})
            loaded[nm] = var
            arrays[nm] = None
            continue
        if not along:
            arrays[nm] = col.array(nm, first_i, table)
            continue
        arrays[nm] = _concat_virtual(col, nm, d.index(dim), order, table)
    ds = dataset_from_group(arrays, col.attrs[first_i], loaded, source=sources)
    return ds


def _ranges(bounds: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(bounds[i], bounds[i+1])`` for ``i`` in ``order``, vectorised."""
    starts = bounds[:-1][order]
    sizes = np.diff(bounds)[order]
    out_starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.repeat(starts - out_starts, sizes) + np.arange(int(sizes.sum()))


def _concat_virtual(
    col: Collector, name: str, axis: int, order: np.ndarray, table: tuple[str | bytes, ...]
) -> ManifestArray:
    """``np.concatenate`` of every file's array in ``order``, with one numpy gather per grid."""
    vc = col.virtual[name]
    metas = vc.metas
    first = metas[int(order[0])]
    distinct = {id(m): m for m in metas}
    grid = vc.uniform_grid()
    if len(distinct) > 1 or grid is None:
        # differing metadata (a shorter last file, or an error to report): the array path,
        # which checks and names every mismatch; only distinct metadata need checking
        reps: dict[int, int] = {}
        for i in order:
            reps.setdefault(id(metas[i]), int(i))
        if len(reps) > 1:
            np.concatenate([col.array(name, i, table) for i in reps.values()], axis=axis)
        if grid is None:
            return concatenate([col.array(name, int(i), table) for i in order], axis=axis)
    chunk = first.chunks[axis]
    lengths_along = np.array([metas[i].shape[axis] for i in order])
    bad = np.flatnonzero(lengths_along[:-1] % chunk)
    if bad.size:
        i = int(bad[0])
        raise ManifestConcatError(
            f"Cannot concatenate virtual arrays along axis {axis}: input {i} has length "
            f"{lengths_along[i]}, not a multiple of the chunk length {chunk}, so its last chunk "
            "is partial and would sit in the middle of the result. Only the last input may end "
            "in a partial chunk."
        )
    position = np.empty(len(order), dtype=np.intp)
    position[order] = np.arange(len(order))  # where each file's grid goes

    def gather(field: int) -> np.ndarray:
        # one output array filled block by block (no copy of all blocks first)
        dtype = vc.blocks[0][field].dtype
        out = np.empty((len(order), *grid), dtype=dtype)
        for start, block in zip(vc.starts, vc.blocks):
            rows = block[field]
            out[position[start : start + len(rows)]] = rows
        moved = np.moveaxis(out, 0, axis)  # (..., file, grid[axis], ...): a view
        shape = list(grid)
        shape[axis] *= len(order)
        return moved.reshape(shape)  # a view when axis == 0

    manifest = ChunkManifest.from_path_ids(
        table=table, ids=gather(0), offsets=gather(1), lengths=gather(2), normalize=False
    )
    shape = list(first.shape)
    shape[axis] = int(lengths_along.sum())
    return ManifestArray(with_metadata(first, shape=tuple(shape)), manifest)


def check_cf_compatible(datasets: Sequence[xr.Dataset]) -> None:
    """Refuse to combine virtual variables whose CF encoding differs between files.

    Combining keeps the first file's attributes, so a different ``scale_factor``,
    ``add_offset``, ``_FillValue`` (or ``units``/``calendar`` of encoded times) in a
    later file would decode its values wrongly. Raises ManifestConcatError naming the
    variable, the attribute, both values and both files.
    """
    first: dict[Hashable, tuple[dict[Hashable, Any], str]] = {}
    for ds in datasets:
        source = str(ds.encoding.get("source", "<dataset>"))
        for name, var in ds.variables.items():
            if not isinstance(var.data, ManifestArray):
                continue
            if name not in first:
                first[name] = (var.attrs, source)
                continue
            ref_attrs, ref_source = first[name]
            bad = cf_encoding_mismatch(ref_attrs, var.attrs)
            if bad is not None:
                raise _cf_error(name, bad, ref_source, source)
