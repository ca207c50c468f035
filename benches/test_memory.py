"""Memory search over 10,000 entries (2,000 in quick mode), for the peers that have a
PostgreSQL memory service at run time (others are skipped with the reason).

The entries are 100-event sessions of one user added with ``add_session_to_memory``; about one
entry in a hundred mentions the word searched for.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from conftest import PeerUnderTest
from google.adk.events import Event
from google.adk.sessions import Session
from google.genai import types
from harness import APP, CONCURRENCY, Op, Settings, Unavailable, ops_per_worker, run_benchmark
from pytest_benchmark.fixture import BenchmarkFixture

USER = "rememberer"
QUERY = "invoice"
EVENTS_PER_SESSION = 100
_WORDS = (
    "agent tool weather flight hotel booking payment refund customer order shipping address "
    "calendar meeting reminder email draft summary report budget forecast travel train"
).split()


def memory_sessions(entries: int) -> list[Session]:
    """Deterministic sessions holding ``entries`` text events in total."""
    rng = random.Random(42)
    sessions = []
    for s in range(entries // EVENTS_PER_SESSION):
        events = []
        for e in range(EVENTS_PER_SESSION):
            words = rng.choices(_WORDS, k=24)
            if (s * EVENTS_PER_SESSION + e) % 100 == 7:
                words[rng.randrange(len(words))] = QUERY
            events.append(
                Event(
                    id=f"mem-{s}-{e}",
                    author="user" if e % 2 == 0 else "assistant",
                    invocation_id=f"mem-{s}",
                    content=types.Content(
                        role="user" if e % 2 == 0 else "model",
                        parts=[types.Part(text=" ".join(words))],
                    ),
                    timestamp=1_700_000_000.0 + s * EVENTS_PER_SESSION + e,
                )
            )
        sessions.append(Session(id=f"mem-{s}", app_name=APP, user_id=USER, events=events))
    return sessions


def memory_service(peer: PeerUnderTest, loop: asyncio.AbstractEventLoop, settings: Settings) -> Any:
    """The peer's memory service, opened and filled once per peer; skips when it has none."""
    if "memory" not in peer.extra_services:
        try:
            service = loop.run_until_complete(peer.peer.open_memory_service())
        except Unavailable as exc:
            peer.extra_services["memory"] = exc
        else:
            for session in memory_sessions(settings.memory_entries):
                loop.run_until_complete(service.add_session_to_memory(session))
            peer.extra_services["memory"] = service
    service = peer.extra_services["memory"]
    if isinstance(service, Unavailable):
        pytest.skip(str(service))
    return service


@pytest.mark.parametrize("concurrency", CONCURRENCY)
def test_search_memory(
    benchmark: BenchmarkFixture,
    bench_loop: asyncio.AbstractEventLoop,
    settings: Settings,
    peer: PeerUnderTest,
    concurrency: int,
) -> None:
    service = memory_service(peer, bench_loop, settings)
    per_worker = ops_per_worker(settings, concurrency)

    async def search() -> None:
        response = await service.search_memory(app_name=APP, user_id=USER, query=QUERY)
        assert response.memories, "the query word is in ~1% of the entries"

    async def prepare() -> list[list[Op]]:
        return [[search for _ in range(per_worker)] for _ in range(concurrency)]

    run_benchmark(
        benchmark,
        bench_loop,
        settings,
        prepare,
        peer=peer.name,
        workload="search_memory",
        concurrency=concurrency,
        entries=settings.memory_entries,
    )
