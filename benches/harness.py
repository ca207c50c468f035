"""Shared machinery of the benchmark suite: settings, payloads, peers and the round runner.

The suite compares *peers* (implementations of ADK's storage services) on the same workloads.
A measurement is a number of *rounds*; a round runs ``concurrency`` workers at once (an
``asyncio.gather``), each doing ``ops_per_worker`` operations one after another. Every operation
is timed on its own, so besides throughput (operations / wall time of the rounds) we get the
latency distribution (p50, p99) that pytest-benchmark, which only times whole rounds, cannot
give. Work that is not the operation under test (building events, constructing a fresh service
for a cold read) happens in an untimed ``prepare`` step before each round.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import BaseSessionService, DatabaseSessionService, Session
from google.genai import types

APP = "bench"
#: Concurrency levels every workload runs at.
CONCURRENCY = (1, 32)
#: Connections per service pool (>= the highest concurrency, so workers never queue for one).
POOL_SIZE = 32
#: Peer names, in the order they appear in tables and plots. The first one is the subject.
PEERS = ("adk-postgres", "adk-database", "sqlspec-asyncpg", "sqlspec-psqlpy")
SUBJECT = PEERS[0]
PEER_LABELS = {
    "adk-postgres": "adk-postgres",
    "adk-database": "ADK DatabaseSessionService",
    "sqlspec-asyncpg": "sqlspec + asyncpg",
    "sqlspec-psqlpy": "sqlspec + psqlpy",
}
#: Event-history lengths of the get_session workloads.
HISTORY_LENGTHS = (10, 100, 1000)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """How long and how big the run is; ``BENCH_QUICK=1`` selects the smoke-test sizes."""

    quick: bool
    #: Measured seconds aimed at per benchmark (rounds are sized from a warm-up round).
    target_seconds: float
    min_rounds: int
    max_rounds: int
    #: Unrecorded rounds before measuring (the last one sizes the measurement).
    warmup_rounds: int
    #: Operations per round at concurrency 1 (light / heavy operations).
    ops_c1: int
    ops_c1_heavy: int
    #: Operations per worker per round at concurrency 32 (light / heavy operations).
    ops_c32: int
    ops_c32_heavy: int
    #: History length -> how many sessions of that length the readers spread over.
    history_sessions: dict[int, int]
    list_sessions: int
    turn_seed_events: int
    memory_entries: int
    pgbench_seconds: int


def load_settings() -> Settings:
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    if quick:
        return Settings(
            quick=True,
            target_seconds=0.1,
            min_rounds=1,
            max_rounds=20,
            warmup_rounds=1,
            ops_c1=5,
            ops_c1_heavy=2,
            ops_c32=1,
            ops_c32_heavy=1,
            history_sessions={10: 4, 100: 4, 1000: 1},
            list_sessions=100,
            turn_seed_events=4,
            memory_entries=2_000,
            pgbench_seconds=2,
        )
    return Settings(
        quick=False,
        target_seconds=float(os.environ.get("BENCH_SECONDS", "2")),
        min_rounds=3,
        max_rounds=300,
        warmup_rounds=2,
        ops_c1=10,
        ops_c1_heavy=4,
        ops_c32=2,
        ops_c32_heavy=1,
        history_sessions={10: 32, 100: 16, 1000: 2},
        list_sessions=100,
        turn_seed_events=20,
        memory_entries=10_000,
        pgbench_seconds=10,
    )


def ops_per_worker(settings: Settings, concurrency: int, *, heavy: bool = False) -> int:
    if concurrency == 1:
        return settings.ops_c1_heavy if heavy else settings.ops_c1
    return settings.ops_c32_heavy if heavy else settings.ops_c32


def database_url(base: str, database: str, *, scheme: str | None = None) -> str:
    """``base`` with its database name (and optionally its scheme) replaced."""
    parts = urlsplit(base)._replace(path="/" + database)
    if scheme is not None:
        parts = parts._replace(scheme=scheme)
    return parts.geturl()


# --------------------------------------------------------------------------- payloads

_FILLER = "The quick brown fox jumps over the lazy dog. "


def model_event(n: int, *, invocation_id: str = "inv") -> Event:
    """A realistic ~1 KB model reply whose state delta touches every state scope."""
    return Event(
        author="assistant",
        invocation_id=f"{invocation_id}-{n}",
        content=types.Content(role="model", parts=[types.Part(text=f"reply {n}: " + _FILLER * 18)]),
        actions=EventActions(
            state_delta={
                "turn": n,  # session scope
                "user:last_turn": n,  # user scope
                "app:calls": n,  # app scope
                "temp:scratch": "scratch value",  # never stored
            }
        ),
    )


def user_event(n: int, *, invocation_id: str = "inv") -> Event:
    """A short user message (the other half of an agent turn)."""
    return Event(
        author="user",
        invocation_id=f"{invocation_id}-{n}",
        content=types.Content(role="user", parts=[types.Part(text=f"question {n}: what next?")]),
    )


# --------------------------------------------------------------------------- peers


@contextmanager
def prepared_objects_frozen() -> Iterator[None]:
    """While measuring, what the benchmark prepared (tens of thousands of events built before
    the clock starts) is kept out of the cyclic GC's full collections: holding them is the
    benchmark's doing, and walking them would be charged to the code under test."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Unavailable(Exception):
    """A peer does not offer a service (the benchmark is skipped with this reason)."""


class Peer(ABC):
    """One implementation under test, living in its own database ``url``."""

    name: str

    def __init__(self, url: str) -> None:
        self.url = url
        self._service: BaseSessionService | None = None

    @property
    def service(self) -> BaseSessionService:
        """The long-lived session service (one pool of ``POOL_SIZE`` connections)."""
        assert self._service is not None, "open() first"
        return self._service

    @abstractmethod
    async def open(self) -> None:
        """Create the pool and the tables."""

    @abstractmethod
    async def close(self) -> None:
        """Close every pool this peer opened."""

    @abstractmethod
    def _new_service_instance(self) -> BaseSessionService:
        """A new service object on the same pool (no state carried over but the pool)."""

    async def fresh_service(self) -> BaseSessionService:
        """A new service instance, as a fresh process would have, minus connection setup.

        One-time start-up work (table checks) is done here by reading a session that does not
        exist, so that a cold read measures reading a history nobody in this process has read.
        """
        service = self._new_service_instance()
        await service.get_session(app_name=APP, user_id="nobody", session_id="no-such-session")
        return service

    async def open_artifact_service(self) -> Any:
        raise Unavailable(f"{self.name} has no PostgreSQL artifact service")

    async def open_memory_service(self) -> Any:
        raise Unavailable(f"{self.name} has no PostgreSQL memory service")


def _construct_with_pool(cls: Any, url: str) -> Any:
    """Construct one of our (newer) services, passing a pool size if the constructor takes one."""
    try:
        return cls(url, pool_size=POOL_SIZE)
    except TypeError:
        return cls(url)


class AdkPostgresPeer(Peer):
    name = "adk-postgres"

    async def open(self) -> None:
        from adk_postgres import Database, PostgresSessionService

        self._database = Database(self.url, pool_size=POOL_SIZE)
        await self._database.migrate()
        self._service = PostgresSessionService(database=self._database)
        self._extra: list[Any] = []

    async def close(self) -> None:
        for service in self._extra:
            await service.close()
        await self._database.close()

    def _new_service_instance(self) -> BaseSessionService:
        from adk_postgres import PostgresSessionService

        # Shares the pool; has its own (empty) event-history cache, as a new process would.
        return PostgresSessionService(database=self._database)

    async def open_artifact_service(self) -> Any:
        import adk_postgres

        cls = getattr(adk_postgres, "PostgresArtifactService", None)
        if cls is None:
            raise Unavailable("adk_postgres.PostgresArtifactService does not exist (yet)")
        service = _construct_with_pool(cls, self.url)
        self._extra.append(service)
        return service

    async def open_memory_service(self) -> Any:
        import adk_postgres

        cls = getattr(adk_postgres, "PostgresMemoryService", None)
        if cls is None:
            raise Unavailable("adk_postgres.PostgresMemoryService does not exist (yet)")
        service = _construct_with_pool(cls, self.url)
        self._extra.append(service)
        return service


class AdkDatabasePeer(Peer):
    """ADK's own DatabaseSessionService (SQLAlchemy + asyncpg), with ADK's engine defaults."""

    name = "adk-database"

    async def open(self) -> None:
        url = self.url.replace("postgresql://", "postgresql+asyncpg://", 1)
        self._service = DatabaseSessionService(url, pool_size=POOL_SIZE, max_overflow=0)

    async def close(self) -> None:
        await self.service.close()

    def _new_service_instance(self) -> BaseSessionService:
        assert isinstance(self._service, DatabaseSessionService)
        return DatabaseSessionService(db_engine=self._service.db_engine)


class SqlspecPeer(Peer):
    """sqlspec's ADK session service over one of its PostgreSQL drivers."""

    driver: str

    def _config(self, memory: bool = False) -> Any:
        """The sqlspec database config (a pool of ``POOL_SIZE``); ``memory`` enables FTS."""
        raise NotImplementedError

    def _store_classes(self) -> tuple[type, type]:
        raise NotImplementedError

    async def open(self) -> None:
        from sqlspec.extensions.adk import SQLSpecSessionService

        self._sqlspec_config = self._config()
        store_cls, _ = self._store_classes()
        self._store = store_cls(self._sqlspec_config)
        await self._store.create_tables()
        self._service = SQLSpecSessionService(self._store)

    async def close(self) -> None:
        await self._sqlspec_config.close_pool()
        if getattr(self, "_memory_config", None) is not None:
            await self._memory_config.close_pool()

    def _new_service_instance(self) -> BaseSessionService:
        from sqlspec.extensions.adk import SQLSpecSessionService

        return SQLSpecSessionService(self._store)

    async def open_artifact_service(self) -> Any:
        raise Unavailable(
            f"sqlspec has no {self.driver} artifact store (its SQLSpecArtifactService keeps "
            "metadata in Spanner only, content in object storage)"
        )

    async def open_memory_service(self) -> Any:
        # sqlspec's memory table has a pgvector VECTOR column, even for text search.
        import asyncpg
        from sqlspec.extensions.adk.memory import SQLSpecMemoryService

        conn = await asyncpg.connect(self.url)
        try:
            if not await conn.fetchval(
                "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
            ):
                raise Unavailable(
                    "sqlspec's memory table needs pgvector (a VECTOR column), "
                    "which this server does not have"
                )
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        finally:
            await conn.close()
        self._memory_config = self._config(memory=True)
        _, memory_store_cls = self._store_classes()
        store = memory_store_cls(self._memory_config)
        await store.create_tables()
        return SQLSpecMemoryService(store)


class SqlspecAsyncpgPeer(SqlspecPeer):
    name = "sqlspec-asyncpg"
    driver = "asyncpg"

    def _config(self, memory: bool = False) -> Any:
        from sqlspec.adapters.asyncpg import AsyncpgConfig

        return AsyncpgConfig(
            connection_config={"dsn": self.url, "min_size": 1, "max_size": POOL_SIZE},
            extension_config={"adk": {"memory_use_fts": True}} if memory else None,
        )

    def _store_classes(self) -> tuple[type, type]:
        from sqlspec.adapters.asyncpg.adk import AsyncpgADKMemoryStore, AsyncpgADKStore

        return AsyncpgADKStore, AsyncpgADKMemoryStore


class SqlspecPsqlpyPeer(SqlspecPeer):
    name = "sqlspec-psqlpy"
    driver = "psqlpy"

    def _config(self, memory: bool = False) -> Any:
        from sqlspec.adapters.psqlpy import PsqlpyConfig

        return PsqlpyConfig(
            connection_config={"dsn": self.url, "max_db_pool_size": POOL_SIZE},
            extension_config={"adk": {"memory_use_fts": True}} if memory else None,
        )

    def _store_classes(self) -> tuple[type, type]:
        from sqlspec.adapters.psqlpy.adk import PsqlpyADKMemoryStore, PsqlpyADKStore

        return PsqlpyADKStore, PsqlpyADKMemoryStore


PEER_CLASSES: dict[str, type[Peer]] = {
    cls.name: cls
    for cls in (AdkPostgresPeer, AdkDatabasePeer, SqlspecAsyncpgPeer, SqlspecPsqlpyPeer)
}


# --------------------------------------------------------------------------- seeding


async def bounded_gather(coros: Sequence[Awaitable[Any]], limit: int = POOL_SIZE) -> list[Any]:
    """``asyncio.gather`` with at most ``limit`` coroutines in flight."""
    gate = asyncio.Semaphore(limit)

    async def run(coro: Awaitable[Any]) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))


async def seed_session(
    service: BaseSessionService, user_id: str, events: int, *, tag: str = "seed"
) -> Session:
    """A new session with ``events`` model events appended through the service itself."""
    session = await service.create_session(app_name=APP, user_id=user_id, state={"topic": tag})
    for n in range(events):
        await service.append_event(session, model_event(n, invocation_id=f"{tag}-{session.id}"))
    return session


@dataclass
class Dataset:
    """What a peer's read workloads read, seeded lazily on first use and kept for the run."""

    histories: dict[int, list[str]] = field(default_factory=dict)  # length -> session ids
    list_user: str | None = None

    async def history(self, peer: Peer, settings: Settings, length: int) -> list[str]:
        if length not in self.histories:
            user = f"history-{length}"
            count = settings.history_sessions[length]
            sessions = await bounded_gather(
                [seed_session(peer.service, user, length) for _ in range(count)]
            )
            self.histories[length] = [s.id for s in sessions]
        return self.histories[length]

    async def lister(self, peer: Peer, settings: Settings) -> str:
        if self.list_user is None:
            user = "lister"
            await bounded_gather(
                [
                    peer.service.create_session(app_name=APP, user_id=user, state={"topic": i})
                    for i in range(settings.list_sessions)
                ]
            )
            self.list_user = user
        return self.list_user


# --------------------------------------------------------------------------- measuring

#: One operation: a zero-argument coroutine function, timed on its own.
Op = Callable[[], Awaitable[object]]
#: Untimed preparation of one round: returns each worker's list of operations.
Prepare = Callable[[], Awaitable[list[list[Op]]]]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    index = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[index]


@dataclass
class Measurement:
    """Latencies of every operation and the wall time of every measured round."""

    latencies: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0
    rounds: int = 0

    async def run_round(self, work: list[list[Op]]) -> None:
        async def worker(ops: list[Op]) -> None:
            for op in ops:
                start = time.perf_counter()
                await op()
                self.latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker(ops) for ops in work))
        self.wall_seconds += time.perf_counter() - start
        self.rounds += 1

    def summary(self) -> dict[str, float | int]:
        ordered = sorted(self.latencies)
        return {
            "ops": len(ordered),
            "rounds": self.rounds,
            "ops_per_s": len(ordered) / self.wall_seconds,
            "p50_ms": percentile(ordered, 0.50) * 1000,
            "p99_ms": percentile(ordered, 0.99) * 1000,
            "mean_ms": sum(ordered) / len(ordered) * 1000,
        }


def run_benchmark(
    benchmark: Any,
    loop: asyncio.AbstractEventLoop,
    settings: Settings,
    prepare: Prepare,
    *,
    peer: str,
    workload: str,
    concurrency: int,
    **labels: Any,
) -> dict[str, float | int]:
    """Measure ``prepare``d rounds with pytest-benchmark and record our own statistics.

    Unrecorded warm-up rounds warm pools and caches and tell how long a round takes; the
    number of measured rounds is then chosen to take about ``settings.target_seconds``.
    """
    # Unrecorded rounds: the first warms pools (a pool grows to ``concurrency`` connections)
    # and caches, the last tells how long a round and its preparation take.
    for _ in range(settings.warmup_rounds):
        warmup = Measurement()
        started = time.perf_counter()
        loop.run_until_complete(warmup.run_round(loop.run_until_complete(prepare())))
        round_with_prepare = time.perf_counter() - started
    rounds = math.ceil(settings.target_seconds / max(warmup.wall_seconds, 1e-6))
    # Slow untimed preparation (fresh services for cold reads) must not blow the time budget.
    rounds = min(rounds, math.floor(3 * settings.target_seconds / round_with_prepare))
    rounds = min(max(rounds, settings.min_rounds), settings.max_rounds)

    measurement = Measurement()

    def setup() -> tuple[tuple[list[list[Op]]], dict[str, Any]]:
        return (loop.run_until_complete(prepare()),), {}

    def target(work: list[list[Op]]) -> None:
        loop.run_until_complete(measurement.run_round(work))

    benchmark.group = f"{workload} c={concurrency}"
    benchmark.pedantic(target, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    summary = measurement.summary()
    benchmark.extra_info.update(
        peer=peer, workload=workload, concurrency=concurrency, **labels, **summary
    )
    return summary
