"""TLS through rustls, against a server that offers it (the machine's Debian PostgreSQL with its
snakeoil certificate for CN=localhost, reached via TEST_DATABASE_URL over TCP). The embedded
test server listens on a unix socket only, where PostgreSQL never uses TLS: there these tests
skip, and CI's second pass (TEST_DATABASE_URL on 127.0.0.1) runs them."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from adk_postgres import PostgresSessionService
from adk_postgres.errors import ConfigurationError, DatabaseConnectionError

SNAKEOIL = Path("/etc/ssl/certs/ssl-cert-snakeoil.pem")


@pytest.fixture
async def tls_server(pg_url: str) -> tuple[str, int, str]:
    """(user, port, database) of a TCP server with TLS on, else skip."""
    parts = urlsplit(pg_url)
    if not parts.hostname or parts.hostname.startswith("/"):
        pytest.skip("the test server is reached over a unix socket (no TLS there)")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        conn = await asyncpg.connect(pg_url, ssl=context)
    except (OSError, asyncpg.PostgresError, ssl.SSLError) as exc:
        pytest.skip(f"the test server offers no TLS: {exc}")
    await conn.close()
    return parts.username or "postgres", parts.port or 5432, parts.path.lstrip("/") or "postgres"


async def uses_tls(pg_admin: asyncpg.Connection, application_name: str) -> bool:
    return bool(
        await pg_admin.fetchval(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
            " WHERE a.application_name = $1",
            application_name,
        )
    )


async def test_sslmode_require_encrypts(
    tls_server: tuple[str, int, str], schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    user, port, db = tls_server
    name = f"tls-{uuid.uuid4().hex[:6]}"
    url = f"postgresql://{user}@127.0.0.1:{port}/{db}?sslmode=require"
    async with PostgresSessionService(url, schema=schema_name, application_name=name) as svc:
        s = await svc.create_session(app_name="a", user_id="u")
        assert await svc.get_session(app_name="a", user_id="u", session_id=s.id) == s
        assert await uses_tls(pg_admin, name)


async def test_sslmode_disable_does_not(
    tls_server: tuple[str, int, str], schema_name: str, pg_admin: asyncpg.Connection
) -> None:
    user, port, db = tls_server
    name = f"plain-{uuid.uuid4().hex[:6]}"
    url = f"postgresql://{user}@127.0.0.1:{port}/{db}?sslmode=disable"
    async with PostgresSessionService(url, schema=schema_name, application_name=name) as svc:
        await svc.list_sessions(app_name="a")
        assert not await uses_tls(pg_admin, name)


@pytest.mark.skipif(not SNAKEOIL.exists(), reason="no snakeoil certificate on this machine")
async def test_verify_full_checks_chain_and_host_name(
    tls_server: tuple[str, int, str], schema_name: str
) -> None:
    user, port, db = tls_server
    root = f"sslrootcert={SNAKEOIL}"
    good = f"postgresql://{user}@localhost:{port}/{db}?sslmode=verify-full&{root}"
    async with PostgresSessionService(good, schema=schema_name) as svc:
        await svc.list_sessions(app_name="a")
    # Right CA, wrong name (the certificate is for "localhost").
    wrong_host = f"postgresql://{user}@127.0.0.1:{port}/{db}?sslmode=verify-full&{root}"
    async with PostgresSessionService(wrong_host, schema=schema_name) as svc:
        with pytest.raises(DatabaseConnectionError, match="not valid for name"):
            await svc.list_sessions(app_name="a")
    # verify-ca accepts the chain whatever the name.
    ca_only = f"postgresql://{user}@127.0.0.1:{port}/{db}?sslmode=verify-ca&{root}"
    async with PostgresSessionService(ca_only, schema=schema_name) as svc:
        await svc.list_sessions(app_name="a")
    # Default roots (the public web PKI) do not trust a self-signed certificate.
    public_roots = f"postgresql://{user}@localhost:{port}/{db}?sslmode=verify-full"
    async with PostgresSessionService(public_roots, schema=schema_name) as svc:
        with pytest.raises(DatabaseConnectionError, match="UnknownIssuer|certificate"):
            await svc.list_sessions(app_name="a")


def test_unreadable_root_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigurationError, match="sslrootcert"):
        PostgresSessionService(f"postgresql://u@h/d?sslmode=verify-full&sslrootcert={missing}")
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match="no certificate"):
        PostgresSessionService(f"postgresql://u@h/d?sslmode=verify-full&sslrootcert={empty}")
