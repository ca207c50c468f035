"""Fixtures of the benchmark suite: the server, one fresh database per peer, the event loop.

Run from the repository root (see benches/README.md)::

    pytest benches/ --benchmark-only --benchmark-json=benches/results/latest.json

Environment:
    BENCH_DATABASE_URL  server to run on (a database per peer is created and dropped on it);
                        default: postgresql://postgres@127.0.0.1:5432/postgres if reachable,
                        else the embedded PostgreSQL of ``adk_postgres.embedded`` (also
                        chosen by BENCH_DATABASE_URL=embedded).
    BENCH_QUICK=1       smoke mode: every workload, briefly (< 3 minutes).
    BENCH_PEERS         comma-separated subset of peers (default: all four).
    BENCH_SECONDS       measured seconds per benchmark in the full run (default 2).
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from harness import PEER_CLASSES, PEERS, Dataset, Peer, Settings, database_url, load_settings

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"

#: Facts about the run, written into the pytest-benchmark JSON (key "bench_suite").
SUITE_INFO: dict[str, Any] = {}


def selected_peers() -> list[str]:
    wanted = os.environ.get("BENCH_PEERS")
    if not wanted:
        return list(PEERS)
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = set(names) - set(PEERS)
    if unknown:
        raise pytest.UsageError(f"unknown peers in BENCH_PEERS: {sorted(unknown)}")
    return [name for name in PEERS if name in names]  # keep the canonical order


def redact(url: str) -> str:
    """The URL without a password."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"


async def _reachable(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def pytest_sessionstart(session: pytest.Session) -> None:
    SUITE_INFO["started_at"] = time.time()
    SUITE_INFO["load_average_at_start"] = _load_average()


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    SUITE_INFO["duration_s"] = round(time.time() - SUITE_INFO["started_at"], 1)
    SUITE_INFO["load_average_at_end"] = _load_average()
    SUITE_INFO["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    output_json["bench_suite"] = SUITE_INFO


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the pgbench ceiling first, while the machine is as quiet as it will be (after
    pytest has grouped the other benchmarks by peer)."""
    items.sort(key=lambda item: 0 if item.path.name == "test_ceiling.py" else 1)  # stable


@pytest.fixture(scope="session")
def settings() -> Settings:
    loaded = load_settings()
    SUITE_INFO["quick"] = loaded.quick
    return loaded


@pytest.fixture(scope="session")
def bench_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """The one event loop every peer and workload runs on (not pytest-asyncio's)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


@pytest.fixture(scope="session")
def server_url(bench_loop: asyncio.AbstractEventLoop) -> str:
    """URL of the server (its maintenance database); every peer gets a database on it."""
    url = os.environ.get("BENCH_DATABASE_URL", "")
    if not url and bench_loop.run_until_complete(_reachable(LOCAL_SERVER)):
        url = LOCAL_SERVER
    if not url or url == "embedded":
        from adk_postgres import embedded

        url = embedded.default_uri()

    async def describe() -> None:
        conn = await asyncpg.connect(url)
        try:
            SUITE_INFO["server_version"] = await conn.fetchval("SELECT version()")
            SUITE_INFO["fsync"] = await conn.fetchval("SHOW fsync")
            SUITE_INFO["synchronous_commit"] = await conn.fetchval("SHOW synchronous_commit")
            SUITE_INFO["max_connections"] = int(await conn.fetchval("SHOW max_connections"))
        finally:
            await conn.close()

    bench_loop.run_until_complete(describe())
    SUITE_INFO["server_url"] = redact(url)
    return url


@pytest.fixture(scope="session")
def run_id() -> str:
    return uuid.uuid4().hex[:8]


async def create_database(server: str, name: str) -> str:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(server, name)


async def drop_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class PeerUnderTest:
    """An open peer plus the data its read workloads were seeded with."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.name = peer.name
        self.dataset = Dataset()
        #: Artifact / memory services opened for this peer, or why it has none.
        self.extra_services: dict[str, Any] = {}


@pytest.fixture(scope="session", params=selected_peers())
def peer(
    request: pytest.FixtureRequest,
    bench_loop: asyncio.AbstractEventLoop,
    server_url: str,
    run_id: str,
) -> Iterator[PeerUnderTest]:
    """One peer in its own fresh database, open for all its benchmarks, then dropped.

    Being session-scoped and parametrized, pytest runs all benchmarks of one peer before
    moving on to the next one, so only one peer's pool is open at a time.
    """
    name: str = request.param
    database = f"bench_{run_id}_{name.replace('-', '_')}"
    url = bench_loop.run_until_complete(create_database(server_url, database))
    instance = PEER_CLASSES[name](url)
    try:
        bench_loop.run_until_complete(instance.open())
        yield PeerUnderTest(instance)
    finally:
        try:
            bench_loop.run_until_complete(instance.close())
        finally:
            bench_loop.run_until_complete(drop_database(server_url, database))
