"""adk-postgres: fast, correct PostgreSQL persistence for Google's Agent Development Kit.

>>> from adk_postgres import PostgresSessionService
>>> service = PostgresSessionService("postgresql://user:pass@localhost/db")  # or no URL: embedded

The I/O runs in a Rust core (tokio-postgres, deadpool-postgres); this package holds ADK's
semantics.
"""

from . import errors
from ._native import SCHEMA_VERSION
from ._native import __version__ as _native_version
from .artifact_service import PostgresArtifactService
from .database import Database
from .memory_service import PostgresMemoryService
from .session_service import PostgresSessionService

__version__ = _native_version

__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "PostgresArtifactService",
    "PostgresMemoryService",
    "PostgresSessionService",
    "__version__",
    "errors",
]
