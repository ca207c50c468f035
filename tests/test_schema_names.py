"""Schema names, wherever they come from (``schema=`` on Database and the services, ``?schema=``
in an adkpg:// URI, ``--schema`` on the CLI): each either works fully — sessions, artifacts,
memory, ``adk-postgres migrate`` — or is refused with ``ConfigurationError`` before anything is
sent to the server.

The migrations paste the (quoted) name into dollar-quoted function bodies, where quoting does
not protect against a ``$$``: names with ``$`` are refused (see rust/core/src/config.rs).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

import asyncpg
import pytest
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

from adk_postgres import (
    Database,
    PostgresArtifactService,
    PostgresMemoryService,
    PostgresSessionService,
)
from adk_postgres.adk_services import session_service_factory
from adk_postgres.errors import ConfigurationError


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _good_names() -> list[str]:
    t = _tag()
    return [
        f'we"ird_{t}',
        f"semi;colon_{t}",
        f"dash--dash_{t}",
        f"with space {t}",
        f"shop_ü_{t}",
        f"日本_{t}",
        f"MixedCase_{t}",
        f"quote'single_{t}",
        (f"x{t}" + "y" * 63)[:63],  # exactly 63 bytes
        f"{t}" + "ü" * 27 + "z",  # 8 + 54 + 1 = 63 bytes, multibyte
    ]


def _bad_names(pwned: str) -> list[str]:
    t = _tag()
    return [
        "",
        "$",
        f"a$b_{t}",
        f"a$$b_{t}",
        # Would close the function bodies of the migrations and run the rest as the owner.
        f"x$$;CREATE SCHEMA {pwned};--",
        f"pg_{t}",
        (f"x{t}" + "y" * 64)[:64],  # 64 bytes
        f"{t}" + "ü" * 28,  # 8 + 56 = 64 bytes although 36 characters
        f"nul\x00{t}",
    ]


@pytest.fixture
async def cleanup_schemas(pg_url: str) -> AsyncIterator[list[str]]:
    created: list[str] = []
    yield created
    conn = await asyncpg.connect(pg_url)
    try:
        for name in created:
            await conn.execute(f"DROP SCHEMA IF EXISTS {_quoted(name)} CASCADE")
    finally:
        await conn.close()


def _cli(pg_url: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
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
        timeout=120,
    )


def _adkpg_uri(pg_url: str, schema: str) -> str:
    parts = urlsplit(pg_url)
    query = f"{parts.query}&" if parts.query else ""
    return parts._replace(scheme="adkpg", query=f"{query}schema={quote(schema, safe='')}").geturl()


async def _exercise(database: Database) -> None:
    sessions = PostgresSessionService(database=database, cache_bytes=0)
    artifacts = PostgresArtifactService(database=database)
    memory = PostgresMemoryService(database=database)
    session = await sessions.create_session(app_name="app", user_id="u", state={"k": 1})
    event = Event(
        author="user",
        invocation_id="i",
        content=types.Content(role="user", parts=[types.Part(text="the purple giraffe")]),
        actions=EventActions(state_delta={"k": 2}),
    )
    await sessions.append_event(session, event)
    stored = await sessions.get_session(app_name="app", user_id="u", session_id=session.id)
    assert stored is not None and stored.state["k"] == 2 and len(stored.events) == 1
    data = b"bytes \x00\xff" * 1000
    version = await artifacts.save_artifact(
        app_name="app",
        user_id="u",
        session_id=session.id,
        filename="f.bin",
        artifact=types.Part.from_bytes(data=data, mime_type="application/octet-stream"),
    )
    assert version == 0
    loaded = await artifacts.load_artifact(
        app_name="app", user_id="u", session_id=session.id, filename="f.bin"
    )
    assert loaded is not None and loaded.inline_data is not None
    assert loaded.inline_data.data == data
    await memory.add_session_to_memory(stored)
    found = await memory.search_memory(app_name="app", user_id="u", query="purple giraffe")
    assert len(found.memories) == 1


async def test_unusual_but_safe_names_work_everywhere(
    pg_url: str, pg_admin: asyncpg.Connection, cleanup_schemas: list[str]
) -> None:
    for name in _good_names():
        cleanup_schemas.append(name)
        # The CLI creates the schema...
        migrated = _cli(pg_url, name, "migrate")
        assert migrated.returncode == 0, (name, migrated.stderr)
        assert (
            await pg_admin.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", name)
            == 1
        ), name
        # ...and the services use it, given schema= ...
        async with Database(pg_url, schema=name) as database:
            await _exercise(database)
        # ... or ?schema= in an adkpg:// URI.
        via_uri = session_service_factory(_adkpg_uri(pg_url, name))
        try:
            s = await via_uri.create_session(app_name="uri", user_id="u")
            assert await via_uri.get_session(app_name="uri", user_id="u", session_id=s.id)
        finally:
            await via_uri.close()
        tables = await pg_admin.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = ANY($2)",
            name,
            ["sessions", "events", "artifact_versions", "memory_entries", "tenants"],
        )
        assert tables == 5, name
        # The second migrate finds the schema current.
        again = _cli(pg_url, name, "migrate")
        assert again.returncode == 0, (name, again.stderr)


async def test_unsafe_or_truncated_names_are_refused_before_connecting(
    pg_url: str, pg_admin: asyncpg.Connection
) -> None:
    pwned = f"adkpg_pwned_{_tag()}"

    async def schemas() -> set[str]:
        rows = await pg_admin.fetch("SELECT nspname FROM pg_namespace")
        return {r["nspname"] for r in rows}

    before = await schemas()
    for name in _bad_names(pwned):
        with pytest.raises(ConfigurationError, match="schema"):
            Database(pg_url, schema=name)
        with pytest.raises(ConfigurationError, match="schema"):
            PostgresSessionService(pg_url, schema=name)
        with pytest.raises(ConfigurationError, match="schema"):
            PostgresArtifactService(pg_url, schema=name)
        with pytest.raises(ConfigurationError, match="schema"):
            PostgresMemoryService(pg_url, schema=name)
        # Also with no URL (the embedded server): refused before it is started.
        with pytest.raises(ConfigurationError, match="schema"):
            Database(None, schema=name)
        if "\x00" not in name:
            with pytest.raises(ConfigurationError, match="schema"):
                session_service_factory(_adkpg_uri(pg_url, name))
            refused = _cli(pg_url, name, "migrate")
            assert refused.returncode != 0, name
            assert "schema name" in refused.stderr, (name, refused.stderr)
            assert "Traceback" not in refused.stderr
    after = await schemas()
    # Nothing was created: not the name, not its truncation, not what an injection asked for.
    new = {s for s in after - before if not s.startswith(("t_", "pg_temp", "pg_toast_temp"))}
    assert new == set(), new
    assert pwned not in after
    for name in _bad_names(pwned):
        assert name not in after
        assert name.encode()[:63].decode("utf-8", "ignore") not in after


async def test_an_explicit_empty_schema_is_not_the_default(pg_url: str) -> None:
    # Before: `?schema=` and `--schema ""` silently meant "public".
    with pytest.raises(ConfigurationError, match="must not be empty"):
        session_service_factory(_adkpg_uri(pg_url, ""))
    refused = _cli(pg_url, "", "migrate")
    assert refused.returncode != 0 and "must not be empty" in refused.stderr
