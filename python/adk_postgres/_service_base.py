"""What the three services share: owning or borrowing a `Database`, and closing it."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from .database import Database
from .errors import ConfigurationError


class DatabaseBacked:
    """A service on one `Database`: opened from a URL/options (and then owned and closed by the
    service), or shared through ``database=`` (then closing it is its owner's business)."""

    _database: Database
    _owns_database: bool

    def _attach_database(
        self, uri: str | None, database: Database | None, options: dict[str, Any]
    ) -> None:
        if database is not None:
            if uri is not None or options:
                raise ConfigurationError("pass either database= or a URL/options, not both")
            self._database = database
            self._owns_database = False
        else:
            self._database = Database(uri, **options)
            self._owns_database = True

    @property
    def database(self) -> Database:
        return self._database

    async def close(self) -> None:
        """Close the pool if this service opened it."""
        if self._owns_database:
            await self._database.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
