"""The Database layer: configuration, typed errors, pool sharing, migrations, lifecycle, fork."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from adk_postgres import SCHEMA_VERSION, Database, PostgresSessionService
from adk_postgres.errors import (
    ClosedError,
    ConfigurationError,
    DatabaseConnectionError,
    PoolTimeoutError,
    ProcessForkedError,
)


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:pw@h/d",
        "postgresql://u:pw@h:notaport/d",
        "postgresql://u:pw@h/d?sslmode=sometimes",
        "postgresql://u:pw@h/d?no_such_option=1",
    ],
)
def test_bad_urls_fail_at_construction_without_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        PostgresSessionService(url)
    assert "pw" not in str(info.value).replace("postgresql", "")


@pytest.mark.parametrize(
    "options",
    [{"pool_size": 0}, {"connect_timeout": -1.0}, {"acquire_timeout": 0.0}, {"schema": "x" * 64}],
)
def test_bad_options_fail_at_construction(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Database("postgresql://u@localhost/d", **options)  # type: ignore[arg-type]


def test_database_and_url_are_exclusive(pg_url: str) -> None:
    db = Database(pg_url)
    with pytest.raises(ConfigurationError):
        PostgresSessionService(pg_url, database=db)
    with pytest.raises(ConfigurationError):
        PostgresSessionService(database=db, pool_size=3)


def test_repr_never_shows_the_password() -> None:
    svc = PostgresSessionService("postgresql://alice:s3cr3t-pw@db.invalid:5432/app")
    assert "s3cr3t-pw" not in repr(svc)
    assert "s3cr3t-pw" not in repr(svc.database)
    assert "db.invalid" in repr(svc)


async def test_unreachable_server_raises_a_typed_error_fast() -> None:
    port = free_tcp_port()  # nothing listens there
    svc = PostgresSessionService(
        f"postgresql://alice:s3cr3t-pw@127.0.0.1:{port}/app", connect_timeout=2.0
    )
    with pytest.raises(DatabaseConnectionError) as info:
        await asyncio.wait_for(svc.get_session(app_name="a", user_id="u", session_id="s"), 10)
    assert "s3cr3t-pw" not in str(info.value)
    assert isinstance(info.value, ConnectionError)
    await svc.close()


async def test_wrong_database_name_is_a_connection_error(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    bad = parts._replace(path="/no_such_db_" + uuid.uuid4().hex[:6]).geturl()
    svc = PostgresSessionService(bad)
    with pytest.raises(DatabaseConnectionError) as info:
        await svc.list_sessions(app_name="a")
    assert info.value.sqlstate == "3D000"
    await svc.close()


async def test_services_share_one_pool_through_database(pg_url: str, schema_name: str) -> None:
    db = Database(pg_url, schema=schema_name, pool_size=3)
    one = PostgresSessionService(database=db)
    two = PostgresSessionService(database=db)
    s = await one.create_session(app_name="a", user_id="u", state={"k": 1})
    got = await two.get_session(app_name="a", user_id="u", session_id=s.id)
    assert got == s
    assert db.pool_status()["max_size"] == 3
    assert db.pool_status()["size"] >= 1
    # Closing a service that does not own the pool leaves it usable for the other.
    await one.close()
    assert await two.get_session(app_name="a", user_id="u", session_id=s.id) == s
    await db.close()
    with pytest.raises(ClosedError):
        await two.get_session(app_name="a", user_id="u", session_id=s.id)


async def test_async_with_closes_the_pool(pg_url: str, schema_name: str) -> None:
    async with PostgresSessionService(pg_url, schema=schema_name) as svc:
        await svc.create_session(app_name="a", user_id="u")
    assert svc.database.closed
    with pytest.raises(ClosedError):
        await svc.list_sessions(app_name="a")


async def test_concurrent_first_use_migrates_once(pg_url: str, schema_name: str) -> None:
    databases = [Database(pg_url, schema=schema_name) for _ in range(6)]
    versions = await asyncio.gather(*(db.migrate() for db in databases))
    assert versions == [SCHEMA_VERSION] * 6
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            f'SELECT version FROM "{schema_name}".adk_postgres_migrations ORDER BY version'
        )
        meta = await conn.fetchval(
            f"SELECT value FROM \"{schema_name}\".adk_internal_metadata WHERE key='schema_version'"
        )
    finally:
        await conn.close()
    assert [r["version"] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
    assert meta == "1"  # ADK's own marker is left for ADK
    for db in databases:
        await db.close()


async def test_without_statement_cache_and_with_an_odd_schema_name(pg_url: str) -> None:
    schema = f'odd "schema" {uuid.uuid4().hex[:6]}'
    svc = PostgresSessionService(pg_url, schema=schema, statement_cache=False)
    try:
        s = await svc.create_session(app_name="a", user_id="u", state={"user:x": 1})
        assert await svc.get_session(app_name="a", user_id="u", session_id=s.id) == s
        assert await svc.get_user_state(app_name="a", user_id="u") == {"x": 1}
    finally:
        await svc.close()
        conn = await asyncpg.connect(pg_url)
        await conn.execute(f'DROP SCHEMA "{schema.replace(chr(34), chr(34) * 2)}" CASCADE')
        await conn.close()


async def test_application_name_is_reported_to_the_server(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    name = f"adkpg-test-{uuid.uuid4().hex[:6]}"
    svc = PostgresSessionService(pg_url, schema=schema_name, application_name=name)
    await svc.list_sessions(app_name="a")
    count = await pg_admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", name
    )
    assert count >= 1
    await svc.close()


async def test_multi_host_url_falls_through_to_a_live_host(pg_url: str, schema_name: str) -> None:
    parts = urlsplit(pg_url)
    query = parse_qs(parts.query)
    if "host" in query:  # unix socket directory (the embedded server)
        live = query["host"][0]
        url = parts._replace(query=f"host=/nonexistent-adkpg,{live}").geturl()
    else:
        live_port = parts.port or 5432
        url = parts._replace(
            netloc=f"{parts.username or 'postgres'}@127.0.0.1:{free_tcp_port()},"
            f"{parts.hostname}:{live_port}"
        ).geturl()
    svc = PostgresSessionService(url, schema=schema_name)
    s = await svc.create_session(app_name="a", user_id="u")
    assert (await svc.get_session(app_name="a", user_id="u", session_id=s.id)) == s
    await svc.close()


async def test_pool_exhaustion_names_the_pool_size(pg_url: str, schema_name: str) -> None:
    svc = PostgresSessionService(pg_url, schema=schema_name, pool_size=1, acquire_timeout=0.2)
    s = await svc.create_session(app_name="a", user_id="u")
    # Hold the only connection with a slow statement: a session state check that sleeps.
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            f'CREATE OR REPLACE FUNCTION "{schema_name}".slow() RETURNS trigger LANGUAGE plpgsql'
            " AS $$ BEGIN PERFORM pg_sleep(1.5); RETURN NEW; END $$;"
            f' CREATE TRIGGER slow BEFORE UPDATE ON "{schema_name}".sessions'
            f' FOR EACH ROW EXECUTE FUNCTION "{schema_name}".slow()'
        )
    finally:
        await conn.close()
    from google.adk.events import Event

    slow = asyncio.ensure_future(svc.append_event(s, Event(author="a", invocation_id="i")))
    await asyncio.sleep(0.3)
    with pytest.raises(PoolTimeoutError) as info:
        await svc.list_sessions(app_name="a")
    assert "1 pooled connection" in str(info.value)
    await slow
    assert svc.database.pool_status()["available"] == 1
    await svc.close()


def _run_python(code: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_forked_child_gets_a_clear_error(pg_url: str, schema_name: str) -> None:
    result = _run_python(
        """
        import asyncio, os, sys
        from adk_postgres import PostgresSessionService
        from adk_postgres.errors import ProcessForkedError

        svc = PostgresSessionService(os.environ["URL"], schema=os.environ["SCHEMA"])
        asyncio.run(svc.create_session(app_name="a", user_id="u", session_id="parent"))
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(svc.get_session(app_name="a", user_id="u", session_id="parent"))
            except ProcessForkedError:
                # The child can open its own pool (and gets its own runtime).
                mine = PostgresSessionService(os.environ["URL"], schema=os.environ["SCHEMA"])
                got = asyncio.run(mine.get_session(app_name="a", user_id="u", session_id="parent"))
                os._exit(42 if got is not None else 2)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        # The parent's pool is unharmed by the child.
        s = asyncio.run(svc.get_session(app_name="a", user_id="u", session_id="parent"))
        print("child", os.waitstatus_to_exitcode(status), "parent-ok", s is not None)
        """,
        {"URL": pg_url, "SCHEMA": schema_name},
    )
    assert result.returncode == 0, result.stderr
    assert "child 42 parent-ok True" in result.stdout
    assert issubclass(ProcessForkedError, RuntimeError)


def test_interpreter_exit_without_close_is_clean(pg_url: str, schema_name: str) -> None:
    result = _run_python(
        """
        import asyncio, os
        from adk_postgres import PostgresSessionService

        svc = PostgresSessionService(os.environ["URL"], schema=os.environ["SCHEMA"])
        s = asyncio.run(svc.create_session(app_name="a", user_id="u"))
        print("created", s.id)
        """,
        {"URL": pg_url, "SCHEMA": schema_name},
    )
    assert result.returncode == 0, result.stderr
    assert "created" in result.stdout
    assert "Traceback" not in result.stderr


async def test_cancelled_calls_leave_no_pool_slot_or_half_written_session(
    pg_url: str, schema_name: str
) -> None:
    import random

    from google.adk.errors._stale_session_error import StaleSessionError
    from google.adk.events import Event
    from google.adk.events.event_actions import EventActions

    from adk_postgres import _bridge

    svc = PostgresSessionService(pg_url, schema=schema_name, pool_size=4)
    s = await svc.create_session(app_name="a", user_id="u", session_id="c")
    rng = random.Random(7)
    cancelled = stale = 0
    for i in range(1000):
        fresh = await svc.get_session(app_name="a", user_id="u", session_id="c")
        assert fresh is not None
        # Half with app state: those go through the coalescing queue (coalesce.rs).
        delta = {"n": i, "app:n": i} if i % 2 else {"n": i}
        ev = Event(author="a", invocation_id=f"i{i}", actions=EventActions(state_delta=delta))
        task = asyncio.ensure_future(svc.append_event(fresh, ev))
        # Some cancelled before the statement is sent, some while it runs, some too late.
        await asyncio.sleep(rng.choice([0.0, rng.random() * 0.0005, rng.random() * 0.002]))
        if task.cancel():
            cancelled += 1
        try:
            await task
        except asyncio.CancelledError:
            pass
        except StaleSessionError:
            # A cancelled append whose statement was already sent may still commit after the
            # next read: the next append is then correctly refused, never half-applied.
            stale += 1
    print(f"cancellations: {cancelled} of 1000 appends; refused as stale after one: {stale}")
    assert cancelled > 200  # the test exercised cancellation
    assert stale < cancelled
    await asyncio.sleep(0.2)  # let aborted Rust futures hand their connections back
    status = svc.database.pool_status()
    assert status["waiting"] == 0 and status["available"] == status["size"]
    assert _bridge._bridges[asyncio.get_running_loop()].in_flight() == 0
    # Every stored event is whole: its state delta was applied with it, nothing twice.
    stored = await svc.get_session(app_name="a", user_id="u", session_id="c")
    assert stored is not None
    ids = [e.id for e in stored.events]
    assert len(ids) == len(set(ids))
    if stored.events:
        assert stored.state["n"] == stored.events[-1].actions.state_delta["n"]
    assert s.id == "c"
    await svc.close()


def test_a_service_works_from_several_event_loops(pg_url: str, schema_name: str) -> None:
    import threading

    svc = PostgresSessionService(pg_url, schema=schema_name)
    created = asyncio.run(svc.create_session(app_name="a", user_id="u"))
    results: list[bool] = []

    def in_thread() -> None:
        got = asyncio.run(svc.get_session(app_name="a", user_id="u", session_id=created.id))
        results.append(got == created)

    threads = [threading.Thread(target=in_thread) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert results == [True, True, True]
    asyncio.run(svc.close())


async def test_terminated_connections_are_replaced_without_an_error(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    name = f"term-{uuid.uuid4().hex[:6]}"
    svc = PostgresSessionService(pg_url, schema=schema_name, application_name=name, pool_size=3)
    s = await svc.create_session(app_name="a", user_id="u")
    await asyncio.gather(
        *(svc.get_session(app_name="a", user_id="u", session_id=s.id) for _ in range(3))
    )
    killed = await pg_admin.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        name,
    )
    assert killed >= 1
    # Reads and appends retry once on a fresh connection; the caller sees no error.
    for _ in range(3):
        assert await svc.get_session(app_name="a", user_id="u", session_id=s.id) == s
    from google.adk.events import Event

    await svc.append_event(s, Event(author="a", invocation_id="i"))
    status = svc.database.pool_status()
    assert status["waiting"] == 0 and status["available"] == status["size"]
    await svc.close()


async def test_statement_timeout_is_typed_and_leaves_the_session_unchanged(
    pg_url: str, schema_name: str
) -> None:
    from google.adk.events import Event
    from google.adk.events.event_actions import EventActions

    from adk_postgres.errors import StatementTimeoutError

    sep = "&" if "?" in pg_url else "?"
    url = f"{pg_url}{sep}options=-c%20statement_timeout%3D300"
    svc = PostgresSessionService(url, schema=schema_name, cache_bytes=0)
    s = await svc.create_session(app_name="a", user_id="u", state={"k": 0})
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            f'CREATE FUNCTION "{schema_name}".slow() RETURNS trigger LANGUAGE plpgsql'
            " AS $$ BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$;"
            f' CREATE TRIGGER slow BEFORE INSERT ON "{schema_name}".events'
            f' FOR EACH ROW EXECUTE FUNCTION "{schema_name}".slow()'
        )
    finally:
        await conn.close()
    before = await svc.get_session(app_name="a", user_id="u", session_id=s.id)
    ev = Event(author="a", invocation_id="i", actions=EventActions(state_delta={"k": 1}))
    with pytest.raises(StatementTimeoutError) as info:
        await svc.append_event(s, ev)
    assert info.value.sqlstate == "57014"
    assert await svc.get_session(app_name="a", user_id="u", session_id=s.id) == before
    status = svc.database.pool_status()
    assert status["waiting"] == 0 and status["available"] == status["size"]
    await svc.close()
