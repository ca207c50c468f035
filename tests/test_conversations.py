"""adk_postgres.conversations against a real PostgreSQL: listings (order, titles, previews,
counts, paging that stays stable while sessions are appended to, the plan of page 1 and page
100 of 10,000), archive/restore, search, state queries, list_sessions paging, prune
--archived-for, and bad input.

The HTTP routes are tested in tests/test_api_routes.py.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

from adk_postgres import Database, PostgresSessionService
from adk_postgres._native import _conversation_list_sql
from adk_postgres.admin import Admin
from adk_postgres.conversations import PostgresConversations
from adk_postgres.errors import DataError

APP = "chat"


@pytest.fixture
async def database(pg_url: str, schema_name: str) -> AsyncIterator[Database]:
    async with Database(pg_url, schema=schema_name) as db:
        yield db


@pytest.fixture
def sessions(database: Database) -> PostgresSessionService:
    return PostgresSessionService(database=database)


@pytest.fixture
def conversations(database: Database) -> PostgresConversations:
    return PostgresConversations(database=database)


def message(role: str, text: str, **extra: object) -> Event:
    return Event(
        author="user" if role == "user" else "helper",
        invocation_id="inv",
        content=types.Content(role=role, parts=[types.Part(text=text)]),
        **extra,
    )


async def say(sessions: PostgresSessionService, user: str, sid: str, *texts: str) -> None:
    """Appends user/model messages alternately (creating the session if needed)."""
    session = await sessions.get_session(app_name=APP, user_id=user, session_id=sid)
    if session is None:
        session = await sessions.create_session(app_name=APP, user_id=user, session_id=sid)
    for i, text in enumerate(texts):
        await sessions.append_event(session, message("user" if i % 2 == 0 else "model", text))


async def all_pages(conversations: PostgresConversations, user: str, **kwargs) -> list[str]:
    ids: list[str] = []
    token = None
    while True:
        page = await conversations.list_conversations(APP, user, page_token=token, **kwargs)
        ids += [c.session_id for c in page.conversations]
        token = page.next_page_token
        if token is None:
            return ids


async def test_a_listing_shows_titles_previews_and_counts_newest_first(
    sessions: PostgresSessionService, conversations: PostgresConversations
) -> None:
    await say(sessions, "u", "old", "What is the capital of France?", "Paris.")
    await say(sessions, "u", "new", "  Plan a   trip\n to Lisbon " + "please " * 30, "Sure.")
    session = await sessions.get_session(app_name=APP, user_id="u", session_id="old")
    # A tool call has no text: it is not a message and not a preview.
    call = Event(
        author="helper",
        invocation_id="inv",
        content=types.Content(
            role="model", parts=[types.Part(function_call=types.FunctionCall(name="f"))]
        ),
    )
    await sessions.append_event(session, call)
    await sessions.create_session(app_name=APP, user_id="u", session_id="empty")
    await say(sessions, "someone-else", "theirs", "not yours")

    page = await conversations.list_conversations(APP, "u")
    assert [c.session_id for c in page.conversations] == ["empty", "old", "new"]
    assert page.next_page_token is None
    empty, old, new = page.conversations
    assert (empty.title, empty.preview, empty.message_count) == ("", "", 0)
    assert old.title == "What is the capital of France?" and not old.title_is_set
    assert old.preview == "Paris." and old.message_count == 2
    assert new.title.startswith("Plan a trip to Lisbon please") and new.title.endswith("…")
    assert len(new.title) <= 80
    assert old.last_activity > new.last_activity and old.created_at < old.last_activity
    stored = await sessions.get_session(app_name=APP, user_id="u", session_id="old")
    assert old.last_activity == stored.last_update_time

    await conversations.set_title(APP, "u", "new", "Lisbon 🇵🇹 <b>trip</b> \u202ertl")
    listed = {
        c.session_id: c for c in (await conversations.list_conversations(APP, "u")).conversations
    }
    assert listed["new"].title == "Lisbon 🇵🇹 <b>trip</b> \u202ertl" and listed["new"].title_is_set
    await conversations.set_title(APP, "u", "new", None)
    listed = {
        c.session_id: c for c in (await conversations.list_conversations(APP, "u")).conversations
    }
    assert listed["new"].title.startswith("Plan a trip") and not listed["new"].title_is_set
    # Setting a title is no change of the session: a copy read before still appends.
    await conversations.set_title(APP, "u", "old", "France")
    await sessions.append_event(stored, message("user", "and Spain?"))


async def test_paging_while_sessions_are_appended_never_skips_or_repeats(
    pg_url: str,
    schema_name: str,
    sessions: PostgresSessionService,
    conversations: PostgresConversations,
) -> None:
    ids = [f"s{i:03}" for i in range(90)]
    for sid in ids:
        await say(sessions, "u", sid, f"hello {sid}")
    rng = random.Random(7)
    stop = asyncio.Event()
    created: list[str] = []

    async def appender(database: Database) -> None:
        writer = PostgresSessionService(database=database)
        n = 0
        while not stop.is_set():
            await say(writer, "u", rng.choice(ids), f"more {n}")
            n += 1
            if n % 10 == 0:  # a new conversation meanwhile: in this listing or not at all
                name = f"new{len(created)}"
                await say(writer, "u", name, "a new one")
                created.append(name)

    for _round in range(3):
        existing = ids + created  # the appender is stopped: all of these are committed
        stop.clear()
        async with Database(pg_url, schema=schema_name) as other:
            task = asyncio.create_task(appender(other))
            try:
                seen: list[str] = []
                token = None
                while True:
                    page = await conversations.list_conversations(
                        APP, "u", page_size=7, page_token=token
                    )
                    seen += [c.session_id for c in page.conversations]
                    token = page.next_page_token
                    await asyncio.sleep(0.01)  # let the appender move sessions around
                    if token is None:
                        break
            finally:
                stop.set()
                await task
        repeated = sorted({s for s in seen if seen.count(s) > 1})
        assert not repeated, f"repeated: {repeated}"
        assert not set(existing) - set(seen), f"skipped: {sorted(set(existing) - set(seen))}"
        assert set(seen) <= set(existing) | set(created)


async def test_listing_50_of_10000_reads_an_index_range(
    pg_admin: asyncpg.Connection,
    schema_name: str,
    sessions: PostgresSessionService,
    conversations: PostgresConversations,
) -> None:
    await sessions.create_session(app_name=APP, user_id="u", session_id="first")
    s = f'"{schema_name}"'
    await pg_admin.execute(
        f"""INSERT INTO {s}.sessions (app_name, user_id, id, state, create_time, update_time,
                                       update_ts)
            SELECT '{APP}', CASE WHEN i % 5 = 0 THEN 'u' ELSE 'other' || (i % 7) END,
                   'bulk' || i, '{{}}', now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC',
                   1700000000 + i FROM generate_series(1, 50000) i;
            ANALYZE {s}.sessions; ANALYZE {s}.events"""
    )
    ids = await all_pages(conversations, "u", page_size=1000)
    assert len(ids) == 10001 and len(set(ids)) == 10001

    sql = _conversation_list_sql(schema_name, False)
    now = await pg_admin.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
    for cursor in [(None, None), (1700000000 + 5 * 5000, "bulk25000")]:  # page 1, page 100
        plan = await pg_admin.fetchval(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", APP, "u", now, *cursor, 51
        )
        nodes = list(_nodes(json.loads(plan)[0]["Plan"]))
        scans = [n for n in nodes if n.get("Relation Name") == "sessions"]
        assert scans and all(n["Node Type"] in ("Index Scan", "Index Only Scan") for n in scans)
        assert {n["Index Name"] for n in scans} == {"idx_sessions_activity"}
        assert max(n["Actual Rows"] * n["Actual Loops"] for n in scans) <= 51, scans


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def test_archive_restore_and_a_recreated_session(
    sessions: PostgresSessionService, conversations: PostgresConversations
) -> None:
    for sid in ("a", "b", "c"):
        await say(sessions, "u", sid, f"hi {sid}")
    await conversations.archive(APP, "u", "b")
    assert await all_pages(conversations, "u") == ["c", "a"]
    archived = (await conversations.list_conversations(APP, "u", archived=True)).conversations
    assert [c.session_id for c in archived] == ["b"] and archived[0].archived
    first_time = archived[0].archived_at
    await conversations.archive(APP, "u", "b")  # again: a no-op, the first time stays
    again = (await conversations.list_conversations(APP, "u", archived=True)).conversations
    assert again[0].archived_at == first_time
    # Archived conversations are still ADK sessions (hard delete stays ADK's).
    assert await sessions.get_session(app_name=APP, user_id="u", session_id="b") is not None
    await conversations.restore(APP, "u", "b")
    assert await all_pages(conversations, "u") == ["c", "b", "a"]

    await conversations.archive(APP, "u", "a")
    await conversations.set_title(APP, "u", "a", "old title")
    await sessions.delete_session(app_name=APP, user_id="u", session_id="a")
    await say(sessions, "u", "a", "a new life")  # re-created: neither archived nor titled
    fresh = (await conversations.list_conversations(APP, "u")).conversations[0]
    assert (fresh.session_id, fresh.title, fresh.archived) == ("a", "a new life", False)

    for call in (conversations.archive, conversations.restore):
        with pytest.raises(SessionNotFoundError):
            await call(APP, "u", "nope")
    with pytest.raises(SessionNotFoundError):
        await conversations.set_title(APP, "u", "nope", "t")
    with pytest.raises(SessionNotFoundError):  # another user's session is not found either
        await conversations.archive(APP, "intruder", "b")


async def test_prune_archived_for(
    sessions: PostgresSessionService,
    conversations: PostgresConversations,
    pg_direct_url: str,
    pg_admin: asyncpg.Connection,
    schema_name: str,
) -> None:
    for sid in ("keep", "recent", "old"):
        await say(sessions, "u", sid, "one", "two")
    await conversations.archive(APP, "u", "recent")
    await conversations.archive(APP, "u", "old")
    await pg_admin.execute(
        f"""UPDATE "{schema_name}".conversations SET archived_at = now() - interval '40 days'
            WHERE session_id = 'old'"""
    )
    # Prune runs in transactions: directly, as operators run it (not through a statement pooler).
    direct = Database(pg_direct_url, schema=schema_name)
    admin = Admin(direct)
    dry = await admin.prune(archived_for="30d", dry_run=True)
    assert (dry.totals.archived_sessions, dry.totals.archived_events) == (1, 2)
    assert await sessions.get_session(app_name=APP, user_id="u", session_id="old") is not None
    report = await admin.prune(archived_for="30d")
    assert (report.totals.archived_sessions, report.totals.archived_events) == (1, 2)
    assert await sessions.get_session(app_name=APP, user_id="u", session_id="old") is None
    assert await sessions.get_session(app_name=APP, user_id="u", session_id="recent")
    assert await all_pages(conversations, "u", archived=True) == ["recent"]
    again = await admin.prune(archived_for="30d")
    assert again.totals.archived_sessions == 0
    await direct.close()


async def test_search_finds_a_word_said_1000_sessions_ago_and_not_another_users(
    sessions: PostgresSessionService,
    conversations: PostgresConversations,
    pg_admin: asyncpg.Connection,
    schema_name: str,
) -> None:
    await say(sessions, "u", "long-ago", "I once visited Zanzibar with <script>x</script> & co")
    await say(sessions, "other", "theirs", "Zanzibar is mine")
    s = f'"{schema_name}"'
    # 1,000 later sessions with text (bulk, as a busy user would have them).
    await pg_admin.execute(
        f"""INSERT INTO {s}.sessions (app_name, user_id, id, state, create_time, update_time,
                                       update_ts)
            SELECT '{APP}', 'u', 'later' || i, '{{}}', now() AT TIME ZONE 'UTC',
                   now() AT TIME ZONE 'UTC', extract(epoch FROM now()) + i
              FROM generate_series(1, 1000) i;
            INSERT INTO {s}.events (id, app_name, user_id, session_id, invocation_id,
                                     "timestamp", event_data, event_ts, seq)
            SELECT 'e' || i, '{APP}', 'u', 'later' || i, 'inv', now() AT TIME ZONE 'UTC',
                   jsonb_build_object('author', 'user', 'content', jsonb_build_object(
                       'role', 'user', 'parts', jsonb_build_array(jsonb_build_object(
                           'text', 'talking about weather number ' || i)))),
                   extract(epoch FROM now()) + i, 1
              FROM generate_series(1, 1000) i"""
    )
    for indexed in (False, True):
        page = await conversations.search(APP, "u", "zanzibar")
        assert [(h.session_id, h.author) for h in page.hits] == [("long-ago", "user")], indexed
        snippet = page.hits[0].snippet
        assert "<mark>Zanzibar</mark>" in snippet and "<script>" not in snippet
        assert "&lt;script&gt;" in snippet or "&lt;" in snippet
        stored = await sessions.get_session(app_name=APP, user_id="u", session_id="long-ago")
        assert page.hits[0].event_id == stored.events[0].id
        # Stemming (english): "visit" finds "visited"; a phrase and exclusion work.
        assert (await conversations.search(APP, "u", "visit")).hits
        assert not (await conversations.search(APP, "u", "zanzibar -visited")).hits
        assert (await conversations.search(APP, "u", '"once visited"')).hits
        # Paging through 1,000 hits: no repeats, nothing skipped.
        seen, token = [], None
        while True:
            page = await conversations.search(APP, "u", "weather", page_size=150, page_token=token)
            seen += [h.session_id for h in page.hits]
            token = page.next_page_token
            if token is None:
                break
        assert len(seen) == 1000 and len(set(seen)) == 1000
        # Archived conversations are left out unless asked for.
        await conversations.archive(APP, "u", "long-ago")
        assert not (await conversations.search(APP, "u", "zanzibar")).hits
        assert (await conversations.search(APP, "u", "zanzibar", include_archived=True)).hits
        await conversations.restore(APP, "u", "long-ago")
        await conversations.create_search_index()
    assert "idx_events_text_english" in await conversations.indexes()
    await pg_admin.execute(f"ANALYZE {s}.events")
    plan = await pg_admin.fetch(
        f"""EXPLAIN SELECT 1 FROM {s}.events e WHERE e.app_name = '{APP}' AND e.user_id = 'u'
            AND to_tsvector('english'::regconfig, {s}.adk_postgres_event_text(e.event_data))
                @@ websearch_to_tsquery('english'::regconfig, 'zanzibar')"""
    )
    assert "idx_events_text_english" in "\n".join(r[0] for r in plan)
    # Another language, by name; "simple" does not stem.
    assert not (await conversations.search(APP, "u", "visit", language="simple")).hits
    assert (await conversations.search(APP, "u", "visited", language="simple")).hits


async def test_state_queries_with_and_without_the_gin_index(
    sessions: PostgresSessionService, conversations: PostgresConversations
) -> None:
    states = {
        ("u1", "a"): {"stage": "review", "tier": {"level": 2, "name": "gold"}, "tags": ["x"]},
        ("u1", "b"): {"stage": "draft"},
        ("u2", "c"): {"stage": "review", "tier": {"level": 3}},
        ("u2", "d"): {"stage": "review", "emoji": "🦆", "quote": 'it\'s "fine"'},
    }
    for (user, sid), state in states.items():
        await sessions.create_session(app_name=APP, user_id=user, session_id=sid, state=state)
    # State changed by an event counts (the append updates the stored state).
    b = await sessions.get_session(app_name=APP, user_id="u1", session_id="b")
    await sessions.append_event(
        b,
        Event(author="x", invocation_id="i", actions=EventActions(state_delta={"stage": "review"})),
    )

    async def found(contains: dict, user: str | None = None, page_size: int = 50) -> list[str]:
        ids, token = [], None
        while True:
            page = await conversations.find_sessions_by_state(
                APP, contains, user_id=user, page_size=page_size, page_token=token
            )
            ids += [m.session_id for m in page.sessions]
            token = page.next_page_token
            if token is None:
                return ids

    for _ in (False, True):
        assert await found({"stage": "review"}) == ["b", "d", "c", "a"]
        assert await found({"stage": "review"}, page_size=1) == ["b", "d", "c", "a"]
        assert await found({"stage": "review"}, user="u1") == ["b", "a"]
        assert await found({"tier": {"level": 2}}) == ["a"]
        assert await found({"tags": ["x"]}) == ["a"]
        assert await found({"quote": 'it\'s "fine"', "emoji": "🦆"}) == ["d"]
        assert await found({"stage": "nope"}) == []
        assert len(await found({})) == 4
        await conversations.create_state_index()
    assert "idx_sessions_state" in await conversations.indexes()
    assert await conversations.drop_state_index()
    assert not await conversations.drop_state_index()
    for bad in ([1], "x", {"n": float("nan")}, {"k": "\x00"}, {"k": object()}):
        with pytest.raises(DataError):
            await conversations.find_sessions_by_state(APP, bad)  # type: ignore[arg-type]


async def test_bad_input_is_refused_with_a_typed_error(
    sessions: PostgresSessionService, conversations: PostgresConversations
) -> None:
    for sid in ("a", "b", "c"):
        await say(sessions, "u", sid, "hello there")
    first = await conversations.list_conversations(APP, "u", page_size=1)
    token = first.next_page_token
    assert token
    bad_calls = [
        conversations.list_conversations(APP, "u", page_size=0),
        conversations.list_conversations(APP, "u", page_size=1001),
        conversations.list_conversations(APP, "u", page_size=True),  # type: ignore[arg-type]
        conversations.list_conversations(APP, "u", page_token="garbage!"),
        conversations.list_conversations(APP, "u", page_token=token[:-3]),
        conversations.list_conversations(APP, "other-user", page_token=token),
        conversations.list_conversations(APP, "u", page_token=token, archived=True),
        conversations.list_conversations(APP, "u\x00"),
        conversations.list_conversations("x" * 129, "u"),
        conversations.search(APP, "u", ""),
        conversations.search(APP, "u", "   "),
        conversations.search(APP, "u", "a\x00b"),
        conversations.search(APP, "u", "hello", language="english'; DROP TABLE x; --"),
        conversations.search(APP, "u", "hello", language="klingon"),
        conversations.search(APP, "u", "hello", page_token=token),
        conversations.set_title(APP, "u", "a", "t\x00"),
        conversations.set_title(APP, "u", "a", "x" * 501),
        conversations.set_title(APP, "u", "a", "   "),
        sessions.list_sessions(app_name=APP, user_id="u", page_size=0),
        sessions.list_sessions(app_name=APP, user_id="u", page_token=token),
    ]
    for call in bad_calls:
        with pytest.raises(DataError):
            await call
    # Nothing was written by the refused title changes.
    listed = (await conversations.list_conversations(APP, "u")).conversations
    assert not any(c.title_is_set for c in listed)
    # Hostile queries are just text.
    for query in ("' OR 1=1 --", "<mark>", "& | ! :*", "🦆", "\u202e", "a" * 1000):
        await conversations.search(APP, "u", query)


async def test_list_sessions_pages_as_newer_adk_versions_define_it(
    sessions: PostgresSessionService,
) -> None:
    for i in range(12):
        await sessions.create_session(
            app_name=APP, user_id=f"user{i % 3}", session_id=f"s{i:02}", state={"i": i}
        )
    everything = await sessions.list_sessions(app_name=APP)
    assert not hasattr(everything, "next_page_token")  # 2.13 callers: today's result
    for user in (None, "user1"):
        expected = [
            s.id for s in (await sessions.list_sessions(app_name=APP, user_id=user)).sessions
        ]
        ids, token = [], None
        while True:
            page = await sessions.list_sessions(
                app_name=APP, user_id=user, page_size=5, page_token=token
            )
            ids += [s.id for s in page.sessions]
            assert all(s.state["i"] == int(s.id[1:]) for s in page.sessions)
            token = page.next_page_token
            if token is None:
                break
        assert ids == expected
    # A session updated while paging moves to the end: returned again, never skipped.
    first = await sessions.list_sessions(app_name=APP, page_size=4)
    moved = await sessions.get_session(app_name=APP, user_id="user0", session_id="s00")
    await sessions.append_event(moved, message("user", "bump"))
    rest = []
    token = first.next_page_token
    while token:
        page = await sessions.list_sessions(app_name=APP, page_size=4, page_token=token)
        rest += [s.id for s in page.sessions]
        token = page.next_page_token
    assert set([s.id for s in first.sessions] + rest) == {f"s{i:02}" for i in range(12)}
    assert rest[-1] == "s00"
    # The page carries app: and user: state like the unpaged list.
    await sessions.create_session(
        app_name=APP, user_id="user0", session_id="z", state={"app:k": 1, "user:k": 2}
    )
    page = await sessions.list_sessions(app_name=APP, user_id="user0", page_size=100)
    z = [s for s in page.sessions if s.id == "z"][0]
    assert z.state["app:k"] == 1 and z.state["user:k"] == 2
