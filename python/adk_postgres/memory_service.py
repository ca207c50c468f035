"""`PostgresMemoryService`: ADK's BaseMemoryService on PostgreSQL.

Entries are scoped by (app, user) and keyed by memory id: the event id for entries made from
events, so adding a session (or its events) again updates entries instead of duplicating them.
Semantics follow InMemoryMemoryService (google-adk 2.13) where it defines them:
``add_session_to_memory`` replaces the session's entries, ``add_events_to_memory`` adds a delta,
only events with content parts are kept, a deleted id is not brought back by adding its session
again, a search returns at most ``limit`` (10) memories, most relevant first.

Search (one statement, see rust/core/src/memory.rs): PostgreSQL full-text search (tsvector +
GIN; ``websearch_to_tsquery`` for search-engine syntax, otherwise any query word matches and
entries with more of them rank first), a pg_trgm trigram fallback for short or misspelled
queries, and — with an ``embed`` function and pgvector on the server — vector search (HNSW,
cosine), fused with the text results by reciprocal rank fusion. Missing extensions degrade the
search to what the server offers and are logged once.

This module holds those semantics only; every operation is one await into the Rust store (two
when new entries need embeddings: the embedder runs between the text upsert and the vector
write, and only for entries that are new or changed).
"""

from __future__ import annotations

import array
import hashlib
import inspect
import itertools
import logging
import math
import re
import unicodedata
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from google.adk.memory import _utils
from google.adk.memory.base_memory_service import BaseMemoryService, SearchMemoryResponse
from google.adk.memory.memory_entry import MemoryEntry
from google.genai import types
from pydantic_core import PydanticSerializationError, from_json
from typing_extensions import override

from ._json import encode_state
from ._keys import check_text
from ._native import Memory
from ._service_base import DatabaseBacked
from .database import Database
from .errors import ConfigurationError, DataError
from .telemetry import traced

if TYPE_CHECKING:
    from google.adk.events.event import Event
    from google.adk.sessions.session import Session

logger = logging.getLogger("adk_postgres")

#: Returns one embedding per text; may be a coroutine function or a plain function.
Embedder: TypeAlias = Callable[
    [list[str]], Awaitable[Sequence[Sequence[float]]] | Sequence[Sequence[float]]
]

#: InMemoryMemoryService returns at most ten memories.
DEFAULT_LIMIT = 10
#: Searchable text kept per entry (the stored content is never truncated).
DEFAULT_MAX_TEXT_BYTES = 262_144
#: Query words considered by the trigram fallback.
MAX_QUERY_WORDS = 32

_CONTENT_SERIALIZER = types.Content.__pydantic_serializer__
# Search-engine syntax: a quoted phrase or an excluded word ("-word").
_STRICT_SYNTAX = re.compile(r'"|(?:^|\s)-\w')

# (memory_id, session_id, author, event_ts, timestamp_text, content_json, metadata_json, text)
_Entry: TypeAlias = tuple[
    str, str | None, str | None, float | None, str | None, bytes, bytes | None, str
]


def _is_latin(c: str) -> bool:
    if c.isascii():
        return c.isalnum() or c == "_"
    return unicodedata.name(c, "").startswith("LATIN")


def _split_script_runs(text: str) -> str:
    """Make a Latin word inside a non-Latin run a word of its own (私はPythonを使う → 私は Python
    を使う), as ADK's memory services do, so it can be matched."""
    if text.isascii():
        return text
    chunks = []
    for word in text.split():
        if word.isascii():
            chunks.append(word)
        else:
            chunks.extend("".join(group) for _, group in itertools.groupby(word, _is_latin))
    return " ".join(chunks)


def _normalize(text: str) -> str:
    text = _split_script_runs(unicodedata.normalize("NFC", text))
    if "\x00" in text:
        text = text.replace("\x00", " ")
    return text


def _truncate_utf8(text: str, max_bytes: int) -> str:
    # Also drops lone surrogates, which PostgreSQL text cannot hold.
    encoded = text.encode("utf-8", errors="ignore")
    if len(encoded) > max_bytes:
        encoded = encoded[:max_bytes]
    return encoded.decode("utf-8", errors="ignore")


def _searchable_text(content: types.Content | None, max_bytes: int) -> str:
    """The text parts of a Content (thoughts excluded), normalised for indexing."""
    if content is None or not content.parts:
        return ""
    texts = [
        part.text.strip()
        for part in content.parts
        if part.text and not getattr(part, "thought", False) and part.text.strip()
    ]
    if not texts:
        return ""
    return _truncate_utf8(_normalize(" ".join(texts)), max_bytes)


def _encode_content(content: types.Content) -> bytes:
    try:
        return _CONTENT_SERIALIZER.to_json(content, exclude_none=True)
    except PydanticSerializationError as exc:
        raise DataError(f"memory content cannot be stored as JSON: {exc}") from exc


def _encode_metadata(metadata: Mapping[str, object] | None) -> bytes | None:
    if not metadata:
        return None
    return encode_state(dict(metadata), "memory custom_metadata")


def _check_scope(app_name: object, user_id: object) -> None:
    check_text("app_name", app_name)
    check_text("user_id", user_id)


def _content_id(author: str | None, timestamp: object, content_json: bytes) -> str:
    """A deterministic id for entries without one (SqliteMemoryService's rule), so adding the
    same thing twice stores it once."""
    payload = f"{author or ''}:{timestamp}:".encode() + content_json
    return hashlib.sha256(payload).hexdigest()[:32]


def _parse_timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _dedupe(entries: list[_Entry]) -> list[_Entry]:
    """One entry per id, the last one winning (a batch may not upsert a row twice)."""
    by_id: dict[str, _Entry] = {}
    for entry in entries:
        by_id.pop(entry[0], None)
        by_id[entry[0]] = entry
    return list(by_id.values())


class PostgresMemoryService(DatabaseBacked, BaseMemoryService):
    """ADK memory service on PostgreSQL.

    Args:
        uri: PostgreSQL URL; ``None`` → ``$DATABASE_URL`` → the embedded PostgreSQL.
        database: share an existing :class:`Database` (its pool) instead of opening one.
        embed: an embedding function ``(texts) -> vectors`` (sync or async), enabling hybrid
            semantic search where the server has pgvector. Called with the searchable text
            of new or changed entries (in batches of ``embed_batch_size``) and with each query.
            Every vector must have the same dimension; an HNSW index for that dimension is
            created on first use.
        limit: most memories a search returns (InMemoryMemoryService's 10 by default).
        min_score: drop candidates scoring below this: the share of query words an entry
            contains (full text), its mean trigram word similarity, or its cosine similarity
            to the query embedding — each 0..1, so 0.5 means "at least half the query words".
        text_search_config: PostgreSQL text search configuration for stemming and stop words
            (``english``, ``simple``, ``german``, …). Entries are indexed with it when added:
            after changing it, add them again.
        trigram: use pg_trgm for the short/misspelled-query fallback (created if permitted).
        max_text_bytes: searchable text kept per entry (stored content is never truncated).
        embed_batch_size: texts per ``embed`` call.
        **options: :class:`Database` options (``schema``, ``pool_size``, ``connect_timeout``,
            ``acquire_timeout``, ``statement_cache``, ``application_name``).

    Construction is synchronous and cheap; the pool connects, migrates and detects the
    server's extensions on first use.
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        database: Database | None = None,
        embed: Embedder | None = None,
        limit: int = DEFAULT_LIMIT,
        min_score: float = 0.0,
        text_search_config: str = "english",
        trigram: bool = True,
        max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
        embed_batch_size: int = 256,
        **options: Any,
    ) -> None:
        self._attach_database(uri, database, options)
        if embed is not None and not callable(embed):
            raise ConfigurationError("embed must be callable: (list[str]) -> list[list[float]]")
        self._limit = self._check_limit(limit)
        self._min_score = self._check_min_score(min_score)
        if not isinstance(text_search_config, str) or not text_search_config.strip():
            raise ConfigurationError("text_search_config must be a configuration name")
        if not isinstance(max_text_bytes, int) or max_text_bytes <= 0:
            raise ConfigurationError("max_text_bytes must be a positive int")
        if not isinstance(embed_batch_size, int) or embed_batch_size <= 0:
            raise ConfigurationError("embed_batch_size must be a positive int")
        self._embed_fn = embed
        self._text_search_config = text_search_config
        self._trigram = bool(trigram)
        self._max_text_bytes = max_text_bytes
        self._embed_batch_size = embed_batch_size
        self._native: Memory | None = None
        self._capabilities: dict[str, Any] | None = None
        self._dim: int | None = None

    @staticmethod
    def _check_limit(limit: object) -> int:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError("limit must be an int >= 1")
        return limit

    @staticmethod
    def _check_min_score(min_score: object) -> float:
        if isinstance(min_score, bool) or not isinstance(min_score, (int, float)):
            raise ConfigurationError("min_score must be a number")
        value = float(min_score)
        if not math.isfinite(value) or not -1.0 <= value <= 1.0:
            raise ConfigurationError("min_score must be between -1 and 1")
        return value

    @property
    def embeds(self) -> bool:
        """An embedding function is configured."""
        return self._embed_fn is not None

    async def _store(self) -> Memory:
        native = self._native
        if native is None:
            store = await self._database.store()
            native = Memory(
                store,
                text_search_config=self._text_search_config,
                trigram=self._trigram,
                vector=self._embed_fn is not None,
            )
            self._native = native
        if self._capabilities is None:
            caps = await native.capabilities()
            self._capabilities = caps
            self._log_degradation(caps)
        return native

    def _log_degradation(self, caps: dict[str, Any]) -> None:
        """Say once (per service) what the server lacks."""
        notes = "; ".join(caps["notes"]) or "unknown reason"
        if self._embed_fn is not None and not self._vector_ready(caps):
            logger.warning(
                "adk-postgres memory: vector search is unavailable (%s); searching with "
                "PostgreSQL full-text search only",
                notes,
            )
        if self._trigram and caps["trigram_schema"] is None:
            logger.info(
                "adk-postgres memory: trigram fallback is unavailable (%s); misspelled "
                "queries will not be matched",
                notes,
            )

    @staticmethod
    def _vector_ready(caps: dict[str, Any]) -> bool:
        return bool(caps["vector_schema"]) and bool(caps["embedding_column"])

    async def search_capabilities(self) -> dict[str, Any]:
        """What searches use on this server: ``{"full_text": True, "trigram": bool,
        "vector": bool, "notes": [...]}`` (``vector`` only with an ``embed`` function)."""
        native = await self._store()
        caps = await native.capabilities()
        return {
            "full_text": True,
            "trigram": caps["trigram_schema"] is not None,
            "vector": self._embed_fn is not None and self._vector_ready(caps),
            "notes": list(caps["notes"]),
        }

    # -- embeddings ---------------------------------------------------------------------------

    async def _embed(self, texts: list[str]) -> tuple[int, bytes]:
        """Embeds texts in batches; returns (dimension, packed float32s)."""
        assert self._embed_fn is not None
        packed = array.array("f")
        dim = self._dim
        for start in range(0, len(texts), self._embed_batch_size):
            batch = texts[start : start + self._embed_batch_size]
            result = self._embed_fn(batch)
            if inspect.isawaitable(result):
                result = await result
            vectors = list(result)
            if len(vectors) != len(batch):
                raise DataError(
                    f"the embed function returned {len(vectors)} vectors for {len(batch)} texts"
                )
            for vector in vectors:
                values = list(vector)
                if dim is None:
                    dim = len(values)
                if len(values) != dim or dim == 0:
                    raise DataError(
                        f"the embed function returned a vector of dimension {len(values)}; "
                        f"expected {dim}"
                    )
                try:
                    packed.extend(values)
                except (TypeError, OverflowError) as exc:
                    raise DataError(f"an embedding is not a list of floats: {exc}") from exc
        assert dim is not None
        self._dim = dim
        return dim, packed.tobytes()

    async def _upsert(
        self,
        app_name: str,
        user_id: str,
        entries: list[_Entry],
        *,
        replace_session: str | None,
        from_events: bool,
    ) -> None:
        native = await self._store()
        entries = _dedupe(entries)
        need = await native.upsert(
            app_name,
            user_id,
            entries,
            replace_session=replace_session,
            from_events=from_events,
            embedding_dim=self._dim,
        )
        if not need or self._embed_fn is None:
            return
        text_by_id = {entry[0]: entry[7] for entry in entries}
        ids = [memory_id for memory_id in need if memory_id in text_by_id]
        texts = [text_by_id[memory_id] for memory_id in ids]
        if not ids:
            return
        dim, vectors = await self._embed(texts)
        await native.set_embeddings(app_name, user_id, ids, texts, dim, vectors)

    # -- ADK API ------------------------------------------------------------------------------

    def _event_entry(
        self, event: Event, session_id: str | None, metadata: Mapping[str, object] | None
    ) -> _Entry | None:
        content = event.content
        if not content or not content.parts:
            return None
        text = _searchable_text(content, self._max_text_bytes)
        if not text:
            return None  # nothing any search could match
        content_json = _encode_content(content)
        memory_id = event.id or _content_id(event.author, event.timestamp, content_json)
        meta: dict[str, object] = dict(metadata or {})
        if session_id is not None:
            meta["session_id"] = session_id
        meta["event_id"] = memory_id
        return (
            memory_id,
            session_id,
            event.author,
            float(event.timestamp),
            None,
            content_json,
            _encode_metadata(meta),
            text,
        )

    @override
    @traced("memory")
    async def add_session_to_memory(self, session: Session) -> None:
        """Adds (or refreshes) a session: its entries become the session's events with
        content; entries of events no longer in the session are removed, as in
        InMemoryMemoryService. Ids deleted with :meth:`delete_memory` stay deleted."""
        _check_scope(session.app_name, session.user_id)
        entries = [
            entry
            for event in session.events
            if (entry := self._event_entry(event, session.id, None)) is not None
        ]
        await self._upsert(
            session.app_name,
            session.user_id,
            entries,
            replace_session=session.id,
            from_events=True,
        )

    @override
    @traced("memory")
    async def add_events_to_memory(
        self,
        *,
        app_name: str,
        user_id: str,
        events: Sequence[Event],
        session_id: str | None = None,
        custom_metadata: Mapping[str, object] | None = None,
    ) -> None:
        """Adds events as a delta (nothing else is removed). ``custom_metadata`` is stored
        with each entry and returned in its ``MemoryEntry.custom_metadata`` (with
        ``session_id`` and ``event_id``)."""
        _check_scope(app_name, user_id)
        entries = [
            entry
            for event in events
            if (entry := self._event_entry(event, session_id, custom_metadata)) is not None
        ]
        if not entries:
            return
        await self._upsert(app_name, user_id, entries, replace_session=None, from_events=True)

    @override
    @traced("memory")
    async def add_memory(
        self,
        *,
        app_name: str,
        user_id: str,
        memories: Sequence[MemoryEntry],
        custom_metadata: Mapping[str, object] | None = None,
    ) -> None:
        """Stores explicit memories. An entry without ``id`` gets one derived from its author,
        timestamp and content, so adding it again does not duplicate it. ``custom_metadata``
        applies to every entry (an entry's own keys win). Writing an id removed with
        :meth:`delete_memory` stores it again."""
        _check_scope(app_name, user_id)
        entries: list[_Entry] = []
        for memory in memories:
            content_json = _encode_content(memory.content)
            memory_id = memory.id or _content_id(memory.author, memory.timestamp, content_json)
            meta = {**(custom_metadata or {}), **memory.custom_metadata}
            entries.append(
                (
                    memory_id,
                    None,
                    memory.author,
                    _parse_timestamp(memory.timestamp),
                    memory.timestamp,
                    content_json,
                    _encode_metadata(meta),
                    _searchable_text(memory.content, self._max_text_bytes),
                )
            )
        if not entries:
            return
        await self._upsert(app_name, user_id, entries, replace_session=None, from_events=False)

    @override
    @traced("memory")
    async def delete_memory(
        self,
        *,
        app_name: str,
        user_id: str,
        memory_id: str | None = None,
    ) -> None:
        """Deletes one memory by its ``MemoryEntry.id``; a missing id is a no-op. Adding the
        session it came from again does not bring it back."""
        if not memory_id:
            return
        _check_scope(app_name, user_id)
        if "\x00" in memory_id:
            return  # no stored id contains NUL
        native = await self._store()
        await native.delete(app_name, user_id, memory_id)

    @override
    @traced("memory")
    async def search_memory(
        self, *, app_name: str, user_id: str, query: str
    ) -> SearchMemoryResponse:
        scored = await self.search_memory_with_scores(
            app_name=app_name, user_id=user_id, query=query
        )
        return SearchMemoryResponse(memories=[entry for entry, _ in scored])

    @traced("memory")
    async def search_memory_with_scores(
        self,
        *,
        app_name: str,
        user_id: str,
        query: str,
        limit: int | None = None,
        min_score: float | None = None,
    ) -> list[tuple[MemoryEntry, float]]:
        """Like :meth:`search_memory`, with each entry's score (its best relevance, 0..1, see
        ``min_score``) and per-call ``limit`` / ``min_score``. Ordered by reciprocal rank
        fusion of the text and vector rankings, so scores need not be monotonic."""
        _check_scope(app_name, user_id)
        limit = self._limit if limit is None else self._check_limit(limit)
        min_score = self._min_score if min_score is None else self._check_min_score(min_score)
        if not isinstance(query, str):
            raise DataError(f"query must be a str, got {type(query).__name__}")
        text = _truncate_utf8(_normalize(query), 16_384)
        words = list(dict.fromkeys(w.lower() for w in re.findall(r"\w+", text)))
        if not words:
            return []
        strict = _STRICT_SYNTAX.search(text) is not None
        native = await self._store()
        vector: bytes | None = None
        if self._embed_fn is not None and self._vector_ready(self._capabilities or {}):
            _, vector = await self._embed([text])
        rows = await native.search(
            app_name,
            user_id,
            text,
            strict,
            words[:MAX_QUERY_WORDS],
            limit,
            min_score,
            vector,
        )
        results = []
        for memory_id, _session, author, event_ts, timestamp_text, content, meta, score in rows:
            if timestamp_text is not None:
                timestamp: str | None = timestamp_text
            elif event_ts is not None:
                timestamp = _utils.format_timestamp(event_ts)
            else:
                timestamp = None
            metadata = from_json(meta) if meta else {}
            entry = MemoryEntry(
                id=memory_id,
                content=types.Content.model_validate_json(content),
                author=author,
                timestamp=timestamp,
                custom_metadata=metadata if isinstance(metadata, dict) else {},
            )
            results.append((entry, score))
        return results
