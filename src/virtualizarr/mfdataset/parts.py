"""One file's compact part: its manifests, stored coordinate values and attributes.

What ``open_virtual_mfdataset`` keeps per file instead of an ``xr.Dataset``: no xarray
objects, nothing CF-decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from virtualizarr.conversion import dataset_from_group, dims_of
from virtualizarr.manifests import ManifestArray
from virtualizarr.registry import ObjectStoreRegistry
from virtualizarr.xarray import (
    decode_variables,
    parse_source,
    read_stored_values,
    select_group,
    select_variables,
)

if TYPE_CHECKING:
    from virtualizarr.parsers import Parser

__all__ = ["PART_OPTIONS", "FilePart", "virtualize_part"]


@dataclass
class FilePart:
    """What one file contributes: no xarray objects, nothing decoded.

    ``names`` lists the file's variables in order, each with whether it is loaded;
    ``virtual`` maps the others to their ManifestArrays; ``loaded`` maps loaded ones to
    (dims, attrs, stored values).
    """

    source: str
    names: tuple[tuple[str, bool], ...]
    attrs: dict[str, Any]
    virtual: dict[str, ManifestArray]
    loaded: dict[str, tuple[tuple[str, ...], dict[str, Any], np.ndarray]]

    def to_dataset(self, decode_times: bool | None) -> xr.Dataset:
        """The Dataset ``open_virtual_dataset`` gives for this file."""
        raw = {
            n: xr.Variable(dims, values, attrs=dict(attrs))
            for n, (dims, attrs, values) in self.loaded.items()
        }
        arrays = {n: self.virtual.get(n) for n, _ in self.names}
        return dataset_from_group(
            arrays,  # loaded names map to None: their values come from `loaded`
            self.attrs,
            decode_variables(raw, decode_times, self.source),
            source=self.source,
        )


PART_OPTIONS = {"group", "drop_variables", "loadable_variables", "decode_times"}


def virtualize_part(
    path: Any,
    registry: ObjectStoreRegistry | None = None,
    parser: Parser | None = None,
    *,
    group: str | None = None,
    drop_variables: Any = None,
    loadable_variables: Any = None,
) -> FilePart:
    """Parse one file into a :class:`FilePart` (what ``open_virtual_mfdataset`` keeps per file).

    >>> # part = virtualize_part("f001.nc"); part.virtual["air"].manifest
    """
    url, registry, store = parse_source(path, registry, parser)
    node = select_group(store.group, group, url)
    arrays, load = select_variables(node, drop_variables, loadable_variables, url)
    raw = read_stored_values(node, registry, load, store)
    loaded_set = set(load)
    return FilePart(
        source=url,
        names=tuple((n, n in loaded_set) for n in arrays),
        attrs=dict(node.attributes),
        virtual={n: a for n, a in arrays.items() if n not in loaded_set},
        loaded={
            n: (dims_of(n, arrays[n]), dict(arrays[n].metadata.attributes), np.asarray(v))
            for n, v in raw.items()
        },
    )
