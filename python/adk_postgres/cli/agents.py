"""``adk-postgres agents …``: the agent registry (versioned ADK agent configs), see
``adk_postgres.agent_registry``.

    adk-postgres agents put weather weather.yaml     # stored weather version 1
    adk-postgres agents list
    adk-postgres agents show weather --version 1 > old.yaml
    adk-postgres agents history weather
    adk-postgres agents archive weather
    adk-postgres agents restore weather

Errors (a bad name, a config ADK cannot load, an unknown agent, an unreachable database) end
the command with a one-line reason and exit status 1.
"""

from __future__ import annotations

import sys
from datetime import datetime

import click

from ..agent_registry import AgentRegistry
from ..errors import DataError
from ._app import main, run_async
from ._output import console, print_json
from ._settings import Settings


def _say(text: str = "") -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _registry(settings: Settings) -> AgentRegistry:
    return AgentRegistry(database=settings.database())


def _when(t: datetime | None) -> str:
    return "-" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def _table(header: list[str], rows: list[list[str]]) -> None:
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        _say("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@main.group("agents")
def agents_group() -> None:
    """The agent registry: versioned ADK agent configs that `web` and `api_server` serve
    next to the agents directory (see README "Agent registry")."""


@agents_group.command("put")
@click.argument("name")
@click.argument("file", type=click.File("rb"))
@click.pass_obj
def put(settings: Settings, name: str, file: click.utils.LazyFile) -> None:
    """Store FILE (an ADK agent config, root_agent.yaml; - for stdin) as the next version of
    agent NAME. A config ADK cannot load is refused; nothing is stored."""
    data = file.read()
    try:
        version = run_async(_registry(settings).put(name, data))
    except DataError as exc:
        # ADK's messages (pydantic's in particular) span lines: one line here.
        lines = (line.strip() for line in str(exc).splitlines())
        raise DataError("; ".join(line for line in lines if line)) from None
    _say(f"stored {name} version {version}")


@agents_group.command("list")
@click.option("--all", "include_archived", is_flag=True, help="Include archived agents.")
@click.option("--json", "as_json", is_flag=True, help="Print the agents as JSON.")
@click.pass_obj
def list_agents(settings: Settings, include_archived: bool, as_json: bool) -> None:
    """Every agent of the registry, by name."""
    agents = run_async(_registry(settings).list(include_archived))
    if as_json:
        print_json({"agents": [a.to_json() for a in agents]})
        return
    if not agents:
        _say("no agents" + ("" if include_archived else " (--all shows archived ones)"))
        return
    rows = [
        [
            a.name,
            str(a.version),
            "archived" if a.archived else "served",
            str(a.usage_count),
            _when(a.last_used_at),
            _when(a.updated_at),
        ]
        for a in agents
    ]
    _table(["name", "version", "status", "uses", "last used", "updated"], rows)


@agents_group.command("show")
@click.argument("name")
@click.option("--version", type=click.IntRange(min=1), help="This version (default: current).")
@click.option("--json", "as_json", is_flag=True, help="Print the version and its agent as JSON.")
@click.pass_obj
def show(settings: Settings, name: str, version: int | None, as_json: bool) -> None:
    """Print the config of agent NAME (the YAML as stored, so `show NAME > file.yaml` gives
    the file back)."""
    shown = run_async(_registry(settings).show(name, version))
    if as_json:
        print_json(shown.to_json())
        return
    sys.stdout.write(shown.yaml)
    if not shown.yaml.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


@agents_group.command("history")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@click.pass_obj
def history(settings: Settings, name: str, as_json: bool) -> None:
    """Every version of agent NAME, newest first."""
    versions = run_async(_registry(settings).history(name))
    if as_json:
        print_json({"name": name, "versions": [v.to_json() for v in versions]})
        return
    _table(
        ["version", "created", "bytes"],
        [[str(v.version), _when(v.created_at), str(v.size)] for v in versions],
    )


@agents_group.command("archive")
@click.argument("name")
@click.pass_obj
def archive(settings: Settings, name: str) -> None:
    """Stop serving agent NAME (its versions are kept; `restore` serves it again)."""
    run_async(_registry(settings).archive(name))
    _say(f"archived {name}")


@agents_group.command("restore")
@click.argument("name")
@click.pass_obj
def restore(settings: Settings, name: str) -> None:
    """Serve the archived agent NAME again."""
    run_async(_registry(settings).restore(name))
    _say(f"restored {name}")
