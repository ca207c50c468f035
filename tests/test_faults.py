"""The server is SIGKILLed and restarted under a 32-way append workload: every acknowledged
append survives, in order, exactly once; calls during the outage fail fast with a typed error;
the pool recovers by itself. Runs on its own throwaway embedded server (fsync on)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from google.adk.errors._stale_session_error import StaleSessionError
from google.adk.events import Event
from google.adk.events.event_actions import EventActions

from adk_postgres import PostgresSessionService, embedded
from adk_postgres.errors import AdkPostgresError, DatabaseConnectionError, PoolTimeoutError

WORKERS = 32
CONNECT_TIMEOUT = 1.0


@pytest.fixture
def own_server() -> Iterator[embedded.EmbeddedServer]:
    data_dir = Path(tempfile.mkdtemp(prefix="adkpg-fault-", dir="/var/tmp")) / "pgdata"
    server = embedded.start(data_dir, cleanup_mode="delete")
    yield server
    server.stop()
    shutil.rmtree(data_dir.parent, ignore_errors=True)  # the mkdtemp directory


def kill_server(server: embedded.EmbeddedServer) -> None:
    """SIGKILL the postmaster and every process it started (a crash of the whole server)."""
    postmaster = psutil.Process(server._handle.get_pid())
    victims = [postmaster, *postmaster.children(recursive=True)]
    for proc in victims:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)


async def test_sigkill_and_restart_loses_no_acknowledged_append(
    own_server: embedded.EmbeddedServer,
) -> None:
    svc = PostgresSessionService(
        own_server.uri,
        schema="faults",
        pool_size=WORKERS,
        connect_timeout=CONNECT_TIMEOUT,
        acquire_timeout=5.0,
        cache_bytes=0,
    )
    sessions = [
        await svc.create_session(app_name="faults", user_id=f"u{i}", session_id=f"s{i}")
        for i in range(WORKERS)
    ]
    acked: list[list[str]] = [[] for _ in range(WORKERS)]
    failures: list[tuple[str, float]] = []  # (error class, seconds the failing call took)
    successes_after_restart: list[float] = []
    restarted_at: list[float] = []
    stop = asyncio.Event()

    async def worker(i: int) -> None:
        session = sessions[i]
        n = 0
        while not stop.is_set():
            # app:/user: deltas: most of these appends go through coalesced flights (shared
            # transactions) when the server dies.
            event = Event(
                author="worker",
                invocation_id=f"w{i}-{n}",
                actions=EventActions(
                    state_delta={"app:beat": n, f"app:w{i}": n, "user:n": n, "n": n}
                ),
            )
            started = time.monotonic()
            try:
                await svc.append_event(session, event)
                acked[i].append(event.id)
                if restarted_at:
                    successes_after_restart.append(time.monotonic() - restarted_at[0])
            except (DatabaseConnectionError, PoolTimeoutError) as exc:
                failures.append((type(exc).__name__, time.monotonic() - started))
                await asyncio.sleep(0.05)
                try:  # the failed append may or may not have committed: reload
                    fresh = await svc.get_session(
                        app_name="faults", user_id=f"u{i}", session_id=f"s{i}"
                    )
                    if fresh is not None:
                        session = fresh
                except AdkPostgresError:
                    pass
            except StaleSessionError:
                fresh = await svc.get_session(
                    app_name="faults", user_id=f"u{i}", session_id=f"s{i}"
                )
                assert fresh is not None
                session = fresh
            n += 1

    tasks = [asyncio.create_task(worker(i)) for i in range(WORKERS)]
    await asyncio.sleep(1.5)
    acked_before_kill = sum(map(len, acked))
    await asyncio.to_thread(kill_server, own_server)
    await asyncio.sleep(1.5)  # the outage: calls must fail fast, not hang
    await asyncio.to_thread(own_server._handle.ensure_postgres_running)
    restarted_at.append(time.monotonic())
    deadline = time.monotonic() + 30
    while len(successes_after_restart) < WORKERS and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks)

    assert acked_before_kill > 0
    assert failures, "the outage produced no failed call"
    slowest_failure = max(seconds for _, seconds in failures)
    assert slowest_failure < CONNECT_TIMEOUT + 5.0  # typed error well within the timeouts
    assert successes_after_restart, "the pool did not recover after the restart"

    lost = duplicated = 0
    for i in range(WORKERS):
        stored = await svc.get_session(app_name="faults", user_id=f"u{i}", session_id=f"s{i}")
        assert stored is not None
        ids = [e.id for e in stored.events]
        duplicated += len(ids) - len(set(ids))
        position = {event_id: k for k, event_id in enumerate(ids)}
        lost += sum(1 for event_id in acked[i] if event_id not in position)
        in_order = [position[e] for e in acked[i] if e in position]
        assert in_order == sorted(in_order), f"session s{i}: acknowledged appends out of order"
    assert lost == 0 and duplicated == 0
    # Every acknowledged append's state delta survived with it.
    for i in range(WORKERS):
        stored = await svc.get_session(app_name="faults", user_id=f"u{i}", session_id=f"s{i}")
        assert stored is not None and stored.events
        last = stored.events[-1].actions.state_delta["n"]
        assert stored.state["n"] == last and stored.state[f"app:w{i}"] == last
    status = svc.database.pool_status()
    assert status["waiting"] == 0
    print(
        f"acknowledged {sum(map(len, acked))} appends ({acked_before_kill} before the kill), "
        f"all found; {len(failures)} calls failed during the outage, slowest after "
        f"{slowest_failure:.2f} s; first success {min(successes_after_restart):.2f} s after "
        "the restart"
    )
    await svc.close()
