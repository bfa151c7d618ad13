"""HDF5 object header messages: dataspace, datatype, fill value, filter pipeline, attribute,
link, link info, attribute info, symbol table.

Datatypes decode to :class:`Datatype`, which knows the numpy dtype h5py would give the
type (``Datatype.numpy``) so that both engines classify and decode values the same way.

>>> # dt = parse_datatype(f, msg.body, "variable 'x'"); dt.numpy
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from virtualizarr.parsers.hdf5.memo import BoundedCache
from virtualizarr.parsers.hdf5.superblock import Cursor, Fallback, H5File

__all__ = [
    "Attribute",
    "Dataspace",
    "Datatype",
    "Link",
    "parse_attribute",
    "parse_dataspace",
    "parse_datatype",
    "parse_fill_value",
    "parse_filters",
    "parse_link",
]

# datatype classes
FIXED, FLOAT, TIME, STRING, BITFIELD, OPAQUE, COMPOUND, REFERENCE, ENUM, VLEN, ARRAY, COMPLEX = (
    range(12)
)


@dataclass(frozen=True, slots=True)
class Dataspace:
    shape: tuple[int, ...] | None
    """None for a null (empty) dataspace."""
    maxshape: tuple[int | None, ...] | None


_SPACES: BoundedCache[tuple[int, bytes], Dataspace] = BoundedCache(4096)
_TYPES: BoundedCache[tuple[int, bytes], Datatype] = BoundedCache(4096)
"""Decoded messages by their bytes (and length size): the datasets and attributes of a file,
and the files of a collection, repeat the same few types and shapes. Decoded objects are
never changed after decoding, so sharing them (between threads too) is safe."""


def parse_dataspace(f: H5File, body: bytes, what: str) -> Dataspace:
    key = (f.sl, body)
    got = _SPACES.get(key)
    if got is None:
        got = _SPACES.put(key, _parse_dataspace(f, body, what), len(body))
    return got


def _parse_dataspace(f: H5File, body: bytes, what: str) -> Dataspace:
    c = Cursor(body, f, what + " dataspace")
    version = c.u8()
    ndim = c.u8()
    flags = c.u8()
    if version == 1:
        c.skip(5)
        kind = 1 if ndim else 0
    elif version == 2:
        kind = c.u8()
    else:
        raise f.corrupt(what, f"dataspace version {version}")
    if kind == 2:
        return Dataspace(None, None)
    shape = tuple(c.length() for _ in range(ndim))
    maxshape: tuple[int | None, ...] = shape
    if flags & 1:
        full = (1 << (8 * f.sl)) - 1
        maxshape = tuple(None if m == full else m for m in (c.length() for _ in range(ndim)))
    return Dataspace(shape, maxshape)


@dataclass(slots=True)
class Datatype:
    cls: int
    size: int
    bits: int
    """The class bit field (24 bits)."""
    props: dict[str, Any] = field(default_factory=dict)
    base: Datatype | None = None
    members: list[tuple[str, int, Datatype]] = field(default_factory=list)
    """Compound: (name, byte offset, type)."""
    numpy: np.dtype = field(default_factory=lambda: np.dtype("V0"))
    """The numpy dtype h5py gives this type. ``_datatype`` sets it for every class it reads
    (the others raise Fallback), so the placeholder default is never seen by callers."""

    @property
    def big_endian(self) -> bool:
        return bool(self.bits & 1)

    def string_info(self) -> Any:
        """``h5py.check_string_dtype`` of the type: StringInfo or None."""
        from virtualizarr.parsers.hdf5.nodes import StringInfo

        if self.cls == STRING:
            return StringInfo("utf-8" if (self.bits >> 4) & 0xF else "ascii", self.size)
        if self.cls == VLEN and self.bits & 0xF == 1:
            return StringInfo("utf-8" if (self.bits >> 8) & 0xF else "ascii", None)
        return None

    @property
    def is_vlen_string(self) -> bool:
        return self.cls == VLEN and self.bits & 0xF == 1


_REF_DTYPE = np.dtype("O", metadata={"vz_ref": "object"})
_VLEN_STR = {
    "ascii": np.dtype("O", metadata={"vlen": bytes}),
    "utf-8": np.dtype("O", metadata={"vlen": str}),
}


def parse_datatype(f: H5File, body: bytes, what: str) -> Datatype:
    key = (f.so, body)
    got = _TYPES.get(key)
    if got is None:
        got = _TYPES.put(key, _datatype(Cursor(body, f, what + " datatype")), len(body))
    return got


def _name(c: Cursor, version: int) -> str:
    start = c.pos
    raw = c.cstring()
    if version < 3:
        c.align(8, start)
    return raw.decode("utf-8", "surrogateescape")


def _datatype(c: Cursor) -> Datatype:
    first = c.u8()
    version, cls = first >> 4, first & 0x0F
    bits = c.u8() | c.u8() << 8 | c.u8() << 16
    size = c.u32()
    dt = Datatype(cls, size, bits)
    order = ">" if bits & 1 else "<"
    if cls == FIXED:
        dt.props = {"offset": c.u16(), "precision": c.u16(), "signed": bool(bits & 8)}
        if size not in (1, 2, 4, 8):
            raise Fallback(f"an integer type of {size} bytes")
        dt.numpy = np.dtype(f"{order}{'i' if bits & 8 else 'u'}{size}")
    elif cls == FLOAT:
        off, prec = c.u16(), c.u16()
        eloc, esize, mloc, msize, ebias = c.u8(), c.u8(), c.u8(), c.u8(), c.u32()
        if bits & 0x40:
            raise Fallback("a VAX-order floating-point type")
        dt.props = {
            "offset": off,
            "precision": prec,
            "fields": (bits >> 8 & 0xFF, eloc, esize, mloc, msize),
            "ebias": ebias,
            "norm": bits >> 4 & 3,
        }
        if size not in (2, 4, 8):
            raise Fallback(f"a floating-point type of {size} bytes")
        dt.numpy = np.dtype(f"{order}f{size}")
    elif cls == STRING:
        dt.numpy = np.dtype(f"S{size}")
    elif cls == OPAQUE:
        c.take(bits & 0xFF)  # the tag
        dt.numpy = np.dtype(f"V{size}")
    elif cls == COMPOUND:
        n = bits & 0xFFFF
        names, formats, offsets = [], [], []
        for _ in range(n):
            name = _name(c, version)
            if version >= 3:
                nb = max(1, (size.bit_length() + 7) // 8)
                off = c.u(nb)
            else:
                off = c.u32()
            if version == 1:
                ndims = c.u8()
                c.skip(3 + 4 + 4)
                dims = [c.u32() for _ in range(4)][:ndims]
                member = _datatype(c)
                if ndims:
                    raise Fallback("a compound type with version-1 array members")
                del dims
            else:
                member = _datatype(c)
            dt.members.append((name, off, member))
            names.append(name)
            formats.append(member.numpy)
            offsets.append(off)
        if _is_complex(dt):
            m = dt.members[0][2]
            dt.numpy = np.dtype(f"{'>' if m.big_endian else '<'}c{2 * m.size}")
        else:
            dt.numpy = np.dtype(
                {"names": names, "formats": formats, "offsets": offsets, "itemsize": size}
            )
    elif cls == REFERENCE:
        if bits & 0xF != 0:
            raise Fallback("region references")
        dt.numpy = _REF_DTYPE
    elif cls == ENUM:
        n = bits & 0xFFFF
        base = _datatype(c)
        names = [_name(c, version) for _ in range(n)]
        raw = c.take(base.size * n)
        values = np.frombuffer(raw, base.numpy).tolist() if base.numpy is not None else []
        dt.base = base
        dt.props = {"names": names, "values": values}
        if names == ["FALSE", "TRUE"] and values == [0, 1] and base.size == 1:
            dt.numpy = np.dtype("?")
        else:
            dt.numpy = np.dtype(base.numpy, metadata={"enum": dict(zip(names, values))})
    elif cls == VLEN:
        base = _datatype(c)
        dt.base = base
        if bits & 0xF == 1:
            dt.numpy = _VLEN_STR["utf-8" if bits >> 8 & 0xF else "ascii"]
        else:
            dt.numpy = np.dtype("O", metadata={"vlen": base.numpy})
    elif cls == ARRAY:
        ndims = c.u8()
        if version == 2:
            c.skip(3)
        array_dims = tuple(c.u32() for _ in range(ndims))
        if version == 2:
            c.skip(4 * ndims)
        base = _datatype(c)
        dt.base = base
        dt.props = {"dims": array_dims}
        dt.numpy = np.dtype((base.numpy, array_dims))
    elif cls == COMPLEX:
        base = _datatype(c)
        dt.base = base
        dt.numpy = np.dtype(f"{'>' if base.big_endian else '<'}c{size}")
    else:
        raise Fallback(f"datatype class {cls} ({'time' if cls == TIME else 'bitfield'})")
    return dt


def _is_complex(dt: Datatype) -> bool:
    """h5py's reading of a compound of two floats named r and i as a complex number."""
    if len(dt.members) != 2:
        return False
    (n0, o0, t0), (n1, o1, t1) = dt.members
    return (
        (n0, n1) == ("r", "i")
        and t0.cls == FLOAT
        and t1.cls == FLOAT
        and t0.size == t1.size
        and t0.big_endian == t1.big_endian
        and o0 == 0
        and o1 == t0.size
        and dt.size == 2 * t0.size
    )


_STD_FLOATS = {
    2: ((15, 10, 5, 0, 10), 15, 16),
    4: ((31, 23, 8, 0, 23), 127, 32),
    8: ((63, 52, 11, 0, 52), 1023, 64),
}


def standard_float(dt: Datatype) -> bool:
    std = _STD_FLOATS.get(dt.size)
    p = dt.props
    return (
        std is not None
        and p["fields"] == std[0]
        and p["ebias"] == std[1]
        and p["norm"] == 2
        and p["precision"] == std[2]
        and p["offset"] == 0
    )


def standard_layout(dt: Datatype) -> bool:
    """True if the stored bytes are exactly numpy's dtype of the same size (dtypes.py rule)."""
    if dt.cls == ENUM:
        assert dt.base is not None, "_datatype gives an enum its base type"
        return standard_layout(dt.base)
    if dt.cls == FIXED:
        return dt.props["precision"] == 8 * dt.size and dt.props["offset"] == 0
    if dt.cls == FLOAT:
        return standard_float(dt)
    if dt.cls == STRING:
        return True
    if dt.cls == COMPOUND:
        if len(dt.members) != 2:
            return False
        half = dt.size // 2
        return [o for _, o, _ in dt.members] == [0, half] and all(
            t.cls == FLOAT and standard_float(t) and t.size == half for _, _, t in dt.members
        )
    if dt.cls == COMPLEX:
        assert dt.base is not None, "_datatype gives a complex type its base type"
        return standard_float(dt.base)
    return False


def parse_fill_value(f: H5File, body: bytes, what: str, old: bool = False) -> bytes | None:
    """The fill value's bytes (None: undefined or HDF5's default of zeros)."""
    c = Cursor(body, f, what + " fill value")
    if old:
        size = c.u32()
        return c.take(size) if size else None
    version = c.u8()
    if version in (1, 2):
        c.skip(2)  # allocation time, write time
        defined = c.u8()
        if version == 1 or defined:
            size = c.u32()
            return c.take(size) if size and defined else None
        return None
    if version == 3:
        flags = c.u8()
        if flags & 0x20:
            size = c.u32()
            return c.take(size) if size else None
        return None
    raise f.corrupt(what, f"fill value message version {version}")


def parse_filters(f: H5File, body: bytes, what: str) -> list[Any]:
    """The filter pipeline as :class:`~virtualizarr.parsers.hdf5.filters.Filter` objects."""
    from virtualizarr.parsers.hdf5.filters import FILTER_NAMES, Filter

    c = Cursor(body, f, what + " filter pipeline")
    version, n = c.u8(), c.u8()
    if version == 1:
        c.skip(6)
    elif version != 2:
        raise f.corrupt(what, f"filter pipeline version {version}")
    out = []
    for _ in range(n):
        fid = c.u16()
        namelen = c.u16() if version == 1 or fid >= 256 else 0
        c.u16()  # flags
        ncd = c.u16()
        raw = c.take(namelen) if namelen else b""
        if version == 1 and namelen % 8:
            c.skip(8 - namelen % 8)
        cd = tuple(c.u32() for _ in range(ncd))
        if version == 1 and ncd % 2:
            c.skip(4)
        name = raw.split(b"\0")[0].decode("ascii", "replace")
        out.append(Filter(fid, cd, FILTER_NAMES.get(fid) or name or f"filter {fid}"))
    return out


@dataclass(slots=True)
class Attribute:
    name: bytes
    dtype: Datatype
    space: Dataspace
    data: bytes
    order: int | None = None


_ATTR_HEAD = struct.Struct("<BBHHH")


def parse_attribute(f: H5File, body: bytes, what: str, resolve_type: Any) -> Attribute:
    """An attribute message; ``resolve_type(body)`` reads a shared (committed) datatype."""
    if len(body) < 8:
        raise f.corrupt(what + " attribute", f"truncated ({len(body)} bytes, needs 8)")
    version, flags, nlen, tlen, slen = _ATTR_HEAD.unpack_from(body)
    if version not in (1, 2, 3):
        raise f.corrupt(what, f"attribute message version {version}")
    if version == 1:
        flags = 0  # reserved
        # version 1 pads each field to a multiple of 8 bytes
        spans = [nlen, tlen, slen]
        sizes = [n + (-n) % 8 for n in spans]
        pos = 8
    else:
        spans = sizes = [nlen, tlen, slen]
        pos = 9 if version == 3 else 8  # version 3: the name's character set
    fields = []
    for n, size in zip(spans, sizes):
        if pos + size > len(body):
            raise f.corrupt(
                what + " attribute", f"truncated ({len(body)} bytes, needs {pos + size})"
            )
        fields.append(body[pos : pos + n])
        pos += size
    name = fields[0].split(b"\0")[0]
    if flags & 0x02:
        raise Fallback("shared dataspaces in attributes")
    dtype = resolve_type(fields[1]) if flags & 0x01 else parse_datatype(f, fields[1], what)
    space = parse_dataspace(f, fields[2], what)
    return Attribute(name, dtype, space, body[pos:])


@dataclass(slots=True)
class Link:
    name: bytes
    kind: str
    """hard, soft, external or user."""
    address: int | None = None
    target: str = ""
    order: int | None = None


def parse_link(f: H5File, body: bytes, what: str) -> Link:
    c = Cursor(body, f, what + " link")
    version = c.u8()
    if version != 1:
        raise f.corrupt(what, f"link message version {version}")
    flags = c.u8()
    ltype = c.u8() if flags & 0x08 else 0
    order = c.u(8) if flags & 0x04 else None
    if flags & 0x10:
        c.skip(1)
    nlen = c.u(1 << (flags & 3))
    name = c.take(nlen)
    if ltype == 0:
        return Link(name, "hard", c.addr(), order=order)
    if ltype == 1:
        n = c.u16()
        return Link(name, "soft", target=c.take(n).decode("utf-8", "surrogateescape"), order=order)
    if ltype == 64:
        n = c.u16()
        info = c.take(n)
        filename = info[1:].split(b"\0")[0].decode("utf-8", "surrogateescape")
        return Link(name, "external", target=filename, order=order)
    return Link(name, "user", order=order)


@dataclass(frozen=True, slots=True)
class DenseInfo:
    """Link info or attribute info: where dense storage lives, whether order is tracked."""

    tracked: bool
    heap: int | None
    name_index: int | None
    order_index: int | None


def parse_dense_info(f: H5File, body: bytes, what: str, *, links: bool) -> DenseInfo:
    c = Cursor(body, f, what + (" link info" if links else " attribute info"))
    version = c.u8()
    if version != 0:
        raise f.corrupt(what, f"link/attribute info version {version}")
    flags = c.u8()
    if flags & 1:
        c.skip(8 if links else 2)
    heap, name_index = c.addr(), c.addr()
    order_index = c.addr() if flags & 2 else None
    return DenseInfo(bool(flags & 1), heap, name_index, order_index)


def parse_symbol_table(f: H5File, body: bytes, what: str) -> tuple[int, int]:
    c = Cursor(body, f, what + " symbol table message")
    btree, heap = c.addr(), c.addr()
    if btree is None or heap is None:
        raise f.corrupt(what, "symbol table message with undefined addresses")
    return btree, heap
