"""Short-lived passwords (cloud IAM tokens, rotating secrets): `password=` is a function asked
at every new connection. Tested on a throwaway server with password (SCRAM) authentication
whose role's password is changed while a service keeps running."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest
from servers.postgres import LocalServer, missing, write_file

from adk_postgres import Database, PostgresSessionService
from adk_postgres.errors import ConfigurationError, DatabaseConnectionError

ROLE = "rotator"


@pytest.fixture(scope="module")
def scram_server() -> Iterator[LocalServer]:
    reason = missing()
    if reason:
        pytest.skip(f"needs the distribution's PostgreSQL binaries: {reason}")
    with LocalServer() as server:
        # The test role logs in with a password; everyone else stays on trust.
        hba = server.data_dir / "pg_hba.conf"
        rules = f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text()
        write_file(hba, rules)
        yield server


async def admin(server: LocalServer, sql: str) -> None:
    conn = await asyncpg.connect(server.url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def role_url(scram_server: LocalServer) -> str:
    asyncio.run(
        admin(
            scram_server,
            f"CREATE ROLE {ROLE} LOGIN PASSWORD 'first-secret'; "
            f"GRANT CREATE ON DATABASE postgres TO {ROLE}; SELECT pg_reload_conf()",
        )
    )
    return scram_server.dsn(user=ROLE)


async def drop_connections(server: LocalServer) -> None:
    """Ends every connection of the role: the pool must open new ones, with a new password."""
    await admin(
        server,
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{ROLE}'",
    )
    await asyncio.sleep(0.3)  # the clients notice their closed sockets


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_rotated_password_is_fetched_again_for_new_connections(
    scram_server: LocalServer, role_url: str, kind: str
) -> None:
    current = {"password": "first-secret"}
    asked = []
    await admin(scram_server, f"ALTER ROLE {ROLE} PASSWORD 'first-secret'")

    def fetch() -> str:
        asked.append(current["password"])
        return current["password"]

    async def fetch_async() -> str:
        await asyncio.sleep(0)
        return fetch()

    schema = f"rot_{kind}"
    db = Database(
        role_url, schema=schema, pool_size=2, password=fetch if kind == "sync" else fetch_async
    )
    sessions = PostgresSessionService(database=db)
    try:
        first = await sessions.create_session(app_name="a", user_id="u")
        assert asked and set(asked) == {"first-secret"}

        # Rotate on the server and at the source: open connections keep working ...
        await admin(scram_server, f"ALTER ROLE {ROLE} PASSWORD 'second-secret'")
        current["password"] = "second-secret"
        assert await sessions.get_session(app_name="a", user_id="u", session_id=first.id)
        # ... and new ones are made with the new password.
        await drop_connections(scram_server)
        for _ in range(3):
            try:
                second = await sessions.create_session(app_name="a", user_id="u")
                break
            except DatabaseConnectionError:  # a connection the pool had not yet seen closed
                continue
        assert "second-secret" in asked
        listed = await sessions.list_sessions(app_name="a", user_id="u")
        assert {s.id for s in listed.sessions} == {first.id, second.id}

        # A fixed password (the old one, in the URL) no longer gets in.
        stale = Database(role_url.replace(f"{ROLE}@", f"{ROLE}:first-secret@"), schema=schema)
        with pytest.raises(DatabaseConnectionError, match="password authentication failed"):
            await PostgresSessionService(database=stale).list_sessions(app_name="a")
        await stale.close()
    finally:
        await db.close()


async def test_a_failing_password_function_is_a_connection_error(role_url: str) -> None:
    def sealed() -> str:
        raise RuntimeError("vault is sealed")

    db = Database(role_url, schema="rot_fail", password=sealed, connect_timeout=5)
    try:
        with pytest.raises(
            DatabaseConnectionError, match="password function failed.*vault is sealed"
        ):
            await PostgresSessionService(database=db).list_sessions(app_name="a")
    finally:
        await db.close()

    wrong_type = Database(role_url, schema="rot_fail", password=lambda: 42)
    try:
        with pytest.raises(DatabaseConnectionError, match="returned int, not str"):
            await PostgresSessionService(database=wrong_type).list_sessions(app_name="a")
    finally:
        await wrong_type.close()

    with pytest.raises(ConfigurationError, match="password must be a function"):
        Database(role_url, password="not-a-function")  # type: ignore[arg-type]
