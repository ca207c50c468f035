"""The documented role split: an owner role migrates (DDL); a runtime role with only
USAGE on the schema and DML on its tables runs every service operation, and cannot run DDL."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

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
from adk_postgres.errors import InsufficientPrivilegeError

RUNTIME_GRANTS = """
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
"""


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{role}@{host}").geturl()


@pytest.fixture
async def runtime_role(pg_admin: asyncpg.Connection) -> str:
    role = f"adkpg_rt_{uuid.uuid4().hex[:8]}"
    await pg_admin.execute(f"CREATE ROLE {role} LOGIN")
    yield role
    await pg_admin.execute(f"DROP OWNED BY {role}")
    await pg_admin.execute(f"DROP ROLE {role}")


async def test_runtime_role_runs_every_operation_but_no_ddl(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, runtime_role: str
) -> None:
    # 1. The owner creates and migrates everything (sessions, artifacts, memory).
    owner_db = Database(pg_url, schema=schema_name)
    await PostgresSessionService(database=owner_db).list_sessions(app_name="a")
    await PostgresArtifactService(database=owner_db).list_artifact_keys(
        app_name="a", user_id="u", session_id="s"
    )
    await PostgresMemoryService(database=owner_db).search_memory(
        app_name="a", user_id="u", query="warm up"
    )
    await owner_db.close()
    quoted = '"' + schema_name + '"'
    await pg_admin.execute(RUNTIME_GRANTS.format(schema=quoted, role=runtime_role))

    # 2. The runtime role does the work.
    db = Database(as_role(pg_url, runtime_role), schema=schema_name)
    sessions = PostgresSessionService(database=db)
    artifacts = PostgresArtifactService(database=db)
    memory = PostgresMemoryService(database=db)
    s = await sessions.create_session(
        app_name="a", user_id="u", state={"k": 1, "user:u": 2, "app:a": 3}
    )
    event = Event(
        author="user",
        invocation_id="i",
        content=types.Content(role="user", parts=[types.Part(text="remember the blue door")]),
        actions=EventActions(state_delta={"k": 2, "user:u": 3}),
    )
    await sessions.append_event(s, event)
    got = await sessions.get_session(app_name="a", user_id="u", session_id=s.id)
    assert got is not None and got.state["k"] == 2 and len(got.events) == 1
    assert (await sessions.list_sessions(app_name="a", user_id="u")).sessions
    assert await sessions.get_user_state(app_name="a", user_id="u") == {"u": 3}
    version = await artifacts.save_artifact(
        app_name="a",
        user_id="u",
        session_id=s.id,
        filename="f.txt",
        artifact=types.Part(text="hello"),
    )
    assert version == 0
    loaded = await artifacts.load_artifact(
        app_name="a", user_id="u", session_id=s.id, filename="f.txt"
    )
    assert loaded is not None and loaded.text == "hello"
    await memory.add_session_to_memory(got)
    found = await memory.search_memory(app_name="a", user_id="u", query="blue door")
    assert found.memories
    await artifacts.delete_artifact(app_name="a", user_id="u", session_id=s.id, filename="f.txt")
    await sessions.delete_session(app_name="a", user_id="u", session_id=s.id)
    await db.close()

    # 3. ... and cannot change the schema.
    conn = await asyncpg.connect(as_role(pg_url, runtime_role))
    try:
        for ddl in (
            f"CREATE TABLE {quoted}.intruder (x int)",
            f"DROP TABLE {quoted}.events",
            f"ALTER TABLE {quoted}.sessions ADD COLUMN x int",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(ddl)
    finally:
        await conn.close()


async def test_runtime_role_cannot_create_the_schema(
    pg_url: str, schema_name: str, runtime_role: str
) -> None:
    svc = PostgresSessionService(as_role(pg_url, runtime_role), schema=schema_name)
    with pytest.raises(InsufficientPrivilegeError):
        await svc.list_sessions(app_name="a")
    await svc.close()
