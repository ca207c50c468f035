"""``adk-postgres conversations …``: the opt-in indexes behind conversation search and state
queries (``adk_postgres.conversations``)."""

from __future__ import annotations

import click

from ..conversations import DEFAULT_LANGUAGE, PostgresConversations
from ._app import main, run_async
from ._output import console
from ._settings import Settings


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _conversations(settings: Settings) -> PostgresConversations:
    return PostgresConversations(database=settings.database())


@main.group("conversations")
def conversations_group() -> None:
    """Indexes for conversation search and state queries.

    Both work without them (scanning a user's events, an app's sessions); an index makes
    them lookups and costs every append a little (README "Conversations").
    """


@conversations_group.command("index")
@click.option(
    "--search",
    "language",
    metavar="LANGUAGE",
    help=f"Build the full-text search index for this text search configuration "
    f"(e.g. {DEFAULT_LANGUAGE}, simple, german).",
)
@click.option("--state", is_flag=True, help="Build the GIN index for state queries.")
@click.option("--drop", is_flag=True, help="Drop the index instead.")
@click.pass_obj
def index(settings: Settings, language: str | None, state: bool, drop: bool) -> None:
    """Build (or --drop) an index without blocking writers (CREATE INDEX CONCURRENTLY)."""
    if (language is None) == (not state):
        raise click.UsageError("give exactly one of --search LANGUAGE or --state")
    conversations = _conversations(settings)
    what = f"search index ({language})" if language else "state index"
    if drop:
        if state:
            found = run_async(conversations.drop_state_index())
        else:
            found = run_async(conversations.drop_search_index(language))
        _say(f"dropped the {what}" if found else f"there was no {what}")
        return
    if state:
        run_async(conversations.create_state_index())
    else:
        run_async(conversations.create_search_index(language))
    _say(f"{what}: ready")


@conversations_group.command("indexes")
@click.pass_obj
def indexes(settings: Settings) -> None:
    """List the conversation indexes that exist."""
    names = run_async(_conversations(settings).indexes())
    _say("\n".join(names) if names else "no conversation indexes (search and state queries scan)")
