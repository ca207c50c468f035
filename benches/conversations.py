"""Conversations side by side: adk-postgres's listing and search next to doing the same with
ADK's own `DatabaseSessionService` (list_sessions + client-side sort/filter), on the same
tables of the same PostgreSQL, in one run; and what the conversation indexes cost an append.

    python benches/conversations.py [--rounds 5] [--append-seconds 3]

Data (bulk-inserted in ADK's v1 tables, which both services read): user ``u`` with 10,000
sessions among 20,000 of other users; every 10th of u's sessions and the newest 50 hold 100
text events each (104,500 events, words from a 2,000-word vocabulary; one event in the
second oldest of them says "zanzibar").

* **list page 1 / page 100** — 50 conversations, newest activity first, with title (first
  user message), preview (last text) and message count. adk-postgres: one
  `list_conversations` call (page 100 with the token of page 99). ADK: `list_sessions(u)`
  (all 10,000), sort by last update, slice the page, `get_session` each of the 50 for title,
  preview and count.
* **search** — the events of u saying "zanzibar": adk-postgres `search` without and with the
  search index; ADK: `list_sessions(u)`, `get_session` of each session, match the text.
* **append** — appends/s at c=1 and c=32 (each worker its own session, an event with text and
  a state delta) on a V9-like schema (no activity index: HOT updates), the V10 schema, V10 +
  the state index, V10 + the search index; the variants alternate round by round. Also the
  share of HOT session updates in each.

Prints Markdown tables and writes JSON (default benches/results/conversations.json). Uses
BENCH_DATABASE_URL, else the PostgreSQL on 127.0.0.1:5432 (creates and drops a database).
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
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.database_session_service import DatabaseSessionService
from google.genai import types

from adk_postgres import Database, PostgresSessionService
from adk_postgres.conversations import PostgresConversations

ROOT = Path(__file__).resolve().parents[1]
APP = "bench"
USER = "u"
PAGE = 50


def _with_database(url: str, name: str, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme or parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


async def timed(op: Callable[[], Awaitable[Any]], rounds: int) -> list[float]:
    """Seconds of each of ``rounds`` calls (after one warm-up call)."""
    await op()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await op()
        times.append(time.perf_counter() - started)
    return times


async def seed(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """
        INSERT INTO sessions (app_name, user_id, id, state, create_time, update_time, update_ts)
        SELECT $1, CASE WHEN i <= 10000 THEN 'u' ELSE 'other' || (i % 20) END, 's' || i, '{}',
               to_timestamp(1.7e9 + i) AT TIME ZONE 'UTC',
               to_timestamp(1.7e9 + i * 10) AT TIME ZONE 'UTC', 1.7e9 + i * 10
          FROM generate_series(1, 30000) i;
        """.replace("$1", f"'{APP}'")
    )
    # 100 events in every 10th of u's sessions and in the newest 50 (page 1): 104,500 events;
    # the word searched for is in the second oldest of them (s10).
    await conn.execute(
        f"""
        WITH words AS (SELECT array_agg('w' || n) AS w FROM generate_series(1, 2000) n)
        INSERT INTO events (id, app_name, user_id, session_id, invocation_id, "timestamp",
                            event_data, event_ts, seq)
        SELECT 'e' || s || '-' || k, '{APP}', 'u', 's' || s, 'inv',
               to_timestamp(1.7e9 + s * 10 - 100 + k) AT TIME ZONE 'UTC',
               jsonb_build_object(
                   'id', 'e' || s || '-' || k,
                   'author', CASE WHEN k % 2 = 0 THEN 'user' ELSE 'agent' END,
                   'invocation_id', 'inv', 'timestamp', 1.7e9 + s * 10 - 100 + k,
                   'content', jsonb_build_object(
                       'role', CASE WHEN k % 2 = 0 THEN 'user' ELSE 'model' END,
                       'parts', jsonb_build_array(jsonb_build_object('text',
                           CASE WHEN s = 10 AND k = 40 THEN 'we talked about zanzibar once'
                                ELSE (SELECT string_agg(w[1 + (s * 7 + k * 13 + j * 31) % 2000],
                                                        ' ')
                                        FROM generate_series(1, 12) j) END)))),
               1.7e9 + s * 10 - 100 + k, k
          FROM words, generate_series(1, 10000) s, generate_series(1, 100) k
         WHERE s % 10 = 0 OR s > 9950;
        ANALYZE sessions; ANALYZE events;
        """
    )


def title_and_preview(session: Any) -> tuple[str, str, int]:
    texts = [
        (e.content.role, "".join(p.text or "" for p in e.content.parts or []))
        for e in session.events
        if e.content and any(p.text for p in e.content.parts or [])
    ]
    first = next((t for role, t in texts if role == "user"), "")
    return first[:80], (texts[-1][1] if texts else "")[:160], len(texts)


def weather_event(n: int) -> Event:
    """An event with text and a state delta (so a state index has work to do)."""
    return Event(
        author="user",
        invocation_id="inv",
        content=types.Content(role="user", parts=[types.Part(text=f"message {n} about rain")]),
        actions=EventActions(state_delta={"stage": f"s{n % 5}", "n": n}),
    )


async def append_rate(
    service: PostgresSessionService, sessions: list[Any], seconds: float
) -> float:
    """Appends/s with one worker per session for ``seconds``."""
    stop = time.perf_counter() + seconds
    counts = [0] * len(sessions)

    async def worker(n: int) -> None:
        while time.perf_counter() < stop:
            await service.append_event(sessions[n], weather_event(counts[n]))
            counts[n] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(len(sessions))))
    return sum(counts) / (time.perf_counter() - started)


async def append_rates(
    url: str, schemas: dict[str, str], seconds: float, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Appends/s per variant (schema) at c=1 and c=32, alternating variants each round."""
    results: dict[str, dict[str, list[float]]] = {name: {} for name in schemas}
    # 4 × 20 connections: within PostgreSQL's default max_connections (100).
    services = {
        name: PostgresSessionService(database=Database(url, schema=schema, pool_size=20))
        for name, schema in schemas.items()
    }
    sessions: dict[str, list[Any]] = {}
    for name, service in services.items():
        sessions[name] = [
            await service.create_session(app_name=APP, user_id=f"w{n}", state={"n": n})
            for n in range(32)
        ]
    try:
        for _ in range(rounds):
            for concurrency in (1, 32):
                for name, service in services.items():
                    rate = await append_rate(service, sessions[name][:concurrency], seconds)
                    results[name].setdefault(f"c={concurrency}", []).append(rate)
    finally:
        for service in services.values():
            await service.database.close()
    return results


async def hot_share(conn: asyncpg.Connection, schema: str) -> float | None:
    row = await conn.fetchrow(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
        "WHERE schemaname = $1 AND relname = 'sessions'",
        schema,
    )
    return row["n_tup_hot_upd"] / row["n_tup_upd"] if row and row["n_tup_upd"] else None


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--append-seconds", type=float, default=3.0)
    parser.add_argument("--append-rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benches/results/conversations.json")
    args = parser.parse_args()
    base = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bench_conv_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(base, name)
    results: dict[str, Any] = {}
    try:
        database = Database(url, pool_size=32)
        conversations = PostgresConversations(database=database)
        await database.migrate()
        conn = await asyncpg.connect(url)
        started = time.perf_counter()
        await seed(conn)
        print(f"seeded in {time.perf_counter() - started:.0f} s")
        adk = DatabaseSessionService(
            db_url=_with_database(base, name, "postgresql+asyncpg"), pool_size=32
        )

        # Page 100's token: walk 99 pages once (one listing, so one t0).
        token = None
        for _ in range(99):
            token = (
                await conversations.list_conversations(APP, USER, page_size=PAGE, page_token=token)
            ).next_page_token

        async def ours_page(page_token: str | None) -> None:
            page = await conversations.list_conversations(
                APP, USER, page_size=PAGE, page_token=page_token
            )
            assert len(page.conversations) == PAGE

        async def adk_page(number: int) -> None:
            listed = (await adk.list_sessions(app_name=APP, user_id=USER)).sessions
            listed.sort(key=lambda s: (s.last_update_time, s.id), reverse=True)
            chosen = listed[(number - 1) * PAGE : number * PAGE]
            full = await asyncio.gather(
                *(adk.get_session(app_name=APP, user_id=USER, session_id=s.id) for s in chosen)
            )
            assert len([title_and_preview(s) for s in full]) == PAGE

        async def ours_search() -> None:
            page = await conversations.search(APP, USER, "zanzibar")
            assert [h.session_id for h in page.hits] == ["s10"]

        async def adk_search() -> None:
            listed = (await adk.list_sessions(app_name=APP, user_id=USER)).sessions
            hits = []
            for start in range(0, len(listed), 32):
                batch = await asyncio.gather(
                    *(
                        adk.get_session(app_name=APP, user_id=USER, session_id=s.id)
                        for s in listed[start : start + 32]
                    )
                )
                for session in batch:
                    for event in session.events:
                        parts = event.content.parts if event.content else None
                        if any("zanzibar" in (p.text or "").lower() for p in parts or []):
                            hits.append(session.id)
            assert hits == ["s10"]

        timings: dict[str, dict[str, list[float]]] = {
            "adk-postgres": {},
            "ADK DatabaseSessionService": {},
        }
        timings["adk-postgres"]["list page 1"] = await timed(lambda: ours_page(None), args.rounds)
        timings["adk-postgres"]["list page 100"] = await timed(
            lambda: ours_page(token), args.rounds
        )
        timings["ADK DatabaseSessionService"]["list page 1"] = await timed(
            lambda: adk_page(1), args.rounds
        )
        timings["ADK DatabaseSessionService"]["list page 100"] = await timed(
            lambda: adk_page(100), args.rounds
        )
        timings["adk-postgres"]["search, no index"] = await timed(ours_search, args.rounds)
        started = time.perf_counter()
        await conversations.create_search_index()
        index_build = time.perf_counter() - started
        timings["adk-postgres"]["search, index"] = await timed(ours_search, args.rounds)
        timings["ADK DatabaseSessionService"]["search"] = await timed(
            adk_search, max(1, args.rounds // 2)
        )
        await adk.close()
        await conn.close()
        await database.close()

        # Append cost of the indexes: four schemas in the same database.
        variants = {
            "V9-like (no activity index)": "v9like",
            "V10": "v10",
            "V10 + state index": "v10state",
            "V10 + search index": "v10search",
        }
        for variant, schema in variants.items():
            async with Database(url, schema=schema) as db:
                await db.migrate()
                extra = PostgresConversations(database=db)
                if variant.endswith("state index"):
                    await extra.create_state_index()
                if variant.endswith("search index"):
                    await extra.create_search_index()
        direct = await asyncpg.connect(url)
        await direct.execute("DROP INDEX v9like.idx_sessions_activity")
        appends = await append_rates(url, variants, args.append_seconds, args.append_rounds)
        await asyncio.sleep(1.0)  # statistics are flushed about once a second
        hot = {variant: await hot_share(direct, schema) for variant, schema in variants.items()}
        await direct.close()

        medians = {
            peer: {k: statistics.median(v) * 1000 for k, v in r.items()}
            for peer, r in timings.items()
        }
        print("\n| workload | adk-postgres ms | ADK list_sessions + client side ms | ratio |")
        print("|---|---:|---:|---:|")
        for workload, adk_key in (
            ("list page 1", "list page 1"),
            ("list page 100", "list page 100"),
            ("search, no index", "search"),
            ("search, index", "search"),
        ):
            ours_ms = medians["adk-postgres"][workload]
            adk_ms = medians["ADK DatabaseSessionService"][adk_key]
            print(f"| {workload} | {ours_ms:,.1f} | {adk_ms:,.1f} | {adk_ms / ours_ms:,.0f}× |")
        print(f"\nsearch index built in {index_build:.1f} s (104,500 events)")
        append_medians = {
            v: {k: statistics.median(x) for k, x in r.items()} for v, r in appends.items()
        }
        base_rates = append_medians["V9-like (no activity index)"]
        print(
            "\n| schema | appends/s c=1 | vs V9-like | appends/s c=32 | vs V9-like | HOT updates |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for variant, rates in append_medians.items():
            share = hot[variant]
            print(
                f"| {variant} | {rates['c=1']:,.0f} | {rates['c=1'] / base_rates['c=1']:.2f} | "
                f"{rates['c=32']:,.0f} | {rates['c=32'] / base_rates['c=32']:.2f} | "
                f"{'-' if share is None else f'{share:.0%}'} |"
            )
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "server": str(await admin.fetchval("SHOW server_version")),
            "rounds": args.rounds,
            "timings_s": timings,
            "median_ms": medians,
            "search_index_build_s": index_build,
            "appends_per_s": appends,
            "append_medians": append_medians,
            "hot_update_share": hot,
        }
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
