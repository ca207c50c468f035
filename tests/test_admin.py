"""`adk_postgres.admin.Admin`, the typed API behind the operations commands: durations,
doctor findings for roles and logins, and argument checks."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest

from adk_postgres import Database, PostgresSessionService
from adk_postgres.admin import Admin, parse_duration
from adk_postgres.errors import ConfigurationError, SchemaError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("45s", timedelta(seconds=45)),
        ("1d12h", timedelta(hours=36)),
        (" 3D ", timedelta(days=3)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "1y", "-1d", "1.5h", "0m", "0d0h", "12 hours"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_duration(text)


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{role}@{host}").geturl()


@pytest.fixture
async def plain_role(pg_admin: asyncpg.Connection) -> str:
    """A login role with no privileges on anything of ours."""
    role = f"adkpg_doc_{uuid.uuid4().hex[:8]}"
    await pg_admin.execute(f"CREATE ROLE {role} LOGIN")
    yield role
    await pg_admin.execute(f"DROP OWNED BY {role}")
    await pg_admin.execute(f"DROP ROLE {role}")


async def test_doctor_reports_missing_grants_then_a_sound_runtime_role(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, plain_role: str
) -> None:
    async with Database(pg_url, schema=schema_name) as owner:
        await owner.migrate()

    async with Database(as_role(pg_url, plain_role), schema=schema_name) as db:
        report = await Admin(db).doctor()
    checks = {c.name: c for c in report.checks}
    assert checks["privileges"].status == "fail"
    assert "GRANT USAGE ON SCHEMA" in (checks["privileges"].advice or "")
    assert checks["server"].status == "ok" and report.superuser is False
    assert not report.ok

    quoted = f'"{schema_name}"'
    await pg_admin.execute(f"GRANT USAGE ON SCHEMA {quoted} TO {plain_role}")
    await pg_admin.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {quoted} TO {plain_role}"
    )
    async with Database(as_role(pg_url, plain_role), schema=schema_name) as db:
        report = await Admin(db).doctor()
    checks = {c.name: c for c in report.checks}
    assert checks["privileges"].status == "ok"
    assert "may not create" in checks["privileges"].detail
    assert report.can_create is False
    assert report.ok, report.failed


async def test_doctor_explains_a_refused_login(pg_url: str, schema_name: str) -> None:
    async with Database(as_role(pg_url, f"nobody_{uuid.uuid4().hex[:8]}")) as db:
        report = await Admin(db).doctor()
    assert [c.name for c in report.checks] == ["connection"]
    failed = report.failed[0]
    assert "SQLSTATE 28" in failed.detail
    assert "password" in (failed.advice or "")
    assert report.server_version is None and report.migrations is None


async def test_admin_api_round_trip(pg_url: str, schema_name: str) -> None:
    async with Database(pg_url, schema=schema_name) as db:
        admin = Admin(db)
        with pytest.raises(SchemaError, match="adk-postgres migrate"):
            await admin.stats()
        before = await admin.migration_status()
        assert before.current == 0 and not before.up_to_date
        after = await admin.migrate()
        assert after.up_to_date and after.applied[-1].applied_at is not None

        sessions = PostgresSessionService(database=db)
        await sessions.create_session(app_name="a", user_id="u", session_id="s")
        with pytest.raises(ConfigurationError, match="nothing to prune"):
            await admin.prune()
        with pytest.raises(ConfigurationError):
            await admin.prune(idle_for="soon")
        report = await admin.prune(idle_for="1w", dry_run=True)
        assert report.apps == [] and report.cutoff is not None
        stats = await admin.stats()
        assert stats.totals.sessions == 1 and stats.apps[0].app_name == "a"
