"""Which HDF5 datatypes can be referenced byte for byte, and as which numpy/Zarr dtype.

A stored element can be referenced in place when Zarr's ``bytes`` codec reads it exactly:
integers using all their bits, IEEE floats, complex pairs, fixed-length strings, and
enums/booleans through their integer base type. Anything else (variable-length data,
references, compounds, integers with padding bits) needs HDF5 to convert the values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["TypeInfo", "classify", "classify_dtype"]

Kind = Literal["plain", "convert", "vlen_str", "compound", "skip"]


@dataclass(frozen=True)
class TypeInfo:
    """How a dataset's values can be represented."""

    kind: Kind
    """``plain``: reference the bytes; ``convert``: values only through h5py (inline when
    small); ``vlen_str``: variable-length strings; ``compound``: struct records;
    ``skip``: no Zarr representation."""
    dtype: np.dtype | None
    """The Zarr array's dtype (file byte order kept for ``plain``)."""
    reason: str = ""
    """Why the bytes cannot be referenced (for ``convert``/``skip``/``compound``)."""


def _standard_float(tid: Any) -> bool:
    from h5py import h5t

    std = {2: h5t.IEEE_F16LE, 4: h5t.IEEE_F32LE, 8: h5t.IEEE_F64LE}.get(tid.get_size())
    return std is not None and (
        tid.get_fields() == std.get_fields()
        and tid.get_ebias() == std.get_ebias()
        and tid.get_norm() == std.get_norm()
        and tid.get_precision() == std.get_precision()
        and tid.get_offset() == 0
        and tid.get_order() in (h5t.ORDER_LE, h5t.ORDER_BE)
    )


def _standard_layout(tid: Any) -> bool:
    """True if the stored bytes are exactly what numpy's dtype of the same size holds."""
    from h5py import h5t

    cls = tid.get_class()
    if cls == h5t.ENUM:
        return _standard_layout(tid.get_super())
    if cls == h5t.INTEGER:
        return tid.get_precision() == 8 * tid.get_size() and tid.get_offset() == 0
    if cls == h5t.FLOAT:
        return _standard_float(tid)
    if cls == h5t.STRING:
        return True
    if cls == h5t.COMPOUND:  # h5py's complex numbers: two packed floats
        if tid.get_nmembers() != 2:
            return False
        half = tid.get_size() // 2
        return [tid.get_member_offset(i) for i in range(2)] == [0, half] and all(
            _standard_float(tid.get_member_type(i)) and tid.get_member_type(i).get_size() == half
            for i in range(2)
        )
    if cls == getattr(h5t, "COMPLEX", object()):  # HDF5 2.0's native complex type
        return _standard_float(tid.get_super())
    return False


def _simple_field(dt: np.dtype) -> bool:
    return dt.names is None and dt.subdtype is None and dt.kind in "biufcS"


_CACHE_SIZE = 1024
_BY_ENCODING: dict[bytes, tuple[TypeInfo, np.dtype]] = {}


def classify_dtype(dset: Any) -> TypeInfo:
    """How the values of an h5py dataset can be represented in Zarr.

    >>> # classify_dtype(h5file["temperature"]) -> TypeInfo(kind="plain", dtype=dtype(">f4"))
    """
    return classify(dset)[0]


def classify(dset: Any) -> tuple[TypeInfo, np.dtype]:
    """:func:`classify_dtype` and h5py's dtype of the dataset (``dset.dtype``).

    Both depend only on the HDF5 datatype, so they are kept by the type's serialized
    form (``H5Tencode``): every file of a collection repeats the same few types, and
    h5py's conversion of a type to numpy costs more than the encoding.
    """
    tid = dset.id.get_type()
    try:
        key: bytes | None = tid.encode()
    except Exception:  # noqa: BLE001  (no serialized form: classify without the cache)
        key = None
    got = _BY_ENCODING.get(key) if key is not None else None
    if got is None:
        try:
            dt = dset.dtype
        except TypeError as e:  # h5py has no numpy dtype for it (a 3-byte integer, ...)
            got = (TypeInfo("skip", None, _no_numpy_type(tid, e)), np.dtype(f"V{tid.get_size()}"))
        else:
            got = (_classify(dt, tid), dt)
        if key is not None:
            if len(_BY_ENCODING) >= _CACHE_SIZE:
                _BY_ENCODING.clear()
            _BY_ENCODING[key] = got
    return got


def _no_numpy_type(tid: Any, error: TypeError) -> str:
    """Why a type h5py cannot convert to numpy is skipped (a skipped variable's reason)."""
    from h5py import h5t

    size = tid.get_size()
    if tid.get_class() == h5t.INTEGER:
        return f"an integer type of {size} bytes has no numpy or Zarr data type"
    return f"its HDF5 type ({size} bytes) has no numpy data type: {error}"


def _classify(dt: np.dtype, tid: Any) -> TypeInfo:
    import h5py

    string = h5py.check_string_dtype(dt)
    if string is not None and string.length is None:
        return TypeInfo("vlen_str", np.dtype(np.dtypes.StringDType()), "variable-length strings")
    if h5py.check_vlen_dtype(dt) is not None:
        return TypeInfo("skip", None, "variable-length sequences have no Zarr data type")
    if h5py.check_ref_dtype(dt) is not None:
        return TypeInfo("skip", None, "HDF5 object/region references have no Zarr data type")
    if dt.names is not None and dt.kind != "c":
        fields = dt.fields
        assert fields is not None, "a dtype with names has fields"
        if all(_simple_field(fields[n][0]) for n in dt.names):
            le = [(n, fields[n][0].newbyteorder("<")) for n in dt.names]
            return TypeInfo("compound", np.dtype(le), "compound (struct) records")
        return TypeInfo("skip", None, "compound type with nested, array or variable-length members")
    if dt.subdtype is not None:
        return TypeInfo("skip", None, f"HDF5 array type {dt} has no Zarr data type")
    if dt.kind not in "biufcS":
        return TypeInfo(
            "skip", None, f"HDF5 datatype {dt} (opaque/bitfield/time) has no Zarr data type"
        )
    native = np.dtype(dt.str)  # drops h5py's enum/string metadata, keeps the byte order
    if not _standard_layout(tid):
        return TypeInfo("convert", native, f"its HDF5 type is not stored like numpy's {native}")
    return TypeInfo("plain", native)
