"""Upgrade in place and rolling deploys: ADK's own DatabaseSessionService and ours on the same
tables (DESIGN §1.5).

ADK creates the v1 schema and data first; PostgresSessionService then migrates the tables in
place and must read everything back as ADK does, while ADK keeps working next to it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from typing import Any

import asyncpg
import pytest
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import DatabaseSessionService, Session
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from adk_postgres import PostgresSessionService

APP = "compat-app"
# A fixed future time (17 significant digits) so event timestamps move update times forward.
T0 = 1_900_000_000.1234567

MakeService = Callable[..., PostgresSessionService]


def asyncpg_url(pg_url: str) -> str:
    """SQLAlchemy URL for the same server; unix-socket URLs keep their ``?host=`` query."""
    scheme, rest = pg_url.split("://", 1)
    assert scheme in ("postgresql", "postgres"), pg_url
    return f"postgresql+asyncpg://{rest}"


@pytest.fixture
async def adk(
    pg_url: str, pg_admin: asyncpg.Connection, schema_name: str
) -> AsyncIterator[DatabaseSessionService]:
    """ADK's own service, confined to the test schema through search_path."""
    await pg_admin.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema_name}"')
    svc = DatabaseSessionService(
        asyncpg_url(pg_url), connect_args={"server_settings": {"search_path": schema_name}}
    )
    yield svc
    await svc.close()


def make_event(eid: str, i: int, state: dict[str, Any] | None = None) -> Event:
    return Event(
        id=eid,
        invocation_id=f"inv-{eid}",
        author="model" if i % 2 else "user",
        timestamp=T0 + i * 0.125,
        content=types.Content(
            role="model",
            parts=[
                types.Part(text=f"turn {i} — héllo 🌍"),
                types.Part(
                    inline_data=types.Blob(
                        mime_type="application/octet-stream",
                        data=bytes([i % 256]) * 40 + b"\x00\xff",
                    )
                ),
                types.Part(
                    function_call=types.FunctionCall(
                        id=f"fc-{i}", name="tool", args={"n": 2**70 + i, "f": 0.1}
                    )
                ),
            ],
        ),
        long_running_tool_ids={f"fc-{i}", "fc-x"},
        custom_metadata={"i": i, "third": 0.30000000000000004},
        actions=EventActions(state_delta=dict(state or {})),
    )


def comparable(session: Session | None) -> dict[str, Any] | None:
    """Everything but the private marker, whose format is each implementation's own.

    ``last_update_time`` of ADK-written rows comes from a microsecond timestamp column; both
    sides derive it from that column, so allow only sub-microsecond conversion differences.
    """
    if session is None:
        return None
    return {
        "id": session.id,
        "app_name": session.app_name,
        "user_id": session.user_id,
        "state": session.state,
        "events": session.events,
        "last_update_time": pytest.approx(session.last_update_time, abs=1e-6),
    }


async def get(svc: Any, user_id: str, session_id: str, **kw: Any) -> Session:
    session = await svc.get_session(app_name=APP, user_id=user_id, session_id=session_id, **kw)
    assert session is not None, (type(svc).__name__, user_id, session_id)
    return session


async def populate_with_adk(adk: DatabaseSessionService) -> list[tuple[str, str]]:
    """Sessions with app, user and session state and rich events, written by ADK only."""
    keys = [("u1", "s1"), ("u1", "s2"), ("u2", "s3")]
    for user, sid in keys:
        await adk.create_session(
            app_name=APP,
            user_id=user,
            session_id=sid,
            state={"app:tier": "gold", f"user:name_{user}": user, "sid": sid, "n": 2**64},
        )
    await adk.create_session(app_name="other-app", user_id="u1", session_id="s1")
    for i, (user, sid) in enumerate([("u1", "s1"), ("u2", "s3"), ("u1", "s1"), ("u1", "s2")]):
        session = await get(adk, user, sid)
        await adk.append_event(
            session,
            make_event(f"adk-{i}", i, state={"step": i, f"app:k{i}": i, "user:last": sid}),
        )
    return keys


async def assert_same_view(
    adk: DatabaseSessionService, ours: PostgresSessionService, keys: list[tuple[str, str]]
) -> None:
    configs = [
        None,
        GetSessionConfig(num_recent_events=1),
        GetSessionConfig(num_recent_events=0),
        GetSessionConfig(after_timestamp=T0 + 0.25),
    ]
    for user, sid in keys:
        for config in configs:
            theirs = await get(adk, user, sid, config=config)
            assert comparable(await get(ours, user, sid, config=config)) == comparable(theirs)
    for user in ["u1", "u2", None]:
        theirs = (await adk.list_sessions(app_name=APP, user_id=user)).sessions
        mine = (await ours.list_sessions(app_name=APP, user_id=user)).sessions
        assert [comparable(s) for s in mine] == [comparable(s) for s in theirs], user
    for user in ["u1", "u2", "nobody"]:
        assert await ours.get_user_state(app_name=APP, user_id=user) == await adk.get_user_state(
            app_name=APP, user_id=user
        )


async def schema_version(pg_admin: asyncpg.Connection, schema: str) -> str:
    return await pg_admin.fetchval(
        f'SELECT value FROM "{schema}".adk_internal_metadata WHERE key = $1', "schema_version"
    )


async def test_ours_reads_adk_data_exactly_as_adk_does(
    adk: DatabaseSessionService, make_service: MakeService
):
    keys = await populate_with_adk(adk)
    ours = make_service()
    await assert_same_view(adk, ours, keys)
    # Sanity: the comparison really covered events and merged state.
    s1 = await get(ours, "u1", "s1")
    assert [e.id for e in s1.events] == ["adk-0", "adk-2"]
    assert s1.state["app:k3"] == 3 and s1.state["user:last"] == "s2" and s1.state["n"] == 2**64


async def test_writes_interleave_both_ways_after_in_place_migration(
    adk: DatabaseSessionService,
    make_service: MakeService,
    pg_admin: asyncpg.Connection,
    schema_name: str,
):
    keys = await populate_with_adk(adk)
    ours = make_service()
    await assert_same_view(adk, ours, keys)  # first use migrates the tables

    # Ours appends to an ADK-created session; ADK sees the event and the state.
    mine = await get(ours, "u1", "s1")
    ours_event = make_event("ours-1", 10, state={"step": "ours", "app:k0": "ours", "user:x": 1})
    await ours.append_event(mine, ours_event)
    theirs = await get(adk, "u1", "s1")
    assert theirs.events[-1] == ours_event
    assert comparable(theirs) == comparable(mine)

    # ADK appends on top of ours' write (its marker must match what ours left behind).
    adk_event = make_event("adk-after", 11, state={"step": "adk", "user:y": 2})
    await adk.append_event(theirs, adk_event)
    mine = await get(ours, "u1", "s1")
    assert [e.id for e in mine.events] == ["adk-0", "adk-2", "ours-1", "adk-after"]
    assert mine.events[-1] == adk_event
    assert comparable(mine) == comparable(await get(adk, "u1", "s1"))

    # Ours can append again after ADK's write, once it has re-read the session.
    await ours.append_event(mine, make_event("ours-2", 12, state={"step": "ours-2"}))

    # Sessions created by either side are usable by the other.
    await adk.create_session(app_name=APP, user_id="u3", session_id="by-adk", state={"a": 1})
    by_adk = await get(ours, "u3", "by-adk")
    await ours.append_event(by_adk, make_event("o-on-adk", 13, state={"user:z": 3}))
    await ours.create_session(app_name=APP, user_id="u4", session_id="by-ours", state={"b": 2})
    by_ours = await get(adk, "u4", "by-ours")
    await adk.append_event(by_ours, make_event("a-on-ours", 14, state={"app:w": 4}))
    await ours.create_session(app_name="new-app", user_id="u5", session_id="fresh-app")
    fresh_app = await adk.get_session(app_name="new-app", user_id="u5", session_id="fresh-app")
    assert fresh_app is not None
    await adk.append_event(fresh_app, make_event("a-new-app", 15, state={"app:v": 1}))

    await assert_same_view(adk, ours, [*keys, ("u3", "by-adk"), ("u4", "by-ours")])
    assert await schema_version(pg_admin, schema_name) == "1"


async def test_adk_works_on_tables_created_by_ours(
    adk: DatabaseSessionService,
    make_service: MakeService,
    pg_admin: asyncpg.Connection,
    schema_name: str,
):
    ours = make_service()
    created = await ours.create_session(
        app_name=APP, user_id="u1", session_id="s1", state={"app:a": 1, "user:b": 2, "c": 3}
    )
    await ours.append_event(created, make_event("o1", 1, state={"c": 4}))
    assert await schema_version(pg_admin, schema_name) == "1"
    # ADK detects the v1 schema, finds its tables and indexes, and works on them.
    theirs = await get(adk, "u1", "s1")
    assert comparable(theirs) == comparable(created)
    await adk.append_event(theirs, make_event("a1", 2, state={"user:b": 5}))
    await adk.create_session(app_name=APP, user_id="u1", session_id="s2")
    await assert_same_view(adk, ours, [("u1", "s1"), ("u1", "s2")])
    assert await schema_version(pg_admin, schema_name) == "1"


async def test_adk_write_makes_a_session_loaded_by_ours_stale(
    adk: DatabaseSessionService, make_service: MakeService
):
    keys = await populate_with_adk(adk)
    ours = make_service()
    await assert_same_view(adk, ours, keys)
    held_by_ours = await get(ours, "u1", "s1")
    theirs = await get(adk, "u1", "s1")
    await adk.append_event(theirs, make_event("adk-wins", 20, state={"step": "adk"}))
    with pytest.raises(StaleSessionError):
        await ours.append_event(held_by_ours, make_event("ours-loses", 21, state={"step": "o"}))
    stored = await get(adk, "u1", "s1")
    assert [e.id for e in stored.events][-1] == "adk-wins"
    assert "ours-loses" not in [e.id for e in stored.events]
    assert stored.state["step"] == "adk"


async def test_adk_state_only_update_makes_ours_stale(
    adk: DatabaseSessionService, make_service: MakeService
):
    # ADK's append keeps update_time equal to the event time; if that equals the stored time,
    # only the revision trigger can reveal ADK's write to ours.
    await adk.create_session(app_name=APP, user_id="u1", session_id="s1")
    ours = make_service()
    first = await get(adk, "u1", "s1")
    await adk.append_event(first, make_event("a0", 0))
    held_by_ours = await get(ours, "u1", "s1")
    theirs = await get(adk, "u1", "s1")
    await adk.append_event(theirs, make_event("a0-same-time", 0, state={"x": 1}))
    with pytest.raises(StaleSessionError):
        await ours.append_event(held_by_ours, make_event("o1", 1))


async def test_our_write_makes_a_session_loaded_by_adk_stale(
    adk: DatabaseSessionService, make_service: MakeService
):
    keys = await populate_with_adk(adk)
    ours = make_service()
    await assert_same_view(adk, ours, keys)
    held_by_adk = await get(adk, "u2", "s3")
    mine = await get(ours, "u2", "s3")
    await ours.append_event(mine, make_event("ours-wins", 30, state={"step": "ours"}))
    # ADK's marker is update_time: ours must have moved it.
    with pytest.raises(StaleSessionError):
        await adk.append_event(held_by_adk, make_event("adk-loses", 31, state={"step": "a"}))
    stored = await get(ours, "u2", "s3")
    assert [e.id for e in stored.events][-1] == "ours-wins"
    assert stored.state["step"] == "ours"


async def test_adk_rows_are_left_in_adk_format(
    adk: DatabaseSessionService,
    make_service: MakeService,
    pg_admin: asyncpg.Connection,
    schema_name: str,
):
    # An event written by ours is stored the way ADK stores it, so an ADK-only rollback works.
    await adk.create_session(app_name=APP, user_id="u1", session_id="s1")
    ours = make_service()
    session = await get(ours, "u1", "s1")
    event = make_event("o1", 1, state={"k": 1})
    await ours.append_event(session, event)
    row = await pg_admin.fetchrow(
        f'SELECT invocation_id, timestamp, event_data FROM "{schema_name}".events WHERE id = $1',
        "o1",
    )
    assert row["invocation_id"] == event.invocation_id
    # ADK's column is a naive UTC timestamp with microsecond precision.
    stored_at = row["timestamp"].replace(tzinfo=UTC).timestamp()
    assert stored_at == pytest.approx(event.timestamp, abs=1e-6)
    assert Event.model_validate(json.loads(row["event_data"])) == event


def test_stored_sessions_are_what_pydantic_builds() -> None:
    """create/get/list build Sessions without validation (session_service._stored_session):
    the result must be indistinguishable from ``Session(...)`` of the same values."""
    from adk_postgres.session_service import _stored_session

    event = Event(author="user", invocation_id="i", content=types.Content(role="user"))
    for state, events, ts in [({}, [], 0.0), ({"a": [1, {"b": None}], "app:x": "é"}, [event], 7)]:
        ours = _stored_session(("app", "user", "sid"), state, events, ts, "3:9")
        theirs = Session(
            app_name="app",
            user_id="user",
            id="sid",
            state=state,
            events=events,
            last_update_time=ts,
        )
        theirs._storage_update_marker = "3:9"
        assert ours == theirs
        assert ours.model_fields_set == theirs.model_fields_set
        assert ours.__pydantic_private__ == theirs.__pydantic_private__
        assert ours.__pydantic_extra__ is theirs.__pydantic_extra__ is None
        assert ours.__dict__ == theirs.__dict__ and list(ours.__dict__) == list(theirs.__dict__)
        assert {k: type(v) for k, v in ours.__dict__.items()} == {
            k: type(v) for k, v in theirs.__dict__.items()
        }
        assert ours.model_dump_json() == theirs.model_dump_json()
        assert ours.events is not events  # a list of its own, as validation makes
        ours.state["new"] = 1  # still a working model: assignment and copies behave
        ours.last_update_time = 9.5
        assert ours.model_copy(deep=True) == ours and "last_update_time" in ours.model_fields_set
