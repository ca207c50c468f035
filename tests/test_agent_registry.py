"""The agent registry (V11): versioned ADK agent configs in PostgreSQL.

Python API (`AgentRegistry`): versions, concurrent puts from tasks and processes, configs ADK
refuses and hostile input (nothing stored), archive/restore. `RegistryAgentLoader` in process.
The CLI (`adk-postgres agents …`) as a subprocess. Over HTTP: two real `adk-postgres
api_server` processes on one database; an agent put through the CLI is served by the second
server on its next `/run`, a new version is served without a restart, an archived one is not;
the registry routes answer bad input with 400 JSON.

Agent configs that must run use `registry_test_models.ECHO` (this directory), an offline model
that answers with the agent's instruction; the servers import it through ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from servers.adk_server import AdkServer, run_body, running
from servers.schemas import scratch_schema
from starlette.applications import Starlette

from adk_postgres import Database
from adk_postgres.agent_registry import (
    MAX_YAML_BYTES,
    AgentRegistry,
    RegistryAgentLoader,
)
from adk_postgres.errors import AgentExistsError, AgentNotFoundError, DataError
from adk_postgres.registry_routes import agent_routes

TESTS = Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"
CLI = Path(sys.executable).with_name("adk-postgres")


def config(name: str = "greeter", instruction: str = "Answer one.", *, echo: bool = False) -> str:
    """An LlmAgent config; with ``echo`` its model is the offline echo model, else a Gemini
    model name (enough to build the agent, never called)."""
    model = (
        "model_code:\n  name: registry_test_models.ECHO\n" if echo else "model: gemini-2.5-flash\n"
    )
    return f"name: {name}\n{model}instruction: {instruction}\n"


@pytest.fixture
async def registry(pg_url: str, schema_name: str) -> AgentRegistry:
    reg = AgentRegistry(pg_url, schema=schema_name)
    yield reg
    await reg.close()


async def _count(pg_admin: asyncpg.Connection, schema: str, table: str) -> int:
    return await pg_admin.fetchval(f'SELECT count(*) FROM "{schema}".{table}')


# --- Python API ------------------------------------------------------------------------------


async def test_versions_show_history_list(registry: AgentRegistry) -> None:
    assert await registry.put("greeter", config(instruction="Answer one.")) == 1
    assert await registry.put("greeter", config(instruction="Answer two.").encode()) == 2
    assert await registry.put("other", config("other")) == 1

    current = await registry.show("greeter")
    assert (current.version, current.agent.version, current.current) == (2, 2, True)
    assert "Answer two." in current.yaml
    first = await registry.show("greeter", 1)
    assert first.version == 1 and not first.current
    assert first.yaml == config(instruction="Answer one.")  # stored as given

    history = await registry.history("greeter")
    assert [v.version for v in history] == [2, 1]
    assert history[1].size == len(config(instruction="Answer one.").encode())

    listed = await registry.list()
    assert [(a.name, a.version, a.archived) for a in listed] == [
        ("greeter", 2, False),
        ("other", 1, False),
    ]
    assert listed[0].usage_count == 0 and listed[0].last_used_at is None
    assert json.dumps([a.to_json() for a in listed])  # JSON-ready

    with pytest.raises(AgentNotFoundError):
        await registry.show("greeter", 3)
    with pytest.raises(AgentNotFoundError):
        await registry.show("missing")
    with pytest.raises(AgentNotFoundError):
        await registry.history("missing")
    for bad in (0, -1, 2**31, True, "1"):
        with pytest.raises(DataError):
            await registry.show("greeter", bad)  # type: ignore[arg-type]


async def test_create_and_update_modes(registry: AgentRegistry) -> None:
    assert await registry.create("greeter", config()) == 1
    with pytest.raises(AgentExistsError):
        await registry.create("greeter", config())
    assert await registry.update("greeter", config(instruction="Two.")) == 2
    with pytest.raises(AgentNotFoundError):
        await registry.update("missing", config("missing"))
    assert [v.version for v in await registry.history("greeter")] == [2, 1]


async def test_concurrent_puts_from_tasks_get_distinct_versions(
    pg_url: str, schema_name: str
) -> None:
    # Separate pools, so the puts really run at once on several connections.
    registries = [AgentRegistry(pg_url, schema=schema_name) for _ in range(4)]
    try:
        await registries[0].put("busy", config("busy"))
        versions = await asyncio.gather(
            *(registries[i % 4].put("busy", config("busy", f"v{i}")) for i in range(40))
        )
        assert sorted(versions) == list(range(2, 42))
        history = await registries[0].history("busy")
        assert [v.version for v in history] == list(range(41, 0, -1))
    finally:
        for reg in registries:
            await reg.close()


PUTTER = """
import asyncio, json, sys
from adk_postgres.agent_registry import AgentRegistry

async def main():
    reg = AgentRegistry(sys.argv[1], schema=sys.argv[2])
    yaml = "name: busy\\nmodel: gemini-2.5-flash\\ninstruction: from " + sys.argv[3] + "\\n"
    versions = await asyncio.gather(*(reg.put("busy", yaml) for _ in range(15)))
    print(json.dumps(versions))
    await reg.close()

asyncio.run(main())
"""


async def test_concurrent_puts_from_two_processes_get_distinct_versions(
    registry: AgentRegistry, pg_url: str, schema_name: str
) -> None:
    await registry.list()  # migrated before the processes race
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PUTTER,
            pg_url,
            schema_name,
            who,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for who in ("a", "b")
    ]
    outputs = [await p.communicate() for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    versions = [v for out, _ in outputs for v in json.loads(out)]
    assert sorted(versions) == list(range(1, 31))
    stored = {(await registry.show("busy", v)).yaml for v in range(1, 31)}
    assert len(stored) == 2  # both processes' configs, each under its own versions


REFUSED_CONFIGS = {
    "yaml syntax": ("name: x\ninstruction: [unclosed\n", "flow"),
    "not a mapping": ("- a\n- b\n", "Expected a dictionary"),
    "unknown field": (config() + "bogus_field: 1\n", "Extra inputs are not permitted"),
    "missing instruction": ("name: x\nmodel: gemini-2.5-flash\n", "instruction"),
    "unknown agent class": ("agent_class: NoSuchAgent\nname: x\n", "NoSuchAgent"),
    "bad agent name": (config(name="not an identifier"), "valid Python identifier"),
    "blocked module": (
        "name: x\nmodel_code:\n  name: os.system\ninstruction: hi\n",
        "Blocked module reference",
    ),
    "relative reference": (
        config() + "sub_agents:\n  - config_path: other.yaml\n",
        "other.yaml",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED_CONFIGS))
async def test_configs_adk_refuses_are_not_stored(
    registry: AgentRegistry, pg_admin: asyncpg.Connection, schema_name: str, case: str
) -> None:
    text, adk_says = REFUSED_CONFIGS[case]
    await registry.list()  # the tables exist
    with pytest.raises(DataError) as refused:
        await registry.put("refused", text)
    message = str(refused.value)
    assert message.startswith("ADK cannot load agent 'refused': "), message
    assert adk_says in message, message
    assert "adk-postgres-agent-" not in message  # the temporary directory is not shown
    assert await _count(pg_admin, schema_name, "agents") == 0
    assert await _count(pg_admin, schema_name, "agent_versions") == 0


BAD_TEXT = {
    "NUL": config() + "description: a\x00b\n",
    "too large": config() + "description: " + "x" * MAX_YAML_BYTES + "\n",
    "not UTF-8": config().encode() + b"description: \xff\xfe\n",
    "lone surrogate": config() + "description: \ud800\n",
    "empty": "  \n",
    "not text": 42,
}


@pytest.mark.parametrize("case", sorted(BAD_TEXT))
async def test_bad_text_is_a_data_error(
    registry: AgentRegistry, pg_admin: asyncpg.Connection, schema_name: str, case: str
) -> None:
    await registry.list()
    with pytest.raises(DataError):
        await registry.put("greeter", BAD_TEXT[case])  # type: ignore[arg-type]
    assert await _count(pg_admin, schema_name, "agent_versions") == 0


HOSTILE_NAMES = [
    "",
    " greeter",
    "../etc",
    "a/b",
    "a.b",
    "a-b",
    "a b",
    "__builtin",
    "_private",
    "1st",
    "user",
    "é",
    "a\x00",
    "x" * 129,
    "greeter'; DROP TABLE agents; --",
    "\ud800",
    None,
    42,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
async def test_hostile_names_are_refused(
    registry: AgentRegistry, pg_admin: asyncpg.Connection, schema_name: str, name: object
) -> None:
    await registry.list()
    with pytest.raises(DataError):
        await registry.put(name, config())  # type: ignore[arg-type]
    for call in (registry.show, registry.history, registry.archive, registry.restore):
        with pytest.raises(DataError):
            await call(name)  # type: ignore[arg-type]
    assert await _count(pg_admin, schema_name, "agents") == 0


async def test_longest_name_is_accepted(registry: AgentRegistry) -> None:
    name = "a" * 128
    assert await registry.put(name, config()) == 1
    assert (await registry.show(name)).name == name


async def test_archive_and_restore(registry: AgentRegistry) -> None:
    await registry.put("greeter", config())
    await registry.put("other", config("other"))
    await registry.archive("greeter")
    await registry.archive("greeter")  # again: no change, no error
    assert [a.name for a in await registry.list()] == ["other"]
    everything = await registry.list(include_archived=True)
    assert [(a.name, a.archived) for a in everything] == [("greeter", True), ("other", False)]
    assert (await registry.show("greeter")).agent.archived  # still readable
    # A put to an archived agent stores a version; the agent stays archived.
    assert await registry.put("greeter", config(instruction="Two.")) == 2
    assert [a.name for a in await registry.list()] == ["other"]
    await registry.restore("greeter")
    assert [a.name for a in await registry.list()] == ["greeter", "other"]
    assert (await registry.show("greeter")).version == 2
    with pytest.raises(AgentNotFoundError):
        await registry.archive("missing")
    with pytest.raises(AgentNotFoundError):
        await registry.restore("missing")


async def test_usage_counts(registry: AgentRegistry) -> None:
    await registry.put("greeter", config())
    await registry.record_usage({"greeter": 3, "missing": 1})
    await registry.record_usage({"greeter": 2})
    (agent,) = await registry.list()
    assert agent.usage_count == 5 and agent.last_used_at is not None


async def test_shares_a_database(pg_url: str, schema_name: str) -> None:
    async with Database(pg_url, schema=schema_name) as database:
        registry = AgentRegistry(database=database)
        assert await registry.put("greeter", config()) == 1
        await registry.close()  # not its pool: still open
        assert [a.name for a in await AgentRegistry(database=database).list()] == ["greeter"]


# --- the loader, in process --------------------------------------------------------------------


async def test_loader_serves_registry_and_directory_agents(
    registry: AgentRegistry,
) -> None:
    from google.adk.cli.utils.agent_loader import AgentLoader

    loader = RegistryAgentLoader(registry, AgentLoader(str(EXAMPLES)), usage_flush_interval=0)
    await registry.put("greeter", config(instruction="Answer one."))
    assert loader.list_agents() == ["basic_agent", "greeter", "persistent_chat"]

    assert await loader.refresh("greeter", count_use=True) == 1
    first = loader.load_agent("greeter")
    assert first.instruction == "Answer one."
    assert loader.load_agent("greeter") is first  # built once per version
    assert loader.load_agent("basic_agent").name == "basic_agent"  # from the directory

    await registry.put("greeter", config(instruction="Answer two."))
    assert await loader.refresh("greeter") == 2
    assert loader.load_agent("greeter").instruction == "Answer two."

    await registry.archive("greeter")
    assert await loader.refresh("greeter") is None
    with pytest.raises(ValueError):
        loader.load_agent("greeter")
    assert "greeter" not in loader.list_agents()
    with pytest.raises(ValueError):
        loader.load_agent("nowhere")

    await asyncio.sleep(0.2)  # the usage batch
    (agent,) = await registry.list(include_archived=True)
    assert agent.usage_count == 1


async def test_loader_without_refresh_asks_the_database(registry: AgentRegistry) -> None:
    """A synchronous caller that did not refresh (ADK's app-info route) still gets the
    current version."""
    loader = RegistryAgentLoader(registry)
    await registry.put("greeter", config(instruction="Answer one."))
    assert loader.load_agent("greeter").instruction == "Answer one."
    detailed = loader.list_agents_detailed()
    assert [(d["name"], d["language"]) for d in detailed] == [("greeter", "yaml")]


async def test_loader_reports_a_version_it_cannot_build_as_adk_does(
    registry: AgentRegistry, pg_admin: asyncpg.Connection, schema_name: str
) -> None:
    """A stored version this process cannot build (here written behind the registry's back)
    fails like a broken directory agent: ADK's load error, which its server answers with 500."""
    from google.adk.cli.utils.base_agent_loader import _AgentLoadError

    loader = RegistryAgentLoader(registry)
    await registry.put("greeter", config())
    await pg_admin.execute(
        f'UPDATE "{schema_name}".agents SET current_version = 2 WHERE name = $1;'
        f'INSERT INTO "{schema_name}".agent_versions (name, version, yaml) '
        "VALUES ('greeter', 2, 'name: greeter\nno_such_field: 1\n')".replace("$1", "'greeter'")
    )
    assert await loader.refresh("greeter") == 2
    with pytest.raises(_AgentLoadError, match="no_such_field"):
        loader.load_agent("greeter")


async def test_loader_keeps_serving_when_the_database_is_gone(
    pg_url: str, schema_name: str
) -> None:
    registry = AgentRegistry(pg_url, schema=schema_name)
    loader = RegistryAgentLoader(registry)
    await registry.put("greeter", config(instruction="Answer one."))
    assert await loader.refresh_or_keep("greeter") == 1
    await registry.close()  # every call now fails with ClosedError
    assert await loader.refresh_or_keep("greeter") == 1
    assert loader.load_agent("greeter").instruction == "Answer one."
    assert loader.list_agents() == ["greeter"]  # what it serves, with a warning


async def test_backup_carries_the_registry(
    registry: AgentRegistry, pg_url: str, pg_admin: asyncpg.Connection
) -> None:
    import io

    from adk_postgres.transfer import export_backup, restore_backup

    await registry.put("greeter", config(instruction="Answer one."))
    await registry.put("greeter", config(instruction="Answer two."))
    await registry.archive("greeter")
    out = io.BytesIO()
    await export_backup(registry.database, out, only=["agents"])
    other = f"t_{uuid.uuid4().hex[:12]}"
    try:
        async with Database(pg_url, schema=other) as target:
            await restore_backup(target, out.getvalue().splitlines())
            restored = AgentRegistry(database=target)
            (agent,) = await restored.list(include_archived=True)
            assert (agent.name, agent.version, agent.archived) == ("greeter", 2, True)
            assert "Answer one." in (await restored.show("greeter", 1)).yaml
            assert await restored.put("greeter", config(instruction="Three.")) == 3
    finally:
        await pg_admin.execute(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')


# --- the routes, in process (the database down) ------------------------------------------------


async def test_routes_answer_503_when_the_database_is_down() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = AgentRegistry(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2)
    app = Starlette(routes=agent_routes(registry))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for method, path, body in [
            ("GET", "/adk-postgres/v1/agents", None),
            ("GET", "/adk-postgres/v1/agents/greeter", None),
            ("POST", "/adk-postgres/v1/agents", {"name": "greeter", "yaml": config()}),
            ("POST", "/adk-postgres/v1/agents/greeter/archive", None),
        ]:
            response = await client.request(method, path, json=body)
            assert response.status_code == 503, response.text
            assert "database is unavailable" in response.json()["error"]
            assert response.headers["retry-after"] == "1"
    await registry.close()


# --- the CLI -----------------------------------------------------------------------------------


def cli(url: str, schema: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    return subprocess.run(
        [str(CLI), "-d", url, "--schema", schema, "agents", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=120,
    )


def test_cli(pg_url: str, pg_direct_url: str, tmp_path: Path) -> None:
    with scratch_schema(pg_direct_url) as schema:
        one = tmp_path / "one.yaml"
        one.write_text(config(instruction="Answer one."))
        put = cli(pg_url, schema, "put", "greeter", str(one))
        assert put.returncode == 0, put.stderr
        assert put.stdout.strip() == "stored greeter version 1"
        put = cli(pg_url, schema, "put", "greeter", "-", stdin=config(instruction="Answer two."))
        assert put.stdout.strip() == "stored greeter version 2", put.stderr

        listed = cli(pg_url, schema, "list")
        assert listed.returncode == 0
        assert listed.stdout.splitlines()[1].split()[:3] == ["greeter", "2", "served"]
        shown = cli(pg_url, schema, "show", "greeter", "--version", "1")
        assert shown.stdout == config(instruction="Answer one.")  # the file back
        assert "Answer two." in cli(pg_url, schema, "show", "greeter").stdout
        as_json = json.loads(cli(pg_url, schema, "show", "greeter", "--json").stdout)
        assert (as_json["name"], as_json["version"]) == ("greeter", 2)
        history = cli(pg_url, schema, "history", "greeter", "--json")
        assert [v["version"] for v in json.loads(history.stdout)["versions"]] == [2, 1]

        assert cli(pg_url, schema, "archive", "greeter").stdout.strip() == "archived greeter"
        assert "no agents" in cli(pg_url, schema, "list").stdout
        archived = json.loads(cli(pg_url, schema, "list", "--all", "--json").stdout)
        assert archived["agents"][0]["archived"] is True
        assert cli(pg_url, schema, "restore", "greeter").stdout.strip() == "restored greeter"

        # Errors: one line, exit 1, nothing stored.
        bad = tmp_path / "bad.yaml"
        bad.write_text(config() + "bogus_field: 1\n")
        for args in [
            ("put", "greeter", str(bad)),
            ("put", "../etc", str(one)),
            ("show", "missing"),
            ("show", "greeter", "--version", "9"),
            ("history", "missing"),
            ("archive", "missing"),
        ]:
            result = cli(pg_url, schema, *args)
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            errors = result.stderr.strip().splitlines()
            assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
            assert "Traceback" not in result.stderr
        refused = cli(pg_url, schema, "put", "greeter", str(bad))
        assert "DataError: ADK cannot load agent 'greeter'" in refused.stderr
        assert "Extra inputs are not permitted" in refused.stderr
        assert [v["version"] for v in json.loads(history.stdout)["versions"]] == [2, 1]
        missing_file = cli(pg_url, schema, "put", "greeter", str(tmp_path / "nope.yaml"))
        assert missing_file.returncode == 2  # click's usage error


# --- two real servers --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema(pg_direct_url: str) -> Iterator[str]:
    with scratch_schema(pg_direct_url) as name:
        yield name


@pytest.fixture(scope="module")
def servers(pg_url: str, schema: str) -> Iterator[list[AdkServer]]:
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(TESTS)  # the servers import registry_test_models
    try:
        with running(
            lambda: AdkServer(pg_url, schema, EXAMPLES),
            lambda: AdkServer(pg_url, schema, EXAMPLES),
        ) as started:
            yield started
        for server in started:
            assert "Traceback" not in (server.output or ""), server.output[-4000:]
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def _run(server: AdkServer, app: str, text: str = "hello") -> httpx.Response:
    session = uuid.uuid4().hex
    created = server.client.post(f"/apps/{app}/users/u1/sessions/{session}", json={})
    if created.status_code != 200:
        return created
    return server.client.post("/run", json=run_body(app, "u1", session, text))


def _reply(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    texts = [p.get("text", "") for e in response.json() for p in e["content"]["parts"]]
    return " ".join(texts)


def test_a_put_is_served_by_every_server_without_restart(
    servers: list[AdkServer], pg_url: str, schema: str
) -> None:
    first, second = servers
    name = "echo_" + uuid.uuid4().hex[:8]
    assert _run(second, name).status_code == 404  # not yet

    put = cli(pg_url, schema, "put", name, "-", stdin=config(name, "Answer one.", echo=True))
    assert put.returncode == 0, put.stderr
    assert "Answer one." in _reply(_run(second, name))
    assert "Answer one." in _reply(_run(first, name))
    assert name in second.client.get("/list-apps").json()
    assert "basic_agent" in second.client.get("/list-apps").json()  # the directory's too

    # A new version, through the other server's route: the next run on each serves it.
    updated = first.client.put(
        f"/adk-postgres/v1/agents/{name}", json={"yaml": config(name, "Answer two.", echo=True)}
    )
    assert updated.status_code == 200 and updated.json() == {"name": name, "version": 2}
    assert "Answer two." in _reply(_run(second, name))
    assert "Answer two." in _reply(_run(first, name))

    # Archived: no longer served anywhere; restored: served again.
    assert second.client.post(f"/adk-postgres/v1/agents/{name}/archive").status_code == 200
    assert _run(first, name).status_code == 404
    assert _run(second, name).status_code == 404
    assert name not in first.client.get("/list-apps").json()
    assert cli(pg_url, schema, "restore", name).returncode == 0
    assert "Answer two." in _reply(_run(first, name))

    # Usage is written in batches, off the request path.
    deadline = time.monotonic() + 10
    while True:
        shown = second.client.get(f"/adk-postgres/v1/agents/{name}").json()
        if shown["usage_count"] >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert shown["usage_count"] >= 5 and shown["last_used_at"] is not None


def test_registry_routes(servers: list[AdkServer]) -> None:
    client = servers[0].client
    name = "routed_" + uuid.uuid4().hex[:8]
    base = "/adk-postgres/v1/agents"

    created = client.post(base, json={"name": name, "yaml": config(name)})
    assert created.status_code == 201 and created.json() == {"name": name, "version": 1}
    assert client.post(base, json={"name": name, "yaml": config(name)}).status_code == 409
    assert name in [a["name"] for a in client.get(base).json()["agents"]]
    shown = client.get(f"{base}/{name}", params={"version": 1}).json()
    assert (shown["version"], shown["yaml"]) == (1, config(name))
    assert client.put(f"{base}/{name}", json={"yaml": config(name, "Two.")}).json()["version"] == 2
    history = client.get(f"{base}/{name}/history").json()
    assert [v["version"] for v in history["versions"]] == [2, 1]

    bad_requests = [
        ("POST", base, b"not json"),
        ("POST", base, b"[1, 2]"),
        ("POST", base, {"name": name}),
        ("POST", base, {"yaml": config()}),
        ("POST", base, {"name": "bad name", "yaml": config()}),
        ("POST", base, {"name": "../etc", "yaml": config()}),
        ("POST", base, {"name": 42, "yaml": config()}),
        ("POST", base, {"name": "fresh", "yaml": config(), "extra": 1}),
        ("POST", base, {"name": "fresh", "yaml": "a: [unclosed"}),
        ("POST", base, {"name": "fresh", "yaml": config() + "bogus_field: 1\n"}),
        ("POST", base, {"name": "fresh", "yaml": config() + "description: a\x00b\n"}),
        ("PUT", f"{base}/{name}", {"yaml": 1}),
        ("PUT", f"{base}/{name}", {"yaml": config() + "bogus_field: 1\n"}),
        ("GET", f"{base}/{name}?version=abc", None),
        ("GET", f"{base}/{name}?version=0", None),
        ("GET", f"{base}/bad-name", None),
        ("POST", f"{base}/bad-name/archive", None),
    ]
    for method, path, body in bad_requests:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        response = client.request(method, path, **kwargs)
        assert response.status_code == 400, (method, path, body, response.text)
        assert isinstance(response.json()["error"], str) and response.json()["error"]
    refused = client.post(base, json={"name": "fresh", "yaml": config() + "bogus_field: 1\n"})
    assert "Extra inputs are not permitted" in refused.json()["error"]  # ADK's own message
    assert "fresh" not in [a["name"] for a in client.get(f"{base}?all=true").json()["agents"]]

    not_found = [
        ("GET", f"{base}/missing"),
        ("GET", f"{base}/{name}?version=3"),
        ("PUT", f"{base}/missing"),
        ("GET", f"{base}/missing/history"),
        ("POST", f"{base}/missing/archive"),
        ("POST", f"{base}/missing/restore"),
    ]
    for method, path in not_found:
        body = {"yaml": config("missing")} if method == "PUT" else None
        response = client.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert "missing" in response.json()["error"] or "version 3" in response.json()["error"]

    assert client.post(f"{base}/{name}/archive").json() == {"name": name, "archived": True}
    assert name not in [a["name"] for a in client.get(base).json()["agents"]]
    assert name in [a["name"] for a in client.get(f"{base}?all=true").json()["agents"]]
    assert client.post(f"{base}/{name}/restore").json() == {"name": name, "archived": False}
