"""Where the CLI's database settings come from: flags, then the environment, then ``.env``.

Precedence (first wins): ``--database-url`` flag, ``ADK_POSTGRES_DATABASE_URL``,
``DATABASE_URL``, and with none of them the embedded PostgreSQL. A ``.env`` file (the current
directory's, or ``--env-file``) fills in variables the environment does not already set.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import load_dotenv

from .. import embedded
from ..database import DEFAULT_SCHEMA, Database
from ..errors import ConfigurationError

URL_ENV_VARS = ("ADK_POSTGRES_DATABASE_URL", "DATABASE_URL")
SCHEMA_ENV = "ADK_POSTGRES_SCHEMA"
POOL_SIZE_ENV = "ADK_POSTGRES_POOL_SIZE"


def load_env_file(path: Path | None) -> Path | None:
    """Load ``path`` (or ``./.env`` when it exists) without overriding the real environment.

    Returns the file that was loaded, if any. An explicit path that does not exist is an error.
    """
    if path is None:
        candidate = Path.cwd() / ".env"
        if not candidate.is_file():
            return None
        path = candidate
    elif not path.is_file():
        raise ConfigurationError(f"env file not found: {path}")
    load_dotenv(path, override=False)
    return path


#: What stands for a password in a command line we print.
PASSWORD_PLACEHOLDER = "<password>"

_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*):[^@/?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*")
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


def without_password(url: str) -> str:
    """``url`` with any password replaced by a placeholder (URL user info, ``?password=``, or
    a ``password=`` keyword of a libpq connection string)."""
    if "://" in url:
        url = _URL_PASSWORD.sub(rf"\1:{PASSWORD_PLACEHOLDER}@", url)
        return _QUERY_PASSWORD.sub(rf"\g<1>{PASSWORD_PLACEHOLDER}", url)
    return _KEYWORD_PASSWORD.sub(rf"\g<1>{PASSWORD_PLACEHOLDER}", url)


@dataclass
class Settings:
    """The database the CLI talks to, resolved once per invocation."""

    url_flag: str | None = None
    schema_flag: str | None = None
    pool_size_flag: int | None = None
    force_embedded: bool = False
    env_file: Path | None = None
    _database: Database | None = field(default=None, repr=False)

    @property
    def url(self) -> str | None:
        """The configured URL, or ``None`` for the embedded PostgreSQL."""
        if self.force_embedded:
            return None
        if self.url_flag:
            return self.url_flag
        for name in URL_ENV_VARS:
            value = os.environ.get(name)
            if value:
                return value
        return None

    @property
    def uses_embedded(self) -> bool:
        return self.url is None

    @property
    def schema(self) -> str:
        # An explicit empty --schema is refused later (ConfigurationError), not turned into
        # the default.
        if self.schema_flag is not None:
            return self.schema_flag
        return os.environ.get(SCHEMA_ENV) or DEFAULT_SCHEMA

    @property
    def pool_size(self) -> int:
        if self.pool_size_flag is not None:
            return self.pool_size_flag
        raw = os.environ.get(POOL_SIZE_ENV)
        if not raw:
            return 10
        try:
            value = int(raw)
        except ValueError:
            raise ConfigurationError(f"{POOL_SIZE_ENV} must be an integer, got {raw!r}") from None
        if value < 1:
            raise ConfigurationError(f"{POOL_SIZE_ENV} must be >= 1")
        return value

    def command_prefix(self) -> str:
        """``adk-postgres`` with the global options this invocation was given, for advice such
        as "run `adk-postgres migrate`": without them the advice would act on another database
        or schema. A password in ``-d`` is replaced by a placeholder, never printed."""
        parts = ["adk-postgres"]
        if self.env_file is not None:
            parts += ["--env-file", str(self.env_file)]
        if self.force_embedded:
            parts.append("--embedded")
        if self.url_flag:
            parts += ["-d", without_password(self.url_flag)]
        if self.schema_flag is not None:
            parts += ["--schema", self.schema_flag]
        return shlex.join(parts)

    def concrete_url(self) -> str:
        """A URL a client can connect to; starts the embedded PostgreSQL when none is set."""
        return self.url or embedded.default_uri()

    def database(self) -> Database:
        """One `Database` per invocation (created on first use, closed by the CLI at exit)."""
        if self._database is None:
            self._database = Database(
                self.concrete_url(), schema=self.schema, pool_size=self.pool_size
            )
        return self._database

    def close(self) -> None:
        if self._database is not None:
            self._database.close_now()
            self._database = None
