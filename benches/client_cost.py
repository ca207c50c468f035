"""What adk-postgres costs its own process, where its latency tail comes from, and whether a long
history makes appends dearer, in one run:

    python benches/client_cost.py [--seconds 5] [--rounds 3] [--url URL] [--peers all|none]

1. **Client CPU per operation** (process user+sys time / operations; the events to append are
   built before the clock starts), with ops/s and p50/p99, at c=1 and c=32: ``append`` (a ~1 KB
   model event whose delta sets a session, a ``user:``, an ``app:`` and a ``temp:`` key, each
   worker on its own session), ``get_warm`` / ``get_cold`` (full read of a 100-event session by
   the service that read it before / by one without the cache), ``list`` (a user's 100
   sessions), ``create``.
2. **The latency tail and the warm-read cache**: agent turns (read the last 20 events, append a
   user and a model event) at c=32 over 256 sessions of 100 events, every session read once
   before (as a UI does), with the cache on, with the cache on but its events left tracked by
   Python's cyclic garbage collector (as before `_native.untrack_tree`), and with the cache off;
   configurations alternate round by round. Reported: turns/s, p50/p99, full (generation 2)
   collections and the longest collection pause (``gc.callbacks``), objects the collector tracks.
3. **Long histories**: appends at c=1 to a session of 10 events and to one of 100,000
   (alternating, same run), and ``get_session`` of a 10,000-event session cold and warm, next to
   the peers of ``harness.py`` (``--peers none`` leaves them out; seeding 10,000 events through
   ADK's own service takes about a minute).

Prints Markdown tables; writes ``benches/results/client_cost.json``. Uses ``BENCH_DATABASE_URL``,
else the PostgreSQL on 127.0.0.1:5432; schemas and databases of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import asyncpg  # noqa: E402
from compare_builds import drop_schema  # noqa: E402
from google.adk.sessions.base_session_service import GetSessionConfig  # noqa: E402
from harness import (  # noqa: E402
    APP,
    AdkDatabasePeer,
    AdkPostgresPeer,
    Peer,
    SqlspecAsyncpgPeer,
    SqlspecPsqlpyPeer,
    database_url,
    model_event,
    percentile,
    prepared_objects_frozen,
    user_event,
)

from adk_postgres import Database, PostgresSessionService, _session_cache  # noqa: E402

DEFAULT_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LAST_20 = GetSessionConfig(num_recent_events=20)
numbers = itertools.count()


class GcWatch:
    """Collections and their pauses while active (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, float]:
        full = [t for generation, t in self.pauses if generation == 2]
        return {
            "collections": len(self.pauses),
            "full_collections": len(full),
            "longest_pause_ms": 1e3 * max((t for _, t in self.pauses), default=0.0),
            "tracked_objects": len(gc.get_objects()),
        }


async def timed_workers(
    ops: list[Callable[[], Awaitable[object]]], seconds: float, *, freeze: bool = True
) -> dict[str, float]:
    """Each op in a loop of its own for ``seconds``: ops/s, p50/p99 (ms), client CPU µs/op.
    ``freeze``: the events built beforehand are kept out of the GC's way (see harness)."""
    if freeze:
        with prepared_objects_frozen():
            return await timed_workers(ops, seconds, freeze=False)
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def loop(op: Callable[[], Awaitable[object]]) -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await op()
            latencies.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(loop(op) for op in ops))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    ordered = sorted(latencies)
    return {
        "ops_per_s": len(latencies) / wall,
        "p50_ms": 1e3 * percentile(ordered, 0.5),
        "p99_ms": 1e3 * percentile(ordered, 0.99),
        "client_cpu_us": 1e6 * cpu / max(len(latencies), 1),
    }


def appender(service: PostgresSessionService, session: Any, count: int) -> Callable:
    """An append op over ``count`` events built now (not on the clock)."""
    events = iter([model_event(next(numbers)) for _ in range(count)])
    return lambda: service.append_event(session, next(events))


async def client_cpu(url: str, seconds: float, rounds: int) -> dict[str, Any]:
    schema = f"cost_{uuid.uuid4().hex[:8]}"
    results: dict[str, list[dict[str, float]]] = {}
    async with Database(url, schema=schema, pool_size=32) as db:
        warm = PostgresSessionService(database=db)
        cold = PostgresSessionService(database=db, cache_bytes=0)
        readable = []
        for i in range(32):
            s = await cold.create_session(app_name=APP, user_id=f"reader{i}")
            for n in range(100):
                await cold.append_event(s, model_event(n))
            readable.append((f"reader{i}", s.id))
        for _ in range(100):
            await cold.create_session(app_name=APP, user_id="lister", state={"topic": "x"})
        # Appends per worker and second, generously (events are built before each round).
        budget = int(3000 * seconds)

        async def ops(workload: str, c: int) -> list[Callable]:
            if workload == "append":
                sessions = [
                    await warm.create_session(app_name=APP, user_id=f"w{uuid.uuid4().hex[:6]}")
                    for _ in range(c)
                ]
                return [appender(warm, s, budget // c + 100) for s in sessions]
            if workload == "create":
                return [
                    lambda u=f"c{i}": warm.create_session(app_name=APP, user_id=u) for i in range(c)
                ]
            if workload == "list":
                return [lambda: warm.list_sessions(app_name=APP, user_id="lister")] * c
            service = warm if workload == "get_warm" else cold
            return [
                lambda u=u, s=s: service.get_session(app_name=APP, user_id=u, session_id=s)
                for u, s in (readable[i % len(readable)] for i in range(c))
            ]

        for _ in range(rounds):
            for workload in ("append", "get_warm", "get_cold", "list", "create"):
                for c in (1, 32):
                    await timed_workers(await ops(workload, c), min(1.0, seconds))  # warm-up
                    measured = await timed_workers(await ops(workload, c), seconds)
                    results.setdefault(f"{workload} c={c}", []).append(measured)
        await drop_schema(url, schema)
    return {key: medians(runs) for key, runs in results.items()}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(run[k] for run in runs) for k in runs[0]}


async def cache_tail(url: str, seconds: float, rounds: int, sessions: int) -> dict[str, Any]:
    schema = f"tail_{uuid.uuid4().hex[:8]}"
    configs = ["cache on", "cache on, events tracked", "cache off"]
    results: dict[str, list[dict[str, float]]] = {c: [] for c in configs}
    real_untrack = _session_cache.untrack_tree
    async with Database(url, schema=schema, pool_size=32) as db:
        seeder = PostgresSessionService(database=db, cache_bytes=0)
        keys: list[tuple[str, str]] = []

        async def seed(i: int) -> None:
            s = await seeder.create_session(app_name=APP, user_id=f"t{i}")
            for n in range(100):
                await seeder.append_event(s, model_event(n))
            keys.append((f"t{i}", s.id))

        for start in range(0, sessions, 32):
            await asyncio.gather(*(seed(i) for i in range(start, min(sessions, start + 32))))
        for r in range(rounds):
            order = configs if r % 2 == 0 else configs[::-1]
            for config in order:
                # The tracked variant is what the cache did before `untrack_tree`.
                _session_cache.untrack_tree = (
                    (lambda roots: 0) if config.endswith("tracked") else real_untrack
                )
                cache_bytes = 0 if config == "cache off" else 64 << 20
                service = PostgresSessionService(database=db, cache_bytes=cache_bytes)
                for user, sid in keys:
                    await service.get_session(app_name=APP, user_id=user, session_id=sid)
                free = list(keys)

                async def turn(
                    service: PostgresSessionService = service, free: list = free
                ) -> None:
                    user, sid = free.pop()
                    session = await service.get_session(
                        app_name=APP, user_id=user, session_id=sid, config=LAST_20
                    )
                    assert session is not None
                    await service.append_event(session, user_event(1))
                    await service.append_event(session, model_event(2))
                    free.insert(0, (user, sid))

                # Nothing frozen here: what the cache holds is what this measures.
                await timed_workers([turn] * 32, min(1.0, seconds), freeze=False)
                with GcWatch() as watch:
                    measured = await timed_workers([turn] * 32, seconds, freeze=False)
                    measured.update(watch.summary())
                stats = service.cache_stats()
                measured["hit_rate"] = stats.hit_rate if stats else 0.0
                results[config].append(measured)
                del service, turn
                gc.collect()
        _session_cache.untrack_tree = real_untrack
        await drop_schema(url, schema)
    return {config: medians(runs) for config, runs in results.items()}


async def seed_long(
    url: str, db: Database, service: PostgresSessionService, user: str, count: int
) -> str:
    """A session of ``count`` events: one appended through the service, the rest copies of it
    with their own ids, sequence numbers and later timestamps (SQL, seconds instead of a
    minute), the session's revision moved to match."""
    session = await service.create_session(app_name=APP, user_id=user)
    first = model_event(0)
    await service.append_event(session, first)
    s = f'"{db.schema}"'
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(
                f"""INSERT INTO {s}.events (id, app_name, user_id, session_id, invocation_id,
                                            "timestamp", event_data, seq, event_ts)
                    SELECT e.id || '-' || g, e.app_name, e.user_id, e.session_id,
                           e.invocation_id, e."timestamp" + g * interval '1 ms',
                           jsonb_set(jsonb_set(e.event_data, '{{id}}', to_jsonb(e.id || '-' || g)),
                                     '{{timestamp}}', to_jsonb(e.event_ts + g * 0.001)),
                           e.seq + g - 1, e.event_ts + g * 0.001
                      FROM {s}.events e, generate_series(2, $4::int) g
                     WHERE e.app_name = $1 AND e.user_id = $2 AND e.session_id = $3""",
                APP,
                user,
                session.id,
                count,
            )
            await conn.execute(
                f"""UPDATE {s}.sessions SET revision = revision + $4::int - 1,
                        update_ts = update_ts + $4::int * 0.001,
                        update_time = update_time + $4::int * interval '1 ms'
                     WHERE app_name = $1 AND user_id = $2 AND id = $3""",
                APP,
                user,
                session.id,
                count,
            )
    finally:
        await conn.close()
    return session.id


async def long_histories(
    url: str, seconds: float, rounds: int, peers: list[type[Peer]]
) -> dict[str, Any]:
    schema = f"long_{uuid.uuid4().hex[:8]}"
    out: dict[str, Any] = {}
    async with Database(url, schema=schema, pool_size=8) as db:
        service = PostgresSessionService(database=db, cache_bytes=0)
        short = await service.create_session(app_name=APP, user_id="short")
        for n in range(10):
            await service.append_event(short, model_event(n))
        long_id = await seed_long(url, db, service, "long", 100_000)
        long = await service.get_session(
            app_name=APP,
            user_id="long",
            session_id=long_id,
            config=GetSessionConfig(num_recent_events=1),
        )
        assert long is not None
        appends: dict[str, list[dict[str, float]]] = {"10 events": [], "100,000 events": []}
        for r in range(rounds):
            pairs = [("10 events", short), ("100,000 events", long)]
            for name, session in pairs if r % 2 == 0 else pairs[::-1]:
                op = appender(service, session, int(4000 * seconds))
                appends[name].append(await timed_workers([op], seconds))
        out["append c=1"] = {name: medians(runs) for name, runs in appends.items()}
        await drop_schema(url, schema)
    out["get 10,000 events"] = await read_10k(url, rounds, peers)
    return out


async def read_10k(url: str, rounds: int, peers: list[type[Peer]]) -> dict[str, Any]:
    """Cold (a fresh service instance each read) and warm reads of one 10,000-event session,
    each peer in a fresh database, seeded through its own service."""
    results: dict[str, Any] = {}
    admin = await asyncpg.connect(url)
    try:
        for peer_cls in [AdkPostgresPeer, *peers]:
            name = f"bench_long_{uuid.uuid4().hex[:6]}"
            await admin.execute(f'CREATE DATABASE "{name}"')
            peer = peer_cls(database_url(url, name))
            try:
                await peer.open()
                session = await peer.service.create_session(app_name=APP, user_id="u")
                for n in range(10_000):
                    await peer.service.append_event(session, model_event(n))
                cold, warm = [], []
                reader = await peer.fresh_service()
                for _ in range(rounds):
                    fresh = await peer.fresh_service()
                    started = time.perf_counter()
                    got = await fresh.get_session(app_name=APP, user_id="u", session_id=session.id)
                    cold.append(time.perf_counter() - started)
                    assert got is not None and len(got.events) == 10_000
                    await reader.get_session(app_name=APP, user_id="u", session_id=session.id)
                    started = time.perf_counter()
                    await reader.get_session(app_name=APP, user_id="u", session_id=session.id)
                    warm.append(time.perf_counter() - started)
                results[peer.name] = {
                    "cold_ms": 1e3 * statistics.median(cold),
                    "warm_ms": 1e3 * statistics.median(warm),
                }
                print(f"  read 10k: {peer.name} done", file=sys.stderr)
            finally:
                await peer.close()
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    return results


def tables(result: dict[str, Any]) -> str:
    lines = [
        "| operation | ops/s | p50 ms | p99 ms | client CPU µs/op |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, m in result["client_cpu"].items():
        lines.append(
            f"| {key} | {m['ops_per_s']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
            f"| {m['client_cpu_us']:,.0f} |"
        )
    lines += [
        "",
        "| agent turns, c=32 | turns/s | p50 ms | p99 ms | full GCs | longest GC ms "
        "| tracked objects | hit rate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, m in result["cache_tail"].items():
        lines.append(
            f"| {config} | {m['ops_per_s']:,.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} "
            f"| {m['full_collections']:.0f} | {m['longest_pause_ms']:.0f} "
            f"| {m['tracked_objects']:,.0f} | {m['hit_rate']:.2f} |"
        )
    long = result["long_histories"]
    lines += [
        "",
        "| append c=1 to a session of | appends/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for name, m in long["append c=1"].items():
        lines.append(f"| {name} | {m['ops_per_s']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
    lines += ["", "| get_session, 10,000 events | cold ms | warm ms |", "|---|---:|---:|"]
    for name, m in long["get 10,000 events"].items():
        lines.append(f"| {name} | {m['cold_ms']:,.1f} | {m['warm_ms']:,.1f} |")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    peers = [] if args.peers == "none" else [AdkDatabasePeer, SqlspecAsyncpgPeer, SqlspecPsqlpyPeer]
    result: dict[str, Any] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "seconds": args.seconds,
        "rounds": args.rounds,
    }
    print("client CPU per operation ...", file=sys.stderr)
    result["client_cpu"] = await client_cpu(args.url, args.seconds, args.rounds)
    print("latency tail and the cache ...", file=sys.stderr)
    result["cache_tail"] = await cache_tail(args.url, args.seconds, args.rounds, args.sessions)
    print("long histories ...", file=sys.stderr)
    result["long_histories"] = await long_histories(args.url, args.seconds, args.rounds, peers)
    result["loadavg_after"] = os.getloadavg()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=256, help="sessions of the cache tail")
    parser.add_argument("--peers", choices=["all", "none"], default="all")
    parser.add_argument("--out", type=Path, default=Path("benches/results/client_cost.json"))
    args = parser.parse_args()
    outcome = asyncio.run(main(args))
    args.out.write_text(json.dumps(outcome, indent=2) + "\n")
    print(tables(outcome))
