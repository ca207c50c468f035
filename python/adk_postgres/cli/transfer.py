"""``adk-postgres import``, ``export`` and ``restore``: moving sessions (and, for export and
restore, artifacts, memory, A2A tasks and tenancy) in and out.

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

from ..transfer import PARTS, export_backup, import_sessions, restore_backup
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


def _parts(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _row_counts(rows: dict[str, int], added: dict[str, int] | None = None) -> str:
    """``artifact_versions 3 (1 new), ...`` for the tables with rows."""
    return ", ".join(
        f"{table} {count}" + (f" ({added.get(table, 0)} new)" if added is not None else "")
        for table, count in rows.items()
    )


@main.command("export")
@click.option("--app", "app_name", metavar="NAME", help="Only this app's data.")
@click.option(
    "--only",
    metavar="PARTS",
    help=f"Comma-separated parts to export: {','.join(PARTS)} (default: all).",
)
@click.option(
    "--content-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The artifact service's content_dir: include the bytes of contents kept there.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=Path("-"),
    show_default=True,
    help="File to write, '-' for stdout.",
)
@click.pass_obj
def export_command(
    settings: Settings,
    app_name: str | None,
    only: str | None,
    content_dir: Path | None,
    output: Path,
) -> None:
    """Write everything adk-postgres keeps as JSON Lines: sessions with their events, app and
    user state, artifacts (versions, metadata and content, streamed), memory entries (with
    embeddings), A2A tasks with push configs and feedback, and tenancy grants. Artifact
    contents kept in files are included when --content-dir names their directory (they then
    restore into PostgreSQL); otherwise only their rows are exported, and the command says
    so."""
    parts = _parts(only)

    async def run(out: BinaryIO) -> None:
        with _progress("export") as progress:
            task = progress.add_task("exporting", total=None)
            report = await export_backup(
                settings.database(),
                out,
                app_name=app_name,
                only=parts,
                content_dir=content_dir,
                progress=lambda what: progress.update(task, description=f"exported {what}"),
            )
        out.flush()
        summary = (
            f"exported {report.sessions} sessions, {report.events} events of {report.apps} app(s)"
        )
        if report.rows:
            summary += f"; rows: {_row_counts(report.rows)}"
        err_console.print(summary, highlight=False, soft_wrap=True)
        if report.files_left_out:
            err_console.print(
                f"warning: {report.files_left_out} artifact content(s) kept in files were "
                "exported as rows only, without their bytes: pass --content-dir DIR (the "
                "artifact service's content_dir) to include them",
                highlight=False,
                soft_wrap=True,
            )

    if str(output) == "-":
        run_async(run(sys.stdout.buffer))
    else:
        # Checked before the file is created, so a typo leaves no empty file behind.
        from ..transfer.jsonl import check_parts

        check_parts(parts)
        with output.open("wb") as out:
            run_async(run(out))


@main.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.pass_obj
def restore_command(settings: Settings, file: Path) -> None:
    """Load an export (FILE, or '-' for stdin). What is already here wins: sessions, events
    and rows already present are kept, app/user state keys already present win; running it
    twice equals running it once. A malformed line stops it with an error naming the line;
    nothing of that session (or batch of rows) is written."""

    async def run(lines: BinaryIO) -> None:
        with _progress("restore") as progress:
            task = progress.add_task("restoring", total=None)
            report = await restore_backup(
                settings.database(),
                lines,
                progress=lambda what: progress.update(task, description=f"restoring {what}"),
            )
        _say(
            f"restored {report.sessions} sessions ({report.sessions_created} new), "
            f"{report.events} events ({report.events_added} new)"
        )
        if report.rows:
            _say(f"rows: {_row_counts(report.rows, report.rows_added)}")

    if str(file) == "-":
        run_async(run(sys.stdin.buffer))
    else:
        if not file.is_file():
            raise click.BadParameter(f"no such file: {file}", param_hint="FILE")
        with file.open("rb") as lines:
            run_async(run(lines))
