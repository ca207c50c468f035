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

from a2a.server.routes.common import DefaultServerCallContextBuilder
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ._http import check_fields, int_param, json_body, json_errors
from .a2a import PostgresTaskStore
from .errors import DataError

FEEDBACK_PATH = "/a2a/{app_name}/tasks/{task_id}/feedback"

_context_builder = DefaultServerCallContextBuilder()


def feedback_routes(store: PostgresTaskStore) -> list[Route]:
    """The two feedback routes on ``store``."""

    @json_errors
    async def handle(request: Request) -> JSONResponse:
        task_id = request.path_params["task_id"]
        context = _context_builder.build(request)
        if request.method == "GET":
            after = request.query_params.get("after")
            limit = int_param(request, "limit", 100, 1, 1000)
            listed = await store.list_feedback(task_id, after=after, limit=limit, context=context)
            return JSONResponse({"feedback": [f.to_json() for f in listed]})
        body = await json_body(request)
        check_fields(body, {"rating", "text", "metadata"})
        if "rating" not in body:
            raise DataError("rating is required (an int from 1 to 5)")
        text = body.get("text")
        if text is not None and not isinstance(text, str):
            raise DataError("text must be a string")
        added = await store.add_feedback(
            task_id, body["rating"], text, body.get("metadata"), context=context
        )
        return JSONResponse(added.to_json(), status_code=201)

    return [Route(FEEDBACK_PATH, handle, methods=["GET", "POST"])]
