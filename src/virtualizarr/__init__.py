"""VirtualiZarr: virtual Zarr stores over archival files.

The names below are imported on first use (PEP 562), so importing a submodule -- zarr
loading one of our codecs through its entry point, ``import virtualizarr.codecs.grib`` --
does not pull in xarray and the parsers. The first use of any of them also registers the
``ds.vz`` accessor (as does importing ``virtualizarr.xarray``).

>>> # import virtualizarr as vz
>>> # ds = vz.open_virtual_dataset("file.nc"); ds.vz.to_kerchunk("refs.json", format="json")
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from virtualizarr.manifests import ChunkManifest, ManifestArray, ManifestGroup
    from virtualizarr.mfdataset import open_virtual_mfdataset
    from virtualizarr.readers import open_icechunk
    from virtualizarr.registry import ObjectStoreRegistry
    from virtualizarr.store import ManifestStore
    from virtualizarr.xarray import open_virtual_dataset, open_virtual_datatree

# public name -> module that defines it
_LAZY = {
    "ChunkManifest": "virtualizarr.manifests",
    "ManifestArray": "virtualizarr.manifests",
    "ManifestGroup": "virtualizarr.manifests",
    "ManifestStore": "virtualizarr.store",
    "ObjectStoreRegistry": "virtualizarr.registry",
    "open_icechunk": "virtualizarr.readers",
    "open_virtual_dataset": "virtualizarr.xarray",
    "open_virtual_datatree": "virtualizarr.xarray",
    "open_virtual_mfdataset": "virtualizarr.mfdataset",
}

__all__ = [
    "ChunkManifest",
    "ManifestArray",
    "ManifestGroup",
    "ManifestStore",
    "ObjectStoreRegistry",
    "open_icechunk",
    "open_virtual_dataset",
    "open_virtual_datatree",
    "open_virtual_mfdataset",
]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'virtualizarr' has no attribute {name!r}")
    importlib.import_module("virtualizarr.accessor")  # registers ds.vz on first use of the API
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if "xarray" in sys.modules:
    # xarray is already loaded, so registering ds.vz now costs little and makes `import
    # virtualizarr` enough for datasets built by hand from ManifestArrays.
    importlib.import_module("virtualizarr.accessor")
