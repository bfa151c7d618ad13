"""Bounded caches of small decoded HDF5 messages, shared by all files a process parses.

The datasets of a file and the files of a collection repeat the same few datatypes,
layouts, filter pipelines, fill values and attributes, byte for byte: each is decoded
once and looked up by its message bytes afterwards. A :class:`BoundedCache` keeps at most
``limit`` entries, each decoded from at most ``max_bytes`` of message (a few MB in all),
and its ``get`` is the dict's own: lookups on the hot path cost what a dict's do.

Parses may run on several threads at once. Every step of :meth:`BoundedCache.put` is one
dict operation, atomic under the GIL, and there is no lock: threads racing may clear the
cache once more or leave it a few entries over ``limit`` (one per thread at most), never
hand out a wrong value (values are never changed once put).

>>> cache = BoundedCache(limit=2)
>>> cache.put(b"\\x01\\x00", "one", 2)
'one'
>>> cache.get(b"\\x01\\x00"), cache.put(b"x" * 2000, "big", 2000), len(cache)
('one', 'big', 1)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, ValuesView

__all__ = ["MAX_BYTES", "BoundedCache"]

MAX_BYTES = 1024
"""Values decoded from messages longer than this are not kept (compact data, big attributes)."""


class BoundedCache[K: Hashable, V]:
    """A dict emptied when it holds ``limit`` entries, of values decoded from messages of
    at most ``max_bytes``: ``get`` as a dict's, ``put`` to add."""

    __slots__ = ("_items", "get", "limit", "max_bytes")

    def __init__(self, limit: int, max_bytes: int = MAX_BYTES) -> None:
        self._items: dict[K, V] = {}
        # the dict's own bound method: a lookup costs what a plain dict's does (a subclass
        # of dict, or a method calling it, adds 15-20 ns to every hit)
        self.get = self._items.get
        self.limit = limit
        self.max_bytes = max_bytes

    def put(self, key: K, value: V, nbytes: int = 0) -> V:
        """Keep ``value`` under ``key`` unless ``nbytes`` (the length of the message it was
        decoded from) is over ``max_bytes``; returns ``value``."""
        if nbytes <= self.max_bytes:
            items = self._items
            if len(items) >= self.limit:
                items.clear()  # simpler than LRU, and a collection repeats few messages
            items[key] = value
        return value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:  # a method call: on hot paths use get
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def values(self) -> ValuesView[V]:
        return self._items.values()
