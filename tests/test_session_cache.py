"""The warm-read cache: a session read again is refreshed with only its new events, and is
never served stale (another process's appends, deletes and re-creates, ADK's own writes)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import DatabaseSessionService
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from adk_postgres import PostgresSessionService, _session_cache, session_service
from adk_postgres._native import untrack_tree

APP, USER = "cache-app", "u1"


def event(text: str, ts: float | None = None, delta: dict[str, Any] | None = None) -> Event:
    kwargs: dict[str, Any] = {}
    if ts is not None:
        kwargs["timestamp"] = ts
    return Event(
        author="model",
        invocation_id="inv",
        content=types.Content(role="model", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=delta or {}),
        **kwargs,
    )


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts events validated by pydantic on reads (one entry per decode call)."""
    counts: list[int] = []
    real = session_service.decode_events

    def counting(raw: list[bytes]) -> list[Event]:
        counts.append(len(raw))
        return real(raw)

    monkeypatch.setattr(session_service, "decode_events", counting)
    monkeypatch.setattr(_session_cache, "decode_events", counting)
    yield counts


async def read(svc: PostgresSessionService, sid: str, config: GetSessionConfig | None = None):
    got = await svc.get_session(app_name=APP, user_id=USER, session_id=sid, config=config)
    assert got is not None
    return got


async def test_warm_read_decodes_only_new_events(
    make_service: Callable[..., PostgresSessionService], decoded: list[int]
) -> None:
    ours, other = make_service(), make_service()
    s = await ours.create_session(app_name=APP, user_id=USER, session_id="warm")
    for i in range(30):
        await ours.append_event(s, event(f"e{i}"))
    decoded.clear()
    first = await read(ours, "warm")
    assert sum(decoded) == 30  # cold: everything
    decoded.clear()
    again = await read(ours, "warm")
    assert sum(decoded) == 0 and again == first  # unchanged: nothing decoded, same result
    theirs = await read(other, "warm")
    await other.append_event(theirs, event("from-other-1"))
    await other.append_event(theirs, event("from-other-2", delta={"k": "v"}))
    decoded.clear()
    refreshed = await read(ours, "warm")
    assert sum(decoded) == 2
    assert refreshed == await read(make_service(cache_bytes=0), "warm")
    assert refreshed.state["k"] == "v"


async def test_cache_stats_count_warm_and_cold_reads(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    ours, other = make_service(), make_service()
    assert make_service(cache_bytes=0).cache_stats() is None
    s = await ours.create_session(app_name=APP, user_id=USER, session_id="stats")
    for i in range(5):
        await ours.append_event(s, event(f"e{i}"))
    start = ours.cache_stats()
    assert start is not None and (start.warm_reads, start.cold_reads) == (0, 0)
    assert start.hit_rate == 0.0
    await read(ours, "stats")  # cold: never read here
    await read(ours, "stats")  # warm, nothing new
    theirs = await read(other, "stats")
    extra = event("x" * 500)
    await other.append_event(theirs, extra)
    await read(ours, "stats")  # warm, one new event fetched
    stats = ours.cache_stats()
    assert stats is not None
    assert (stats.warm_reads, stats.cold_reads, stats.delta_events) == (2, 1, 1)
    assert 500 < stats.delta_bytes < 2000 and stats.hit_rate == 2 / 3
    assert stats.entries == 1 and stats.bytes_held > 500
    # Re-created under the same id: the cached history cannot be extended, a cold read.
    await other.delete_session(app_name=APP, user_id=USER, session_id="stats")
    await other.create_session(app_name=APP, user_id=USER, session_id="stats")
    await read(ours, "stats")
    after = ours.cache_stats()
    assert after is not None and (after.warm_reads, after.cold_reads) == (2, 2)


async def test_own_appends_are_served_in_stored_form(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    ours = make_service()
    s = await ours.create_session(app_name=APP, user_id=USER, session_id="own")
    await read(ours, "own")  # cache it
    # A tuple is stored as a JSON list: warm and cold reads must both return the stored form.
    await ours.append_event(s, event("x", delta={"pair": (1, 2)}))
    warm = await read(ours, "own")
    cold = await read(make_service(cache_bytes=0), "own")
    assert warm == cold
    assert warm.events[-1].actions.state_delta["pair"] == [1, 2]


async def test_deleted_and_recreated_session_is_not_served_from_cache(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    ours, other = make_service(), make_service()
    s = await ours.create_session(app_name=APP, user_id=USER, session_id="again")
    await ours.append_event(s, event("old"))
    await read(ours, "again")
    await other.delete_session(app_name=APP, user_id=USER, session_id="again")
    assert await ours.get_session(app_name=APP, user_id=USER, session_id="again") is None
    # Re-created elsewhere with the same number of events (so the same revision).
    s2 = await other.create_session(app_name=APP, user_id=USER, session_id="again")
    await other.append_event(s2, event("new"))
    got = await read(ours, "again")
    assert [e.content.parts[0].text for e in got.events] == ["new"]


async def test_recreated_session_with_equal_revision_is_detected(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    ours, other = make_service(), make_service()
    s = await ours.create_session(app_name=APP, user_id=USER, session_id="twin")
    await ours.append_event(s, event("first life"))
    await read(ours, "twin")  # cached at revision 1
    await other.delete_session(app_name=APP, user_id=USER, session_id="twin")
    s2 = await other.create_session(app_name=APP, user_id=USER, session_id="twin")
    await other.append_event(s2, event("second life"))  # revision 1 again
    got = await read(ours, "twin")
    assert [e.content.parts[0].text for e in got.events] == ["second life"]


async def test_back_dated_event_from_elsewhere_keeps_time_order(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    ours, other = make_service(), make_service()
    s = await ours.create_session(app_name=APP, user_id=USER, session_id="backdated")
    await ours.append_event(s, event("t=2", ts=2_000_000_000.0))
    await read(ours, "backdated")
    theirs = await read(other, "backdated")
    await other.append_event(theirs, event("t=1", ts=1_000_000_000.0))
    got = await read(ours, "backdated")
    assert [e.content.parts[0].text for e in got.events] == ["t=1", "t=2"]
    assert got == await read(make_service(cache_bytes=0), "backdated")


async def test_filters_on_a_warm_session_match_a_cold_read(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    ours, cold = make_service(), make_service(cache_bytes=0)
    s = await ours.create_session(app_name=APP, user_id=USER, session_id="filters")
    for i in range(12):
        await ours.append_event(s, event(f"e{i}", ts=1_700_000_000.0 + i))
    await read(ours, "filters")
    configs = [
        GetSessionConfig(num_recent_events=0),
        GetSessionConfig(num_recent_events=5),
        GetSessionConfig(num_recent_events=50),
        GetSessionConfig(after_timestamp=1_700_000_006.0),
        GetSessionConfig(after_timestamp=1_700_000_006.5),
        GetSessionConfig(num_recent_events=3, after_timestamp=1_700_000_010.0),
        GetSessionConfig(num_recent_events=8, after_timestamp=1_700_000_002.0),
    ]
    for config in configs:
        assert await read(ours, "filters", config) == await read(cold, "filters", config), config


async def test_events_written_by_adk_itself_are_seen(
    make_service: Callable[..., PostgresSessionService], pg_direct_url: str, schema_name: str
) -> None:
    ours = make_service()
    await ours.database.migrate()
    s = await ours.create_session(app_name=APP, user_id=USER, session_id="mixed")
    await ours.append_event(s, event("ours"))
    await read(ours, "mixed")
    adk_url = pg_direct_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    adk = DatabaseSessionService(
        adk_url, connect_args={"server_settings": {"search_path": schema_name}}
    )
    try:
        theirs = await adk.get_session(app_name=APP, user_id=USER, session_id="mixed")
        assert theirs is not None
        await adk.append_event(theirs, event("adk's"))
    finally:
        await adk.close()
    got = await read(ours, "mixed")
    assert [e.content.parts[0].text for e in got.events] == ["ours", "adk's"]
    # Still correct on the next (warm) read and after our own next append.
    await ours.append_event(got, event("ours again"))
    texts = [e.content.parts[0].text for e in (await read(ours, "mixed")).events]
    assert texts == ["ours", "adk's", "ours again"]


async def test_cache_stays_within_its_bound(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    bound = 20_000
    ours = make_service(cache_bytes=bound)
    for n in range(10):
        s = await ours.create_session(app_name=APP, user_id=USER, session_id=f"b{n}")
        for i in range(5):
            await ours.append_event(s, event("x" * 800 + str(i)))
        await read(ours, f"b{n}")
        assert ours._cache is not None and ours._cache.size_bytes <= bound
    assert 0 < len(ours._cache) < 10  # older sessions were evicted
    # Evicted sessions still read correctly (cold path).
    assert len((await read(ours, "b0")).events) == 5


def test_cache_bytes_must_not_be_negative() -> None:
    from adk_postgres.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        PostgresSessionService("postgresql://u@localhost/d", cache_bytes=-1)


async def test_recent_events_reads_are_cached_as_a_suffix(
    make_service: Callable[..., PostgresSessionService], decoded: list[int]
) -> None:
    ours, other, cold = make_service(), make_service(), make_service(cache_bytes=0)
    s = await other.create_session(app_name=APP, user_id=USER, session_id="suffix")
    for i in range(30):
        await other.append_event(s, event(f"e{i}", ts=1_700_000_000.0 + i))
    last20 = GetSessionConfig(num_recent_events=20)
    decoded.clear()
    first = await read(ours, "suffix", last20)
    assert sum(decoded) == 20  # only the suffix was fetched
    expected5 = await read(cold, "suffix", GetSessionConfig(num_recent_events=5))
    decoded.clear()
    assert await read(ours, "suffix", GetSessionConfig(num_recent_events=5)) == expected5
    assert await read(ours, "suffix", last20) == first
    assert sum(decoded) == 0  # served from the cached suffix
    # Another writer appends: the suffix is refreshed with just that event.
    theirs = await read(other, "suffix")
    await other.append_event(theirs, event("new", ts=1_700_000_100.0))
    expected20 = await read(cold, "suffix", last20)
    decoded.clear()
    assert await read(ours, "suffix", last20) == expected20
    assert sum(decoded) == 1
    # A read that needs more than the suffix goes to the database, and is then complete.
    full = await read(ours, "suffix")
    assert len(full.events) == 31 and full == await read(cold, "suffix")
    after = GetSessionConfig(after_timestamp=1_700_000_002.5)
    assert await read(ours, "suffix", after) == await read(cold, "suffix", after)


async def test_short_history_read_with_a_limit_is_complete(
    make_service: Callable[..., PostgresSessionService], decoded: list[int]
) -> None:
    ours, cold = make_service(), make_service(cache_bytes=0)
    s = await ours.create_session(app_name=APP, user_id=USER, session_id="short")
    for i in range(3):
        await ours.append_event(s, event(f"e{i}"))
    await read(ours, "short", GetSessionConfig(num_recent_events=10))  # fewer than asked
    decoded.clear()
    assert await read(ours, "short") == await read(cold, "short")
    assert decoded == [3]  # only the cold reader decoded; ours answered from the cache


async def test_cached_events_are_not_tracked_by_the_cyclic_gc(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    """Full collections must not walk the cache (their pause grew with it: see gc.rs)."""
    s = await make_service().create_session(app_name=APP, user_id=USER, session_id="gc")
    for i in range(3):
        await make_service(cache_bytes=0).append_event(s, event(f"e{i}", delta={"k": [i]}))
    cached = await read(make_service(), "gc")
    uncached = await read(make_service(cache_bytes=0), "gc")
    assert cached == uncached
    for e in cached.events:
        parts = e.content.parts if e.content and e.content.parts else []
        inner = [e, e.__dict__, e.actions, e.actions.state_delta, e.content, parts, *parts]
        assert not any(gc.is_tracked(x) for x in inner)
    # Without the cache nothing is changed; the caller's own containers stay tracked.
    assert all(gc.is_tracked(e) and gc.is_tracked(e.actions) for e in uncached.events)
    assert gc.is_tracked(cached) and gc.is_tracked(cached.events)


def test_untrack_tree_stops_at_cycles_and_foreign_objects() -> None:
    class Foreign:
        pass

    foreign = Foreign()
    cyclic: list[Any] = [1, "a"]
    cyclic.append(cyclic)
    holder = event("x")
    holder.custom_metadata = {"cycle": cyclic, "foreign": foreign, "nested": {"l": [[1]]}}
    untracked = untrack_tree([holder])
    assert untracked >= 6  # event, __dict__, metadata dict, the list, the nested dict and list
    assert not gc.is_tracked(cyclic) and not gc.is_tracked(holder.custom_metadata)
    assert gc.is_tracked(foreign)  # not ours to untrack: other classes are not looked into
    assert untrack_tree([holder]) == 0  # already done
    # Untracked objects are still freed by reference counting.
    ref = weakref.ref(foreign)
    del holder, foreign
    assert ref() is None
