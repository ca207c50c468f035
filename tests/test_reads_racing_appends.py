"""Reads racing appends: a UI polls `get_session` while the agent appends through the same
service and another worker appends to the same session. Every read must return exactly the
history of one stored revision (no event twice, none missing, in order), and the warm-read
cache's byte accounting must stay exact under any interleaving of reads, appends, deletes and
evictions."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from adk_postgres import PostgresSessionService

APP, USER = "race-app", "poller"
MakeService = Callable[..., PostgresSessionService]


def _event(text: str, delta: dict[str, object] | None = None) -> Event:
    return Event(
        author="model",
        invocation_id="inv",
        content=types.Content(role="model", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=delta or {}),
    )


async def _append_until(
    svc: PostgresSessionService, session_id: str, name: str, count: int, done: list[int]
) -> None:
    """Appends `count` events, reloading whenever another writer got there first."""
    session = await svc.get_session(app_name=APP, user_id=USER, session_id=session_id)
    assert session is not None
    written = 0
    while written < count:
        try:
            await svc.append_event(session, _event(f"{name}-{written}", {"app:n": written}))
            written += 1
            done[0] += 1
        except StaleSessionError:
            session = await svc.get_session(app_name=APP, user_id=USER, session_id=session_id)
            assert session is not None


def _check_one_revision(session, final_ids: list[str]) -> None:
    ids = [e.id for e in session.events]
    assert len(ids) == len(set(ids)), "an event appears twice in one read"
    revision = int(session._storage_update_marker.split(":")[0])
    assert len(ids) == revision, f"{len(ids)} events read at revision {revision}"
    assert ids == final_ids[: len(ids)], "a read is not a prefix of the stored history"


async def test_pollers_never_see_an_event_twice(make_service: MakeService) -> None:
    agent = make_service()  # the process that polls and appends
    other = make_service()  # another worker
    await agent.create_session(app_name=APP, user_id=USER, session_id="polled")
    appends_each = 150
    done = [0]
    reads: list = []

    async def poller() -> None:
        while done[0] < 2 * appends_each:
            got = await agent.get_session(app_name=APP, user_id=USER, session_id="polled")
            assert got is not None
            reads.append(got)
            await asyncio.sleep(0)

    await asyncio.gather(
        _append_until(agent, "polled", "agent", appends_each, done),
        _append_until(other, "polled", "other", appends_each, done),
        poller(),
        poller(),
        poller(),
    )
    final = await make_service(cache_bytes=0).get_session(
        app_name=APP, user_id=USER, session_id="polled"
    )
    assert final is not None and len(final.events) == 2 * appends_each
    final_ids = [e.id for e in final.events]
    assert len(reads) > 50
    for got in reads:
        _check_one_revision(got, final_ids)
    warm = await agent.get_session(app_name=APP, user_id=USER, session_id="polled")
    assert warm == final
    _check_accounting(agent)


def _check_accounting(svc: PostgresSessionService) -> None:
    cache = svc._cache
    assert cache is not None
    entries = list(cache._entries.values())
    assert cache.size_bytes == sum(entry.size for entry in entries)
    assert cache.size_bytes <= cache.max_bytes


async def test_cache_accounting_stays_exact_under_any_interleaving(
    make_service: MakeService,
) -> None:
    """Random reads (full and suffix), appends from two services, deletes and re-creates,
    on a cache small enough to evict all the time."""
    ours = make_service(cache_bytes=12_000)
    theirs = make_service()
    rng = random.Random(7)
    ids = [f"s{i}" for i in range(6)]
    for sid in ids:
        await ours.create_session(app_name=APP, user_id=USER, session_id=sid)

    async def actor(seed: int) -> None:
        local = random.Random(seed)
        for _ in range(120):
            sid = local.choice(ids)
            roll = local.random()
            svc = ours if local.random() < 0.7 else theirs
            if roll < 0.45:
                config = local.choice(
                    [None, GetSessionConfig(num_recent_events=3), GetSessionConfig()]
                )
                got = await ours.get_session(
                    app_name=APP, user_id=USER, session_id=sid, config=config
                )
                if got is not None and config is None:
                    seen = [e.id for e in got.events]
                    assert len(seen) == len(set(seen))
            elif roll < 0.9:
                session = await svc.get_session(app_name=APP, user_id=USER, session_id=sid)
                if session is None:
                    continue
                try:
                    await svc.append_event(session, _event("x" * local.randint(10, 900)))
                except (StaleSessionError, SessionNotFoundError):
                    pass  # lost a race with another actor, or the session was deleted
            elif roll < 0.95:
                await svc.delete_session(app_name=APP, user_id=USER, session_id=sid)
            else:
                try:
                    await svc.create_session(app_name=APP, user_id=USER, session_id=sid)
                except AlreadyExistsError:
                    pass

    await asyncio.gather(*(actor(rng.randrange(10**6)) for _ in range(6)))
    _check_accounting(ours)
    # And every cached entry still answers like a cold read.
    cold = make_service(cache_bytes=0)
    for sid in ids:
        assert await ours.get_session(app_name=APP, user_id=USER, session_id=sid) == (
            await cold.get_session(app_name=APP, user_id=USER, session_id=sid)
        )
    _check_accounting(ours)
