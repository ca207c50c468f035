"""The ceiling for an append, measured with the append's own SQL: pgbench running the exact
statement `PostgresSessionService.append_event` sends (one session per client, a ~1 KB
event, session/user deltas, with and without an ``app:`` delta), pgbench's one-statement
1 KB jsonb insert, and adk-postgres's `append_event` doing the same work — side by side in one
run, at c=1 and c=32, with adk-postgres's client CPU per append.

    python benches/append_ceiling.py [--seconds 5] [--rounds 3]

How pgbench runs our statement: the SQL text comes from the extension itself
(`_native._append_sql`), its parameters become pgbench variables (session ``c<client_id>``,
event id from the client and the revision, timestamp from the revision), and ``\\gset`` keeps
the revision the statement returns for the next append — so every pgbench transaction is one
real, gated append, exactly one round trip, with no client work besides.

Prints a Markdown table and writes JSON (default benches/results/append_ceiling.json). Uses
BENCH_DATABASE_URL, else the PostgreSQL on 127.0.0.1:5432; a schema of its own, dropped at the
end. Needs `pgbench` on PATH (Debian: postgresql-client).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

from adk_postgres import Database, PostgresSessionService
from adk_postgres._json import encode_event
from adk_postgres._native import _append_sql

sys.path.insert(0, str(Path(__file__).parent))
from harness import prepared_objects_frozen  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = "ceiling"
START_REVISION = 1000
INCARNATION = 42
TEXT = ("The quick brown fox jumps over the lazy dog while the agent thinks. " * 13)[:880]


def make_event(n: int, with_app: bool) -> Event:
    delta: dict[str, Any] = {"turn": n, "user:last_turn": n}
    if with_app:
        delta["app:turns"] = n
    return Event(
        author="helper",
        invocation_id=f"inv-{n}",
        content=types.Content(role="model", parts=[types.Part(text=TEXT)]),
        actions=EventActions(state_delta=delta),
    )


def pgbench_script(schema: str, with_app: bool) -> str:
    """Our append statement with its parameters as pgbench variables."""
    sql = _append_sql(schema)
    values = {
        1: f"'{APP}'",
        2: "('u' || :client_id::text)",
        3: "('c' || :client_id::text)",
        4: ":revision::int8",
        5: """'{"turn": 1}'""",
        6: ":ts::float8",
        7: "('e-' || :client_id::text || '-' || :revision::text)",
        8: "'inv'",
        9: ":event::jsonb",
        # (chr(58) is ":", which pgbench would read as a variable even inside quotes)
        10: """('{"app' || chr(58) || 'turns": 1}')""" if with_app else "NULL",
        11: """'{"last_turn": 1}'""",
        12: str(INCARNATION),
        13: "NULL",
        14: "false",
    }
    for n in sorted(values, reverse=True):  # $14 before $1
        sql = re.sub(rf"\${n}(?!\d)", values[n], sql)
    assert "$" not in sql.replace("$$", ""), sql
    return f"\\set ts 1700000000.0 + :revision * 0.001\n{sql} \\gset\n"


def run_pgbench(url: str, script: str, clients: int, seconds: float, **defines: str) -> float:
    """Transactions per second of one pgbench run of ``script``."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
    command = ["pgbench", "-n", "-M", "prepared", "-c", str(clients)]
    command += ["-j", str(min(clients, os.cpu_count() or 1)), "-T", str(int(seconds))]
    for name, value in defines.items():
        command += ["-D", f"{name}={value}"]
    command += ["-f", f.name, url]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    found = re.search(r"^tps = ([\d.]+)", done.stdout, re.MULTILINE)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    if done.returncode != 0 or not found or (failed and int(failed.group(1))):
        raise RuntimeError(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
    return float(found.group(1))


async def reset_sessions(conn: asyncpg.Connection, schema: str, prefix: str, count: int) -> None:
    """Sessions ``<prefix>0..`` of users ``u0..`` at a known revision and incarnation (set
    together, so the trigger for foreign writers leaves the revision alone)."""
    s = f'"{schema}"'
    await conn.execute(f"DELETE FROM {s}.sessions WHERE app_name = $1", APP)
    await conn.execute(
        f"""INSERT INTO {s}.sessions (app_name, user_id, id, state, create_time, update_time,
                                       update_ts, revision, incarnation)
            SELECT $1, 'u' || i, $2 || i, '{{}}', now() AT TIME ZONE 'UTC',
                   now() AT TIME ZONE 'UTC', 0, $3, $4
              FROM generate_series(0, $5 - 1) i""",
        APP,
        prefix,
        START_REVISION,
        INCARNATION,
        count,
    )


async def ours(
    url: str, schema: str, clients: int, seconds: float, with_app: bool
) -> tuple[float, float]:
    """(appends/s, client CPU µs per append) of `append_event` with one session per worker."""
    async with Database(url, schema=schema, pool_size=32) as db:
        service = PostgresSessionService(database=db)
        sessions = [
            await service.create_session(app_name=APP, user_id=f"u{n}", session_id=f"ours{n}")
            for n in range(clients)
        ]
        # Events are built before the clock starts: the benchmark's own work is not counted.
        per_worker = int(seconds * 4000 / max(1, clients)) + 100
        events = [[make_event(i, with_app) for i in range(per_worker)] for _ in range(clients)]
        stop = time.perf_counter() + seconds
        counts = [0] * clients

        async def worker(n: int) -> None:
            while time.perf_counter() < stop and counts[n] < per_worker:
                await service.append_event(sessions[n], events[n][counts[n]])
                counts[n] += 1

        with prepared_objects_frozen():
            cpu = time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(worker(n) for n in range(clients)))
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
        total = sum(counts)
        return total / elapsed, cpu / total * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benches/results/append_ceiling.json")
    args = parser.parse_args()
    if shutil.which("pgbench") is None:
        raise SystemExit("pgbench is not installed (Debian: apt-get install postgresql-client)")
    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    schema = f"bench_ceiling_{uuid.uuid4().hex[:8]}"
    async with Database(url, schema=schema) as db:
        await db.migrate()
    conn = await asyncpg.connect(url)
    await conn.execute(f'CREATE TABLE "{schema}".one_insert (id bigserial PRIMARY KEY, data jsonb)')
    event_json = encode_event(make_event(1, True)).decode()
    results: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, list[float]] = {}

    def record(name: str, key: str, value: float) -> None:
        results.setdefault(name, {}).setdefault(key, []).append(value)

    insert = f'INSERT INTO "{schema}".one_insert (data) VALUES (:event::jsonb);\n'
    try:
        for _ in range(args.rounds):
            for clients in (1, 32):
                key = f"c={clients}"
                record(
                    "pgbench: one-statement 1 KB insert",
                    key,
                    run_pgbench(url, insert, clients, args.seconds, event=event_json),
                )
                for with_app in (True, False):
                    label = "with app: delta" if with_app else "no app: delta"
                    await reset_sessions(conn, schema, "c", clients)
                    record(
                        f"pgbench: our append statement, {label}",
                        key,
                        run_pgbench(
                            url,
                            pgbench_script(schema, with_app),
                            clients,
                            args.seconds,
                            event=event_json,
                            revision=str(START_REVISION),
                        ),
                    )
                    await conn.execute(f'DELETE FROM "{schema}".sessions WHERE app_name = $1', APP)
                    rate, cpu_us = await ours(url, schema, clients, args.seconds, with_app)
                    record(f"adk-postgres append_event, {label}", key, rate)
                    cpu.setdefault(f"{label}, {key}", []).append(cpu_us)
                    await conn.execute(f'DELETE FROM "{schema}".sessions WHERE app_name = $1', APP)
        server = str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()

    medians = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    print(
        f"event JSON: {len(event_json)} bytes; medians of {args.rounds} rounds of {args.seconds} s"
    )
    print("\n| workload | c=1 /s | c=32 /s |")
    print("|---|---:|---:|")
    for name, rates in medians.items():
        print(f"| {name} | {rates['c=1']:,.0f} | {rates['c=32']:,.0f} |")
    print(
        "\n| append_event as a fraction of pgbench's | c=1 | c=32 "
        "| client CPU µs/append c=1 | c=32 |"
    )
    print("|---|---:|---:|---:|---:|")
    fractions: dict[str, dict[str, float]] = {}
    for label in ("with app: delta", "no app: delta"):
        mine = medians[f"adk-postgres append_event, {label}"]
        for ceiling in (
            f"pgbench: our append statement, {label}",
            "pgbench: one-statement 1 KB insert",
        ):
            theirs = medians[ceiling]
            fractions[f"{label} / {ceiling}"] = {k: mine[k] / theirs[k] for k in mine}
            print(
                f"| {ceiling.removeprefix('pgbench: ')} | {mine['c=1'] / theirs['c=1']:.0%} | "
                f"{mine['c=32'] / theirs['c=32']:.0%} | "
                f"{statistics.median(cpu[f'{label}, c=1']):,.0f} | "
                f"{statistics.median(cpu[f'{label}, c=32']):,.0f} |"
            )
    args.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "server": server,
                "event_bytes": len(event_json),
                "seconds": args.seconds,
                "rounds": results,
                "median_per_s": medians,
                "fraction_of_ceiling": fractions,
                "client_cpu_us_per_append": cpu,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    asyncio.run(main())
