"""docker-compose.yml and the Dockerfile: PostgreSQL 18 with pgvector that README's
DATABASE_URL reaches, and an API server image and service that agree with the code they run.

No Docker engine is needed: the files are parsed and checked, not run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def postgres(compose: dict[str, Any]) -> dict[str, Any]:
    assert "postgres" in compose["services"], "docker-compose.yml needs a 'postgres' service"
    return compose["services"]["postgres"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment, whether written as a mapping or as KEY=VALUE items."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port, from short ("[ip:]host:container") or long syntax."""
    result: dict[int, int] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            result[int(entry["target"])] = int(entry["published"])
            continue
        *host, container = str(entry).split("/")[0].split(":")
        result[int(container)] = int(host[-1]) if host else int(container)
    return result


def test_image_is_postgres_18_with_pgvector(postgres: dict[str, Any]) -> None:
    repository, _, tag = postgres["image"].partition(":")
    assert repository == "pgvector/pgvector"
    assert re.fullmatch(r"pg18(\b.*)?", tag), f"expected a PostgreSQL 18 tag, got {tag!r}"


def test_port_5432_is_published_as_5432(postgres: dict[str, Any]) -> None:
    assert published_ports(postgres).get(5432) == 5432


def test_credentials_are_set(postgres: dict[str, Any]) -> None:
    env = environment(postgres)
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert env.get(key), f"{key} is not set"
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        "adk",
        "adk",
        "adk",
    )


def test_healthcheck_uses_pg_isready(postgres: dict[str, Any]) -> None:
    test = postgres["healthcheck"]["test"]
    command = test if isinstance(test, str) else " ".join(test)
    assert "pg_isready" in command


def test_data_lives_in_a_named_volume(compose: dict[str, Any], postgres: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {
        (v["source"] if isinstance(v, dict) else str(v).split(":")[0])
        for v in postgres.get("volumes") or []
    }
    assert declared & used, f"no named volume: declared {declared}, used {used}"


def test_readme_database_url_matches_compose(postgres: dict[str, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    urls = re.findall(r"(?<![A-Z_])DATABASE_URL=[\"']?(postgres(?:ql)?://[^\s\"'`]+)", readme)
    assert urls, "README.md has no line like DATABASE_URL=postgresql://..."
    env = environment(postgres)
    for url in urls:
        parts = urlsplit(url)
        assert parts.hostname in ("127.0.0.1", "localhost"), url
        assert parts.port == published_ports(postgres)[5432], url
        assert unquote(parts.username or "") == env["POSTGRES_USER"], url
        assert unquote(parts.password or "") == env["POSTGRES_PASSWORD"], url
        assert parts.path.lstrip("/") == env["POSTGRES_DB"], url


# --------------------------------------------------------------------------- the API server


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]]  # (INSTRUCTION, arguments), continuation lines joined

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def dockerfile_stages() -> list[Stage]:
    """The Dockerfile's build stages, parsed line by line (comments and continuations)."""
    text = (ROOT / "Dockerfile").read_text()
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name, instructions=[]))
        else:
            assert stages, "Dockerfile instruction before FROM"
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return dockerfile_stages()


@pytest.fixture(scope="module")
def api(compose: dict[str, Any]) -> dict[str, Any]:
    assert "api" in compose["services"], "docker-compose.yml needs an 'api' service"
    return compose["services"]["api"]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_dockerfile_builds_in_one_stage_and_runs_in_another(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    builder, runtime = stages[0], stages[-1]
    for stage in stages:
        repository, _, tag = stage.image.partition(":")
        assert tag and tag != "latest", f"{stage.image}: pin a tag"
        assert repository == "python" and re.match(r"3\.(1[1-9])-slim", tag), stage.image
    assert any("maturin build" in run for run in builder.all("RUN"))
    copies = runtime.all("COPY")
    assert any(c.startswith(f"--from={builder.name} ") for c in copies), copies
    assert not any(
        re.search(r"\b(cargo|rustup|maturin|build-essential)\b", r) for r in runtime.all("RUN")
    )


def test_runtime_runs_as_a_non_root_user(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users, "the runtime stage sets no USER"
    assert users[-1] not in ("root", "0")


def test_image_command_is_our_api_server(stages: list[Stage]) -> None:
    import tomllib

    from google.adk.cli.cli_tools_click import main as adk_main

    from adk_postgres.cli import main
    from adk_postgres.cli import serve as _serve  # noqa: F401  (registers web/api_server)

    runtime = stages[-1]
    argv = _exec_form(runtime.all("CMD")[-1])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts and scripts[argv[0]] == "adk_postgres.cli:run"
    assert argv[1] in main.commands
    # Everything after the subcommand goes to ADK's own api_server: its flags must exist.
    adk_flags = {opt for p in adk_main.commands["api_server"].params for opt in p.opts}
    for flag in (a for a in argv[2:] if a.startswith("--")):
        assert flag in adk_flags, flag
    port = int(_flag_value(argv, "--port"))
    assert runtime.all("EXPOSE") == [str(port)]
    assert _flag_value(argv, "--host") == "0.0.0.0"

    # The agents directory in the command is where the examples are copied to.
    agents_dir = argv[-1]
    copied = [c.split() for c in runtime.all("COPY") if not c.startswith("--from")]
    assert ["examples", agents_dir] in copied
    for agent in ("basic_agent", "persistent_chat"):
        assert (ROOT / "examples" / agent / "agent.py").is_file()


def test_build_context_skips_local_artifacts() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in ("target", ".venv", ".git"):
        assert entry in ignored


def test_api_service_runs_the_image_against_the_postgres_service(
    api: dict[str, Any], postgres: dict[str, Any], stages: list[Stage]
) -> None:
    from adk_postgres import Database
    from adk_postgres.cli._settings import URL_ENV_VARS

    assert api["build"] in (".", {"context": "."})
    assert not str(api.get("image", "")).endswith(":latest")
    # The command matches the image's, and the published port is the one it listens on.
    argv = api.get("command") or _exec_form(stages[-1].all("CMD")[-1])
    assert argv == _exec_form(stages[-1].all("CMD")[-1])
    port = int(_flag_value(argv, "--port"))
    assert port in published_ports(api)

    env = environment(api)
    url_vars = [name for name in env if name in URL_ENV_VARS]
    assert url_vars, f"api sets none of {URL_ENV_VARS}"
    url = env[url_vars[0]]
    parts = urlsplit(url)
    pg_env = environment(postgres)
    assert parts.hostname == "postgres"  # the service name, resolvable inside the network
    assert parts.port in (None, 5432)
    assert unquote(parts.username or "") == pg_env["POSTGRES_USER"]
    assert unquote(parts.password or "") == pg_env["POSTGRES_PASSWORD"]
    assert parts.path.lstrip("/") == pg_env["POSTGRES_DB"]
    database = Database(url)  # parses and validates without connecting
    assert "password" not in database.describe() and pg_env["POSTGRES_PASSWORD"] != ""
    database.close_now()

    depends = api["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in postgres
