"""``adk-postgres web|api_server --workers N``: N server processes on one host:port.

ADK's server is one uvicorn process, so one core. With ``--workers N`` the command becomes a
pre-fork supervisor:

* The parent resolves the database once (starting the embedded PostgreSQL itself when no URL
  is configured), migrates it, checks that the port is free and then starts N workers. Each
  worker is a fresh interpreter (``python -m adk_postgres.cli._worker``: never ``os.fork()`` of
  a process whose Rust runtime and pool threads exist) that runs ADK's command exactly as the
  single-process command does, with its own pool.
* The URL reaches the workers through a pipe, never through argv (visible in ``ps``) or the
  environment; the workers' environment holds only the numbers of their two pipes.
* Ctrl-C, SIGTERM or SIGHUP to the parent: SIGTERM to every worker (uvicorn's graceful
  shutdown), at most :data:`STOP_GRACE` seconds of waiting, SIGKILL for the rest, then the
  embedded PostgreSQL is released. Workers ignore SIGINT and SIGHUP themselves (a terminal
  sends those to the whole process group; the parent forwards one SIGTERM), and get SIGTERM
  when the parent dies (``PR_SET_PDEATHSIG``), so they never outlive it.
* A worker that dies during start-up ends the command (exit status 1, all others stopped);
  one that dies later is replaced, at most :data:`MAX_RESTARTS` times within
  :data:`RESTART_WINDOW` seconds.

**How N processes share one port: ``SO_REUSEPORT``.** Each worker binds its own listening
socket to host:port with ``SO_REUSEPORT`` and the kernel spreads new connections over the
sockets by a hash of the connection's addresses. The other design, one socket bound by the
parent and inherited by every worker (uvicorn's and gunicorn's ``--workers``), lets the workers
race for each accept: asyncio accepts up to ``backlog`` pending connections per wake-up, so the
worker that wakes first takes a burst and keeps those connections while they are kept alive.
Measured on the 2-core test machine, 32 connections opened at once to 2 asyncio workers split
32/0, 29/3, 29/3, 26/6 and 21/11 on a shared socket, and 16/16 to 19/13 with SO_REUSEPORT (4
workers: up to 32/0/0/0 shared, about 11/8/7/6 with SO_REUSEPORT). What it costs: connections
still queued on a worker's socket when that worker dies are reset (new ones go to the others
at once), and another process of the same user could join the port later, as with any
SO_REUSEPORT server. A port already in use is found before any worker starts: the parent
first binds host:port *without* SO_REUSEPORT, which fails if anything listens there.

ADK builds and runs uvicorn itself (``cli_tools_click``: ``uvicorn.Server(config).run()``).
The least invasive hook is in the worker process only: ``uvicorn.Server.run`` is wrapped to
pass the worker's own sockets (its ``sockets=`` parameter, which uvicorn's gunicorn worker
uses), and ``Server.startup`` to tell the parent, through a pipe, that the worker serves.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import click

from ._output import err_console, fail

#: Environment variable that makes a process a worker: "READY_FD,CONFIG_FD" (pipe numbers).
WORKER_ENV = "ADK_POSTGRES_WORKER_PIPES"
#: Seconds the workers get to finish their requests after SIGTERM before they are killed.
STOP_GRACE = 10.0
#: Seconds all workers get to start serving.
STARTUP_TIMEOUT = 180.0
#: At most this many replacements of crashed workers within RESTART_WINDOW seconds; more
#: and the command stops (a worker that cannot run would otherwise be restarted forever).
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: Largest configuration the parent writes into a worker's pipe before the worker runs
#: (a pipe holds 64 KiB on Linux; the configuration is a URL and two settings).
_MAX_CONFIG = 60_000


# ---------------------------------------------------------------------------------------------
# Sockets


def listen_sockets(
    host: str | None, port: int, *, reuse_port: bool, backlog: int = 2048
) -> list[socket.socket]:
    """Listening TCP sockets for ``host:port``, one per address ``host`` resolves to (as
    asyncio's ``create_server(host=..., port=...)``, which uvicorn uses, would bind)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
            if port == 0:  # every address on the port the first one got
                port = sock.getsockname()[1]
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _cannot_listen(host: str, port: int, exc: OSError) -> click.ClickException:
    reason = exc.strerror or str(exc)
    return click.ClickException(f"cannot listen on {_address(host, port)}: {reason}")


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_port_free(host: str, port: int) -> int:
    """Fail (one line, exit 1) when something listens on ``host:port``; the port to serve on
    (a free one for port 0)."""
    try:
        sockets = listen_sockets(host, port, reuse_port=False)
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None
    try:
        return int(sockets[0].getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()


# ---------------------------------------------------------------------------------------------
# The worker side


@dataclass(frozen=True)
class WorkerConfig:
    """What the parent hands one worker through its configuration pipe."""

    index: int
    parent: int
    database_url: str | None
    schema: str | None
    pool_size: int | None
    ready_fd: int


_current: WorkerConfig | None = None


def current_worker() -> WorkerConfig | None:
    """This process's configuration when it is a worker (set by :func:`become_worker`)."""
    return _current


def become_worker() -> None:
    """Called first in a worker process: read the configuration pipe, make sure the worker
    dies with its parent, and remove the pipe numbers from the environment (so processes the
    agents start do not inherit them)."""
    global _current
    pipes = os.environ.pop(WORKER_ENV, None)
    if not pipes:
        raise SystemExit("adk-postgres: this module is started by `--workers`, not by hand")
    ready_fd, config_fd = (int(part) for part in pipes.split(","))
    chunks = []
    while chunk := os.read(config_fd, 65536):
        chunks.append(chunk)
    os.close(config_fd)
    os.set_inheritable(ready_fd, False)
    data = json.loads(b"".join(chunks))
    _die_with_parent()
    if os.getppid() != data["parent"]:  # the parent died before the line above
        raise SystemExit(1)
    _current = WorkerConfig(
        index=data["index"],
        parent=data["parent"],
        database_url=data.get("database_url"),
        schema=data.get("schema"),
        pool_size=data.get("pool_size"),
        ready_fd=ready_fd,
    )


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl
        pass


def install_worker_hooks(worker: WorkerConfig) -> None:
    """Make the uvicorn server ADK starts in this process serve on SO_REUSEPORT sockets of its
    own and report to the parent once it serves (see the module docstring)."""
    import uvicorn
    import uvicorn.server

    run = uvicorn.Server.run
    startup = uvicorn.Server.startup

    def run_on_shared_port(self: Any, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None:
            host, port = self.config.host, self.config.port
            try:
                sockets = listen_sockets(host, port, reuse_port=True, backlog=self.config.backlog)
            except OSError as exc:
                raise _cannot_listen(host, port, exc) from None
        return run(self, sockets=sockets)

    async def startup_and_report(self: Any, sockets: list[socket.socket] | None = None) -> None:
        await startup(self, sockets=sockets)
        if self.started:
            try:
                os.write(worker.ready_fd, b"ready\n")
                os.close(worker.ready_fd)
            except OSError:  # the parent is gone; PR_SET_PDEATHSIG stops this process
                pass

    # The parent alone reacts to Ctrl-C (see the module docstring): uvicorn would otherwise
    # install its handler for SIGINT over the SIG_IGN of `_worker`.
    uvicorn.server.HANDLED_SIGNALS = (signal.SIGTERM,)
    uvicorn.Server.run = run_on_shared_port  # type: ignore[method-assign]
    uvicorn.Server.startup = startup_and_report  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------
# The parent side


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    ready_fd: int | None
    ready: bool = False


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class Supervisor:
    """Starts, watches and stops the worker processes (see the module docstring)."""

    argv: list[str]
    count: int
    url: str  # where the workers serve, for the messages only
    config: dict[str, Any]
    workers: list[_Worker | None] = field(default_factory=list)
    _restarts: deque[float] = field(default_factory=deque)
    _stop_signal: int | None = None
    _stopping: bool = False
    _force: bool = False

    def run(self) -> int:
        """Serve until a signal or a failure; the exit status."""
        self._selector = selectors.DefaultSelector()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._selector.register(wake_r, selectors.EVENT_READ, None)
        previous_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            return self._serve()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            self._selector.close()
            os.close(wake_r)
            os.close(wake_w)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGCHLD:
            return  # only wakes up `_wait`
        if self._stopping and signum == signal.SIGINT:
            self._force = True
        if self._stop_signal is None:
            self._stop_signal = signum

    def _serve(self) -> int:
        for index in range(self.count):
            self.workers.append(self._spawn(index))  # one by one: all are stopped on failure
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not all(w is not None and w.ready for w in self.workers):
            if self._stop_signal is not None:
                return 0
            self._wait(min(1.0, max(0.0, deadline - time.monotonic())))
            for worker in self.workers:
                assert worker is not None
                code = worker.process.poll()
                if code is not None and not worker.ready:
                    fail(
                        f"worker {worker.index + 1} of {self.count} (pid {worker.process.pid}) "
                        f"{_describe_exit(code)} during start-up; stopping the others"
                    )
                    return 1
            if time.monotonic() > deadline:
                fail(f"the workers did not start serving within {STARTUP_TIMEOUT:.0f} s")
                return 1
        pids = ", ".join(str(w.process.pid) for w in self.workers if w is not None)
        err_console.print(
            f"adk-postgres: {self.count} worker processes serving {self.url} (pids {pids})",
            highlight=False,
            soft_wrap=True,
        )
        while True:
            if self._stop_signal is not None:
                return 0
            self._wait(1.0)
            for index, worker in enumerate(self.workers):
                assert worker is not None
                code = worker.process.poll()
                if code is None or self._stop_signal is not None:
                    continue
                self._forget(worker)
                now = time.monotonic()
                while self._restarts and now - self._restarts[0] > RESTART_WINDOW:
                    self._restarts.popleft()
                if len(self._restarts) >= MAX_RESTARTS:
                    fail(
                        f"worker {index + 1} (pid {worker.process.pid}) {_describe_exit(code)}"
                        f" after {MAX_RESTARTS} restarts within {RESTART_WINDOW:.0f} s;"
                        " stopping"
                    )
                    return 1
                self._restarts.append(now)
                state = "" if worker.ready else " before it served"
                replacement = self._spawn(index)
                err_console.print(
                    f"adk-postgres: worker {index + 1} (pid {worker.process.pid}) "
                    f"{_describe_exit(code)}{state}; restarted it as pid "
                    f"{replacement.process.pid}",
                    highlight=False,
                    soft_wrap=True,
                )
                self.workers[index] = replacement

    def _spawn(self, index: int) -> _Worker:
        config = json.dumps({**self.config, "index": index, "parent": os.getpid()}).encode()
        if len(config) > _MAX_CONFIG:
            raise click.ClickException("the database URL is too long to hand to the workers")
        ready_r, ready_w = os.pipe()
        config_r, config_w = os.pipe()
        try:
            os.write(config_w, config)  # fits the pipe: the worker reads it at start
        finally:
            os.close(config_w)
        env = dict(os.environ)
        env[WORKER_ENV] = f"{ready_w},{config_r}"
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "adk_postgres.cli._worker", *self.argv],
                env=env,
                pass_fds=(ready_w, config_r),
            )
        except OSError as exc:
            os.close(ready_r)
            raise click.ClickException(f"cannot start a worker process: {exc}") from None
        except BaseException:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
            os.close(config_r)
        os.set_blocking(ready_r, False)
        worker = _Worker(index, process, ready_r)
        self._selector.register(ready_r, selectors.EVENT_READ, worker)
        return worker

    def _wait(self, timeout: float) -> None:
        """Sleep until a worker reports, a signal arrives (SIGCHLD included) or ``timeout``."""
        for key, _ in self._selector.select(timeout):
            worker = key.data
            if worker is None:  # the signal wake-up pipe
                try:
                    while os.read(key.fd, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            try:
                data = os.read(key.fd, 64)
            except BlockingIOError:
                continue
            if data.startswith(b"ready"):
                worker.ready = True
            self._forget(worker)  # "ready" or EOF: nothing more comes

    def _forget(self, worker: _Worker) -> None:
        if worker.ready_fd is not None:
            self._selector.unregister(worker.ready_fd)
            os.close(worker.ready_fd)
            worker.ready_fd = None

    def _stop_all(self) -> None:
        """SIGTERM to every worker, at most STOP_GRACE seconds (a second Ctrl-C: none), then
        SIGKILL."""
        self._stopping = True
        alive = [w for w in self.workers if w is not None and w.process.poll() is None]
        for worker in alive:
            try:
                worker.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE
        while alive and time.monotonic() < deadline and not self._force:
            self._wait(0.1)
            alive = [w for w in alive if w.process.poll() is None]
        for worker in alive:
            if worker.process.poll() is None:
                reason = "on a second Ctrl-C" if self._force else f"after {STOP_GRACE:.0f} s"
                err_console.print(
                    f"adk-postgres: worker {worker.index + 1} (pid {worker.process.pid}) was "
                    f"still running {reason}; killed it",
                    highlight=False,
                    soft_wrap=True,
                )
                worker.process.kill()
            worker.process.wait()
        for worker in self.workers:
            if worker is not None:
                self._forget(worker)
