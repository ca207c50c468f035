"""A throwaway PgBouncer on 127.0.0.1:<free port> in front of one PostgreSQL.

Runs the distribution's ``pgbouncer`` (Debian 12: 1.18) in the foreground as the servers' user,
with its own ini, userlist, pid file and log in a temporary directory, and ``auth_type = trust``
(the backend's pg_hba decides). Every database name is forwarded to the target (``* = ...``).

Found on PgBouncer 1.18: asyncpg, psql and adk_postgres' Rust core (tokio-postgres) connect
with no ``ignore_startup_parameters`` at all; ``application_name`` is tracked by PgBouncer
itself. PgBouncer refuses a connection whose startup packet carries another parameter, e.g.
``options`` (libpq's ``?options=-c...``) or ``extra_float_digits`` (JDBC): ``extra_float_digits``
is ignored by default here (harmless), ``options`` is not (ignoring it would silently drop
settings such as search_path; pass ``ignore_startup_parameters`` to change that). In transaction
and statement modes, named prepared statements do not survive the transaction: asyncpg needs
``statement_cache_size=0``.

``retarget(port)`` points it at another server: it rewrites the ini and sends SIGHUP (RELOAD);
PgBouncer then closes the old server connections as they are released.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Literal

import psutil

from .postgres import (
    alive,
    end_processes,
    find_command,
    free_port,
    make_temp_dir,
    missing,
    port_open,
    process,
    reap,
    spawn_as_server_user,
    track,
    untrack,
    wait_until,
    write_file,
)

PoolMode = Literal["session", "transaction", "statement"]

__all__ = ["PgBouncer", "missing_pgbouncer"]


def missing_pgbouncer() -> str | None:
    """Why PgBouncer cannot run here, or None."""
    return missing("pgbouncer")


class PgBouncer:
    """PgBouncer forwarding every database to ``target_host:target_port``.

    ``with PgBouncer("127.0.0.1", pg.port) as bouncer: asyncpg.connect(bouncer.url())``."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        pool_mode: PoolMode = "transaction",
        *,
        max_client_conn: int = 200,
        default_pool_size: int = 20,
        ignore_startup_parameters: tuple[str, ...] = ("extra_float_digits",),
        extra_settings: dict[str, str] | None = None,
        start_timeout: float = 15,
        port: int | None = None,
    ) -> None:
        if pool_mode not in ("session", "transaction", "statement"):
            raise ValueError(f"unknown pool_mode {pool_mode!r}")
        self.target_host = target_host
        self.target_port = target_port
        self.pool_mode = pool_mode
        self.max_client_conn = max_client_conn
        self.default_pool_size = default_pool_size
        self.ignore_startup_parameters = ignore_startup_parameters
        self.extra_settings = dict(extra_settings or {})
        self.start_timeout = start_timeout
        self.port = port or 0
        self.base: Path | None = None
        self._popen: subprocess.Popen[bytes] | None = None
        self._proc: psutil.Process | None = None

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def proc(self) -> psutil.Process | None:
        """A handle on the pgbouncer process (kept after ``stop()``, for checks)."""
        return self._proc

    @property
    def log_path(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "pgbouncer.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""

    def _ini(self) -> str:
        assert self.base is not None
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",  # TCP only: no socket file outside our directory
            "auth_type": "trust",
            "auth_file": str(self.base / "userlist.txt"),
            "admin_users": "postgres",
            "pool_mode": self.pool_mode,
            "max_client_conn": str(self.max_client_conn),
            "default_pool_size": str(self.default_pool_size),
            "ignore_startup_parameters": ",".join(self.ignore_startup_parameters),
            "server_login_retry": "1",  # after a failover, retry the new backend soon
            "logfile": str(self.log_path),
            "pidfile": str(self.base / "pgbouncer.pid"),
            **self.extra_settings,
        }
        lines = ["[databases]", f"* = host={self.target_host} port={self.target_port}", ""]
        lines += ["[pgbouncer]", *(f"{key} = {value}" for key, value in settings.items()), ""]
        return "\n".join(lines)

    def start(self) -> PgBouncer:
        reason = missing_pgbouncer()
        if reason:
            raise RuntimeError(reason)
        self.base = make_temp_dir("adkpg-pgbouncer-")
        track(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        assert self.base is not None
        binary = find_command("pgbouncer")
        assert binary is not None
        if not self.port:
            self.port = free_port()
        write_file(self.base / "userlist.txt", '"postgres" ""\n')
        write_file(self.base / "pgbouncer.ini", self._ini())
        self._popen = spawn_as_server_user(
            [binary, str(self.base / "pgbouncer.ini")], self.base, self.base / "stdout.log"
        )
        self._proc = process(self._popen.pid)

        def listening() -> bool:
            if self._popen is not None and self._popen.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start:\n{self.log()}")
            return port_open(self.port)

        wait_until(listening, self.start_timeout, f"pgbouncer on port {self.port}")

    def retarget(self, target_port: int, target_host: str | None = None) -> None:
        """Points PgBouncer at another server: rewrites the ini and reloads it (SIGHUP)."""
        assert self.base is not None and self._proc is not None and alive(self._proc), "not running"
        self.target_port = target_port
        self.target_host = target_host or self.target_host
        write_file(self.base / "pgbouncer.ini", self._ini())
        self._proc.send_signal(signal.SIGHUP)
        time.sleep(0.2)  # the reload is asynchronous; give it a moment before new clients

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, to its own pid; removes its directory."""
        untrack(self)
        if self._proc is not None and alive(self._proc):
            # SIGINT is PgBouncer's "safe shutdown" that waits for clients: SIGTERM is immediate.
            end_processes([self._proc], timeout=5)
        reap(self._popen)
        self._popen = None
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
