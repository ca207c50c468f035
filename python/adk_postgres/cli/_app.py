"""The ``adk-postgres`` command group, its global options and its error handling."""

from __future__ import annotations

import asyncio
import importlib.metadata
import platform
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import SCHEMA_VERSION, __version__, embedded
from ..errors import AdkPostgresError
from ._output import fail
from ._settings import Settings, load_env_file

T = TypeVar("T")

#: What `adk-postgres --version` prints: what a bug report needs besides our own version.
VERSION_MESSAGE = (
    f"%(prog)s, version %(version)s (schema version {SCHEMA_VERSION}, "
    f"google-adk {importlib.metadata.version('google-adk')}, "
    f"Python {platform.python_version()})"
)

#: Exit status for a command that ran and failed (bad input, unreachable server, ...).
EXIT_FAILURE = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adk-postgres", message=VERSION_MESSAGE)
@click.option(
    "--database-url",
    "-d",
    metavar="URL",
    help="PostgreSQL URL. Default: $ADK_POSTGRES_DATABASE_URL, then $DATABASE_URL, "
    "then the embedded PostgreSQL.",
)
@click.option(
    "--schema",
    metavar="NAME",
    help="Schema holding the tables. Default: $ADK_POSTGRES_SCHEMA, then 'public'.",
)
@click.option(
    "--pool-size",
    type=click.IntRange(min=1),
    help="Most connections open at once. Default: $ADK_POSTGRES_POOL_SIZE, then 10.",
)
@click.option(
    "--embedded",
    "force_embedded",
    is_flag=True,
    help="Use the embedded PostgreSQL even if a URL is configured.",
)
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Also show the embedded PostgreSQL's own log lines (the pg_ctl commands it runs).",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read variables from this file (default: ./.env if present); the real environment "
    "wins over it.",
)
@click.pass_context
def main(
    ctx: click.Context,
    database_url: str | None,
    schema: str | None,
    pool_size: int | None,
    force_embedded: bool,
    verbose: bool,
    env_file: Path | None,
) -> None:
    """PostgreSQL persistence for Google's Agent Development Kit (sessions, artifacts, memory)."""
    load_env_file(env_file)
    if verbose:
        embedded.log_verbosely()
    if force_embedded and database_url:
        raise click.UsageError("--embedded and --database-url exclude each other")
    settings = Settings(
        url_flag=database_url,
        schema_flag=schema,
        pool_size_flag=pool_size,
        force_embedded=force_embedded,
        env_file=env_file,
    )
    ctx.obj = settings
    ctx.call_on_close(settings.close)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's async body on a fresh event loop."""
    return asyncio.run(coro)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: click's parsing, plus a one-line reason and exit status 1 for
    our own errors (never a traceback for bad input or an unreachable server)."""
    # Each command module registers its commands on `main` when imported.
    from . import admin, agents, conversations, serve, tenancy, transfer  # noqa: F401

    try:
        # Without standalone mode click returns the code of `ctx.exit(n)` instead of exiting.
        status = main.main(args=argv, prog_name="adk-postgres", standalone_mode=False)
        if isinstance(status, int) and status != 0:
            sys.exit(status)
    except click.exceptions.Abort:
        fail("aborted")
        sys.exit(EXIT_FAILURE)
    except click.UsageError as exc:
        exc.show()  # the usage line, then click's "Error: ..."
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # ADK's server commands wrap our errors (a bad service URI option) in ClickException:
        # print them like every other error of ours.
        cause = exc.__cause__
        if isinstance(cause, AdkPostgresError):
            fail(f"{type(cause).__name__}: {cause}")
        else:
            fail(exc.format_message())
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except AdkPostgresError as exc:
        fail(f"{type(exc).__name__}: {exc}")
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        fail("interrupted")
        sys.exit(130)
