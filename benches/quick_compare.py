"""Quick side-by-side: adk-postgres vs ADK's DatabaseSessionService on one server.

    python benches/quick_compare.py [--url postgresql://postgres@127.0.0.1:5432/postgres]

Each service gets its own fresh database on the same server. Reports the median latency of
append_event (a ~1 KB model event with a state delta) and get_session over a 100-event
history, as the median of --runs runs of --ops operations each (sequential, concurrency 1).
Without --url it uses the embedded PostgreSQL. The full benchmark suite is separate.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import BaseSessionService, DatabaseSessionService
from google.genai import types

from adk_postgres import PostgresSessionService, embedded


def model_event(i: int) -> Event:
    text = f"turn {i}: " + "The quick brown fox jumps over the lazy dog. " * 18  # ~1 KB
    return Event(
        author="assistant",
        invocation_id=f"inv-{i}",
        content=types.Content(role="model", parts=[types.Part(text=text)]),
        actions=EventActions(
            state_delta={"turn": i, "user:last_turn": i, "app:calls": i, "temp:scratch": "x"}
        ),
    )


async def timed(op: Callable[[], Awaitable[Any]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await op()
    return (time.perf_counter() - start) / n


async def measure(svc: BaseSessionService, ops: int, runs: int) -> dict[str, float]:
    app, user = "bench", "u1"
    append_runs, get_runs = [], []
    for _ in range(runs):
        s = await svc.create_session(app_name=app, user_id=user)
        counter = iter(range(10**9))

        async def append(s=s, counter=counter) -> None:
            await svc.append_event(s, model_event(next(counter)))

        append_runs.append(await timed(append, ops))
        hist = await svc.create_session(app_name=app, user_id=user)
        for i in range(100):
            await svc.append_event(hist, model_event(i))

        async def get(hist=hist) -> None:
            got = await svc.get_session(app_name=app, user_id=user, session_id=hist.id)
            assert got is not None and len(got.events) == 100

        get_runs.append(await timed(get, max(ops // 4, 10)))
    return {
        "append_event": statistics.median(append_runs),
        "get_session_100": statistics.median(get_runs),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="server URL (a database per service is created on it)")
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    base = args.url or embedded.default_uri()
    admin = await asyncpg.connect(base)
    names = {k: f"qc_{k}_{uuid.uuid4().hex[:6]}" for k in ("ours", "adk")}
    for name in names.values():
        await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(base)
    url_for = {k: parts._replace(path="/" + v).geturl() for k, v in names.items()}
    try:
        ours = PostgresSessionService(url_for["ours"])
        adk_url = url_for["adk"].replace("postgresql://", "postgresql+asyncpg://", 1)
        adk = DatabaseSessionService(adk_url)
        results = {}
        for label, svc in (("adk-postgres", ours), ("ADK DatabaseSessionService", adk)):
            results[label] = await measure(svc, args.ops, args.runs)
            await svc.close()
    finally:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    ours_r, adk_r = results["adk-postgres"], results["ADK DatabaseSessionService"]
    print(f"{'operation':<22}{'adk-postgres':>16}{'ADK DB service':>16}{'speed-up':>10}")
    for op in ("append_event", "get_session_100"):
        print(
            f"{op:<22}{ours_r[op] * 1000:>13.3f} ms{adk_r[op] * 1000:>13.3f} ms"
            f"{adk_r[op] / ours_r[op]:>9.1f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
