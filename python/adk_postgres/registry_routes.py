"""The agent registry in ``adk-postgres web`` / ``api_server``: the agent loader and its HTTP
routes.

The server's agents come from the registry (``adk_postgres.agent_registry``) and from the
agents directory (ADK's own loader); a new version stored by any process is served on the next
request. Routes, under ``/adk-postgres/v1/agents``:

* ``GET /adk-postgres/v1/agents`` (``?all=true``: archived ones too) → ``{"agents": [...]}``
* ``POST /adk-postgres/v1/agents`` with ``{"name": ..., "yaml": ...}`` → 201, version 1
  (409 if the name exists)
* ``GET /adk-postgres/v1/agents/{name}`` (``?version=N``) → the config and its agent
* ``PUT /adk-postgres/v1/agents/{name}`` with ``{"yaml": ...}`` → 200, the next version
* ``GET /adk-postgres/v1/agents/{name}/history`` → ``{"name": ..., "versions": [...]}``
* ``POST /adk-postgres/v1/agents/{name}/archive`` and ``/restore`` → 200

Errors are JSON ``{"error": message}``: 400 for bad input (a bad name or body, a config ADK
cannot load, with ADK's message), 404 for an unknown agent or version, 409 for a name taken,
503 when the database cannot be reached; never a traceback.

Like ADK's own API server these routes have no authentication: whoever can reach the server
can store agent configs it will serve. Keep it behind an authenticating proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ._http import check_fields, json_body, json_errors
from .agent_registry import AgentRegistry, RegistryAgentLoader, install_runner_refresh
from .database import Database
from .errors import DataError

PREFIX = "/adk-postgres/v1/agents"
#: The largest request body (a config is at most 1 MiB; JSON escaping may grow it).
MAX_BODY_BYTES = 4 * 1024 * 1024
_SERVICE_URIS = ("session_service_uri", "artifact_service_uri", "memory_service_uri")


def registry_loader(
    kwargs: dict[str, Any], database: Callable[[], Database], cli_scheme: str
) -> RegistryAgentLoader | None:
    """Before ADK's ``get_fast_api_app(**kwargs)``: a `RegistryAgentLoader` on ``database()``
    in front of the loader ADK would have made for the agents directory, set into ``kwargs``
    and returned. None (nothing changed) when the caller chose a loader or no service is on
    the CLI's database (``cli_scheme://``)."""
    if kwargs.get("agent_loader") is not None:
        return None
    if not any(str(kwargs.get(key) or "").startswith(f"{cli_scheme}://") for key in _SERVICE_URIS):
        return None
    import google.adk.cli.fast_api as fast_api

    agents_dir = kwargs["agents_dir"]
    # What ADK builds when given no loader (it detects single-agent directories itself).
    if kwargs.get("web"):
        fallback = fast_api.NestedAgentLoader(agents_dir)
    else:
        fallback = fast_api.AgentLoader(agents_dir)
    loader = RegistryAgentLoader(AgentRegistry(database=database()), fallback)
    install_runner_refresh()
    kwargs["agent_loader"] = loader
    return loader


def add_registry_routes(app: Any, loader: RegistryAgentLoader | None) -> None:
    """The registry routes, first in ``app`` (before any catch-all route of the web UI)."""
    if loader is None:
        return
    for route in reversed(agent_routes(loader.registry)):
        app.router.routes.insert(0, route)


async def _json_body(request: Request, fields: set[str]) -> dict[str, Any]:
    """The body, an object with exactly the string ``fields``."""
    body = await json_body(request, MAX_BODY_BYTES)
    check_fields(body, fields)
    for field in sorted(fields):
        if not isinstance(body.get(field), str):
            raise DataError(f"{field} is required (a string)")
    return body


def _version(request: Request) -> int | None:
    raw = request.query_params.get("version")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise DataError(f"version must be an integer, not {raw!r}") from None


def agent_routes(registry: AgentRegistry) -> list[Route]:
    """The registry's HTTP routes on ``registry`` (see the module docstring)."""

    async def collection(request: Request) -> JSONResponse:
        if request.method == "GET":
            include = request.query_params.get("all", "").lower() in ("1", "true", "yes")
            agents = await registry.list(include_archived=include)
            return JSONResponse({"agents": [a.to_json() for a in agents]})
        body = await _json_body(request, {"name", "yaml"})
        version = await registry.create(body["name"], body["yaml"])
        return JSONResponse({"name": body["name"], "version": version}, status_code=201)

    async def one(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        if request.method == "GET":
            shown = await registry.show(name, _version(request))
            return JSONResponse(shown.to_json())
        body = await _json_body(request, {"yaml"})
        version = await registry.update(name, body["yaml"])
        return JSONResponse({"name": name, "version": version})

    async def history(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        versions = await registry.history(name)
        return JSONResponse({"name": name, "versions": [v.to_json() for v in versions]})

    async def archive(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        await registry.archive(name)
        return JSONResponse({"name": name, "archived": True})

    async def restore(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        await registry.restore(name)
        return JSONResponse({"name": name, "archived": False})

    return [
        Route(PREFIX, json_errors(collection), methods=["GET", "POST"]),
        Route(PREFIX + "/{name}", json_errors(one), methods=["GET", "PUT"]),
        Route(PREFIX + "/{name}/history", json_errors(history), methods=["GET"]),
        Route(PREFIX + "/{name}/archive", json_errors(archive), methods=["POST"]),
        Route(PREFIX + "/{name}/restore", json_errors(restore), methods=["POST"]),
    ]
