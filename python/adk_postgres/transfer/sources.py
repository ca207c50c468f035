"""Reading an existing ADK session database through ADK's own services.

Kinds, told apart by their tables:

* ``adk-sqlite`` — ``SqliteSessionService`` files (ADK's own SQLite layout; no
  ``adk_internal_metadata`` table, events keep their JSON in ``event_data``).
* ``adk-database`` — ``DatabaseSessionService`` databases on SQLite, PostgreSQL or MySQL, in
  the v1 (JSON) or v0 (pickled actions) schema; ADK's service reads both.

Reading through ADK's services means the events come back exactly as ADK itself would return
them, whatever the schema version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.adk.sessions.base_session_service import BaseSessionService
from google.adk.sessions.session import Session

from ..errors import ConfigurationError

IMPORT_EXTRA_HINT = "pip install 'adk-postgres[import]'"


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Source:
    """An open source database: its kind, a readable label and ADK's service on it."""

    kind: str
    label: str
    service: BaseSessionService
    _sqlite_path: Path | None = None
    _extra: dict[str, Any] = field(default_factory=dict)

    async def app_names(self) -> list[str]:
        if self._sqlite_path is not None:
            with sqlite3.connect(f"file:{self._sqlite_path}?mode=ro", uri=True) as conn:
                rows = conn.execute("SELECT DISTINCT app_name FROM sessions ORDER BY 1")
                return [row[0] for row in rows]
        from sqlalchemy import text

        engine = self.service.db_engine  # type: ignore[attr-defined]
        async with engine.connect() as conn:
            result = await conn.execute(text("SELECT DISTINCT app_name FROM sessions ORDER BY 1"))
            return [row[0] for row in result]

    async def sessions(self, app_name: str) -> AsyncIterator[Session]:
        """Every session of ``app_name`` (all users), with all its events."""
        listed = await self.service.list_sessions(app_name=app_name)
        for summary in sorted(listed.sessions, key=lambda s: (s.user_id, s.id)):
            session = await self.service.get_session(
                app_name=app_name, user_id=summary.user_id, session_id=summary.id
            )
            if session is not None:
                yield session

    async def close(self) -> None:
        close = getattr(self.service, "close", None)
        if close is not None:
            await close()


def _sqlite_tables(path: Path) -> dict[str, set[str]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            name: {col[1] for col in conn.execute(f'PRAGMA table_info("{name}")')} for name in names
        }


def _database_service(url: str) -> BaseSessionService:
    try:
        from google.adk.sessions.database_session_service import DatabaseSessionService

        return DatabaseSessionService(db_url=url)
    except ImportError as exc:
        raise ConfigurationError(
            f"reading this source needs SQLAlchemy and a driver ({exc.name or exc}); "
            f"install them with: {IMPORT_EXTRA_HINT}"
        ) from exc


def open_source(url: str) -> Source:
    """Open ``url`` (a SQLite path or ``sqlite:///…``, or a SQLAlchemy database URL)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "://" not in url:
        scheme, path = "", Path(url)
    elif scheme == "sqlite" or scheme.startswith("sqlite+"):
        # SQLAlchemy's convention: sqlite:///relative/path, sqlite:////absolute/path.
        path = Path(parts.path[1:])
    else:
        path = None
    if path is not None:
        if not path.is_file():
            raise ConfigurationError(f"source database not found: {path}")
        tables = _sqlite_tables(path)
        if "sessions" not in tables or "events" not in tables:
            raise ConfigurationError(f"{path} is not an ADK session database (no sessions table)")
        if "adk_internal_metadata" in tables or "actions" in tables["events"]:
            version = "v0" if "actions" in tables["events"] else "v1"
            service = _database_service(f"sqlite+aiosqlite:///{path.resolve()}")
            return Source(f"adk-database ({version})", str(path), service, _sqlite_path=path)
        from google.adk.sessions.sqlite_session_service import SqliteSessionService

        return Source("adk-sqlite", str(path), SqliteSessionService(str(path)), _sqlite_path=path)
    if scheme in ("postgresql", "postgres"):
        url = urlunsplit(parts._replace(scheme="postgresql+asyncpg"))
    elif not (scheme.startswith("postgresql+") or scheme.startswith("mysql")):
        raise ConfigurationError(f"unsupported source URL scheme {parts.scheme!r}")
    return Source("adk-database", redact(url), _database_service(url))
