"""Transparent failover (`failover_timeout`): with a Patroni failover shorter than the bound,
appends, reads, artifact saves and loads, and memory writes and searches all succeed — no error
reaches a caller — and nothing is stored twice; with a shorter bound, each call caught by the
outage gets one typed error, in about the bound, and never hangs.

One synchronous two-node cluster (ttl 10 s); the killed node is restarted between the two
failovers. Skips where Patroni/etcd are missing, and in CI's second pass (TEST_DATABASE_URL)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.adk.memory.memory_entry import MemoryEntry
from google.genai import types
from servers.patroni import PatroniCluster, cluster_test_marks

from adk_postgres import (
    Database,
    PostgresArtifactService,
    PostgresMemoryService,
    PostgresSessionService,
)
from adk_postgres.errors import DatabaseConnectionError

pytestmark = cluster_test_marks()

TTL = 10
APP = "transparent"
WORKERS = 16


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    with PatroniCluster(nodes=2, synchronous_mode=True, ttl=TTL, loop_wait=2) as running:
        running.wait_ready()
        yield running


def _event(worker: int, n: int) -> Event:
    return Event(
        author="worker",
        invocation_id=f"w{worker}-{n}",
        content=types.Content(role="model", parts=[types.Part(text=f"{worker}:{n}")]),
        actions=EventActions(state_delta={"app:beat": n, f"user:n{worker}": n, "n": n}),
    )


async def _kill_and_wait_for_a_new_leader(cluster: PatroniCluster) -> None:
    old = cluster.leader()
    assert old is not None
    await asyncio.to_thread(cluster.kill_node, old)
    await asyncio.to_thread(cluster.wait_new_leader, old, TTL + 30)


async def test_a_failover_within_the_bound_reaches_no_caller(cluster: PatroniCluster) -> None:
    db = Database(
        cluster.multi_host_url(),
        schema="transparent",
        pool_size=WORKERS + 4,
        connect_timeout=2,
        failover_timeout=TTL + 20,
    )
    sessions = PostgresSessionService(database=db, cache_bytes=0)
    artifacts = PostgresArtifactService(database=db)
    memory = PostgresMemoryService(database=db)
    held = [
        await sessions.create_session(app_name=APP, user_id=f"u{i}", session_id=f"s{i}")
        for i in range(WORKERS)
    ]
    acked: list[list[str]] = [[] for _ in range(WORKERS)]
    saved: list[tuple[str, int, bytes]] = []
    remembered: list[str] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()
    killed_at: list[float] = []
    back_at: dict[int, float] = {}  # worker → seconds from the kill to its first append

    async def guarded(body: Any) -> None:
        try:
            await body
        except BaseException as exc:  # every error is a failure of this test
            errors.append(exc)

    async def appender(i: int) -> None:
        session, n = held[i], 0
        while not stop.is_set():
            event = _event(i, n)
            await sessions.append_event(session, event)
            acked[i].append(event.id)
            if killed_at and i not in back_at:
                back_at[i] = time.monotonic() - killed_at[0]
            n += 1

    async def reader() -> None:
        while not stop.is_set():
            got = await sessions.get_session(app_name=APP, user_id="u0", session_id="s0")
            assert got is not None
            await sessions.list_sessions(app_name=APP, user_id="u1")
            await asyncio.sleep(0.01)

    async def artifact_saver() -> None:
        n = 0
        while not stop.is_set():
            data = os.urandom(1024 + n) if n % 5 else os.urandom(1_500_000)  # some chunked
            part = types.Part(
                inline_data=types.Blob(mime_type="application/octet-stream", data=data)
            )
            filename = f"f{n % 3}.bin"
            version = await artifacts.save_artifact(
                app_name=APP, user_id="u0", session_id="s0", filename=filename, artifact=part
            )
            saved.append((filename, version, data))
            loaded = await artifacts.load_artifact(
                app_name=APP, user_id="u0", session_id="s0", filename=filename, version=version
            )
            assert loaded is not None and loaded.inline_data.data == data
            n += 1
            await asyncio.sleep(0.02)

    async def rememberer() -> None:
        n = 0
        while not stop.is_set():
            text = f"fact number {n} about penguins"
            entry = MemoryEntry(
                content=types.Content(role="user", parts=[types.Part(text=text)]), id=f"m{n}"
            )
            await memory.add_memory(app_name=APP, user_id="u0", memories=[entry])
            remembered.append(f"m{n}")
            await memory.search_memory(app_name=APP, user_id="u0", query="penguins")
            n += 1
            await asyncio.sleep(0.02)

    tasks = [asyncio.ensure_future(guarded(appender(i))) for i in range(WORKERS)]
    tasks += [asyncio.ensure_future(guarded(body)) for body in (reader(), artifact_saver())]
    tasks.append(asyncio.ensure_future(guarded(rememberer())))
    await asyncio.sleep(2)
    before = sum(map(len, acked))
    killed_at.append(time.monotonic())
    await _kill_and_wait_for_a_new_leader(cluster)
    deadline = time.monotonic() + 20
    while len(back_at) < WORKERS and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    stop.set()
    await asyncio.gather(*tasks)

    assert errors == [], f"{len(errors)} errors reached callers: {errors[:3]!r}"
    assert before > 0 and sum(map(len, acked)) > before
    # Every acknowledged append is stored once, in order; nothing else is.
    check = PostgresSessionService(database=db, cache_bytes=0)
    for i in range(WORKERS):
        stored = await check.get_session(app_name=APP, user_id=f"u{i}", session_id=f"s{i}")
        assert stored is not None
        assert [e.id for e in stored.events] == acked[i]
    # Each save is one version (a retried save found its lost attempt instead of adding one).
    for filename in {f for f, _, _ in saved}:
        versions = await artifacts.list_versions(
            app_name=APP, user_id="u0", session_id="s0", filename=filename
        )
        mine = sorted(v for f, v, _ in saved if f == filename)
        assert versions == mine
    for filename, version, data in saved[-3:]:
        loaded = await artifacts.load_artifact(
            app_name=APP, user_id="u0", session_id="s0", filename=filename, version=version
        )
        assert loaded is not None and loaded.inline_data.data == data
    found = await memory.search_memory(app_name=APP, user_id="u0", query="penguins")
    assert len(found.memories) > 0
    print(
        f"\n{sum(map(len, acked))} appends ({before} before the kill), {len(saved)} artifact "
        f"saves, {len(remembered)} memory writes, 0 errors; first write after the kill "
        f"{min(back_at.values()):.1f} s, all {WORKERS} writers back after "
        f"{max(back_at.values()):.1f} s"
    )
    assert len(back_at) == WORKERS
    await db.close()
    # The next test needs two nodes again.
    down = [node for node in cluster.nodes if not node.running]
    for node in down:
        await asyncio.to_thread(cluster.restart_node, node)


async def test_past_the_bound_each_call_gets_one_typed_error(cluster: PatroniCluster) -> None:
    bound = 1.5
    connect_timeout = 1.0
    sessions = PostgresSessionService(
        cluster.multi_host_url(),
        schema="bounded",
        pool_size=8,
        connect_timeout=connect_timeout,
        failover_timeout=bound,
        cache_bytes=0,
    )
    held = await sessions.create_session(app_name=APP, user_id="u", session_id="s")
    await sessions.append_event(held, _event(0, 0))
    await asyncio.to_thread(cluster.wait_ready)
    old = cluster.leader()
    assert old is not None
    await asyncio.to_thread(cluster.kill_node, old)
    outcomes: list[tuple[str, float]] = []
    for n in range(1, 4):  # the new leader needs ~ttl: these fall inside the outage
        started = time.monotonic()
        try:
            await sessions.append_event(held, _event(0, n))
            outcomes.append(("ok", time.monotonic() - started))
        except DatabaseConnectionError:
            outcomes.append(("DatabaseConnectionError", time.monotonic() - started))
    errors = [seconds for kind, seconds in outcomes if kind != "ok"]
    assert errors, f"no call met the outage: {outcomes}"
    for seconds in errors:
        # One wait of about the bound (plus one connection attempt), not a hang.
        assert bound * 0.9 <= seconds <= bound + 2 * connect_timeout + 2, outcomes
    await asyncio.to_thread(cluster.wait_new_leader, old, TTL + 30)
    await sessions.close()
