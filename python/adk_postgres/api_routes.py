"""adk-postgres's own HTTP routes, mounted by ``adk-postgres web|api_server`` next to ADK's
(``--no-api-routes`` leaves them out). All under ``/adk-postgres/v1``, scoped by app and user
in the path as ADK's own session routes are:

* ``GET  /health/live`` → 200 while the process serves; ``GET /health/ready`` → 200 when the
  database answers and its schema is current, else 503 with the reason;
* ``GET  /stats[?app_name=]`` → what ``adk-postgres stats --json`` prints;
* ``GET  /apps/{app}/users/{user}/conversations?page_size=&page_token=&archived=`` → a page
  of conversations, newest activity first, and ``next_page_token``;
* ``PUT  /apps/{app}/users/{user}/conversations/{session}/title`` ``{"title": "..."}``
  (``null``: back to the derived title);
* ``POST /apps/{app}/users/{user}/conversations/{session}/archive`` and ``.../restore``;
* ``GET  /apps/{app}/users/{user}/search?q=&language=&page_size=&page_token=&include_archived=``;
* ``GET  /apps/{app}/state?contains={json}[&user_id=]&page_size=&page_token=`` and
  ``GET /apps/{app}/users/{user}/state?contains=...`` → sessions whose state contains it.

Bad input → 400 ``{"error": message}``; an unknown session → 404; the database unreachable →
503 with Retry-After. Never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._http import bool_param, check_fields, int_param, json_body, json_errors
from .admin import Admin
from .conversations import MAX_PAGE_SIZE, PostgresConversations
from .database import Database
from .errors import AdkPostgresError, DataError

PREFIX = "/adk-postgres/v1"
_USER = PREFIX + "/apps/{app_name}/users/{user_id}"


def _token(request: Request) -> str | None:
    return request.query_params.get("page_token") or None


def api_routes(database: Database) -> list[Route]:
    """Every route above, on ``database``."""
    conversations = PostgresConversations(database=database)
    admin = Admin(database)

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        try:
            status = await admin.migration_status()
        except AdkPostgresError as exc:
            return JSONResponse(
                {"status": "unavailable", "error": f"{type(exc).__name__}: {exc}"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        body = {
            "status": "ready" if status.up_to_date else "schema_outdated",
            "schema": status.schema,
            "schema_version": status.current,
            "latest_version": status.latest,
        }
        return JSONResponse(body, status_code=200 if status.up_to_date else 503)

    @json_errors
    async def stats(request: Request) -> Response:
        app_name = request.query_params.get("app_name")
        return JSONResponse(asdict(await admin.stats(app_name)))

    @json_errors
    async def list_conversations(request: Request) -> Response:
        app, user = request.path_params["app_name"], request.path_params["user_id"]
        page = await conversations.list_conversations(
            app,
            user,
            page_size=int_param(request, "page_size", 50, 1, MAX_PAGE_SIZE),
            page_token=_token(request),
            archived=bool_param(request, "archived"),
        )
        return JSONResponse(
            {
                "conversations": [c.to_json() for c in page.conversations],
                "next_page_token": page.next_page_token,
            }
        )

    @json_errors
    async def set_title(request: Request) -> Response:
        app, user, session = _session_path(request)
        body = await json_body(request)
        check_fields(body, {"title"})
        if "title" not in body:
            raise DataError('the body must have "title" (a string, or null)')
        title = body["title"]
        if title is not None and not isinstance(title, str):
            raise DataError("title must be a string or null")
        await conversations.set_title(app, user, session, title)
        return JSONResponse({"session_id": session, "title": title})

    @json_errors
    async def archive(request: Request) -> Response:
        app, user, session = _session_path(request)
        await conversations.archive(app, user, session)
        return JSONResponse({"session_id": session, "archived": True})

    @json_errors
    async def restore(request: Request) -> Response:
        app, user, session = _session_path(request)
        await conversations.restore(app, user, session)
        return JSONResponse({"session_id": session, "archived": False})

    @json_errors
    async def search(request: Request) -> Response:
        app, user = request.path_params["app_name"], request.path_params["user_id"]
        query = request.query_params.get("q")
        if query is None:
            raise DataError("the query parameter q (what to search for) is required")
        page = await conversations.search(
            app,
            user,
            query,
            language=request.query_params.get("language") or None,
            page_size=int_param(request, "page_size", 20, 1, MAX_PAGE_SIZE),
            page_token=_token(request),
            include_archived=bool_param(request, "include_archived"),
        )
        return JSONResponse(
            {"hits": [h.to_json() for h in page.hits], "next_page_token": page.next_page_token}
        )

    @json_errors
    async def by_state(request: Request) -> Response:
        app = request.path_params["app_name"]
        user = request.path_params.get("user_id", request.query_params.get("user_id"))
        page = await conversations.find_sessions_by_state(
            app,
            _contains(request),
            user_id=user,
            page_size=int_param(request, "page_size", 50, 1, MAX_PAGE_SIZE),
            page_token=_token(request),
        )
        return JSONResponse(
            {
                "sessions": [m.to_json() for m in page.sessions],
                "next_page_token": page.next_page_token,
            }
        )

    conversation = _USER + "/conversations/{session_id}"
    return [
        Route(PREFIX + "/health/live", live, methods=["GET"]),
        Route(PREFIX + "/health/ready", ready, methods=["GET"]),
        Route(PREFIX + "/stats", stats, methods=["GET"]),
        Route(_USER + "/conversations", list_conversations, methods=["GET"]),
        Route(conversation + "/title", set_title, methods=["PUT"]),
        Route(conversation + "/archive", archive, methods=["POST"]),
        Route(conversation + "/restore", restore, methods=["POST"]),
        Route(_USER + "/search", search, methods=["GET"]),
        Route(PREFIX + "/apps/{app_name}/state", by_state, methods=["GET"]),
        Route(_USER + "/state", by_state, methods=["GET"]),
    ]


def _session_path(request: Request) -> tuple[str, str, str]:
    params = request.path_params
    return params["app_name"], params["user_id"], params["session_id"]


def _contains(request: Request) -> dict[str, Any]:
    raw = request.query_params.get("contains")
    if raw is None:
        raise DataError('the query parameter contains (a JSON object, e.g. {"k": "v"}) is required')
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise DataError(f"contains is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DataError("contains must be a JSON object")
    return value
