"""Finding the messages and fields of a GRIB file, in few requests.

Two steps, both through the file's :class:`~virtualizarr.io.ByteSource`:

1. **Locate** the messages: each starts with ``GRIB`` and its section 0 gives its length,
   so the next one starts right after it. Remote files are read in large sequential
   blocks sized from the messages seen so far (the whole file when it is small; about
   64 messages per block, 4-64 MiB); files of very large messages are read with a
   small window at each message start instead. A ``FILE.idx`` sidecar (NOAA ``wgrib2``
   style) or an ECMWF JSON-lines ``FILE.index`` beside a large remote file gives the
   offsets directly; it is checked against the messages it points at.
2. **Headers**: sections 1-6 of every field of every message (never the bitmap or the
   data), fetched in one concurrent batch (another batch when a field's headers run past
   the first window, as in multi-field messages).

Every section length, value count and bits-per-value is checked before ecCodes sees
any bytes (:mod:`virtualizarr.parsers.grib.sections`). Bytes between messages other
than short zero padding (ECMWF pads GRIB1 messages to multiples of 120 bytes) are
reported with a :class:`~virtualizarr.errors.VariableSkippedWarning`: a damaged message
header must not make its message vanish silently.
"""

from __future__ import annotations

import bisect
import json
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from virtualizarr.errors import CorruptFileError, ParserError, VariableSkippedWarning
from virtualizarr.io import LocalSource, open_source
from virtualizarr.parsers.grib.sections import (
    GribStructureError,
    NeedBytes,
    grib1_large_length,
    grib1_layout,
    grib2_fields,
    header_message,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from virtualizarr.io import ByteSource
    from virtualizarr.registry import ObjectStoreRegistry

__all__ = ["Message", "scan_messages"]

PADDING = 120
"""Zero bytes between messages shorter than this are padding, skipped without a word."""

SPARSE_WINDOW = 1 << 18
"""Bytes read at a message start when messages are too large to read through."""

HEADER_WINDOW = 1 << 16
"""Bytes read at least for a field's headers (sections 1-6 are a few hundred bytes)."""

MAX_BLOCK = 64 << 20
"""Largest sequential block of a remote scan (a round trip costs ~6 MB of transfer)."""

WHOLE_BELOW = 8 << 20
"""Remote files up to this size are fetched whole (in two requests: the head, then the rest)."""

INDEX_ABOVE = WHOLE_BELOW
"""Remote files larger than this look for a ``.idx``/``.index`` sidecar first."""


@dataclass(frozen=True, slots=True)
class Message:
    """One field of one message: the chunk to reference and the bytes ecCodes reads keys from.

    The chunk is ``length`` bytes from ``offset`` (the message start): the whole message
    for single-field messages (and the last field of a multi-field one), else up to the
    end of this field's data section (the codec decodes the last field of its bytes).
    """

    index: int
    field: int
    offset: int
    length: int
    header: bytes
    """Sections 0-5 of the field with an empty data section (GRIB2), the whole message (GRIB1)."""
    n_fields: int
    message_length: int

    @property
    def where(self) -> str:
        f = f" field {self.field}" if self.n_fields > 1 else ""
        return f"GRIB message {self.index}{f} at byte offset {self.offset}"


class _Cache:
    """The byte ranges fetched so far from a source; :class:`NeedBytes` for the others."""

    def __init__(self, src: ByteSource) -> None:
        self.src, self.size = src, src.size
        self._starts: list[int] = []
        self._data: list[bytes] = []

    def add(self, off: int, data: bytes) -> None:
        if data:
            i = bisect.bisect_left(self._starts, off)
            self._starts.insert(i, off)
            self._data.insert(i, data)

    def run(self, off: int) -> tuple[int, bytes]:
        """The cached piece holding byte ``off`` (start, bytes), or ``(off, b"")``."""
        i = bisect.bisect_right(self._starts, off) - 1  # pieces never overlap
        if i >= 0 and off < self._starts[i] + len(self._data[i]):
            return self._starts[i], self._data[i]
        return off, b""

    def end_before(self, off: int) -> int:
        """End of the last cached piece starting before ``off`` (0 if none)."""
        i = bisect.bisect_left(self._starts, off) - 1
        return self._starts[i] + len(self._data[i]) if i >= 0 else 0

    def get(self, off: int, n: int) -> bytes:
        """``n`` bytes from ``off`` (fewer at EOF), or raise :class:`NeedBytes`."""
        n = max(0, min(n, self.size - off))
        parts, pos, end = [], off, off + n
        while pos < end:
            s, d = self.run(pos)
            if not d:
                raise NeedBytes(pos, end - pos)
            parts.append(d[pos - s : end - s])
            pos = min(end, s + len(d))
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def fetch(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch ranges (clipped to the file, minus what is cached) in one concurrent batch."""
        want: list[tuple[int, int]] = []
        for off, n in sorted(ranges):
            end = min(off + n, self.size)
            pos = off
            while pos < end:  # skip the cached parts
                s, d = self.run(pos)
                if d:
                    pos = s + len(d)
                    continue
                i = bisect.bisect_right(self._starts, pos)
                stop = min(end, self._starts[i]) if i < len(self._starts) else end
                if want and pos <= want[-1][0] + want[-1][1]:
                    a = want[-1][0]
                    want[-1] = (a, max(want[-1][1], stop - a))
                else:
                    want.append((pos, stop - pos))
                pos = stop
        if want:
            for (off, _), data in zip(want, self.src.read_many(want)):
                self.add(off, data)


def scan_messages(url: str, registry: ObjectStoreRegistry) -> list[Message]:
    """Every field of every message of the file (see the module docs).

    >>> # fields = scan_messages("s3://bucket/gfs.grib2", registry)
    >>> # fields[0].offset, fields[0].length, fields[0].header[:4]
    """
    with open_source(url, registry) as src:
        return _scan(src, url, registry)


def _scan(src: ByteSource, url: str, registry: ObjectStoreRegistry) -> list[Message]:
    cache = _Cache(src)
    remote = not isinstance(src, LocalSource)
    if remote:
        cache.add(0, bytes(src.head))
    located = None
    if remote and src.size > INDEX_ABOVE:
        located = _from_sidecar(cache, url, registry)
    if located is None:
        located = _locate(cache, url, remote)
    if not located:
        raise ParserError(
            f"{url} holds no GRIB message (no 'GRIB' marker in its {src.size} bytes)."
        )
    return _fields(cache, url, located, remote)


# -- step 1: where the messages are -----------------------------------------------------------


def _corrupt(url: str, index: int, start: int, reason: str) -> CorruptFileError:
    return CorruptFileError(
        f"{url}: GRIB message {index} at byte offset {start} is corrupt: {reason}."
    )


def _section0(
    get: Callable[[int, int], bytes], url: str, index: int, start: int, size: int
) -> tuple[int, bool]:
    """``(length, large)`` of the message at ``start`` from its indicator section."""
    head = get(start, 16)
    if len(head) < 16:
        raise _corrupt(
            url,
            index,
            start,
            f"the file ends {len(head)} bytes into its indicator section (truncated)",
        )
    edition, large = head[7], False
    if edition == 2:
        length = int.from_bytes(head[8:16], "big")
    elif edition == 1:
        length = int.from_bytes(head[4:7], "big")
        if length & 0x800000:  # ECMWF convention for messages over 8 MiB
            length, large = grib1_large_length(lambda o, n: get(start + o, n), length, size - start)
    else:
        raise _corrupt(
            url, index, start, f"unknown GRIB edition {edition} in its indicator section"
        )
    if length < 20 or start + length > size:
        raise _corrupt(
            url,
            index,
            start,
            f"its length {length} runs past the end of the {size}-byte file (truncated)",
        )
    return length, large


# bytes of a WMO bulletin heading ("\x01\r\r\n123\r\r\nHTXA50 KWBC 281200\r\r\n") and its
# trailer ("\r\r\n\x03"): GRIB messages sent over the GTS are wrapped in them
_HEADING_BYTES = frozenset(b"\x00\x01\x03\r\n\t" + bytes(range(0x20, 0x7F)))


def _skipped(url: str, cache: _Cache, start: int, end: int, remote: bool) -> None:
    """Warn about bytes between messages that are not padding or a bulletin heading.

    Silent: fewer than 120 zero bytes (ECMWF pads GRIB1 messages to multiples of 120) or
    fewer than 128 bytes of text (a WMO heading). Anything else may be a message whose
    indicator section was damaged, so it is reported rather than dropped silently.
    """
    n = end - start
    if n <= 0:
        return
    if n < PADDING or n < 128:
        try:
            gap = cache.get(start, n)
        except NeedBytes:
            gap = None
        if gap is not None and (
            (n < PADDING and not any(gap)) or (n < 128 and set(gap) <= _HEADING_BYTES)
        ):
            return
    warnings.warn(
        f"{url}: bytes {start}-{end} ({n} bytes) between GRIB messages are not a message "
        "(a damaged message header, or junk); they are skipped, and any message they held "
        "is left out.",
        VariableSkippedWarning,
        stacklevel=5,
    )


def _locate(cache: _Cache, url: str, remote: bool) -> list[tuple[int, int, bool]]:
    """``(start, length, large)`` of every message, walking section-0 lengths."""
    size = cache.size
    out: list[tuple[int, int, bool]] = []
    pos, total = 0, 0
    while pos < size:
        block = _block_size(out, total, size, remote)

        def get(off: int, n: int, block: int = block) -> bytes:
            while True:
                try:
                    return cache.get(off, n)
                except NeedBytes as e:
                    # reading through: also fill the hole since the last piece (the
                    # rest of the message before), which step 2 would fetch on its own
                    lo = cache.end_before(e.offset)
                    lo = lo if e.offset - lo < block else e.offset
                    cache.fetch([(lo, e.offset - lo + max(e.length, block))])

        start = _find_marker(cache, get, pos, block)
        if start < 0:
            _skipped(url, cache, pos, size, remote)
            break
        _skipped(url, cache, pos, start, remote)
        length, large = _section0(get, url, len(out), start, size)
        out.append((start, length, large))
        total += length
        pos = start + length
    return out


def _block_size(out: list[tuple[int, int, bool]], total: int, size: int, remote: bool) -> int:
    """Bytes to fetch at a cache miss while locating messages."""
    if not remote:
        return HEADER_WINDOW  # a pread per message start costs microseconds
    if size <= WHOLE_BELOW:
        return size  # one more round trip at most: the whole file
    if not out:
        return 4 << 20
    mean = total // len(out)
    if mean > 4 << 20:  # a round trip per message is cheaper than reading them through
        return SPARSE_WINDOW
    return max(4 << 20, min(MAX_BLOCK, 64 * mean))


def _find_marker(cache: _Cache, get: Callable[[int, int], bytes], pos: int, block: int) -> int:
    """Offset of the next ``GRIB`` at or after ``pos``, or -1."""
    size = cache.size
    while pos < size:
        get(pos, 1)
        s, d = cache.run(pos)
        i = d.find(b"GRIB", pos - s)
        if i >= 0:
            return s + i
        end = s + len(d)
        if end >= size:
            return -1
        get(end, min(block, size - end))
        j = get(end - 3, 6).find(b"GRIB")  # a marker straddling two pieces
        if j >= 0 and end - 3 + j >= pos:
            return end - 3 + j
        pos = end
    return -1


def _from_sidecar(
    cache: _Cache, url: str, registry: ObjectStoreRegistry
) -> list[tuple[int, int, bool]] | None:
    """Message offsets from ``FILE.idx`` (wgrib2) or ``FILE.index`` (ECMWF JSON lines), if usable.

    Each offset is checked: a ``GRIB`` marker there, a section-0 length that ends at or
    before the next offset. A sidecar that does not match its file is ignored (with a
    warning) and the file is scanned instead.
    """
    offsets = None
    for suffix, parse in ((".idx", _parse_wgrib2_idx), (".index", _parse_ecmwf_index)):
        try:
            with open_source(url + suffix, registry) as side:
                text = side.read(0, side.size)
        except (OSError, ValueError):
            continue
        try:
            offsets = parse(text.decode("utf-8", "replace"))
        except (ValueError, KeyError, TypeError):
            offsets = None
        if offsets:
            break
    if not offsets:
        return None
    size = cache.size
    offsets = sorted(set(offsets))
    if offsets[0] < 0 or offsets[-1] + 16 > size:
        _sidecar_mismatch(url, "an offset lies past the end of the file")
        return None
    cache.fetch([(o, SPARSE_WINDOW) for o in offsets])
    out = []
    for i, off in enumerate(offsets):
        if cache.get(off, 4) != b"GRIB":
            _sidecar_mismatch(url, f"no GRIB message at byte {off}")
            return None
        try:
            length, large = _section0(cache.get, url, i, off, size)
        except (CorruptFileError, NeedBytes):
            _sidecar_mismatch(url, f"no valid GRIB message at byte {off}")
            return None
        nxt = offsets[i + 1] if i + 1 < len(offsets) else size
        if off + length > nxt:
            _sidecar_mismatch(url, f"the message at byte {off} overlaps the next one")
            return None
        if nxt - (off + length) >= PADDING:  # room for a message the sidecar does not list
            _sidecar_mismatch(url, f"bytes {off + length}-{nxt} are in no listed message")
            return None
        out.append((off, length, large))
    if offsets[0] >= 128:
        _sidecar_mismatch(url, f"the first {offsets[0]} bytes are in no listed message")
        return None
    return out


def _sidecar_mismatch(url: str, reason: str) -> None:
    warnings.warn(
        f"{url}: its index sidecar does not match the file ({reason}); scanning the file instead.",
        VariableSkippedWarning,
        stacklevel=4,
    )


def _parse_wgrib2_idx(text: str) -> list[int]:
    """Byte offsets of a wgrib2 inventory: ``1:0:d=2024010100:TMP:2 m above ground:anl:``.

    Sub-messages (``1.2:0:...``, fields of one message) share their message's offset.
    """
    return [int(line.split(":", 2)[1]) for line in text.splitlines() if line.strip()]


def _parse_ecmwf_index(text: str) -> list[int]:
    """Byte offsets of an ECMWF JSON-lines index (``{"_offset": 0, "_length": 609069, ...}``)."""
    return [int(json.loads(line)["_offset"]) for line in text.splitlines() if line.strip()]


# -- step 2: the fields of each message -------------------------------------------------------


def _fields(
    cache: _Cache, url: str, located: list[tuple[int, int, bool]], remote: bool
) -> list[Message]:
    pending = list(range(len(located)))
    done: dict[int, list[Message]] = {}
    first = True
    while pending:
        needs: list[tuple[int, int]] = []
        still = []
        for i in pending:
            start, length, large = located[i]
            try:
                done[i] = _message_fields(cache.get, url, i, start, length, large)
            except NeedBytes as e:
                still.append(i)
                end = start + length
                if first:  # the headers and the end marker, in one batch for all messages
                    needs += [(start, min(HEADER_WINDOW, length)), (end - 4, 4)]
                needs.append((e.offset, min(max(e.length, HEADER_WINDOW), end - e.offset)))
        if still and not needs:
            raise AssertionError("no progress")  # pragma: no cover
        cache.fetch(needs)
        pending, first = still, False
    return [m for i in range(len(located)) for m in done[i]]


def _message_fields(
    get: Callable[[int, int], bytes], url: str, index: int, start: int, length: int, large: bool
) -> list[Message]:
    if get(start + length - 4, 4) != b"7777":
        raise _corrupt(
            url,
            index,
            start,
            f"no '7777' end marker at byte {start + length - 4} (bad length {length})",
        )

    def rel(off: int, n: int) -> bytes:
        return get(start + off, n)

    edition = get(start + 7, 1)[0]
    try:
        if edition == 1:
            grib1_layout(rel, length, large)
            return [Message(index, 0, start, length, get(start, length), 1, length)]
        fields = grib2_fields(rel, length)
    except GribStructureError as e:
        raise _corrupt(url, index, start, str(e)) from None
    n = len(fields)
    return [
        Message(
            index,
            k,
            start,
            length if k == n - 1 else f.end,
            header_message(rel, f),
            n,
            length,
        )
        for k, f in enumerate(fields)
    ]
