"""JSON encoding at the Python edge: pydantic-core produces bytes that Rust sends untouched.

State follows ADK's ``_session_util.make_json_safe_state``: values pydantic-core can serialise
are kept exactly (ints of any size, 17-digit floats); values it cannot (callables, …) are
replaced by their ``repr`` with a warning. What PostgreSQL's JSONB cannot hold is rejected
with :class:`~adk_postgres.errors.DataError` before anything is written: NaN/Infinity (not JSON)
here, NUL characters by the server in the same statement (nothing is stored either way).
"""

from __future__ import annotations

import logging
from typing import Any

from google.adk.events.event import Event
from pydantic_core import PydanticSerializationError, from_json, to_json

from . import _event_decoder
from ._native import json_nesting_depth
from .errors import DataError

logger = logging.getLogger("adk_postgres")

_EVENT_SERIALIZER = Event.__pydantic_serializer__

#: Deepest nesting of objects/arrays stored. pydantic-core's JSON reader refuses more than 200
#: levels, and events used to be read back inside one more array, so anything deeper could be
#: written but never read again: it is refused up front instead. (Events are now read one by
#: one; the limit is kept so that what is stored stays readable by older versions.)
MAX_NESTING_DEPTH = 199


def _unencodable(exc: Exception, what: str) -> DataError:
    return DataError(f"{what} cannot be stored as JSON: {exc}")


def _reject_too_deep(encoded: bytes, what: str) -> None:
    if json_nesting_depth(encoded) > MAX_NESTING_DEPTH:
        raise DataError(
            f"{what} nests objects/arrays more than {MAX_NESTING_DEPTH} levels deep, more than "
            "JSON readers accept; flatten it or store it as a string"
        )


def _is_too_deep(exc: Exception) -> bool:
    return "recursion" in str(exc).lower() or "maximum serialization" in str(exc).lower()


def _reject_non_finite(encoded: bytes, value: Any, what: str) -> None:
    # Cheap scan first; only when a token could be present, compare with the NaN→null form.
    if b"NaN" in encoded or b"Infinity" in encoded:
        if to_json(value, inf_nan_mode="null", serialize_unknown=True) != to_json(
            value, inf_nan_mode="constants", serialize_unknown=True
        ):
            raise DataError(
                f"{what} contains NaN or Infinity, which JSON (and PostgreSQL jsonb) cannot "
                "represent; store them as strings or None"
            )


def encode_state(state: dict[str, Any], what: str = "state") -> bytes:
    """Serialise a state dict (or delta) to JSON bytes, ADK-compatibly."""
    try:
        encoded = to_json(state, inf_nan_mode="constants")
    except PydanticSerializationError as exc:
        if "surrogates not allowed" in str(exc) or _is_too_deep(exc):
            raise _unencodable(exc, what) from exc
        logger.warning(
            "Some %s values are not JSON-serializable (e.g. callables) and are stored as their "
            "string representation, as ADK does.",
            what,
        )
        try:
            encoded = to_json(state, inf_nan_mode="constants", serialize_unknown=True)
        except PydanticSerializationError as exc2:
            raise _unencodable(exc2, what) from exc2
    _reject_non_finite(encoded, state, what)
    _reject_too_deep(encoded, what)
    return encoded


def encode_event(event: Event) -> bytes:
    """Serialise an event exactly as ADK's DatabaseSessionService stores it (``exclude_none``,
    snake_case keys, bytes as base64)."""
    try:
        encoded = _EVENT_SERIALIZER.to_json(event, exclude_none=True)
    except PydanticSerializationError as exc:
        if "surrogates not allowed" in str(exc) or _is_too_deep(exc):
            raise _unencodable(exc, "event") from exc
        try:
            encoded = _EVENT_SERIALIZER.to_json(event, exclude_none=True, fallback=repr)
        except PydanticSerializationError as exc2:
            raise _unencodable(exc2, "event") from exc2
    _reject_too_deep(encoded, "event")
    return encoded


def decode_state(data: bytes | None) -> dict[str, Any]:
    """Parse stored state JSON; missing → empty dict."""
    if not data:
        return {}
    value = from_json(data)
    return value if isinstance(value, dict) else {}


def decode_events(events: list[bytes]) -> list[Event]:
    """Stored event JSON -> Events, each equal to ``Event.model_validate_json`` of its bytes.

    The shapes ADK stores are built without re-validation (see `_event_decoder`); anything else
    is validated, so corrupt data still raises pydantic's ValidationError."""
    if not events:
        return []
    return _event_decoder.decode_events(events)
