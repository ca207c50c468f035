"""Exceptions raised by adk-postgres.

Every failure that crosses the Rust boundary arrives as one of these classes, chosen by the
PostgreSQL SQLSTATE (or by the kind of client-side failure), never as a bare RuntimeError.
ADK's own errors (``AlreadyExistsError``, ``SessionNotFoundError``, ``StaleSessionError``) are
raised as ADK defines them, so code written against ADK keeps working.

Each exception carries ``sqlstate`` (``None`` for client-side failures). Messages never
contain a password.
"""

from __future__ import annotations

import builtins


class AdkPostgresError(Exception):
    """Base class of every adk-postgres error."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class ConfigurationError(AdkPostgresError, ValueError):
    """The connection URL or an option is invalid (nothing was sent to a server)."""


class DatabaseConnectionError(AdkPostgresError, builtins.ConnectionError):
    """The server could not be reached, refused the login, or the connection dropped."""


class PoolTimeoutError(AdkPostgresError, builtins.TimeoutError):
    """No pooled connection became free (or could be opened) within the acquire timeout."""


class StatementTimeoutError(AdkPostgresError, builtins.TimeoutError):
    """The server cancelled a statement (statement_timeout or a cancel request)."""


class DataError(AdkPostgresError, ValueError):
    """A value cannot be stored: not representable as JSON/JSONB (NaN, NUL characters,
    lone surrogates), too long for a column, or otherwise rejected by the server."""


class IntegrityError(AdkPostgresError):
    """A constraint was violated (for example an event id already stored in the session)."""


class SerializationFailure(AdkPostgresError):
    """The server aborted the transaction because of a concurrent update or deadlock."""


class SchemaError(AdkPostgresError):
    """The database schema is missing, newer than this version understands, or a migration
    failed."""


class InsufficientPrivilegeError(AdkPostgresError, PermissionError):
    """The database role lacks a privilege needed for the operation."""


class ProcessForkedError(AdkPostgresError, RuntimeError):
    """A pool created in a parent process was used in a forked child. Create a new service
    (or Database) in the child instead."""


class ClosedError(AdkPostgresError, RuntimeError):
    """The service or database was used after ``close()``."""


class DatabaseError(AdkPostgresError):
    """Any other server-side error; ``sqlstate`` tells which."""


class InternalError(AdkPostgresError, RuntimeError):
    """A bug in adk-postgres itself (a task of its Rust core panicked). The call failed instead
    of hanging; for an append, whether it was stored is unknown: reload the session."""


class SessionBusyError(AdkPostgresError):
    """Another run holds the session: the run was refused (strategy ``reject``) or waited
    longer than its timeout (strategy ``enqueue``). Nothing of it was stored."""


class RunWaitTimeoutError(SessionBusyError, builtins.TimeoutError):
    """A run waited for its session (strategy ``enqueue``) longer than its wait timeout."""


class NotFoundError(AdkPostgresError, LookupError):
    """What was asked for does not exist (HTTP routes answer 404). ADK's own
    ``SessionNotFoundError`` is raised for sessions, as ADK defines it."""


class AgentNotFoundError(NotFoundError):
    """The agent registry has no agent under this name (or not this version of it)."""


class AgentExistsError(IntegrityError):
    """The agent registry already has an agent under this name (a create, not a put)."""


class RunLeaseLostError(AdkPostgresError):
    """This run no longer holds its session's run lease — a newer run interrupted it, or its
    process stopped for longer than the lease expiry and another run took the session over.
    The append was refused (nothing stored); the run must stop."""


__all__ = [
    "AdkPostgresError",
    "AgentExistsError",
    "AgentNotFoundError",
    "ClosedError",
    "ConfigurationError",
    "DataError",
    "DatabaseConnectionError",
    "DatabaseError",
    "InsufficientPrivilegeError",
    "IntegrityError",
    "InternalError",
    "NotFoundError",
    "RunLeaseLostError",
    "RunWaitTimeoutError",
    "SessionBusyError",
    "PoolTimeoutError",
    "ProcessForkedError",
    "SchemaError",
    "SerializationFailure",
    "StatementTimeoutError",
]
