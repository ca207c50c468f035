"""A2A task stores side by side: adk-postgres's `PostgresTaskStore` and the a2a-sdk's own
`DatabaseTaskStore` (SQLAlchemy on asyncpg), on the same PostgreSQL, in one run.

    python benches/a2a_task_store.py [--seconds 3] [--rounds 3]

Workload: a task with a 20-message history (each message a text part of ~200 characters and
a little metadata), the shape an agent conversation gives. ``save``: each worker saves its
own task again and again with a new status timestamp (an update, as the SDK's TaskManager
does on every event); ``get``: each worker reads its own task. At concurrency 1 and 32 (one
task per worker), each measurement runs for ``--seconds``, the two stores alternate round by
round and the medians of ``--rounds`` are reported.

Prints a Markdown table and writes JSON (default benches/results/a2a_task_store.json). Uses
BENCH_DATABASE_URL, else the PostgreSQL on 127.0.0.1:5432; schemas of its own, dropped at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from a2a.server.context import ServerCallContext
from a2a.server.tasks import DatabaseTaskStore
from a2a.types import a2a_pb2
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from adk_postgres import Database
from adk_postgres.a2a import PostgresTaskStore

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = ServerCallContext()


def make_task(task_id: str, history: int = 20) -> Any:
    task = a2a_pb2.Task(
        id=task_id,
        context_id=f"ctx-{task_id}",
        status=a2a_pb2.TaskStatus(state=a2a_pb2.TASK_STATE_WORKING),
    )
    task.status.timestamp.GetCurrentTime()
    for i in range(history):
        role = a2a_pb2.ROLE_USER if i % 2 == 0 else a2a_pb2.ROLE_AGENT
        message = task.history.add(
            message_id=f"{task_id}-{i}", role=role, context_id=task.context_id
        )
        message.parts.add(text=f"message {i}: " + "lorem ipsum dolor sit amet " * 7)
        message.metadata.update({"turn": i, "source": "bench"})
    return task


async def measure(
    name: str, concurrency: int, seconds: float, op: Callable[[int], Awaitable[None]]
) -> float:
    """Operations per second of `op(worker)` run by `concurrency` workers for `seconds`."""
    stop = time.perf_counter() + seconds
    counts = [0] * concurrency

    async def worker(n: int) -> None:
        while time.perf_counter() < stop:
            await op(n)
            counts[n] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return sum(counts) / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benches/results/a2a_task_store.json")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    ours_schema = f"bench_a2a_{uuid.uuid4().hex[:8]}"
    sdk_schema = f"bench_a2a_sdk_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE SCHEMA "{sdk_schema}"')

    database = Database(url, schema=ours_schema, pool_size=32)
    ours = PostgresTaskStore(database=database)
    # The SDK's store in a schema of its own, on asyncpg, with a pool as large as ours.
    engine = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=32, max_overflow=0
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _search_path(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(f'SET search_path TO "{sdk_schema}"')
        cursor.close()

    sdk = DatabaseTaskStore(engine)
    await sdk.initialize()

    stores = {"adk-postgres": ours, "a2a-sdk DatabaseTaskStore": sdk}
    results: dict[str, dict[str, list[float]]] = {name: {} for name in stores}
    tasks = {c: [make_task(f"c{c}-w{n}") for n in range(c)] for c in (1, 32)}
    for store in stores.values():
        for batch in tasks.values():
            for task in batch:
                await store.save(task, CONTEXT)

    def save_op(store: Any, batch: list[Any]) -> Callable[[int], Awaitable[None]]:
        async def op(n: int) -> None:
            task = batch[n]
            task.status.timestamp.GetCurrentTime()
            await store.save(task, CONTEXT)

        return op

    def get_op(store: Any, batch: list[Any]) -> Callable[[int], Awaitable[None]]:
        async def op(n: int) -> None:
            got = await store.get(batch[n].id, CONTEXT)
            assert got is not None and len(got.history) == 20

        return op

    try:
        for _ in range(args.rounds):
            for concurrency, batch in tasks.items():
                for kind, make_op in (("save", save_op), ("get", get_op)):
                    for name, store in stores.items():
                        rate = await measure(name, concurrency, args.seconds, make_op(store, batch))
                        results[name].setdefault(f"{kind} c={concurrency}", []).append(rate)
    finally:
        await database.close()
        await engine.dispose()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{ours_schema}" CASCADE')
        await admin.execute(f'DROP SCHEMA IF EXISTS "{sdk_schema}" CASCADE')
        await admin.close()

    medians = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    ratios = {
        k: medians["adk-postgres"][k] / medians["a2a-sdk DatabaseTaskStore"][k]
        for k in medians["adk-postgres"]
    }
    print("| workload | adk-postgres ops/s | a2a-sdk DatabaseTaskStore ops/s | ratio |")
    print("|---|---|---|---|")
    for k, ratio in ratios.items():
        print(
            f"| {k} | {medians['adk-postgres'][k]:,.0f} | "
            f"{medians['a2a-sdk DatabaseTaskStore'][k]:,.0f} | {ratio:.1f}× |"
        )
    server = await _server_version(url)
    args.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "server": server,
                "seconds": args.seconds,
                "rounds": results,
                "median_ops_per_s": medians,
                "ratio": ratios,
            },
            indent=2,
        )
        + "\n"
    )


async def _server_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
