"""What our HTTP routes share: JSON error responses (400 with a message, 404, 409, 503 with
Retry-After, never a traceback), query and body parsing that raises ``DataError``."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from google.adk.errors.session_not_found_error import SessionNotFoundError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import (
    AdkPostgresError,
    AgentExistsError,
    DatabaseConnectionError,
    DataError,
    NotFoundError,
    PoolTimeoutError,
    StatementTimeoutError,
)

logger = logging.getLogger("adk_postgres.http")

#: The largest request body our routes read.
MAX_BODY_BYTES = 1024 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str) -> JSONResponse:
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def json_errors(handler: Handler) -> Handler:
    """``handler`` with exceptions turned into JSON answers: ``DataError`` 400, an unknown
    session, task or agent 404, an agent name taken 409, an unreachable or overloaded database 503,
    anything else 500 with one log line."""

    @wraps(handler)
    async def handle(request: Request) -> Response:
        try:
            return await handler(request)
        except DataError as exc:
            return error(400, str(exc))
        except (SessionNotFoundError, NotFoundError) as exc:
            return error(404, str(exc))
        except AgentExistsError as exc:
            return error(409, str(exc))
        except (DatabaseConnectionError, PoolTimeoutError, StatementTimeoutError) as exc:
            return error(503, f"the database is unavailable: {exc}")
        except AdkPostgresError as exc:
            return error(500, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug: still an answer, and one log line
            logger.error("adk-postgres: %s %s failed: %r", request.method, request.url.path, exc)
            return error(500, f"internal error: {type(exc).__name__}")

    return handle


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DataError(f"{name} must be an integer, not {raw!r}") from None
    if not low <= value <= high:
        raise DataError(f"{name} must be between {low} and {high}")
    return value


def bool_param(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no", ""):
        return False
    raise DataError(f"{name} must be true or false, not {raw!r}")


async def json_body(request: Request, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > max_bytes:
        raise DataError(f"the body is larger than {max_bytes // (1024 * 1024)} MiB")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise DataError("the body must be a JSON object")
    return body


def check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise DataError(f"unknown field(s): {', '.join(sorted(unknown))}")
