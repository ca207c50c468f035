"""Registration of the adk-postgres services in ADK's service registry.

After `register()`, ADK's own CLI (``adk web``, ``adk api_server``, ``adk run``) and
`google.adk.cli.fast_api.get_fast_api_app` accept these URIs for
``--session_service_uri``, ``--artifact_service_uri`` and ``--memory_service_uri`` (and,
with a2a-sdk installed, ``get_fast_api_app(task_store_uri=...)`` for A2A tasks):

* ``adkpg://user:password@host:5432/dbname?sslmode=require`` – a PostgreSQL server; any libpq
  URL with the scheme replaced by ``adkpg``.
* ``adkpg+embedded://`` – the embedded PostgreSQL (started on first use).
* ``postgresql://…`` / ``postgres://…`` – only with ``register(claim_postgresql=True)``;
  otherwise those stay with ADK's ``DatabaseSessionService``.

Query parameters of our own are taken out of the URL before it reaches libpq: ``schema``,
``pool_size``, ``cache_bytes`` (sessions) and ``content_dir`` (artifacts). The three services
built from one URL share one connection pool.

In an agents directory, a ``services.py`` holding the one line
``import adk_postgres.adk_services as s; s.register()`` is enough for ``adk web``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import embedded
from ._native import check_schema_name
from .artifact_service import PostgresArtifactService
from .database import DEFAULT_SCHEMA, Database
from .errors import ConfigurationError
from .memory_service import PostgresMemoryService
from .session_service import PostgresSessionService

SCHEME = "adkpg"
EMBEDDED_SCHEME = "adkpg+embedded"
POSTGRESQL_SCHEMES = ("postgresql", "postgres")

# Options read from the URL's query string (everything else goes to libpq).
_POOL_OPTIONS = ("schema", "pool_size")
_SESSION_OPTIONS = ("cache_bytes",)
_ARTIFACT_OPTIONS = ("content_dir",)
_ALL_OPTIONS = _POOL_OPTIONS + _SESSION_OPTIONS + _ARTIFACT_OPTIONS


@dataclass(frozen=True)
class ServiceUri:
    """An ``adkpg`` URI taken apart: the libpq URL (``None`` = embedded) and our options."""

    libpq_url: str | None
    schema: str
    pool_size: int | None
    options: dict[str, str]

    @classmethod
    def parse(cls, uri: str) -> ServiceUri:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in _ALL_OPTIONS}
        libpq_query = urlencode([(k, v) for k, v in query if k not in _ALL_OPTIONS])
        if scheme == EMBEDDED_SCHEME:
            if parts.netloc or parts.path.strip("/"):
                raise ConfigurationError(
                    "adkpg+embedded:// takes no host or database (options only, e.g. "
                    "adkpg+embedded://?schema=myapp)"
                )
            libpq_url = None
        elif scheme == SCHEME or scheme in POSTGRESQL_SCHEMES:
            if not parts.netloc and "host=" not in libpq_query:
                raise ConfigurationError(
                    f"{scheme}:// needs a host, e.g. {scheme}://user@localhost:5432/dbname"
                )
            libpq_url = urlunsplit(("postgresql", parts.netloc, parts.path, libpq_query, ""))
        else:
            raise ConfigurationError(f"not an adk-postgres URI scheme: {parts.scheme!r}")
        pool_size = None
        if "pool_size" in ours:
            try:
                pool_size = int(ours["pool_size"])
            except ValueError:
                raise ConfigurationError("pool_size must be an integer") from None
        # An explicit but empty ?schema= is a mistake, refused with the other bad names.
        schema = ours["schema"] if "schema" in ours else DEFAULT_SCHEMA
        check_schema_name(schema)
        return cls(
            libpq_url=libpq_url,
            schema=schema,
            pool_size=pool_size,
            options={k: v for k, v in ours.items() if k not in _POOL_OPTIONS},
        )


_databases: dict[tuple[str | None, str, int | None], Database] = {}
_databases_lock = threading.Lock()


def shared_database(uri: ServiceUri) -> Database:
    """One pool per (server, schema, pool size), shared by the services made from it."""
    key = (uri.libpq_url, uri.schema, uri.pool_size)
    with _databases_lock:
        database = _databases.get(key)
        if database is None or database.closed:
            # The embedded server is started here, so the factory fails early and clearly.
            url = uri.libpq_url or embedded.default_uri()
            options: dict[str, Any] = {"schema": uri.schema}
            if uri.pool_size is not None:
                options["pool_size"] = uri.pool_size
            database = Database(url, **options)
            _databases[key] = database
        return database


def _unexpected(uri: ServiceUri, allowed: tuple[str, ...]) -> None:
    extra = sorted(set(uri.options) - set(allowed))
    if extra:
        raise ConfigurationError(f"option(s) {', '.join(extra)} do not apply to this service")


def session_service_factory(uri: str, **_adk_kwargs: Any) -> PostgresSessionService:
    """ADK registry factory (ADK passes ``agents_dir=``, which a database does not need)."""
    parsed = ServiceUri.parse(uri)
    _unexpected(parsed, _SESSION_OPTIONS)
    options: dict[str, Any] = {}
    if "cache_bytes" in parsed.options:
        try:
            options["cache_bytes"] = int(parsed.options["cache_bytes"])
        except ValueError:
            raise ConfigurationError("cache_bytes must be an integer") from None
    return PostgresSessionService(database=shared_database(parsed), **options)


def artifact_service_factory(uri: str, **_adk_kwargs: Any) -> PostgresArtifactService:
    parsed = ServiceUri.parse(uri)
    _unexpected(parsed, _ARTIFACT_OPTIONS)
    return PostgresArtifactService(
        database=shared_database(parsed), content_dir=parsed.options.get("content_dir")
    )


def memory_service_factory(uri: str, **_adk_kwargs: Any) -> PostgresMemoryService:
    parsed = ServiceUri.parse(uri)
    _unexpected(parsed, ())
    return PostgresMemoryService(database=shared_database(parsed))


def task_store_factory(uri: str, **_adk_kwargs: Any) -> Any:
    """A2A task store (`adk_postgres.a2a.PostgresTaskStore`; needs a2a-sdk 1.x)."""
    from .a2a import PostgresTaskStore

    parsed = ServiceUri.parse(uri)
    _unexpected(parsed, ())
    return PostgresTaskStore(database=shared_database(parsed))


def _a2a_installed() -> bool:
    try:
        from a2a.types import a2a_pb2  # noqa: F401
    except ImportError:
        return False
    return hasattr(a2a_pb2, "ListTasksRequest")


def register(registry: Any = None, *, claim_postgresql: bool = False) -> None:
    """Register the three services for ``adkpg://`` and ``adkpg+embedded://`` (and, with
    ``claim_postgresql=True``, for ``postgresql://``/``postgres://`` in place of ADK's
    ``DatabaseSessionService``), and with a2a-sdk 1.x installed the A2A task store for
    ``adkpg://`` and ``adkpg+embedded://``. ``registry`` defaults to ADK's global one.
    Idempotent."""
    if registry is None:
        from google.adk.cli.service_registry import get_service_registry

        registry = get_service_registry()
    schemes = [SCHEME, EMBEDDED_SCHEME]
    if claim_postgresql:
        schemes += list(POSTGRESQL_SCHEMES)
    for scheme in schemes:
        registry.register_session_service(scheme, session_service_factory)
        registry.register_artifact_service(scheme, artifact_service_factory)
        registry.register_memory_service(scheme, memory_service_factory)
    # A private method of ADK's registry (ADK's CLI has no task store option yet); skipped
    # where it is missing.
    register_task_store = getattr(registry, "_register_task_store_service", None)
    if register_task_store is not None and _a2a_installed():
        for scheme in (SCHEME, EMBEDDED_SCHEME):
            register_task_store(scheme, task_store_factory)
