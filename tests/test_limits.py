"""The documented limits (README "Limits"): what round-trips at the edge, and the clear error
with nothing written just beyond it."""

from __future__ import annotations

import pytest
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

from adk_postgres import PostgresSessionService
from adk_postgres._json import MAX_NESTING_DEPTH
from adk_postgres.errors import DataError

MiB = 1 << 20


def _nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


async def _cold(service: PostgresSessionService, session_id: str):
    reader = PostgresSessionService(database=service.database, cache_bytes=0)
    return await reader.get_session(app_name="a", user_id="u", session_id=session_id)


async def test_50_mib_state_value_and_event_text_round_trip(service) -> None:
    big = "x" * (50 * MiB)
    session = await service.create_session(app_name="a", user_id="u", state={"big": big})
    event = Event(
        author="model",
        invocation_id="i",
        content=types.Content(role="model", parts=[types.Part(text=big + "!")]),
    )
    await service.append_event(session, event)
    stored = await _cold(service, session.id)
    assert stored.state["big"] == big
    assert stored.events[0].content.parts[0].text == big + "!"


async def test_10000_state_keys_and_huge_numbers_round_trip(service) -> None:
    state = {f"key_{i}": i for i in range(10_000)}
    state["huge"] = 10**40
    state["negative_huge"] = -(10**40) - 7
    state["precise"] = 0.1 + 0.2
    session = await service.create_session(app_name="a", user_id="u", state=state)
    event = Event(
        author="model",
        invocation_id="i",
        actions=EventActions(state_delta={"user:big": 2**70}),
        custom_metadata={"id": 2**64 + 1},
    )
    await service.append_event(session, event)
    stored = await _cold(service, session.id)
    assert {k: v for k, v in stored.state.items() if k != "user:big"} == state
    assert stored.state["user:big"] == 2**70
    assert stored.events[0].custom_metadata == {"id": 2**64 + 1}


async def test_nesting_up_to_the_limit_round_trips(service) -> None:
    # The state object is one level; its value nests the rest.
    deepest = {"deep": _nested(MAX_NESTING_DEPTH - 1)}
    session = await service.create_session(app_name="a", user_id="u", state=deepest)
    stored = await _cold(service, session.id)
    assert stored.state == deepest


@pytest.mark.parametrize("levels", [MAX_NESTING_DEPTH, 260, 5000])
async def test_deeper_nesting_is_refused_and_nothing_is_written(service, levels, pg_admin) -> None:
    with pytest.raises(DataError, match="deep|depth"):
        await service.create_session(
            app_name="a", user_id="u", session_id="too_deep", state={"deep": _nested(levels)}
        )
    assert await service.get_session(app_name="a", user_id="u", session_id="too_deep") is None

    session = await service.create_session(app_name="a", user_id="u", session_id="ok")
    event = Event(author="model", invocation_id="i", custom_metadata={"deep": _nested(levels)})
    with pytest.raises(DataError, match="deep|depth"):
        await service.append_event(session, event)
    with pytest.raises(DataError, match="deep|depth"):
        await service.append_event(
            session,
            Event(
                author="model",
                invocation_id="i",
                actions=EventActions(state_delta={"app:deep": _nested(levels)}),
            ),
        )
    stored = await _cold(service, "ok")
    assert stored.events == [] and stored.state == {}


async def test_a_string_over_jsonb_limit_is_a_data_error(service) -> None:
    # PostgreSQL's jsonb strings stop at 2^28 - 1 bytes (256 MiB).
    session = await service.create_session(app_name="a", user_id="u", session_id="s")
    too_big = "y" * (256 * MiB)
    with pytest.raises(DataError, match="jsonb strings cannot exceed"):
        await service.append_event(
            session,
            Event(
                author="model",
                invocation_id="i",
                actions=EventActions(state_delta={"huge": too_big}),
            ),
        )
    del too_big
    stored = await _cold(service, "s")
    assert stored.events == [] and stored.state == {}
    # The session is still usable.
    await service.append_event(session, Event(author="model", invocation_id="i2"))
