"""The per-process cache of event histories that makes warm reads history-length-independent.

A session this process has read is refreshed by fetching only the events stored after the
revision it holds (one round trip that also returns the current revision, state and the
session's incarnation tag), so a warm read validates only new events. Nothing is served without
that check: the cache saves decoding, never a round trip. Bounded by the JSON size of the
events it holds; least recently used sessions go first.

Events are shared between the cache and the sessions it returns (as ADK's in-memory service
shares them in light-copy mode): treat stored events as immutable.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from google.adk.events.event import Event

from ._json import decode_events

SessionKey = tuple[str, str, str]


@dataclass
class CachedHistory:
    incarnation: str
    revision: int
    events: list[Event] = field(default_factory=list)
    # Event JSON appended by this process, decoded on the next read: readers get the stored
    # form (what a cold read returns), not the caller's objects.
    pending: list[bytes] = field(default_factory=list)
    size: int = 0  # bytes of event JSON held
    # False when only the most recent events are held (read with num_recent_events or
    # after_timestamp): such an entry answers reads that need no more than that suffix.
    complete: bool = True

    def history(self) -> list[Event]:
        """The events held (all of them when ``complete``), oldest first; decodes pending
        appends once."""
        if self.pending:
            self.events.extend(decode_events(self.pending))
            self.pending = []
        return self.events


class SessionCache:
    """LRU map of session key → cached history, bounded by ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[SessionKey, CachedHistory] = OrderedDict()
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: SessionKey) -> CachedHistory | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: SessionKey, entry: CachedHistory) -> None:
        self.discard(key)
        if entry.size > self.max_bytes:
            return  # larger than the whole cache: not worth evicting everything else
        self._entries[key] = entry
        self._bytes += entry.size
        self._evict()

    def extend(
        self, key: SessionKey, entry: CachedHistory, revision: int, raw: list[bytes]
    ) -> None:
        """Record the JSON of events stored after ``entry.revision`` (``entry`` is the cached
        one for ``key``)."""
        entry.history()  # keep order: earlier pending events first
        entry.pending = list(raw)
        entry.revision = revision
        size = sum(map(len, raw))
        entry.size += size
        self._bytes += size
        if entry.size > self.max_bytes:
            self.discard(key)
        else:
            self._evict()

    def discard(self, key: SessionKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def _evict(self) -> None:
        while self._bytes > self.max_bytes and self._entries:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size
