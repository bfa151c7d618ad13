"""Array and group attributes as the outputs write them: strict JSON that xarray reads back.

One spelling for every writer (kerchunk JSON/parquet, Icechunk) and for the store's
``zarr.json``, below all of them:

* :func:`json_attrs` -- plain JSON types, non-finite floats as the strings ``"NaN"``,
  ``"Infinity"``, ``"-Infinity"`` (Zarr's spelling; strict JSON has no literals for them),
  and NaN entries dropped from ``missing_value``: NaN already reads as missing, while a
  string ``"NaN"`` among numbers would break xarray's masking (it compares the data with
  every entry). ``missing_value=[nan, -999]`` is written ``[-999.0]``; ``[nan]`` or ``nan``
  drops the attribute.
* :func:`zarr_v3_attributes` -- CF ``_FillValue`` spelled as xarray's Zarr v3 backend writes
  it (base64 of a float64 for floats), so ``xr.open_zarr`` masks exactly the values a
  netCDF reader would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from virtualizarr.manifests.metadata import to_json_safe

__all__ = ["json_attrs", "strict_json", "zarr_v3_attributes"]

_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float spelled as a string, recursively.

    >>> strict_json({"a": [float("nan"), 1.5, float("-inf")]})
    {'a': ['NaN', 1.5, '-Infinity']}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else _NONFINITE[value]
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json(v) for v in value]
    return value


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def json_attrs(attrs: Mapping[Any, Any]) -> dict[str, Any]:
    """Attributes as strict JSON, NaN dropped from ``missing_value`` (see the module doc).

    >>> json_attrs({"missing_value": [float("nan"), -999], "valid_max": float("inf")})
    {'missing_value': [-999], 'valid_max': 'Infinity'}
    >>> json_attrs({"missing_value": float("nan"), "units": "K"})
    {'units': 'K'}
    """
    out = to_json_safe({str(k): v for k, v in attrs.items()})
    mv = out.get("missing_value")
    if mv is not None:
        kept = [v for v in (mv if isinstance(mv, list) else [mv]) if not _is_nan(v)]
        if not kept:
            del out["missing_value"]
        else:
            out["missing_value"] = kept if isinstance(mv, list) else kept[0]
    return strict_json(out)


def zarr_v3_attributes(attrs: dict[str, Any], dtype: np.dtype) -> dict[str, Any]:
    """``attrs`` with CF ``_FillValue`` spelled as xarray's Zarr v3 backend expects it.

    Unchanged when there is no ``_FillValue``. A non-integral float ``_FillValue`` on an
    integer variable (NaN on packed int16, which xarray writes) equals no stored value, so
    it masks nothing and is dropped: xarray's Zarr backend could not read it back.

    >>> zarr_v3_attributes({"_FillValue": -1.0}, np.dtype("f4"))
    {'_FillValue': 'AAAAAAAA8L8='}
    """
    if "_FillValue" not in attrs:
        return attrs
    from xarray.backends.zarr import FillValueCoder

    fv = attrs["_FillValue"]
    if isinstance(fv, list) and len(fv) == 1:
        fv = fv[0]
    if dtype.kind == "S" and isinstance(fv, str):
        fv = fv.encode()
    if dtype.kind == "f" and isinstance(fv, str):  # JSON-safe spelling of NaN/Infinity
        fv = float(fv)
    if dtype.kind in "iu" and isinstance(fv, float) and not fv.is_integer():
        return {k: v for k, v in attrs.items() if k != "_FillValue"}
    try:
        fv = FillValueCoder.encode(fv, dtype)
    except (TypeError, ValueError):
        return attrs  # xarray will then refuse it with a message naming the value
    return {**attrs, "_FillValue": fv}
