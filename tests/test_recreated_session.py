"""A session deleted and re-created under the same id is a different session: an append from a
holder of the old one must be refused, however many events the new one has, and whether the
holder's append goes alone or in a coalesced flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

from adk_postgres import PostgresSessionService

APP, USER, SID = "recreate-app", "u", "same-id"
MakeService = Callable[..., PostgresSessionService]


def _event(text: str, delta: dict[str, object] | None = None) -> Event:
    return Event(
        author="model",
        invocation_id="inv",
        content=types.Content(role="model", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=delta or {}),
    )


def _texts(session) -> list[str]:
    return [e.content.parts[0].text for e in session.events]


@pytest.mark.parametrize("delta", [{}, {"app:seen": 1}], ids=["alone", "coalesced"])
@pytest.mark.parametrize("seen", [0, 3])
async def test_holder_of_the_old_session_cannot_append_to_the_new_one(
    make_service: MakeService, delta: dict[str, object], seen: int
) -> None:
    worker_a, worker_b = make_service(), make_service()
    held = await worker_a.create_session(app_name=APP, user_id=USER, session_id=SID)
    for i in range(seen):
        held = await worker_a.get_session(app_name=APP, user_id=USER, session_id=SID)
        await worker_a.append_event(held, _event(f"old {i}"))
    held = await worker_a.get_session(app_name=APP, user_id=USER, session_id=SID)
    assert held is not None and len(held.events) == seen

    await worker_b.delete_session(app_name=APP, user_id=USER, session_id=SID)
    fresh = await worker_b.create_session(app_name=APP, user_id=USER, session_id=SID)
    for i in range(seen):  # the new session reaches the revision A holds
        await worker_b.append_event(fresh, _event(f"new {i}"))

    with pytest.raises(StaleSessionError):
        await worker_a.append_event(held, _event("from the old holder", delta))
    stored = await make_service(cache_bytes=0).get_session(
        app_name=APP, user_id=USER, session_id=SID
    )
    assert stored is not None and _texts(stored) == [f"new {i}" for i in range(seen)]
    # Reloading gives A the new session, to which it may append.
    reloaded = await worker_a.get_session(app_name=APP, user_id=USER, session_id=SID)
    assert reloaded is not None and _texts(reloaded) == _texts(stored)
    await worker_a.append_event(reloaded, _event("after reload", delta))


async def test_a_cached_old_incarnation_is_not_extended_by_an_append(
    make_service: MakeService,
) -> None:
    """A's cache holds the old incarnation at the revision B's new session reaches: a
    successful append of A (after reloading) must not be added to the old history."""
    worker_a, worker_b = make_service(), make_service()
    await worker_a.create_session(app_name=APP, user_id=USER, session_id=SID)
    held = await worker_a.get_session(app_name=APP, user_id=USER, session_id=SID)
    await worker_a.append_event(held, _event("old"))
    await worker_a.get_session(app_name=APP, user_id=USER, session_id=SID)  # cached, rev 1
    await worker_b.delete_session(app_name=APP, user_id=USER, session_id=SID)
    fresh = await worker_b.create_session(app_name=APP, user_id=USER, session_id=SID)
    await worker_b.append_event(fresh, _event("new"))
    reloaded = await worker_a.get_session(app_name=APP, user_id=USER, session_id=SID)
    assert _texts(reloaded) == ["new"]
    await worker_a.append_event(reloaded, _event("newer"))
    again = await worker_a.get_session(app_name=APP, user_id=USER, session_id=SID)
    assert _texts(again) == ["new", "newer"]


async def test_delete_and_recreate_racing_appends(make_service: MakeService) -> None:
    """Holders of whichever incarnation keep appending while another worker deletes and
    re-creates the session: every stored event belongs to the incarnation its writer held."""
    writer, recreator = make_service(), make_service()
    await recreator.create_session(app_name=APP, user_id=USER, session_id=SID)
    lives = 0
    stop = asyncio.Event()
    accepted: dict[str, int] = {}  # event text -> the life its writer held

    async def write(name: str) -> None:
        n = 0
        while not stop.is_set():
            session = await writer.get_session(app_name=APP, user_id=USER, session_id=SID)
            if session is None:
                await asyncio.sleep(0)
                continue
            life = int(session.state["life"])
            text = f"{name}-{n}"
            n += 1
            try:
                await writer.append_event(session, _event(text, {"app:last": text}))
                accepted[text] = life
            except (StaleSessionError, ValueError):
                pass

    async def recreate() -> None:
        nonlocal lives
        for life in range(1, 15):
            await asyncio.sleep(0.02)
            await recreator.delete_session(app_name=APP, user_id=USER, session_id=SID)
            await recreator.create_session(
                app_name=APP, user_id=USER, session_id=SID, state={"life": life}
            )
            lives = life
        stop.set()

    await recreator.delete_session(app_name=APP, user_id=USER, session_id=SID)
    await recreator.create_session(app_name=APP, user_id=USER, session_id=SID, state={"life": 0})
    await asyncio.gather(write("w1"), write("w2"), recreate())
    final = await make_service(cache_bytes=0).get_session(
        app_name=APP, user_id=USER, session_id=SID
    )
    assert final is not None and final.state["life"] == lives
    for text in _texts(final):
        assert accepted[text] == lives, f"{text} was written by a holder of life {accepted[text]}"
