"""A prune killed mid-run (SIGKILL) leaves every session whole: each batch is one transaction,
so a session has either all its events or exactly the newest N, never something between."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from adk_postgres import Database

SESSIONS = 2000
EVENTS = 12
KEEP = 5


async def _seed(conn: asyncpg.Connection, schema: str) -> None:
    """Sessions and events written in bulk in the service's own row format (fast to make)."""
    s = f'"{schema}"'
    await conn.execute(
        f"""INSERT INTO {s}.sessions (app_name, user_id, id, state, create_time, update_time)
            SELECT 'a', 'u', 's' || i, '{{}}', now(), now() FROM generate_series(1, $1) i""",
        SESSIONS,
    )
    await conn.execute(
        f"""INSERT INTO {s}.events (id, app_name, user_id, session_id, invocation_id,
                                    "timestamp", event_data, seq, event_ts)
            SELECT 'e' || j, 'a', 'u', 's' || i, 'inv',
                   to_timestamp(1700000000 + j) AT TIME ZONE 'UTC', '{{}}', j, 1700000000 + j
              FROM generate_series(1, $1) i, generate_series(1, $2) j""",
        SESSIONS,
        EVENTS,
    )


async def _counts(conn: asyncpg.Connection, schema: str) -> dict[int, int]:
    """How many sessions have how many events."""
    rows = await conn.fetch(
        f'SELECT n, count(*) FROM (SELECT count(e.id) AS n FROM "{schema}".sessions s'
        f' LEFT JOIN "{schema}".events e ON e.app_name = s.app_name AND e.user_id = s.user_id'
        " AND e.session_id = s.id GROUP BY s.id) c GROUP BY n"
    )
    return {r[0]: r[1] for r in rows}


async def test_sigkill_mid_prune_leaves_consistent_sessions(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    async with Database(pg_url, schema=schema_name) as db:
        await db.migrate()
    await _seed(pg_admin, schema_name)
    script = Path(sys.executable).parent / "adk-postgres"
    args = ["-d", pg_url, "--schema", schema_name, "prune", "--keep-events", str(KEEP)]
    proc = subprocess.Popen(
        [str(script), *args, "--batch-size", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if "DATABASE_URL" not in k},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (await _counts(pg_admin, schema_name)).get(KEEP, 0) >= 20:
                break
            await asyncio.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)

    mid = await _counts(pg_admin, schema_name)
    assert set(mid) <= {EVENTS, KEEP}, mid  # no session pruned halfway
    assert mid.get(KEEP, 0) >= 20 and mid.get(EVENTS, 0) > 0, mid  # killed mid-run

    # Running it again finishes the job; every session keeps its newest KEEP events.
    rerun = await asyncio.to_thread(
        subprocess.run, [str(script), *args], capture_output=True, text=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stderr
    assert await _counts(pg_admin, schema_name) == {KEEP: SESSIONS}
    kept = await pg_admin.fetch(f'SELECT DISTINCT id FROM "{schema_name}".events ORDER BY id')
    newest = {f"e{j}" for j in range(EVENTS - KEEP + 1, EVENTS + 1)}
    assert {r[0] for r in kept} == newest
