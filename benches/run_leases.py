"""What run leases cost: 32 sessions, each getting 2 runs, turns per second with and without
the lease, side by side in one run (alternating round by round).

    python benches/run_leases.py [--rounds 5] [--sessions 32] [--waves 5]

A turn is ADK's ``Runner.run_async`` with the offline agent of tests/run_agents/relay (a
tool call and a reply: one session read and four appends). Set-ups, each on fresh sessions:

* ``no lease``: 32 workers, each running its session's 2 turns one after the other — the
  most a client can do without leases (2 concurrent runs of one session would fail with
  StaleSessionError).
* ``lease, one after another``: the same, each turn inside ``run_lease`` (the lease's own
  cost: a claim and a release per turn, and the heartbeat bookkeeping).
* ``lease, 2 at once``: both runs of each session sent at once (64 tasks), the lease queues
  the second — what a double-texting user produces; different sessions must not wait.

Prints a Markdown table and writes JSON (default benches/results/run_leases.json). Uses
BENCH_DATABASE_URL, else the PostgreSQL on 127.0.0.1:5432; a schema of its own, dropped at the
end.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from google.adk.runners import Runner
from google.genai import types

from adk_postgres import Database, PostgresSessionService

ROOT = Path(__file__).resolve().parents[1]
APP = "relay"


def _relay_agent() -> Any:
    path = ROOT / "tests" / "run_agents" / "relay" / "agent.py"
    spec = importlib.util.spec_from_file_location("relay_agent", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.root_agent


async def _turn(runner: Runner, user: str, session_id: str, text: str) -> None:
    message = types.Content(role="user", parts=[types.Part(text=text)])
    async for _ in runner.run_async(user_id=user, session_id=session_id, new_message=message):
        pass


async def _round(
    svc: PostgresSessionService, runner: Runner, setup: str, sessions: int, waves: int = 1
) -> float:
    """Turns per second of `waves` waves, one after the other, each on `sessions` new
    sessions (a wave alone lasts well under a second: too short to measure on a busy
    machine)."""
    elapsed = 0.0
    cpu = time.process_time()
    for _ in range(waves):
        elapsed += await _wave(svc, runner, setup, sessions)
    # Client CPU per turn (this process; session set-up and checks included), for the note.
    CPU_PER_TURN.setdefault(setup, []).append(
        (time.process_time() - cpu) / (2 * sessions * waves) * 1e6
    )
    return 2 * sessions * waves / elapsed


async def _wave(svc: PostgresSessionService, runner: Runner, setup: str, sessions: int) -> float:
    """Seconds for one wave: 2 turns on each of `sessions` new sessions."""
    ids = []
    for i in range(sessions):
        created = await svc.create_session(app_name=APP, user_id=f"u{i}")
        ids.append((f"u{i}", created.id))

    async def leased(user: str, sid: str, text: str) -> None:
        async with svc.run_lease(APP, user, sid):
            await _turn(runner, user, sid, text)

    async def one_after_another(user: str, sid: str, lease: bool) -> None:
        for text in ("first", "second"):
            if lease:
                await leased(user, sid, text)
            else:
                await _turn(runner, user, sid, text)

    started = time.perf_counter()
    if setup == "no lease":
        await asyncio.gather(*(one_after_another(u, s, False) for u, s in ids))
    elif setup == "lease, one after another":
        await asyncio.gather(*(one_after_another(u, s, True) for u, s in ids))
    else:
        await asyncio.gather(*(leased(u, s, t) for u, s in ids for t in ("first", "second")))
    elapsed = time.perf_counter() - started
    for user, sid in ids:  # every run happened, in turn
        session = await svc.get_session(app_name=APP, user_id=user, session_id=sid)
        assert session is not None and session.state["turns"] == 2, session
    return elapsed


SETUPS = ("no lease", "lease, one after another", "lease, 2 at once")
#: Client CPU µs per turn, per set-up and round.
CPU_PER_TURN: dict[str, list[float]] = {}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    schema = f"bench_runs_{uuid.uuid4().hex[:8]}"
    database = Database(url, schema=schema, pool_size=32)
    svc = PostgresSessionService(database=database)
    runner = Runner(app_name=APP, agent=_relay_agent(), session_service=svc)
    results: dict[str, list[float]] = {s: [] for s in SETUPS}
    CPU_PER_TURN.clear()
    try:
        await _round(svc, runner, "no lease", 4)  # warm-up: pool, statements, imports
        await _round(svc, runner, "lease, 2 at once", 4)
        CPU_PER_TURN.clear()
        for r in range(args.rounds):
            order = SETUPS if r % 2 == 0 else tuple(reversed(SETUPS))
            for setup in order:
                rate = await _round(svc, runner, setup, args.sessions, args.waves)
                results[setup].append(rate)
    finally:
        await svc.close()
        conn = await asyncpg.connect(url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    medians = {s: statistics.median(v) for s, v in results.items()}
    base = medians["no lease"]
    print(
        f"\n{args.sessions} sessions x 2 runs, {args.waves} waves a round, {args.rounds} rounds,"
        " turns/s (median)\n"
    )
    cpu = {s: statistics.median(v) for s, v in CPU_PER_TURN.items()}
    print("| set-up | turns/s | ÷ no lease | client CPU µs/turn | rounds |")
    print("|---|---:|---:|---:|---|")
    for setup in SETUPS:
        rounds = ", ".join(f"{x:,.0f}" for x in results[setup])
        print(
            f"| {setup} | {medians[setup]:,.0f} | {medians[setup] / base:.2f} |"
            f" {cpu[setup]:,.0f} | {rounds} |"
        )
    return {
        "machine": platform.platform(),
        "sessions": args.sessions,
        "waves": args.waves,
        "rounds": results,
        "median_turns_per_s": medians,
        "ratio_to_no_lease": {s: m / base for s, m in medians.items()},
        "client_cpu_us_per_turn": cpu,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=32)
    parser.add_argument("--waves", type=int, default=5, help="waves of sessions per round")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benches" / "results" / "run_leases.json"
    )
    args = parser.parse_args()
    report = asyncio.run(main(args))
    args.out.write_text(json.dumps(report, indent=2) + "\n")
