"""ADK's state prefixes: a state dict (or delta) split into what is stored where, and back.

``app:`` keys go to one row per app, ``user:`` keys to one row per (app, user), ``temp:``
keys are never stored, every other key belongs to the session; prefixes are stripped in
storage and added back on read.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from google.adk.sessions.state import State


class StateParts(NamedTuple):
    """A state split by scope, prefixes stripped, ``temp:`` keys dropped."""

    session: dict[str, Any]
    app: dict[str, Any]
    user: dict[str, Any]


def split_state(state: dict[str, Any]) -> StateParts:
    parts = StateParts({}, {}, {})
    for key, value in state.items():
        if key.startswith(State.APP_PREFIX):
            parts.app[key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            parts.user[key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            parts.session[key] = value
    return parts


def merge_state(
    session_state: dict[str, Any], app_state: dict[str, Any], user_state: dict[str, Any]
) -> dict[str, Any]:
    """ADK's merged view: the session's keys, then ``app:`` and ``user:`` keys."""
    merged = dict(session_state)
    for key, value in app_state.items():
        merged[State.APP_PREFIX + key] = value
    for key, value in user_state.items():
        merged[State.USER_PREFIX + key] = value
    return merged
