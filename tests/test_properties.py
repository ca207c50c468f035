"""Property-based: arbitrary JSON-able state and event text either round-trip exactly or are
refused with a clear adk_postgres error, and a refused append leaves the stored session as it
was. Runs on its own event loop (hypothesis drives synchronous test functions)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.genai import types
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adk_postgres import PostgresSessionService
from adk_postgres.errors import DataError

# Text as agents produce it, plus what JSONB cannot hold (NUL) and what UTF-8 cannot (lone
# surrogates): those must be refused, never stored mangled.
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=25,
)
# Session-scoped keys (prefix routing is covered by the conformance tests).
states = st.dictionaries(texts.map(lambda k: "k" + k), json_values, max_size=8)

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def svc(
    pg_url: str, schema_name: str, loop: asyncio.AbstractEventLoop
) -> Iterator[PostgresSessionService]:
    service = PostgresSessionService(pg_url, schema=schema_name)
    yield service
    loop.run_until_complete(service.close())


def storable(value: Any) -> bool:
    """Whether PostgreSQL's JSONB can hold the value (no NUL, no lone surrogate)."""
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list):
        return all(storable(v) for v in value)
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    return True


@SETTINGS
@given(state=states)
def test_state_round_trips_or_is_refused(
    svc: PostgresSessionService, loop: asyncio.AbstractEventLoop, state: dict[str, Any]
) -> None:
    async def scenario() -> None:
        sid = uuid.uuid4().hex
        try:
            created = await svc.create_session(
                app_name="prop", user_id="u", state=state, session_id=sid
            )
        except DataError:
            event("refused")
            assert not storable(state)
            assert await svc.get_session(app_name="prop", user_id="u", session_id=sid) is None
            return
        event("stored")
        assert storable(state)
        got = await svc.get_session(app_name="prop", user_id="u", session_id=sid)
        assert got is not None
        assert got.state == state == created.state

    loop.run_until_complete(scenario())


@SETTINGS
@given(delta=states, text=texts)
def test_append_round_trips_or_leaves_the_session_unchanged(
    svc: PostgresSessionService,
    loop: asyncio.AbstractEventLoop,
    delta: dict[str, Any],
    text: str,
) -> None:
    async def scenario() -> None:
        sid = uuid.uuid4().hex
        session = await svc.create_session(
            app_name="prop", user_id="u", state={"k": 1}, session_id=sid
        )
        before = await svc.get_session(app_name="prop", user_id="u", session_id=sid)
        new_event = Event(
            author="user",
            invocation_id="inv",
            content=types.Content(role="user", parts=[types.Part(text=text)]),
            actions=EventActions(state_delta=dict(delta)),
        )
        try:
            await svc.append_event(session, new_event)
        except DataError:
            event("refused")
            assert not (storable(delta) and storable(text))
            after = await svc.get_session(app_name="prop", user_id="u", session_id=sid)
            assert after == before
            return
        event("stored")
        assert storable(delta) and storable(text)
        after = await svc.get_session(app_name="prop", user_id="u", session_id=sid)
        assert after is not None
        assert after.events == [new_event]
        assert after.state == {"k": 1, **delta}

    loop.run_until_complete(scenario())
