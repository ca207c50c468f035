"""Concurrency: two services with separate pools on one schema stand for two processes.

Every outcome asserted here is decided by the stored revision, not by timing: whichever append
commits second holds an outdated session and must be rejected, however the two interleave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import Session
from google.genai import types

from adk_postgres import PostgresSessionService

APP = "concurrency-app"
USER = "bob"
T0 = 1_751_234_567.1234567

MakeService = Callable[..., PostgresSessionService]


def make_event(eid: str, *, timestamp: float, state: dict | None = None) -> Event:
    return Event(
        id=eid,
        invocation_id=f"inv-{eid}",
        author="model",
        timestamp=timestamp,
        content=types.Content(role="model", parts=[types.Part(text=f"from {eid}")]),
        actions=EventActions(state_delta=dict(state or {})),
    )


async def load(svc: PostgresSessionService, session_id: str, user_id: str = USER) -> Session:
    session = await svc.get_session(app_name=APP, user_id=user_id, session_id=session_id)
    assert session is not None
    return session


@pytest.fixture
def two_services(
    make_service: MakeService,
) -> tuple[PostgresSessionService, PostgresSessionService]:
    return make_service(), make_service()


@pytest.mark.parametrize("pools", ["two-pools", "one-pool"])
async def test_stale_writer_exactly_one_of_two_concurrent_appends_wins(
    make_service: MakeService, pools: str
):
    svc_a = make_service()
    svc_b = make_service() if pools == "two-pools" else svc_a
    for trial in range(30):
        sid = f"race-{trial}"
        await svc_a.create_session(app_name=APP, user_id=USER, session_id=sid, state={"n": 0})
        # Both writers hold the same revision of the session.
        sa, sb = await load(svc_a, sid), await load(svc_b, sid)
        ea = make_event(f"a-{trial}", timestamp=T0 + trial, state={"winner": "a", "user:a": trial})
        eb = make_event(f"b-{trial}", timestamp=T0 + trial, state={"winner": "b", "user:b": trial})
        results = await asyncio.gather(
            svc_a.append_event(sa, ea), svc_b.append_event(sb, eb), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1, f"trial {trial}: {results!r}"
        assert isinstance(failures[0], StaleSessionError), f"trial {trial}: {failures[0]!r}"
        a_won = not isinstance(results[0], BaseException)
        winner, loser = (ea, eb) if a_won else (eb, ea)
        loser_session = sb if a_won else sa
        # The loser's event is stored nowhere: not in the table, not on its session object.
        stored = await load(svc_a, sid)
        assert [e.id for e in stored.events] == [winner.id]
        assert stored.state["winner"] == ("a" if a_won else "b")
        assert loser.id not in [e.id for e in loser_session.events]
        user_state = await svc_a.get_user_state(app_name=APP, user_id=USER)
        assert user_state.get("a" if a_won else "b") == trial
        assert user_state.get("b" if a_won else "a") != trial


async def test_concurrent_user_state_writes_from_two_sessions_lose_nothing(
    two_services: tuple[PostgresSessionService, PostgresSessionService],
):
    svc_a, svc_b = two_services
    await svc_a.create_session(app_name=APP, user_id=USER, session_id="left")
    await svc_b.create_session(app_name=APP, user_id=USER, session_id="right")
    left, right = await load(svc_a, "left"), await load(svc_b, "right")
    rounds = 40
    for i in range(rounds):
        # Different sessions never make each other stale, so both appends must succeed.
        await asyncio.gather(
            svc_a.append_event(
                left,
                make_event(f"l{i}", timestamp=T0 + i, state={f"user:l{i}": i, f"app:l{i}": i}),
            ),
            svc_b.append_event(
                right,
                make_event(f"r{i}", timestamp=T0 + i, state={f"user:r{i}": i, f"app:r{i}": i}),
            ),
        )
    expected = {f"{side}{i}": i for i in range(rounds) for side in "lr"}
    assert await svc_a.get_user_state(app_name=APP, user_id=USER) == expected
    fresh = await load(svc_b, "left")
    assert {k: v for k, v in fresh.state.items() if k.startswith("app:")} == {
        f"app:{k}": v for k, v in expected.items()
    }
    assert len(fresh.events) == rounds


async def test_fifty_sequential_appends_from_one_session_object(
    service: PostgresSessionService,
):
    session = await service.create_session(app_name=APP, user_id=USER, session_id="seq")
    events = [make_event(f"e{i:02d}", timestamp=T0 + i * 0.001, state={"i": i}) for i in range(50)]
    for event in events:
        await service.append_event(session, event)  # the marker is refreshed after each append
    stored = await load(service, "seq")
    assert [e.id for e in stored.events] == [e.id for e in events]
    assert stored.events == events
    assert stored.state == {"i": 49}
    assert session == stored


async def test_session_loaded_before_another_process_appended_is_stale(
    two_services: tuple[PostgresSessionService, PostgresSessionService],
):
    svc_a, svc_b = two_services
    await svc_a.create_session(app_name=APP, user_id=USER, session_id="old")
    held_by_a = await load(svc_a, "old")
    other = await load(svc_b, "old")
    await svc_b.append_event(other, make_event("b1", timestamp=T0 + 1, state={"k": "b"}))

    with pytest.raises(StaleSessionError):
        await svc_a.append_event(held_by_a, make_event("a1", timestamp=T0 + 2, state={"k": "a"}))
    stored = await load(svc_a, "old")
    assert [e.id for e in stored.events] == ["b1"]
    assert stored.state == {"k": "b"}

    # After re-reading, the same writer appends normally.
    fresh = await load(svc_a, "old")
    await svc_a.append_event(fresh, make_event("a2", timestamp=T0 + 3, state={"k": "a"}))
    stored = await load(svc_b, "old")
    assert [e.id for e in stored.events] == ["b1", "a2"]
    assert stored.state == {"k": "a"}
    assert fresh == stored


async def test_stale_detected_when_other_append_kept_the_same_timestamp(
    two_services: tuple[PostgresSessionService, PostgresSessionService],
):
    # The other writer's event has the same timestamp as the session's last update: the
    # revision, not the clock, must reveal the change.
    svc_a, svc_b = two_services
    created = await svc_a.create_session(app_name=APP, user_id=USER, session_id="same-ts")
    held = await load(svc_a, "same-ts")
    other = await load(svc_b, "same-ts")
    await svc_b.append_event(
        other, make_event("b1", timestamp=created.last_update_time, state={"x": 1})
    )
    with pytest.raises(StaleSessionError):
        await svc_a.append_event(held, make_event("a1", timestamp=created.last_update_time))


async def test_session_deleted_by_another_process_raises_not_found(
    two_services: tuple[PostgresSessionService, PostgresSessionService],
):
    svc_a, svc_b = two_services
    await svc_a.create_session(app_name=APP, user_id=USER, session_id="doomed")
    held = await load(svc_a, "doomed")
    await svc_b.delete_session(app_name=APP, user_id=USER, session_id="doomed")
    with pytest.raises(SessionNotFoundError):
        await svc_a.append_event(held, make_event("a1", timestamp=T0))
    assert await svc_b.get_session(app_name=APP, user_id=USER, session_id="doomed") is None


async def test_concurrent_creates_of_one_id_exactly_one_succeeds(
    two_services: tuple[PostgresSessionService, PostgresSessionService],
):
    svc_a, svc_b = two_services
    for trial in range(20):
        sid = f"create-{trial}"
        results = await asyncio.gather(
            svc_a.create_session(app_name=APP, user_id=USER, session_id=sid, state={"by": "a"}),
            svc_b.create_session(app_name=APP, user_id=USER, session_id=sid, state={"by": "b"}),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1, f"trial {trial}: {results!r}"
        assert isinstance(failures[0], AlreadyExistsError), f"trial {trial}: {failures[0]!r}"
        winner = next(r for r in results if isinstance(r, Session))
        assert await load(svc_a, sid) == winner


async def test_retry_of_an_append_that_already_committed_is_idempotent(
    two_services: tuple[PostgresSessionService, PostgresSessionService],
):
    # A dropped connection can hide a commit: the caller's object still has the old revision
    # and it retries the same event. Simulated without mocks: another object of the same
    # revision performs the "first attempt".
    svc_a, svc_b = two_services
    await svc_a.create_session(app_name=APP, user_id=USER, session_id="retry")
    caller = await load(svc_a, "retry")
    first_attempt = await load(svc_b, "retry")
    event = make_event("e1", timestamp=T0 + 1, state={"user:n": 1, "k": "v"})
    await svc_b.append_event(first_attempt, event)

    await svc_a.append_event(caller, event)  # the retry: neither an error nor a duplicate
    stored = await load(svc_a, "retry")
    assert [e.id for e in stored.events] == ["e1"]
    assert stored.state == {"k": "v", "user:n": 1}
    # The caller continues as if its first attempt had returned.
    await svc_a.append_event(caller, make_event("e2", timestamp=T0 + 2))
    stored = await load(svc_b, "retry")
    assert [e.id for e in stored.events] == ["e1", "e2"]
    assert caller == stored


async def test_session_objects_without_marker_follow_adks_fallback_rule(
    two_services: tuple[PostgresSessionService, PostgresSessionService],
):
    # DatabaseSessionService: a hand-built Session (no marker) is stale only if storage moved
    # past its last_update_time and its last event is not the stored latest one.
    svc_a, svc_b = two_services
    await svc_a.create_session(app_name=APP, user_id=USER, session_id="manual")
    loaded = await load(svc_a, "manual")
    await svc_a.append_event(loaded, make_event("e1", timestamp=T0 + 1))
    stored = await load(svc_b, "manual")

    up_to_date = Session(
        app_name=APP,
        user_id=USER,
        id="manual",
        events=list(stored.events),
        last_update_time=stored.last_update_time,
    )
    await svc_b.append_event(up_to_date, make_event("e2", timestamp=T0 + 2))

    behind = Session(
        app_name=APP, user_id=USER, id="manual", events=list(stored.events), last_update_time=T0
    )
    with pytest.raises(StaleSessionError):
        await svc_a.append_event(behind, make_event("e3", timestamp=T0 + 3))
    assert [e.id for e in (await load(svc_a, "manual")).events] == ["e1", "e2"]


async def test_more_concurrent_appends_than_pooled_connections(make_service: MakeService):
    # 40 sessions appended at once through a pool of 2: callers wait for a connection.
    svc = make_service(pool_size=2)
    sessions = [
        await svc.create_session(app_name=APP, user_id=f"u{i}", session_id="s") for i in range(40)
    ]
    await asyncio.gather(
        *(
            svc.append_event(s, make_event(f"e{i}", timestamp=T0 + i, state={"user:i": i}))
            for i, s in enumerate(sessions)
        )
    )
    for i in range(40):
        stored = await load(svc, "s", user_id=f"u{i}")
        assert [e.id for e in stored.events] == [f"e{i}"]
        assert stored.state == {"user:i": i}
