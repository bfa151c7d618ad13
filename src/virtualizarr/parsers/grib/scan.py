"""Finding the messages of a GRIB file: offsets and lengths from the messages' own headers.

Only section 0 (and, for GRIB2, the 5-byte header of each section) is read to walk a
file, so a file of large messages costs a few small reads per message. For each message
the bytes ecCodes needs for its keys are kept: the whole message for GRIB1, and for GRIB2
sections 0-6 with an empty data section, so the (large) packed data is never fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from virtualizarr.errors import CorruptFileError, ParserError
from virtualizarr.io import file_size, open_reader

if TYPE_CHECKING:
    from virtualizarr.io import ObstoreReader
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["Message", "scan_messages"]

_EMPTY_SECTION7 = b"\x00\x00\x00\x05\x07"


@dataclass(frozen=True, slots=True)
class Message:
    """Where one message lies, and the bytes ecCodes reads its keys from."""

    index: int
    offset: int
    length: int
    header: bytes
    """The whole message (GRIB1), or sections 0-6 and an empty section 7 (GRIB2)."""
    n_fields: int


def scan_messages(url: str, registry: ObjectStoreRegistry) -> list[Message]:
    """Every message of the file, found by walking the messages' own lengths.

    Bytes between messages (padding, junk) are skipped up to the next ``GRIB`` marker.
    """
    size = file_size(url, registry)
    f = open_reader(url, registry, block_size=1 << 16)
    messages: list[Message] = []
    pos = 0
    while (start := _find_marker(f, pos, size)) >= 0:
        msg = _read_message(f, url, len(messages), start, size)
        messages.append(msg)
        pos = start + msg.length
    if not messages:
        raise ParserError(f"{url} holds no GRIB message (no 'GRIB' marker in its {size} bytes).")
    return messages


def _find_marker(f: ObstoreReader, pos: int, size: int, block: int = 1 << 16) -> int:
    while pos < size:
        f.seek(pos)
        i = f.read(block + 3).find(b"GRIB")  # +3: a marker straddling two blocks
        if i >= 0:
            return pos + i
        pos += block
    return -1


def _u(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _read_message(f: ObstoreReader, url: str, index: int, start: int, size: int) -> Message:
    def corrupt(reason: str) -> CorruptFileError:
        return CorruptFileError(
            f"{url}: GRIB message {index} at byte offset {start} is corrupt: {reason}."
        )

    f.seek(start)
    head = f.read(16)
    if len(head) < 16:
        raise corrupt(f"the file ends {len(head)} bytes into its indicator section (truncated)")
    edition = head[7]
    if edition == 2:
        length = _u(head[8:16])
    elif edition == 1:
        length = _u(head[4:7])
        if length & 0x800000:  # ECMWF large-message convention
            length = _grib1_large_length(f, start, length)
    else:
        raise corrupt(f"unknown GRIB edition {edition} in its indicator section")
    if length < 20 or start + length > size:
        raise corrupt(f"its length {length} runs past the end of the {size}-byte file (truncated)")
    if edition == 2:
        header, n_fields = _grib2_header(f, start, length, corrupt)
    else:
        f.seek(start)
        header, n_fields = f.read(length), 1
    f.seek(start + length - 4)
    if f.read(4) != b"7777":
        raise corrupt(f"no '7777' end marker at byte {start + length - 4} (bad length {length})")
    return Message(index, start, length, header, n_fields)


def _grib1_large_length(f: ObstoreReader, start: int, coded: int) -> int:
    """Length of a GRIB1 message over 8 MiB: coded in units of 120 bytes, corrected by the BDS."""
    f.seek(start + 8)
    pds = f.read(8)
    pos, flags = 8 + _u(pds[:3]), pds[7]
    for present in (flags & 0x80, flags & 0x40):  # grid description, then bitmap section
        if present:
            f.seek(start + pos)
            pos += _u(f.read(3))
    f.seek(start + pos)
    bds_len = _u(f.read(3))
    return (coded & 0x7FFFFF) * 120 - bds_len + 4 if bds_len < 120 else coded


def _grib2_header(f: ObstoreReader, start: int, length: int, corrupt: Any) -> tuple[bytes, int]:
    """Sections 0-6 of the first field plus an empty data section, and the number of fields.

    ecCodes reads every key but the values from these bytes, so the (large) data
    section is never fetched while parsing.
    """
    pos, first_data, n_fields = 16, 0, 0
    while pos < length - 4:
        f.seek(start + pos)
        sec = f.read(5)
        n, num = (_u(sec[:4]), sec[4]) if len(sec) == 5 else (0, 0)
        if n < 5 or pos + n > length - 4 or not 1 <= num <= 7:
            raise corrupt(f"section {num} at byte {pos} of the message has a bad length {n}")
        if num == 7:
            n_fields += 1
            first_data = first_data or pos
        pos += n
    if n_fields == 0:
        raise corrupt("it has no data section (7)")
    f.seek(start)
    header = bytearray(f.read(first_data)) + _EMPTY_SECTION7 + b"7777"
    header[8:16] = len(header).to_bytes(8, "big")
    return bytes(header), n_fields
