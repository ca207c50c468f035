"""Hostile and awkward input: every case either round-trips losslessly or raises a clear
adk_postgres error, and a rejected call leaves the stored session exactly as it was. Which of
the two happens is pinned per input (``expect=``), so a change of behaviour fails a test.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from google.adk.events import Event
from google.adk.events.event_actions import EventActions, _make_json_serializable
from google.adk.sessions import Session, _session_util
from google.genai import types

from adk_postgres import PostgresSessionService, errors

APP = "bad-input-app"
USER = "mallory"
T0 = 1_751_234_567.1234567
REJECTED = "rejected"
STORED = "stored"


def make_event(
    eid: str,
    *,
    timestamp: float = T0,
    state: dict[str, Any] | None = None,
    text: str = "hello",
) -> Event:
    return Event(
        id=eid,
        invocation_id=f"inv-{eid}",
        author="model",
        timestamp=timestamp,
        content=types.Content(role="model", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=dict(state or {})),
    )


async def fetch(svc: PostgresSessionService, session: Session) -> Session | None:
    return await svc.get_session(
        app_name=session.app_name, user_id=session.user_id, session_id=session.id
    )


def assert_clear_error(exc: BaseException, *kinds: type[BaseException]) -> None:
    assert isinstance(exc, kinds), f"unexpected {type(exc).__name__}: {exc}"
    assert isinstance(exc, errors.AdkPostgresError) and isinstance(exc, ValueError)
    assert str(exc).strip(), "the error needs a message"


async def append_lossless_or_rejected(
    svc: PostgresSessionService,
    session: Session,
    event: Event,
    verify: Callable[[Session], None],
    *kinds: type[BaseException],
    expect: str,
) -> str:
    """Append ``event``, which must be ``expect``-ed (STORED, then checked by ``verify``, or
    REJECTED: then storage and the caller's object must be untouched and the same object must
    still accept a normal append afterwards)."""
    outcome = await _append_outcome(svc, session, event, verify, *kinds)
    assert outcome == expect, f"expected {expect}, got {outcome}"
    return outcome


async def _append_outcome(
    svc: PostgresSessionService,
    session: Session,
    event: Event,
    verify: Callable[[Session], None],
    *kinds: type[BaseException],
) -> str:
    before = await fetch(svc, session)
    events_before = list(session.events)
    try:
        await svc.append_event(session, event)
    except Exception as exc:  # noqa: BLE001 - the kind is asserted right below
        assert_clear_error(exc, *(kinds or (errors.DataError,)))
        assert await fetch(svc, session) == before
        assert session.events == events_before
        follow_up = make_event("follow-up", timestamp=event.timestamp + 1)
        await svc.append_event(session, follow_up)
        after = await fetch(svc, session)
        assert after is not None and after.events[-1] == follow_up
        return REJECTED
    after = await fetch(svc, session)
    assert after is not None
    verify(after)
    return STORED


async def create_lossless_or_rejected(
    svc: PostgresSessionService,
    state: dict[str, Any],
    verify: Callable[[Session], None],
    *kinds: type[BaseException],
    expect: str,
) -> str:
    """Create a session with ``state``, which must be ``expect``-ed (STORED, then checked by
    ``verify``, or REJECTED: then nothing at all is stored)."""
    outcome = await _create_outcome(svc, state, verify, *kinds)
    assert outcome == expect, f"expected {expect}, got {outcome}"
    return outcome


async def _create_outcome(
    svc: PostgresSessionService,
    state: dict[str, Any],
    verify: Callable[[Session], None],
    *kinds: type[BaseException],
) -> str:
    bystander = await svc.create_session(
        app_name=APP, user_id=USER, state={"app:a": 1, "user:u": 2, "own": 3}
    )
    try:
        created = await svc.create_session(
            app_name=APP, user_id=USER, session_id="target", state=state
        )
    except Exception as exc:  # noqa: BLE001 - the kind is asserted right below
        assert_clear_error(exc, *(kinds or (errors.DataError,)))
        assert await svc.get_session(app_name=APP, user_id=USER, session_id="target") is None
        assert await fetch(svc, bystander) == bystander  # app/user state untouched
        return REJECTED
    fresh = await fetch(svc, created)
    assert fresh is not None
    verify(fresh)
    return STORED


def state_check(expected: dict[str, Any]) -> Callable[[Session], None]:
    def verify(session: Session) -> None:
        for key, value in expected.items():
            assert key in session.state, key
            got = session.state[key]
            if isinstance(value, float) and math.isnan(value):
                assert isinstance(got, float) and math.isnan(got), key
            else:
                assert got == value and type(got) is type(value), key

    return verify


# --- NUL characters ----------------------------------------------------------------------

NUL_STATES = {
    "value": {"v": "a\x00b"},
    "nested-value": {"v": {"deep": ["x\x00"]}},
    "app-value": {"app:v": "\x00"},
    "user-value": {"user:v": "nul\x00inside"},
    "key": {"k\x00ey": 1},
    "user-key": {"user:k\x00": 1},
}


@pytest.mark.parametrize("state", NUL_STATES.values(), ids=NUL_STATES.keys())
async def test_nul_in_state_on_create(service: PostgresSessionService, state: dict[str, Any]):
    # PostgreSQL's text and jsonb cannot hold NUL; storing it altered would lose data.
    await create_lossless_or_rejected(service, state, state_check(state), expect=REJECTED)


@pytest.mark.parametrize("state", NUL_STATES.values(), ids=NUL_STATES.keys())
async def test_nul_in_state_on_append(service: PostgresSessionService, state: dict[str, Any]):
    session = await service.create_session(app_name=APP, user_id=USER, state={"keep": 1})
    await append_lossless_or_rejected(
        service,
        session,
        make_event("e1", state=state),
        state_check({"keep": 1, **state}),
        expect=REJECTED,
    )


@pytest.mark.parametrize(
    "field", ["text", "function_arg", "custom_metadata", "author", "invocation_id"]
)
async def test_nul_in_event_fields(service: PostgresSessionService, field: str):
    session = await service.create_session(app_name=APP, user_id=USER)
    event = make_event("e1")
    if field == "text":
        event = make_event("e1", text="before\x00after")
    elif field == "function_arg":
        event.content = types.Content(
            role="model",
            parts=[types.Part(function_call=types.FunctionCall(name="f", args={"a": "\x00"}))],
        )
    elif field == "custom_metadata":
        event.custom_metadata = {"m\x00": "v\x00"}
    elif field == "author":
        event.author = "agent\x00"
    else:
        event.invocation_id = "inv\x00"

    def verify(stored: Session) -> None:
        assert stored.events == [event]

    await append_lossless_or_rejected(service, session, event, verify, expect=REJECTED)


# --- NaN and infinities ------------------------------------------------------------------

NON_FINITE = {
    "nan": {"v": float("nan")},
    "inf": {"v": float("inf")},
    "-inf": {"v": float("-inf")},
    "nested": {"v": {"list": [1.0, float("inf")]}},
    "app": {"app:v": float("nan")},
    "user": {"user:v": float("-inf")},
}


def non_finite_check(state: dict[str, Any]) -> Callable[[Session], None]:
    def verify(session: Session) -> None:
        for key, value in state.items():
            got = session.state[key]
            if isinstance(value, dict):
                assert got["list"][0] == 1.0 and got["list"][1] == float("inf")
            elif math.isnan(value):
                assert isinstance(got, float) and math.isnan(got)
            else:
                assert got == value

    return verify


@pytest.mark.parametrize("state", NON_FINITE.values(), ids=NON_FINITE.keys())
async def test_non_finite_floats_in_state_on_create(
    service: PostgresSessionService, state: dict[str, Any]
):
    # NaN/Infinity are not JSON: silently storing null (or 0) would be data loss.
    await create_lossless_or_rejected(service, state, non_finite_check(state), expect=REJECTED)


@pytest.mark.parametrize("state", NON_FINITE.values(), ids=NON_FINITE.keys())
async def test_non_finite_floats_in_state_on_append(
    service: PostgresSessionService, state: dict[str, Any]
):
    session = await service.create_session(app_name=APP, user_id=USER)
    await append_lossless_or_rejected(
        service, session, make_event("e1", state=state), non_finite_check(state), expect=REJECTED
    )


# --- values that are not JSON ------------------------------------------------------------


def _a_callable() -> None:
    """Stands for a tool function someone put into state."""


class Opaque:
    pass


def non_json_state() -> dict[str, Any]:
    return {
        "fn": _a_callable,
        "obj": Opaque(),
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 678901),
        "pair": (1, 2),
        "app:fn": _a_callable,
        "user:day": datetime.date(2024, 2, 29),
        "plain": 1,
    }


def adk_json_safe(state: dict[str, Any]) -> dict[str, Any]:
    """The merged state ADK's DatabaseSessionService would read back."""
    deltas = _session_util.extract_json_safe_state_delta(state)
    return {
        **deltas["session"],
        **{f"app:{k}": v for k, v in deltas["app"].items()},
        **{f"user:{k}": v for k, v in deltas["user"].items()},
    }


async def test_non_json_state_on_create_is_stored_like_adk(service: PostgresSessionService):
    state = non_json_state()
    created = await service.create_session(app_name=APP, user_id=USER, state=state)
    fresh = await fetch(service, created)
    assert fresh is not None
    assert fresh.state == adk_json_safe(state)
    assert fresh.state["fn"].startswith("<function _a_callable")


async def test_non_json_state_on_append_is_stored_like_adk(service: PostgresSessionService):
    state = non_json_state()
    session = await service.create_session(app_name=APP, user_id=USER)
    await service.append_event(session, make_event("e1", state=state))
    fresh = await fetch(service, session)
    assert fresh is not None
    assert fresh.state == adk_json_safe(state)
    # The stored event carries the same fallback ADK's EventActions serializer produces.
    assert fresh.events[0].actions.state_delta == _make_json_serializable(state)


# --- size --------------------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024


def big_text() -> str:
    chunk = '0123456789abcdefghijklmnopqrstuvwxyzé🙂\n"\\'
    return (chunk * (TEN_MB // len(chunk) + 1))[:TEN_MB]


async def test_ten_megabyte_state_value_round_trips(service: PostgresSessionService):
    blob = big_text()
    created = await service.create_session(
        app_name=APP, user_id=USER, session_id="big", state={"blob": blob, "user:blob": blob}
    )
    fresh = await fetch(service, created)
    assert fresh is not None and fresh.state["blob"] == blob and fresh.state["user:blob"] == blob
    assert fresh == created
    event = make_event("big-event", state={"app:blob": blob, "blob": blob[::-1]})
    await service.append_event(created, event)
    fresh = await fetch(service, created)
    assert fresh is not None
    assert fresh.state["app:blob"] == blob and fresh.state["blob"] == blob[::-1]
    assert fresh.events == [event]


# --- identifiers -------------------------------------------------------------------------

INJECTION_IDS = [
    "'; DROP TABLE sessions; --",
    "Robert'); DROP TABLE events;--",
    'double"quote"',
    "back\\slash\\",
    "$1 %s %(x)s ? :name",
    "' OR '1'='1",
    "*/ SELECT 1; /*",
]


async def assert_tables_intact(pg_admin: asyncpg.Connection, schema: str) -> None:
    for table in ["sessions", "events", "app_states", "user_states", "adk_internal_metadata"]:
        assert await pg_admin.fetchval("SELECT to_regclass($1)", f'"{schema}".{table}'), table


@pytest.mark.parametrize("evil", INJECTION_IDS)
async def test_injection_looking_names_round_trip(
    service: PostgresSessionService, pg_admin: asyncpg.Connection, schema_name: str, evil: str
):
    state = {evil: evil, f"app:{evil}": evil, f"user:{evil}": evil}
    created = await service.create_session(
        app_name=evil, user_id=evil, session_id=evil, state=state
    )
    assert (created.app_name, created.user_id, created.id) == (evil, evil, evil)
    event = make_event(evil, text=evil, state={evil: "updated"})
    await service.append_event(created, event)
    fresh = await service.get_session(app_name=evil, user_id=evil, session_id=evil)
    assert fresh is not None and fresh == created
    assert fresh.events == [event] and fresh.state[evil] == "updated"
    assert [s.id for s in (await service.list_sessions(app_name=evil)).sessions] == [evil]
    assert await service.get_user_state(app_name=evil, user_id=evil) == {evil: evil}

    await assert_tables_intact(pg_admin, schema_name)
    row = await pg_admin.fetchrow(f'SELECT app_name, user_id, id FROM "{schema_name}".sessions')
    assert tuple(row) == (evil, evil, evil)
    await service.delete_session(app_name=evil, user_id=evil, session_id=evil)
    assert await service.get_session(app_name=evil, user_id=evil, session_id=evil) is None
    await assert_tables_intact(pg_admin, schema_name)


ID_FIELDS = ["app_name", "user_id", "session_id"]


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize("char", ["x", "é", "🙂"], ids=["ascii", "2-byte", "4-byte"])
async def test_128_character_ids_work(service: PostgresSessionService, field: str, char: str):
    # VARCHAR(128) counts characters, not bytes.
    ids = {"app_name": APP, "user_id": USER, "session_id": "s", field: char * 128}
    created = await service.create_session(**ids)
    event = make_event("e" * 128)
    await service.append_event(created, event)
    fresh = await service.get_session(**ids)
    assert fresh is not None and fresh == created and fresh.events == [event]


@pytest.mark.parametrize("field", ID_FIELDS)
async def test_129_character_ids_are_rejected_clearly(
    service: PostgresSessionService, pg_admin: asyncpg.Connection, schema_name: str, field: str
):
    await service.create_session(app_name=APP, user_id=USER, session_id="bystander")
    ids = {"app_name": APP, "user_id": USER, "session_id": "s", field: "y" * 129}
    with pytest.raises(errors.AdkPostgresError) as caught:
        await service.create_session(**ids)
    assert_clear_error(caught.value, errors.ConfigurationError, errors.DataError)
    assert await pg_admin.fetchval(f'SELECT count(*) FROM "{schema_name}".sessions') == 1


async def test_129_character_event_id_is_rejected_clearly(service: PostgresSessionService):
    session = await service.create_session(app_name=APP, user_id=USER)
    await append_lossless_or_rejected(
        service,
        session,
        make_event("z" * 129),
        lambda stored: None,
        errors.ConfigurationError,
        errors.DataError,
        expect=REJECTED,
    )


UNICODE_IDS = {
    "emoji": "🧪👩‍👩‍👧 session",
    "rtl": "משתמש مستخدم",
    "combining": "e\u0301a\u0308 Å",
    "cjk": "漢字セッション",
}


@pytest.mark.parametrize("name", UNICODE_IDS.values(), ids=UNICODE_IDS.keys())
async def test_unicode_ids_round_trip(service: PostgresSessionService, name: str):
    created = await service.create_session(
        app_name=name, user_id=name, session_id=name, state={"user:k": name}
    )
    await service.append_event(created, make_event(name, text=name))
    fresh = await service.get_session(app_name=name, user_id=name, session_id=name)
    assert fresh is not None and fresh == created
    assert (fresh.app_name, fresh.user_id, fresh.id) == (name, name, name)
    listed = (await service.list_sessions(app_name=name, user_id=name)).sessions
    assert [s.id for s in listed] == [name]
    # A composed and a decomposed spelling are different ids (no normalisation).
    if name == UNICODE_IDS["combining"]:
        assert await service.get_session(app_name=name, user_id=name, session_id="éä Å") is None


@pytest.mark.parametrize("field", ID_FIELDS)
@pytest.mark.parametrize("bad", ["nul\x00id", "lone\ud800surrogate"], ids=["nul", "surrogate"])
async def test_unstorable_characters_in_ids_are_rejected_clearly(
    service: PostgresSessionService, field: str, bad: str
):
    ids = {"app_name": APP, "user_id": USER, "session_id": "s", field: bad}
    with pytest.raises(errors.AdkPostgresError) as caught:
        await service.create_session(**ids)
    assert_clear_error(caught.value, errors.DataError, errors.ConfigurationError)
    assert (await service.list_sessions(app_name=APP)).sessions == []


# --- lone surrogates ---------------------------------------------------------------------

SURROGATE_STATES = {
    "value": {"v": "a\ud800b"},
    "key": {"k\udfff": 1},
    "user-value": {"user:v": "\udc00"},
    "app-key": {"app:\ud83d": 1},
}


@pytest.mark.parametrize("state", SURROGATE_STATES.values(), ids=SURROGATE_STATES.keys())
async def test_lone_surrogates_in_state_are_rejected(
    service: PostgresSessionService, state: dict[str, Any]
):
    # UTF-8 cannot carry a lone surrogate, so there is no lossless option.
    await create_lossless_or_rejected(service, state, lambda s: None, expect=REJECTED)
    session = await service.create_session(app_name=APP, user_id=USER, state={"keep": 1})
    await append_lossless_or_rejected(
        service, session, make_event("e1", state=state), lambda s: None, expect=REJECTED
    )


async def test_lone_surrogate_in_event_text_is_rejected(service: PostgresSessionService):
    session = await service.create_session(app_name=APP, user_id=USER)
    await append_lossless_or_rejected(
        service,
        session,
        make_event("e1", text="half \ud83d of an emoji"),
        lambda s: None,
        expect=REJECTED,
    )
