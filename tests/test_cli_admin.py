"""``adk-postgres migrate|doctor|stats|prune`` through the real console entry, against a real
PostgreSQL, with data written by the real services."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from click.testing import CliRunner
from google.adk.events import Event
from google.adk.memory.memory_entry import MemoryEntry
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from adk_postgres import (
    SCHEMA_VERSION,
    Database,
    PostgresArtifactService,
    PostgresMemoryService,
    PostgresSessionService,
)
from adk_postgres.cli import run

ALL_TABLES = {
    "adk_internal_metadata",
    "adk_postgres_migrations",
    "sessions",
    "conversations",
    "events",
    "app_states",
    "user_states",
    "artifact_files",
    "artifact_versions",
    "artifact_contents",
    "artifact_chunks",
    "artifact_fs_garbage",
    "memory_entries",
    "memory_tombstones",
    "tenants",
    "session_runs",
    "a2a_tasks",
    "a2a_push_configs",
    "a2a_task_feedback",
    "agents",
    "agent_versions",
}


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> dict:
        return json.loads(self.stdout)


def _cli(args: list[str]) -> CliResult:
    runner = CliRunner()
    with runner.isolation() as streams:
        out, err = streams[0], streams[1]
        try:
            run(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(code, out.getvalue().decode(), err.getvalue().decode())


async def cli(*args: str) -> CliResult:
    """The console entry in a thread (each command runs its own event loop)."""
    return await asyncio.to_thread(_cli, list(args))


@pytest.fixture
def base(pg_url: str, schema_name: str) -> list[str]:
    return ["-d", pg_url, "--schema", schema_name]


@pytest.fixture
async def services(
    pg_url: str, schema_name: str
) -> AsyncIterator[tuple[PostgresSessionService, PostgresArtifactService, PostgresMemoryService]]:
    database = Database(pg_url, schema=schema_name)
    yield (
        PostgresSessionService(database=database),
        PostgresArtifactService(database=database),
        PostgresMemoryService(database=database),
    )
    await database.close()


async def add_events(
    sessions: PostgresSessionService, session, count: int, start: float = 1_700_000_000.0
) -> None:
    for i in range(count):
        await sessions.append_event(
            session,
            Event(
                author="user",
                invocation_id=f"inv-{i}",
                timestamp=start + i,
                content=types.Content(role="user", parts=[types.Part(text=f"message {i}")]),
            ),
        )


async def count_rows(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
    counts = {}
    for table in sorted(ALL_TABLES):
        counts[table] = await conn.fetchval(f'SELECT count(*) FROM "{schema}".{table}')
    return counts


def with_url_parts(url: str, *, password: str, dbname: str | None = None) -> str:
    """``url`` with a password (and optionally another database)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.rsplit("@", 1)[-1]
    path = f"/{dbname}" if dbname else parts.path
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}", path=path))


# --- migrate ---------------------------------------------------------------------------------


async def test_migrate_on_an_empty_schema_then_status(
    base: list[str], schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    status = await cli(*base, "migrate", "--status")
    assert status.exit_code == 0, status.output
    assert status.stdout.count("pending") >= SCHEMA_VERSION
    assert f"version 0 of {SCHEMA_VERSION}" in status.stdout
    # --status changed nothing: not even the schema exists.
    assert not await pg_admin.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema_name
    )

    migrated = await cli(*base, "migrate")
    assert migrated.exit_code == 0, migrated.output
    assert "applied: 1 adk_v1_tables, 2 revision_and_exact_times" in migrated.stdout
    assert f"is at version {SCHEMA_VERSION}" in migrated.stdout

    after = await cli(*base, "migrate", "--status", "--json")
    assert after.exit_code == 0, after.output
    data = after.json()
    assert data["current"] == data["latest"] == SCHEMA_VERSION
    assert data["pending"] == []
    assert [m["version"] for m in data["applied"]] == list(range(1, SCHEMA_VERSION + 1))
    assert all(m["applied_at"] and m["applied_at"].endswith("Z") for m in data["applied"])

    again = await cli(*base, "migrate")
    assert again.exit_code == 0
    assert "applied:" not in again.stdout
    text = await cli(*base, "migrate", "--status")
    assert "up to date" in text.stdout and "pending" not in text.stdout


# --- doctor ----------------------------------------------------------------------------------


async def test_doctor_passes_on_the_test_server(base: list[str], services) -> None:
    assert (await cli(*base, "migrate")).exit_code == 0
    # The memory service installs pg_trgm where it may: the doctor then says where it is.
    await services[2].search_memory(app_name="a", user_id="u", query="x")
    result = await cli(*base, "doctor")
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.stdout
    for name in ("connection", "server", "tls", "pool", "schema", "privileges"):
        assert f"  {name}: " in result.stdout, name

    report = (await cli(*base, "doctor", "--json")).json()
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {
        "connection",
        "server",
        "tls",
        "extension pg_trgm",
        "extension vector",
        "pool",
        "schema",
        "privileges",
    }
    assert all(c["status"] in ("ok", "warn") for c in checks.values())
    assert checks["schema"]["status"] == "ok"
    assert report["round_trip_ms"] > 0
    assert report["server_version"][0].isdigit()
    assert report["migrations"]["current"] == SCHEMA_VERSION
    assert report["pool"]["max_size"] == 10
    assert report["can_create"] is True
    assert {e["name"] for e in report["extensions"]} == {"pg_trgm", "vector"}
    for extension in report["extensions"]:
        # Installed ones say where: extensions are database-wide, outside our schema.
        assert (extension["schema"] is not None) == (extension["installed"] is not None)
        if extension["installed"]:
            line = next(
                x for x in result.stdout.splitlines() if f"extension {extension['name']}" in x
            )
            assert f'in schema "{extension["schema"]}"' in line


async def test_doctor_warns_about_an_unmigrated_schema_and_its_advice_works(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    # The services migrate on first use, so pending migrations are a warning (exit 0) that says
    # so; the advice keeps this invocation's -d and --schema, with the password left out.
    password = "pw-" + uuid.uuid4().hex[:8]
    url = with_url_parts(pg_url, password=password)
    result = await cli("-d", url, "--schema", schema_name, "doctor")
    assert result.exit_code == 0, result.output
    assert password not in result.output
    warned = [line for line in result.stdout.splitlines() if line.startswith("WARN  schema")]
    assert len(warned) == 1 and "first use (this role may)" in warned[0], result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    [advice] = [line for line in result.stdout.splitlines() if "`adk-postgres " in line]
    command = shlex.split(advice.split("`")[1])
    assert command[0] == "adk-postgres" and command[-1] == "migrate", command
    assert command[command.index("--schema") + 1] == schema_name
    shown_url = command[command.index("-d") + 1]
    assert shown_url == url.replace(password, "<password>")

    # What the advice says, with the password filled in, migrates exactly that schema.
    run_it = [url if arg == shown_url else arg for arg in command[1:]]
    assert (await cli(*run_it)).exit_code == 0
    assert (
        await pg_admin.fetchval(f'SELECT max(version) FROM "{schema_name}".adk_postgres_migrations')
        == SCHEMA_VERSION
    )
    after = await cli("-d", url, "--schema", schema_name, "doctor")
    assert after.exit_code == 0 and "WARN  schema" not in after.stdout, after.output


async def test_doctor_fails_when_this_role_cannot_apply_pending_migrations(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    role = f"adkpg_nocreate_{uuid.uuid4().hex[:8]}"
    await pg_admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        parts = urlsplit(pg_url)
        as_role = parts._replace(netloc=f"{role}@{parts.netloc.rsplit('@', 1)[-1]}").geturl()
        result = await cli("-d", as_role, "--schema", schema_name, "doctor")
    finally:
        await pg_admin.execute(f"DROP ROLE {role}")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    schema_line = next(line for line in lines if "  schema: " in line)
    assert schema_line.startswith("WARN") and "this role may not apply them" in schema_line
    assert any(line.startswith("FAIL  privileges") for line in lines), result.stdout
    assert "as the schema's owner" in result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_doctor_on_a_refused_port_via_the_console_script(tmp_path: Path) -> None:
    password = "s3cret-" + uuid.uuid4().hex[:8]
    url = f"postgresql://someone:{password}@127.0.0.1:{_free_port()}/postgres"
    script = Path(sys.executable).parent / "adk-postgres"
    env = {k: v for k, v in os.environ.items() if "DATABASE_URL" not in k}
    proc = subprocess.run(
        [str(script), "-d", url, "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    assert "Traceback" not in output
    assert password not in output
    reason = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert len(reason) == 1 and "connection" in reason[0]
    assert "refused" in reason[0].lower()
    assert "is PostgreSQL running" in proc.stdout


async def test_doctor_on_a_missing_database_advises_createdb(pg_url: str) -> None:
    password = "pw-" + uuid.uuid4().hex[:8]
    missing = f"adkpg_missing_{uuid.uuid4().hex[:8]}"
    url = with_url_parts(pg_url, password=password, dbname=missing)
    result = await cli("-d", url, "doctor")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert password not in result.output
    fail_lines = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fail_lines) == 1 and "does not exist" in fail_lines[0]
    assert "createdb" in result.stdout and missing in result.stdout

    as_json = (await cli("-d", url, "doctor", "--json")).json()
    assert as_json["checks"][0]["status"] == "fail"
    assert password not in json.dumps(as_json)


# --- stats -----------------------------------------------------------------------------------


async def test_stats_count_what_the_services_stored(base: list[str], services) -> None:
    sessions, artifacts, memory = services
    s1 = await sessions.create_session(app_name="shop", user_id="u1", session_id="s1")
    await add_events(sessions, s1, 3)
    await sessions.create_session(app_name="shop", user_id="u1", session_id="s2")
    s3 = await sessions.create_session(app_name="shop", user_id="u2", session_id="s3")
    await add_events(sessions, s3, 2)
    s4 = await sessions.create_session(
        app_name="blog", user_id="u3", session_id="s4", state={"user:theme": "dark"}
    )
    await add_events(sessions, s4, 1)
    for text in ("hello", "world!"):
        await artifacts.save_artifact(
            app_name="shop",
            user_id="u1",
            session_id="s1",
            filename="a.txt",
            artifact=types.Part(text=text),
        )
    # Same bytes as a.txt v0: stored once, counted once.
    await artifacts.save_artifact(
        app_name="shop",
        user_id="u1",
        filename="user:profile.txt",
        artifact=types.Part(text="hello"),
    )
    await memory.add_memory(
        app_name="blog",
        user_id="u3",
        memories=[
            MemoryEntry(id=f"m{i}", content=types.Content(parts=[types.Part(text=f"fact {i}")]))
            for i in range(2)
        ],
    )

    result = await cli(*base, "stats", "--json")
    assert result.exit_code == 0, result.output
    data = result.json()
    apps = {a["app_name"]: a for a in data["apps"]}
    assert apps == {
        "blog": {
            "app_name": "blog",
            "users": 1,
            "sessions": 1,
            "events": 1,
            "artifact_files": 0,
            "artifact_versions": 0,
            "artifact_bytes": 0,
            "memory_entries": 2,
        },
        "shop": {
            "app_name": "shop",
            "users": 2,
            "sessions": 3,
            "events": 5,
            "artifact_files": 2,
            "artifact_versions": 3,
            "artifact_bytes": 11,
            "memory_entries": 0,
        },
    }
    assert data["totals"] == {
        "app_name": "*",
        "users": 3,
        "sessions": 4,
        "events": 6,
        "artifact_files": 2,
        "artifact_versions": 3,
        "artifact_bytes": 11,
        "memory_entries": 2,
    }
    assert (data["stored_contents"], data["stored_content_bytes"]) == (2, 11)
    tables = {t["name"]: t for t in data["tables"]}
    assert set(tables) == ALL_TABLES
    assert tables["events"]["bytes"] > 0

    blog = (await cli(*base, "stats", "--app", "blog", "--json")).json()
    assert [a["app_name"] for a in blog["apps"]] == ["blog"]
    assert blog["totals"]["users"] == 1 and blog["totals"]["events"] == 1

    text = await cli(*base, "stats")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    total = next(line for line in lines if line.startswith("total"))
    assert total.split()[:6] == ["total", "3", "4", "6", "2", "3"]
    assert any(line.startswith("artifact_chunks") for line in lines)


async def test_stats_rows_are_unknown_until_analyzed_never_a_false_zero(
    base: list[str], services, schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    sessions, _, _ = services
    session = await sessions.create_session(app_name="a", user_id="u")
    await add_events(sessions, session, 4)

    def events_row(stdout: str) -> list[str]:
        return next(line for line in stdout.splitlines() if line.startswith("events ")).split()

    before = await cli(*base, "stats")
    assert events_row(before.stdout)[-1] == "unknown", before.stdout
    as_json = {t["name"]: t for t in (await cli(*base, "stats", "--json")).json()["tables"]}
    assert as_json["events"]["rows_estimate"] is None

    await pg_admin.execute(f'ANALYZE "{schema_name}".events')
    after = await cli(*base, "stats")
    assert events_row(after.stdout)[-1] == "4", after.stdout


async def test_stats_and_prune_on_an_unmigrated_schema_fail_in_one_line(
    base: list[str],
) -> None:
    for args in (["stats"], ["prune", "--keep-events", "1"]):
        result = await cli(*base, *args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert result.stdout == ""
        assert result.stderr.strip().count("\n") == 0
        assert "SchemaError" in result.stderr and "adk-postgres migrate" in result.stderr


# --- prune -----------------------------------------------------------------------------------


async def test_prune_needs_a_criterion_and_valid_values(base: list[str]) -> None:
    nothing = await cli(*base, "prune", "--dry-run")
    assert nothing.exit_code == 2
    assert "nothing to prune" in nothing.stderr
    for bad in (["--idle-for", "10x"], ["--idle-for", "0d"], ["--keep-events", "-1"]):
        result = await cli(*base, "prune", *bad)
        assert result.exit_code == 2, (bad, result.output)
        assert "Traceback" not in result.output


async def _make_idle(conn: asyncpg.Connection, schema: str, *keys: tuple[str, str, str]) -> None:
    for app, user, sid in keys:
        await conn.execute(
            f'UPDATE "{schema}".sessions'
            " SET update_time = (now() AT TIME ZONE 'UTC') - interval '40 days'"
            " WHERE app_name = $1 AND user_id = $2 AND id = $3",
            app,
            user,
            sid,
        )


async def test_prune_dry_run_changes_nothing_and_the_real_run_deletes_exactly_that(
    base: list[str], services, schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    sessions, artifacts, _ = services
    now = 1_900_000_000.0  # event times in the future of the idle cutoff
    old1 = await sessions.create_session(app_name="a", user_id="u", session_id="old1")
    await add_events(sessions, old1, 2, start=now)
    await sessions.create_session(app_name="a", user_id="u", session_id="old2")
    fresh = await sessions.create_session(app_name="a", user_id="u", session_id="fresh")
    await add_events(sessions, fresh, 5, start=now)
    old3 = await sessions.create_session(app_name="b", user_id="v", session_id="old3")
    await add_events(sessions, old3, 1, start=now)
    await _make_idle(
        pg_admin, schema_name, ("a", "u", "old1"), ("a", "u", "old2"), ("b", "v", "old3")
    )

    async def save(session_id: str | None, filename: str, text: str) -> None:
        await artifacts.save_artifact(
            app_name="a",
            user_id="u",
            session_id=session_id,
            filename=filename,
            artifact=types.Part(text=text),
        )

    # A session that never existed: 2 versions, one with unique bytes, one shared with `fresh`.
    await save("gone", "report.txt", "only-in-gone")
    await save("gone", "report.txt", "shared-bytes")
    await save("fresh", "live.txt", "shared-bytes")
    await save(None, "user:keep.txt", "user-scoped")
    await save("old1", "old.txt", "only-in-old1")  # orphaned once old1 is pruned

    flags = ["--idle-for", "30d", "--keep-events", "3", "--orphaned-artifacts", "--json"]
    before = await count_rows(pg_admin, schema_name)
    dry = await cli(*base, "prune", "--dry-run", *flags)
    assert dry.exit_code == 0, dry.output
    assert await count_rows(pg_admin, schema_name) == before
    planned = dry.json()
    assert planned["dry_run"] is True
    assert planned["apps"] == [
        {
            "app_name": "a",
            "sessions": 2,
            "session_events": 2,
            "events": 2,
            "artifact_files": 2,
            "artifact_versions": 3,
            "archived_sessions": 0,
            "archived_events": 0,
        },
        {
            "app_name": "b",
            "sessions": 1,
            "session_events": 1,
            "events": 0,
            "artifact_files": 0,
            "artifact_versions": 0,
            "archived_sessions": 0,
            "archived_events": 0,
        },
    ]
    unique = len("only-in-gone") + len("only-in-old1")
    assert (planned["contents"], planned["content_bytes"]) == (2, unique)

    text_dry = await cli(*base, "prune", "--dry-run", *flags[:-1])
    assert "dry run: nothing was changed" in text_dry.stdout
    assert await count_rows(pg_admin, schema_name) == before

    real = await cli(*base, "prune", "--batch-size", "1", *flags)
    assert real.exit_code == 0, real.output
    done = real.json()
    assert done["dry_run"] is False
    for key in ("apps", "contents", "content_bytes", "cutoff"):
        if key != "cutoff":
            assert done[key] == planned[key], key
    assert done["batches"] > 3  # batch size 1: one transaction per session / artifact

    after = await count_rows(pg_admin, schema_name)
    assert after["sessions"] == before["sessions"] - 3
    assert after["events"] == before["events"] - 2 - 1 - 2
    assert after["artifact_files"] == before["artifact_files"] - 2
    assert after["artifact_versions"] == before["artifact_versions"] - 3
    assert after["artifact_contents"] == before["artifact_contents"] - 2

    cold = PostgresSessionService(database=Database(base[1], schema=schema_name))
    try:
        listed = await cold.list_sessions(app_name="a")
        assert [s.id for s in listed.sessions] == ["fresh"]
        kept = await cold.get_session(app_name="a", user_id="u", session_id="fresh")
        assert [e.invocation_id for e in kept.events] == ["inv-2", "inv-3", "inv-4"]
    finally:
        await cold.close()
    live = await artifacts.load_artifact(
        app_name="a", user_id="u", session_id="fresh", filename="live.txt"
    )
    assert live.text == "shared-bytes"
    user_scoped = await artifacts.load_artifact(app_name="a", user_id="u", filename="user:keep.txt")
    assert user_scoped.text == "user-scoped"
    assert (
        await artifacts.list_versions(
            app_name="a", user_id="u", session_id="gone", filename="report.txt"
        )
        == []
    )

    # Nothing left to do: a second run deletes nothing.
    again = (await cli(*base, "prune", *flags)).json()
    assert again["apps"] == [] and again["contents"] == 0


async def test_keep_events_keeps_exactly_what_num_recent_events_reads(
    base: list[str], services, schema_name: str, pg_url: str
) -> None:
    sessions, _, _ = services
    session = await sessions.create_session(app_name="a", user_id="u", session_id="s")
    # Out-of-order and equal timestamps: the order is (timestamp, id), not insertion order.
    stamps = [5.0, 1.0, 3.0, 3.0, 2.0, 4.0, 4.0, 0.5]
    for i, ts in enumerate(stamps):
        await sessions.append_event(
            session,
            Event(
                id=f"e{i}",
                author="user",
                invocation_id=f"inv-{i}",
                timestamp=1_800_000_000.0 + ts,
            ),
        )
    reader = PostgresSessionService(pg_url, schema=schema_name, cache_bytes=0)
    try:

        async def recent(n: int | None) -> list[str]:
            config = GetSessionConfig(num_recent_events=n) if n is not None else None
            got = await reader.get_session(app_name="a", user_id="u", session_id="s", config=config)
            return [e.id for e in got.events]

        expected = {n: await recent(n) for n in (1, 2, 3, 4)}
        result = await cli(*base, "prune", "--keep-events", "4", "--batch-size", "1")
        assert result.exit_code == 0, result.output
        assert "old events" in result.stdout
        assert await recent(None) == expected[4]
        for n in (1, 2, 3, 4):
            assert await recent(n) == expected[n], n
    finally:
        await reader.close()


async def test_prune_does_not_bump_revision_so_held_sessions_stay_appendable(
    base: list[str], services, schema_name: str, pg_url: str, pg_admin: asyncpg.Connection
) -> None:
    """The documented choice: pruning events keeps `revision`; a process's warm cache keeps
    the pruned events (full reads) until evicted, while num_recent_events <= N agrees."""
    sessions, _, _ = services
    created = await sessions.create_session(app_name="a", user_id="u", session_id="s")
    await add_events(sessions, created, 6)
    held = await sessions.get_session(app_name="a", user_id="u", session_id="s")  # warm cache
    revision_sql = f'SELECT revision FROM "{schema_name}".sessions WHERE id = $1'
    revision = await pg_admin.fetchval(revision_sql, "s")

    result = await cli(*base, "prune", "--keep-events", "2")
    assert result.exit_code == 0, result.output
    assert await pg_admin.fetchval(revision_sql, "s") == revision

    # The agent holding the session appends without a StaleSessionError.
    await add_events(sessions, held, 1, start=1_700_000_100.0)
    assert await pg_admin.fetchval(revision_sql, "s") == revision + 1

    cold = PostgresSessionService(pg_url, schema=schema_name)
    try:
        fresh = await cold.get_session(app_name="a", user_id="u", session_id="s")
        assert [e.invocation_id for e in fresh.events] == ["inv-4", "inv-5", "inv-0"]
        warm = await sessions.get_session(app_name="a", user_id="u", session_id="s")
        assert len(warm.events) == 7  # still holds the pruned events
        for n in (1, 2, 3):
            config = GetSessionConfig(num_recent_events=n)
            a = await cold.get_session(app_name="a", user_id="u", session_id="s", config=config)
            b = await sessions.get_session(app_name="a", user_id="u", session_id="s", config=config)
            assert [e.id for e in a.events] == [e.id for e in b.events], n
    finally:
        await cold.close()


async def test_prune_app_filter_leaves_other_apps_alone(
    base: list[str], services, schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    sessions, _, _ = services
    for app in ("a", "b"):
        s = await sessions.create_session(app_name=app, user_id="u", session_id="s")
        await add_events(sessions, s, 4)
    result = await cli(*base, "prune", "--app", "b", "--keep-events", "1", "--json")
    assert result.exit_code == 0, result.output
    assert [(a["app_name"], a["events"]) for a in result.json()["apps"]] == [("b", 3)]
    counts = dict(
        await pg_admin.fetch(
            f'SELECT app_name, count(*) FROM "{schema_name}".events GROUP BY app_name'
        )
    )
    assert counts == {"a": 4, "b": 1}


async def test_orphaned_contents_and_content_files(
    base: list[str], pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, tmp_path: Path
) -> None:
    content_dir = tmp_path / "contents"
    database = Database(pg_url, schema=schema_name)
    sessions = PostgresSessionService(database=database)
    files = PostgresArtifactService(database=database, content_dir=content_dir)
    try:
        await sessions.create_session(app_name="a", user_id="u", session_id="keep")
        await sessions.create_session(app_name="a", user_id="u", session_id="drop")
        for sid in ("keep", "drop"):
            await files.save_artifact(
                app_name="a",
                user_id="u",
                session_id=sid,
                filename="f.bin",
                artifact=types.Part.from_bytes(data=sid.encode() * 100, mime_type="x/y"),
            )
        await sessions.delete_session(app_name="a", user_id="u", session_id="drop")
    finally:
        await database.close()
    # A content row no version uses (e.g. left by a TRUNCATE or a restore without triggers).
    stray = hashlib.sha256(b"stray").digest()
    await pg_admin.execute(
        f'INSERT INTO "{schema_name}".artifact_contents (sha256, size, storage)'
        " VALUES ($1, 5, 'db')",
        stray,
    )
    await pg_admin.execute(
        f'INSERT INTO "{schema_name}".artifact_chunks VALUES ($1, 0, $2)', stray, b"stray"
    )
    stored = sorted(p for p in content_dir.rglob("*") if p.is_file())
    assert len(stored) == 2

    # With --app, contents (shared between apps) are not swept.
    scoped = (
        await cli(*base, "prune", "--orphaned-artifacts", "--app", "a", "--dry-run", "--json")
    ).json()
    assert scoped["contents"] == 1 and scoped["files_queued"] == 1
    unscoped = (await cli(*base, "prune", "--orphaned-artifacts", "--dry-run", "--json")).json()
    assert (unscoped["contents"], unscoped["content_bytes"]) == (2, 5 + 400)

    # Without --content-dir the file stays queued, and the output says how to unlink it.
    queued = await cli(*base, "prune", "--orphaned-artifacts")
    assert queued.exit_code == 0, queued.output
    assert "1 queued in artifact_fs_garbage (pass --content-dir" in queued.stdout
    assert len([p for p in content_dir.rglob("*") if p.is_file()]) == 2
    assert not await pg_admin.fetchval(
        f'SELECT EXISTS (SELECT 1 FROM "{schema_name}".artifact_contents WHERE sha256 = $1)',
        stray,
    )

    unlinked = await cli(
        *base, "prune", "--orphaned-artifacts", "--content-dir", str(content_dir), "--json"
    )
    assert unlinked.exit_code == 0, unlinked.output
    assert (unlinked.json()["files"], unlinked.json()["files_queued"]) == (1, 0)
    left = [p for p in content_dir.rglob("*") if p.is_file()]
    assert left == [p for p in stored if p.name == hashlib.sha256(b"keep" * 100).hexdigest()]


async def test_prune_while_agents_append_neither_blocks_nor_breaks_them(
    base: list[str], services, schema_name: str, pg_url: str
) -> None:
    """Appenders keep going during a batched prune: none fails, none loses an event newer
    than what the prune keeps."""
    sessions, _, _ = services
    held = []
    for i in range(6):
        s = await sessions.create_session(app_name="a", user_id="u", session_id=f"s{i}")
        await add_events(sessions, s, 10)
        held.append(s)
    stop = asyncio.Event()
    appended: dict[str, list[str]] = {s.id: [] for s in held}

    async def agent(session) -> None:
        n = 0
        while not stop.is_set():
            event = Event(author="agent", invocation_id=f"live-{n}", timestamp=1_750_000_000.0 + n)
            await sessions.append_event(session, event)
            appended[session.id].append(event.id)
            n += 1
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(agent(s)) for s in held]
    await asyncio.sleep(0.2)
    result = await cli(*base, "prune", "--keep-events", "5", "--batch-size", "2")
    stop.set()
    await asyncio.gather(*tasks)  # any StaleSessionError or timeout would surface here
    assert result.exit_code == 0, result.output

    cold = PostgresSessionService(pg_url, schema=schema_name, cache_bytes=0)
    try:
        for s in held:
            stored = await cold.get_session(app_name="a", user_id="u", session_id=s.id)
            ids = [e.id for e in stored.events]
            assert ids[-1] == appended[s.id][-1]
            # Whatever was appended after the prune passed this session is all there, in order.
            tail = appended[s.id][-min(5, len(appended[s.id])) :]
            assert ids[-len(tail) :] == tail
    finally:
        await cold.close()


async def test_prune_help_documents_the_revision_choice() -> None:
    result = await cli("prune", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "does NOT change the session's revision" in text
    assert "warm cache" in text
