"""``adk-postgres web`` and ``adk-postgres api_server``: ADK's own servers, with sessions,
artifacts and memory on adk-postgres.

The command line after the command name goes to ADK unchanged (``adk web --help`` lists it).
Services whose ``--*_service_uri`` is not given are put on the database from the global options
(embedded PostgreSQL by default) under the URI ``adkpg+cli://``, which names no password, so
ADK's start-up banner and logs never show one.

Runs (``/run``, ``/run_sse``) of one session take its run lease (``--run-strategy``, see
``adk_postgres.runs``) when sessions are on adk-postgres.

With ADK's ``--a2a``, A2A tasks and push-notification configs are kept on the same database
(``adk_postgres.a2a``), and feedback routes are added next to each agent's A2A endpoint
(``adk_postgres.a2a_routes``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from .. import adk_services
from ..artifact_service import PostgresArtifactService
from ..memory_service import PostgresMemoryService
from ..run_middleware import RunLeaseMiddleware
from ..runs import DEFAULT_EXPIRY, DEFAULT_WAIT_TIMEOUT, STRATEGIES
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
    if adk_services._a2a_installed():

        def tasks(uri: str, **_: Any) -> Any:
            from ..a2a import PostgresTaskStore

            return PostgresTaskStore(database=settings.database())

        registry._register_task_store_service(CLI_SCHEME, tasks)


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


@dataclass(frozen=True)
class RunLeaseOptions:
    """``--run-strategy`` (``off``: no leases), ``--run-lease-expiry``, ``--run-wait-timeout``
    (0: wait as long as it takes)."""

    strategy: str = "enqueue"
    expiry: float = DEFAULT_EXPIRY
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT


def install_app_hooks(options: RunLeaseOptions, settings: Settings) -> None:
    """Make the app ADK's command builds run ``/run``, ``/run_sse`` (and with ``--a2a`` each
    A2A message) under run leases, when its session service is ours, and (with ``--a2a``)
    keep A2A tasks and push configs on the database with feedback routes beside them. ADK's
    ``get_fast_api_app`` has no hook for either, so this process's copy of it is wrapped (the
    command serves one app and then exits); the session service it creates is caught on the
    way."""
    import google.adk.cli.fast_api as fast_api

    if getattr(fast_api.get_fast_api_app, "_adk_postgres", False):
        return
    build_app = fast_api.get_fast_api_app

    def get_fast_api_app(*args: Any, **kwargs: Any) -> Any:
        created: list[object] = []
        make_sessions = fast_api.create_session_service_from_options

        def caught(*a: Any, **kw: Any) -> Any:
            service = make_sessions(*a, **kw)
            created.append(service)
            return service

        a2a_store = _a2a_task_store(kwargs, settings)
        fast_api.create_session_service_from_options = caught
        try:
            with _a2a_on_database(settings, options, enabled=a2a_store is not None):
                app = build_app(*args, **kwargs)
        finally:
            fast_api.create_session_service_from_options = make_sessions
        if a2a_store is not None:
            from ..a2a_routes import feedback_routes

            # First, before any catch-all route of the web UI.
            for route in reversed(feedback_routes(a2a_store)):
                app.router.routes.insert(0, route)
        service = created[-1] if created else None
        if options.strategy != "off" and isinstance(service, PostgresSessionService):
            leases = service.run_leases(
                strategy=options.strategy,  # type: ignore[arg-type]
                expiry=options.expiry,
                wait_timeout=options.wait_timeout or None,
            )
            app.add_middleware(RunLeaseMiddleware, leases=leases)
        return app

    get_fast_api_app._adk_postgres = True  # type: ignore[attr-defined]
    fast_api.get_fast_api_app = get_fast_api_app


def _a2a_task_store(kwargs: dict[str, Any], settings: Settings) -> Any:
    """With ``a2a=True`` and no task store chosen: our task store on the CLI's database (set
    into ``kwargs`` as ``adkpg+cli://``), returned for the feedback routes; else None."""
    if not kwargs.get("a2a") or kwargs.get("task_store_uri") or not adk_services._a2a_installed():
        return None
    from ..a2a import PostgresTaskStore

    kwargs["task_store_uri"] = f"{CLI_SCHEME}://"
    return PostgresTaskStore(database=settings.database())


@contextmanager
def _a2a_on_database(
    settings: Settings, options: RunLeaseOptions, *, enabled: bool
) -> Iterator[None]:
    """While ADK builds the app: its A2A routes get our push-config store (ADK creates an
    ``InMemoryPushNotificationConfigStore`` per agent, with no option to choose another) and,
    unless run leases are off, an executor that runs each message under its session's run
    lease (``adk_postgres.a2a_runs``)."""
    if not enabled:
        yield
        return
    import a2a.server.tasks as a2a_tasks
    import google.adk.a2a.executor.a2a_agent_executor as adk_executor

    from ..a2a import PostgresPushNotificationConfigStore
    from ..a2a_runs import LeasedA2aAgentExecutor

    in_memory = a2a_tasks.InMemoryPushNotificationConfigStore
    executor = adk_executor.A2aAgentExecutor

    def on_database(*_: Any, **__: Any) -> PostgresPushNotificationConfigStore:
        return PostgresPushNotificationConfigStore(database=settings.database())

    def leased(*args: Any, **kwargs: Any) -> LeasedA2aAgentExecutor:
        lease_options = {
            "strategy": options.strategy,
            "expiry": options.expiry,
            "wait_timeout": options.wait_timeout or None,
        }
        return LeasedA2aAgentExecutor(*args, lease_options=lease_options, **kwargs)

    a2a_tasks.InMemoryPushNotificationConfigStore = on_database  # type: ignore[assignment,misc]
    if options.strategy != "off":
        adk_executor.A2aAgentExecutor = leased  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        a2a_tasks.InMemoryPushNotificationConfigStore = in_memory  # type: ignore[misc]
        adk_executor.A2aAgentExecutor = executor  # type: ignore[misc]


RUN_LEASE_HELP = """\
adk-postgres options (before or after ADK's):
  --run-strategy [enqueue|reject|interrupt|off]
                           What a run request (/run, /run_sse, an A2A message with --a2a)
                           does while another run of the same session is in progress, in
                           any server process on the database: wait its turn (default), get
                           409 (A2A: a failed task), or stop the running one. A request may
                           choose with the header X-ADK-Postgres-Run-Strategy.
  --run-lease-expiry SECONDS
                           A session held by a process that died is free again after this
                           long (default 30).
  --run-wait-timeout SECONDS
                           A waiting run gives up with 503 after this long (default 300; 0:
                           no limit).
"""


def _serve(
    settings: Settings,
    command: str,
    args: tuple[str, ...],
    runs: RunLeaseOptions | None = None,
) -> None:
    from google.adk.cli.cli_tools_click import main as adk_main

    register_cli_services(settings)
    if _given("--help", args) or _given("-h", args):
        click.echo(RUN_LEASE_HELP)
    else:
        install_app_hooks(runs or RunLeaseOptions(), settings)
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
    @click.option(
        "--run-strategy",
        type=click.Choice([*STRATEGIES, "off"]),
        default="enqueue",
        show_default=True,
    )
    @click.option(
        "--run-lease-expiry",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_EXPIRY,
        show_default=True,
    )
    @click.option(
        "--run-wait-timeout",
        type=click.FloatRange(min=0),
        default=DEFAULT_WAIT_TIMEOUT,
        show_default=True,
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_obj
    def server(
        settings: Settings,
        run_strategy: str,
        run_lease_expiry: float,
        run_wait_timeout: float,
        args: tuple[str, ...],
    ) -> None:
        runs = RunLeaseOptions(run_strategy, run_lease_expiry, run_wait_timeout)
        _serve(settings, command, args, runs)

    return server


main.add_command(_make_server_command("web", "Start ADK's web UI and API server on adk-postgres."))
main.add_command(
    _make_server_command("api_server", "Start ADK's API server (no UI) on adk-postgres.")
)
