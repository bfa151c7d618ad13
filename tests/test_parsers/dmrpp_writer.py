"""A small DMR++ writer used only by the tests: DMR++ XML for an HDF5 file, from h5py.

It writes what Hyrax's ``build_dmrpp`` writes for the features the DMRPPParser reads:
groups, ``Dimension`` declarations from dimension scales (anonymous ``Dim size`` otherwise),
typed attributes, and per variable a ``dmrpp:chunks`` element with the filter pipeline in
HDF5 order, the fill value, byte order, ``dmrpp:chunkDimensionSizes`` and one
``dmrpp:chunk`` per allocated chunk (``H5Dchunk_iter``); contiguous data is one chunk.
Types without a fixed-size Zarr equivalent are written as Hyrax would name them
(``String``, ``Structure``) so the parser's skip path is exercised.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import h5py
import numpy as np

DAP_NS = "http://xml.opendap.org/ns/DAP/4.0#"
DMRPP_NS = "http://xml.opendap.org/dap/dmrpp/1.0.0#"

_TYPES = {"u1": "Byte", "i1": "Int8", "i2": "Int16", "u2": "UInt16", "i4": "Int32", "u4": "UInt32",
          "i8": "Int64", "u8": "UInt64", "f4": "Float32", "f8": "Float64", "S1": "Char"}  # fmt: skip
# HDF5 filter id -> compressionType token (unsupported ones named so the parser rejects them)
_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 32001: "blosc", 32004: "lz4",
            32008: "bitshuffle", 32015: "zstd"}  # fmt: skip
_SKIP_ATTRS = {
    "DIMENSION_LIST",
    "REFERENCE_LIST",
    "CLASS",
    "NAME",
    "_Netcdf4Dimid",
    "_Netcdf4Coordinates",
}
_NC_PHONY = b"This is a netCDF dimension but not a netCDF variable"


def write_dmrpp(
    h5_path: str | Path, out: str | Path | None = None, *, href: str | None = None
) -> str:
    """DMR++ XML text for ``h5_path``; written to ``out`` when given."""
    ET.register_namespace("", DAP_NS)
    ET.register_namespace("dmrpp", DMRPP_NS)
    h5_path = Path(h5_path)
    with h5py.File(h5_path, "r") as f:
        root = ET.Element(
            f"{{{DAP_NS}}}Dataset",
            {
                "dapVersion": "4.0",
                "dmrVersion": "1.0",
                "name": h5_path.name,
                f"{{{DMRPP_NS}}}href": href if href is not None else h5_path.resolve().as_uri(),
                f"{{{DMRPP_NS}}}version": "3.21.0",
            },
        )
        _group(root, f, "", _Dims(f))
    text = '<?xml version="1.0" encoding="ISO-8859-1"?>\n' + ET.tostring(root, encoding="unicode")
    if out is not None:
        Path(out).write_text(text)
    return text


def _q(tag: str) -> str:
    """``"dmrpp:chunks"`` as an ElementTree tag."""
    return f"{{{DMRPP_NS}}}{tag.removeprefix('dmrpp:')}"


def _dap(tag: str) -> str:
    return f"{{{DAP_NS}}}{tag}"


class _Dims:
    """Dimension scales of a file: their paths and lengths (the longest axis attached).

    netCDF-4 unlimited dimensions are longer than their never-written coordinate
    variable. Paths come from ``visititems``: h5py's ``.name`` is slow on big files.
    """

    def __init__(self, f: h5py.File) -> None:
        self.paths: dict[Any, str] = {}
        self.sizes: dict[str, int] = {}
        datasets: list[tuple[str, h5py.Dataset]] = []
        f.visititems(
            lambda name, obj: (
                datasets.append(("/" + name, obj)) if isinstance(obj, h5py.Dataset) else None
            )
        )
        for path, ds in datasets:
            if ds.attrs.get("CLASS") == b"DIMENSION_SCALE" and ds.ndim == 1:
                self.paths[ds.id] = path
                self.sizes[path] = ds.shape[0]
        for path, ds in datasets:
            for axis, scale in enumerate(self.scales(ds, path)):
                if scale is not None:
                    self.sizes[scale] = max(self.sizes[scale], ds.shape[axis])

    def scales(self, ds: h5py.Dataset, path: str) -> list[str | None]:
        """The dimension scale path of each axis of ``ds`` (None where there is none)."""
        if path in self.sizes and ds.ndim == 1:
            return [path]
        return [
            next((self.paths.get(s.id) for s in ds.dims[a].values()), None) for a in range(ds.ndim)
        ]


def _group(elem: ET.Element, group: h5py.Group, path: str, dims: _Dims) -> None:
    for name in group:
        if f"{path}/{name}" in dims.sizes:
            ET.SubElement(
                elem, _dap("Dimension"), {"name": name, "size": str(dims.sizes[f"{path}/{name}"])}
            )
    for name, obj in group.items():
        if isinstance(obj, h5py.Group):
            _group(ET.SubElement(elem, _dap("Group"), {"name": name}), obj, f"{path}/{name}", dims)
        elif isinstance(obj, h5py.Dataset) and not obj.attrs.get("NAME", b"").startswith(_NC_PHONY):
            _dataset(elem, name, obj, f"{path}/{name}", dims)
    _attributes(elem, group.attrs)


def _dataset(parent: ET.Element, name: str, ds: h5py.Dataset, path: str, dims: _Dims) -> None:
    dt = ds.dtype
    key = dt.str.lstrip("<>|=")
    if dt.names is not None or dt.kind == "O" or key not in _TYPES:
        kind = "Structure" if dt.names is not None else "String"
        ET.SubElement(parent, _dap(kind), {"name": name})
        return
    elem = ET.SubElement(parent, _dap(_TYPES[key]), {"name": name})
    for axis, scale in enumerate(dims.scales(ds, path)):
        # a coordinate variable shorter than its (unlimited) dimension keeps its own length
        if scale is not None and dims.sizes[scale] == ds.shape[axis]:
            ET.SubElement(elem, _dap("Dim"), {"name": scale})
        else:
            ET.SubElement(elem, _dap("Dim"), {"size": str(ds.shape[axis])})
    _attributes(elem, ds.attrs)
    dcpl = ds.id.get_create_plist()
    if dcpl.get_layout() == h5py.h5d.COMPACT:
        ET.SubElement(elem, _q("dmrpp:compact")).text = base64.b64encode(ds[()].tobytes()).decode()
        return
    filters, level = [], None
    for i in range(dcpl.get_nfilters()):
        code, _, cd_values, _ = dcpl.get_filter(i)
        filters.append(_FILTERS.get(code, f"filter{code}"))
        if code == 1:
            level = cd_values[0] if cd_values else 1
    attrs = {"byteOrder": "BE" if dt.byteorder == ">" else "LE"}
    if filters:
        attrs["compressionType"] = " ".join(filters)
    if level is not None:
        attrs["deflateLevel"] = str(level)
    fill = np.zeros((), dtype=dt)
    dcpl.get_fill_value(fill)
    attrs["fillValue"] = _text(fill[()])
    chunks = ET.SubElement(elem, _q("dmrpp:chunks"), attrs)
    if ds.chunks is None:
        offset = ds.id.get_offset()
        if offset is not None:
            ET.SubElement(
                chunks,
                _q("dmrpp:chunk"),
                {"offset": str(offset), "nBytes": str(ds.id.get_storage_size())},
            )
        return
    ET.SubElement(chunks, _q("dmrpp:chunkDimensionSizes")).text = " ".join(map(str, ds.chunks))

    def add(info: Any) -> None:
        # DMR++ cannot say that a chunk skipped a filter; fine only where the parser rejects them
        assert info.filter_mask == 0 or not set(filters) <= {"deflate", "shuffle", "fletcher32"}
        pos = "[" + ",".join(map(str, info.chunk_offset)) + "]"
        at = {"offset": str(info.byte_offset), "nBytes": str(info.size)}
        ET.SubElement(chunks, _q("dmrpp:chunk"), {**at, "chunkPositionInArray": pos})

    ds.id.chunk_iter(add)


def _attributes(elem: ET.Element, attrs: h5py.AttributeManager) -> None:
    for name in attrs:
        if name in _SKIP_ATTRS:
            continue
        try:
            value = attrs[name]
        except (OSError, TypeError):  # types h5py cannot read (vlen of compound...)
            continue
        arr = np.atleast_1d(np.asarray(value))
        if arr.dtype.kind in "SUO":
            dap_type = "String"
        else:
            key = arr.dtype.str.lstrip("<>|=")
            if arr.dtype.names is not None or key not in _TYPES:
                continue
            dap_type = _TYPES[key]
        a = ET.SubElement(elem, _dap("Attribute"), {"name": name, "type": dap_type})
        for v in arr.ravel():
            ET.SubElement(a, _dap("Value")).text = _text(v)


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.floating | float):
        return repr(float(v))
    if isinstance(v, np.generic):
        return str(v.item())
    return str(v)
