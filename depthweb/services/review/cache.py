"""A small per-process cache for the review pages (one per :class:`ReviewContext`).

Everything cached is keyed by content (blob sha256) or by an immutable row (prediction id), so
an entry never goes stale: a new label is a new blob with a new key. ``verified`` remembers the
blobs whose sha256 was checked in this process, so each file is hashed once, not per request
(``depthweb db check`` re-verifies everything).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class PageCache:
    """A thread-safe LRU of ``max_items`` entries plus the set of verified blob hashes."""

    def __init__(self, max_items: int = 96) -> None:
        self.max_items = max_items
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._verified: set[str] = set()
        self._lock = threading.Lock()

    def get_or_make(self, key: Any, make: Callable[[], T]) -> T:
        """The cached value of ``key``, made (outside the lock) and kept when missing."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return value

    def is_verified(self, sha256: str) -> bool:
        with self._lock:
            return sha256 in self._verified

    def mark_verified(self, sha256: str) -> None:
        with self._lock:
            if len(self._verified) > 100_000:
                self._verified.clear()
            self._verified.add(sha256)

    def forget(self, sha256: str) -> None:
        """A blob found missing or corrupt: check it again next time."""
        with self._lock:
            self._verified.discard(sha256)
