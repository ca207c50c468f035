"""The per-process cache of event histories that makes warm reads history-length-independent.

A session this process has read is refreshed by fetching only the events stored after the
revision it holds (one round trip that also returns the current revision, state and the
session's incarnation), so a warm read validates only new events. Nothing is served without
that check: the cache saves decoding, never a round trip. Bounded by the JSON size of the
events it holds; least recently used sessions go first.

An entry is the history of one session at one stored revision and never changes. Reads and
appends that overlap (they await the database in between) replace an entry only by
compare-and-set on the entry they started from, so each read returns exactly the history of
the revision it was answered at, and the byte count is always the sum of the entries held.

Events are shared between the cache and the sessions it returns (as ADK's in-memory service
shares them in light-copy mode): treat stored events as immutable. Being immutable and free of
reference cycles, the events the cache holds are untracked from Python's cyclic garbage
collector (`cached_events`): otherwise every full collection would walk all of them, a pause
that grows with the cache (half a second at a few tens of thousands of events).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from google.adk.events.event import Event

from ._json import decode_events
from ._native import untrack_tree

SessionKey = tuple[str, str, str]


def cached_events(raw: list[bytes]) -> list[Event]:
    """Decodes stored event JSON for the cache: the events, untracked from the cyclic GC."""
    events = decode_events(raw)
    untrack_tree(events)
    return events


@dataclass(frozen=True)
class CachedHistory:
    """The events of one session incarnation as of ``revision``, oldest first."""

    incarnation: int
    revision: int
    # The id of the event stored at `revision` (None if unknown, e.g. read without it): a
    # refresh checks the stored history still has it there.
    head: str | None = None
    events: tuple[Event, ...] = ()
    # Event JSON appended by this process, decoded on the next read: readers get the stored
    # form (what a cold read returns), not the caller's objects.
    pending: tuple[bytes, ...] = ()
    size: int = 0  # bytes of event JSON held (decoded and pending)
    # False when only the most recent events are held (read with num_recent_events or
    # after_timestamp): such an entry answers reads that need no more than that suffix.
    complete: bool = True

    def advanced(self, revision: int, new_events: list[bytes], head: str | None) -> CachedHistory:
        """This history with ``new_events`` (stored after ``self.revision``; ``head`` is the id
        of the one at ``revision``) added, pending appends decoded. The events added are
        ``result.events[len(self.events):]``."""
        raw = [*self.pending, *new_events]
        events = self.events + tuple(cached_events(raw)) if raw else self.events
        return replace(
            self,
            revision=revision,
            head=head if revision != self.revision else self.head,
            events=events,
            pending=(),
            size=self.size + sum(map(len, new_events)),
        )

    def appended(self, revision: int, event_id: str, event_json: bytes) -> CachedHistory:
        """This history with one event this process appended at ``revision``."""
        return replace(
            self,
            revision=revision,
            head=event_id,
            pending=(*self.pending, event_json),
            size=self.size + len(event_json),
        )


@dataclass
class CacheStats:
    """What the cache saved since the service started (``PostgresSessionService.cache_stats``).

    A *warm* read was answered from a cached history plus the events stored after it (one
    round trip, only those decoded); a *cold* read fetched and decoded the whole history (or
    the suffix asked for). ``delta_events``/``delta_bytes`` are what warm reads fetched from
    the database: events other processes (or other service instances) stored. This process's
    own appends are not fetched again (they are held in their stored form) and not counted."""

    warm_reads: int = 0
    cold_reads: int = 0
    delta_events: int = 0
    delta_bytes: int = 0
    entries: int = 0
    bytes_held: int = 0

    @property
    def hit_rate(self) -> float:
        """Warm reads / all reads (0.0 before the first read)."""
        reads = self.warm_reads + self.cold_reads
        return self.warm_reads / reads if reads else 0.0


class SessionCache:
    """LRU map of session key → cached history, bounded by ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[SessionKey, CachedHistory] = OrderedDict()
        self._bytes = 0
        self._stats = CacheStats()

    def stats(self) -> CacheStats:
        """A copy of the counters, with the current size."""
        return replace(self._stats, entries=len(self._entries), bytes_held=self._bytes)

    def count_warm(self, delta_events: int, delta_bytes: int) -> None:
        self._stats.warm_reads += 1
        self._stats.delta_events += delta_events
        self._stats.delta_bytes += delta_bytes

    def count_cold(self) -> None:
        self._stats.cold_reads += 1

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
        """Holds ``entry`` for ``key``, whatever was there."""
        self._remove(key)
        self._insert(key, entry)

    def replace(self, key: SessionKey, expected: CachedHistory, entry: CachedHistory) -> bool:
        """Holds ``entry`` for ``key`` only if ``expected`` is still the one held (the entry
        the caller started from before it awaited); ``False`` if something else happened."""
        if self._entries.get(key) is not expected:
            return False
        if entry is not expected:
            self._remove(key)
            self._insert(key, entry)
        return True

    def discard(self, key: SessionKey, expected: CachedHistory | None = None) -> None:
        """Drops the entry of ``key`` (only if it is ``expected``, when given)."""
        if expected is None or self._entries.get(key) is expected:
            self._remove(key)

    def _insert(self, key: SessionKey, entry: CachedHistory) -> None:
        if entry.size > self.max_bytes:
            return  # larger than the whole cache: not worth evicting everything else
        self._entries[key] = entry
        self._bytes += entry.size
        while self._bytes > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size

    def _remove(self, key: SessionKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size
