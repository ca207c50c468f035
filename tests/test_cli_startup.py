"""`adk-postgres web|api_server` checks its database before serving: an unreachable server, a
refused login or a malformed URL ends the command at once with one line and exit status 1 —
never ADK's "started" banner followed by HTTP 500s — and no part of a password is shown."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
# What ADK's server prints once it serves (uvicorn's lines and ADK's banner).
SERVING_SIGNS = ("Uvicorn running", "Started server process", "ADK Web Server started")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "DATABASE_URL" not in k}
    return subprocess.run(
        [sys.executable, "-c", "from adk_postgres.cli import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when this returns


def _assert_refused_before_serving(result: subprocess.CompletedProcess[str], *hidden: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    for sign in SERVING_SIGNS:
        assert sign not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for secret in hidden:
        assert secret not in output, output
    return errors[0]


@pytest.mark.parametrize("command", ["web", "api_server"])
def test_unreachable_server_exits_before_serving(command: str) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{_closed_port()}/agents"
    result = _cli("-d", url, command, "--port", str(_closed_port()), str(EXAMPLES))
    line = _assert_refused_before_serving(result, "hunter2")
    assert "DatabaseConnectionError" in line and "Connection refused" in line


def test_refused_login_exits_before_serving(pg_direct_url: str) -> None:
    parts = urlsplit(pg_direct_url)
    netloc = parts.netloc.rpartition("@")[2]
    url = urlunsplit(parts._replace(netloc=f"no_such_role:hunter2@{netloc}"))
    result = _cli("-d", url, "api_server", "--port", str(_closed_port()), str(EXAMPLES))
    line = _assert_refused_before_serving(result, "hunter2")
    assert 'role "no_such_role" does not exist' in line


@pytest.mark.parametrize(
    "password", ["hun@ter2", "hun/ter2", "hun?ter2", "hun#ter2"], ids=["at", "slash", "qm", "hash"]
)
@pytest.mark.parametrize("command", ["api_server", "doctor"])
def test_unencoded_password_is_refused_and_never_shown(password: str, command: str) -> None:
    url = f"postgresql://postgres:{password}@127.0.0.1/agents"
    args = [command] + (
        ["--port", str(_closed_port()), str(EXAMPLES)] if command != "doctor" else []
    )
    result = _cli("-d", url, *args)
    line = _assert_refused_before_serving(result, "ter2", "hun")
    assert "ConfigurationError" in line and "percent-encoded" in line
