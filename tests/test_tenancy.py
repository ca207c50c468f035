"""Row-level security by tenant: two roles on one schema cannot see or touch each other's
sessions, artifacts or memory; a user-scoped role sees only its user; off means off."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events import Event
from google.adk.events.event_actions import EventActions
from google.genai import types
from test_least_privilege import RUNTIME_GRANTS, as_role

from adk_postgres import (
    Database,
    PostgresArtifactService,
    PostgresMemoryService,
    PostgresSessionService,
)
from adk_postgres.errors import InsufficientPrivilegeError
from adk_postgres.tenancy import (
    TenantGrant,
    disable_row_level_security,
    enable_row_level_security,
    grant_tenant,
    list_tenants,
    revoke_tenant,
    row_level_security_enabled,
)


class Tenant:
    """The three services of one database role."""

    def __init__(self, url: str, schema: str) -> None:
        self.db = Database(url, schema=schema)
        self.sessions = PostgresSessionService(database=self.db, cache_bytes=0)
        self.artifacts = PostgresArtifactService(database=self.db)
        self.memory = PostgresMemoryService(database=self.db)


@pytest.fixture
async def roles(pg_admin: asyncpg.Connection) -> AsyncIterator[list[str]]:
    names = [f"adkpg_t{i}_{uuid.uuid4().hex[:6]}" for i in range(3)]
    for name in names:
        await pg_admin.execute(f"CREATE ROLE {name} LOGIN")
    try:
        yield names
    finally:
        for name in names:
            await pg_admin.execute(f"DROP OWNED BY {name}")
            await pg_admin.execute(f"DROP ROLE {name}")


def _event(text: str, delta: dict | None = None) -> Event:
    return Event(
        author="user",
        invocation_id="i",
        content=types.Content(role="user", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=delta or {}),
    )


async def test_tenants_are_isolated(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, roles: list[str]
) -> None:
    shop_role, docs_role, ann_role = roles
    owner = Tenant(pg_url, schema_name)
    await owner.sessions.list_sessions(app_name="x")
    await owner.memory.search_memory(app_name="x", user_id="u", query="warm up")
    await owner.artifacts.list_artifact_keys(app_name="x", user_id="u", session_id="s")
    for role in roles:
        await pg_admin.execute(RUNTIME_GRANTS.format(schema=f'"{schema_name}"', role=role))
    await grant_tenant(owner.db, shop_role, "shop")
    await grant_tenant(owner.db, docs_role, "docs")
    await grant_tenant(owner.db, ann_role, "shop", user_id="ann")
    await grant_tenant(owner.db, ann_role, "shop", user_id="ann")  # idempotent
    assert await list_tenants(owner.db) == sorted(
        [
            TenantGrant(shop_role, "shop"),
            TenantGrant(docs_role, "docs"),
            TenantGrant(ann_role, "shop", "ann"),
        ],
        key=lambda g: (g.role, g.app_name, g.user_id or ""),
    )
    assert not await row_level_security_enabled(owner.db)
    await enable_row_level_security(owner.db)
    assert await row_level_security_enabled(owner.db)

    shop = Tenant(as_role(pg_url, shop_role), schema_name)
    docs = Tenant(as_role(pg_url, docs_role), schema_name)
    ann = Tenant(as_role(pg_url, ann_role), schema_name)
    try:
        bob_session = await shop.sessions.create_session(
            app_name="shop", user_id="bob", state={"cart": 1, "app:open": True, "user:vip": 1}
        )
        ann_session = await shop.sessions.create_session(app_name="shop", user_id="ann")
        await shop.sessions.append_event(bob_session, _event("bob wants red shoes", {"n": 1}))
        await shop.artifacts.save_artifact(
            app_name="shop",
            user_id="bob",
            session_id=bob_session.id,
            filename="cart.txt",
            artifact=types.Part(text="red shoes"),
        )
        stored_bob = await shop.sessions.get_session(
            app_name="shop", user_id="bob", session_id=bob_session.id
        )
        await shop.memory.add_session_to_memory(stored_bob)
        docs_session = await docs.sessions.create_session(app_name="docs", user_id="bob")

        # docs sees nothing of shop: reads are "not found", writes are refused.
        assert (
            await docs.sessions.get_session(
                app_name="shop", user_id="bob", session_id=bob_session.id
            )
            is None
        )
        assert (await docs.sessions.list_sessions(app_name="shop")).sessions == []
        assert await docs.sessions.get_user_state(app_name="shop", user_id="bob") == {}
        with pytest.raises(SessionNotFoundError):
            await docs.sessions.append_event(stored_bob, _event("intrusion", {"n": 666}))
        await docs.sessions.delete_session(
            app_name="shop", user_id="bob", session_id=bob_session.id
        )
        with pytest.raises(InsufficientPrivilegeError):
            await docs.sessions.create_session(app_name="shop", user_id="eve")
        assert (
            await docs.artifacts.list_artifact_keys(
                app_name="shop", user_id="bob", session_id=bob_session.id
            )
            == []
        )
        assert (
            await docs.artifacts.load_artifact(
                app_name="shop", user_id="bob", session_id=bob_session.id, filename="cart.txt"
            )
            is None
        )
        assert (
            await docs.memory.search_memory(app_name="shop", user_id="bob", query="red shoes")
        ).memories == []
        # ...and shop, all of it intact, sees nothing of docs.
        still = await shop.sessions.get_session(
            app_name="shop", user_id="bob", session_id=bob_session.id
        )
        assert still is not None and still.state["n"] == 1 and len(still.events) == 1
        assert (
            await shop.memory.search_memory(app_name="shop", user_id="bob", query="red shoes")
        ).memories
        assert (
            await shop.sessions.get_session(
                app_name="docs", user_id="bob", session_id=docs_session.id
            )
            is None
        )

        # A user-scoped tenant sees its user only (and the app's shared state).
        listed = await ann.sessions.list_sessions(app_name="shop")
        assert [s.id for s in listed.sessions] == [ann_session.id]
        assert listed.sessions[0].state == {"app:open": True}
        assert (
            await ann.sessions.get_session(
                app_name="shop", user_id="bob", session_id=bob_session.id
            )
            is None
        )

        # The grants table is the owner's: tenants can neither read nor extend it.
        conn = await asyncpg.connect(as_role(pg_url, docs_role))
        try:
            assert await conn.fetch(f'SELECT * FROM "{schema_name}".tenants') == []
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(
                    f"INSERT INTO \"{schema_name}\".tenants VALUES ('{docs_role}', 'shop', NULL)"
                )
            # Raw SQL is bound by the same policies.
            assert await conn.fetchval(f'SELECT count(*) FROM "{schema_name}".events') == 0
        finally:
            await conn.close()

        # Off means off.
        await disable_row_level_security(owner.db)
        assert (
            await docs.sessions.get_session(
                app_name="shop", user_id="bob", session_id=bob_session.id
            )
            is not None
        )
        assert await revoke_tenant(owner.db, docs_role, "docs")
        assert not await revoke_tenant(owner.db, docs_role, "docs")
    finally:
        for tenant in (owner, shop, docs, ann):
            await tenant.db.close()


async def test_shared_artifact_content_survives_the_other_tenant_deleting(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, roles: list[str]
) -> None:
    first_role, second_role, _ = roles
    owner = Tenant(pg_url, schema_name)
    await owner.artifacts.list_artifact_keys(app_name="x", user_id="u", session_id="s")
    for role in roles:
        await pg_admin.execute(RUNTIME_GRANTS.format(schema=f'"{schema_name}"', role=role))
    await grant_tenant(owner.db, first_role, "one")
    await grant_tenant(owner.db, second_role, "two")
    await enable_row_level_security(owner.db)
    first = Tenant(as_role(pg_url, first_role), schema_name)
    second = Tenant(as_role(pg_url, second_role), schema_name)
    try:
        same = types.Part.from_bytes(data=b"identical bytes" * 1000, mime_type="text/plain")
        for tenant, app in ((first, "one"), (second, "two")):
            await tenant.artifacts.save_artifact(
                app_name=app, user_id="u", session_id="s", filename="f.bin", artifact=same
            )
        await first.artifacts.delete_artifact(
            app_name="one", user_id="u", session_id="s", filename="f.bin"
        )
        loaded = await second.artifacts.load_artifact(
            app_name="two", user_id="u", session_id="s", filename="f.bin"
        )
        assert loaded is not None and loaded.inline_data.data == b"identical bytes" * 1000
    finally:
        for tenant in (owner, first, second):
            await tenant.db.close()


def test_tenancy_cli(pg_url: str, schema_name: str) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                "from adk_postgres.cli import run; run()",
                "-d",
                pg_url,
                "--schema",
                schema_name,
                "tenancy",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )

    role = "postgres"  # any existing role will do for the bookkeeping
    assert cli("grant", role, "shop", "--user", "ann").stdout.strip() == (
        f"granted {role}: shop / ann"
    )
    assert cli("enable").stdout.strip() == "row-level security: on"
    listed = cli("list").stdout.splitlines()
    assert listed == ["row-level security: on", f"{role}  shop  ann"]
    assert cli("disable").stdout.strip() == "row-level security: off"
    assert cli("revoke", role, "shop", "--user", "ann").stdout.startswith("revoked")
    missing = cli("grant", "no_such_role_xyz", "shop")
    assert missing.returncode == 1 and "no database role named" in missing.stderr
