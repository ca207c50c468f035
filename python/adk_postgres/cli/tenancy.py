"""``adk-postgres tenancy …``: row-level security by app/user for shared databases."""

from __future__ import annotations

import click

from .. import tenancy
from ._app import main, run_async
from ._output import console
from ._settings import Settings


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


@main.group("tenancy")
def tenancy_group() -> None:
    """Row-level security: each database role sees only the apps (or users) granted to it.

    Run these as the owner role (the one that migrates). See README "Multi-tenant databases".
    """


@tenancy_group.command("enable")
@click.pass_obj
def enable(settings: Settings) -> None:
    """Turn row-level security on (roles then see only what they were granted)."""
    run_async(tenancy.enable_row_level_security(settings.database()))
    _say("row-level security: on")


@tenancy_group.command("disable")
@click.pass_obj
def disable(settings: Settings) -> None:
    """Turn row-level security off (every role with table rights sees everything)."""
    run_async(tenancy.disable_row_level_security(settings.database()))
    _say("row-level security: off")


@tenancy_group.command("grant")
@click.argument("role")
@click.argument("app_name")
@click.option("--user", "user_id", metavar="USER_ID", help="Only this user of the app.")
@click.pass_obj
def grant(settings: Settings, role: str, app_name: str, user_id: str | None) -> None:
    """Let database ROLE see APP_NAME (all its users, or --user)."""
    run_async(tenancy.grant_tenant(settings.database(), role, app_name, user_id))
    _say(f"granted {role}: {app_name}" + (f" / {user_id}" if user_id else " (all users)"))


@tenancy_group.command("revoke")
@click.argument("role")
@click.argument("app_name")
@click.option("--user", "user_id", metavar="USER_ID")
@click.pass_obj
def revoke(settings: Settings, role: str, app_name: str, user_id: str | None) -> None:
    """Remove a grant."""
    found = run_async(tenancy.revoke_tenant(settings.database(), role, app_name, user_id))
    _say(("revoked " if found else "no such grant: ") + f"{role}: {app_name}")


@tenancy_group.command("list")
@click.pass_obj
def list_grants(settings: Settings) -> None:
    """Show row-level security and every grant."""

    async def both() -> tuple[bool, list[tenancy.TenantGrant]]:
        database = settings.database()
        return (
            await tenancy.row_level_security_enabled(database),
            await tenancy.list_tenants(database),
        )

    enabled, grants = run_async(both())
    _say(f"row-level security: {'on' if enabled else 'off'}")
    for g in grants:
        _say(f"{g.role}  {g.app_name}  {g.user_id if g.user_id is not None else '*'}")
