"""One ADK `Session` (or its exported form) → one bulk write of the whole session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.adk.events.event import Event
from google.adk.sessions.session import Session

from .._json import encode_event, encode_state
from .._native import Sessions
from .._state import split_state


@dataclass(frozen=True)
class WriteOutcome:
    created: bool
    events_added: int
    events_present: int
    state_taken: bool


async def write_session(
    sessions: Sessions,
    *,
    app_name: str,
    user_id: str,
    session_id: str,
    state: dict[str, Any],
    events: list[Event],
    last_update_time: float,
    app_state: dict[str, Any] | None = None,
    user_state: dict[str, Any] | None = None,
) -> WriteOutcome:
    """Write one session with its session-scoped ``state`` and all ``events``, in one
    transaction; app/user state are merged in with the stored keys winning."""
    create_time = min([last_update_time, *(e.timestamp for e in events[:1])])
    result = await sessions.write_transferred_session(
        (app_name, user_id, session_id),
        encode_state(state),
        create_time,
        last_update_time,
        [(e.id, e.invocation_id, e.timestamp, encode_event(e)) for e in events],
        # An empty {} state is a row too: kept, not turned into "no row".
        encode_state(app_state, "app state") if app_state is not None else None,
        encode_state(user_state, "user state") if user_state is not None else None,
    )
    return WriteOutcome(*result)


async def write_adk_session(sessions: Sessions, session: Session) -> WriteOutcome:
    """Write a session read through an ADK session service (its state is the merged view)."""
    parts = split_state(session.state)
    return await write_session(
        sessions,
        app_name=session.app_name,
        user_id=session.user_id,
        session_id=session.id,
        state=parts.session,
        events=list(session.events),
        last_update_time=session.last_update_time,
        app_state=parts.app,
        user_state=parts.user,
    )
