"""Audit records: the one-line JSON written for every save, its keys, and the log as a DataFrame.

Pure: building keys, encoding and decoding lines, and shaping the log do no I/O; the
store reads and writes the objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import pandas as pd

from s3grid.errors import MasterFormatError
from s3grid.layout import audit_key, parse_audit_key, snapshot_key

__all__ = [
    "AUDIT_COLUMNS",
    "AuditRecord",
    "audit_key",
    "format_timestamp",
    "parse_audit_key",
    "records_to_frame",
    "snapshot_key",
]

# Where a save came from: the editor's Save, a Python call (api), a bulk edit, a restore,
# a new master, a repair, or triggered promotion.
SOURCES = ("editor", "api", "sql", "restore", "init", "reconcile", "automation")


def format_timestamp(when: datetime) -> str:
    """UTC ISO 8601 with microseconds and a ``Z`` (what the audit's ``timestamp`` holds)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """Inverse of :func:`format_timestamp` (accepts any ISO 8601 with an offset or ``Z``)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class AuditRecord:
    """One save, as written to its audit object (one JSON line).

    Attributes follow DESIGN.md; ``changes`` holds ``cells_changed``, ``rows_added`` and
    ``rows_deleted``; ``changeset_key`` names the save's changeset (None in records
    written before changesets existed: its key derives from the timestamp and save id).
    """

    timestamp: str
    user: str
    note: str
    prev_version: str | None
    new_version: str
    snapshot_key: str
    row_count: int
    column_count: int
    master_key: str
    save_id: str
    source: str
    prev_etag: str | None
    new_etag: str
    changes: dict[str, int] = field(default_factory=dict)
    aws_identity: str | None = None
    original_source: str | None = None
    lost_update_of: list[str] | None = None
    changeset_key: str | None = None

    def to_line(self) -> bytes:
        """The record as one newline-terminated line of UTF-8 JSON.

        ``json.dumps`` escapes newlines and control characters inside strings, so any
        note stays on one line; non-ASCII text is kept readable.
        """
        return (json.dumps(asdict(self), ensure_ascii=False, sort_keys=False) + "\n").encode()

    @classmethod
    def from_line(cls, line: bytes | str) -> AuditRecord:
        """Parse one audit line.

        Raises:
            MasterFormatError: the line is not an s3grid audit record.
        """
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MasterFormatError(f"Not an s3grid audit record: {exc}") from exc
        if not isinstance(data, dict):
            raise MasterFormatError(f"Not an s3grid audit record: a JSON {type(data).__name__}")
        problems = [
            f"{name} is {data.get(name)!r}"
            for name, kinds in _FIELD_KINDS.items()
            if not isinstance(data.get(name), kinds) or isinstance(data.get(name), bool)
        ]
        changes = data.get("changes", {})
        if not isinstance(changes, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in changes.values()
        ):
            problems.append(f"changes is {changes!r}")
        if not problems:
            try:
                parse_timestamp(data["timestamp"])
            except ValueError:
                problems.append(f"timestamp is {data['timestamp']!r}")
        if problems:
            raise MasterFormatError(f"Not an s3grid audit record: {'; '.join(problems[:3])}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


# What each field of a record must hold for the log to be built from it (bools are
# refused where numbers are expected, though Python counts them as ints).
_FIELD_KINDS: dict[str, type | tuple[type, ...]] = {
    "timestamp": str,
    "user": str,
    "note": str,
    "prev_version": (str, type(None)),
    "new_version": str,
    "snapshot_key": str,
    "row_count": int,
    "column_count": int,
    "master_key": str,
    "save_id": str,
    "source": str,
    "prev_etag": (str, type(None)),
    "new_etag": str,
    "aws_identity": (str, type(None)),
    "changeset_key": (str, type(None)),
}

AUDIT_COLUMNS = [
    "timestamp",
    "user",
    "note",
    "source",
    "prev_version",
    "new_version",
    "snapshot_key",
    "row_count",
    "column_count",
    "cells_changed",
    "rows_added",
    "rows_deleted",
    "save_id",
    "master_key",
    "prev_etag",
    "new_etag",
    "aws_identity",
    "audit_key",
    "changeset_key",
]


def records_to_frame(records: Iterable[tuple[str, AuditRecord]]) -> pd.DataFrame:
    """Shape ``(audit_key, record)`` pairs into the audit log DataFrame, oldest first."""
    rows = []
    for key, rec in records:
        row = asdict(rec)
        changes = row.pop("changes") or {}
        row.pop("original_source", None)
        row.pop("lost_update_of", None)
        row.update({k: changes.get(k) for k in ("cells_changed", "rows_added", "rows_deleted")})
        row["audit_key"] = key
        rows.append(row)
    frame = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    for col in ("row_count", "column_count", "cells_changed", "rows_added", "rows_deleted"):
        frame[col] = frame[col].astype("Int64")
    return frame.sort_values(["timestamp", "save_id"], kind="stable").reset_index(drop=True)
