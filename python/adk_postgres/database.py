"""`Database`: one connection pool on one schema, shareable between services.

A service given ``database=`` uses that pool and leaves closing it to its owner; a service
given a URL (or nothing) makes and owns its own.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import weakref
from collections.abc import Awaitable, Callable
from types import TracebackType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import embedded
from ._native import Database as NativeDatabase
from ._native import Sessions as NativeSessions
from ._native import check_schema_name
from .errors import ClosedError, ConfigurationError

DEFAULT_SCHEMA = "public"

# Databases still open at interpreter exit are closed then, so sockets end cleanly.
_open_databases: weakref.WeakSet[Database] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for database in list(_open_databases):
        database.close_now()


def resolve_uri(uri: str | None) -> str | None:
    """The URL to use: the argument, else ``$DATABASE_URL``; ``None`` means embedded."""
    if uri:
        return uri
    return os.environ.get("DATABASE_URL") or None


#: Options a URL may carry in its query string besides libpq's: they describe the path to the
#: server (a pooler in between), so they belong with the URL (``DATABASE_URL``, ADK's
#: ``--session_service_uri``) as much as with the code.
URL_OPTIONS = ("statement_cache", "coalesce_appends", "failover_timeout", "response_timeout")
_SECONDS_OPTIONS = ("failover_timeout", "response_timeout")

_TRUE, _FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no")


def _url_option(key: str, value: str) -> bool | float:
    if key in _SECONDS_OPTIONS:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not seconds >= 0:  # also refuses NaN
            raise ConfigurationError(f"URL option {key}={value!r}: use a number of seconds >= 0")
        return seconds
    word = value.strip().lower()
    if word not in _TRUE + _FALSE:
        raise ConfigurationError(
            f"URL option {key}={value!r}: use true or false (1/0, on/off, yes/no)"
        )
    return word in _TRUE


def split_url_options(url: str) -> tuple[str, dict[str, bool | float]]:
    """The URL without our options, and those options. Only ``postgresql://`` URLs carry
    them (a ``key=value`` connection string goes to libpq as it is)."""
    parts = urlsplit(url)
    if "://" not in url or not parts.query:
        return url, {}
    query = parse_qsl(parts.query, keep_blank_values=True)
    options: dict[str, bool | float] = {}
    for key, value in query:
        if key in URL_OPTIONS:
            options[key] = _url_option(key, value)
    if not options:
        return url, {}
    rest = urlencode([(k, v) for k, v in query if k not in URL_OPTIONS])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), options


#: What ``password=`` takes: a function returning the password, or an awaitable of it.
PasswordFunction = Callable[[], str | Awaitable[str]]


def _blocking_password(password: PasswordFunction) -> Callable[[], str]:
    """``password`` as the plain function the native pool calls on a worker thread: an async
    one is run to completion there, on an event loop of its own."""
    if not callable(password):
        raise ConfigurationError(
            f"password must be a function returning a str, got {type(password).__name__}"
        )

    async def wait(awaitable: Awaitable[str]) -> str:
        return await awaitable

    def fetch() -> str:
        value = password()
        if inspect.isawaitable(value):
            value = asyncio.run(wait(value))
        if not isinstance(value, str):
            raise TypeError(f"the password function returned {type(value).__name__}, not str")
        return value

    return fetch


class Database:
    """A pooled connection to PostgreSQL for the adk-postgres services.

    Args:
        uri: ``postgresql://user:password@host:5432/dbname?sslmode=require`` (libpq URL or
            ``key=value`` form). ``None`` → ``$DATABASE_URL`` → the embedded PostgreSQL.
            TLS options: ``sslmode``, ``sslrootcert``, and a client certificate with
            ``sslcert`` + ``sslkey`` (PEM files; else ``$PGSSLCERT`` / ``$PGSSLKEY``).
        schema: PostgreSQL schema holding the tables; created and migrated on first use.
        pool_size: most connections open at once.
        connect_timeout: seconds to wait for a new connection.
        acquire_timeout: seconds to wait for a free pooled connection.
        statement_cache: prepare each statement once per connection (default); turn off
            behind PgBouncer in transaction or statement mode (before 1.21, or without
            ``max_prepared_statements``): statements are then sent unnamed.
        application_name: shown in ``pg_stat_activity``.
        coalesce_appends: let concurrent appends share one transaction and commit (each still
            durable before it returns; default on). Turn off behind a pooler that forbids
            multi-statement transactions (PgBouncer in statement mode).
        failover_timeout: seconds a call that lost its connection (or met a read-only
            standby) waits for a writable node and tries again there, instead of failing:
            set it above your cluster's failover time (Patroni: ``ttl`` + a few seconds).
            Default 0: errors reach the caller at once.
        response_timeout: seconds to wait for the server's answer to one statement before
            giving the connection up as hung (it then counts as lost: with
            ``failover_timeout`` the call is retried elsewhere). Default ``None``: as long as
            it takes. Protects against a frozen server that still accepts TCP.
        read_uri: a URL for reads (a standby, or several with
            ``target_session_attrs=prefer-standby``): sessions, artifact loads and lists and
            memory searches go there, and are redone on the primary when the standby has not
            yet replayed what this process wrote or read (see README, "Read replicas").
        password: a function asked for the password each time the pool opens a connection
            (sync or async, returning ``str``), for credentials that expire: cloud IAM
            database tokens, a secrets manager's rotating password. It wins over a password
            in the URL. It runs on a worker thread (an async one on its own event loop there),
            never on the caller's loop; if it raises, the connection fails with
            `DatabaseConnectionError` naming its error. Connections already open keep working
            when the password changes, as in PostgreSQL itself.

    ``statement_cache``, ``coalesce_appends``, ``failover_timeout`` and ``response_timeout``
    may also come from the URL's query string (``postgresql://…:6432/db?statement_cache=false``);
    an argument given here wins.

    Construction is synchronous and does not connect.
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        schema: str = DEFAULT_SCHEMA,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        acquire_timeout: float = 30.0,
        statement_cache: bool | None = None,
        application_name: str | None = "adk-postgres",
        coalesce_appends: bool | None = None,
        failover_timeout: float | None = None,
        response_timeout: float | None = None,
        read_uri: str | None = None,
        password: PasswordFunction | None = None,
    ) -> None:
        if not isinstance(schema, str):
            raise ConfigurationError(f"schema must be a str, got {type(schema).__name__}")
        # Checked here too: with no URL the store is built only after the embedded server starts.
        check_schema_name(schema)
        url = resolve_uri(uri)
        url_options: dict[str, bool | float] = {}
        if url is not None:
            url, url_options = split_url_options(url)
        if statement_cache is None:
            statement_cache = bool(url_options.get("statement_cache", True))
        if coalesce_appends is None:
            coalesce_appends = bool(url_options.get("coalesce_appends", True))
        if failover_timeout is None:
            failover_timeout = float(url_options.get("failover_timeout", 0.0))
        if response_timeout is None and "response_timeout" in url_options:
            response_timeout = float(url_options["response_timeout"])
        if read_uri is not None:
            read_uri, _ = split_url_options(read_uri)
        self._options = {
            "schema": schema,
            "pool_size": pool_size,
            "connect_timeout": connect_timeout,
            "acquire_timeout": acquire_timeout,
            "statement_cache": statement_cache,
            "application_name": application_name,
            "coalesce_appends": coalesce_appends,
            "failover_timeout": failover_timeout,
            "response_timeout": response_timeout,
            "read_url": read_uri,
            "password": None if password is None else _blocking_password(password),
        }
        self._closed = False
        self._store: NativeDatabase | None = None
        self._sessions: NativeSessions | None = None
        self._start_lock = asyncio.Lock()
        if url is not None:
            # Parses and validates the URL and options now (ConfigurationError), connects later.
            self._store = NativeDatabase(url, **self._options)  # type: ignore[arg-type]
        _open_databases.add(self)

    @property
    def schema(self) -> str:
        return str(self._options["schema"])

    async def store(self) -> NativeDatabase:
        """The native pool handle, starting the embedded PostgreSQL first if no URL was given."""
        store = self._store
        if store is not None:
            return store
        if self._closed:
            raise ClosedError("the database was closed")
        async with self._start_lock:
            if self._store is None:
                url = await asyncio.to_thread(embedded.default_uri)
                self._store = NativeDatabase(url, **self._options)  # type: ignore[arg-type]
            return self._store

    async def sessions(self) -> NativeSessions:
        """The native session operations on this pool: one per `Database`, so every session
        service on it shares one append-coalescing queue."""
        if self._sessions is None:
            self._sessions = NativeSessions(await self.store())
        return self._sessions

    async def migrate(self) -> int:
        """Create or upgrade the tables now (otherwise done on first use); returns the schema
        version."""
        return await (await self.store()).migrate()

    def pool_status(self) -> dict[str, int]:
        """The pool right now: ``max_size``, ``size`` (open connections), ``available`` (idle),
        ``in_use`` (handed out) and ``waiting`` (callers queued for a connection)."""
        if self._store is None:
            status = {"max_size": int(self._options["pool_size"]), "size": 0, "available": 0}
            status["waiting"] = 0
        else:
            status = self._store.pool_status()
        status["in_use"] = max(0, status["size"] - status["available"])
        return status

    def describe(self) -> str:
        """Where this database points (never includes the password)."""
        if self._store is None:
            return "embedded PostgreSQL (not started yet)"
        return self._store.describe()

    def close_now(self) -> None:
        """Close the pool synchronously (idle connections now, busy ones when returned)."""
        self._closed = True
        if self._store is not None:
            self._store.close()
        _open_databases.discard(self)

    async def close(self) -> None:
        """Close the pool."""
        self.close_now()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Database({self.describe()})"
