"""Checks of the names and ids that become text keys in PostgreSQL, made before any round
trip so that bad input gets a clear error and the server never sees it."""

from __future__ import annotations

from .errors import DataError

#: ADK's v1 schema: VARCHAR(128) for app name, user id, session id and event id.
MAX_KEY_LENGTH = 128


def check_text(
    name: str,
    value: object,
    *,
    max_length: int | None = None,
    error: type[Exception] = DataError,
) -> None:
    """Reject a value PostgreSQL text cannot hold: not a ``str``, longer than ``max_length``
    characters, or holding NUL (raised as ``error``); not encodable as UTF-8 (a lone
    surrogate: always ``DataError``)."""
    if not isinstance(value, str):
        raise error(f"{name} must be a str, got {type(value).__name__}")
    if max_length is not None and len(value) > max_length:
        raise error(f"{name} is {len(value)} characters long; the limit is {max_length}")
    if "\x00" in value:
        raise error(f"{name} contains a NUL character, which PostgreSQL cannot store")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataError(f"{name} is not valid UTF-8 text ({exc.reason})") from exc


def check_keys(**parts: object) -> None:
    """:func:`check_text` for session keys (app name, user id, session id, event id)."""
    for name, value in parts.items():
        check_text(name, value, max_length=MAX_KEY_LENGTH)
