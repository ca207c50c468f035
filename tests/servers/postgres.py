"""A throwaway PostgreSQL on 127.0.0.1 from the distribution's binaries, and the helpers the
other servers share: finding binaries, free ports, running programs as the ``postgres`` user,
waiting with a deadline, and ending a process tree by pid.

PostgreSQL refuses to run as root, and so does Patroni (it runs PostgreSQL): when this process
is root, servers run as the OS user ``postgres`` and their temporary directories (under
/var/tmp, which that user can reach, unlike /root) are chowned to it. Otherwise they run as the
current user.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import psutil

T = TypeVar("T")

# Debian's packages put some programs (pgbouncer) in /usr/sbin, which a non-root PATH may lack.
_EXTRA_PATH = ("/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin")


def pg_bin_dir() -> Path | None:
    """The newest distribution PostgreSQL bin directory (/usr/lib/postgresql/<v>/bin)."""

    def version(path: Path) -> tuple[int, ...]:
        try:
            return tuple(int(part) for part in path.parent.name.split("."))
        except ValueError:
            return (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bin_dir in candidates:
        if all((bin_dir / name).exists() for name in ("initdb", "pg_ctl", "postgres", "psql")):
            return bin_dir
    return None


def find_command(name: str) -> str | None:
    """Absolute path of a program, looking in PATH and then in the usual system directories."""
    found = shutil.which(name)
    if found:
        return found
    return shutil.which(name, path=os.pathsep.join(_EXTRA_PATH))


def run_user() -> str | None:
    """The OS user servers run as: ``postgres`` when we are root, else None (ourselves)."""
    return "postgres" if os.geteuid() == 0 else None


def missing(*commands: str) -> str | None:
    """Why the servers cannot run here (a reason for ``pytest.skip``), or None if they can.

    Always checks for the distribution's PostgreSQL binaries and, as root, for the ``postgres``
    user; ``commands`` are further programs needed (``pgbouncer``, ``patroni``, ``etcd``)."""
    if os.name != "posix":
        return "needs a POSIX system"
    if pg_bin_dir() is None:
        return "no distribution PostgreSQL binaries (/usr/lib/postgresql/*/bin)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' OS user to run PostgreSQL as"
    absent = [name for name in commands if find_command(name) is None]
    if absent:
        return f"programs not installed: {', '.join(absent)} (see .ci/run for the apt packages)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def wait_until(
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2
) -> T:
    """Calls ``predicate`` until it returns something truthy, or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def make_temp_dir(prefix: str) -> Path:
    """A fresh directory under /var/tmp owned by the user the servers run as."""
    parent = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path(tempfile.gettempdir())
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    chown_to_run_user(base)
    return base


def chown_to_run_user(path: Path) -> None:
    user = run_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def write_file(path: Path, text: str, mode: int = 0o600) -> None:
    """Writes a config file the servers (running as ``postgres``) can read."""
    path.write_text(text)
    path.chmod(mode)
    chown_to_run_user(path)


def _as_user_kwargs(cwd: Path) -> dict[str, Any]:
    user = run_user()
    env = dict(os.environ)
    env["HOME"] = str(cwd)  # postgres' own home may not be writable; keep dotfiles in our dir
    kwargs: dict[str, Any] = {"cwd": str(cwd), "env": env}
    if user is not None:
        entry = pwd.getpwnam(user)
        # Drop root's group and supplementary groups too, not only the uid.
        kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        env["USER"] = env["LOGNAME"] = user
    return kwargs


def run_as_server_user(
    args: Sequence[str], cwd: Path, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs a program to completion as the servers' user; raises with its output on failure."""
    result = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, **_as_user_kwargs(cwd)
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{args[0]} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def spawn_as_server_user(args: Sequence[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """Starts a long-running program as the servers' user, output to ``log``.

    It gets its own session, so a Ctrl-C aimed at pytest reaches only pytest, whose cleanup then
    stops it by pid."""
    out: IO[bytes] = log.open("ab")
    try:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **_as_user_kwargs(cwd),
        )
    finally:
        out.close()  # the child has its own copy


def postmaster_pid(data_dir: Path) -> int | None:
    """The postmaster's pid from ``postmaster.pid`` in a data directory, if there is one."""
    try:
        first = (data_dir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        # Negative for a standalone backend (postgres --single, which pg_rewind may run).
        return abs(int(first)) or None
    except (OSError, ValueError):
        return None


def process(pid: int | None) -> psutil.Process | None:
    """A handle on a running process, or None. psutil remembers its start time, so a later
    signal through the handle never hits another process that reused the pid."""
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.Error, ValueError):
        return None


def own_postmaster(data_dir: Path) -> psutil.Process | None:
    """The postmaster running in ``data_dir``, if any. postmaster.pid may be stale and its pid
    reused by another process: only a process whose working directory is the data directory
    (a postmaster chdirs there) is taken."""
    proc = process(postmaster_pid(data_dir))
    if proc is None:
        return None
    try:
        if Path(proc.cwd()).resolve() == data_dir.resolve():
            return proc
    except (psutil.Error, OSError):
        pass
    return None


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Waits until the processes are gone; returns those still alive after ``timeout``.

    Unlike psutil.wait_procs, a zombie counts as gone: a postmaster is not our child, and the
    init process of a container may reap it late."""
    deadline = time.monotonic() + timeout
    left = [proc for proc in procs if alive(proc)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [proc for proc in left if alive(proc)]
    return left


def end_processes(
    procs: Iterable[psutil.Process | None],
    timeout: float = 10.0,
    first_signal: int = signal.SIGTERM,
) -> None:
    """Sends ``first_signal`` to each process (only to them: a postmaster or Patroni ends its
    own children cleanly), waits up to ``timeout``, then SIGKILLs whatever is left of them and
    of their children as they were. Only these pids: never by name."""
    tops = [proc for proc in procs if proc is not None and alive(proc)]
    if not tops:
        return
    family: dict[int, psutil.Process] = {proc.pid: proc for proc in tops}
    for proc in tops:
        try:
            for child in proc.children(recursive=True):
                family.setdefault(child.pid, child)
        except psutil.Error:
            pass
    for proc in tops:
        try:
            proc.send_signal(first_signal)
        except psutil.Error:
            pass
    left = wait_gone(tops, timeout=timeout)
    for proc in left:  # children born since the first look
        try:
            for child in proc.children(recursive=True):
                family.setdefault(child.pid, child)
        except psutil.Error:
            pass
    leftovers = [proc for proc in family.values() if alive(proc)]
    if leftovers:
        # Grace for children that exit on their own once their parent is gone.
        grace = 2 if not left and first_signal != signal.SIGKILL else 0
        leftovers = wait_gone(leftovers, timeout=grace)
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.Error:
            pass
    wait_gone(leftovers, timeout=5)


def run_all(steps: Iterable[Callable[[], object]]) -> None:
    """Runs every step of a teardown even when one fails; then raises the first error."""
    first: BaseException | None = None
    for step in steps:
        try:
            step()
        except BaseException as error:  # noqa: BLE001 - the rest must run all the same
            first = first or error
    if first is not None:
        raise first


def reap(popen: subprocess.Popen[bytes] | None) -> None:
    """Collects the exit status of a child we spawned, so it leaves no zombie."""
    if popen is not None:
        try:
            popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def psql(
    port: int,
    sql: str,
    dbname: str = "postgres",
    timeout: float = 15,
    bin_dir: Path | None = None,
) -> str:
    """Runs SQL with psql as user ``postgres`` over TCP; returns unaligned, tuples-only output.

    A client may run as root, so this does not switch users."""
    bin_dir = bin_dir or pg_bin_dir()
    if bin_dir is None:
        raise RuntimeError("no psql")
    env = dict(os.environ, PGCONNECT_TIMEOUT=str(max(2, int(timeout))))
    args = [str(bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    args += ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", dbname, "-c", sql]
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"psql on port {port} failed: {result.stderr.strip()}")
    return result.stdout.strip()


class _Stoppable(Protocol):
    def stop(self) -> None: ...


_live: set[Any] = set()  # strong references: a dropped server is still stopped at exit


def track(server: _Stoppable) -> None:
    """Remembers a started server so that an interpreter exit without cleanup still stops it."""
    _live.add(server)


def untrack(server: _Stoppable) -> None:
    _live.discard(server)


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_live):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


class LocalServer:
    """A PostgreSQL made with initdb and started with pg_ctl on 127.0.0.1:<free port>, trust
    authentication, user ``postgres``. ``fsync`` is off unless asked for (durability is rarely
    under test, speed is welcome); ``parameters`` go into postgresql.conf.

    Use as ``with LocalServer() as pg: pg.url`` or call ``start()`` and ``stop()``."""

    def __init__(
        self,
        *,
        fsync: bool = False,
        parameters: dict[str, str] | None = None,
        bin_dir: Path | None = None,
        start_timeout: float = 60,
    ) -> None:
        self.fsync = fsync
        self.parameters = dict(parameters or {})
        self.bin_dir = bin_dir or pg_bin_dir()
        self.start_timeout = start_timeout
        self.port = 0
        self.base: Path | None = None
        self._postmaster: psutil.Process | None = None

    @property
    def data_dir(self) -> Path:
        assert self.base is not None, "not started"
        return self.base / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    @property
    def pid(self) -> int | None:
        return self._postmaster.pid if self._postmaster else None

    def start(self) -> LocalServer:
        reason = missing()
        if reason:
            raise RuntimeError(reason)
        assert self.bin_dir is not None
        self.base = make_temp_dir("adkpg-local-")
        track(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        assert self.bin_dir is not None and self.base is not None
        initdb = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        initdb += ["--auth=trust", "-E", "UTF8", "--locale=C"]
        if not self.fsync:
            initdb.append("--no-sync")
        run_as_server_user(initdb, self.base, timeout=120)
        settings = {"fsync": "on" if self.fsync else "off", **self.parameters}
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# added by tests/servers/postgres.py\n")
            for key, value in settings.items():
                conf.write(f"{key} = '{value}'\n")
        self.port = free_port()
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data_dir}"
        log = self.base / "server.log"
        pg_ctl = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w"]
        pg_ctl += ["-t", str(int(self.start_timeout)), "-o", options, "-l", str(log), "start"]
        try:
            run_as_server_user(pg_ctl, self.base, timeout=self.start_timeout + 10)
        finally:
            # Even a failed start may have left a postmaster running: remember it to stop it.
            self._postmaster = own_postmaster(self.data_dir)

    def stop(self) -> None:
        """Stops the server (fast shutdown, then by pid) and removes its directory."""
        untrack(self)
        if self.base is None:
            return
        base = self.base

        def stop_server() -> None:
            self._postmaster = self._postmaster or own_postmaster(self.data_dir)
            if self._postmaster is not None and alive(self._postmaster):
                assert self.bin_dir is not None
                pg_ctl = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "30"]
                try:
                    run_as_server_user([*pg_ctl, "-m", "fast", "stop"], base, timeout=40)
                finally:
                    end_processes([self._postmaster], timeout=5, first_signal=signal.SIGINT)

        def remove_directory() -> None:
            shutil.rmtree(base, ignore_errors=True)
            self.base = None

        run_all([stop_server, remove_directory])

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
