"""`PostgresArtifactService`: ADK's BaseArtifactService on PostgreSQL.

Semantics are InMemoryArtifactService's (google-adk 2.13): versions 0, 1, 2, … per
(app, user, session, filename); ``user:`` filenames are user-scoped; per-version custom
metadata, MIME type and create time; ``artifact://`` references are followed (at most
``_MAX_ARTIFACT_REFERENCE_DEPTH`` hops, scope-checked); app, user and session ids are validated
like ADK's path segments. This module holds those semantics only; the Rust store does the I/O
(one round trip for artifacts up to 1 MiB, see rust/core/src/artifacts.rs).

Payloads are stored content-addressed (SHA-256): identical bytes are stored once, in
PostgreSQL (1 MiB chunk rows, the default) or as files in ``content_dir``.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, cast

from google.adk.artifacts import artifact_util
from google.adk.artifacts.base_artifact_service import (
    ArtifactVersion,
    BaseArtifactService,
    ensure_part,
)
from google.adk.errors.input_validation_error import InputValidationError
from google.adk.platform import time as platform_time
from google.genai import types
from pydantic_core import from_json
from typing_extensions import override

from ._json import encode_state
from ._keys import check_text
from ._native import Artifacts
from ._service_base import DatabaseBacked
from .database import Database
from .errors import ConfigurationError, DataError
from .telemetry import traced

logger = logging.getLogger("adk_postgres")

_USER_PREFIX = "user:"

# How the payload of a Part is stored (artifact_versions.payload_kind).
_KIND_NONE = 0  # the Part JSON is complete (file references, Parts without data)
_KIND_INLINE = 1  # inline_data.data is the stored content
_KIND_TEXT = 2  # text is the stored content (UTF-8)


def _is_user_scoped(filename: str) -> bool:
    return filename.startswith(_USER_PREFIX)


def _check_text(name: str, value: object) -> None:
    # ADK's artifact services raise InputValidationError for bad names: so do we.
    check_text(name, value, error=InputValidationError)


def _check_filename(filename: str) -> None:
    """FileArtifactService's filename rules: no empty, rooted, drive-qualified or traversing
    names. (Names are keys here, never paths, but an artifact saved here should stay valid
    under ADK's other services and in its ``artifact://`` URI.)"""
    _check_text("filename", filename)
    bare = filename.removeprefix(_USER_PREFIX).strip()
    if not bare:
        raise InputValidationError("filename must not be empty.")
    if artifact_util._is_drive_qualified(bare) or PureWindowsPath(bare).root:
        raise InputValidationError(
            f"Rooted or drive-qualified artifact filename {filename!r} is not permitted; "
            "provide a path relative to the storage scope."
        )
    if ".." in PurePosixPath(bare).parts or ".." in PureWindowsPath(bare).parts:
        raise InputValidationError(
            f"Artifact filename {filename!r} must not contain parent traversal."
        )


def _decode_metadata(data: bytes | None) -> dict[str, Any]:
    if not data:
        return {}
    value = from_json(data)
    return value if isinstance(value, dict) else {}


def _split_payload(part: types.Part) -> tuple[int, bytes | None, types.Part]:
    """(payload kind, payload, the Part without it). Nothing is copied but the text."""
    blob = part.inline_data
    if blob is not None and blob.data is not None:
        stripped = part.model_copy(update={"inline_data": blob.model_copy(update={"data": None})})
        return _KIND_INLINE, blob.data, stripped
    if part.text is not None:
        try:
            payload = part.text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataError(f"artifact text is not valid UTF-8 ({exc.reason})") from exc
        return _KIND_TEXT, payload, part.model_copy(update={"text": None})
    return _KIND_NONE, None, part


def _join_payload(part: types.Part, kind: int, payload: bytes) -> types.Part:
    if kind == _KIND_INLINE:
        blob = part.inline_data or types.Blob()
        return part.model_copy(update={"inline_data": blob.model_copy(update={"data": payload})})
    if kind == _KIND_TEXT:
        return part.model_copy(update={"text": payload.decode("utf-8")})
    return part


class PostgresArtifactService(DatabaseBacked, BaseArtifactService):
    """ADK artifact service on PostgreSQL.

    Args:
        uri: PostgreSQL URL; ``None`` → ``$DATABASE_URL`` → the embedded PostgreSQL.
        database: share an existing :class:`Database` (its pool) instead of opening one.
        content_dir: keep payloads as files in this directory (named by their SHA-256, written
            atomically before the version row that uses them) instead of in PostgreSQL.
            Metadata and versions stay in PostgreSQL either way. Every service reading these
            artifacts needs the same directory.
        **options: :class:`Database` options (``schema``, ``pool_size``, ``connect_timeout``,
            ``acquire_timeout``, ``statement_cache``, ``application_name``).

    Construction is synchronous and cheap; the pool connects and migrates on first use.
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        database: Database | None = None,
        content_dir: str | Path | None = None,
        **options: Any,
    ) -> None:
        self._attach_database(uri, database, options)
        self._content_dir: Path | None = None
        if content_dir is not None:
            path = Path(content_dir).expanduser().resolve()
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(f"cannot create content_dir {path}: {exc}") from exc
            self._content_dir = path
        self._native: Artifacts | None = None

    @property
    def content_dir(self) -> Path | None:
        return self._content_dir

    async def _store(self) -> Artifacts:
        native = self._native
        if native is None:
            store = await self._database.store()
            content_dir = str(self._content_dir) if self._content_dir is not None else None
            native = self._native = Artifacts(store, content_dir)
        return native

    def _scope(self, app_name: str, user_id: str, filename: str, session_id: str | None) -> str:
        """The stored session key ("" for user scope), validating like InMemoryArtifactService's
        ``_artifact_path``."""
        artifact_util.validate_path_segment(app_name, "app_name")
        artifact_util.validate_path_segment(user_id, "user_id")
        _check_text("app_name", app_name)
        _check_text("user_id", user_id)
        _check_filename(filename)
        if _is_user_scoped(filename):
            return ""
        if session_id is None:
            raise InputValidationError("Session ID must be provided for session-scoped artifacts.")
        artifact_util.validate_path_segment(session_id, "session_id")
        _check_text("session_id", session_id)
        return session_id

    @staticmethod
    def _canonical_uri(app_name: str, user_id: str, scope: str, filename: str, version: int) -> str:
        # An `artifact://` URI: this service (and ADK's reference resolution) can follow it.
        return artifact_util.get_artifact_uri(
            app_name=app_name,
            user_id=user_id,
            filename=filename,
            version=version,
            session_id=scope or None,
        )

    @override
    @traced("artifacts")
    async def save_artifact(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        artifact: types.Part | dict[str, Any],
        session_id: str | None = None,
        custom_metadata: dict[str, Any] | None = None,
    ) -> int:
        _check_text("filename", filename)
        if not _is_user_scoped(filename):
            if session_id is None:
                raise InputValidationError(
                    "Session ID must be provided for session-scoped artifacts."
                )
            artifact_util._validate_session_id_for_flat_storage(session_id)
        part = ensure_part(artifact)
        scope = self._scope(app_name, user_id, filename, session_id)
        # Taken where InMemoryArtifactService takes it (before the type checks), so the two
        # agree even under an injected clock.
        create_time = platform_time.get_time()

        mime_type: str | None = None
        if part.inline_data is not None:
            mime_type = part.inline_data.mime_type
        elif part.text is not None:
            mime_type = "text/plain"
        elif (file_data := part.file_data) is not None:
            if artifact_util.is_artifact_ref(part):
                parsed_uri = artifact_util.parse_artifact_uri(cast(str, file_data.file_uri))
                if not parsed_uri:
                    raise InputValidationError(
                        f"Invalid artifact reference URI: {file_data.file_uri}"
                    )
                artifact_util.validate_artifact_reference_scope(
                    app_name=app_name,
                    user_id=user_id,
                    session_id=session_id,
                    parsed_uri=parsed_uri,
                )
                # Stored as-is; the MIME type is known only once the reference is loaded.
            else:
                mime_type = file_data.mime_type
        else:
            raise InputValidationError("Not supported artifact type.")
        if mime_type is not None:
            _check_text("mime_type", mime_type)

        kind, payload, stripped = _split_payload(part)
        part_json = stripped.model_dump_json(exclude_none=True).encode()
        metadata_json = (
            encode_state(custom_metadata, "custom_metadata") if custom_metadata else None
        )
        store = await self._store()
        return await store.save(
            (app_name, user_id, scope, filename),
            payload,
            part_json,
            kind,
            mime_type,
            metadata_json,
            create_time,
        )

    @override
    @traced("artifacts")
    async def load_artifact(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
        version: int | None = None,
    ) -> types.Part | None:
        return await self._load_artifact(
            app_name=app_name,
            user_id=user_id,
            filename=filename,
            session_id=session_id,
            version=version,
            remaining_depth=artifact_util._MAX_ARTIFACT_REFERENCE_DEPTH,
        )

    async def _load_artifact(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None,
        version: int | None,
        remaining_depth: int,
    ) -> types.Part | None:
        """Loads an artifact, following at most `remaining_depth` references."""
        scope = self._scope(app_name, user_id, filename, session_id)
        if version is not None and version < 0:
            return None
        store = await self._store()
        row = await store.load((app_name, user_id, scope, filename), version)
        if row is None:
            return None
        stored_version, part_json, kind, content, sha256, size, storage = row
        if content is None:
            if sha256 is not None and storage is not None:
                content = await store.read_content(sha256, size, storage)
            if content is None:
                logger.warning(
                    "Artifact %s version %d lost its content (deleted concurrently?)",
                    filename,
                    stored_version,
                )
                return None
        part = _join_payload(types.Part.model_validate_json(part_json), kind, content)

        if artifact_util.is_artifact_ref(part):
            file_data = part.file_data
            assert file_data is not None
            parsed_uri = artifact_util.resolve_artifact_reference(
                file_uri=cast(str, file_data.file_uri),
                app_name=app_name,
                user_id=user_id,
                session_id=session_id,
                remaining_depth=remaining_depth,
            )
            return await self._load_artifact(
                app_name=parsed_uri.app_name,
                user_id=parsed_uri.user_id,
                filename=parsed_uri.filename,
                session_id=parsed_uri.session_id,
                version=parsed_uri.version,
                remaining_depth=remaining_depth - 1,
            )

        if part == types.Part() or artifact_util._is_rewind_tombstone(part):
            return None
        return part

    @override
    @traced("artifacts")
    async def list_artifact_keys(
        self, *, app_name: str, user_id: str, session_id: str | None = None
    ) -> list[str]:
        artifact_util.validate_path_segment(app_name, "app_name")
        artifact_util.validate_path_segment(user_id, "user_id")
        _check_text("app_name", app_name)
        _check_text("user_id", user_id)
        if session_id is not None:
            artifact_util.validate_path_segment(session_id, "session_id")
            _check_text("session_id", session_id)
        store = await self._store()
        return sorted(await store.list_keys(app_name, user_id, session_id or None))

    @override
    @traced("artifacts")
    async def delete_artifact(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
    ) -> None:
        scope = self._scope(app_name, user_id, filename, session_id)
        store = await self._store()
        await store.delete((app_name, user_id, scope, filename))

    @override
    @traced("artifacts")
    async def list_versions(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
    ) -> list[int]:
        scope = self._scope(app_name, user_id, filename, session_id)
        store = await self._store()
        return [row[0] for row in await store.list_versions((app_name, user_id, scope, filename))]

    def _artifact_version(
        self,
        app_name: str,
        user_id: str,
        scope: str,
        filename: str,
        row: tuple[int, str | None, bytes | None, float],
    ) -> ArtifactVersion:
        version, mime_type, metadata_json, create_time = row
        return ArtifactVersion(
            version=version,
            canonical_uri=self._canonical_uri(app_name, user_id, scope, filename, version),
            custom_metadata=_decode_metadata(metadata_json),
            create_time=create_time,
            mime_type=mime_type,
        )

    @override
    @traced("artifacts")
    async def list_artifact_versions(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
    ) -> list[ArtifactVersion]:
        scope = self._scope(app_name, user_id, filename, session_id)
        store = await self._store()
        rows = await store.list_versions((app_name, user_id, scope, filename))
        return [self._artifact_version(app_name, user_id, scope, filename, r) for r in rows]

    @override
    @traced("artifacts")
    async def get_artifact_version(
        self,
        *,
        app_name: str,
        user_id: str,
        filename: str,
        session_id: str | None = None,
        version: int | None = None,
    ) -> ArtifactVersion | None:
        scope = self._scope(app_name, user_id, filename, session_id)
        if version is not None and version < 0:
            return None
        store = await self._store()
        row = await store.get_version((app_name, user_id, scope, filename), version)
        if row is None:
            return None
        return self._artifact_version(app_name, user_id, scope, filename, row)

    @traced("artifacts")
    async def collect_garbage(self, *, grace: float = 3600.0) -> int:
        """Remove files in ``content_dir`` that no stored version uses: files of deleted
        contents a delete could not remove (for example after a crash), and files written by
        saves that then failed, were cancelled or crashed, once they are ``grace`` seconds
        old. A save of the same bytes running meanwhile is never affected (each file is
        checked again under a lock savers hold). ``content_dir`` services only. Returns how
        many files were removed."""
        if self._content_dir is None:
            return 0
        store = await self._store()
        return await store.collect_garbage(grace)

    def __repr__(self) -> str:
        where = f", content_dir={str(self._content_dir)!r}" if self._content_dir else ""
        return f"PostgresArtifactService({self._database.describe()}{where})"
