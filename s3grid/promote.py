"""Promote staged query output (part files) into the master: the one promotion path.

Every promotion carries its base. A run s3grid starts writes a small manifest next to
its output (the master version and ETag the query read, the query id, the columns), and
the output is saved over exactly that version: if the master moved on, it is a conflict,
never an overwrite. Output s3grid did not start has no manifest; it is promoted only if
the master has not changed since the earliest staged object was written (the audit note
says the base was inferred), or over a base the caller names. A result is promoted once,
and only whole: the run's query must have SUCCEEDED when its id is known, and staging is
emptied after the save.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3grid.audit import format_timestamp, parse_timestamp
from s3grid.errors import (
    AthenaQueryError,
    ConflictError,
    MasterFormatError,
    NotFoundError,
    ValidationError,
)
from s3grid.flatten import FlattenResult, empty_prefix, flatten_to_table
from s3grid.layout import is_run_prefix, new_run_id
from s3grid.model import Master, SaveResult
from s3grid.store import MasterStore

__all__ = [
    "MANIFEST_NAME",
    "PromoteResult",
    "RunManifest",
    "athena_execution",
    "athena_query_state",
    "promote",
    "read_manifest",
    "write_manifest",
]

# Starts with "_": flatten skips it as it skips Athena's own markers.
MANIFEST_NAME = "_s3grid_manifest.json"


@dataclass(frozen=True)
class RunManifest:
    """What a query s3grid started read, written beside its output."""

    master_key: str
    base_version: str
    base_etag: str
    columns: tuple[str, ...]
    query_id: str | None = None
    run_id: str = field(default_factory=new_run_id)
    started_at: str = field(default_factory=lambda: format_timestamp(datetime.now(UTC)))

    @classmethod
    def for_base(cls, base: Master, *, query_id: str | None = None) -> RunManifest:
        """The manifest of a run over the loaded version ``base``."""
        if base.version_id is None:
            raise ValidationError("The master has no VersionId: is versioning on?")
        return cls(
            master_key=base.key,
            base_version=base.version_id,
            base_etag=base.etag,
            columns=tuple(base.schema.names),
            query_id=query_id,
        )

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, body: bytes, *, where: str) -> RunManifest:
        """Raises: MasterFormatError: not an s3grid run manifest."""
        try:
            data = json.loads(body)
            return cls(**{**data, "columns": tuple(data["columns"])})
        except (ValueError, TypeError, KeyError) as exc:
            raise MasterFormatError(
                f"{where} is not an s3grid run manifest ({exc}). Remove it: the output is "
                "then promoted as one s3grid did not start (--base-version names its base)."
            ) from exc


@dataclass(frozen=True)
class PromoteResult:
    """A promotion: the save, what was read, and how its base was found."""

    save: SaveResult
    flatten: FlattenResult
    base_inferred: bool
    query_id: str | None
    staging_objects_removed: int


def write_manifest(store: MasterStore, prefix: str, manifest: RunManifest) -> str:
    """Write ``manifest`` into the run's staging ``prefix``; returns its key."""
    key = posixpath.join(prefix, MANIFEST_NAME)
    store.bucket.put(key, manifest.to_json(), ContentType="application/json")
    return key


def read_manifest(store: MasterStore, prefix: str) -> RunManifest | None:
    """The manifest in ``prefix``, or None when the output was not started by s3grid."""
    key = posixpath.join(prefix, MANIFEST_NAME)
    try:
        body, _ = store.bucket.get(key)
    except NotFoundError:
        return None
    return RunManifest.from_json(bytes(body), where=store.bucket.url(key))


def promote(
    store: MasterStore,
    prefix: str,
    *,
    note: str,
    source: str = "sql",
    base_version: str | None = None,
    query_state: Callable[[str], str] | None = None,
    progress: bool = False,
) -> PromoteResult:
    """Flatten the output under ``prefix`` and save it over the version it was computed from.

    Args:
        store: the master.
        prefix: the run's staging folder (ends with ``/``).
        note: the audit note (the base's origin is added when it was inferred).
        source: the audit source (``sql``, ``automation``).
        base_version: promote over this master version (for output without a manifest
            whose base cannot be inferred); a manifest's base wins otherwise.
        query_state: looks up an Athena query's state by id; with a manifest that names
            its query, anything but ``SUCCEEDED`` is refused.
        progress: show a progress bar while reading the parts.

    Raises:
        ConflictError: the master moved on since the output's base; nothing written.
        ValidationError: no output, a failed or partial run, or a manifest of another master.
    """
    manifest = read_manifest(store, prefix)
    query_id = manifest.query_id if manifest else None
    if manifest is not None:
        if manifest.master_key != store.cfg.master_key:
            raise ValidationError(
                f"The output under {store.bucket.url(prefix)} was computed from "
                f"{manifest.master_key}, not {store.cfg.master_key}; promote it there."
            )
        if query_id and query_state is not None:
            state = query_state(query_id)
            if state != "SUCCEEDED":
                raise ValidationError(
                    f"Athena query {query_id} is {state}, not SUCCEEDED: its output under "
                    f"{store.bucket.url(prefix)} may be partial. Nothing was promoted; run the "
                    "query again."
                )
        base = store.read_version(manifest.base_version)
        inferred = False
    elif is_run_prefix(store.cfg, prefix):
        raise ValidationError(
            f"{store.bucket.url(prefix)} is the folder of an Athena run s3grid started, but "
            "holds no run manifest: the run did not finish (its query failed, was "
            "cancelled, or the notebook stopped), so its output may be partial. Nothing was "
            "promoted; run the edit again."
        )
    elif base_version:
        base = store.read_version(base_version)
        inferred = False
    else:
        base = _inferred_base(store, prefix)
        inferred = True
    table, info = flatten_to_table(store.bucket, prefix, schema=base.schema, progress=progress)
    if inferred:
        note += " (base inferred: the master had not changed since the output was written)"
    res = store.save(table, base=base, note=note, source=source)
    removed = empty_prefix(store.bucket, prefix)  # only now: the master holds the data
    return PromoteResult(res, info, inferred, query_id, removed)


def _inferred_base(store: MasterStore, prefix: str) -> Master:
    """The current master, if it is older than every staged object; else a conflict."""
    staged = [o for o in store.bucket.list_objects(prefix) if not o["Key"].endswith("/")]
    if not staged:
        raise ValidationError(
            f"No part files under {store.bucket.url(prefix)}: nothing to promote (a result "
            "is promoted once; did the query write its output there?)."
        )
    earliest = min(_utc(o["LastModified"]) for o in staged)
    current = store.load()
    saved = _utc(current.last_modified) if current.last_modified else None
    if saved is not None and saved > earliest:
        who = ""
        if current.save is not None:
            who = f" by {current.save.user} at {format_timestamp(current.save.saved_at)}"
            who += f" ({current.save.note!r})" if current.save.note else ""
        raise ConflictError(
            f"{store.cfg.uri} was saved{who} as version {current.version_id} after this "
            f"output was written ({format_timestamp(earliest)}); promoting it would overwrite "
            "that save. Re-run the query, or promote over the version it read with "
            "--base-version (promote(..., base_version=...)).",
            key=store.cfg.uri,
            current_version=current.version_id,
            current_etag=current.etag,
            saved_by=current.save.user if current.save else None,
            saved_at=format_timestamp(current.save.saved_at) if current.save else None,
        )
    return current


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_timestamp(str(value))


def athena_execution(cfg: Any) -> Callable[[str], dict[str, Any]]:
    """Looks up an Athena query (``GetQueryExecution``: its state, SQL and work group), on
    the endpoint ``ATHENA_ENDPOINT_URL`` names when set (tests use a local one)."""
    clients: list[Any] = []

    def execution(query_id: str) -> dict[str, Any]:
        import boto3

        try:
            if not clients:
                session = boto3.session.Session(profile_name=cfg.profile, region_name=cfg.region)
                endpoint = os.environ.get("ATHENA_ENDPOINT_URL") or None
                clients.append(session.client("athena", endpoint_url=endpoint))
            found = clients[0].get_query_execution(QueryExecutionId=query_id)
        except (BotoCoreError, ClientError) as exc:  # cannot look: cannot trust it whole
            raise AthenaQueryError(
                f"Could not look up Athena query {query_id} ({exc}); nothing was promoted.",
                query_id=query_id,
                reason=str(exc),
            ) from exc
        return dict(found["QueryExecution"])

    return execution


def athena_query_state(cfg: Any) -> Callable[[str], str]:
    """A ``query_state`` for :func:`promote` that asks Athena (see :func:`athena_execution`)."""
    execution = athena_execution(cfg)
    return lambda query_id: str(execution(query_id)["Status"]["State"])
