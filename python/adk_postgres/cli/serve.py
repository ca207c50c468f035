"""``adk-postgres web`` and ``adk-postgres api_server``: ADK's own servers, with sessions,
artifacts and memory on adk-postgres.

The command line after the command name goes to ADK unchanged (``adk web --help`` lists it).
Services whose ``--*_service_uri`` is not given are put on the database from the global options
(embedded PostgreSQL by default) under the URI ``adkpg+cli://``, which names no password, so
ADK's start-up banner and logs never show one.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import adk_services
from ..artifact_service import PostgresArtifactService
from ..memory_service import PostgresMemoryService
from ..session_service import PostgresSessionService
from ._app import main, run_async
from ._output import err_console
from ._settings import Settings

#: The scheme the CLI registers for "the database of this invocation".
CLI_SCHEME = "adkpg+cli"
SERVICE_FLAGS = ("--session_service_uri", "--artifact_service_uri", "--memory_service_uri")
ADK_SERVER_COMMANDS = ("web", "api_server")


def _given(flag: str, args: tuple[str, ...]) -> bool:
    return any(arg == flag or arg.startswith(flag + "=") for arg in args)


def register_cli_services(settings: Settings) -> None:
    """Register our schemes, plus ``adkpg+cli://`` → services on ``settings.database()``."""
    from google.adk.cli.service_registry import get_service_registry

    registry = get_service_registry()
    adk_services.register(registry)

    def sessions(uri: str, **_: Any) -> PostgresSessionService:
        return PostgresSessionService(database=settings.database())

    def artifacts(uri: str, **_: Any) -> PostgresArtifactService:
        return PostgresArtifactService(database=settings.database())

    def memory(uri: str, **_: Any) -> PostgresMemoryService:
        return PostgresMemoryService(database=settings.database())

    registry.register_session_service(CLI_SCHEME, sessions)
    registry.register_artifact_service(CLI_SCHEME, artifacts)
    registry.register_memory_service(CLI_SCHEME, memory)


def adk_arguments(command: str, args: tuple[str, ...]) -> list[str]:
    """ADK's argv for ``command``: the user's arguments plus our service URIs where missing."""
    argv = [command, *args]
    if _given("--help", args) or _given("-h", args):
        return argv
    extra: list[str] = []
    for flag in SERVICE_FLAGS:
        if not _given(flag, args):
            extra += [flag, f"{CLI_SCHEME}://"]
    # Options before the positional AGENTS_DIR are accepted by click in any order.
    return [command, *extra, *args]


def check_database(settings: Settings, args: tuple[str, ...]) -> None:
    """Connect and migrate before ADK starts serving, when any service is on our database:
    an unreachable server or a refused login then ends the command with the one-line reason
    (exit 1), not with ADK's "started" banner and an HTTP 500 on the first request."""
    if all(_given(flag, args) for flag in SERVICE_FLAGS):
        return
    run_async(settings.database().migrate())


def _serve(settings: Settings, command: str, args: tuple[str, ...]) -> None:
    from google.adk.cli.cli_tools_click import main as adk_main

    register_cli_services(settings)
    if not (_given("--help", args) or _given("-h", args)):
        check_database(settings, args)
        err_console.print(
            f"adk-postgres: sessions, artifacts and memory on {settings.database().describe()}",
            highlight=False,
            soft_wrap=True,
        )
    # ADK's click group parses the rest and runs uvicorn in this process, so the registry
    # entries above are the ones its server uses.
    # Not standalone: ADK's errors (and ours it wraps) reach `run()`, which prints them the
    # way every adk-postgres command does.
    status = adk_main.main(
        args=adk_arguments(command, args), prog_name="adk-postgres", standalone_mode=False
    )
    if isinstance(status, int) and status != 0:
        sys.exit(status)


def _make_server_command(command: str, summary: str) -> click.Command:
    @click.command(
        command,
        help=summary
        + "\n\nARGS are ADK's own (AGENTS_DIR, --host, --port, …; see `adk-postgres "
        + command
        + " --help`).",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_obj
    def server(settings: Settings, args: tuple[str, ...]) -> None:
        _serve(settings, command, args)

    return server


main.add_command(_make_server_command("web", "Start ADK's web UI and API server on adk-postgres."))
main.add_command(
    _make_server_command("api_server", "Start ADK's API server (no UI) on adk-postgres.")
)
