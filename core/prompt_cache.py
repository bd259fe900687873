"""A bounded LRU cache of prompt embeddings, so a repeated prompt skips the text encoder."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class PromptCache:
    """Least-recently-used map from (encoder, prompt, negative prompt, ...) to embeddings.

    Keys hold the encoder object itself: two encoders never share entries, and an encoder stays
    alive while an entry refers to it (so its id cannot be reused by another object). A lock
    makes it safe to share between the threads of a server.
    """

    def __init__(self, max_entries: int = 64):
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Any | None:
        """The cached value (marked most recently used), or None; counts a hit or a miss."""
        key = _identity_key(key)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key][1]
            self.misses += 1
            return None

    def put(self, key: tuple, value: Any) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            self._entries[_identity_key(key)] = (key, value)  # keep the key's objects alive
            self._entries.move_to_end(_identity_key(key))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict:
        return {
            "entries": len(self),
            "max_entries": self.max_entries,
            "hits": self.hits,
            "misses": self.misses,
        }


def _identity_key(key: tuple) -> tuple:
    # Components may define __eq__ (or be unhashable, like some framework layers): compare
    # them by identity; strings and numbers by value.
    return tuple(
        item if isinstance(item, (str, int, float, bool, type(None))) else ("id", id(item))
        for item in key
    )
