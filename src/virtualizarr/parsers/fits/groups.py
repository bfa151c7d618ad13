"""Random-groups HDUs (the legacy radio-interferometry layout) for the FITS parser.

A random-groups primary HDU (``GROUPS = T``, ``NAXIS1 = 0``) holds ``GCOUNT`` groups, each
``PCOUNT`` parameters followed by an array of shape ``NAXIS2..NAXISn``, all of type
``BITPIX``. It becomes a group (named like the HDU) with dimension ``group``:

* one array per parameter name, read in place by ``virtualizarr.record_field``, with
  ``PSCALn``/``PZEROn`` as CF ``scale_factor``/``add_offset`` (xarray then gives astropy's
  float64 values; unscaled parameters keep their type);
* a name given to several parameters (AIPS splits ``DATE`` in two for precision) is one
  float64 array, the sum of the scaled parts as astropy's ``par()`` returns it, decoded
  by the ``virtualizarr.fits_group_param`` codec;
* ``DATA``: the arrays, ``BSCALE``/``BZERO``/``BLANK`` as for an image.

>>> # group = random_groups_group(header, data_offset, url, what, 1 << 24)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from virtualizarr.errors import CorruptFileError
from virtualizarr.manifests import ManifestArray, ManifestGroup
from virtualizarr.manifests.metadata import create_v3_array_metadata

__all__ = ["random_groups_group"]

_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _number(header: Any, key: str, default: float) -> float:
    v = header.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise CorruptFileError(f"{header.what}: {key} = {v!r} is not a finite number.")
    return v


def random_groups_group(
    header: Any, data_offset: int, url: str, what: str, max_chunk_bytes: int
) -> ManifestGroup:
    """The group of parameter arrays and ``DATA`` of a random-groups HDU."""
    from virtualizarr.parsers.fits.tables import file_manifest, header_attributes, record_field

    bitpix = header["BITPIX"]
    dtype = np.dtype(_BITPIX[bitpix])
    naxis = header.integer("NAXIS")
    shape = tuple(header.integer(f"NAXIS{k}") for k in range(naxis, 1, -1))
    pcount, gcount = header.integer("PCOUNT", 0), header.integer("GCOUNT", 1)
    if pcount > 999:
        raise CorruptFileError(f"{what}: PCOUNT = {pcount} parameters is more than 999.")
    item = dtype.itemsize
    rowlen = item * (pcount + math.prod(shape))
    rows = min(max(gcount, 1), max(1, max_chunk_bytes // max(rowlen, 1)))
    nchunks = math.ceil(gcount / rows) if rowlen else 0
    starts = np.arange(nchunks, dtype=np.uint64) * np.uint64(rows)
    offsets = np.uint64(data_offset) + starts * np.uint64(rowlen)
    lengths = np.minimum(np.uint64(rows), np.uint64(gcount) - starts) * np.uint64(rowlen)

    # parameters by name, in order of first appearance (as astropy's parnames)
    params: dict[str, list[int]] = {}
    for n in range(1, pcount + 1):
        name = str(header.get(f"PTYPE{n}", "") or "").strip().replace("/", "_") or f"PARAM{n}"
        params.setdefault(name, []).append(n)
    arrays: dict[str, ManifestArray] = {}
    for name, ns in params.items():
        if name == "DATA":
            name = "DATA_param"
        scales = [_number(header, f"PSCAL{n}", 1) for n in ns]
        zeros = [_number(header, f"PZERO{n}", 0) for n in ns]
        attrs: dict[str, Any] = {"fits_ptype": [f"PTYPE{n}" for n in ns]}
        if len(ns) == 1:
            codecs = [record_field(rowlen, item * (ns[0] - 1), item, rows)]
            out = dtype
            if scales[0] != 1:
                attrs["scale_factor"] = float(scales[0])
            if zeros[0] != 0:
                attrs["add_offset"] = float(zeros[0])
        else:  # astropy's par(): the float64 sum of the scaled parts
            offsets_in_record = [item * (n - 1) for n in ns]
            config = {"record_size": rowlen, "records": rows, "dtype": dtype.str}
            config |= {"offsets": offsets_in_record, "scales": scales, "zeros": zeros}
            codecs = [{"name": "virtualizarr.fits_group_param", "configuration": config}]
            out = np.dtype("<f8")
        meta = create_v3_array_metadata(
            shape=(gcount,),
            data_type=out,
            chunk_shape=(rows,),
            codecs=codecs,
            attributes=attrs,
            dimension_names=["group"],
        )
        arrays[name] = ManifestArray(meta, file_manifest(url, (nchunks,), offsets, lengths))
    data_attrs = header_attributes(header, scaling=True, blank=bitpix > 0)
    dims = ["group", *(f"naxis{k}" for k in range(naxis, 1, -1))]
    meta = create_v3_array_metadata(
        shape=(gcount, *shape),
        data_type=dtype,
        chunk_shape=(rows, *(max(s, 1) for s in shape)),
        codecs=[record_field(rowlen, item * pcount, item * math.prod(shape), rows)],
        attributes=data_attrs,
        dimension_names=dims,
    )
    grid = (nchunks, *(1 if s else 0 for s in shape))
    arrays["DATA"] = ManifestArray(meta, file_manifest(url, grid, offsets, lengths))
    return ManifestGroup(arrays=arrays, attributes={"fits_random_groups": True})
