"""`adk-postgres import / export / restore` against real ADK databases made by ADK itself."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import BaseSessionService
from google.adk.sessions.database_session_service import DatabaseSessionService
from google.adk.sessions.sqlite_session_service import SqliteSessionService
from google.genai import types

from adk_postgres import PostgresSessionService

PASSWORD = "s3cr3t-Import-pw"


def cli(pg_url: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from adk_postgres.cli import run; run()",
            "-d",
            pg_url,
            "--schema",
            schema,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _event(author: str, text: str, delta: dict | None = None, n: int = 0) -> Event:
    return Event(
        author=author,
        invocation_id=f"inv-{n}",
        content=types.Content(
            role="user" if author == "user" else "model", parts=[types.Part(text=text)]
        ),
        actions=EventActions(state_delta=delta or {}),
    )


async def populate(service: BaseSessionService) -> list[tuple[str, str, str]]:
    """Two apps, three users, sessions with events that change every state scope."""
    keys = []
    for app, user, n_events in (("shop", "ann", 3), ("shop", "bob", 2), ("docs", "ann", 4)):
        session = await service.create_session(
            app_name=app, user_id=user, state={"topic": app, "user:lang": "en"}
        )
        for n in range(n_events):
            event = _event(
                "user" if n % 2 == 0 else "agent",
                f"{app} message {n} for {user} ✓",
                {"turn": n, f"app:last_{user}": n, "user:seen": n * 10, "nested": {"n": [n]}},
                n,
            )
            await service.append_event(session, event)
        keys.append((app, user, session.id))
    return keys


async def assert_same_sessions(
    source: BaseSessionService, target: PostgresSessionService, keys: list[tuple[str, str, str]]
) -> None:
    for app, user, sid in keys:
        expected = await source.get_session(app_name=app, user_id=user, session_id=sid)
        actual = await target.get_session(app_name=app, user_id=user, session_id=sid)
        assert actual is not None, (app, user, sid)
        assert actual.state == expected.state
        assert [e.model_dump() for e in actual.events] == [e.model_dump() for e in expected.events]
        assert actual.last_update_time == pytest.approx(expected.last_update_time, abs=1e-3)


@pytest.fixture
def target(pg_url: str, schema_name: str):
    return PostgresSessionService(pg_url, schema=schema_name, cache_bytes=0)


async def test_import_from_an_adk_sqlite_file_is_exact_and_idempotent(
    pg_url: str, schema_name: str, tmp_path: Path, target: PostgresSessionService
) -> None:
    db_path = tmp_path / "sessions.db"
    source = SqliteSessionService(str(db_path))
    keys = await populate(source)

    first = cli(pg_url, schema_name, "import", f"sqlite:///{db_path}")
    assert first.returncode == 0, first.stderr
    assert "source: adk-sqlite" in first.stdout
    assert "copied 3 new sessions and 9 events" in first.stdout
    assert "count check: 3/3 sessions, 9/9 events present" in first.stdout
    await assert_same_sessions(source, target, keys)

    again = cli(pg_url, schema_name, "import", str(db_path))
    assert again.returncode == 0, again.stderr
    assert "copied 0 new sessions and 0 events" in again.stdout

    # The source moves on: only the new events arrive, and the state follows the source.
    app, user, sid = keys[0]
    session = await source.get_session(app_name=app, user_id=user, session_id=sid)
    await source.append_event(session, _event("user", "one more", {"turn": 99}, 9))
    later = cli(pg_url, schema_name, "import", str(db_path))
    assert "copied 0 new sessions and 1 events" in later.stdout, later.stdout
    await assert_same_sessions(source, target, keys)
    # The imported session is a normal adk-postgres session: appending works.
    copied = await target.get_session(app_name=app, user_id=user, session_id=sid)
    await target.append_event(copied, _event("user", "after import", {"turn": 100}, 10))
    await target.close()


async def test_import_from_database_session_service_on_sqlite(
    pg_url: str, schema_name: str, tmp_path: Path, target: PostgresSessionService
) -> None:
    db_path = tmp_path / "adk.db"
    source = DatabaseSessionService(f"sqlite+aiosqlite:///{db_path}")
    keys = await populate(source)
    result = cli(pg_url, schema_name, "import", f"sqlite:///{db_path}", "--app", "shop")
    assert result.returncode == 0, result.stderr
    assert "source: adk-database (v1)" in result.stdout
    assert "copied 2 new sessions and 5 events" in result.stdout
    await assert_same_sessions(source, target, [k for k in keys if k[0] == "shop"])
    assert await target.get_session(app_name="docs", user_id="ann", session_id=keys[2][2]) is None
    await source.close()
    await target.close()


async def test_import_from_a_v0_pickle_schema(
    pg_url: str, schema_name: str, tmp_path: Path, target: PostgresSessionService
) -> None:
    from google.adk.sessions.schemas.v0 import Base as BaseV0
    from sqlalchemy import create_engine

    db_path = tmp_path / "v0.db"
    engine = create_engine(f"sqlite:///{db_path}")
    BaseV0.metadata.create_all(engine)  # the old layout: ADK keeps writing v0 into it
    engine.dispose()
    source = DatabaseSessionService(f"sqlite+aiosqlite:///{db_path}")
    keys = await populate(source)
    result = cli(pg_url, schema_name, "import", str(db_path))
    assert result.returncode == 0, result.stderr
    assert "source: adk-database (v0)" in result.stdout
    await assert_same_sessions(source, target, keys)
    await source.close()
    await target.close()


async def test_import_from_database_session_service_on_postgresql(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, target: PostgresSessionService
) -> None:
    name = f"adk_src_{uuid.uuid4().hex[:8]}"
    await pg_admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(pg_url)
    user = parts.username or "postgres"
    netloc = f"{user}:{PASSWORD}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    source_url = urlunsplit((parts.scheme, netloc, f"/{name}", parts.query, ""))
    source = DatabaseSessionService(source_url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        keys = await populate(source)
        dry = cli(pg_url, schema_name, "import", source_url, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "would copy 3 new sessions and 9 events" in dry.stdout
        assert await target.list_sessions(app_name="shop") is not None
        assert (await target.list_sessions(app_name="shop")).sessions == []

        result = cli(pg_url, schema_name, "import", source_url)
        assert result.returncode == 0, result.stderr
        assert "count check: 3/3 sessions, 9/9 events present" in result.stdout
        assert PASSWORD not in result.stdout + result.stderr + dry.stdout + dry.stderr
        assert "***" in result.stdout
        await assert_same_sessions(source, target, keys)
    finally:
        await source.close()
        await target.close()
        await pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_import_errors_are_one_line(pg_url: str, schema_name: str, tmp_path: Path) -> None:
    missing = cli(pg_url, schema_name, "import", str(tmp_path / "nope.db"))
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error: ConfigurationError: source database not found")
    not_adk = tmp_path / "other.db"
    import sqlite3

    with sqlite3.connect(not_adk) as conn:
        conn.execute("CREATE TABLE t (x)")
    wrong = cli(pg_url, schema_name, "import", str(not_adk))
    assert wrong.returncode == 1 and "not an ADK session database" in wrong.stderr
    assert "Traceback" not in missing.stderr + wrong.stderr


async def test_export_and_restore_round_trip(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, tmp_path: Path
) -> None:
    source = PostgresSessionService(pg_url, schema=schema_name, cache_bytes=0)
    keys = await populate(source)
    dump = tmp_path / "backup.jsonl"
    exported = cli(pg_url, schema_name, "export", "-o", str(dump))
    assert exported.returncode == 0, exported.stderr
    assert "exported 3 sessions, 9 events of 2 app(s)" in exported.stderr
    lines = dump.read_bytes().splitlines()
    assert b'"format":"adk-postgres-export"' in lines[0]
    session_lines = [i for i, line in enumerate(lines) if line.startswith(b'{"type":"session"')]
    assert len(session_lines) == 3

    restored_schema = f"r_{uuid.uuid4().hex[:10]}"
    target = PostgresSessionService(pg_url, schema=restored_schema, cache_bytes=0)
    try:
        first = cli(pg_url, restored_schema, "restore", str(dump))
        assert first.returncode == 0, first.stderr
        assert "restored 3 sessions (3 new), 9 events (9 new)" in first.stdout
        await assert_same_sessions(source, target, keys)
        twice = cli(pg_url, restored_schema, "restore", str(dump))
        assert "restored 3 sessions (0 new), 9 events (0 new)" in twice.stdout

        only_docs = cli(pg_url, schema_name, "export", "--app", "docs")
        assert only_docs.returncode == 0
        docs_lines = only_docs.stdout.splitlines()
        assert sum(line.startswith('{"type":"session"') for line in docs_lines) == 1
        assert '"shop"' not in only_docs.stdout

        # A bad second session: the first session is restored, the bad one is not, and the
        # error names its line.
        bad = tmp_path / "bad.jsonl"
        second = session_lines[1]
        broken = lines[second].replace(b'"events":[', b'"events":[{"author": 5},', 1)
        bad_lines = [*lines[:second], broken, *lines[second + 1 :]]
        bad.write_bytes(b"\n".join(bad_lines) + b"\n")
        fresh_schema = f"r_{uuid.uuid4().hex[:10]}"
        failed = cli(pg_url, fresh_schema, "restore", str(bad))
        assert failed.returncode == 1
        assert f"line {second + 1}" in failed.stderr and "Traceback" not in failed.stderr
        counts = await pg_admin.fetchval(f'SELECT count(*) FROM "{fresh_schema}".sessions')
        assert counts == 1
        await pg_admin.execute(f'DROP SCHEMA "{fresh_schema}" CASCADE')

        wrong = tmp_path / "wrong.jsonl"
        wrong.write_bytes(lines[0].replace(b'"version":2', b'"version":99') + b"\n")
        refused = cli(pg_url, restored_schema, "restore", str(wrong))
        assert refused.returncode == 1 and "version 99 is not supported" in refused.stderr
    finally:
        await source.close()
        await target.close()
        await pg_admin.execute(f'DROP SCHEMA IF EXISTS "{restored_schema}" CASCADE')
