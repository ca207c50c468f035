"""`adk-postgres export` / `restore` as a complete backup: sessions, app/user state (empty ones
too), artifacts (versions, metadata, multi-chunk content), memory entries with embeddings and
tenancy grants, against a real PostgreSQL, through the real CLI where it matters."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.adk.memory.memory_entry import MemoryEntry
from google.genai import types

from adk_postgres import (
    Database,
    PostgresArtifactService,
    PostgresMemoryService,
    PostgresSessionService,
)
from adk_postgres.conversations import PostgresConversations
from adk_postgres.errors import ConfigurationError, DataError
from adk_postgres.tenancy import grant_tenant, list_tenants
from adk_postgres.transfer import export_backup, restore_backup

BIG = bytes(range(256)) * (10 * 1024 + 7)  # 2.5 MiB: three chunks


def embed(texts: list[str]) -> list[list[float]]:
    """A deterministic embedding: enough to check vectors survive exactly."""
    return [[len(t) / 7.0, sum(map(ord, t)) % 97 / 3.0, 0.1] for t in texts]


def cli(pg_url: str, schema: str, *args: str, stdin: bytes | None = None):
    return subprocess.run(
        [sys.executable, "-c", "from adk_postgres.cli import run; run()", "-d", pg_url,
         "--schema", schema, *args],
        capture_output=True, input=stdin, timeout=300,
    )  # fmt: skip


@pytest.fixture
async def other_schema(pg_direct_url: str) -> AsyncIterator[str]:
    name = f"r_{uuid.uuid4().hex[:10]}"
    yield name
    conn = await asyncpg.connect(pg_direct_url)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    await conn.close()


@pytest.fixture
async def databases(
    pg_url: str, schema_name: str, other_schema: str
) -> AsyncIterator[tuple[Database, Database]]:
    """A source schema to fill and export, and an empty target schema to restore into."""
    source = Database(pg_url, schema=schema_name)
    target = Database(pg_url, schema=other_schema)
    yield source, target
    await source.close()
    await target.close()


@pytest.fixture
async def tenant_role(pg_admin: asyncpg.Connection) -> AsyncIterator[str]:
    role = f"adkpg_bk_{uuid.uuid4().hex[:8]}"
    await pg_admin.execute(f"CREATE ROLE {role}")
    yield role
    await pg_admin.execute(f"DROP OWNED BY {role}")
    await pg_admin.execute(f"DROP ROLE {role}")


async def has_vector(pg_admin: asyncpg.Connection) -> bool:
    return bool(
        await pg_admin.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    )


async def fill(db: Database, vector: bool, tenant_role: str) -> str:
    """Everything a backup holds; returns the session id."""
    sessions = PostgresSessionService(database=db)
    artifacts = PostgresArtifactService(database=db)
    memory = PostgresMemoryService(database=db, embed=embed if vector else None)
    # Empty app and user state: rows that must come back as {} (not as "no row").
    empty = await sessions.create_session(app_name="quiet", user_id="nobody", state={})
    await sessions.append_event(
        empty,
        Event(author="user", invocation_id="q", actions=EventActions(state_delta={})),
    )
    session = await sessions.create_session(
        app_name="shop", user_id="ann", state={"topic": "ü 🚀", "app:tax": 0.2, "user:lang": "en"}
    )
    for i in range(3):
        await sessions.append_event(
            session,
            Event(
                author="user",
                invocation_id=f"i{i}",
                content=types.Content(role="user", parts=[types.Part(text=f"door code {i}")]),
                actions=EventActions(state_delta={"n": i, "user:seen": i}),
            ),
        )
    for data in (BIG, b"small"):
        await artifacts.save_artifact(
            app_name="shop", user_id="ann", session_id=session.id, filename="blob.bin",
            artifact=types.Part.from_bytes(data=data, mime_type="application/octet-stream"),
            custom_metadata={"source": "test", "n": len(data)},
        )  # fmt: skip
    await artifacts.save_artifact(
        app_name="shop", user_id="ann", filename="user:notes.txt",
        artifact=types.Part(text="remember the milk"),
    )  # fmt: skip
    await memory.add_session_to_memory(
        await sessions.get_session(app_name="shop", user_id="ann", session_id=session.id)
    )
    await memory.add_memory(
        app_name="shop", user_id="ann",
        memories=[MemoryEntry(id="fact", content=types.Content(parts=[types.Part(text="4411")]))],
    )  # fmt: skip
    conversations = PostgresConversations(database=db)
    await conversations.set_title("shop", "ann", session.id, "Door codes 🚪")
    await conversations.archive("quiet", "nobody", empty.id)
    await grant_tenant(db, tenant_role, "shop")
    return session.id


async def export_bytes(db: Database, **options) -> bytes:
    out = io.BytesIO()
    await export_backup(db, out, **options)
    return out.getvalue()


def body(export: bytes) -> list[bytes]:
    """Everything but the header (which holds the export time)."""
    return export.splitlines()[1:]


def tables_in(export: bytes) -> set[str]:
    return {
        line.split(b'"table":"', 1)[1].split(b'"', 1)[0].decode()
        for line in body(export)
        if line.startswith(b'{"type":"row"')
    }


async def test_export_restore_export_is_byte_identical(
    pg_url: str, schema_name: str, other_schema: str, pg_admin: asyncpg.Connection,
    tenant_role: str,
    databases: tuple[Database, Database],
) -> None:  # fmt: skip
    vector = await has_vector(pg_admin)
    source, target = databases
    session_id = await fill(source, vector, tenant_role)
    first = await export_bytes(source)
    expected = {"app_states", "user_states", "artifact_contents", "artifact_chunks",
                "artifact_files", "artifact_versions", "memory_entries", "tenants",
                "conversations"}  # fmt: skip
    assert tables_in(first) == expected
    assert sum(line.startswith(b'{"type":"session"') for line in body(first)) == 2

    report = await restore_backup(target, first.splitlines())
    assert report.sessions_created == 2
    assert report.rows_added == report.rows  # every row was new
    assert report.rows["artifact_chunks"] >= 4  # BIG alone is three
    second = await export_bytes(target)
    assert body(second) == body(first)

    # What was restored works through the services, not just as rows.
    artifacts = PostgresArtifactService(database=target)
    loaded = await artifacts.load_artifact(
        app_name="shop", user_id="ann", session_id=session_id, filename="blob.bin", version=0
    )
    assert loaded is not None and loaded.inline_data.data == BIG
    versions = await artifacts.list_versions(
        app_name="shop", user_id="ann", session_id=session_id, filename="blob.bin"
    )
    assert versions == [0, 1]
    state = await pg_admin.fetchval(
        f"SELECT state::text FROM \"{other_schema}\".app_states WHERE app_name = 'quiet'"
    )
    assert state == "{}"
    memory = PostgresMemoryService(database=target, embed=embed if vector else None)
    found = await memory.search_memory(app_name="shop", user_id="ann", query="4411")
    assert found.memories
    if vector:
        same = await pg_admin.fetchval(
            f"SELECT bool_and(a.embedding::text = b.embedding::text) "
            f'FROM "{schema_name}".memory_entries a '
            f'JOIN "{other_schema}".memory_entries b USING (app_name, user_id, memory_id)'
        )
        assert same is True
    assert [(g.role, g.app_name) for g in await list_tenants(target)] == [(tenant_role, "shop")]
    conversations = PostgresConversations(database=target)
    listed = (await conversations.list_conversations("shop", "ann")).conversations
    assert [(c.session_id, c.title) for c in listed] == [(session_id, "Door codes 🚪")]
    assert not (await conversations.list_conversations("quiet", "nobody")).conversations
    assert (await conversations.list_conversations("quiet", "nobody", archived=True)).conversations


async def test_restore_twice_changes_nothing_and_the_target_wins(
    pg_url: str, schema_name: str, other_schema: str, pg_admin: asyncpg.Connection,
    tenant_role: str,
    databases: tuple[Database, Database],
) -> None:  # fmt: skip
    source, target = databases
    session_id = await fill(source, False, tenant_role)
    dump = await export_bytes(source)
    # The target already has version 0 of the same file, with other bytes, and its own
    # value for an app state key.
    artifacts = PostgresArtifactService(database=target)
    await artifacts.save_artifact(
        app_name="shop", user_id="ann", session_id=session_id, filename="blob.bin",
        artifact=types.Part.from_bytes(data=b"theirs", mime_type="text/plain"),
    )  # fmt: skip
    await PostgresSessionService(database=target).create_session(
        app_name="shop", user_id="zed", state={"app:tax": 0.5}
    )
    first = await restore_backup(target, dump.splitlines())
    assert first.rows_added["artifact_versions"] == 2  # v1 and the user: file's v0
    again = await restore_backup(target, dump.splitlines())
    assert again.sessions_created == 0 and again.events_added == 0
    assert set(again.rows_added.values()) == {0}, again.rows_added

    v0 = await artifacts.load_artifact(
        app_name="shop", user_id="ann", session_id=session_id, filename="blob.bin", version=0
    )
    assert v0.inline_data.data == b"theirs"
    # The version counter passed both sides: the next save is version 2.
    assert (
        await artifacts.save_artifact(
            app_name="shop",
            user_id="ann",
            session_id=session_id,
            filename="blob.bin",
            artifact=types.Part(text="next"),
        )  # fmt: skip
        == 2
    )
    tax = await pg_admin.fetchval(
        f"SELECT state->>'tax' FROM \"{other_schema}\".app_states WHERE app_name = 'shop'"
    )
    assert tax == "0.5"


async def test_only_and_app_select_what_is_exported(
    pg_url: str, schema_name: str, tenant_role: str
) -> None:
    db = Database(pg_url, schema=schema_name)
    try:
        await fill(db, False, tenant_role)
        artifacts_only = await export_bytes(db, only=["artifacts"])
        assert tables_in(artifacts_only) == {
            "artifact_contents", "artifact_chunks", "artifact_files", "artifact_versions"
        }  # fmt: skip
        assert not any(line.startswith(b'{"type":"session"') for line in body(artifacts_only))
        quiet = await export_bytes(db, app_name="quiet")
        assert b'"shop"' not in quiet and b'"quiet"' in quiet
        assert tables_in(quiet) == {"app_states", "user_states", "conversations"}
        with pytest.raises(ConfigurationError, match="unknown backup part"):
            await export_bytes(db, only=["sessions", "passwords"])
    finally:
        await db.close()


async def test_hostile_rows_are_refused_and_write_nothing_of_their_batch(
    pg_url: str, schema_name: str, other_schema: str, pg_admin: asyncpg.Connection,
    tenant_role: str,
    databases: tuple[Database, Database],
) -> None:  # fmt: skip
    source, target = databases
    await fill(source, False, tenant_role)
    lines = (await export_bytes(source, only=["artifacts"])).splitlines()
    header, rows = lines[0], lines[1:]

    foreign = b'{"type":"row","table":"pg_authid","row":{"rolname":"x","rolsuper":true}}'
    with pytest.raises(DataError, match="line 2: a row needs a table"):
        await restore_backup(target, [header, foreign, *rows])

    # A version row without its content's key: the whole batch of versions is refused.
    versions = [r for r in rows if b'"table":"artifact_versions"' in r]
    broken = versions[0].replace(b'"content_sha256"', b'"not_a_column"')
    others = [r for r in rows if r not in versions]
    with pytest.raises(DataError, match=r"\(artifact_versions\).*nothing of these lines"):
        await restore_backup(target, [header, *others, broken, *versions[1:]])
    count = await pg_admin.fetchval(f'SELECT count(*) FROM "{other_schema}".artifact_versions')
    assert count == 0

    v1 = header.replace(b'"version":2', b'"version":1')
    with pytest.raises(DataError, match="expected a session"):
        await restore_backup(target, [v1, rows[0]])


def test_the_cli_round_trip_and_its_errors(
    pg_url: str, schema_name: str, other_schema: str, tmp_path: Path
) -> None:
    import asyncio

    async def prepare() -> None:
        db = Database(pg_url, schema=schema_name)
        await PostgresArtifactService(database=db).save_artifact(
            app_name="a", user_id="u", filename="user:x.bin",
            artifact=types.Part.from_bytes(data=BIG, mime_type="application/octet-stream"),
        )  # fmt: skip
        await db.close()

    asyncio.run(prepare())
    dump = tmp_path / "backup.jsonl"
    exported = cli(pg_url, schema_name, "export", "-o", str(dump))
    assert exported.returncode == 0, exported.stderr
    assert b"artifact_chunks 3" in exported.stderr
    restored = cli(pg_url, other_schema, "restore", str(dump))
    assert restored.returncode == 0, restored.stderr
    assert b"artifact_versions 1 (1 new)" in restored.stdout
    again = cli(pg_url, other_schema, "export", "--only", "artifacts")
    assert again.returncode == 0
    assert again.stdout.splitlines()[1:] == [
        line for line in dump.read_bytes().splitlines()[1:] if b'"table":"artifact_' in line
    ]

    bad = cli(pg_url, schema_name, "export", "--only", "sessions,secrets", "-o",
              str(tmp_path / "no.jsonl"))  # fmt: skip
    assert bad.returncode == 1 and b"unknown backup part" in bad.stderr
    assert not (tmp_path / "no.jsonl").exists()


async def test_a_version_1_file_still_restores_with_its_empty_states(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    header = b'{"format":"adk-postgres-export","version":1,"schema_version":4,"app_name":null}'
    session = (
        b'{"type":"session","app_name":"old","user_id":"u","id":"s1","last_update_time":1.5,'
        b'"state":{"k":1},"events":[],"app_state":{},"user_state":{}}'
    )
    db = Database(pg_url, schema=schema_name)
    try:
        report = await restore_backup(db, [header, session])
        assert report.sessions_created == 1
        states = await pg_admin.fetch(
            f"SELECT 'app' AS scope, state::text FROM \"{schema_name}\".app_states "
            f"UNION ALL SELECT 'user', state::text FROM \"{schema_name}\".user_states"
        )
        assert sorted(tuple(r) for r in states) == [("app", "{}"), ("user", "{}")]
    finally:
        await db.close()


def test_contents_kept_in_files_are_exported_with_content_dir(
    pg_url: str, schema_name: str, other_schema: str, tmp_path: Path
) -> None:
    import asyncio

    files = tmp_path / "blobs"

    async def save() -> None:
        db = Database(pg_url, schema=schema_name)
        await PostgresArtifactService(database=db, content_dir=files).save_artifact(
            app_name="a", user_id="u", filename="user:big.bin",
            artifact=types.Part.from_bytes(data=BIG, mime_type="application/octet-stream"),
        )  # fmt: skip
        await db.close()

    asyncio.run(save())
    rows_only = cli(pg_url, schema_name, "export", "--only", "artifacts")
    assert rows_only.returncode == 0, rows_only.stderr
    assert b"1 artifact content(s) kept in files were exported as rows only" in rows_only.stderr
    assert b'"table":"artifact_chunks"' not in rows_only.stdout

    dump = tmp_path / "backup.jsonl"
    full = cli(pg_url, schema_name, "export", "--content-dir", str(files), "-o", str(dump))
    assert full.returncode == 0, full.stderr
    assert b"kept in files" not in full.stderr
    assert dump.read_bytes().count(b'"table":"artifact_chunks"') == 3
    assert cli(pg_url, other_schema, "restore", str(dump)).returncode == 0

    async def load() -> bytes | None:
        db = Database(pg_url, schema=other_schema)
        part = await PostgresArtifactService(database=db).load_artifact(
            app_name="a", user_id="u", filename="user:big.bin"
        )
        await db.close()
        return part.inline_data.data if part else None

    assert asyncio.run(load()) == BIG
