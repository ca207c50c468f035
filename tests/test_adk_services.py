"""ADK service registry integration: adkpg:// URIs build our three services on one pool."""

from __future__ import annotations

import pytest
from google.adk.cli.service_registry import ServiceRegistry, _register_builtin_services
from google.adk.sessions.database_session_service import DatabaseSessionService

from adk_postgres import (
    PostgresArtifactService,
    PostgresMemoryService,
    PostgresSessionService,
)
from adk_postgres.adk_services import (
    ServiceUri,
    artifact_service_factory,
    memory_service_factory,
    register,
    session_service_factory,
)
from adk_postgres.errors import ConfigurationError


def _adkpg(pg_url: str, **query: str) -> str:
    scheme, rest = pg_url.split("://", 1)
    assert scheme in ("postgresql", "postgres")
    extra = "&".join(f"{k}={v}" for k, v in query.items())
    if extra:
        rest += ("&" if "?" in rest else "?") + extra
    return f"adkpg://{rest}"


def test_uri_options_are_taken_out_of_the_libpq_url() -> None:
    uri = ServiceUri.parse(
        "adkpg://adk:secret@db.internal:5433/agents?sslmode=require&schema=tenant1"
        "&pool_size=20&cache_bytes=0"
    )
    assert uri.libpq_url == "postgresql://adk:secret@db.internal:5433/agents?sslmode=require"
    assert uri.schema == "tenant1"
    assert uri.pool_size == 20
    assert uri.options == {"cache_bytes": "0"}


def test_embedded_uri() -> None:
    uri = ServiceUri.parse("adkpg+embedded://?schema=mine")
    assert uri.libpq_url is None
    assert uri.schema == "mine"
    assert ServiceUri.parse("adkpg+embedded://").schema == "public"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("adkpg+embedded://somehost/db", "takes no host"),
        ("adkpg:///dbname", "needs a host"),
        ("adkpg://h/db?pool_size=many", "pool_size must be an integer"),
        ("mysql://h/db", "not an adk-postgres URI scheme"),
    ],
)
def test_bad_uris_are_configuration_errors(uri: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ServiceUri.parse(uri)


async def test_registered_factories_share_one_pool(pg_url: str, schema_name: str) -> None:
    registry = ServiceRegistry()
    register(registry)
    uri = _adkpg(pg_url, schema=schema_name)
    sessions = registry.create_session_service(uri, agents_dir="/tmp")
    artifacts = registry.create_artifact_service(uri, agents_dir="/tmp")
    memory = registry.create_memory_service(uri, agents_dir="/tmp")
    assert isinstance(sessions, PostgresSessionService)
    assert isinstance(artifacts, PostgresArtifactService)
    assert isinstance(memory, PostgresMemoryService)
    assert sessions.database is artifacts.database is memory.database
    assert sessions.database.schema == schema_name
    try:
        created = await sessions.create_session(app_name="app", user_id="u", state={"k": 1})
        loaded = await sessions.get_session(app_name="app", user_id="u", session_id=created.id)
        assert loaded is not None and loaded.state == {"k": 1}
    finally:
        await sessions.database.close()


async def test_options_reach_the_services(pg_url: str, schema_name: str, tmp_path) -> None:
    registry = ServiceRegistry()
    register(registry)
    sessions = registry.create_session_service(
        _adkpg(pg_url, schema=schema_name, cache_bytes="0", pool_size="2")
    )
    artifacts = registry.create_artifact_service(
        _adkpg(pg_url, schema=schema_name, pool_size="2", content_dir=str(tmp_path / "blobs"))
    )
    try:
        assert sessions._cache is None
        assert sessions.database.pool_status()["max_size"] == 2
        assert artifacts.content_dir == (tmp_path / "blobs").resolve()
        with pytest.raises(ConfigurationError, match="content_dir"):
            registry.create_session_service(
                _adkpg(pg_url, schema=schema_name, content_dir="/tmp/x")
            )
        with pytest.raises(ConfigurationError, match="cache_bytes"):
            registry.create_memory_service(_adkpg(pg_url, schema=schema_name, cache_bytes="1"))
    finally:
        await sessions.database.close()


def test_postgresql_scheme_stays_with_adk_unless_claimed(pg_url: str) -> None:
    registry = ServiceRegistry()
    _register_builtin_services(registry)
    adk_factory = registry._session_factories["postgresql"]
    register(registry)
    assert registry._session_factories["postgresql"] is adk_factory
    assert registry._session_factories["adkpg"] is session_service_factory

    register(registry, claim_postgresql=True)
    for scheme in ("postgresql", "postgres"):
        assert registry._session_factories[scheme] is session_service_factory
        assert registry._artifact_factories[scheme] is artifact_service_factory
        assert registry._memory_factories[scheme] is memory_service_factory
    service = registry.create_session_service(pg_url)
    assert isinstance(service, PostgresSessionService)
    assert not isinstance(service, DatabaseSessionService)


async def test_register_defaults_to_adks_global_registry(pg_url: str, schema_name: str) -> None:
    from google.adk.cli.service_registry import get_service_registry

    register()
    register()  # idempotent
    memory = get_service_registry().create_memory_service(
        _adkpg(pg_url, schema=schema_name), agents_dir="."
    )
    assert isinstance(memory, PostgresMemoryService)
    try:
        assert await memory.search_memory(app_name="a", user_id="u", query="x") is not None
    finally:
        await memory.database.close()
