"""Conversations: what a chat product asks of its sessions beyond ADK's calls.

``PostgresConversations`` works on the tables the session service writes (same database, same
pool with ``database=``):

* ``list_conversations`` — a user's conversations, newest activity first, with a title, a
  preview (the last text said), the message count, created / last-activity times; paged by
  an opaque ``page_token`` (keyset, no OFFSET). A listing is pinned to the moment its first
  page was read: while sessions are appended to, later pages keep that order, so paging
  neither skips nor repeats a conversation (one created meanwhile shows up on the next
  listing's first page).
* ``set_title`` (else the title is the first user message, shortened), ``archive`` /
  ``restore`` (a soft delete: archived conversations leave the default list;
  ``archived=True`` lists them). ADK's ``delete_session`` stays the hard delete, and
  ``adk-postgres prune --archived-for 30d`` removes conversations archived that long.
* ``search`` — full-text search across one user's messages (ranked, with an HTML-safe
  snippet, the session and event it came from), in a configurable text search language.
* ``find_sessions_by_state`` — sessions whose (session-scoped) state contains a JSON object
  (``state @> ...``), per app and optionally per user.
* ``create_search_index`` / ``create_state_index`` — the opt-in GIN indexes that make search
  and state queries index lookups, built without blocking writers (see the README for what
  each costs an append).

Bad input (ids PostgreSQL cannot hold, a page size out of range, a token that is not one of
ours or belongs to another listing, an unknown language) raises ``DataError`` before anything
reaches the server; an unknown session raises ADK's ``SessionNotFoundError``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from google.adk.errors.session_not_found_error import SessionNotFoundError

from ._keys import check_keys, check_text
from ._native import Conversations as NativeConversations
from ._service_base import DatabaseBacked
from .database import Database
from .errors import DataError

#: The largest page any listing serves.
MAX_PAGE_SIZE = 1000
#: Titles derived from the first user message, and previews, are cut to these lengths.
TITLE_LENGTH = 80
PREVIEW_LENGTH = 160
#: An explicit title's limit.
MAX_TITLE_LENGTH = 500
#: The default text search configuration.
DEFAULT_LANGUAGE = "english"
#: A search query's limit.
MAX_QUERY_LENGTH = 1000
_TOKEN_VERSION = 1


@dataclass(frozen=True)
class Conversation:
    """One conversation (an ADK session) in a listing. Times are epoch seconds."""

    session_id: str
    title: str
    #: Whether ``title`` was set explicitly (else it is the first user message, shortened).
    title_is_set: bool
    #: The last text said in it (user or model), shortened; "" when nothing was said yet.
    preview: str
    #: Events with text: the user's and the model's messages.
    message_count: int
    created_at: float
    last_activity: float
    archived: bool
    archived_at: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ConversationPage:
    conversations: list[Conversation]
    #: Pass back as ``page_token`` for the next page; ``None`` on the last page.
    next_page_token: str | None


@dataclass(frozen=True)
class SearchHit:
    """An event whose text matches a search."""

    session_id: str
    event_id: str
    timestamp: float
    author: str | None
    #: Fragments around the matches: the text HTML-escaped, matches in ``<mark>`` tags.
    snippet: str
    rank: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    next_page_token: str | None


@dataclass(frozen=True)
class StateMatch:
    """A session whose state contains the object asked for."""

    user_id: str
    session_id: str
    last_activity: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StatePage:
    sessions: list[StateMatch]
    next_page_token: str | None


def shorten(text: str | None, length: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``length`` characters."""
    if not text:
        return ""
    flat = " ".join(text.split())
    if len(flat) <= length:
        return flat
    cut = flat[: length - 1]
    space = cut.rfind(" ")
    if space > length // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"


def token_scope(*parts: object) -> str:
    """A short digest of what a token belongs to (a token of another listing is refused)."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def encode_token(kind: str, scope: str, position: list[Any]) -> str:
    raw = json.dumps({"v": _TOKEN_VERSION, "k": kind, "s": scope, "p": position})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: object, kind: str, scope: str, shape: tuple[type, ...]) -> list[Any]:
    """The position a token holds, checked against the listing it is used for."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise DataError("page_token is not a token this listing returned")
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError):
        raise DataError("page_token is not a token this listing returned") from None
    if not isinstance(data, dict) or data.get("v") != _TOKEN_VERSION or data.get("k") != kind:
        raise DataError("page_token is not a token this listing returned")
    if data.get("s") != scope:
        raise DataError("page_token belongs to another listing (other app, user or filter)")
    position = data.get("p")
    if (
        not isinstance(position, list)
        or len(position) != len(shape)
        or not all(_is(value, t) for value, t in zip(position, shape, strict=True))
    ):
        raise DataError("page_token is not a token this listing returned")
    return position


def _is(value: object, expected: type) -> bool:
    if expected is float:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if expected is str:
        return isinstance(value, str) and "\x00" not in value and len(value) <= 256
    return isinstance(value, expected)


def check_page_size(page_size: object) -> int:
    if not isinstance(page_size, int) or isinstance(page_size, bool):
        raise DataError(f"page_size must be an int, got {type(page_size).__name__}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise DataError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
    return page_size


_LANGUAGE = re.compile(r"[a-z][a-z0-9_]{0,62}")


def check_language(language: object) -> str:
    if not isinstance(language, str) or not _LANGUAGE.fullmatch(language):
        raise DataError(
            f"language must be a text search configuration name such as 'english' or "
            f"'simple', not {language!r}"
        )
    return language


class PostgresConversations(DatabaseBacked):
    """Conversation lists, titles, archive, search and state queries on PostgreSQL.

    Open it from a URL/options like the services, or share a pool:
    ``PostgresConversations(database=session_service.database)``. ``language`` is the text
    search configuration ``search`` uses by default."""

    def __init__(
        self,
        uri: str | None = None,
        *,
        database: Database | None = None,
        language: str = DEFAULT_LANGUAGE,
        **options: Any,
    ) -> None:
        self.language = check_language(language)
        self._attach_database(uri, database, options)
        self._native: NativeConversations | None = None

    async def _store(self) -> NativeConversations:
        if self._native is None:
            self._native = NativeConversations(await self._database.store())
        return self._native

    async def list_conversations(
        self,
        app_name: str,
        user_id: str,
        *,
        page_size: int = 50,
        page_token: str | None = None,
        archived: bool = False,
    ) -> ConversationPage:
        """A page of ``user_id``'s conversations (archived ones with ``archived=True``),
        newest activity first."""
        check_keys(app_name=app_name, user_id=user_id)
        check_page_size(page_size)
        scope = token_scope("conversations", app_name, user_id, bool(archived))
        native = await self._store()
        if page_token is None:
            # The later of the database's clock and ours: events carry the clock of the
            # process that made them, and one made here just now must count as before t0.
            t0, after = max(await native.now(), time.time()), None
        else:
            t0, key, session_id = decode_token(
                page_token, "conversations", scope, (float, float, str)
            )
            after = (float(key), session_id)
        # One more than asked tells whether there is a next page.
        rows = await native.list(app_name, user_id, bool(archived), t0, after, page_size + 1)
        more = len(rows) > page_size
        rows = rows[:page_size]
        conversations = [
            Conversation(
                session_id=sid,
                title=title if title is not None else shorten(first, TITLE_LENGTH),
                title_is_set=title is not None,
                preview=shorten(last, PREVIEW_LENGTH),
                message_count=count,
                created_at=created,
                last_activity=key,
                archived=archived_at is not None,
                archived_at=archived_at,
            )
            for sid, key, title, first, last, count, created, archived_at in rows
        ]
        token = None
        if more and rows:
            last_row = rows[-1]
            token = encode_token("conversations", scope, [t0, last_row[1], last_row[0]])
        return ConversationPage(conversations, token)

    async def set_title(
        self, app_name: str, user_id: str, session_id: str, title: str | None
    ) -> None:
        """Sets the conversation's title; ``None`` goes back to the derived one."""
        check_keys(app_name=app_name, user_id=user_id, session_id=session_id)
        if title is not None:
            check_text("title", title, max_length=MAX_TITLE_LENGTH)
            if not title.strip():
                raise DataError("title is empty (pass None to go back to the derived title)")
        native = await self._store()
        if not await native.set_title(app_name, user_id, session_id, title):
            raise SessionNotFoundError(f"Session {session_id} not found.")

    async def archive(self, app_name: str, user_id: str, session_id: str) -> None:
        """Moves the conversation out of the default list (a soft delete); again: no-op."""
        await self._set_archived(app_name, user_id, session_id, True)

    async def restore(self, app_name: str, user_id: str, session_id: str) -> None:
        """Brings an archived conversation back into the default list."""
        await self._set_archived(app_name, user_id, session_id, False)

    async def _set_archived(
        self, app_name: str, user_id: str, session_id: str, archived: bool
    ) -> None:
        check_keys(app_name=app_name, user_id=user_id, session_id=session_id)
        native = await self._store()
        if not await native.set_archived(app_name, user_id, session_id, archived):
            raise SessionNotFoundError(f"Session {session_id} not found.")

    async def search(
        self,
        app_name: str,
        user_id: str,
        query: str,
        *,
        language: str | None = None,
        page_size: int = 20,
        page_token: str | None = None,
        include_archived: bool = False,
    ) -> SearchPage:
        """Events of ``user_id`` whose text matches ``query`` (web-search syntax: words,
        "a phrase", ``or``, ``-word``), best match first, then newest."""
        check_keys(app_name=app_name, user_id=user_id)
        check_text("query", query, max_length=MAX_QUERY_LENGTH)
        if not query.strip():
            raise DataError("the search query is empty")
        language = check_language(language or self.language)
        check_page_size(page_size)
        scope = token_scope("search", app_name, user_id, query, language, bool(include_archived))
        after = None
        if page_token is not None:
            rank, ts, sid, eid = decode_token(page_token, "search", scope, (float, float, str, str))
            after = (float(rank), float(ts), sid, eid)
        native = await self._store()
        rows = await native.search(
            app_name, user_id, query, language, after, page_size + 1, bool(include_archived)
        )
        more = len(rows) > page_size
        rows = rows[:page_size]
        hits = [
            SearchHit(
                session_id=sid,
                event_id=eid,
                timestamp=ts,
                author=author,
                snippet=snippet,
                rank=rank,
            )
            for sid, eid, ts, rank, author, snippet in rows
        ]
        token = None
        if more and rows:
            sid, eid, ts, rank, *_ = rows[-1]
            token = encode_token("search", scope, [rank, ts, sid, eid])
        return SearchPage(hits, token)

    async def find_sessions_by_state(
        self,
        app_name: str,
        contains: dict[str, Any],
        *,
        user_id: str | None = None,
        page_size: int = 50,
        page_token: str | None = None,
    ) -> StatePage:
        """Sessions of ``app_name`` (one user's with ``user_id``) whose session state contains
        ``contains`` (PostgreSQL's ``@>``: ``{"stage": "review"}`` matches a state with that key
        and value; nested objects match by containment), newest activity first. ``app:`` and
        ``user:`` keys live outside the session state and are not searched."""
        check_keys(app_name=app_name)
        if user_id is not None:
            check_keys(user_id=user_id)
        if not isinstance(contains, dict):
            raise DataError(f"contains must be a dict, got {type(contains).__name__}")
        try:
            encoded = json.dumps(contains, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise DataError(f"contains is not JSON: {exc}") from None
        if "\\u0000" in encoded:
            raise DataError("contains holds a NUL character, which PostgreSQL cannot store")
        check_page_size(page_size)
        scope = token_scope("state", app_name, user_id, encoded)
        after = None
        if page_token is not None:
            key, uid, sid = decode_token(page_token, "state", scope, (float, str, str))
            after = (float(key), uid, sid)
        native = await self._store()
        rows = await native.find_by_state(app_name, user_id, encoded.encode(), after, page_size + 1)
        more = len(rows) > page_size
        rows = rows[:page_size]
        token = None
        if more and rows:
            uid, sid, key = rows[-1]
            token = encode_token("state", scope, [key, uid, sid])
        return StatePage([StateMatch(u, s, k) for u, s, k in rows], token)

    async def create_search_index(self, language: str | None = None) -> None:
        """Builds the search index for ``language`` (default: this object's) without blocking
        writers; a no-op when it exists."""
        native = await self._store()
        await native.create_index(check_language(language or self.language))

    async def drop_search_index(self, language: str | None = None) -> bool:
        native = await self._store()
        return await native.drop_index(check_language(language or self.language))

    async def create_state_index(self) -> None:
        """Builds the GIN index for state queries without blocking writers."""
        native = await self._store()
        await native.create_index(None)

    async def drop_state_index(self) -> bool:
        native = await self._store()
        return await native.drop_index(None)

    async def indexes(self) -> list[str]:
        """The opt-in indexes that exist: ``idx_sessions_state``,
        ``idx_events_text_<language>``."""
        native = await self._store()
        return await native.indexes()
