"""FITS headers without astropy: card parsing, header blocks, and the walk over the HDUs.

A FITS file is a sequence of HDUs; each is a header of 2880-byte blocks of 80-character
cards ending with ``END``, then its data padded to a multiple of 2880 bytes. The data size
follows from ``BITPIX``, ``NAXISn``, ``PCOUNT`` and ``GCOUNT``, so every header's offset
is known once the previous header is read. :func:`walk_hdus` reads the headers in a few
growing sequential reads, checks every size against the file's length before it is used,
and never reads the data.

Values parse as astropy parses them (``T``/``F`` booleans, integers, floats with ``E`` or
``D`` exponents, complex ``(re, im)``, quoted strings with ``''`` escapes and trailing
blanks dropped, ``CONTINUE`` long strings, ``HIERARCH`` keywords); a value that does not
parse is kept as its text, so one bad card costs one attribute, not the file.

>>> parse_card(b"NAXIS1  =                  100 / length of axis 1".ljust(80))
('NAXIS1', 100)
>>> parse_card(b"OBJECT  = 'M13 ''core'''".ljust(80))
('OBJECT', "M13 'core'")
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from virtualizarr.errors import CorruptFileError, ParserError, VariableSkippedWarning

__all__ = ["BLOCK", "HDU", "Header", "data_size", "parse_card", "walk_hdus"]

BLOCK = 2880
CARD = 80
_BITPIX = (8, 16, 32, 64, -32, -64)
_MAX_NAXIS = 999
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?")
_COMPLEX = re.compile(r"\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)")
_COMMENTARY = ("COMMENT", "HISTORY", "")


class Undefined:
    """The value of a card with an empty value field (astropy's ``Undefined``)."""

    def __repr__(self) -> str:
        return "Undefined"


UNDEFINED = Undefined()


def _number(text: str) -> Any:
    if text in ("T", "F"):
        return text == "T"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text.replace("D", "E").replace("d", "e"))
    m = _COMPLEX.fullmatch(text)
    if m:
        re_, im = (_number(g) for g in m.groups())
        if isinstance(re_, int | float) and isinstance(im, int | float):
            return complex(re_, im)
    raise ValueError(text)


def _string(text: str) -> tuple[str, str] | None:
    """``(value, rest)`` of a quoted string at the start of ``text``; None if unterminated."""
    out = []
    i = 1
    while i < len(text):
        c = text[i]
        if c == "'":
            if text[i + 1 : i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), text[i + 1 :]
        out.append(c)
        i += 1
    return None


def _value(text: str) -> Any:
    """The value of a value field (what follows ``= ``)."""
    text = text.lstrip(" ")
    if text.startswith("'"):
        parsed = _string(text)
        if parsed is None:
            raise ValueError(text)
        return parsed[0].rstrip(" ")
    text = text.split("/", 1)[0].strip()
    if not text:
        return UNDEFINED
    return _number(text)


def parse_card(card: bytes | str) -> tuple[str, Any]:
    """``(keyword, value)`` of one 80-character card.

    Commentary cards (``COMMENT``, ``HISTORY``, blank keyword, or no ``= `` value
    indicator) have their text as value. A value that does not parse is returned as its
    raw text (stripped), since astropy would refuse the whole header for it.

    >>> parse_card(b"BSCALE  =  1.3550135501355D-08 / scale".ljust(80))
    ('BSCALE', 1.3550135501355e-08)
    >>> parse_card(b"HIERARCH ESO DET chip = 'abc  ' / x".ljust(80))
    ('ESO DET chip', 'abc')
    """
    text = card.decode("ascii", "replace") if isinstance(card, bytes) else card
    text = text.ljust(CARD)[:CARD]
    keyword = text[:8].strip().upper()
    if keyword == "HIERARCH" and "=" in text[8:]:
        key, _, rest = text[9:].partition("=")
        keyword = key.strip()
        try:
            return keyword, _value(rest)
        except ValueError:
            return keyword, rest.strip()
    if keyword in _COMMENTARY or text[8:10] != "= ":
        return keyword, text[8:].rstrip(" ")
    try:
        return keyword, _value(text[10:])
    except ValueError:
        return keyword, text[10:].strip()


class Header:
    """An HDU's cards: ``(keyword, value)`` in order, looked up by first occurrence.

    Behaves like the parts of astropy's ``Header`` the FITS parser uses (``get``, ``in``,
    ``[]``, ``cards``), with lookups that raise :class:`CorruptFileError` naming the HDU.
    """

    def __init__(self, cards: list[tuple[str, Any]], what: str = "FITS header") -> None:
        self.cards_list = cards
        self.what = what
        self._index: dict[str, Any] = {}
        for key, value in cards:
            if key not in _COMMENTARY:
                self._index.setdefault(key, value)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "FITS header") -> Header:
        """Parse cards up to (not including) ``END``; the caller found the ``END``."""
        cards: list[tuple[str, Any]] = []
        for i in range(0, len(data) - CARD + 1, CARD):
            raw = data[i : i + CARD]
            if raw[:8] == b"END     ":
                break
            key, value = parse_card(raw)
            if key == "CONTINUE" and cards and _continues(cards[-1][1]):
                text = raw[8:].decode("ascii", "replace").lstrip(" ")
                more = _string(text) if text.startswith("'") else None
                if more is not None:
                    prev_key, prev = cards[-1]
                    cards[-1] = (prev_key, prev[:-1] + more[0].rstrip(" "))
                    continue
            cards.append((key, value))
        return cls(cards, what)

    @property
    def cards(self) -> Iterator[Any]:
        for key, value in self.cards_list:
            yield _Card(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        value = self._index.get(key, default)
        return default if value is UNDEFINED else value

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __getitem__(self, key: str) -> Any:
        if key not in self._index:
            raise CorruptFileError(f"{self.what}: the header has no {key} keyword.")
        return self._index[key]

    def integer(self, key: str, default: int | None = None, *, low: int = 0) -> int:
        """An integer keyword, checked to be an integer ``>= low``."""
        value = self.get(key, default) if default is not None else self[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise CorruptFileError(f"{self.what}: {key} = {value!r} is not an integer >= {low}.")
        return value

    def __repr__(self) -> str:
        return f"Header({len(self.cards_list)} cards)"


def _continues(value: Any) -> bool:
    return isinstance(value, str) and value.endswith("&")


@dataclass(frozen=True)
class _Card:
    keyword: str
    value: Any


@dataclass
class HDU:
    """One HDU: its index, header, where its header and data start, and its data size."""

    index: int
    header: Header
    header_offset: int
    data_offset: int
    data_size: int
    """Unpadded bytes of data (``BITPIX``/8 x ``GCOUNT`` x (``PCOUNT`` + axes product))."""
    shape: tuple[int, ...] = field(default=())
    """Numpy-order shape of ``NAXISn`` (``NAXIS1`` last)."""


def data_size(header: Header, primary: bool) -> tuple[int, tuple[int, ...]]:
    """Unpadded data bytes and the numpy-order ``NAXISn`` shape, all keywords checked."""
    what = header.what
    bitpix = header.get("BITPIX")
    if bitpix not in _BITPIX or isinstance(bitpix, bool):
        raise CorruptFileError(f"{what}: BITPIX = {bitpix!r} is not one of {_BITPIX}.")
    naxis = header.integer("NAXIS")
    if naxis > _MAX_NAXIS:
        raise CorruptFileError(f"{what}: NAXIS = {naxis} is more than {_MAX_NAXIS}.")
    axes = [header.integer(f"NAXIS{k}") for k in range(1, naxis + 1)]
    groups = primary and header.get("GROUPS") is True and naxis > 0 and axes[0] == 0
    pcount = header.integer("PCOUNT", 0) if (groups or not primary) else 0
    gcount = header.integer("GCOUNT", 1) if (groups or not primary) else 1
    if naxis == 0:
        nelem = 0
    else:
        nelem = 1
        for n in axes[1:] if groups else axes:
            nelem *= n  # Python integers: no overflow, checked against the file size after
    size = abs(bitpix) // 8 * gcount * (pcount + nelem) if naxis or pcount else 0
    return size, tuple(reversed(axes))


def _padded(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


class _Walker:
    """Header reads in growing sequential requests through ``read(offset, length)``.

    A header at most ``gap`` bytes past what was read is reached by reading on (the data
    between included), each such read twice as long as the one before (up to 64 MiB);
    one further away by a new read at the header. Remotely a round trip costs as much as
    a few MB of transfer, so a file of many small HDUs is read in a few growing requests;
    locally (``gap`` 0) only the headers are read.
    """

    def __init__(
        self, read: Callable[[int, int], bytes], size: int, first: int, gap: int = 0
    ) -> None:
        self._read = read
        self.size = size
        self._start = 0
        self._buf = b""
        self._next = max(first, BLOCK)
        self._gap = gap

    def span(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (fewer at the end of the file)."""
        end = min(offset + length, self.size)
        if self._start <= offset and end <= self._start + len(self._buf):
            return self._buf[offset - self._start : end - self._start]
        have = self._start + len(self._buf)
        if self._start <= offset <= have + self._gap:
            # read on from what we have: only what is missing, a growing amount
            want = max(end - have, self._next)
            self._next = min(self._next * 2, 64 << 20)
            more = self._read(have, min(want, self.size - have))
            if offset >= have:
                self._buf = more[offset - have :]
            else:
                self._buf = self._buf[offset - self._start :] + more
            self._start = offset
        else:  # a jump over data: a new buffer at the header (16 blocks hold most headers;
            # a remote source adds its own read-ahead)
            want = max(end - offset, 16 * BLOCK)
            self._buf = self._read(offset, min(want, self.size - offset))
            self._start = offset
        return self._buf[: end - offset]


def _warn_not_an_extension(url: str, size: int, offset: int, index: int) -> None:
    warnings.warn(
        f"{url}: the {size - offset} bytes after HDU {index - 1} (from byte {offset}) "
        "are not a FITS extension; ignored.",
        VariableSkippedWarning,
        stacklevel=4,  # the caller of walk_hdus' caller, as walk_hdus' own warnings
    )


def walk_hdus(
    read: Callable[[int, int], bytes],
    size: int,
    url: str,
    *,
    first_read: int = 16 * BLOCK,
    sequential_gap: int = 0,
) -> list[HDU]:
    """Every HDU of the FITS file ``url`` of ``size`` bytes, from its headers only.

    ``read(offset, length)`` returns bytes of the file (fewer at its end). A header or
    data section running past the end of the file ends the walk with a
    :class:`VariableSkippedWarning` naming the HDUs lost (the primary header must be
    whole, else :class:`CorruptFileError`); bytes after the last HDU that are not an
    extension header are ignored with a warning unless they are zero padding.

    ``first_read`` is the first read's length; headers at most ``sequential_gap`` bytes
    past the bytes read are reached by reading on in growing reads (for remote files).
    """
    walker = _Walker(read, size, first_read, sequential_gap)
    hdus: list[HDU] = []
    offset = 0
    while offset < size:
        index = len(hdus)
        what = f"HDU {index} of {url}"
        header_bytes = _header_bytes(walker, offset)
        if index == 0:
            if header_bytes is None or not header_bytes.startswith(b"SIMPLE  ="):
                raise CorruptFileError(
                    f"{url} is not a FITS file or its primary header is truncated "
                    f"(no SIMPLE card and END card within its {size} bytes)."
                )
        elif header_bytes is None:
            rest = walker.span(offset, min(size - offset, BLOCK))
            if rest.strip(b"\0") and rest.startswith(b"XTENSION="):
                warnings.warn(
                    f"{what}: its header at byte {offset} is truncated (no END card before the "
                    f"file ends at {size}); it and anything after it are skipped.",
                    VariableSkippedWarning,
                    stacklevel=3,
                )
            elif rest.strip(b"\0 "):
                _warn_not_an_extension(url, size, offset, index)
            break
        elif not header_bytes.startswith(b"XTENSION="):
            if header_bytes.strip(b"\0 "):
                _warn_not_an_extension(url, size, offset, index)
            break
        header = Header.from_bytes(header_bytes, what)
        nbytes, shape = data_size(header, primary=index == 0)
        data_offset = offset + len(header_bytes)
        if data_offset + nbytes > size and index == 0:
            raise CorruptFileError(
                f"{what}: its data ({nbytes} bytes from byte {data_offset}) runs past the end of "
                f"the file ({size} bytes): the file is truncated or its NAXISn are corrupt."
            )
        if data_offset + nbytes > size:
            warnings.warn(
                f"{what}: its data ({nbytes} bytes from byte {data_offset}) runs past the end of "
                f"the file ({size} bytes): the file is truncated; HDU {index} and anything after "
                "it are skipped.",
                VariableSkippedWarning,
                stacklevel=3,
            )
            break
        hdus.append(HDU(index, header, offset, data_offset, nbytes, shape))
        offset = data_offset + _padded(nbytes)
    return hdus


def _header_bytes(walker: _Walker, offset: int) -> bytes | None:
    """The header's blocks up to and including the one with ``END``; None if it never ends."""
    length = 0
    while True:
        want = max(BLOCK, walker._next) if length else BLOCK
        data = walker.span(offset, length + want)
        start = length
        length = len(data) - len(data) % BLOCK
        for i in range(start, length, CARD):
            if data[i : i + 8] == b"END     " or data[i : i + CARD].rstrip(b" ") == b"END":
                return data[: _padded(i + CARD)]
        if not data.startswith(b"SIMPLE  =" if offset == 0 else b"XTENSION="):
            return data[:BLOCK] if len(data) >= BLOCK else None  # the caller says what it is
        if length == 0 or offset + length >= walker.size or len(data) < start + want:
            return None


def check_unused(hdus: list[HDU], url: str) -> None:
    """Raise when no HDU could be read at all."""
    if not hdus:
        raise ParserError(f"{url} has no readable HDU.")
