"""docker-compose.yml offers PostgreSQL 18 with pgvector, and README's DATABASE_URL reaches it.

No Docker engine is needed: the file is parsed and checked, not run.
"""

from __future__ import annotations

import re
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
