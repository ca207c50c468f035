"""Drive one hot path for a while, to be profiled with py-spy (see benches/README.md).

    py-spy record --format raw -o /tmp/append.txt -- \
        python benches/profile_hot_paths.py append --seconds 20
    python benches/profile_hot_paths.py summarize /tmp/append.txt

Workloads: ``append`` (32 concurrent appenders, distinct sessions), ``turn`` (agent turn: last
20 events + two appends, 32 concurrent), ``cold`` (get_session of a 100-event session, cache
off), ``list`` (list_sessions of a user with 100 sessions). ``summarize`` turns py-spy's raw
(collapsed-stack) output into the share of samples per frame, and reports any frame of
Python's ``json`` module (there must be none: event JSON is encoded once by pydantic-core and
decoded once by pydantic-core, never by Python code).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import asyncpg  # noqa: E402
from harness import model_event, user_event  # noqa: E402

from adk_postgres import PostgresSessionService  # noqa: E402
from adk_postgres.session_service import GetSessionConfig  # noqa: E402

CONCURRENCY = 32


async def _workload(kind: str, url: str, seconds: float) -> int:
    schema = f"prof_{uuid.uuid4().hex[:8]}"
    service = PostgresSessionService(
        url, schema=schema, pool_size=CONCURRENCY, cache_bytes=0 if kind == "cold" else 64 << 20
    )
    done = 0
    try:
        deadline = time.perf_counter() + seconds
        if kind in ("append", "turn"):
            sessions = [
                await service.create_session(app_name="prof", user_id=f"u{i}")
                for i in range(CONCURRENCY)
            ]

            async def worker(i: int) -> int:
                n = 0
                session = sessions[i]
                while time.perf_counter() < deadline:
                    if kind == "turn":
                        session = await service.get_session(
                            app_name="prof",
                            user_id=session.user_id,
                            session_id=session.id,
                            config=GetSessionConfig(num_recent_events=20),
                        )
                        await service.append_event(session, user_event(n, invocation_id=f"w{i}"))
                    await service.append_event(session, model_event(n, invocation_id=f"w{i}"))
                    n += 1
                return n

            done = sum(await asyncio.gather(*(worker(i) for i in range(CONCURRENCY))))
        elif kind == "cold":
            session = await service.create_session(app_name="prof", user_id="u")
            for n in range(100):
                await service.append_event(session, model_event(n))
            while time.perf_counter() < deadline:
                await service.get_session(app_name="prof", user_id="u", session_id=session.id)
                done += 1
        elif kind == "list":
            for n in range(100):
                await service.create_session(app_name="prof", user_id="u", state={"n": n})
            while time.perf_counter() < deadline:
                await service.list_sessions(app_name="prof", user_id="u")
                done += 1
        else:
            raise SystemExit(f"unknown workload {kind!r}")
    finally:
        await service.close()
        conn = await asyncpg.connect(url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    return done


def summarize(path: Path, top: int) -> None:
    """Share of samples per frame (inclusive), from py-spy's raw collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    json_frames = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if any("/json/" in frame for frame in frames):
            json_frames += count
        for frame in set(frames):
            inclusive[frame.split(" (")[0] + " (" + frame.split("(")[-1]] += count
    print(f"{total} samples; frames in Python's json module: {json_frames}")
    for frame, count in inclusive.most_common(top):
        print(f"{100 * count / total:5.1f}%  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["append", "turn", "cold", "list", "summarize"])
    parser.add_argument("path", nargs="?", help="py-spy raw output (summarize)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    if args.kind == "summarize":
        summarize(Path(args.path), args.top)
        return
    started = time.perf_counter()
    cpu = time.process_time()
    done = asyncio.run(_workload(args.kind, args.url, args.seconds))
    wall = time.perf_counter() - started
    print(
        f"{args.kind}: {done} ops, {done / args.seconds:,.0f} ops/s, "
        f"client CPU {1e6 * (time.process_time() - cpu) / max(done, 1):,.0f} us/op "
        f"(wall {wall:.1f} s incl. setup)"
    )


if __name__ == "__main__":
    main()
