"""GRIB message structure from the bytes alone: section lengths, fields, and sanity checks.

ecCodes trusts the header fields of the bytes it is given, and some bad values kill the
process (a GRIB1 grid-section length of 0x7fffff segfaults it; a value count of 2^30 or
255 bits per value in section 5 abort it). So every section length, value count and
bits-per-value is checked here, against the message length and the data section, before
ecCodes sees the bytes: by the scan (parse time) and by the codec (read time).

Functions raise :class:`GribStructureError` with the reason only; callers add the file,
the message and its offset.

>>> # fields = grib2_fields(lambda off, n: msg[off:off + n], len(msg))
>>> # fields[0].end  # end of the first field's data section, from the message start
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "MAX_POINTS",
    "Grib1Layout",
    "Grib2Field",
    "GribStructureError",
    "NeedBytes",
    "check_grib1_values",
    "check_points",
    "decodable_message",
    "grib1_large_length",
    "grib1_layout",
    "header_message",
    "grib2_fields",
    "single_field_message",
]

MAX_POINTS = 1 << 25
"""Points a message may claim whatever its size (a constant field codes any number in 0 bytes).

Beyond this, a message must be large enough to plausibly hold its points (see
:func:`check_points`): 2^25 points are 512 MiB of float64 latitude/longitude, more than any
operational grid (ERA5 0.25 deg: 2^20; 0.1 deg global: 6.5e6).
"""

# smallest legal lengths of GRIB2 sections 1-7 (the fixed octets every template has)
_MIN_LEN = {1: 21, 2: 5, 3: 14, 4: 9, 5: 11, 6: 6, 7: 5}
# sections that may follow each section (0: the indicator); 8 = end marker "7777"
_NEXT = {0: {1}, 1: {2, 3}, 2: {3}, 3: {4}, 4: {5}, 5: {6}, 6: {7}, 7: {2, 3, 4, 8}}


class GribStructureError(ValueError):
    """A message's structure is impossible (the reason; the caller names file and message)."""


class NeedBytes(Exception):
    """Raised by a reader callback when bytes ``(offset, length)`` are not available yet."""

    def __init__(self, offset: int, length: int) -> None:
        super().__init__(offset, length)
        self.offset, self.length = offset, length


def _u(b: bytes) -> int:
    return int.from_bytes(b, "big")


def check_points(npoints: int, message_length: int) -> None:
    """Refuse a number of points that is zero, or too large for the message to hold."""
    if npoints <= 0:
        raise GribStructureError(f"its grid has {npoints} data points")
    if npoints > max(MAX_POINTS, 64 * message_length):
        raise GribStructureError(
            f"it claims {npoints} data points, impossible for a message of {message_length} bytes"
        )


# -- GRIB2 ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grib2Field:
    """One field of a GRIB2 message: ``(offset, length)`` of the sections it uses.

    Offsets are from the start of the message. Sections 2 and 3 may be shared with
    earlier fields of the same message (the latest ones before this field apply);
    ``bitmap`` is the section 6 holding this field's bitmap (its own, or an earlier
    one when its section 6 says "254: the bitmap defined before"), or ``None``.
    """

    sec1: tuple[int, int]
    sec2: tuple[int, int] | None
    sec3: tuple[int, int]
    sec4: tuple[int, int]
    sec5: tuple[int, int]
    sec6: tuple[int, int]
    sec7: tuple[int, int]
    bitmap: tuple[int, int] | None

    @property
    def end(self) -> int:
        """End of this field's data section (from the message start)."""
        return self.sec7[0] + self.sec7[1]


def grib2_fields(read: Callable[[int, int], bytes], length: int) -> list[Grib2Field]:
    """Every field of one GRIB2 message of ``length`` bytes, after checking its structure.

    ``read(offset, n)`` returns bytes of the message (offsets from its start); it may
    raise :class:`NeedBytes` when they are not at hand, to be called again once they are.
    Only section headers and sections 3 and 5 are read, never the bitmap or the data.
    """
    fields: list[Grib2Field] = []
    latest: dict[int, tuple[int, int]] = {}
    last_bitmap: tuple[int, int] | None = None
    pos, prev = 16, 0
    while pos < length - 4:
        if pos + 5 > length - 4:
            raise GribStructureError(f"{length - 4 - pos} stray bytes before its end marker")
        head = read(pos, 5)
        n, num = _u(head[:4]), head[4]
        if num not in _NEXT[prev]:
            raise GribStructureError(
                f"section {num} at byte {pos} of the message cannot follow section {prev}"
            )
        if n < _MIN_LEN[num] or pos + n > length - 4:
            raise GribStructureError(
                f"section {num} at byte {pos} of the message has length {n}, which does not "
                f"fit the {length}-byte message"
            )
        latest[num] = (pos, n)  # a repeated section 3 keeps the earlier section 2 in force
        if num == 6:
            indicator = read(pos + 5, 1)[0]
            if indicator == 0:
                last_bitmap = (pos, n)
            elif indicator == 254 and last_bitmap is None:
                raise GribStructureError(
                    f"section 6 at byte {pos} reuses a previous bitmap, but none was defined"
                )
            latest[-6] = last_bitmap if indicator in (0, 254) else None  # type: ignore[assignment]
        if num == 7:
            field = Grib2Field(
                latest[1],
                latest.get(2),
                latest[3],
                latest[4],
                latest[5],
                latest[6],
                (pos, n),
                latest.get(-6),
            )
            _check_field(read, field, length)
            fields.append(field)
        pos += n
        prev = num
    if prev != 7:
        raise GribStructureError(
            "it has no data section (7)" if not fields else f"it ends after section {prev}"
        )
    return fields


def _check_field(read: Callable[[int, int], bytes], f: Grib2Field, length: int) -> None:
    """Value count and bits per value against the grid, the bitmap and the data section."""
    s3 = read(f.sec3[0], 14)
    npoints = _u(s3[6:10])
    check_points(npoints, length)
    s5 = read(f.sec5[0], min(f.sec5[1], 49))
    nvalues, template = _u(s5[5:9]), _u(s5[9:11])
    if nvalues > npoints:
        raise GribStructureError(f"section 5 codes {nvalues} values on a grid of {npoints} points")
    if read(f.sec6[0] + 5, 1)[0] == 255 and nvalues != npoints:
        # without a bitmap every point has a value (GRIB2 regulation 92.9.3)
        raise GribStructureError(
            f"section 5 codes {nvalues} values on a grid of {npoints} points without a bitmap"
        )
    if f.bitmap is not None and (f.bitmap[1] - 6) * 8 < npoints:
        raise GribStructureError(
            f"its bitmap of {(f.bitmap[1] - 6) * 8} bits is shorter than its {npoints} points"
        )
    data_bits = (f.sec7[1] - 5) * 8

    def need(n: int) -> None:
        if len(s5) < n:
            raise GribStructureError(
                f"section 5 (template 5.{template}) has {len(s5)} bytes, fewer than its {n}"
            )

    if template in (0, 1, 2, 3, 40, 41, 42, 50, 51, 61, 200):
        need(20)
        bpv = s5[19]
        if template in (0, 1, 50, 61):
            if bpv > 64:
                raise GribStructureError(f"section 5 says {bpv} bits per value (at most 64)")
            if template in (0, 61) and nvalues * bpv > data_bits:
                raise GribStructureError(
                    f"{nvalues} values of {bpv} bits need {nvalues * bpv} bits, its data "
                    f"section holds {data_bits}"
                )
        elif template in (2, 3):
            need(47 if template == 2 else 49)
            ngroups, width_bits, len_bits = _u(s5[31:35]), s5[36], s5[46]
            if bpv > 32 or width_bits > 32 or len_bits > 32:
                raise GribStructureError(
                    f"section 5 (complex packing) has {bpv}/{width_bits}/{len_bits} bits for "
                    "group references/widths/lengths (at most 32)"
                )
            if ngroups > max(nvalues, 1) or ngroups * (bpv + width_bits + len_bits) > data_bits:
                raise GribStructureError(
                    f"section 5 (complex packing) has {ngroups} groups for {nvalues} values "
                    f"and a data section of {data_bits} bits"
                )
            if template == 3:
                order, octets = s5[47], s5[48]
                if (
                    order not in (1, 2)
                    or not 1 <= octets <= 4
                    or (order + 1) * octets * 8 > data_bits
                ):
                    raise GribStructureError(
                        f"section 5 (spatial differencing) has order {order} with {octets}-octet "
                        "descriptors"
                    )
        elif bpv > 32:
            raise GribStructureError(
                f"section 5 (template 5.{template}) says {bpv} bits per value (at most 32)"
            )
    elif template == 4:
        need(12)
        size = {1: 4, 2: 8, 3: 16}.get(s5[11], 0)
        if size == 0 or nvalues * size * 8 > data_bits:
            raise GribStructureError(
                f"IEEE packing of precision {s5[11]} for {nvalues} values does not fit its data "
                f"section of {data_bits // 8} bytes"
            )


def single_field_message(msg: bytes, fields: list[Grib2Field], k: int) -> bytes:
    """Field ``k`` of a multi-field message as a message of its own (sections 0-8).

    Sections 2 and 3 are the latest before the field; a section 6 that reuses an earlier
    bitmap (indicator 254) is replaced by that bitmap. Decoding it with ecCodes gives the
    values ecCodes gives for that field of the whole message.
    """
    f = fields[k]

    def sec(r: tuple[int, int] | None) -> bytes:
        return b"" if r is None else msg[r[0] : r[0] + r[1]]

    sec6 = sec(f.sec6)
    if sec6[5] == 254 and f.bitmap is not None:
        sec6 = sec(f.bitmap)
    body = sec(f.sec1) + sec(f.sec2) + sec(f.sec3) + sec(f.sec4) + sec(f.sec5) + sec6 + sec(f.sec7)
    total = 16 + len(body) + 4
    return bytes(msg[:8]) + total.to_bytes(8, "big") + body + b"7777"


def header_message(msg_head: Callable[[int, int], bytes], f: Grib2Field) -> bytes:
    """Field ``f`` as a message without its values: sections 0-5, no bitmap, empty data.

    ecCodes reads every key but the values (and the bitmap) from these bytes, so neither
    the bitmap nor the packed data is fetched while parsing.
    """
    parts = [msg_head(r[0], r[1]) for r in (f.sec1, f.sec2, f.sec3, f.sec4, f.sec5) if r]
    body = b"".join(parts) + b"\x00\x00\x00\x06\x06\xff" + b"\x00\x00\x00\x05\x07"
    total = 16 + len(body) + 4
    return bytes(msg_head(0, 8)) + total.to_bytes(8, "big") + body + b"7777"


# -- GRIB1 ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grib1Layout:
    """Where the sections of a GRIB1 message lie (offsets from the message start)."""

    pds: tuple[int, int]
    gds: tuple[int, int] | None
    bms: tuple[int, int] | None
    bds: tuple[int, int]


def grib1_layout(read: Callable[[int, int], bytes], length: int, large: bool) -> Grib1Layout:
    """The sections of a GRIB1 message of ``length`` bytes, after checking their lengths.

    ``large``: the message uses ECMWF's convention for messages over 8 MiB, where the
    data section's length field is not its length (it runs to the end marker).
    Only the section headers and the data section's first 11 bytes are read.
    """
    end = length - 4

    def section(name: str, pos: int, minimum: int) -> tuple[int, int]:
        if pos + 3 > end:
            raise GribStructureError(f"its {name} at byte {pos} starts past its end")
        n = _u(read(pos, 3))
        if n < minimum or pos + n > end:
            raise GribStructureError(
                f"its {name} at byte {pos} has length {n}, which does not fit the "
                f"{length}-byte message"
            )
        return pos, n

    pds = section("product definition section", 8, 28)
    flags = read(8 + 7, 1)[0]
    pos = 8 + pds[1]
    gds = bms = None
    if flags & 0x80:
        gds = section("grid description section", pos, 32)
        pos += gds[1]
    if flags & 0x40:
        bms = section("bitmap section", pos, 6)
        pos += bms[1]
    if large:
        if pos + 11 > end:
            raise GribStructureError(f"its binary data section at byte {pos} starts past its end")
        bds = (pos, end - pos)
    else:
        bds = section("binary data section", pos, 11)
    b = read(bds[0], 11)
    bpv, unused = b[10], b[3] & 0x0F
    if b[3] & 0x80 == 0 and bpv > 64:  # grid-point data; spherical harmonics are checked by ecCodes
        raise GribStructureError(f"its data section says {bpv} bits per value (at most 64)")
    if (bds[1] - 11) * 8 < unused:
        raise GribStructureError(
            f"its data section has {unused} unused bits in {bds[1] - 11} bytes"
        )
    return Grib1Layout(pds, gds, bms, bds)


def grib1_large_length(
    read: Callable[[int, int], bytes], coded: int, available: int
) -> tuple[int, bool]:
    """Length of a GRIB1 message over 8 MiB (ECMWF): coded in 120-byte units, corrected by the BDS.

    ``read(offset, n)`` reads from the message start; ``available`` bytes can be read
    (a length past them is returned as ``available + 1``, for the caller to refuse).
    Returns the length and whether the convention applies (else the 24 bits are the length).
    """
    pds = read(8, 8)
    pos, flags = 8 + _u(pds[:3]), pds[7]
    for present in (flags & 0x80, flags & 0x40):  # grid description, then bitmap section
        if present:
            if pos + 3 > available:
                return available + 1, False
            pos += _u(read(pos, 3))
    if pos + 3 > available:
        return available + 1, False
    bds_len = _u(read(pos, 3))
    if bds_len < 120:
        return (coded & 0x7FFFFF) * 120 - bds_len + 4, True
    return coded, False


def decodable_message(data: bytes) -> bytes:
    """The bytes of one chunk (a message, or a message cut after one field) as ecCodes should see them.

    A chunk is a whole message, or -- for a field of a multi-field GRIB2 message -- the
    message from its start to the end of that field's data section. The structure is
    checked (:func:`grib2_fields`, :func:`grib1_layout`) and the last field of the
    bytes is returned as a single-field message.
    """
    if len(data) < 16 or data[:4] != b"GRIB":
        raise GribStructureError(
            f"its {len(data)} bytes do not start with a GRIB indicator section"
        )

    def read(off: int, n: int) -> bytes:
        return data[off : off + n]

    edition = data[7]
    if edition == 1:
        length, large = _u(data[4:7]), False
        if length & 0x800000:
            if len(data) < 16 + 8:
                raise GribStructureError("it is truncated")
            length, large = grib1_large_length(read, length, len(data))
        if length < 20 or length > len(data) or data[length - 4 : length] != b"7777":
            raise GribStructureError(
                f"its length {length} does not end in '7777' within its {len(data)} bytes"
            )
        grib1_layout(read, length, large)
        return data[:length] if length != len(data) else data
    if edition != 2:
        raise GribStructureError(f"unknown GRIB edition {edition}")
    total = _u(data[8:16])
    whole = total == len(data) and data[-4:] == b"7777"
    if not whole and not 16 < len(data) <= total - 4:
        raise GribStructureError(
            f"its {len(data)} bytes are neither the {total}-byte message nor a part of it"
        )
    fields = grib2_fields(read, len(data) if whole else len(data) + 4)
    if whole and len(fields) == 1:
        return data
    return single_field_message(data, fields, len(fields) - 1)


def check_grib1_values(
    read: Callable[[int, int], bytes], layout: Grib1Layout, npoints: int
) -> None:
    """A GRIB1 message's bitmap and simple-packed values must cover its ``npoints`` points."""
    if layout.bms is not None:
        b = read(layout.bms[0], 6)
        if _u(b[4:6]) == 0 and (layout.bms[1] - 6) * 8 - b[3] < npoints:
            raise GribStructureError(
                f"its bitmap of {(layout.bms[1] - 6) * 8 - b[3]} bits is shorter than its "
                f"{npoints} points"
            )
        return
    b = read(layout.bds[0], 11)
    flags, unused, bpv = b[3] & 0xF0, b[3] & 0x0F, b[10]
    if flags & 0xD0 == 0 and bpv > 0:  # grid-point simple packing, no extended flags
        nvalues = ((layout.bds[1] - 11) * 8 - unused) // bpv
        if nvalues < npoints:
            raise GribStructureError(
                f"its data section holds {nvalues} values of {bpv} bits for {npoints} points"
            )
