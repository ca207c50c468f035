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

``--workers N`` runs N such server processes on one host:port under a supervisor
(``adk_postgres.cli.workers``).
"""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from .. import adk_services, embedded
from ..artifact_service import PostgresArtifactService
from ..memory_service import PostgresMemoryService
from ..registry_routes import add_registry_routes, registry_loader
from ..run_middleware import RunLeaseMiddleware
from ..runs import DEFAULT_EXPIRY, DEFAULT_WAIT_TIMEOUT, STRATEGIES
from ..session_service import PostgresSessionService
from ._app import main, run_async
from ._output import err_console
from ._settings import Settings
from .workers import (
    Supervisor,
    check_port_free,
    current_worker,
    install_worker_hooks,
)

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


def uses_our_database(args: tuple[str, ...]) -> bool:
    """Whether any service goes to the database of the global options."""
    return not all(_given(flag, args) for flag in SERVICE_FLAGS)


def check_database(settings: Settings, args: tuple[str, ...]) -> None:
    """Connect and migrate before ADK starts serving, when any service is on our database:
    an unreachable server or a refused login then ends the command with the one-line reason
    (exit 1), not with ADK's "started" banner and an HTTP 500 on the first request."""
    if not uses_our_database(args):
        return
    run_async(settings.database().migrate())


@dataclass(frozen=True)
class ServerOptions:
    """Our options of ``web``/``api_server``: ``--run-strategy`` (``off``: no leases),
    ``--run-lease-expiry``, ``--run-wait-timeout`` (0: wait as long as it takes),
    ``--api-routes/--no-api-routes``."""

    strategy: str = "enqueue"
    expiry: float = DEFAULT_EXPIRY
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT
    #: Whether to mount our own routes (``adk_postgres.api_routes``); ``--no-api-routes``.
    api_routes: bool = True


def install_app_hooks(options: ServerOptions, settings: Settings) -> None:
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
        agents = registry_loader(kwargs, settings.database, CLI_SCHEME)
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
        if options.api_routes:
            add_registry_routes(app, agents)
        service = created[-1] if created else None
        if options.api_routes and isinstance(service, PostgresSessionService):
            from ..api_routes import api_routes

            for route in reversed(api_routes(service.database)):
                app.router.routes.insert(0, route)
        if options.strategy != "off" and isinstance(service, PostgresSessionService):
            leases = service.run_leases(
                strategy=options.strategy,  # type: ignore[arg-type]
                expiry=options.expiry,
                wait_timeout=options.wait_timeout or None,
            )
            app.add_middleware(RunLeaseMiddleware, leases=leases)
        freeze_startup_objects()
        return app

    get_fast_api_app._adk_postgres = True  # type: ignore[attr-defined]
    fast_api.get_fast_api_app = get_fast_api_app


def freeze_startup_objects() -> None:
    """Move what start-up built (ADK, google-genai, pydantic's schemas, the app: about 140,000
    objects, alive as long as the server) out of the cyclic collector's sight, after one
    collection so that no garbage is kept. Every full collection walked all of them, a pause
    of tens of milliseconds for every request in flight (see ``benches/client_cost.py``)."""
    gc.collect()
    gc.freeze()


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
    settings: Settings, options: ServerOptions, *, enabled: bool
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
  --no-api-routes          Leave out adk-postgres's own routes under /adk-postgres/v1
                           (conversations, search, state queries, agents, health,
                           stats).
  --workers N              Serve with N processes on the same host and port (default 1: this
                           process). The database is resolved and migrated once, the embedded
                           PostgreSQL started once; a worker that crashes is restarted;
                           Ctrl-C or SIGTERM stops them all.
"""


def _serve(
    settings: Settings,
    command: str,
    args: tuple[str, ...],
    runs: ServerOptions | None = None,
    workers: int = 1,
) -> None:
    from google.adk.cli.cli_tools_click import main as adk_main

    worker = current_worker()
    if worker is not None:  # one of the processes of `--workers N`: the parent's database
        if worker.database_url is not None:
            settings.url_flag = worker.database_url
            settings.force_embedded = False
        settings.schema_flag = worker.schema
        settings.pool_size_flag = worker.pool_size
    register_cli_services(settings)
    if _given("--help", args) or _given("-h", args):
        click.echo(RUN_LEASE_HELP)
    elif workers > 1:
        _supervise(settings, command, args, runs or ServerOptions(), workers)
        return
    else:
        install_app_hooks(runs or ServerOptions(), settings)
        check_database(settings, args)
        if worker is None:
            err_console.print(
                f"adk-postgres: sessions, artifacts and memory on {settings.database().describe()}",
                highlight=False,
                soft_wrap=True,
            )
        else:
            install_worker_hooks(worker)
    # ADK's click group parses the rest and runs uvicorn in this process, so the registry
    # entries above are the ones its server uses.
    # Not standalone: ADK's errors (and ours it wraps) reach `run()`, which prints them the
    # way every adk-postgres command does.
    status = adk_main.main(
        args=adk_arguments(command, args), prog_name="adk-postgres", standalone_mode=False
    )
    if isinstance(status, int) and status != 0:
        sys.exit(status)


def _listen_address(command: str, args: tuple[str, ...]) -> tuple[str, int]:
    """``--host`` and ``--port`` as ADK's command parses them (its usage errors included)."""
    from google.adk.cli.cli_tools_click import main as adk_main

    argv = adk_arguments(command, args)
    adk_command = adk_main.commands[command]
    with adk_command.make_context(f"adk-postgres {command}", argv[1:]) as ctx:
        return str(ctx.params.get("host") or "127.0.0.1"), int(ctx.params.get("port") or 0)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _supervise(
    settings: Settings, command: str, args: tuple[str, ...], runs: ServerOptions, count: int
) -> None:
    """``--workers N``: resolve and migrate the database once here, then serve with N worker
    processes (`workers.Supervisor`) until a signal; exit 1 if a worker fails to start."""
    host, port = _listen_address(command, args)
    check_port_free(host, port)  # fail before starting anything (the embedded PostgreSQL)
    started_embedded = False
    config: dict[str, object] = {}
    # Until the supervisor takes the signals over, SIGTERM and SIGHUP end the set-up the way
    # Ctrl-C does (an exception, so the embedded PostgreSQL is released below), not at once.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if uses_our_database(args):
            started_embedded = settings.uses_embedded
            check_database(settings, args)
            description = settings.database().describe()
            config = {
                "database_url": settings.concrete_url(),
                "schema": settings.schema,
                "pool_size": settings.pool_size,
            }
            # The workers open their own pools; this process only supervises.
            settings.close()
            err_console.print(
                f"adk-postgres: sessions, artifacts and memory on {description}",
                highlight=False,
                soft_wrap=True,
            )
        free = check_port_free(host, port)  # again: the database may have taken a while
        worker_args = [
            command,
            "--run-strategy",
            runs.strategy,
            "--run-lease-expiry",
            repr(runs.expiry),
            "--run-wait-timeout",
            repr(runs.wait_timeout),
            *([] if runs.api_routes else ["--no-api-routes"]),
            *args,
        ]
        if port == 0:  # each worker would get its own: the one found free (the last wins)
            worker_args += ["--port", str(free)]
        shown = f"[{host}]" if ":" in host else host
        supervisor = Supervisor(worker_args, count, f"http://{shown}:{free}", config)
        status = supervisor.run()  # its own handlers while it runs
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if started_embedded:
            settings.close()
            embedded.stop_default()
    if status:
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
    @click.option("--api-routes/--no-api-routes", default=True, show_default=True)
    @click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @click.pass_obj
    def server(
        settings: Settings,
        run_strategy: str,
        run_lease_expiry: float,
        run_wait_timeout: float,
        api_routes: bool,
        workers: int,
        args: tuple[str, ...],
    ) -> None:
        runs = ServerOptions(run_strategy, run_lease_expiry, run_wait_timeout, api_routes)
        _serve(settings, command, args, runs, workers)

    return server


main.add_command(_make_server_command("web", "Start ADK's web UI and API server on adk-postgres."))
main.add_command(
    _make_server_command("api_server", "Start ADK's API server (no UI) on adk-postgres.")
)
