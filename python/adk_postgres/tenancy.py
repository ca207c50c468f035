"""Multi-tenant databases: PostgreSQL row-level security by app (and user).

Each tenant connects as its own database role. An owner grants a role one app
(``grant_tenant(db, "shop_rt", "shop")``) or one user of it (``user_id=``) and turns row-level
security on; from then on every query of that role — ours, ADK's, or hand-written SQL — sees
and changes only rows of its apps/users. Reads of other tenants' sessions come back as
"not found"; writes into them are refused with `InsufficientPrivilegeError`. The owner (the
role that runs migrations) is not restricted. See README "Multi-tenant databases".
"""

from __future__ import annotations

from dataclasses import dataclass

from ._native import Tenancy
from .database import Database


@dataclass(frozen=True)
class TenantGrant:
    role: str
    app_name: str
    #: ``None``: every user of the app.
    user_id: str | None = None


async def _tenancy(database: Database) -> Tenancy:
    await database.migrate()
    return Tenancy(await database.store())


async def enable_row_level_security(database: Database) -> None:
    """Turn row-level security on for every tenant table (owner only)."""
    await (await _tenancy(database)).set_row_level_security(True)


async def disable_row_level_security(database: Database) -> None:
    await (await _tenancy(database)).set_row_level_security(False)


async def row_level_security_enabled(database: Database) -> bool:
    return await (await _tenancy(database)).row_level_security()


async def grant_tenant(
    database: Database, role: str, app_name: str, user_id: str | None = None
) -> None:
    """Let ``role`` (an existing database role) see ``app_name``, or one user of it."""
    await (await _tenancy(database)).grant(role, app_name, user_id)


async def revoke_tenant(
    database: Database, role: str, app_name: str, user_id: str | None = None
) -> bool:
    """Remove a grant; ``True`` if it existed."""
    return await (await _tenancy(database)).revoke(role, app_name, user_id)


async def list_tenants(database: Database) -> list[TenantGrant]:
    return [TenantGrant(*row) for row in await (await _tenancy(database)).list()]
