"""The agent registry: versioned ADK agent configs (YAML) in PostgreSQL, served by
``adk-postgres web`` / ``api_server`` next to the agents directory.

    registry = AgentRegistry(database=database)
    version = await registry.put("weather", yaml_text)   # 1, then 2, 3, ...
    await registry.show("weather")                        # the current version
    await registry.archive("weather")                     # no longer served

A config is what ADK reads from ``<agents_dir>/<name>/root_agent.yaml``, in one file (a
reference to another YAML file has nothing to resolve against). ``put`` loads it with ADK's own
config loader first (``google.adk.agents.config_agent_utils.from_config``) and refuses it with
ADK's message if ADK cannot; nothing is stored then. Names are what ADK serves as app names
and loads from a directory: 1-128 ASCII letters, digits and underscores, starting with a
letter. Each put is a new version (``current + 1`` under the agent row's lock, so puts from
several processes get distinct versions); earlier versions are kept (``history``, ``show
--version``). Archiving keeps every version but stops serving the agent; ``restore`` undoes it.

`RegistryAgentLoader` is the ADK agent loader the servers use: registry agents first (a
registry agent shadows a directory agent of the same name), then ADK's own loader for the
agents directory. On each run request it asks the database for the agent's current version
(one small query; the YAML only comes back when the version changed), so a version stored by
any process is served by every server on its next request, without a restart. Built agents are
cached per (name, version). Usage counts and last-used times are written in batches, off the
request path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import tempfile
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.adk.cli.utils.base_agent_loader import BaseAgentLoader, _AgentLoadError

from ._keys import check_text
from ._native import Agents
from ._service_base import DatabaseBacked
from .database import Database
from .errors import AdkPostgresError, AgentExistsError, AgentNotFoundError, DataError
from .telemetry import traced

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The longest agent name (ADK's app names are VARCHAR(128) in its session tables).
MAX_NAME_LENGTH = 128
#: The largest config accepted, in bytes of UTF-8.
MAX_YAML_BYTES = 1024 * 1024
#: Built agents a loader keeps (per name and version).
BUILT_CACHE_SIZE = 64
#: Names a loader remembers having checked (then it forgets them all and asks again).
MAX_CHECKED_NAMES = 10_000
#: Seconds between usage-count writes of one loader.
USAGE_FLUSH_INTERVAL = 1.0
_MAX_VERSION = 2**31 - 1


def check_agent_name(name: object) -> str:
    """``name`` if it is an agent name (see the module docstring), else `DataError`."""
    check_text("agent name", name, max_length=MAX_NAME_LENGTH)
    assert isinstance(name, str)
    if not (
        name[:1].isascii()
        and name[:1].isalpha()
        and all(c.isascii() and (c.isalnum() or c == "_") for c in name)
        and name != "user"
    ):
        raise DataError(
            f"invalid agent name {name!r}: use 1-{MAX_NAME_LENGTH} letters, digits and "
            'underscores, starting with a letter (not "user")'
        )
    return name


def _yaml_text(config: object) -> str:
    """The config as text: ``str`` or UTF-8 ``bytes``, at most 1 MiB, no NUL."""
    if isinstance(config, bytes | bytearray | memoryview):
        if len(config) > MAX_YAML_BYTES:
            raise DataError(
                f"the agent config is {len(config)} bytes; the limit is {MAX_YAML_BYTES}"
            )
        try:
            config = bytes(config).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"the agent config is not UTF-8 text ({exc.reason})") from None
    check_text("the agent config", config)
    assert isinstance(config, str)
    size = len(config.encode("utf-8"))
    if size > MAX_YAML_BYTES:
        raise DataError(f"the agent config is {size} bytes; the limit is {MAX_YAML_BYTES}")
    if not config.strip():
        raise DataError("the agent config is empty")
    return config


def _check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int):
        raise DataError(f"version must be an int, got {type(version).__name__}")
    if not 1 <= version <= _MAX_VERSION:
        raise DataError(f"version must be between 1 and {_MAX_VERSION}, not {version}")
    return version


def build_agent(name: str, config: str) -> Any:
    """The agent ADK builds from ``config`` as ``<name>/root_agent.yaml``; `DataError` with
    ADK's own message when it cannot."""
    from google.adk.agents import config_agent_utils

    with tempfile.TemporaryDirectory(prefix="adk-postgres-agent-") as tmp:
        folder = os.path.join(tmp, name)
        os.mkdir(folder)
        path = os.path.join(folder, "root_agent.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(config)
        try:
            return config_agent_utils.from_config(path)
        except Exception as exc:  # ADK raises ValueError, pydantic's ValidationError, YAMLError…
            message = str(exc).replace(path, f"{name}/root_agent.yaml").replace(tmp, "")
            raise DataError(f"ADK cannot load agent {name!r}: {message}") from None


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else _at(seconds)


@dataclass(frozen=True)
class AgentInfo:
    """An agent of the registry."""

    name: str
    #: The newest version (what is served).
    version: int
    archived_at: datetime | None
    usage_count: int
    last_used_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    @classmethod
    def _from_row(
        cls, row: tuple[str, int, float | None, int, float | None, float, float]
    ) -> AgentInfo:
        name, version, archived, uses, used, created, updated = row
        return cls(name, version, _time(archived), uses, _time(used), _at(created), _at(updated))

    def to_json(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {
            "name": self.name,
            "version": self.version,
            "archived": self.archived,
            "archived_at": iso(self.archived_at),
            "usage_count": self.usage_count,
            "last_used_at": iso(self.last_used_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True)
class AgentConfig:
    """One version of an agent's config."""

    agent: AgentInfo
    version: int
    yaml: str
    created_at: datetime

    @property
    def name(self) -> str:
        return self.agent.name

    @property
    def current(self) -> bool:
        return self.version == self.agent.version

    def to_json(self) -> dict[str, Any]:
        return {
            **self.agent.to_json(),
            "current_version": self.agent.version,
            "version": self.version,
            "yaml": self.yaml,
            "version_created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class AgentVersionInfo:
    """One line of an agent's history."""

    version: int
    created_at: datetime
    #: The config's size in bytes.
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "size": self.size,
        }


class AgentRegistry(DatabaseBacked):
    """Versioned ADK agent configs on PostgreSQL.

    Args:
        uri: a PostgreSQL URL (the registry opens and owns a pool), or ``None`` with
            ``database=``: share that `Database` with the other services.
        options: `Database` options, with ``uri``.
    """

    def __init__(
        self, uri: str | None = None, *, database: Database | None = None, **options: Any
    ) -> None:
        self._attach_database(uri, database, options)
        self._native: Agents | None = None

    async def _agents(self) -> Agents:
        if self._native is None:
            self._native = Agents(await self._database.store())
        return self._native

    @traced("agents")
    async def put(self, name: str, yaml_text: str | bytes) -> int:
        """Store ``yaml_text`` as the next version of agent ``name`` (1 for a new one) and
        return that version. `DataError` (nothing stored) for a bad name, text that is not
        UTF-8, holds NUL or is over 1 MiB, or a config ADK cannot load. An archived agent
        stays archived."""
        version = await self._put(name, yaml_text, "any")
        assert version is not None
        return version

    @traced("agents")
    async def create(self, name: str, yaml_text: str | bytes) -> int:
        """`put` for a new agent only (version 1); `AgentExistsError` if the name is taken."""
        version = await self._put(name, yaml_text, "create")
        if version is None:
            raise AgentExistsError(f"agent {name!r} already exists; store a new version instead")
        return version

    @traced("agents")
    async def update(self, name: str, yaml_text: str | bytes) -> int:
        """`put` for an existing agent only; `AgentNotFoundError` if there is none."""
        version = await self._put(name, yaml_text, "update")
        if version is None:
            raise AgentNotFoundError(f"no agent {name!r} in the registry")
        return version

    async def _put(self, name: str, yaml_text: str | bytes, mode: str) -> int | None:
        check_agent_name(name)
        config = _yaml_text(yaml_text)
        # ADK's loader may import modules the config names: not on the event loop.
        await asyncio.to_thread(build_agent, name, config)
        return await (await self._agents()).put(name, config, mode)

    @traced("agents")
    async def list(self, include_archived: bool = False) -> list[AgentInfo]:
        """Every agent by name (archived ones only with ``include_archived``)."""
        rows = await (await self._agents()).list(bool(include_archived))
        return [AgentInfo._from_row(row) for row in rows]

    @traced("agents")
    async def show(self, name: str, version: int | None = None) -> AgentConfig:
        """Version ``version`` of ``name`` (default: the current one); `AgentNotFoundError`
        when there is no such agent or version."""
        check_agent_name(name)
        if version is not None:
            _check_version(version)
        shown = await (await self._agents()).show(name, version)
        if shown is None:
            which = f"agent {name!r}" if version is None else f"version {version} of agent {name!r}"
            raise AgentNotFoundError(f"no {which} in the registry")
        info, number, yaml_text, created = shown
        return AgentConfig(AgentInfo._from_row(info), number, yaml_text, _at(created))

    @traced("agents")
    async def history(self, name: str) -> list[AgentVersionInfo]:
        """Every version of ``name``, newest first; `AgentNotFoundError` for an unknown one."""
        check_agent_name(name)
        rows = await (await self._agents()).history(name)
        if not rows:
            raise AgentNotFoundError(f"no agent {name!r} in the registry")
        return [AgentVersionInfo(v, _at(t), size) for v, t, size in rows]

    @traced("agents")
    async def archive(self, name: str) -> None:
        """Stop serving ``name`` (its versions are kept); `AgentNotFoundError` if unknown."""
        check_agent_name(name)
        if not await (await self._agents()).archive(name):
            raise AgentNotFoundError(f"no agent {name!r} in the registry")

    @traced("agents")
    async def restore(self, name: str) -> None:
        """Serve an archived agent again; `AgentNotFoundError` if unknown."""
        check_agent_name(name)
        if not await (await self._agents()).restore(name):
            raise AgentNotFoundError(f"no agent {name!r} in the registry")

    async def current(
        self, name: str, known: int | None = None
    ) -> tuple[int, bool, str | None] | None:
        """``(current version, archived, yaml)`` or None for an unknown agent; the YAML only
        when the current version is not ``known`` and the agent is served. One round trip."""
        check_agent_name(name)
        return await (await self._agents()).current(name, known)

    async def record_usage(self, uses: Mapping[str, int]) -> None:
        """Add ``uses[name]`` to each agent's usage count and set its last-used time."""
        if uses:
            names = list(uses)
            await (await self._agents()).record_usage(names, [int(uses[n]) for n in names])


@dataclass(frozen=True)
class _Broken:
    """A stored version this process cannot build, and why."""

    reason: str


def _is_agent_name(name: str) -> bool:
    try:
        check_agent_name(name)
    except DataError:
        return False
    return True


class RegistryAgentLoader(BaseAgentLoader):
    """ADK's agent loader for the registry, in front of ``fallback`` (ADK's loader for the
    agents directory; ``None``: registry agents only). See the module docstring.

    ADK calls loaders synchronously; the server's runner lookup (`install_runner_refresh`)
    awaits `refresh` first, so a run costs one query and never blocks the event loop. Other
    synchronous callers (``/list-apps``, app info) wait for their query on a helper thread.
    """

    def __init__(
        self,
        registry: AgentRegistry,
        fallback: BaseAgentLoader | None = None,
        *,
        usage_flush_interval: float = USAGE_FLUSH_INTERVAL,
    ) -> None:
        self.registry = registry
        self.fallback = fallback
        self.usage_flush_interval = usage_flush_interval
        # name → version served now (absent: not a served registry agent, as last checked)
        self._served: dict[str, int] = {}
        # name → when it was last checked (monotonic)
        self._checked: dict[str, float] = {}
        self._built: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._pending_uses: Counter[str] = Counter()
        self._flush_task: asyncio.Task[None] | None = None
        self._helper = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="adk-postgres-agents"
        )

    # ADK sets this on the loader it is given; the directory loader must follow it.
    @property  # type: ignore[override]
    def _allow_special_agents(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.fallback, "_allow_special_agents", False))

    @_allow_special_agents.setter
    def _allow_special_agents(self, value: bool) -> None:
        if self.fallback is not None:
            self.fallback._allow_special_agents = value

    def served_version(self, name: str) -> int | None:
        """The registry version this loader serves for ``name`` (None: not a registry agent)."""
        return self._served.get(name)

    async def refresh(self, name: str, *, count_use: bool = False) -> int | None:
        """Ask the database which version of ``name`` to serve (building it if new to this
        process) and return it; None when the registry does not serve ``name``."""
        if not _is_agent_name(name):
            return None
        known = self._served.get(name)
        current = await self.registry.current(name, known)
        if len(self._checked) >= MAX_CHECKED_NAMES:  # requests for any name at all
            self._checked.clear()
        self._checked[name] = time.monotonic()
        if current is None or current[1]:
            self._served.pop(name, None)
            return None
        version, _, config = current
        if (name, version) not in self._built:
            if config is None:  # known version, but its agent left the cache
                config = (await self.registry.show(name, version)).yaml
            try:
                agent: Any = await asyncio.to_thread(build_agent, name, config)
            except DataError as exc:
                # Stored, but this server cannot build it (a module it names is missing
                # here, or the web UI's stricter YAML rules): load_agent fails as ADK's own
                # loader fails for a broken agent (HTTP 500, the reason in the log).
                agent = _Broken(str(exc))
            self._built[(name, version)] = agent
            while len(self._built) > BUILT_CACHE_SIZE:
                self._built.popitem(last=False)
        self._built.move_to_end((name, version))
        self._served[name] = version
        if count_use:
            self._count_use(name)
        return version

    async def refresh_or_keep(self, name: str, *, count_use: bool = False) -> int | None:
        """`refresh`, but when the database cannot answer: the version served so far (a
        warning in the log), so runs of agents this process already serves go on."""
        try:
            return await self.refresh(name, count_use=count_use)
        except AdkPostgresError as exc:
            logger.warning("adk-postgres: agent registry not reachable for %r: %s", name, exc)
            self._checked[name] = time.monotonic()
            return self._served.get(name)

    def _blocking(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` to completion on the helper thread's own event loop."""

        async def run() -> T:
            return await make()

        return self._helper.submit(asyncio.run, run()).result()

    def load_agent(self, agent_name: str) -> Any:
        if _is_agent_name(agent_name):
            checked = self._checked.get(agent_name)
            if checked is None or time.monotonic() - checked > 1.0:
                self._blocking(lambda: self.refresh_or_keep(agent_name))
            version = self._served.get(agent_name)
            if version is not None:
                agent = self._built.get((agent_name, version))
                if agent is None:
                    self._blocking(lambda: self.refresh_or_keep(agent_name))
                    version = self._served.get(agent_name)
                    agent = self._built.get((agent_name, version)) if version else None
                if isinstance(agent, _Broken):
                    raise _AgentLoadError(agent.reason)
                if agent is not None:
                    return agent
        if self.fallback is not None:
            return self.fallback.load_agent(agent_name)
        raise ValueError(f"Agent not found: {agent_name!r}")

    def _registry_names(self) -> list[str]:
        try:
            return [a.name for a in self._blocking(self.registry.list)]
        except AdkPostgresError as exc:
            logger.warning("adk-postgres: agent registry not reachable: %s", exc)
            return [name for name, _ in sorted(self._served.items())]

    def list_agents(self) -> list[str]:
        names = set(self._registry_names())
        if self.fallback is not None:
            names.update(self.fallback.list_agents())
        return sorted(names)

    def list_agents_detailed(self) -> list[dict[str, Any]]:
        registry = self._registry_names()
        details: dict[str, dict[str, Any]] = {}
        if self.fallback is not None:
            details = {d["name"]: d for d in self.fallback.list_agents_detailed()}
        for name in registry:
            try:
                agent = self.load_agent(name)
            except Exception as exc:  # shown like ADK's loader shows a broken agent: skipped
                logger.error("Failed to load agent '%s': %s", name, exc)
                continue
            details[name] = {
                "name": name,
                "root_agent_name": getattr(agent, "name", name),
                "description": getattr(agent, "description", None),
                "language": "yaml",
                "is_computer_use": False,
            }
        return [details[name] for name in sorted(details)]

    def remove_agent_from_cache(self, agent_name: str) -> None:
        """For ADK's ``--reload_agents``: forget a directory agent (registry agents follow
        their version anyway)."""
        remove = getattr(self.fallback, "remove_agent_from_cache", None)
        if remove is not None:
            remove(agent_name)

    # -- usage, off the request path ---------------------------------------------------------

    def _count_use(self, name: str) -> None:
        self._pending_uses[name] += 1
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.usage_flush_interval)
        await self.flush_usage()

    async def flush_usage(self) -> None:
        """Write the usage counted so far (counts are dropped, with a warning, if the
        database cannot take them)."""
        uses, self._pending_uses = dict(self._pending_uses), Counter()
        try:
            await self.registry.record_usage(uses)
        except Exception as exc:
            logger.warning("adk-postgres: agent usage counts not recorded: %s", exc)


def install_runner_refresh() -> None:
    """Make ADK's server ask a `RegistryAgentLoader` for the current version of an agent
    before it hands out the agent's runner, and replace the runner when the version changed
    (ADK keeps one runner per app for the life of the process). Process-wide, once; a server
    with another loader is unaffected."""
    from google.adk.cli.api_server import ApiServer

    original = ApiServer.get_runner_async
    if getattr(original, "_adk_postgres", False):
        return

    async def get_runner_async(self: Any, app_name: str) -> Any:
        loader = self.agent_loader
        if isinstance(loader, RegistryAgentLoader):
            version = await loader.refresh_or_keep(app_name, count_use=True)
            built: dict[str, int | None] = self.__dict__.setdefault(
                "_adk_postgres_runner_versions", {}
            )
            if app_name in self.runner_dict and built.get(app_name) != version:
                self.runners_to_clean.add(app_name)
            creates = app_name not in self.runner_dict or app_name in self.runners_to_clean
            runner = await original(self, app_name)
            if creates:  # from what load_agent served just now
                built[app_name] = loader.served_version(app_name)
            return runner
        return await original(self, app_name)

    get_runner_async._adk_postgres = True  # type: ignore[attr-defined]
    ApiServer.get_runner_async = get_runner_async  # type: ignore[method-assign]
