"""The values s3grid hands back: a loaded master, a save's result, a version, a repair.

Frozen dataclasses, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import pyarrow as pa

from s3grid.commit import SaveMetadata
from s3grid.schema import to_pandas

__all__ = ["Master", "Repair", "SaveResult", "StraySnapshot", "VersionInfo"]


@dataclass(frozen=True)
class Master:
    """One version of the master, as loaded: the table and the lock that goes with it.

    Attributes:
        table: the content, in the master's exact Arrow schema.
        version_id: the S3 VersionId of this version.
        etag: the ETag from the same GetObject response (the lock for the next save).
        key: the master's object key.
        last_modified: when S3 stored this version.
        save: the s3grid save that wrote this version, if it was written by s3grid.
    """

    table: pa.Table
    version_id: str | None
    etag: str
    key: str
    last_modified: datetime | None = None
    save: SaveMetadata | None = None

    def to_pandas(self) -> pd.DataFrame:
        """The table as a DataFrame with nullable int/bool dtypes (no int -> float)."""
        return to_pandas(self.table)

    @property
    def schema(self) -> pa.Schema:
        """The master's Arrow schema: what every save writes back."""
        return self.table.schema


@dataclass(frozen=True)
class SaveResult:
    """What a save committed, and where its snapshot and audit are."""

    prev_version: str | None
    new_version: str
    new_etag: str
    snapshot_key: str
    audit_key: str
    save_id: str
    timestamp: str
    row_count: int
    column_count: int
    cells_changed: int
    rows_added: int
    rows_deleted: int
    incomplete: str | None = None
    """Set when the master was committed but its snapshot or audit could not be written
    (run :meth:`MasterStore.reconcile` to repair)."""


@dataclass(frozen=True)
class VersionInfo:
    """One version of the master object, as S3 lists it."""

    version_id: str
    etag: str
    last_modified: datetime
    size: int
    is_latest: bool


@dataclass(frozen=True)
class StraySnapshot:
    """A snapshot that no master version and no audit record names (see
    :meth:`MasterStore.stray_snapshots`)."""

    key: str
    save_id: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class Repair:
    """What :meth:`MasterStore.reconcile` wrote for one committed version."""

    version_id: str
    save_id: str
    snapshot_key: str
    audit_key: str
    wrote_snapshot: bool
    wrote_audit: bool
    changeset_key: str | None = None
    wrote_changeset: bool = False
