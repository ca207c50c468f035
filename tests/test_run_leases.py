"""Run leases (adk_postgres.runs): one invocation of a session at a time, across handles.

Each "process" here is its own PostgresSessionService with its own pool, so nothing is shared
in memory between them: the queue, the fence and the expiry all live in PostgreSQL.
tests/test_double_texting.py drives the same through two real server processes over HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import asyncpg
import pytest
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

from adk_postgres import PostgresSessionService
from adk_postgres.errors import ConfigurationError, RunLeaseLostError, SessionBusyError
from adk_postgres.runs import running_under

APP, USER = "app", "u"


def _event(invocation: str, text: str, author: str = "agent", **state: object) -> Event:
    return Event(
        invocation_id=invocation,
        author=author,
        content=types.Content(role="model", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=dict(state)),
    )


async def _turn(svc: PostgresSessionService, sid: str, invocation: str, steps: int) -> int:
    """A run as ADK's Runner makes one: read the session, append its events one by one
    (yielding between them, as a model call would), bumping a counter in state."""
    session = await svc.get_session(app_name=APP, user_id=USER, session_id=sid)
    assert session is not None
    seen = session.state.get("turns", 0)
    await svc.append_event(session, _event(invocation, "question", author="user"))
    for step in range(steps):
        await asyncio.sleep(0.002)
        await svc.append_event(session, _event(invocation, f"step {step}"))
    await svc.append_event(session, _event(invocation, "answer", turns=seen + 1))
    return seen


async def _runs_rows(pg_admin: asyncpg.Connection, schema: str) -> int:
    return await pg_admin.fetchval(f'SELECT count(*) FROM "{schema}".session_runs')


async def test_runs_of_one_session_take_turns_in_arrival_order(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    first, second = make_service(), make_service()  # two pools: two processes
    await first.create_session(app_name=APP, user_id=USER, session_id="s")
    order: list[str] = []

    async def run(svc: PostgresSessionService, name: str, delay: float) -> int:
        await asyncio.sleep(delay)
        async with svc.run_lease(APP, USER, "s"):
            order.append(name)
            return await _turn(svc, "s", f"inv-{name}", steps=3)

    seen = await asyncio.gather(
        *(run(first if i % 2 else second, f"r{i}", 0.03 * i) for i in range(6))
    )
    # Every run saw all earlier runs' state: none was lost, none failed as stale.
    assert order == [f"r{i}" for i in range(6)]
    assert sorted(seen) == list(range(6))
    session = await first.get_session(app_name=APP, user_id=USER, session_id="s")
    assert session is not None and session.state["turns"] == 6
    # Each invocation's events are contiguous.
    invocations = [e.invocation_id for e in session.events]
    blocks = [inv for i, inv in enumerate(invocations) if i == 0 or invocations[i - 1] != inv]
    assert blocks == [f"inv-r{i}" for i in range(6)]


async def test_many_concurrent_runs_never_fail_or_interleave(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    services = [make_service() for _ in range(3)]
    await services[0].create_session(app_name=APP, user_id=USER, session_id="busy")

    async def run(i: int) -> int:
        svc = services[i % 3]
        async with svc.run_lease(APP, USER, "busy"):
            return await _turn(svc, "busy", f"inv-{i}", steps=2)

    seen = await asyncio.gather(*(run(i) for i in range(20)))
    assert sorted(seen) == list(range(20))
    session = await services[1].get_session(app_name=APP, user_id=USER, session_id="busy")
    assert session is not None and session.state["turns"] == 20
    invocations = [e.invocation_id for e in session.events]
    blocks = [inv for i, inv in enumerate(invocations) if i == 0 or invocations[i - 1] != inv]
    assert len(blocks) == len(set(blocks)) == 20


async def test_reject_refuses_a_second_run_and_stores_nothing(
    make_service: Callable[..., PostgresSessionService],
    pg_admin: asyncpg.Connection,
    schema_name: str,
) -> None:
    first, second = make_service(), make_service()
    await first.create_session(app_name=APP, user_id=USER, session_id="s")
    async with first.run_lease(APP, USER, "s"):
        with pytest.raises(SessionBusyError, match="busy.*not stored"):
            async with second.run_lease(APP, USER, "s", strategy="reject"):
                raise AssertionError("a rejected run must not start")
        assert await _runs_rows(pg_admin, schema_name) == 1
    # Free again: reject lets a run in when nothing runs.
    async with second.run_lease(APP, USER, "s", strategy="reject") as lease:
        assert lease is not None
    assert await _runs_rows(pg_admin, schema_name) == 0


async def test_interrupt_stops_the_running_run_at_its_next_event_and_marks_it(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    first, second = make_service(), make_service()
    await first.create_session(app_name=APP, user_id=USER, session_id="s")
    holder_may_go_on = asyncio.Event()
    stored_before: list[str] = []

    async def long_run() -> None:
        async with first.run_lease(APP, USER, "s"):
            session = await first.get_session(app_name=APP, user_id=USER, session_id="s")
            assert session is not None
            for text in ("question", "thinking"):
                await first.append_event(session, _event("inv-old", text))
                stored_before.append(text)
            await holder_may_go_on.wait()  # a long model call
            await first.append_event(session, _event("inv-old", "late answer"))

    holder = asyncio.create_task(long_run())
    while len(stored_before) < 2:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    async with second.run_lease(APP, USER, "s", strategy="interrupt") as lease:
        assert lease is not None and lease.interrupted_invocation == "inv-old"
        assert time.monotonic() - started < 2  # granted at once, not after the old run
        holder_may_go_on.set()
        with pytest.raises(RunLeaseLostError, match="no longer holds the run lease"):
            await holder
        await _turn(second, "s", "inv-new", steps=1)

    session = await first.get_session(app_name=APP, user_id=USER, session_id="s")
    assert session is not None
    texts = [
        (e.invocation_id, e.content.parts[0].text if e.content else None) for e in session.events
    ]
    # The old run's partial events stay, closed by a marker; its late answer was refused.
    assert texts[:3] == [("inv-old", "question"), ("inv-old", "thinking"), ("inv-old", None)]
    marker = session.events[2]
    assert marker.interrupted is True and marker.author == "agent"
    assert marker.custom_metadata == {"adk_postgres": {"interrupted_by_run": str(lease.run_id)}}
    assert [inv for inv, _ in texts[3:]] == ["inv-new"] * 3
    assert ("inv-old", "late answer") not in texts


async def test_a_dead_holder_blocks_the_session_only_until_its_lease_expires(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    dead, alive = make_service(), make_service()
    await dead.create_session(app_name=APP, user_id=USER, session_id="s")
    # A holder that never heartbeats nor releases: a process that was SIGKILLed (or paused).
    paused = await dead.run_leases(expiry=1.0).acquire(APP, USER, "s")
    assert paused is not None
    session = await dead.get_session(app_name=APP, user_id=USER, session_id="s")
    assert session is not None

    started = time.monotonic()
    async with alive.run_lease(APP, USER, "s", expiry=1.0):
        waited = time.monotonic() - started
        await _turn(alive, "s", "inv-alive", steps=1)
    assert 0.9 < waited < 5

    # The paused holder wakes up: fenced, whatever its session object says.
    with running_under(paused), pytest.raises(RunLeaseLostError):
        await dead.append_event(session, _event("inv-dead", "too late"))
    fresh = await dead.get_session(app_name=APP, user_id=USER, session_id="s")
    assert fresh is not None
    assert {e.invocation_id for e in fresh.events} == {"inv-alive"}
    # ... also with a fresh read: its fence is not the session's any more.
    with running_under(paused), pytest.raises(RunLeaseLostError):
        await dead.append_event(fresh, _event("inv-dead", "too late"))


async def test_a_live_holder_keeps_its_session_past_the_expiry(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    first, second = make_service(), make_service()
    await first.create_session(app_name=APP, user_id=USER, session_id="s")
    async with first.run_lease(APP, USER, "s", expiry=0.6):
        await asyncio.sleep(1.5)  # heartbeats every 0.2 s keep it
        with pytest.raises(SessionBusyError):
            async with second.run_lease(APP, USER, "s", strategy="reject", expiry=0.6):
                pass
        await _turn(first, "s", "inv-1", steps=1)


async def test_a_waiting_run_gives_up_after_its_timeout_and_leaves_the_queue(
    make_service: Callable[..., PostgresSessionService],
    pg_admin: asyncpg.Connection,
    schema_name: str,
) -> None:
    first, second = make_service(), make_service()
    await first.create_session(app_name=APP, user_id=USER, session_id="s")
    async with first.run_lease(APP, USER, "s"):
        started = time.monotonic()
        with pytest.raises(SessionBusyError, match="waited 0.3 s"):
            async with second.run_lease(APP, USER, "s", wait_timeout=0.3):
                pass
        assert 0.25 < time.monotonic() - started < 3
        assert await _runs_rows(pg_admin, schema_name) == 1


async def test_a_cancelled_waiter_leaves_the_queue_at_once(
    make_service: Callable[..., PostgresSessionService],
    pg_admin: asyncpg.Connection,
    schema_name: str,
) -> None:
    first, second, third = make_service(), make_service(), make_service()
    await first.create_session(app_name=APP, user_id=USER, session_id="s")
    async with first.run_lease(APP, USER, "s"):

        async def wait_forever() -> None:
            async with second.run_lease(APP, USER, "s"):
                raise AssertionError("must not be granted")

        waiter = asyncio.create_task(wait_forever())
        while await _runs_rows(pg_admin, schema_name) < 2:
            await asyncio.sleep(0.01)
        waiter.cancel()  # e.g. its HTTP client went away
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert await _runs_rows(pg_admin, schema_name) == 1
    # The next run is not stuck behind the one that left.
    async with third.run_lease(APP, USER, "s", strategy="reject") as lease:
        assert lease is not None


async def test_different_sessions_never_wait_for_each_other(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    first, second = make_service(), make_service()
    for sid in ("a", "b"):
        await first.create_session(app_name=APP, user_id=USER, session_id=sid)
    async with first.run_lease(APP, USER, "a"):
        async with second.run_lease(APP, USER, "b", strategy="reject") as lease:
            assert lease is not None
            await _turn(second, "b", "inv-b", steps=1)


async def test_unknown_sessions_and_bad_arguments(
    make_service: Callable[..., PostgresSessionService],
    pg_admin: asyncpg.Connection,
    schema_name: str,
) -> None:
    svc = make_service()
    async with svc.run_lease(APP, USER, "missing") as lease:
        assert lease is None  # ADK's own "session not found" follows
    assert await _runs_rows(pg_admin, schema_name) == 0
    with pytest.raises(ConfigurationError, match="unknown run strategy 'later'"):
        svc.run_lease(APP, USER, "s", strategy="later")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="expiry must be a positive number"):
        svc.run_leases(expiry=0)
    with pytest.raises(ConfigurationError, match="wait_timeout"):
        svc.run_leases(wait_timeout=-1)


async def test_appends_without_a_lease_are_not_fenced(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    svc = make_service()
    await svc.create_session(app_name=APP, user_id=USER, session_id="s")
    async with svc.run_lease(APP, USER, "s"):
        pass
    # A plain Runner (no lease) still appends after leased runs happened.
    await _turn(svc, "s", "inv-plain", steps=1)


async def test_a_session_deleted_and_recreated_under_a_lease_refuses_the_old_run(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    svc = make_service()
    await svc.create_session(app_name=APP, user_id=USER, session_id="s")
    async with svc.run_lease(APP, USER, "s"):
        session = await svc.get_session(app_name=APP, user_id=USER, session_id="s")
        assert session is not None
        await svc.delete_session(app_name=APP, user_id=USER, session_id="s")
        await svc.create_session(app_name=APP, user_id=USER, session_id="s")
        fresh = await svc.get_session(app_name=APP, user_id=USER, session_id="s")
        assert fresh is not None
        with pytest.raises(RunLeaseLostError):  # the new session was never granted to us
            await svc.append_event(fresh, _event("inv", "x"))
        # The deleted session took its runs with it; the new one is free.
        async with svc.run_lease(APP, USER, "s", strategy="reject") as lease:
            assert lease is not None


async def test_taking_a_lease_is_no_change_of_the_session(
    make_service: Callable[..., PostgresSessionService],
) -> None:
    svc, other = make_service(), make_service()
    created = await svc.create_session(app_name=APP, user_id=USER, session_id="s", state={"k": 1})
    async with other.run_lease(APP, USER, "s"):
        pass
    async with svc.run_lease(APP, USER, "s"):
        # A copy read before the lease still appends: the grant bumped no revision.
        read = await other.get_session(app_name=APP, user_id=USER, session_id="s")
        assert read == created and read.last_update_time == created.last_update_time
        await svc.append_event(created, _event("inv", "after the grant", k=2))
