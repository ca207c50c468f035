"""Reads per second with the primary alone vs the primary plus one standby serving reads
(`read_uri=`), side by side in one run on one two-node Patroni cluster (synchronous
replication, fsync on).

    python benches/replica_reads.py [--seconds 4] [--rounds 3] [--concurrency 1,32]

Each worker reads ``get_session`` (the last 20 of 40 events) of random sessions this process
did not write, so the standby's answer is served (read-your-writes would send reads of
sessions this process wrote to the primary while the standby lags). The two set-ups alternate
round by round so that drift on the machine hits both alike. On one machine the standby shares
the CPUs with the primary and the client: the gain measured here is a floor, not what a standby
on its own machine gives.

Prints a Markdown table and writes JSON (default benches/results/replica_reads.json). Needs
Debian's patroni and etcd-server and PostgreSQL binaries; every process it starts is stopped by
pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from google.adk.events import Event
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the throwaway-server harness

from servers.patroni import PatroniCluster, missing_patroni  # noqa: E402

from adk_postgres import Database, PostgresSessionService  # noqa: E402

APP, SESSIONS, EVENTS = "replica_bench", 200, 40


async def seed(url: str) -> None:
    async with PostgresSessionService(url, schema="bench", pool_size=8) as svc:
        for i in range(SESSIONS):
            s = await svc.create_session(app_name=APP, user_id=f"u{i}", session_id="s")
            for n in range(EVENTS):
                text = f"event {n} " + "lorem ipsum " * 30
                await svc.append_event(
                    s,
                    Event(
                        author="model",
                        invocation_id="i",
                        content=types.Content(role="model", parts=[types.Part(text=text)]),
                    ),
                )


async def reads_per_second(svc: PostgresSessionService, concurrency: int, seconds: float) -> float:
    config = GetSessionConfig(num_recent_events=20)
    done = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        rng = random.Random()
        while time.monotonic() < stop:
            i = rng.randrange(SESSIONS)
            got = await svc.get_session(
                app_name=APP, user_id=f"u{i}", session_id="s", config=config
            )
            assert got is not None and len(got.events) == 20
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": platform.node(), "runs": {}}
    with PatroniCluster(nodes=2, synchronous_mode=True, ttl=10, loop_wait=2, fsync=True) as cluster:
        cluster.wait_ready()
        primary, standby = cluster.leader(), cluster.replicas()[0]
        assert primary is not None
        await seed(primary.url())
        await asyncio.sleep(2)  # replayed
        setups = {
            "primary alone": dict(),
            "primary + standby": dict(read_uri=standby.url()),
        }
        services = {}
        for name, extra in setups.items():
            db = Database(primary.url(), schema="bench", pool_size=32, **extra)
            services[name] = PostgresSessionService(database=db, cache_bytes=0)
        for concurrency in args.concurrency:
            figures: dict[str, list[float]] = {name: [] for name in setups}
            for svc in services.values():  # warm-up: pools, statements
                await reads_per_second(svc, concurrency, 1.0)
            for _ in range(args.rounds):
                for name, svc in services.items():
                    figures[name].append(await reads_per_second(svc, concurrency, args.seconds))
            results["runs"][f"c={concurrency}"] = {
                name: {"median": statistics.median(v), "rounds": v} for name, v in figures.items()
            }
        for svc in services.values():
            await svc.database.close()
    return results


def report(results: dict[str, Any]) -> str:
    lines = ["| concurrency | primary alone (reads/s) | primary + standby (reads/s) | ratio |"]
    lines.append("|---|---|---|---|")
    for label, run in results["runs"].items():
        alone, both = run["primary alone"]["median"], run["primary + standby"]["median"]
        lines.append(f"| {label} | {alone:,.0f} | {both:,.0f} | {both / alone:.2f}× |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benches/results/replica_reads.json")
    args = parser.parse_args()
    reason = missing_patroni()
    if reason:
        sys.exit(f"cannot run: {reason}")
    results = asyncio.run(main(args))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
