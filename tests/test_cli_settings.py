"""The CLI's configuration (flags > environment > .env > embedded), its error handling, and the
argument hand-over to ADK's web/api_server commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adk_postgres.cli._settings import Settings, load_env_file
from adk_postgres.cli.serve import CLI_SCHEME, adk_arguments
from adk_postgres.errors import ConfigurationError

ENV_VARS = (
    "ADK_POSTGRES_DATABASE_URL",
    "DATABASE_URL",
    "ADK_POSTGRES_SCHEMA",
    "ADK_POSTGRES_POOL_SIZE",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_flag_beats_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://env@h/db")
    clean_env.setenv("ADK_POSTGRES_DATABASE_URL", "postgresql://ours@h/db")
    assert Settings().url == "postgresql://ours@h/db"
    assert Settings(url_flag="postgresql://flag@h/db").url == "postgresql://flag@h/db"
    assert Settings(force_embedded=True).url is None
    clean_env.delenv("ADK_POSTGRES_DATABASE_URL")
    assert Settings().url == "postgresql://env@h/db"
    clean_env.delenv("DATABASE_URL")
    assert Settings().uses_embedded


def test_schema_and_pool_size(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings().schema == "public"
    assert Settings().pool_size == 10
    clean_env.setenv("ADK_POSTGRES_SCHEMA", "agents")
    clean_env.setenv("ADK_POSTGRES_POOL_SIZE", "25")
    assert Settings().schema == "agents"
    assert Settings(schema_flag="other").schema == "other"
    assert Settings().pool_size == 25
    assert Settings(pool_size_flag=3).pool_size == 3
    clean_env.setenv("ADK_POSTGRES_POOL_SIZE", "lots")
    with pytest.raises(ConfigurationError, match="ADK_POSTGRES_POOL_SIZE must be an integer"):
        _ = Settings().pool_size


def test_env_file_fills_in_but_never_overrides(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / "settings.env"
    env_file.write_text("DATABASE_URL=postgresql://from-file@h/db\nADK_POSTGRES_SCHEMA=from_file\n")
    clean_env.setenv("ADK_POSTGRES_SCHEMA", "from_env")
    assert load_env_file(env_file) == env_file
    assert Settings().url == "postgresql://from-file@h/db"
    assert Settings().schema == "from_env"
    with pytest.raises(ConfigurationError, match="env file not found"):
        load_env_file(tmp_path / "missing.env")


def test_dot_env_in_the_working_directory_is_read(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("ADK_POSTGRES_DATABASE_URL=postgresql://dotenv@h/db\n")
    clean_env.chdir(tmp_path)
    assert load_env_file(None) == tmp_path / ".env"
    assert Settings().url == "postgresql://dotenv@h/db"


def test_service_uris_are_added_unless_given() -> None:
    argv = adk_arguments("web", ("agents", "--port", "9000"))
    assert argv[0] == "web"
    for flag in ("--session_service_uri", "--artifact_service_uri", "--memory_service_uri"):
        assert argv[argv.index(flag) + 1] == f"{CLI_SCHEME}://"
    assert argv[-3:] == ["agents", "--port", "9000"]

    mine = adk_arguments("api_server", ("--session_service_uri=memory://", "agents"))
    assert "--session_service_uri" not in mine
    assert "--session_service_uri=memory://" in mine
    assert "--memory_service_uri" in mine
    assert adk_arguments("web", ("--help",)) == ["web", "--help"]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from adk_postgres.cli import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_help_and_version() -> None:
    result = _cli("--help")
    assert result.returncode == 0
    for command in ("web", "api_server"):
        assert command in result.stdout
    assert _cli("--version").stdout.startswith("adk-postgres, version ")


def test_web_help_is_adks_own() -> None:
    result = _cli("web", "--help")
    assert result.returncode == 0, result.stderr
    assert "--session_service_uri" in result.stdout
    assert "AGENTS_DIR" in result.stdout


def test_errors_are_one_line_with_exit_status(tmp_path: Path) -> None:
    missing = _cli("--env-file", str(tmp_path / "nope.env"), "web", "--help")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"error: ConfigurationError: env file not found: {tmp_path / 'nope.env'}"
    ]
    assert "Traceback" not in missing.stderr

    conflict = _cli("--embedded", "-d", "postgresql://u:hunter2@h/db", "web")
    assert conflict.returncode == 2
    assert "exclude each other" in conflict.stderr
    assert "hunter2" not in conflict.stderr + conflict.stdout


def test_a_bad_url_fails_before_the_server_starts_and_hides_the_password() -> None:
    result = _cli("-d", "postgresql://u:hunter2@h:notaport/db", "api_server", ".")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: ConfigurationError")
