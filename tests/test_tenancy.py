"""Row-level security by tenant: two roles on one schema cannot see or touch each other's
sessions, artifacts or memory; a user-scoped role sees only its user; off means off."""

from __future__ import annotations

import hashlib
import os
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


# --------------------------------------------------------------------------------------------
# Hardening (migration 7): shared artifact contents cannot be changed or forged by a tenant,
# and the grant checks answer only for roles the caller may act as.
# --------------------------------------------------------------------------------------------

MIB = 1024 * 1024


async def _two_tenants(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, roles: list[str]
) -> tuple[Tenant, Tenant, Tenant]:
    owner = Tenant(pg_url, schema_name)
    await owner.artifacts.list_artifact_keys(app_name="x", user_id="u", session_id="s")
    for role in roles:
        await pg_admin.execute(RUNTIME_GRANTS.format(schema=f'"{schema_name}"', role=role))
    await grant_tenant(owner.db, roles[0], "one")
    await grant_tenant(owner.db, roles[1], "two")
    await enable_row_level_security(owner.db)
    return (
        owner,
        Tenant(as_role(pg_url, roles[0]), schema_name),
        Tenant(as_role(pg_url, roles[1]), schema_name),
    )


async def _load(tenant: Tenant, app: str, filename: str) -> bytes | None:
    part = await tenant.artifacts.load_artifact(
        app_name=app, user_id="u", session_id="s", filename=filename
    )
    return None if part is None or part.inline_data is None else part.inline_data.data


async def test_a_tenant_cannot_change_or_delete_shared_content(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, roles: list[str]
) -> None:
    owner, first, second = await _two_tenants(pg_url, schema_name, pg_admin, roles)
    s = f'"{schema_name}"'
    small, large = b"first tenant's bytes" * 100, os.urandom(2 * MIB + 5)
    try:
        for name, data in (("small.bin", small), ("large.bin", large)):
            await first.artifacts.save_artifact(
                app_name="one",
                user_id="u",
                session_id="s",
                filename=name,
                artifact=types.Part.from_bytes(data=data, mime_type="x/y"),
            )
        attacker = await asyncpg.connect(as_role(pg_url, roles[1]))
        try:
            for data in (small, large):
                sha = hashlib.sha256(data).digest()
                attacks = [
                    f"UPDATE {s}.artifact_chunks SET data = 'evil' WHERE sha256 = $1",
                    f"UPDATE {s}.artifact_contents SET size = 4 WHERE sha256 = $1",
                    f"UPDATE {s}.artifact_contents SET storage = 'fs' WHERE sha256 = $1",
                    f"DELETE FROM {s}.artifact_chunks WHERE sha256 = $1",
                    f"DELETE FROM {s}.artifact_chunks WHERE sha256 = $1 AND seq = 0",
                    f"INSERT INTO {s}.artifact_chunks VALUES ($1, 99, 'appended')",
                    f"INSERT INTO {s}.artifact_chunks VALUES ($1, -1, 'prepended')",
                ]
                for sql in attacks:
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await attacker.execute(sql, sha)
                # The save path's no-op lock of an existing content does not open it up.
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    async with attacker.transaction():
                        await attacker.execute(
                            f"INSERT INTO {s}.artifact_contents AS t (sha256, size, storage)"
                            " VALUES ($1, 1, 'db')"
                            " ON CONFLICT (sha256) DO UPDATE SET size = t.size",
                            sha,
                        )
                        await attacker.execute(
                            f"INSERT INTO {s}.artifact_chunks VALUES ($1, 99, 'x')", sha
                        )
                # Still in use by the first tenant: the foreign key keeps it.
                with pytest.raises(asyncpg.ForeignKeyViolationError):
                    await attacker.execute(
                        f"DELETE FROM {s}.artifact_contents WHERE sha256 = $1", sha
                    )
        finally:
            await attacker.close()
        assert await _load(first, "one", "small.bin") == small
        assert await _load(first, "one", "large.bin") == large
        # The orphan cleanup (owner) and cascades still remove contents when they are unused.
        for name in ("small.bin", "large.bin"):
            await first.artifacts.delete_artifact(
                app_name="one", user_id="u", session_id="s", filename=name
            )
        assert await pg_admin.fetchval(f"SELECT count(*) FROM {s}.artifact_chunks") == 0
    finally:
        for tenant in (owner, first, second):
            await tenant.db.close()


async def test_forged_content_cannot_poison_another_tenants_save(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, roles: list[str]
) -> None:
    """The attacker knows (or guesses) the bytes the victim will save, and stores something
    else under their SHA-256 first, hoping the victim's save reuses it."""
    owner, victim, _ = await _two_tenants(pg_url, schema_name, pg_admin, roles)
    s = f'"{schema_name}"'
    small, large = b"the victim's contract" * 50, os.urandom(3 * MIB + 1)
    attacker = await asyncpg.connect(as_role(pg_url, roles[1]))
    try:
        for data in (small, large):
            sha = hashlib.sha256(data).digest()
            wrong = bytes(len(data))  # right length, wrong bytes
            forgeries = [
                [("db", len(data), [(0, wrong)])],
                [("db", len(data), [(0, wrong[:MIB]), (1, wrong[MIB:])])],
                [("db", len(data), [])],  # no bytes at all
                [("db", 0, [])],
                [("fs", len(data), [])],  # "it is in a content directory"
            ]
            for forgery in forgeries:
                for storage, size, chunks in forgery:
                    with pytest.raises(
                        (asyncpg.CheckViolationError, asyncpg.InsufficientPrivilegeError)
                    ):
                        async with attacker.transaction():
                            await attacker.execute(
                                f"INSERT INTO {s}.artifact_contents (sha256, size, storage,"
                                " created_xid) VALUES ($1, $2, $3, '1')",
                                sha,
                                size,
                                storage,
                            )
                            for seq, chunk in chunks:
                                await attacker.execute(
                                    f"INSERT INTO {s}.artifact_chunks VALUES ($1, $2, $3)",
                                    sha,
                                    seq,
                                    chunk,
                                )
            assert (
                await pg_admin.fetchval(
                    f"SELECT count(*) FROM {s}.artifact_contents WHERE sha256 = $1", sha
                )
                == 0
            )
        # Correct bytes are fine (nothing to forge): the victim's save reuses them.
        honest_sha = hashlib.sha256(small).digest()
        async with attacker.transaction():
            await attacker.execute(
                f"INSERT INTO {s}.artifact_contents (sha256, size, storage) VALUES ($1, $2, 'db')",
                honest_sha,
                len(small),
            )
            await attacker.execute(
                f"INSERT INTO {s}.artifact_chunks VALUES ($1, 0, $2)", honest_sha, small
            )
    finally:
        await attacker.close()
    try:
        for name, data in (("small.bin", small), ("large.bin", large)):
            await victim.artifacts.save_artifact(
                app_name="one",
                user_id="u",
                session_id="s",
                filename=name,
                artifact=types.Part.from_bytes(data=data, mime_type="x/y"),
            )
            assert await _load(victim, "one", name) == data
        # ...through the service too: a tenant's own saves are checked at commit and pass.
        assert await pg_admin.fetchval(f"SELECT count(*) FROM {s}.artifact_contents") == 2
    finally:
        for tenant in (owner, victim):
            await tenant.db.close()


async def test_tenant_roles_keep_contents_in_the_database_while_rls_is_on(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, roles: list[str], tmp_path
) -> None:
    """The server cannot check files in a content directory, so a tenant role's save there is
    refused (and leaves no file behind); the owner's works."""
    owner, first, _ = await _two_tenants(pg_url, schema_name, pg_admin, roles)
    content_dir = tmp_path / "content"
    tenant_files = PostgresArtifactService(database=first.db, content_dir=content_dir)
    owner_files = PostgresArtifactService(database=owner.db, content_dir=content_dir)
    try:
        with pytest.raises(InsufficientPrivilegeError, match="content_dir"):
            await tenant_files.save_artifact(
                app_name="one",
                user_id="u",
                session_id="s",
                filename="f",
                artifact=types.Part.from_bytes(data=b"tenant bytes", mime_type="x/y"),
            )
        assert [p for p in content_dir.rglob("*") if p.is_file()] == []
        await owner_files.save_artifact(
            app_name="one",
            user_id="u",
            session_id="s",
            filename="f",
            artifact=types.Part.from_bytes(data=b"owner bytes", mime_type="x/y"),
        )
        assert len([p for p in content_dir.rglob("*") if p.is_file()]) == 1
    finally:
        for tenant in (owner, first):
            await tenant.db.close()


async def test_check_functions_answer_only_granted_roles_about_themselves(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, roles: list[str]
) -> None:
    shop_role, docs_role, outsider = roles
    owner = Tenant(pg_url, schema_name)
    await owner.db.migrate()
    for role in roles:
        await pg_admin.execute(RUNTIME_GRANTS.format(schema=f'"{schema_name}"', role=role))
    await grant_tenant(owner.db, shop_role, "shop")
    await grant_tenant(owner.db, docs_role, "docs")
    s = f'"{schema_name}"'
    sees = f"SELECT {s}.adk_postgres_tenant_sees($1, $2, 'u')"
    sees_app = f"SELECT {s}.adk_postgres_tenant_sees_app($1, $2)"

    async def ask(role: str, sql: str, *args: str) -> bool:
        conn = await asyncpg.connect(as_role(pg_url, role))
        try:
            return bool(await conn.fetchval(sql, *args))
        finally:
            await conn.close()

    try:
        # A role without grants may not run them at all (PUBLIC may not).
        for sql in (sees, sees_app):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await ask(outsider, sql, shop_role, "shop")
        # A tenant learns its own grants, nothing about other roles'.
        assert await ask(shop_role, sees, shop_role, "shop")
        assert await ask(shop_role, sees_app, shop_role, "shop")
        assert not await ask(shop_role, sees, docs_role, "docs")
        assert not await ask(shop_role, sees_app, docs_role, "docs")
        # Revoking the last grant takes EXECUTE back.
        assert await revoke_tenant(owner.db, docs_role, "docs")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await ask(docs_role, sees_app, docs_role, "docs")
        # The policies keep working for granted roles (they call the functions).
        await enable_row_level_security(owner.db)
        shop = Tenant(as_role(pg_url, shop_role), schema_name)
        try:
            created = await shop.sessions.create_session(app_name="shop", user_id="u")
            assert await shop.sessions.get_session(
                app_name="shop", user_id="u", session_id=created.id
            )
        finally:
            await shop.db.close()
    finally:
        await owner.db.close()


async def test_upgrading_keeps_roles_granted_before_the_hardening(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, roles: list[str]
) -> None:
    """Migration 7 grants EXECUTE to the roles already in `tenants` (it is re-run here on a
    schema put back to version 6, the state an upgrade starts from)."""
    role = roles[0]
    owner = Tenant(pg_url, schema_name)
    await owner.db.migrate()
    await pg_admin.execute(RUNTIME_GRANTS.format(schema=f'"{schema_name}"', role=role))
    await grant_tenant(owner.db, role, "shop")
    await enable_row_level_security(owner.db)
    await owner.db.close()
    s = f'"{schema_name}"'
    await pg_admin.execute(
        f"REVOKE EXECUTE ON FUNCTION {s}.adk_postgres_tenant_sees(name, text, text),"
        f" {s}.adk_postgres_tenant_sees_app(name, text) FROM {role};"
        f" DELETE FROM {s}.adk_postgres_migrations WHERE version >= 7"
    )
    owner = Tenant(pg_url, schema_name)
    tenant = Tenant(as_role(pg_url, role), schema_name)
    try:
        await owner.db.migrate()
        created = await tenant.sessions.create_session(app_name="shop", user_id="u")
        assert created.app_name == "shop"
    finally:
        for t in (owner, tenant):
            await t.db.close()


async def test_run_leases_stay_within_a_tenant(
    pg_url: str, schema_name: str, pg_admin: asyncpg.Connection, roles: list[str]
) -> None:
    shop_role, docs_role, _ = roles
    owner = Tenant(pg_url, schema_name)
    await owner.sessions.list_sessions(app_name="x")
    for role in (shop_role, docs_role):
        await pg_admin.execute(RUNTIME_GRANTS.format(schema=f'"{schema_name}"', role=role))
    await grant_tenant(owner.db, shop_role, "shop")
    await grant_tenant(owner.db, docs_role, "docs")
    await enable_row_level_security(owner.db)
    shop = Tenant(as_role(pg_url, shop_role), schema_name)
    docs = Tenant(as_role(pg_url, docs_role), schema_name)
    try:
        session = await shop.sessions.create_session(app_name="shop", user_id="bob")
        async with shop.sessions.run_lease("shop", "bob", session.id) as lease:
            assert lease is not None
            await shop.sessions.append_event(session, _event("mine"))
            # Another tenant can neither claim (nor block) the session, nor see its run.
            async with docs.sessions.run_lease("shop", "bob", session.id) as foreign:
                assert foreign is None
            async with pg_admin.transaction():
                await pg_admin.execute(f'SET LOCAL ROLE "{docs_role}"')
                seen_by_docs = await pg_admin.fetchval(
                    f'SELECT count(*) FROM "{schema_name}".session_runs'
                )
            assert seen_by_docs == 0
            assert (
                await pg_admin.fetchval(f'SELECT count(*) FROM "{schema_name}".session_runs') == 1
            )
    finally:
        for tenant in (shop, docs, owner):
            await tenant.db.close()
