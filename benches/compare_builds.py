"""Builds of adk-postgres side by side: the same session workloads, one process per build and
round, alternating builds round by round on one server, so that drift on the machine hits every
build alike. For "no regression" checks between commits.

    python benches/compare_builds.py --build before=/path/a/.venv/bin/python \\
        --build after=.venv/bin/python [--url postgresql://...] [--rounds 3] [--seconds 3]

Each build's interpreter runs this file with ``--worker``: it seeds its own schema (32
sessions of 100 events to read, and one user with 100 sessions), measures each workload for
``--seconds`` after a warm-up and prints JSON; the driver drops the schema. Workloads, at
concurrency 1 and 32: ``append`` (a ~1 KB model event whose delta sets a session, a ``user:``,
an ``app:`` and a ``temp:`` key, each worker on its own session), ``get_warm`` (full read of a
100-event session through the service that read it before), ``get_cold`` (the same without the
cache), ``get_last10`` (``num_recent_events=10``, through the warm service) and ``list`` (a
user's 100 sessions). The driver prints the median ops/s per build and the ratios to the first
build.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
WORKLOADS = ["append", "get_warm", "get_cold", "get_last10", "list"]
CONCURRENCY = [1, 32]


async def worker(url: str, seconds: float) -> dict[str, float]:
    from google.adk.events import Event
    from google.adk.events.event_actions import EventActions
    from google.adk.sessions.base_session_service import GetSessionConfig
    from google.genai import types

    from adk_postgres import Database, PostgresSessionService

    numbers = itertools.count()

    def model_event() -> Event:
        n = next(numbers)
        text = f"turn {n}: " + "The quick brown fox jumps over the lazy dog. " * 18
        return Event(
            author="assistant",
            invocation_id=f"inv-{n}",
            content=types.Content(role="model", parts=[types.Part(text=text)]),
            actions=EventActions(
                state_delta={"turn": n, "user:last": n, "app:calls": n, "temp:x": "y"}
            ),
        )

    schema = f"cmp_{uuid.uuid4().hex[:10]}"
    db = Database(url, schema=schema, pool_size=32)
    warm = PostgresSessionService(database=db)
    cold = PostgresSessionService(database=db, cache_bytes=0)
    results: dict[str, float] = {}
    try:
        # Seed: 32 sessions of 100 events to read, one user with 100 sessions to list.
        readable = []
        for i in range(32):
            s = await warm.create_session(app_name="cmp", user_id=f"reader{i}")
            for _ in range(100):
                await warm.append_event(s, model_event())
            readable.append(s.id)
        for _ in range(100):
            await warm.create_session(app_name="cmp", user_id="lister")
        writers = {
            c: [await warm.create_session(app_name="cmp", user_id=f"w{c}-{i}") for i in range(c)]
            for c in CONCURRENCY
        }
        last10 = GetSessionConfig(num_recent_events=10)

        def op(workload: str, concurrency: int, worker_index: int):  # type: ignore[no-untyped-def]
            if workload == "append":
                session = writers[concurrency][worker_index]
                return lambda: warm.append_event(session, model_event())
            sid = readable[worker_index % len(readable)]
            user = f"reader{worker_index % len(readable)}"
            if workload == "get_warm":
                return lambda: warm.get_session(app_name="cmp", user_id=user, session_id=sid)
            if workload == "get_cold":
                return lambda: cold.get_session(app_name="cmp", user_id=user, session_id=sid)
            if workload == "get_last10":
                return lambda: warm.get_session(
                    app_name="cmp", user_id=user, session_id=sid, config=last10
                )
            return lambda: warm.list_sessions(app_name="cmp", user_id="lister")

        async def measure(workload: str, concurrency: int, duration: float) -> float:
            done = 0
            stop = time.monotonic() + duration

            async def one(index: int) -> None:
                nonlocal done
                call = op(workload, concurrency, index)
                while time.monotonic() < stop:
                    await call()
                    done += 1

            started = time.monotonic()
            await asyncio.gather(*(one(i) for i in range(concurrency)))
            return done / (time.monotonic() - started)

        for workload in WORKLOADS:
            for concurrency in CONCURRENCY:
                await measure(workload, concurrency, min(1.0, seconds))  # warm-up
                results[f"{workload} c={concurrency}"] = await measure(
                    workload, concurrency, seconds
                )
    finally:
        await db.close()
        # The driver drops the schema: the build under test may lack a client library.
        print(json.dumps({"schema": schema}), flush=True)
    return results


async def drop_schema(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def drive(args: argparse.Namespace) -> dict[str, Any]:
    builds = dict(b.split("=", 1) for b in args.build)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    for r in range(args.rounds):
        for name, python in builds.items():
            command = [python, __file__, "--worker", "--url", args.url]
            command += ["--seconds", str(args.seconds)]
            out = subprocess.run(command, capture_output=True, text=True)
            lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
            for line in lines:
                if "schema" in line:
                    asyncio.run(drop_schema(args.url, line["schema"]))
            if out.returncode != 0:
                sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
            rounds[name].append(lines[-1])
            print(f"round {r + 1}/{args.rounds}: {name} done", file=sys.stderr)
    medians = {
        name: {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        for name, runs in rounds.items()
    }
    return {"url": args.url, "seconds": args.seconds, "rounds": rounds, "medians": medians}


def table(result: dict[str, Any]) -> str:
    medians = result["medians"]
    names = list(medians)
    first = names[0]
    header = "| workload | " + " | ".join(f"{n} (ops/s)" for n in names)
    header += "".join(f" | {n} / {first}" for n in names[1:]) + " |"
    lines = [header, "|" + "---|" * (1 + 2 * len(names) - 1)]
    for key in medians[first]:
        row = f"| {key} | " + " | ".join(f"{medians[n][key]:,.0f}" for n in names)
        row += "".join(f" | {medians[n][key] / medians[first][key]:.2f}" for n in names[1:])
        lines.append(row + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build", action="append", default=[], metavar="NAME=PYTHON")
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(args.url, args.seconds))))
    else:
        result = drive(args)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(table(result))
