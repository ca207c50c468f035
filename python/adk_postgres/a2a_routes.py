"""HTTP routes for feedback on A2A tasks, next to ADK's A2A endpoints (``/a2a/{app}``):

* ``POST /a2a/{app}/tasks/{task_id}/feedback`` with ``{"rating": 1-5, "text": "...",
  "metadata": {...}}`` (text and metadata optional) → 201 and the stored feedback;
* ``GET /a2a/{app}/tasks/{task_id}/feedback?after=ID&limit=N`` → 200 and ``{"feedback": [...]}``
  (oldest first; ``after``: the last feedback id of the previous page).

The task's owner is resolved as the A2A endpoints resolve it (the SDK's request context: the
authenticated user's name, ``""`` without authentication). Errors: 400 with a message for a
bad body or query, 404 for a task the owner does not have, 503 when the database cannot be
reached; never a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from a2a.server.routes.common import DefaultServerCallContextBuilder
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .a2a import PostgresTaskStore, TaskNotFoundError
from .errors import (
    DatabaseConnectionError,
    DataError,
    PoolTimeoutError,
    StatementTimeoutError,
)

FEEDBACK_PATH = "/a2a/{app_name}/tasks/{task_id}/feedback"

_context_builder = DefaultServerCallContextBuilder()


def _error(status: int, message: str) -> JSONResponse:
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
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


def feedback_routes(store: PostgresTaskStore) -> list[Route]:
    """The two feedback routes on ``store``."""

    async def handle(request: Request) -> JSONResponse:
        task_id = request.path_params["task_id"]
        context = _context_builder.build(request)
        try:
            if request.method == "GET":
                after = request.query_params.get("after")
                limit = _int_param(request, "limit", 100, 1, 1000)
                listed = await store.list_feedback(
                    task_id, after=after, limit=limit, context=context
                )
                return JSONResponse({"feedback": [f.to_json() for f in listed]})
            body = await _json_body(request)
            unknown = set(body) - {"rating", "text", "metadata"}
            if unknown:
                raise DataError(f"unknown field(s): {', '.join(sorted(unknown))}")
            if "rating" not in body:
                raise DataError("rating is required (an int from 1 to 5)")
            text = body.get("text")
            if text is not None and not isinstance(text, str):
                raise DataError("text must be a string")
            added = await store.add_feedback(
                task_id, body["rating"], text, body.get("metadata"), context=context
            )
            return JSONResponse(added.to_json(), status_code=201)
        except TaskNotFoundError as exc:
            return _error(404, str(exc))
        except DataError as exc:
            return _error(400, str(exc))
        except (DatabaseConnectionError, PoolTimeoutError, StatementTimeoutError) as exc:
            return _error(503, f"the database is unavailable: {exc}")

    return [Route(FEEDBACK_PATH, handle, methods=["GET", "POST"])]


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 1024 * 1024:
        raise DataError("the body is larger than 1 MiB")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise DataError("the body must be a JSON object")
    return body
