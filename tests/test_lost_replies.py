"""An append whose first attempt's outcome is unknown (the connection dropped after the server
committed it) is retried; the retry must report success — the event is stored, once — even if
another writer appended in between. Each case pins every call's outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from flaky_proxy import FlakyProxy, server_address
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

from adk_postgres import PostgresSessionService
from adk_postgres.errors import IntegrityError

APP, USER = "lost-reply-app", "u"
MakeService = Callable[..., PostgresSessionService]


def _event(text: str, delta: dict[str, object] | None = None) -> Event:
    return Event(
        author="model",
        invocation_id="inv",
        content=types.Content(role="model", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=delta or {}),
    )


@pytest.fixture
async def proxy(pg_url: str) -> AsyncIterator[FlakyProxy]:
    async with FlakyProxy(server_address(pg_url)) as running:
        yield running


async def _texts(svc: PostgresSessionService, sid: str) -> list[str]:
    got = await svc.get_session(app_name=APP, user_id=USER, session_id=sid)
    assert got is not None
    return [e.content.parts[0].text for e in got.events]


@pytest.mark.parametrize("delta", [{}, {"app:k": 1}], ids=["alone", "app-state"])
async def test_retry_after_a_lost_reply_succeeds_though_another_writer_appended(
    proxy: FlakyProxy, make_service: MakeService, schema_name: str, delta: dict[str, object]
) -> None:
    flaky = make_service(uri=proxy.url(), cache_bytes=0)  # through the proxy
    other = make_service(cache_bytes=0)  # straight to the server
    mine = await flaky.create_session(app_name=APP, user_id=USER, session_id="s")
    event = _event("mine", delta)

    async def other_writer_appends() -> None:
        # Runs after "mine" committed, before its answer is lost.
        theirs = await other.get_session(app_name=APP, user_id=USER, session_id="s")
        assert theirs is not None and [e.id for e in theirs.events] == [event.id]
        await other.append_event(theirs, _event("theirs", delta))

    proxy.lose_reply_to(event.id.encode(), other_writer_appends)
    returned = await flaky.append_event(mine, event)  # must not raise StaleSessionError
    assert proxy.cuts == 1, "the reply was not lost: the test did not test anything"
    assert returned is event and mine.events[-1] is event
    assert await _texts(other, "s") == ["mine", "theirs"]
    # The holder has not seen "theirs": its next append is (correctly) stale.
    with pytest.raises(StaleSessionError):
        await flaky.append_event(mine, _event("next"))


async def test_caller_retry_of_a_committed_append_after_others_appended(
    make_service: MakeService,
) -> None:
    """The same, retried by the caller: its session copy predates the first attempt."""
    svc, other = make_service(), make_service()
    session = await svc.create_session(app_name=APP, user_id=USER, session_id="r")
    before = session.model_copy(deep=True)
    event = _event("once")
    await svc.append_event(session, event)
    theirs = await other.get_session(app_name=APP, user_id=USER, session_id="r")
    await other.append_event(theirs, _event("after"))
    assert await svc.append_event(before, event) is event
    assert await _texts(other, "r") == ["once", "after"]
    # Another event under the same id is not the same append: refused, nothing written.
    impostor = _event("impostor")
    impostor.id = event.id
    stale_copy = (await other.get_session(app_name=APP, user_id=USER, session_id="r")).model_copy(
        deep=True
    )
    with pytest.raises(IntegrityError):
        await svc.append_event(stale_copy, impostor)
    with pytest.raises(StaleSessionError):
        await svc.append_event(before.model_copy(deep=True), impostor)
    assert await _texts(other, "r") == ["once", "after"]


async def test_flight_with_a_lost_commit_reply(
    proxy: FlakyProxy, make_service: MakeService, pg_url: str, schema_name: str
) -> None:
    """A coalesced flight whose COMMIT answer is lost: every append of it reports success and
    is stored exactly once."""
    flaky = make_service(uri=proxy.url(), cache_bytes=0, pool_size=4)
    sessions = [
        await flaky.create_session(app_name=APP, user_id=f"u{i}", session_id=f"f{i}")
        for i in range(12)
    ]
    events = [_event(f"e{i}", {"app:n": i}) for i in range(12)]

    async def nothing() -> None:
        return None

    # Lose the reply of whichever statement carries the last event (alone or in a flight).
    proxy.lose_reply_to(events[-1].id.encode(), nothing)
    results = await asyncio.gather(
        *(flaky.append_event(s, e) for s, e in zip(sessions, events, strict=True)),
        return_exceptions=True,
    )
    assert proxy.cuts == 1
    assert results == events  # every call succeeded
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            f'SELECT session_id, count(*) AS n FROM "{schema_name}".events GROUP BY session_id'
        )
        revisions = await conn.fetch(f'SELECT id, revision FROM "{schema_name}".sessions')
    finally:
        await conn.close()
    assert {r["session_id"]: r["n"] for r in rows} == {f"f{i}": 1 for i in range(12)}
    assert {r["id"]: r["revision"] for r in revisions} == {f"f{i}": 1 for i in range(12)}
