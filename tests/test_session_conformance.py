"""Conformance of PostgresSessionService with ADK 2.13's session contract (DESIGN §2 and §3).

Where ADK's InMemorySessionService defines the behaviour, the same scenario runs on both services
and the results are compared; the rest is checked against ADK's DatabaseSessionService semantics
and the stored rows.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events import Event
from google.adk.events.event import NodeInfo
from google.adk.events.event_actions import EventActions, EventCompaction
from google.adk.platform import time as platform_time
from google.adk.platform import uuid as platform_uuid
from google.adk.sessions import BaseSessionService, InMemorySessionService, Session
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from adk_postgres import PostgresSessionService, errors

APP = "conformance-app"
USER = "alice"
# 17 significant digits, like a time.time() reading; fixed so both services see the same events.
T0 = 1_751_234_567.1234567


def ts(i: int) -> float:
    return T0 + i * 0.25


def make_event(
    eid: str,
    *,
    timestamp: float,
    state: dict[str, Any] | None = None,
    text: str | None = None,
    partial: bool | None = None,
    author: str = "model",
) -> Event:
    return Event(
        id=eid,
        invocation_id=f"inv-{eid}",
        author=author,
        timestamp=timestamp,
        partial=partial,
        content=types.Content(role="model", parts=[types.Part(text=text or f"text of {eid}")]),
        actions=EventActions(state_delta=dict(state or {})),
    )


def rich_event(eid: str, *, timestamp: float) -> Event:
    """An event with most of the fields an agent run produces, including bytes and sets."""
    return Event(
        id=eid,
        invocation_id="inv-rich",
        author="planner",
        timestamp=timestamp,
        branch="root.planner",
        content=types.Content(
            role="model",
            parts=[
                types.Part(text="héllo 🌍 مرحبا e\u0301"),
                types.Part(
                    inline_data=types.Blob(mime_type="image/png", data=bytes(range(256)) * 3)
                ),
                types.Part(
                    function_call=types.FunctionCall(
                        id="fc-1", name="lookup", args={"q": "x", "n": 2**70, "f": 0.1}
                    )
                ),
                types.Part(
                    function_response=types.FunctionResponse(
                        id="fc-1", name="lookup", response={"result": [1, 2.5, None, True]}
                    )
                ),
                types.Part(text="thinking", thought=True, thought_signature=b"\x00\xffsig"),
            ],
        ),
        long_running_tool_ids={"fc-1", "fc-0", "zz"},
        custom_metadata={
            "nested": {"a": [1, {"b": None}], "empty": {}},
            "big": 2**64 + 1,
            "neg_big": -(2**80),
            "tiny": 5e-324,
            "third": 0.30000000000000004,
        },
        grounding_metadata=types.GroundingMetadata(
            web_search_queries=["q1"],
            grounding_chunks=[
                types.GroundingChunk(web=types.GroundingChunkWeb(uri="https://x.test", title="t"))
            ],
        ),
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=10, candidates_token_count=5, total_token_count=15
        ),
        finish_reason=types.FinishReason.STOP,
        turn_complete=True,
        avg_logprobs=-0.30000000000000004,
        actions=EventActions(
            state_delta={"step": eid, "app:seen": True, "user:last": eid},
            artifact_delta={"report.txt": 3},
            transfer_to_agent="writer",
            escalate=False,
            skip_summarization=True,
            compaction=EventCompaction(
                start_timestamp=T0,
                end_timestamp=T0 + 1.5,
                compacted_content=types.Content(role="model", parts=[types.Part(text="sum")]),
            ),
        ),
        node_info=NodeInfo(path="wf/A@1"),
        output={"answer": [1, 2.5, "three"]},
    )


def view(session: Session | None) -> dict[str, Any] | None:
    """What both services must agree on: everything but the create-time clock and marker."""
    if session is None:
        return None
    return {
        "id": session.id,
        "app_name": session.app_name,
        "user_id": session.user_id,
        "state": session.state,
        "events": session.events,
    }


Scenario = Callable[[BaseSessionService], Awaitable[dict[str, Any]]]


async def assert_same_as_in_memory(service: PostgresSessionService, scenario: Scenario) -> None:
    """Run one scenario on ADK's reference service and on ours; every named result must match."""
    reference = await scenario(InMemorySessionService())
    ours = await scenario(service)
    assert ours.keys() == reference.keys()
    # Report every differing result at once: {name: (ours, in-memory)}.
    differences = {k: (ours[k], reference[k]) for k in reference if ours[k] != reference[k]}
    assert not differences, f"differs from InMemorySessionService: {differences!r}"


async def get(svc: BaseSessionService, session_id: str, **kw: Any) -> Session | None:
    return await svc.get_session(
        app_name=kw.pop("app_name", APP),
        user_id=kw.pop("user_id", USER),
        session_id=session_id,
        **kw,
    )


# --- create / get / delete ---------------------------------------------------------------


async def test_get_missing_session_on_fresh_schema_returns_none(service: PostgresSessionService):
    # First call on an empty schema: lazy migration, then a clean "not found".
    assert await get(service, "nope") is None


async def test_create_with_id_then_get_is_equal(service: PostgresSessionService):
    created = await service.create_session(
        app_name=APP, user_id=USER, session_id="s1", state={"k": 1, "app:a": 2, "user:u": 3}
    )
    assert created.id == "s1"
    assert created.events == []
    assert created.state == {"k": 1, "app:a": 2, "user:u": 3}
    got = await get(service, "s1")
    # Session.__eq__ includes the storage marker and the exact float update time.
    assert got == created
    assert got is not None and got._storage_update_marker is not None


async def test_create_without_id_generates_distinct_ids(service: PostgresSessionService):
    a = await service.create_session(app_name=APP, user_id=USER)
    b = await service.create_session(app_name=APP, user_id=USER)
    assert a.id and b.id and a.id != b.id
    uuid.UUID(a.id)  # ADK's default provider makes uuid4 strings
    assert await get(service, a.id) == a
    assert await get(service, b.id) == b


async def test_generated_ids_and_times_come_from_adk_platform(service: PostgresSessionService):
    # DESIGN §2: ids from platform.uuid.new_uuid(), times from platform.time.get_time().
    platform_uuid.set_id_provider(lambda: "provided-id-1")
    platform_time.set_time_provider(lambda: 1_700_000_000.25)
    try:
        created = await service.create_session(app_name=APP, user_id=USER)
    finally:
        platform_uuid.reset_id_provider()
        platform_time.reset_time_provider()
    assert created.id == "provided-id-1"
    assert created.last_update_time == pytest.approx(1_700_000_000.25, abs=1e-6)
    assert await get(service, "provided-id-1") == created


async def test_duplicate_id_raises_already_exists_and_changes_nothing(
    service: PostgresSessionService,
):
    first = await service.create_session(
        app_name=APP, user_id=USER, session_id="dup", state={"k": "original", "app:a": 1}
    )
    with pytest.raises(AlreadyExistsError):
        await service.create_session(
            app_name=APP, user_id=USER, session_id="dup", state={"k": "new", "app:a": 2}
        )
    # Whitespace is stripped before the uniqueness check.
    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name=APP, user_id=USER, session_id="  dup\t")
    # The failed creates wrote neither the session nor app state.
    assert await get(service, "dup") == first


async def test_ids_are_whitespace_stripped_on_create_get_delete(service: PostgresSessionService):
    created = await service.create_session(app_name=APP, user_id=USER, session_id="  padded \n")
    assert created.id == "padded"
    assert await get(service, "\tpadded  ") == created
    assert await get(service, "padded") == created
    await service.delete_session(app_name=APP, user_id=USER, session_id=" padded ")
    assert await get(service, "padded") is None


async def test_whitespace_only_id_behaves_like_in_memory(service: PostgresSessionService):
    # InMemorySessionService strips "   " to "" and then generates an id.
    async def scenario(svc: BaseSessionService) -> dict[str, Any]:
        s = await svc.create_session(app_name=APP, user_id=USER, session_id="   ")
        return {
            "id_generated": bool(s.id.strip()) and s.id != "   ",
            "found": (await get(svc, s.id)) is not None,
        }

    await assert_same_as_in_memory(service, scenario)


async def test_delete_missing_is_noop(service: PostgresSessionService):
    await service.delete_session(app_name="never-seen", user_id=USER, session_id="x")
    await service.create_session(app_name=APP, user_id=USER, session_id="keep")
    await service.delete_session(app_name=APP, user_id=USER, session_id="missing")
    assert await get(service, "keep") is not None


async def test_delete_removes_events(
    service: PostgresSessionService, pg_admin: asyncpg.Connection, schema_name: str
):
    s = await service.create_session(app_name=APP, user_id=USER, session_id="gone")
    for i in range(3):
        await service.append_event(s, make_event(f"e{i}", timestamp=ts(i)))
    await service.delete_session(app_name=APP, user_id=USER, session_id="gone")
    assert await get(service, "gone") is None
    left = await pg_admin.fetchval(
        f'SELECT count(*) FROM "{schema_name}".events WHERE session_id = $1', "gone"
    )
    assert left == 0
    # Re-creating the id starts from an empty history.
    again = await service.create_session(app_name=APP, user_id=USER, session_id="gone")
    assert again.events == []
    fresh = await get(service, "gone")
    assert fresh is not None and fresh.events == []


async def test_delete_then_append_raises_session_not_found(service: PostgresSessionService):
    s = await service.create_session(app_name=APP, user_id=USER, session_id="del")
    await service.delete_session(app_name=APP, user_id=USER, session_id="del")
    with pytest.raises(SessionNotFoundError):
        await service.append_event(s, make_event("e0", timestamp=ts(0)))


async def test_append_to_never_created_session_raises_session_not_found(
    service: PostgresSessionService,
):
    await service.create_session(app_name=APP, user_id=USER, session_id="other")
    ghost = Session(app_name=APP, user_id=USER, id="ghost")
    with pytest.raises(SessionNotFoundError):
        await service.append_event(ghost, make_event("e0", timestamp=ts(0)))


async def test_same_id_under_other_user_or_app_is_another_session(
    service: PostgresSessionService,
):
    async def scenario(svc: BaseSessionService) -> dict[str, Any]:
        keys = [(APP, "u1"), (APP, "u2"), ("other-app", "u1")]
        sessions = {}
        for app, user in keys:
            sessions[(app, user)] = await svc.create_session(
                app_name=app, user_id=user, session_id="shared", state={"owner": f"{app}/{user}"}
            )
        await svc.append_event(
            sessions[(APP, "u1")], make_event("only-u1", timestamp=ts(1), state={"n": 1})
        )
        await svc.delete_session(app_name=APP, user_id="u2", session_id="shared")
        return {
            f"{app}/{user}": view(await get(svc, "shared", app_name=app, user_id=user))
            for app, user in keys
        }

    await assert_same_as_in_memory(service, scenario)


# --- state prefixes ----------------------------------------------------------------------

INITIAL_STATE: dict[str, Any] = {
    "app:theme": "dark",
    "user:lang": "fr",
    "temp:scratch": "never stored",
    "x:custom": 1,
    "plain": {"nested": [1, 2, {"deep": None}]},
    "none": None,
}


async def test_state_prefixes_match_in_memory(service: PostgresSessionService):
    async def scenario(svc: BaseSessionService) -> dict[str, Any]:
        s1 = await svc.create_session(
            app_name=APP, user_id="u1", session_id="s1", state=INITIAL_STATE
        )
        s2 = await svc.create_session(app_name=APP, user_id="u1", session_id="s2")
        s3 = await svc.create_session(
            app_name=APP, user_id="u2", session_id="s3", state={"user:lang": "de"}
        )
        return {
            "created": [view(s) for s in (s1, s2, s3)],
            "got": [
                view(await get(svc, "s1", user_id="u1")),
                view(await get(svc, "s2", user_id="u1")),
                view(await get(svc, "s3", user_id="u2")),
            ],
            "user_state_u1": await svc.get_user_state(app_name=APP, user_id="u1"),
            "user_state_u2": await svc.get_user_state(app_name=APP, user_id="u2"),
            "user_state_none": await svc.get_user_state(app_name=APP, user_id="nobody"),
            "user_state_other_app": await svc.get_user_state(app_name="nope", user_id="u1"),
        }

    await assert_same_as_in_memory(service, scenario)


async def test_state_is_stored_where_adk_stores_it(
    service: PostgresSessionService, pg_admin: asyncpg.Connection, schema_name: str
):
    s = await service.create_session(
        app_name=APP, user_id=USER, session_id="layout", state=INITIAL_STATE
    )
    await service.append_event(
        s,
        make_event(
            "e1",
            timestamp=ts(1),
            state={"app:n": 1, "user:n": 2, "temp:t": "secret-temp-value", "y:z": 3},
        ),
    )

    async def stored(sql: str, *args: Any) -> Any:
        value = await pg_admin.fetchval(sql.replace("{s}", f'"{schema_name}"'), *args)
        return json.loads(value)

    # Prefixes stripped in storage: app: per app, user: per (app, user), the rest per session.
    assert await stored("SELECT state FROM {s}.app_states WHERE app_name = $1", APP) == {
        "theme": "dark",
        "n": 1,
    }
    assert await stored(
        "SELECT state FROM {s}.user_states WHERE app_name = $1 AND user_id = $2", APP, USER
    ) == {"lang": "fr", "n": 2}
    assert await stored(
        "SELECT state FROM {s}.sessions WHERE app_name = $1 AND user_id = $2 AND id = $3",
        APP,
        USER,
        "layout",
    ) == {"x:custom": 1, "plain": {"nested": [1, 2, {"deep": None}]}, "none": None, "y:z": 3}
    # temp: is never written, neither in state nor inside the stored event.
    dump = await pg_admin.fetchval(
        f"""SELECT string_agg(t, ' ') FROM (
              SELECT state::text AS t FROM "{schema_name}".sessions
              UNION ALL SELECT state::text FROM "{schema_name}".app_states
              UNION ALL SELECT state::text FROM "{schema_name}".user_states
              UNION ALL SELECT event_data::text FROM "{schema_name}".events) x"""
    )
    assert "temp:" not in dump and "never stored" not in dump and "secret-temp-value" not in dump


async def test_get_user_state_returns_unprefixed_keys(service: PostgresSessionService):
    assert await service.get_user_state(app_name=APP, user_id=USER) == {}
    s = await service.create_session(
        app_name=APP, user_id=USER, state={"user:a": 1, "app:b": 2, "c": 3}
    )
    await service.append_event(s, make_event("e1", timestamp=ts(1), state={"user:d": [4]}))
    assert await service.get_user_state(app_name=APP, user_id=USER) == {"a": 1, "d": [4]}
    assert await service.get_user_state(app_name=APP, user_id="someone-else") == {}


# --- append_event ------------------------------------------------------------------------


async def test_append_state_deltas_match_in_memory(service: PostgresSessionService):
    async def scenario(svc: BaseSessionService) -> dict[str, Any]:
        s = await svc.create_session(
            app_name=APP, user_id=USER, session_id="s", state=INITIAL_STATE
        )
        await svc.create_session(app_name=APP, user_id=USER, session_id="other")
        deltas = [
            {"plain": {"replaced": True}, "app:theme": "light", "temp:t1": 1},
            {"none": 0, "user:lang": None, "user:new": {"a": [1]}, "x:custom": "two"},
            {"temp:t2": {"x": 1}, "app:counter": 3, "k": "v"},
        ]
        for i, delta in enumerate(deltas):
            await svc.append_event(s, make_event(f"e{i}", timestamp=ts(i), state=delta))
        return {
            # The caller's object carries temp: values (applied before trimming) ...
            "caller": view(s),
            # ... a fresh read does not; app/user changes reach other sessions of the scope.
            "fresh": view(await get(svc, "s")),
            "other": view(await get(svc, "other")),
            "user_state": await svc.get_user_state(app_name=APP, user_id=USER),
            "listed": [view(x) for x in (await svc.list_sessions(app_name=APP)).sessions],
        }

    await assert_same_as_in_memory(service, scenario)


async def test_temp_state_visible_on_caller_but_not_stored(service: PostgresSessionService):
    s = await service.create_session(app_name=APP, user_id=USER, session_id="tmp")
    event = make_event("e1", timestamp=ts(1), state={"temp:scratch": 42, "kept": 1})
    returned = await service.append_event(s, event)
    assert s.state["temp:scratch"] == 42
    assert s.state["kept"] == 1
    # The stored and returned event carry the trimmed delta, like ADK's base append_event.
    assert returned.actions.state_delta == {"kept": 1}
    fresh = await get(service, "tmp")
    assert fresh is not None
    assert "temp:scratch" not in fresh.state
    assert fresh.events[0].actions.state_delta == {"kept": 1}


async def test_partial_event_is_returned_unstored(service: PostgresSessionService):
    s = await service.create_session(app_name=APP, user_id=USER, session_id="p")
    before = await get(service, "p")
    partial = make_event("p1", timestamp=ts(1), state={"k": 1, "app:a": 1}, partial=True)
    returned = await service.append_event(s, partial)
    assert returned is partial
    assert s.events == [] and "k" not in s.state
    assert await get(service, "p") == before
    assert await service.get_user_state(app_name=APP, user_id=USER) == {}


async def test_last_update_time_is_event_timestamp(service: PostgresSessionService):
    s = await service.create_session(app_name=APP, user_id=USER, session_id="t")
    for i, stamp in enumerate([ts(5), ts(9), ts(7)]):  # even when time goes backwards
        event = make_event(f"e{i}", timestamp=stamp)
        await service.append_event(s, event)
        assert s.last_update_time == stamp
        fresh = await get(service, "t")
        assert fresh is not None and fresh.last_update_time == stamp


async def test_rich_events_round_trip_exactly(service: PostgresSessionService):
    s = await service.create_session(app_name=APP, user_id=USER, session_id="rich")
    events = [rich_event(f"r{i}", timestamp=ts(i) + 1e-7 * i) for i in range(3)]
    for event in events:
        await service.append_event(s, event)
    fresh = await get(service, "rich")
    assert fresh is not None
    for stored, original in zip(fresh.events, events, strict=True):
        assert stored == original
        assert stored.timestamp == original.timestamp
        assert stored.long_running_tool_ids == {"fc-0", "fc-1", "zz"}
        assert stored.content is not None and stored.content.parts is not None
        assert stored.content.parts[1].inline_data is not None
        assert stored.content.parts[1].inline_data.data == bytes(range(256)) * 3
    # The caller's object after the appends is exactly what a fresh read returns.
    assert s == fresh


async def test_session_after_append_equals_fresh_get(service: PostgresSessionService):
    s = await service.create_session(
        app_name=APP, user_id=USER, session_id="eq", state={"app:a": 1, "user:b": 2, "c": 3}
    )
    assert s == await get(service, "eq")
    for i in range(4):
        await service.append_event(
            s,
            make_event(f"e{i}", timestamp=ts(i), state={"app:a": i, "user:b": -i, f"k{i}": i}),
        )
        assert s == await get(service, "eq")


async def test_reappending_equal_event_is_idempotent(service: PostgresSessionService):
    # InMemorySessionService dedupes an equal re-delivery; the spec requires the same.
    async def scenario(svc: BaseSessionService) -> dict[str, Any]:
        s = await svc.create_session(app_name=APP, user_id=USER, session_id="idem")
        event = make_event("e1", timestamp=ts(1), state={"user:count": 1})
        await svc.append_event(s, event)
        await svc.append_event(s, event)
        return {"fresh": view(await get(svc, "idem"))}

    await assert_same_as_in_memory(service, scenario)


async def test_same_event_id_with_other_content_raises_integrity_error(
    service: PostgresSessionService,
):
    s = await service.create_session(app_name=APP, user_id=USER, session_id="clash")
    await service.append_event(s, make_event("e1", timestamp=ts(1), text="first"))
    before = await get(service, "clash")
    with pytest.raises(errors.IntegrityError):
        await service.append_event(s, make_event("e1", timestamp=ts(2), text="second"))
    assert await get(service, "clash") == before


# --- GetSessionConfig and ordering -------------------------------------------------------


async def test_get_session_config_matches_in_memory(service: PostgresSessionService):
    configs = {
        "all": None,
        "last2": GetSessionConfig(num_recent_events=2),
        "none": GetSessionConfig(num_recent_events=0),
        "more_than_stored": GetSessionConfig(num_recent_events=50),
        "after_exact": GetSessionConfig(after_timestamp=ts(3)),  # inclusive
        "after_between": GetSessionConfig(after_timestamp=ts(3) + 1e-6),
        "after_all": GetSessionConfig(after_timestamp=ts(100)),
        "after_and_last": GetSessionConfig(after_timestamp=ts(1), num_recent_events=2),
        "after_and_many": GetSessionConfig(after_timestamp=ts(4), num_recent_events=5),
    }

    async def scenario(svc: BaseSessionService) -> dict[str, Any]:
        s = await svc.create_session(
            app_name=APP, user_id=USER, session_id="cfg", state={"app:a": 1}
        )
        for i in range(6):
            await svc.append_event(s, make_event(f"e{i}", timestamp=ts(i), state={"i": i}))
        return {name: view(await get(svc, "cfg", config=c)) for name, c in configs.items()}

    await assert_same_as_in_memory(service, scenario)


async def test_sub_microsecond_timestamps_filter_and_order_like_in_memory(
    service: PostgresSessionService,
):
    # time.time() readings carry 17 significant digits; two events can fall within one
    # microsecond. InMemorySessionService compares the exact floats, for after_timestamp
    # (inclusive) and for order; ids are chosen so that id order contradicts time order.
    plan = [
        ("e-c", 1_751_234_567.1234567),
        ("e-b", 1_751_234_567.1234569),
        ("e-a", 1_751_234_567.1234572),
    ]

    async def scenario(svc: BaseSessionService) -> dict[str, Any]:
        s = await svc.create_session(app_name=APP, user_id=USER, session_id="incl")
        for eid, stamp in plan:
            await svc.append_event(s, make_event(eid, timestamp=stamp))
        results: dict[str, Any] = {"all": [e.id for e in (await get(svc, "incl")).events]}
        for eid, stamp in plan:
            got = await get(svc, "incl", config=GetSessionConfig(after_timestamp=stamp))
            results[f"after {eid}"] = [e.id for e in got.events]
        last = await get(svc, "incl", config=GetSessionConfig(num_recent_events=1))
        results["last"] = [e.id for e in last.events]
        return results

    await assert_same_as_in_memory(service, scenario)


async def test_events_ordered_by_timestamp_then_id(service: PostgresSessionService):
    s = await service.create_session(app_name=APP, user_id=USER, session_id="order")
    # Appended out of order, with ties on the timestamp broken by id (like ADK's database).
    plan = [("m", ts(2)), ("b", ts(1)), ("z", ts(1)), ("a", ts(1)), ("c", ts(0)), ("y", ts(2))]
    for eid, stamp in plan:
        await service.append_event(s, make_event(eid, timestamp=stamp))
    expected = [eid for eid, stamp in sorted(plan, key=lambda p: (p[1], p[0]))]
    fresh = await get(service, "order")
    assert fresh is not None
    assert [e.id for e in fresh.events] == expected == ["c", "a", "b", "z", "m", "y"]
    last3 = await get(service, "order", config=GetSessionConfig(num_recent_events=3))
    assert last3 is not None and [e.id for e in last3.events] == ["z", "m", "y"]
    last4 = await get(service, "order", config=GetSessionConfig(num_recent_events=4))
    assert last4 is not None and [e.id for e in last4.events] == ["b", "z", "m", "y"]
    tied = await get(service, "order", config=GetSessionConfig(after_timestamp=ts(1)))
    assert tied is not None and [e.id for e in tied.events] == ["a", "b", "z", "m", "y"]


# --- list_sessions -----------------------------------------------------------------------


async def test_list_sessions_matches_in_memory(service: PostgresSessionService):
    async def scenario(svc: BaseSessionService) -> dict[str, Any]:
        for sid, user in [("a", "u1"), ("b", "u1"), ("c", "u2"), ("d", "u1")]:
            await svc.create_session(
                app_name=APP, user_id=user, session_id=sid, state={"sid": sid, f"user:{sid}": 1}
            )
        await svc.create_session(app_name="other-app", user_id="u1", session_id="x")
        # Update order differs from creation order: b, c, a; d is never updated.
        for sid, user, i in [("a", "u1", 3), ("b", "u1", 1), ("c", "u2", 2)]:
            s = await get(svc, sid, user_id=user)
            assert s is not None
            await svc.append_event(
                s, make_event(f"e-{sid}", timestamp=ts(i), state={"app:last": sid})
            )
        u1 = (await svc.list_sessions(app_name=APP, user_id="u1")).sessions
        everyone = (await svc.list_sessions(app_name=APP)).sessions
        return {
            "u1": [view(s) for s in u1],
            "u1_times": [s.last_update_time for s in u1[:2]],
            "all": [view(s) for s in everyone],
            "unknown_user": (await svc.list_sessions(app_name=APP, user_id="nobody")).sessions,
            "unknown_app": (await svc.list_sessions(app_name="nope")).sessions,
        }

    await assert_same_as_in_memory(service, scenario)


async def test_list_sessions_order_events_and_state(service: PostgresSessionService):
    for sid in ["first", "second", "third"]:
        await service.create_session(
            app_name=APP, user_id=USER, session_id=sid, state={"app:a": 1, "user:u": sid}
        )
    for sid, i in [("first", 9), ("second", 3), ("third", 6)]:
        s = await get(service, sid)
        assert s is not None
        await service.append_event(s, make_event(f"e-{sid}", timestamp=ts(i), state={"s": sid}))
    listed = (await service.list_sessions(app_name=APP, user_id=USER)).sessions
    assert [s.id for s in listed] == ["second", "third", "first"]  # oldest update first
    assert all(s.events == [] for s in listed)
    assert [s.last_update_time for s in listed] == [ts(3), ts(6), ts(9)]
    # Merged state: own keys plus app: and user: (the last user: write wins for all).
    assert [s.state for s in listed] == [
        {"s": sid, "app:a": 1, "user:u": "third"} for sid in ["second", "third", "first"]
    ]


# --- exact numbers and unicode -----------------------------------------------------------

EXACT_VALUES: dict[str, Any] = {
    "int_2_63": 2**63,
    "int_2_64_plus_1": 2**64 + 1,
    "int_huge": 10**40 + 7,
    "int_neg_huge": -(2**100),
    "double_17_digits": 0.30000000000000004,
    "timestamp_like": 1_751_234_567.1234567,
    "min_subnormal": 5e-324,
    "one_point_zero": 1.0,
    "list": [2**70, 0.1, -1e-300, True, None],
}
# Floats whose JSON text uses an exponent: JSONB normalises 1e308 to a 309-digit integer.
EXPONENT_FLOATS: dict[str, Any] = {
    "e308": 1e308,
    "max_double": 1.7976931348623157e308,
    "e16": 1e16,
    "e20": 2.5e20,
    "neg": -1e300,
}


def assert_exact(got: Any, expected: Any, path: str = "") -> None:
    """Equal values of the same types, recursively (so 1e308 must not come back as an int)."""
    assert type(got) is type(expected), f"{path}: {type(got).__name__} != {type(expected)}"
    if isinstance(expected, dict):
        assert got.keys() == expected.keys(), path
        for key in expected:
            assert_exact(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), path
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_exact(g, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert got == expected or (math.isnan(got) and math.isnan(expected)), path
        assert math.copysign(1, got) == math.copysign(1, expected), path
    else:
        assert got == expected, path


@pytest.mark.parametrize("values", [EXACT_VALUES, EXPONENT_FLOATS], ids=["ints-doubles", "exp"])
async def test_numbers_round_trip_exactly(service: PostgresSessionService, values: dict):
    state = {**values, "app:v": values, "user:v": values}
    s = await service.create_session(app_name=APP, user_id=USER, session_id="num", state=state)
    event = make_event("e1", timestamp=ts(1), state={"delta": values})
    event.custom_metadata = {"values": values}
    await service.append_event(s, event)
    fresh = await get(service, "num")
    assert fresh is not None
    assert_exact(fresh.state, {**state, "delta": values})
    assert_exact(fresh.events[0].custom_metadata, {"values": values})
    assert_exact(fresh.events[0].actions.state_delta, {"delta": values})
    assert fresh.events[0] == event
    assert_exact(await service.get_user_state(app_name=APP, user_id=USER), {"v": values})


UNICODE: dict[str, Any] = {
    "emoji 🧪👩‍👩‍👧": "🚀 family 👨‍👩‍👧‍👦 flag 🇫🇷",
    "עברית": "שלום עולם — RTL \u200f mark",
    "عربي": "مرحبا بالعالم",
    "combining e\u0301": "a\u0308o\u0308u\u0308 Å vs A\u030a",
    "cjk 漢字": "日本語テキスト",
    "astral 𝔘": "\U0010fffd \U0001f600",
    'escapes " \\ / \n\t': 'quote " backslash \\ newline \n tab \t \u2028',
}


async def test_unicode_keys_and_values_round_trip(service: PostgresSessionService):
    state = {
        **UNICODE,
        **{f"app:{k}": v for k, v in UNICODE.items()},
        **{f"user:{k}": v for k, v in UNICODE.items()},
    }
    s = await service.create_session(app_name=APP, user_id=USER, session_id="uni", state=state)
    text = " | ".join(f"{k}={v}" for k, v in UNICODE.items())
    event = make_event(
        "e1", timestamp=ts(1), text=text, state={"delta " + k: v for k, v in UNICODE.items()}
    )
    await service.append_event(s, event)
    fresh = await get(service, "uni")
    assert fresh is not None
    assert fresh.state == {**state, **{"delta " + k: v for k, v in UNICODE.items()}}
    assert fresh.events == [event]
    assert fresh == s
