"""Session-service workloads, each at concurrency 1 and 32, for every peer.

At concurrency 32 each worker uses its own session (and user) wherever it writes; readers spread
over the seeded sessions of the history length they read. The ``app:`` state key that every
model event sets is shared by all workers of a peer, as in a real app.
"""

from __future__ import annotations

import asyncio
import itertools
from functools import partial

import pytest
from conftest import PeerUnderTest
from google.adk.events import Event
from google.adk.sessions import BaseSessionService, Session
from google.adk.sessions.base_session_service import GetSessionConfig
from harness import (
    APP,
    CONCURRENCY,
    HISTORY_LENGTHS,
    Op,
    Settings,
    bounded_gather,
    model_event,
    ops_per_worker,
    run_benchmark,
    seed_session,
    user_event,
)
from pytest_benchmark.fixture import BenchmarkFixture

Loop = asyncio.AbstractEventLoop


@pytest.mark.parametrize("concurrency", CONCURRENCY)
def test_create_session(
    benchmark: BenchmarkFixture,
    bench_loop: Loop,
    settings: Settings,
    peer: PeerUnderTest,
    concurrency: int,
) -> None:
    service = peer.peer.service
    per_worker = ops_per_worker(settings, concurrency)

    async def prepare() -> list[list[Op]]:
        return [
            [
                partial(
                    service.create_session,
                    app_name=APP,
                    user_id=f"creator-{worker}",
                    state={"topic": "benchmarks", "turns": 0},
                )
                for _ in range(per_worker)
            ]
            for worker in range(concurrency)
        ]

    run_benchmark(
        benchmark,
        bench_loop,
        settings,
        prepare,
        peer=peer.name,
        workload="create_session",
        concurrency=concurrency,
    )


@pytest.mark.parametrize("concurrency", CONCURRENCY)
def test_append_event(
    benchmark: BenchmarkFixture,
    bench_loop: Loop,
    settings: Settings,
    peer: PeerUnderTest,
    concurrency: int,
) -> None:
    """A ~1 KB model event whose state delta touches session, user:, app: and temp: keys."""
    service = peer.peer.service
    per_worker = ops_per_worker(settings, concurrency)
    sessions: list[Session] = bench_loop.run_until_complete(
        bounded_gather(
            [
                service.create_session(app_name=APP, user_id=f"writer-{worker}")
                for worker in range(concurrency)
            ]
        )
    )
    numbers = itertools.count()

    async def prepare() -> list[list[Op]]:
        # Events are built here, untimed, so the timed part is the service's work only.
        return [
            [
                partial(service.append_event, session, model_event(next(numbers)))
                for _ in range(per_worker)
            ]
            for session in sessions
        ]

    run_benchmark(
        benchmark,
        bench_loop,
        settings,
        prepare,
        peer=peer.name,
        workload="append_event",
        concurrency=concurrency,
    )


async def read_session(
    service: BaseSessionService,
    user_id: str,
    session_id: str,
    expected_events: int,
    recent: int | None = None,
) -> None:
    config = GetSessionConfig(num_recent_events=recent) if recent is not None else None
    session = await service.get_session(
        app_name=APP, user_id=user_id, session_id=session_id, config=config
    )
    assert session is not None and len(session.events) == expected_events


@pytest.mark.parametrize("concurrency", CONCURRENCY)
@pytest.mark.parametrize("cache", ["warm", "cold"])
@pytest.mark.parametrize("history", HISTORY_LENGTHS)
def test_get_session(
    benchmark: BenchmarkFixture,
    bench_loop: Loop,
    settings: Settings,
    peer: PeerUnderTest,
    history: int,
    cache: str,
    concurrency: int,
) -> None:
    """Full get_session of a ``history``-event session.

    warm: the same service instance reads the same sessions again and again (what a
    long-running server does). cold: every read is the first read of that session by a fresh
    service instance (as in a new process; the instance shares the peer's connection pool, so
    connection set-up is not measured, and its one-time start-up is done before timing).
    """
    ids = bench_loop.run_until_complete(peer.dataset.history(peer.peer, settings, history))
    per_worker = ops_per_worker(settings, concurrency, heavy=history >= 1000)
    user = f"history-{history}"

    async def prepare() -> list[list[Op]]:
        work: list[list[Op]] = []
        for worker in range(concurrency):
            session_id = ids[worker % len(ids)]
            ops: list[Op] = []
            for _ in range(per_worker):
                if cache == "warm":
                    service = peer.peer.service
                else:
                    service = await peer.peer.fresh_service()
                ops.append(partial(read_session, service, user, session_id, history))
            work.append(ops)
        return work

    run_benchmark(
        benchmark,
        bench_loop,
        settings,
        prepare,
        peer=peer.name,
        workload=f"get_session_h{history}_{cache}",
        concurrency=concurrency,
        history=history,
        cache=cache,
    )


@pytest.mark.parametrize("concurrency", CONCURRENCY)
def test_get_session_last10(
    benchmark: BenchmarkFixture,
    bench_loop: Loop,
    settings: Settings,
    peer: PeerUnderTest,
    concurrency: int,
) -> None:
    """get_session(num_recent_events=10) of a 100-event session, same service instance."""
    ids = bench_loop.run_until_complete(peer.dataset.history(peer.peer, settings, 100))
    per_worker = ops_per_worker(settings, concurrency)
    service = peer.peer.service

    async def prepare() -> list[list[Op]]:
        return [
            [
                partial(read_session, service, "history-100", ids[worker % len(ids)], 10, 10)
                for _ in range(per_worker)
            ]
            for worker in range(concurrency)
        ]

    run_benchmark(
        benchmark,
        bench_loop,
        settings,
        prepare,
        peer=peer.name,
        workload="get_session_last10",
        concurrency=concurrency,
    )


@pytest.mark.parametrize("concurrency", CONCURRENCY)
def test_list_sessions(
    benchmark: BenchmarkFixture,
    bench_loop: Loop,
    settings: Settings,
    peer: PeerUnderTest,
    concurrency: int,
) -> None:
    """list_sessions of one user who has 100 sessions (all workers list the same user)."""
    user = bench_loop.run_until_complete(peer.dataset.lister(peer.peer, settings))
    per_worker = ops_per_worker(settings, concurrency)
    service = peer.peer.service

    async def list_once() -> None:
        response = await service.list_sessions(app_name=APP, user_id=user)
        assert len(response.sessions) == settings.list_sessions

    async def prepare() -> list[list[Op]]:
        return [[list_once for _ in range(per_worker)] for _ in range(concurrency)]

    run_benchmark(
        benchmark,
        bench_loop,
        settings,
        prepare,
        peer=peer.name,
        workload="list_sessions",
        concurrency=concurrency,
    )


@pytest.mark.parametrize("concurrency", CONCURRENCY)
def test_agent_turn(
    benchmark: BenchmarkFixture,
    bench_loop: Loop,
    settings: Settings,
    peer: PeerUnderTest,
    concurrency: int,
) -> None:
    """What a runner does per turn: read the last 20 events, append a user and a model event."""
    service = peer.peer.service
    per_worker = ops_per_worker(settings, concurrency)
    sessions: list[Session] = bench_loop.run_until_complete(
        bounded_gather(
            [
                seed_session(service, f"turn-{worker}", settings.turn_seed_events, tag="turn")
                for worker in range(concurrency)
            ]
        )
    )
    numbers = itertools.count()

    async def turn(session_id: str, user_id: str, question: Event, reply: Event) -> None:
        session = await service.get_session(
            app_name=APP,
            user_id=user_id,
            session_id=session_id,
            config=GetSessionConfig(num_recent_events=20),
        )
        assert session is not None
        await service.append_event(session, question)
        await service.append_event(session, reply)

    async def prepare() -> list[list[Op]]:
        work: list[list[Op]] = []
        for session in sessions:
            ops: list[Op] = []
            for _ in range(per_worker):
                n = next(numbers)
                ops.append(
                    partial(turn, session.id, session.user_id, user_event(n), model_event(n))
                )
            work.append(ops)
        return work

    run_benchmark(
        benchmark,
        bench_loop,
        settings,
        prepare,
        peer=peer.name,
        workload="agent_turn",
        concurrency=concurrency,
    )
