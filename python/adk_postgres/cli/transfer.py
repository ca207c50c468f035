"""``adk-postgres import``, ``export`` and ``restore``: moving sessions in and out.

Progress goes to stderr (rich), results to stdout, so ``export -o -`` can be piped.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import click
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..transfer import export_sessions, import_sessions, restore_sessions
from ..transfer.sources import redact
from ._app import EXIT_FAILURE, main, run_async
from ._output import console, err_console, fail
from ._settings import Settings


@contextmanager
def _progress(what: str) -> Iterator[Progress]:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        yield progress


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@main.command("import")
@click.argument("source_url")
@click.option("--app", "app_name", metavar="NAME", help="Only this app's sessions.")
@click.option("--dry-run", is_flag=True, help="Read and compare; write nothing.")
@click.pass_obj
def import_command(settings: Settings, source_url: str, app_name: str | None, dry_run: bool):
    """Copy sessions, events and app/user state from an ADK database into adk-postgres.

    SOURCE_URL is a SqliteSessionService file (a path or sqlite:///path/sessions.db) or a
    DatabaseSessionService database (sqlite:///…, postgresql://…; schema v0 or v1). Running
    it again copies nothing twice and adds events the source gained since. A session's state
    follows the source while the source is the newer side; once the session was used here,
    its state stays. App/user state keys already present here win over the source's.
    The command fails (exit 1) unless every source session and event is present afterwards.
    """

    async def run() -> None:
        with _progress("import") as progress:
            task = progress.add_task(f"importing from {redact(source_url)}", total=None)

            def advance(app: str, done: int) -> None:
                progress.update(task, description=f"{app}: {done} sessions read")

            report = await import_sessions(
                source_url,
                settings.database(),
                app_name=app_name,
                dry_run=dry_run,
                progress=advance,
            )
        verb = "would copy" if dry_run else "copied"
        _say(f"source: {report.source_kind} {report.source_label}")
        _say(
            f"{report.sessions_seen} sessions, {report.events_seen} events in "
            f"{len(report.apps)} app(s); {verb} {report.sessions_created} new sessions and "
            f"{report.events_added} events"
            + ("" if dry_run else f"; took newer state of {report.states_taken} sessions")
        )
        if dry_run:
            return
        _say(
            f"count check: {report.sessions_present}/{report.sessions_seen} sessions, "
            f"{report.events_present}/{report.events_seen} events present"
        )
        if not report.complete:
            fail("count check failed: the target is missing sessions or events")
            sys.exit(EXIT_FAILURE)

    run_async(run())


@main.command("export")
@click.option("--app", "app_name", metavar="NAME", help="Only this app's sessions.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=Path("-"),
    show_default=True,
    help="File to write, '-' for stdout.",
)
@click.pass_obj
def export_command(settings: Settings, app_name: str | None, output: Path) -> None:
    """Write sessions, events and app/user state as JSON Lines (one session per line)."""

    async def run(out: BinaryIO) -> None:
        with _progress("export") as progress:
            task = progress.add_task("exporting", total=None)
            report = await export_sessions(
                settings.database(),
                out,
                app_name=app_name,
                progress=lambda n: progress.update(task, description=f"{n} sessions"),
            )
        out.flush()
        err_console.print(
            f"exported {report.sessions} sessions, {report.events} events of {report.apps} app(s)",
            highlight=False,
            soft_wrap=True,
        )

    if str(output) == "-":
        run_async(run(sys.stdout.buffer))
    else:
        with output.open("wb") as out:
            run_async(run(out))


@main.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.pass_obj
def restore_command(settings: Settings, file: Path) -> None:
    """Load an export (FILE, or '-' for stdin). Sessions and events already present are kept;
    running it twice equals running it once. A malformed line stops it with an error naming
    the line; nothing of that session is written."""

    async def run(lines: BinaryIO) -> None:
        with _progress("restore") as progress:
            task = progress.add_task("restoring", total=None)
            report = await restore_sessions(
                settings.database(),
                lines,
                progress=lambda n: progress.update(task, description=f"{n} sessions"),
            )
        _say(
            f"restored {report.sessions} sessions ({report.sessions_created} new), "
            f"{report.events} events ({report.events_added} new)"
        )

    if str(file) == "-":
        run_async(run(sys.stdin.buffer))
    else:
        if not file.is_file():
            raise click.BadParameter(f"no such file: {file}", param_hint="FILE")
        with file.open("rb") as lines:
            run_async(run(lines))
