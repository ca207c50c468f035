"""Memory over a long append run: RSS must stay flat (±5 %) after warm-up, and the session
cache within its bound.

    python benches/rss_appends.py [--appends 1000000] [--sessions 500] [--cache-mib 16]

Workload: ``--concurrency`` workers run agent turns on ``--sessions`` sessions round-robin:
``get_session(num_recent_events=20)`` (served warm from the cache) then ``append_event`` of a
~1 KB model event with a state delta. Every ``--every`` appends it records the process RSS
(``/proc/self/statm``) and the cache's size. Warm-up is the first 10 % of appends. The run uses
its own database on ``--url`` (dropped at the end) and prints a JSON summary on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import asyncpg  # noqa: E402
from harness import database_url, model_event  # noqa: E402

from adk_postgres import PostgresSessionService  # noqa: E402
from adk_postgres.session_service import GetSessionConfig  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


async def run(args: argparse.Namespace) -> dict[str, object]:
    name = f"bench_rss_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    service = PostgresSessionService(
        database_url(args.url, name), pool_size=args.concurrency, cache_bytes=args.cache_mib << 20
    )
    samples: list[tuple[int, float, int]] = []
    try:
        sessions = [
            await service.create_session(app_name="rss", user_id=f"u{i % 50}")
            for i in range(args.sessions)
        ]
        appended = 0
        next_sample = 0
        started = time.perf_counter()

        async def worker(w: int) -> None:
            nonlocal appended, next_sample
            # Each worker owns its own sessions (no two appenders on one session).
            mine = sessions[w :: args.concurrency]
            turn = 0
            while appended < args.appends:
                key = mine[turn % len(mine)]
                turn += 1
                session = await service.get_session(
                    app_name="rss",
                    user_id=key.user_id,
                    session_id=key.id,
                    config=GetSessionConfig(num_recent_events=20),
                )
                assert session is not None
                await service.append_event(session, model_event(appended, invocation_id=f"w{w}"))
                appended += 1
                if appended >= next_sample:
                    next_sample += args.every
                    cache = service._cache
                    samples.append((appended, rss_mib(), cache.size_bytes if cache else 0))
                    print(
                        f"{appended:>9,} appends  RSS {samples[-1][1]:7.1f} MiB  "
                        f"cache {samples[-1][2] / 2**20:6.1f} MiB  "
                        f"{appended / (time.perf_counter() - started):7.0f}/s",
                        flush=True,
                    )

        await asyncio.gather(*(worker(w) for w in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await service.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    after_warmup = [rss for n, rss, _ in samples if n >= args.appends // 10]
    reference = after_warmup[0]
    return {
        "appends": appended,
        "seconds": round(elapsed, 1),
        "appends_per_s": round(appended / elapsed),
        "rss_after_warmup_mib": round(reference, 1),
        "rss_min_mib": round(min(after_warmup), 1),
        "rss_max_mib": round(max(after_warmup), 1),
        "rss_final_mib": round(after_warmup[-1], 1),
        "rss_drift_pct": round(100 * (max(after_warmup) - reference) / reference, 2),
        "cache_bound_mib": args.cache_mib,
        "cache_max_mib": round(max(c for _, _, c in samples) / 2**20, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--appends", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--cache-mib", type=int, default=16)
    parser.add_argument("--every", type=int, default=20_000)
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    summary = asyncio.run(run(parser.parse_args()))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
