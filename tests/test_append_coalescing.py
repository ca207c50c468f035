"""Commit coalescing: concurrent appends to one app's state share transactions, and nothing
about each append's meaning changes (durability, revision gate, errors, idempotency)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

from adk_postgres import PostgresSessionService
from adk_postgres._native import COALESCE_MAX_BATCH as MAX_BATCH
from adk_postgres.errors import DataError

APPENDERS = 32


def _event(text: str, delta: dict[str, object]) -> Event:
    return Event(
        author="model",
        invocation_id="inv",
        content=types.Content(role="model", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=delta),
    )


async def _sessions(service: PostgresSessionService, n: int) -> list:
    return [
        await service.create_session(app_name="shop", user_id=f"u{i}", session_id=f"s{i}")
        for i in range(n)
    ]


async def test_concurrent_app_state_appends_share_commits(make_service, pg_admin, schema_name):
    service = make_service(pool_size=8)
    sessions = await _sessions(service, APPENDERS)
    rounds = 5

    async def appender(i: int) -> None:
        session = sessions[i]
        for r in range(rounds):
            event = _event(f"{i}-{r}", {f"app:last_{i}": r, "app:any": i, "turn": r})
            await service.append_event(session, event)

    await asyncio.gather(*(appender(i) for i in range(APPENDERS)))

    # Every append is there once, in order, with its revision; all app keys merged.
    for i in range(APPENDERS):
        stored = await service.get_session(app_name="shop", user_id=f"u{i}", session_id=f"s{i}")
        assert [e.content.parts[0].text for e in stored.events] == [
            f"{i}-{r}" for r in range(rounds)
        ]
        assert stored.state["turn"] == rounds - 1
        assert stored.state[f"app:last_{i}"] == rounds - 1
    fresh = PostgresSessionService(database=service.database, cache_bytes=0)
    one = await fresh.get_session(app_name="shop", user_id="u0", session_id="s0")
    assert all(one.state[f"app:last_{i}"] == rounds - 1 for i in range(APPENDERS))
    revisions = await pg_admin.fetch(f'SELECT revision FROM "{schema_name}".sessions')
    assert {r["revision"] for r in revisions} == {rounds}

    # Appends shared transactions: fewer distinct writing transactions than events (one each
    # without coalescing). How many share depends on timing (about 4 per commit on a quiet
    # machine, 2 with both cores busy), so the bound is loose: sharing, not a ratio.
    transactions = await pg_admin.fetchval(
        f'SELECT count(DISTINCT xmin::text) FROM "{schema_name}".events'
    )
    assert transactions <= APPENDERS * rounds * 3 / 4


async def test_a_bad_append_fails_alone(make_service, pg_admin, schema_name):
    service = make_service(pool_size=4)
    sessions = await _sessions(service, 20)
    bad = 7

    async def append(i: int):
        text = "bad \x00 text" if i == bad else f"good {i}"
        return await service.append_event(sessions[i], _event(text, {"app:n": i}))

    results = await asyncio.gather(*(append(i) for i in range(20)), return_exceptions=True)
    assert isinstance(results[bad], DataError)
    assert all(isinstance(r, Event) for i, r in enumerate(results) if i != bad)
    counts = dict(
        await pg_admin.fetch(
            f'SELECT session_id, count(*) FROM "{schema_name}".events GROUP BY session_id'
        )
    )
    assert f"s{bad}" not in counts
    assert all(counts[f"s{i}"] == 1 for i in range(20) if i != bad)
    revision = await pg_admin.fetchval(
        f'SELECT revision FROM "{schema_name}".sessions WHERE id = $1', f"s{bad}"
    )
    assert revision == 0
    # The failed session is usable afterwards.
    await service.append_event(sessions[bad], _event("fixed", {"app:n": bad}))


async def test_stale_writers_in_one_flight(make_service):
    service = make_service(pool_size=4)
    holder = await service.create_session(app_name="shop", user_id="u", session_id="shared")
    others = await _sessions(service, 8)
    copies = [
        await service.get_session(app_name="shop", user_id="u", session_id="shared")
        for _ in range(6)
    ]
    del holder

    async def write(session, text):
        return await service.append_event(session, _event(text, {"app:k": text}))

    results = await asyncio.gather(
        *(write(copy, f"copy{i}") for i, copy in enumerate(copies)),
        *(write(other, f"other{i}") for i, other in enumerate(others)),
        return_exceptions=True,
    )
    copy_results = results[: len(copies)]
    assert sum(isinstance(r, Event) for r in copy_results) == 1
    assert sum(isinstance(r, StaleSessionError) for r in copy_results) == len(copies) - 1
    assert all(isinstance(r, Event) for r in results[len(copies) :])
    stored = await service.get_session(app_name="shop", user_id="u", session_id="shared")
    assert len(stored.events) == 1


async def test_retried_append_is_stored_once(make_service, pg_admin, schema_name):
    service = make_service(pool_size=4)
    sessions = await _sessions(service, 6)
    events = [_event(f"e{i}", {"app:x": i}) for i in range(6)]
    await asyncio.gather(
        *(service.append_event(s, e) for s, e in zip(sessions, events, strict=True))
    )
    # The same event objects again, on copies of the sessions as they were before (a caller
    # retrying after an unknown outcome): each already-committed append is recognised by its
    # event id and content, reported as a success, and not stored twice.
    stale_copies = [s.model_copy(deep=True) for s in sessions]
    for copy, original in zip(stale_copies, sessions, strict=True):
        copy._storage_update_marker = original._storage_update_marker.replace("1:", "0:", 1)
        copy.events = []
    results = await asyncio.gather(
        *(service.append_event(s, e) for s, e in zip(stale_copies, events, strict=True)),
        return_exceptions=True,
    )
    assert results == events
    for copy, event in zip(stale_copies, events, strict=True):
        assert copy.events == [event]
        assert copy._storage_update_marker.startswith("1:")
    total = await pg_admin.fetchval(f'SELECT count(*) FROM "{schema_name}".events')
    assert total == 6


@pytest.mark.parametrize("coalesce", [True, False])
async def test_cancelled_appends_leave_whole_sessions(
    make_service, pg_admin, schema_name, coalesce
):
    service = make_service(pool_size=4, coalesce_appends=coalesce)
    sessions = await _sessions(service, 16)
    tasks = [
        asyncio.ensure_future(service.append_event(s, _event(f"c{i}", {"app:c": i, "n": i})))
        for i, s in enumerate(sessions)
    ]
    await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.5)  # cancelled flights may still commit; let them land
    rows = await pg_admin.fetch(
        f"SELECT s.revision, s.state::text AS state,"
        f' (SELECT count(*) FROM "{schema_name}".events e WHERE e.session_id = s.id) AS events'
        f' FROM "{schema_name}".sessions s'
    )
    for row in rows:
        # Either the whole append (event + state + revision) or none of it.
        assert row["events"] == row["revision"] in (0, 1)
        assert ('"n"' in row["state"]) == (row["events"] == 1)
    assert database_idle(service)


def database_idle(service: PostgresSessionService) -> bool:
    status = service.database.pool_status()
    return status["in_use"] == 0 and status["waiting"] == 0


async def test_the_largest_flight_commits_whole_and_in_order(
    make_service, pg_admin, pg_direct_url, schema_name
):
    """A flight of MAX_BATCH appends: its statements go out in order (BEGIN, locks, appends,
    COMMIT) in one round trip and commit in one transaction; no flight is larger."""
    service = make_service(pool_size=4)
    waiting = MAX_BATCH + 1
    sessions = await _sessions(service, waiting + 1)
    await service.append_event(sessions[0], _event("prime", {"app:n": -1}))  # the app row
    blocker = await asyncpg.connect(pg_direct_url)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(
            f'SELECT 1 FROM "{schema_name}".app_states WHERE app_name = $1 FOR UPDATE', "shop"
        )
        # This append flies alone and waits on the row; the next ones queue behind it.
        first = asyncio.ensure_future(
            service.append_event(sessions[0], _event("first", {"app:n": 0}))
        )
        await asyncio.sleep(0.3)
        queued = [
            asyncio.ensure_future(service.append_event(s, _event(f"q{i}", {"app:n": i})))
            for i, s in enumerate(sessions[1:], start=1)
        ]
        await asyncio.sleep(0.3)
        await tx.rollback()
        results = await asyncio.gather(first, *queued)
    finally:
        await blocker.close()
    assert all(isinstance(r, Event) for r in results)
    sizes = await pg_admin.fetch(
        f'SELECT count(*) AS n FROM "{schema_name}".events WHERE seq > 0 AND NOT'
        f" (session_id = 's0' AND seq = 1) GROUP BY xmin::text ORDER BY n DESC"
    )
    assert sizes[0]["n"] == MAX_BATCH  # one transaction held a whole flight
    assert sum(r["n"] for r in sizes) == waiting + 1
