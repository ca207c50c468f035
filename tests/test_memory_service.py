"""PostgresMemoryService against a real PostgreSQL: ADK signatures and conformance with
InMemoryMemoryService, scoping, idempotent re-adds, deletion, relevance (full text, trigram
fallback), hybrid vector search with a deterministic local embedder (where pgvector exists) and
the logged degradation where it does not, options and hostile queries.

Runs on the embedded PostgreSQL 18 (pg_trgm and pgvector) and on any ``TEST_DATABASE_URL``
(e.g. Debian's PostgreSQL 15: pg_trgm, no pgvector). Vector assertions run only where the
server offers pgvector; elsewhere the degradation is asserted instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg
import pytest
from google.adk.events import Event
from google.adk.memory import InMemoryMemoryService, _utils
from google.adk.memory.base_memory_service import BaseMemoryService, SearchMemoryResponse
from google.adk.memory.memory_entry import MemoryEntry
from google.adk.sessions import Session
from google.genai import types

from adk_postgres import Database, PostgresMemoryService, PostgresSessionService
from adk_postgres.errors import ConfigurationError, DataError

APP = "mem-app"
USER = "alice"
T0 = 1_751_234_567.1234567

MakeMemory = Callable[..., PostgresMemoryService]


# -- helpers ---------------------------------------------------------------------------------


def event(
    event_id: str, text: str | None, *, ts: float = T0, author: str = "user", thought: bool = False
) -> Event:
    content = None
    if text is not None:
        content = types.Content(
            role="user" if author == "user" else "model",
            parts=[types.Part(text=text, thought=thought or None)],
        )
    return Event(id=event_id, author=author, invocation_id="inv", content=content, timestamp=ts)


def session(
    session_id: str, events: Sequence[Event], *, app: str = APP, user: str = USER
) -> Session:
    return Session(id=session_id, app_name=app, user_id=user, events=list(events))


TRAVEL = [
    event("e-flight", "I booked a flight to Paris for the conference on Friday", ts=T0),
    event("e-weather", "The weather in Berlin is rainy and cold today", ts=T0 + 1),
    event("e-pizza", "My favourite pizza recipe uses San Marzano tomatoes", ts=T0 + 2),
    event("e-car", "My car is a red Toyota that needs new tyres", ts=T0 + 3),
    event("e-python", "I write Python scripts to automate invoices", ts=T0 + 4, author="model"),
]

DIM = 48
SYNONYMS = {"automobile": "car", "vehicle": "car", "cars": "car", "motorcar": "car"}


def _embed_one(text: str) -> list[float]:
    """Hashed bag of words with a tiny synonym table: deterministic, no network, and 'similar'
    for texts sharing (synonymous) words."""
    vector = [0.0] * DIM
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.sha256(SYNONYMS.get(word, word).encode()).digest()
        vector[digest[0] % DIM] += 1.0 if digest[1] & 1 else -1.0
    return vector


class Embedder:
    """Records every call; async or sync."""

    def __init__(self, *, is_async: bool = True) -> None:
        self.calls: list[list[str]] = []
        self.is_async = is_async

    def _run(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [_embed_one(t) for t in texts]

    def __call__(self, texts: list[str]):  # type: ignore[no-untyped-def]
        if not self.is_async:
            return self._run(texts)

        async def run() -> list[list[float]]:
            return self._run(texts)

        return run()

    @property
    def texts(self) -> list[str]:
        return [t for call in self.calls for t in call]


@pytest.fixture
async def make_memory(pg_url: str, schema_name: str) -> AsyncIterator[MakeMemory]:
    created: list[PostgresMemoryService] = []

    def factory(**options: object) -> PostgresMemoryService:
        options.setdefault("schema", schema_name)
        svc = PostgresMemoryService(pg_url, **options)  # type: ignore[arg-type]
        created.append(svc)
        return svc

    yield factory
    for svc in created:
        await svc.close()


@pytest.fixture
async def memory(make_memory: MakeMemory) -> PostgresMemoryService:
    return make_memory()


@pytest.fixture
async def server_has_vector(pg_admin: asyncpg.Connection) -> bool:
    return bool(
        await pg_admin.fetchval(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"
        )
    )


async def ids(svc: BaseMemoryService, query: str, *, app: str = APP, user: str = USER) -> list[str]:
    response = await svc.search_memory(app_name=app, user_id=user, query=query)
    return [m.id for m in response.memories if m.id is not None]


async def count_rows(
    pg_admin: asyncpg.Connection, schema: str, table: str = "memory_entries"
) -> int:
    return int(await pg_admin.fetchval(f'SELECT count(*) FROM "{schema}".{table}'))


# -- ADK contract ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        "add_session_to_memory",
        "add_events_to_memory",
        "add_memory",
        "delete_memory",
        "search_memory",
    ],
)
def test_signatures_match_adk(method: str) -> None:
    ours = inspect.signature(getattr(PostgresMemoryService, method))
    base = inspect.signature(getattr(BaseMemoryService, method))
    assert list(ours.parameters) == list(base.parameters)
    for name, param in base.parameters.items():
        assert ours.parameters[name].kind == param.kind, name
        assert ours.parameters[name].default == param.default, name
    assert inspect.iscoroutinefunction(getattr(PostgresMemoryService, method))
    assert not getattr(PostgresMemoryService, "__abstractmethods__", None)


async def test_add_session_and_search_like_in_memory(memory: PostgresMemoryService) -> None:
    reference = InMemoryMemoryService()
    s = session("s1", [*TRAVEL, event("e-empty", None), event("e-call", None)])
    for svc in (memory, reference):
        await svc.add_session_to_memory(s)
    for query in ["flight", "Berlin", "tomatoes", "Toyota", "Python", "conference Friday"]:
        ours = await memory.search_memory(app_name=APP, user_id=USER, query=query)
        theirs = await reference.search_memory(app_name=APP, user_id=USER, query=query)
        assert isinstance(ours, SearchMemoryResponse)
        assert [m.id for m in ours.memories] == [m.id for m in theirs.memories], query
        for a, b in zip(ours.memories, theirs.memories, strict=True):
            assert a.content == b.content
            assert a.author == b.author
            assert (
                a.timestamp
                == b.timestamp
                == _utils.format_timestamp(next(e.timestamp for e in TRAVEL if e.id == a.id))
            )
            assert a.custom_metadata == {"session_id": "s1", "event_id": a.id}
    assert await ids(memory, "") == []
    assert await ids(memory, "   ?! ") == []
    assert await ids(memory, "unicorn") == []


async def test_more_matching_words_rank_first(memory: PostgresMemoryService) -> None:
    await memory.add_session_to_memory(
        session(
            "s1",
            [
                event("one", "the red balloon", ts=T0),
                event("two", "a red balloon over the blue lake", ts=T0 + 1),
                event("three", "swimming in the blue lake", ts=T0 + 2),
                event("none", "completely unrelated text about taxes", ts=T0 + 3),
            ],
        )
    )
    found = await ids(memory, "red balloon lake")
    assert found[0] == "two"  # all three words
    assert set(found) == {"one", "two", "three"}
    assert "none" not in found


async def test_scoped_by_app_and_user(memory: PostgresMemoryService) -> None:
    await memory.add_session_to_memory(session("s1", TRAVEL))
    await memory.add_session_to_memory(
        session("s1", [event("e-flight", "flight to Rome")], user="bob")
    )
    assert await ids(memory, "flight") == ["e-flight"]
    bob = await memory.search_memory(app_name=APP, user_id="bob", query="flight")
    assert [m.content.parts[0].text for m in bob.memories] == ["flight to Rome"]
    assert await ids(memory, "Paris", user="bob") == []
    assert await ids(memory, "flight", app="other-app") == []
    # Deleting Bob's entry leaves Alice's with the same id.
    await memory.delete_memory(app_name=APP, user_id="bob", memory_id="e-flight")
    assert await ids(memory, "flight", user="bob") == []
    assert await ids(memory, "flight") == ["e-flight"]


async def test_re_adding_does_not_duplicate(
    memory: PostgresMemoryService, pg_admin: asyncpg.Connection, schema_name: str
) -> None:
    s = session("s1", TRAVEL)
    for _ in range(3):
        await memory.add_session_to_memory(s)
    assert await count_rows(pg_admin, schema_name) == len(TRAVEL)
    for _ in range(2):
        await memory.add_events_to_memory(
            app_name=APP, user_id=USER, events=TRAVEL[:2], session_id="s1"
        )
    assert await count_rows(pg_admin, schema_name) == len(TRAVEL)
    assert await ids(memory, "flight") == ["e-flight"]
    # An unchanged re-add rewrites nothing (no new row versions).
    before = await pg_admin.fetchval(
        f'SELECT max(xmin::text::bigint) FROM "{schema_name}".memory_entries'
    )
    await memory.add_session_to_memory(s)
    after = await pg_admin.fetchval(
        f'SELECT max(xmin::text::bigint) FROM "{schema_name}".memory_entries'
    )
    assert before == after
    # A changed event is updated in place.
    edited = event("e-flight", "I booked a train to Paris instead", ts=T0)
    await memory.add_session_to_memory(session("s1", [edited, *TRAVEL[1:]]))
    assert await count_rows(pg_admin, schema_name) == len(TRAVEL)
    assert await ids(memory, "flight") == []
    assert await ids(memory, "train") == ["e-flight"]


async def test_concurrent_adds_of_one_session(
    make_memory: MakeMemory, pg_admin: asyncpg.Connection, schema_name: str
) -> None:
    a, b = make_memory(), make_memory()
    s = session("s1", [event(f"e{i}", f"note number {i} about gardening") for i in range(50)])
    await asyncio.gather(*(svc.add_session_to_memory(s) for svc in (a, b, a, b)))
    assert await count_rows(pg_admin, schema_name) == 50
    assert len(await ids(a, "gardening")) == 10


async def test_add_session_replaces_that_sessions_entries(memory: PostgresMemoryService) -> None:
    reference = InMemoryMemoryService()
    for svc in (memory, reference):
        await svc.add_session_to_memory(session("s1", TRAVEL))
        await svc.add_session_to_memory(session("s2", [event("other", "flight to Oslo")]))
        # s1 again, without the flight: InMemoryMemoryService forgets it; s2 is untouched.
        await svc.add_session_to_memory(session("s1", TRAVEL[1:]))
    assert await ids(memory, "flight") == await ids(reference, "flight") == ["other"]


async def test_add_events_is_a_delta_with_metadata(memory: PostgresMemoryService) -> None:
    await memory.add_session_to_memory(session("s1", TRAVEL[:1]))
    await memory.add_events_to_memory(
        app_name=APP,
        user_id=USER,
        events=[event("late", "flight delayed by two hours", ts=T0 + 10)],
        session_id="s1",
        custom_metadata={"ttl_days": 30, "tags": ["travel"]},
    )
    await memory.add_events_to_memory(
        app_name=APP, user_id=USER, events=[event("loose", "flight without a session")]
    )
    response = await memory.search_memory(app_name=APP, user_id=USER, query="flight")
    by_id = {m.id: m for m in response.memories}
    assert set(by_id) == {"e-flight", "late", "loose"}
    assert by_id["late"].custom_metadata == {
        "ttl_days": 30,
        "tags": ["travel"],
        "session_id": "s1",
        "event_id": "late",
    }
    assert by_id["loose"].custom_metadata == {"event_id": "loose"}
    assert by_id["late"].timestamp == _utils.format_timestamp(T0 + 10)
    # Events without text are not memories; an empty delta is fine.
    await memory.add_events_to_memory(app_name=APP, user_id=USER, events=[event("x", None)])
    await memory.add_events_to_memory(app_name=APP, user_id=USER, events=[])
    # Thoughts are not indexed.
    await memory.add_events_to_memory(
        app_name=APP, user_id=USER, events=[event("t", "secret reasoning zebra", thought=True)]
    )
    assert await ids(memory, "zebra") == []


async def test_delete_memory(
    memory: PostgresMemoryService, pg_admin: asyncpg.Connection, schema_name: str
) -> None:
    reference = InMemoryMemoryService()
    for svc in (memory, reference):
        await svc.add_session_to_memory(session("s1", TRAVEL))
        await svc.delete_memory(app_name=APP, user_id=USER, memory_id="e-flight")
        # Missing ids and None are no-ops.
        await svc.delete_memory(app_name=APP, user_id=USER, memory_id="nope")
        await svc.delete_memory(app_name=APP, user_id=USER, memory_id=None)
        await svc.delete_memory(app_name=APP, user_id=USER)
        # Adding the session again does not bring the deleted memory back.
        await svc.add_session_to_memory(session("s1", TRAVEL))
        await svc.add_events_to_memory(
            app_name=APP, user_id=USER, events=TRAVEL[:1], session_id="s1"
        )
    assert await ids(memory, "flight") == await ids(reference, "flight") == []
    assert await ids(memory, "Berlin") == ["e-weather"]
    assert await count_rows(pg_admin, schema_name) == len(TRAVEL) - 1
    assert await count_rows(pg_admin, schema_name, "memory_tombstones") == 1
    # An explicit write of that id stores it again.
    await memory.add_memory(
        app_name=APP,
        user_id=USER,
        memories=[
            MemoryEntry(id="e-flight", content=types.Content(parts=[types.Part(text="flight")]))
        ],
    )
    assert await ids(memory, "flight") == ["e-flight"]
    assert await count_rows(pg_admin, schema_name, "memory_tombstones") == 0


async def test_add_memory_entries(
    memory: PostgresMemoryService, pg_admin: asyncpg.Connection, schema_name: str
) -> None:
    explicit = MemoryEntry(
        id="pref-1",
        content=types.Content(role="user", parts=[types.Part(text="Alice prefers window seats")]),
        author="profile-agent",
        timestamp="2025-06-01T10:00:00",
        custom_metadata={"source": "survey"},
    )
    anonymous = MemoryEntry(
        content=types.Content(parts=[types.Part(text="Alice is allergic to peanuts")])
    )
    for _ in range(2):
        await memory.add_memory(
            app_name=APP,
            user_id=USER,
            memories=[explicit, anonymous],
            custom_metadata={"source": "default", "batch": 7},
        )
    assert await count_rows(pg_admin, schema_name) == 2  # the id-less entry is stored once
    (found,) = (
        await memory.search_memory(app_name=APP, user_id=USER, query="window seat")
    ).memories
    assert found.id == "pref-1"
    assert found.author == "profile-agent"
    assert found.timestamp == "2025-06-01T10:00:00"
    assert found.content == explicit.content
    assert found.custom_metadata == {"source": "survey", "batch": 7}
    (nuts,) = (await memory.search_memory(app_name=APP, user_id=USER, query="peanuts")).memories
    assert nuts.id and len(nuts.id) == 32
    assert nuts.timestamp is None and nuts.author is None
    await memory.delete_memory(app_name=APP, user_id=USER, memory_id=nuts.id)
    assert await ids(memory, "peanuts") == []
    await memory.add_memory(app_name=APP, user_id=USER, memories=[])


# -- relevance -------------------------------------------------------------------------------


async def test_relevant_memory_ranks_above_unrelated(memory: PostgresMemoryService) -> None:
    filler = [
        event(f"f{i}", f"routine status update number {i} about the weekly budget report")
        for i in range(30)
    ]
    target = event("target", "Remember: the invoice for the Lisbon hotel is due on March 3rd")
    await memory.add_session_to_memory(session("s1", [*filler, target]))
    assert (await ids(memory, "when is the Lisbon hotel invoice due?"))[0] == "target"
    # Stemming: "invoices" finds "invoice".
    assert (await ids(memory, "invoices"))[0] == "target"


async def test_trigram_fallback_for_misspelled_and_short_queries(
    memory: PostgresMemoryService,
) -> None:
    await memory.add_session_to_memory(session("s1", TRAVEL))
    caps = await memory.search_capabilities()
    if not caps["trigram"]:
        pytest.skip(f"pg_trgm unavailable here: {caps['notes']}")
    assert (await ids(memory, "Toyotta"))[0] == "e-car"  # misspelled
    assert (await ids(memory, "tomatos"))[0] == "e-pizza"
    assert (await ids(memory, "Pyth"))[0] == "e-python"  # short prefix
    scored = await memory.search_memory_with_scores(app_name=APP, user_id=USER, query="Berlinn")
    assert scored[0][0].id == "e-weather"
    assert 0 < scored[0][1] < 1
    # Strict (search-engine) syntax does not fall back: exclusions and phrases hold.
    assert await ids(memory, '"red Toyotta"') == []


async def test_without_trigram_misspellings_are_not_matched(make_memory: MakeMemory) -> None:
    svc = make_memory(trigram=False)
    await svc.add_session_to_memory(session("s1", TRAVEL))
    assert (await svc.search_capabilities())["trigram"] is False
    assert await ids(svc, "Toyotta") == []
    assert await ids(svc, "Toyota") == ["e-car"]


async def test_websearch_syntax(memory: PostgresMemoryService) -> None:
    await memory.add_session_to_memory(
        session(
            "s1",
            [
                event("a", "new york pizza is thin", ts=T0),
                event("b", "york has a new cathedral", ts=T0 + 1),
                event("c", "pizza in naples", ts=T0 + 2),
            ],
        )
    )
    assert await ids(memory, '"new york"') == ["a"]
    assert await ids(memory, "pizza -york") == ["c"]
    assert set(await ids(memory, "pizza or cathedral")) == {"a", "b", "c"}


async def test_limit_and_min_score(make_memory: MakeMemory) -> None:
    events = [event(f"e{i:02d}", f"garden note {i}", ts=T0 + i) for i in range(25)]
    events.append(event("both", "garden tomatoes ripen in August", ts=T0 - 1))
    default = make_memory()
    await default.add_session_to_memory(session("s1", events))
    assert len(await ids(default, "garden")) == 10  # ADK's default cap
    few = make_memory(limit=3)
    assert len(await ids(few, "garden")) == 3
    assert (
        len(
            await default.search_memory_with_scores(
                app_name=APP, user_id=USER, query="garden", limit=40
            )
        )
        == 26
    )
    # Every entry has 1 of the 2 words except "both": min_score 0.75 keeps only it.
    strict = make_memory(min_score=0.75)
    assert await ids(strict, "garden tomatoes") == ["both"]
    scored = await default.search_memory_with_scores(
        app_name=APP, user_id=USER, query="garden tomatoes", min_score=0.4, limit=50
    )
    assert scored[0][0].id == "both" and scored[0][1] == 1.0
    assert {s for _, s in scored[1:]} == {0.5}
    with pytest.raises(ConfigurationError):
        make_memory(limit=0)
    with pytest.raises(ConfigurationError):
        make_memory(min_score=math.nan)
    with pytest.raises(ConfigurationError):
        await default.search_memory_with_scores(app_name=APP, user_id=USER, query="x", limit=-1)


@pytest.mark.parametrize(
    "query",
    [
        "'); DROP TABLE memory_entries; --",
        "flight' OR '1'='1",
        "a & b | !c <-> d:* \\ '' \"",
        "\x00flight",
        "$1 $$ :: ::regconfig",
        "((((",
        "-",
        '"',
        "ñandú 私はPythonを使う \U0001f600",
        "x" * 10_000,
        "flight " * 500,
    ],
)
async def test_hostile_queries_are_harmless(
    memory: PostgresMemoryService, pg_admin: asyncpg.Connection, schema_name: str, query: str
) -> None:
    await memory.add_session_to_memory(session("s1", TRAVEL))
    await memory.search_memory(app_name=APP, user_id=USER, query=query)
    await memory.search_memory(app_name="'; DROP SCHEMA x; --", user_id=USER, query=query)
    assert await count_rows(pg_admin, schema_name) == len(TRAVEL)


async def test_cjk_with_embedded_latin_word(memory: PostgresMemoryService) -> None:
    await memory.add_session_to_memory(session("s1", [event("jp", "私はPythonを使う")]))
    assert await ids(memory, "Python") == ["jp"]


async def test_bad_input(memory: PostgresMemoryService) -> None:
    with pytest.raises(DataError):
        await memory.add_session_to_memory(session("s1", TRAVEL, user="a\x00b"))
    with pytest.raises(DataError):
        await memory.add_events_to_memory(
            app_name=APP,
            user_id=USER,
            events=TRAVEL[:1],
            custom_metadata={"bad": math.nan},
        )
    # NUL characters in text are indexed as spaces; the content keeps them.
    await memory.add_session_to_memory(session("s1", [event("nul", "alpha\x00omega")]))
    (found,) = (await memory.search_memory(app_name=APP, user_id=USER, query="omega")).memories
    assert found.content.parts[0].text == "alpha\x00omega"


async def test_shares_a_database_with_the_session_service(pg_url: str, schema_name: str) -> None:
    async with Database(pg_url, schema=schema_name) as db:
        sessions = PostgresSessionService(database=db)
        memory = PostgresMemoryService(database=db)
        s = await sessions.create_session(app_name=APP, user_id=USER)
        await sessions.append_event(s, event("e1", "remember the milk"))
        stored = await sessions.get_session(app_name=APP, user_id=USER, session_id=s.id)
        assert stored is not None
        await memory.add_session_to_memory(stored)
        assert await ids(memory, "milk") == ["e1"]
        with pytest.raises(ConfigurationError):
            PostgresMemoryService(pg_url, database=db)


# -- vector search ---------------------------------------------------------------------------


async def test_hybrid_search_with_embeddings(
    make_memory: MakeMemory,
    server_has_vector: bool,
    pg_admin: asyncpg.Connection,
    schema_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    embedder = Embedder()
    svc = make_memory(embed=embedder)
    caplog.set_level(logging.INFO, logger="adk_postgres")
    await svc.add_session_to_memory(session("s1", TRAVEL))
    caps = await svc.search_capabilities()
    if not server_has_vector:
        # Degradation: text search only, said once, and the embedder is never called.
        assert caps["vector"] is False
        assert any("vector" in note for note in caps["notes"])
        for _ in range(3):
            assert await ids(svc, "automobile") == []
            assert await ids(svc, "Toyota") == ["e-car"]
        await svc.add_session_to_memory(session("s2", [event("n", "another note")]))
        warnings = [r for r in caplog.records if "vector search is unavailable" in r.message]
        assert len(warnings) == 1
        assert warnings[0].levelno == logging.WARNING
        assert embedder.calls == []
        pytest.skip("pgvector is not available on this server: degradation asserted")

    assert caps["vector"] is True
    assert not [r for r in caplog.records if "vector search is unavailable" in r.message]
    # Every entry was embedded once, in one batch.
    assert sorted(embedder.texts) == sorted(
        e.content.parts[0].text
        for e in TRAVEL  # type: ignore[union-attr]
    )
    dims = await pg_admin.fetch(
        f'SELECT DISTINCT vector_dims(embedding) AS d FROM "{schema_name}".memory_entries'
    )
    assert [r["d"] for r in dims] == [DIM]
    index = await pg_admin.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
        schema_name,
        f"idx_memory_entries_hnsw_{DIM}",
    )
    assert index is not None and "hnsw" in index and "vector_cosine_ops" in index

    # A synonym no text search can match is found by its embedding.
    assert (await ids(svc, "automobile"))[0] == "e-car"
    # Hybrid: the text hit and the vector hit both lead the fused ranking.
    assert set((await ids(svc, "rainy vehicle"))[:2]) == {"e-weather", "e-car"}
    scored = await svc.search_memory_with_scores(app_name=APP, user_id=USER, query="automobile")
    assert 0 < scored[0][1] <= 1
    # min_score applies to cosine similarity too.
    assert await ids(make_memory(embed=embedder, min_score=0.99), "automobile") == []

    # Re-adding unchanged entries embeds nothing; a changed one is embedded again, alone.
    embedder.calls.clear()
    await svc.add_session_to_memory(session("s1", TRAVEL))
    assert embedder.calls == []
    edited = event("e-pizza", "My favourite pasta recipe uses basil", ts=T0 + 2)
    await svc.add_session_to_memory(session("s1", [*TRAVEL[:2], edited, *TRAVEL[3:]]))
    assert embedder.calls == [["My favourite pasta recipe uses basil"]]


async def test_sync_embedder_and_bad_vectors(
    make_memory: MakeMemory, server_has_vector: bool
) -> None:
    if not server_has_vector:
        pytest.skip("pgvector is not available on this server")
    sync = Embedder(is_async=False)
    svc = make_memory(embed=sync)
    await svc.add_session_to_memory(session("s1", TRAVEL))
    assert (await ids(svc, "motorcar"))[0] == "e-car"

    def nan_embed(texts: list[str]) -> list[list[float]]:
        return [[math.nan] * DIM for _ in texts]

    with pytest.raises(DataError):
        await make_memory(embed=nan_embed).add_session_to_memory(
            session("s2", [event("n1", "new text")])
        )

    def short_embed(texts: list[str]) -> list[list[float]]:
        return [[1.0] * DIM for _ in texts[:-1]]

    with pytest.raises(DataError):
        await make_memory(embed=short_embed).add_session_to_memory(
            session("s3", [event("n2", "more text")])
        )
    # Text search keeps working for entries whose embedding failed.
    scored = await svc.search_memory_with_scores(
        app_name=APP, user_id=USER, query="new text", min_score=0.9
    )
    assert [(e.id, score) for e, score in scored] == [("n1", 1.0)]
