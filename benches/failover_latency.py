"""What a synchronous standby costs an append: adk-postgres append latency on a 2-node Patroni
cluster with synchronous replication vs asynchronous replication, side by side in one run.

    python benches/failover_latency.py [--seconds 4] [--rounds 2] [--concurrency 1,32] [--reads]

Both clusters (each: etcd, two Patroni nodes, PostgreSQL 15 with fsync on, from
tests/servers/patroni.py) run at once on loopback; the measurements alternate between them
(sync, async, sync, async, ...) so that drift on the machine hits both alike. Each worker appends
~1 KB model events with a session key, a ``user:`` and an ``app:`` key in their state delta to
its own session (the ``app:`` row is shared, as in a real app) through the multi-host URL with
``target_session_attrs=read-write``. ``--reads`` adds ``get_session`` of a 20-event session
against the synchronous cluster's primary alone (reads do not wait for a standby).

Prints a Markdown table and writes JSON (default benches/results/failover_latency.json).
Needs Debian's patroni and etcd-server and PostgreSQL binaries; runs as root (the servers run as
the postgres user). Every process it starts is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the throwaway-server harness

from servers.patroni import PatroniCluster, missing_patroni  # noqa: E402
from servers.postgres import psql  # noqa: E402

from adk_postgres import PostgresSessionService  # noqa: E402

APP = "latency"
MODES = {"sync": True, "async": False}


def model_event(worker: int, n: int) -> Event:
    text = f"turn {n}: " + "The quick brown fox jumps over the lazy dog. " * 18  # ~1 KB
    return Event(
        author="assistant",
        invocation_id=f"inv-{worker}-{n}",
        content=types.Content(role="model", parts=[types.Part(text=text)]),
        actions=EventActions(
            state_delta={"turn": n, "user:last_turn": n, "app:calls": n, f"app:w{worker}": n}
        ),
    )


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return sorted_values[max(0, math.ceil(fraction * len(sorted_values)) - 1)]


@dataclass
class Tally:
    """Latencies of every measured operation and the measured wall time."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "ops": len(ordered),
            "seconds": round(self.seconds, 3),
            "ops_per_s": round(len(ordered) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(percentile(ordered, 0.50) * 1000, 3) if ordered else None,
            "p99_ms": round(percentile(ordered, 0.99) * 1000, 3) if ordered else None,
        }


async def timed_loop(seconds: float, op: Any, tally: Tally | None) -> None:
    """Runs ``op()`` again and again for ``seconds``; times each call into ``tally``."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        await op()
        if tally is not None:
            tally.latencies.append(time.perf_counter() - started)


async def append_round(
    svc: PostgresSessionService, tag: str, concurrency: int, seconds: float, tally: Tally | None
) -> None:
    """``concurrency`` workers, each appending to its own new session for ``seconds``."""
    sessions = [
        await svc.create_session(app_name=APP, user_id=f"{tag}-u{w}") for w in range(concurrency)
    ]

    async def worker(w: int) -> None:
        counter = iter(range(10**9))

        async def op() -> None:
            await svc.append_event(sessions[w], model_event(w, next(counter)))

        await timed_loop(seconds, op, tally)

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    if tally is not None:
        tally.seconds += time.perf_counter() - started


async def read_round(
    svc: PostgresSessionService, session_id: str, concurrency: int, seconds: float, tally: Tally
) -> None:
    async def op() -> None:
        got = await svc.get_session(app_name=APP, user_id="reader", session_id=session_id)
        assert got is not None and len(got.events) == 20

    started = time.perf_counter()
    await asyncio.gather(*(timed_loop(seconds, op, tally) for _ in range(concurrency)))
    tally.seconds += time.perf_counter() - started


def replication_state(cluster: PatroniCluster) -> list[str]:
    """``application_name sync_state`` of every standby, as the leader sees it."""
    leader = cluster.leader()
    assert leader is not None
    rows = psql(
        leader.pg_port, "SELECT application_name || ' ' || sync_state FROM pg_stat_replication"
    )
    return rows.splitlines()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    clusters: dict[str, PatroniCluster] = {}
    services: dict[str, PostgresSessionService] = {}
    load_start = os.getloadavg()
    try:
        for mode, synchronous in MODES.items():
            print(f"starting the {mode} cluster ...", file=sys.stderr)
            clusters[mode] = PatroniCluster(nodes=2, synchronous_mode=synchronous, fsync=True)
            await asyncio.to_thread(clusters[mode].start)
            services[mode] = PostgresSessionService(
                clusters[mode].multi_host_url(target_session_attrs="read-write"), pool_size=32
            )
        replication = {mode: replication_state(c) for mode, c in clusters.items()}
        print(f"replication: {replication}", file=sys.stderr)
        assert any(r.endswith(" sync") for r in replication["sync"]), replication
        assert all(r.endswith(" async") for r in replication["async"]), replication

        tallies = {(mode, c): Tally() for mode in MODES for c in concurrencies}
        # Each round's figures too: the spread between rounds shows how noisy the machine was.
        per_round: dict[tuple[str, int], list[dict[str, Any]]] = {k: [] for k in tallies}
        for c in concurrencies:
            for mode in MODES:  # warm-up: pools filled, app row and statements in place
                await append_round(services[mode], f"warm{c}", c, 1.0, None)
            for r in range(args.rounds):
                for mode in MODES:
                    print(f"append c={c} {mode} round {r + 1}/{args.rounds}", file=sys.stderr)
                    tag = f"c{c}r{r}"
                    one = Tally()
                    await append_round(services[mode], tag, c, args.seconds, one)
                    per_round[mode, c].append(one.summary())
                    tallies[mode, c].latencies += one.latencies
                    tallies[mode, c].seconds += one.seconds
        appends = [
            {
                "mode": mode,
                "concurrency": c,
                **tallies[mode, c].summary(),
                "ops_per_s_by_round": [r["ops_per_s"] for r in per_round[mode, c]],
                "p50_ms_by_round": [r["p50_ms"] for r in per_round[mode, c]],
            }
            for mode in MODES
            for c in concurrencies
        ]

        reads: list[dict[str, Any]] = []
        if args.reads:
            leader = clusters["sync"].leader()
            assert leader is not None
            reader = PostgresSessionService(leader.url(), pool_size=32, cache_bytes=0)
            try:
                session = await reader.create_session(app_name=APP, user_id="reader")
                for n in range(20):
                    await reader.append_event(session, model_event(0, n))
                for c in concurrencies:
                    await read_round(reader, session.id, c, 1.0, Tally())  # warm-up
                    tally = Tally()
                    print(f"get_session c={c} on the primary", file=sys.stderr)
                    await read_round(reader, session.id, c, args.seconds, tally)
                    reads.append({"concurrency": c, **tally.summary()})
            finally:
                await reader.close()
    finally:
        for svc in services.values():
            await svc.close()
        for cluster in clusters.values():
            await asyncio.to_thread(cluster.stop)
    return {
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "seconds_per_round": args.seconds,
            "rounds": args.rounds,
            "concurrency": concurrencies,
            "event_bytes": len(model_event(0, 0).model_dump_json(exclude_none=True)),
            "fsync": True,
            "pool_size": 32,
            "cluster": "2 Patroni nodes (patroni 3.0.2, etcd 3.4, PostgreSQL 15), loopback",
        },
        "replication": replication,
        "append_event": appends,
        "get_session_20_events_primary": reads,
    }


def markdown(result: dict[str, Any]) -> str:
    by = {(r["mode"], r["concurrency"]): r for r in result["append_event"]}
    lines = [
        "append_event, ~1 KB event with app:/user: delta, fsync on, 2-node Patroni cluster",
        "",
        "| c | replication | ops/s | p50 ms | p99 ms | ops/s by round |",
        "|---|---|---|---|---|---|",
    ]
    for c in result["settings"]["concurrency"]:
        for mode in MODES:
            r = by[mode, c]
            rounds = ", ".join(str(x) for x in r["ops_per_s_by_round"])
            lines.append(
                f"| {c} | {mode} | {r['ops_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {rounds} |"
            )
        s, a = by["sync", c], by["async", c]
        if a["ops_per_s"] and a["p50_ms"]:
            lines.append(
                f"| {c} | sync/async | {s['ops_per_s'] / a['ops_per_s']:.2f}x |"
                f" {s['p50_ms'] / a['p50_ms']:.2f}x | {s['p99_ms'] / a['p99_ms']:.2f}x | |"
            )
    if result["get_session_20_events_primary"]:
        lines += [
            "",
            "get_session (20 events, no cache) on the primary alone",
            "",
            "| c | ops/s | p50 ms | p99 ms |",
            "|---|---|---|---|",
        ]
        for r in result["get_session_20_events_primary"]:
            lines.append(
                f"| {r['concurrency']} | {r['ops_per_s']} | {r['p50_ms']} | {r['p99_ms']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="adk-postgres append latency: synchronous vs asynchronous standby "
        "(2-node Patroni cluster on loopback)."
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per round")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds per mode and concurrency (alternating)"
    )
    parser.add_argument("--concurrency", default="1,32", help="comma-separated, e.g. 1,32")
    parser.add_argument(
        "--reads", action="store_true", help="also get_session/s against the primary alone"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benches" / "results" / "failover_latency.json",
        help="JSON output path",
    )
    args = parser.parse_args()
    reason = missing_patroni()
    if reason:
        sys.exit(f"cannot run a Patroni cluster here: {reason}")
    result = asyncio.run(run(args))
    print(markdown(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
