"""A master's history in the bucket: the snapshot, changeset and audit record of every
save, the audit log and the history of a row or column as DataFrames, and reconcile,
which rebuilds what a crash left out.

:class:`History` writes and reads through :class:`~s3grid.s3.S3Bucket` only; keys come
from :mod:`s3grid.layout`, records from :mod:`s3grid.audit`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pandas as pd

from s3grid.audit import AuditRecord, format_timestamp, records_to_frame
from s3grid.changeset import (
    Changeset,
    changeset_frame,
    decode_changeset,
    encode_changeset,
    key_filter,
    select_changes,
)
from s3grid.commit import SaveMetadata
from s3grid.config import S3GridConfig
from s3grid.errors import (
    ConflictError,
    MasterFormatError,
    NotFoundError,
    S3GridError,
    ValidationError,
)
from s3grid.layout import (
    audit_key,
    changeset_key,
    parse_audit_key,
    snapshot_key,
    snapshot_key_pattern,
)
from s3grid.model import Repair, StraySnapshot
from s3grid.s3 import S3Bucket

__all__ = ["History"]

_T = TypeVar("_T")


PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"

# What history() says about each save, before the change's own columns.
SAVE_COLUMNS = ["timestamp", "user", "note", "source", "version", "save_id"]

# How old an unnamed snapshot must be to count as stray: a streamed save's upload of a
# large body over a slow link can take hours, and its LastModified may be its start.
STRAY_AFTER = timedelta(days=1)


class History:
    """The snapshots, changesets and audits of one master.

    Args:
        bucket: the master's bucket.
        cfg: the master's configuration (its key, prefixes).
        identity: the caller's AWS identity for audit records (looked up on first use).
        diff: the changes between two master versions (the first None: from nothing),
            to rebuild a changeset a save did not write (a crash, or a save made before
            changesets existed).
        diff_snapshots: the same between two snapshot keys, for versions that are gone
            (a lifecycle rule expires noncurrent versions; snapshots outlive them).
    """

    def __init__(
        self,
        bucket: S3Bucket,
        cfg: S3GridConfig,
        identity: Callable[[], str | None],
        diff: Callable[[str | None, str], Changeset],
        diff_snapshots: Callable[[str | None, str], Changeset],
    ) -> None:
        self.bucket = bucket
        self.cfg = cfg
        self.identity = identity
        self.diff = diff
        self.diff_snapshots = diff_snapshots
        # Changesets never change once written (or rebuilt): each is read once.
        self._changesets: dict[str, Changeset] = {}
        # Each audited version's snapshot key, read from the audit log when a reconcile
        # first needs it.
        self._snapshot_of: dict[str, str] | None = None

    def write_snapshot(self, version_id: str, snap_key: str) -> None:
        """Copy exactly ``version_id`` of the master to ``snap_key`` (once: a key taken
        by this same copy is done)."""
        try:
            self.bucket.copy(self.cfg.master_key, version_id, snap_key, IfNoneMatch="*")
        except ConflictError:
            # The key names the save: taken means an earlier attempt whose answer was
            # lost (or a reconcile) copied this same version there.
            if self.bucket.head(snap_key) is None:
                raise

    def write_changeset(self, key: str, changeset: Changeset) -> None:
        """Write a save's changeset to ``key``, once (a key taken is this save's)."""
        try:
            body = encode_changeset(changeset)
            self.bucket.put(key, body, IfNoneMatch="*", ContentType=PARQUET_CONTENT_TYPE)
        except ConflictError:
            if self.bucket.head(key) is None:
                raise
        self._changesets[key] = changeset

    def read_changeset(self, key: str) -> Changeset:
        """The changeset at ``key``.

        Raises:
            NotFoundError: there is none.
            MasterFormatError: the object is not a changeset.
        """
        if key not in self._changesets:
            body, _ = self.bucket.get(key)
            self._changesets[key] = decode_changeset(body, where=self.bucket.url(key))
        return self._changesets[key]

    def write_audit(self, akey: str, record: AuditRecord) -> None:
        """Write ``record`` to ``akey``, never over another."""
        self.bucket.put(akey, record.to_line(), IfNoneMatch="*", ContentType="application/x-ndjson")

    def audit_record(
        self,
        meta: SaveMetadata,
        version_id: str,
        etag: str,
        snap_key: str,
        *,
        reconciled: bool = False,
    ) -> AuditRecord:
        note = meta.note + (" [note truncated in version metadata]" if meta.note_truncated else "")
        return AuditRecord(
            timestamp=format_timestamp(meta.saved_at),
            user=meta.user,
            note=note,
            prev_version=meta.base_version,
            new_version=version_id,
            snapshot_key=snap_key,
            row_count=meta.row_count,
            column_count=meta.column_count,
            master_key=self.cfg.master_key,
            save_id=meta.save_id,
            source="reconcile" if reconciled else meta.source,
            prev_etag=meta.base_etag,
            new_etag=etag,
            changes=meta.changes.as_dict(),
            aws_identity=self.identity(),
            original_source=meta.source if reconciled else None,
            changeset_key=changeset_key(self.cfg, meta.saved_at, meta.save_id),
        )

    def audit_log(
        self, since: datetime | str | None = None, until: datetime | str | None = None
    ) -> pd.DataFrame:
        """The audit log of this master as a DataFrame, one row per save, oldest first.

        Args:
            since: only saves at or after this time (UTC if naive).
            until: only saves at or before this time (UTC if naive).

        Objects under the audit prefix that are not s3grid audits of this master (for
        example ``audit/glue/...``) are ignored.
        """
        lo = _utc(since)
        hi = _utc(until)
        keys = []
        for obj in self.bucket.list_objects(f"{self.cfg.audit_prefix}/"):
            parsed = parse_audit_key(self.cfg, obj["Key"])
            if parsed is None:
                continue
            day = parsed[0]
            if (lo and day < f"{lo:%Y-%m-%d}") or (hi and day > f"{hi:%Y-%m-%d}"):
                continue
            keys.append(obj["Key"])
        records = [
            (k, r)
            for k, r in zip(keys, _map(self.read_audit, keys), strict=True)
            if r is not None and r.master_key == self.cfg.master_key
        ]
        frame = records_to_frame(records)
        if lo is not None:
            frame = frame[frame["timestamp"] >= pd.Timestamp(lo)]
        if hi is not None:
            frame = frame[frame["timestamp"] <= pd.Timestamp(hi)]
        return frame.reset_index(drop=True)

    def history(self, key: Any = None, column: str | None = None) -> pd.DataFrame:
        """Every change to one row (``key``), one column, or one cell (both), oldest first.

        One row per change: the save's ``timestamp``, ``user``, ``note``, ``source``,
        ``version`` and ``save_id``, then the ``change`` (``cell``, ``added``,
        ``deleted``, or a column added, dropped or retyped), the row's key columns, the
        ``column``, and the ``old`` and ``new`` values as text. A row's addition and
        deletion appear in the history of each of its cells.

        Read from the changesets (small objects, read in parallel and kept); a save
        without one (made before changesets existed, or cut short before writing it) is
        diffed against its base version once (or their snapshots, when a lifecycle rule
        expired those versions), and `reconcile` stores the result. Saves
        that ``prune`` archived are not listed.

        Raises:
            ValidationError: neither ``key`` nor ``column`` given, or a key that does
                not fit the master's key columns.
        """
        if key is None and column is None:
            raise ValidationError(
                "Give a key (a row), a column, or both (a cell): history(key=..., "
                "column=...). For every save at once, see audit_log()."
            )
        if column is not None and not isinstance(column, str):
            raise ValidationError(f"column must be a column name, not {column!r}.")
        log = self.audit_log()
        saves = list(log.itertuples(index=False))
        # Stored changesets are small: read in parallel. A missing one means reading
        # two whole versions: one at a time, so memory holds two versions, not sixteen.
        found = _map(self._stored_changeset, saves)
        snapshots = {str(save.new_version): str(save.snapshot_key) for save in saves}
        found = [
            cs if cs is not None else self._rebuilt(save, snapshots)
            for save, cs in zip(saves, found, strict=True)
        ]
        wanted = None
        if key is not None:
            newest = next((cs for cs in reversed(found) if cs is not None), None)
            wanted = key_filter(key, newest.key_columns if newest else ())
        frames = []
        for save, changeset in zip(saves, found, strict=True):
            if changeset is None:
                continue
            rows = select_changes(changeset, key=wanted, column=column)
            if not rows.num_rows:
                continue
            frame = changeset_frame(rows)
            about: dict[str, Any] = {
                "timestamp": save.timestamp,
                "user": save.user,
                "note": save.note,
                "source": save.source,
                "version": save.new_version,
                "save_id": save.save_id,
            }
            for i, (name, value) in enumerate(about.items()):
                frame.insert(i, name, value)
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=[*SAVE_COLUMNS, "change", "column", "old", "new"])
        return pd.concat(frames, ignore_index=True)

    def _key_of(self, save: Any) -> str:
        """The changeset key of one audited save (derived for audits that name none)."""
        key = save.changeset_key
        if isinstance(key, str) and key:
            return key
        return changeset_key(self.cfg, save.timestamp.to_pydatetime(), str(save.save_id))

    def _stored_changeset(self, save: Any) -> Changeset | None:
        """One audited save's changeset as stored (or kept); None when there is none."""
        try:
            return self.read_changeset(self._key_of(save))
        except NotFoundError:
            return None

    def _rebuilt(self, save: Any, snapshots: dict[str, str]) -> Changeset | None:
        """The changeset of a save that has none stored, diffed from its versions or
        their snapshots (and kept); None, with a warning, when they cannot be compared."""
        key = self._key_of(save)
        if key in self._changesets:
            return self._changesets[key]
        base = save.prev_version if isinstance(save.prev_version, str) else None
        try:
            self._changesets[key] = self._changes(base, str(save.new_version), lambda: snapshots)
        except S3GridError as exc:
            warnings.warn(
                f"The history leaves out save {save.save_id} ({save.timestamp}): it has no "
                f"changeset and its versions cannot be compared ({exc}).",
                RuntimeWarning,
                stacklevel=4,
            )
            return None
        return self._changesets[key]

    def read_audit(self, key: str) -> AuditRecord | None:
        """The record in one audit object; None, with a warning, for anything else.

        One malformed or foreign object under the audit prefix must not break the log
        (and prune, which reads it) for every user of the bucket.
        """
        body, _ = self.bucket.get(key)
        lines = body.decode("utf-8", errors="replace").splitlines()
        try:
            if not lines:
                raise MasterFormatError("the object is empty")
            return AuditRecord.from_line(lines[-1])
        except MasterFormatError as exc:
            warnings.warn(
                f"Skipped {self.bucket.url(key)}: {exc}. It is not an s3grid audit record; "
                "move it out of the audit prefix.",
                RuntimeWarning,
                stacklevel=2,
            )
            return None

    def reconcile(self) -> list[Repair]:
        """Give every s3grid-made master version its missing snapshot, changeset and/or
        audit.

        Repairs a crash between the commit and the audit, and gives saves made before
        changesets existed theirs (diffed from the version and its base). Keys derive
        only from each version's own metadata, so running it again changes nothing.

        Raises:
            VersioningError: the bucket does not keep versions.
        """
        self.bucket.require_versioning(fresh=True)
        snapshots = {o["Key"] for o in self.bucket.list_objects(f"{self.cfg.snapshot_prefix}/")}
        self._snapshot_of = None  # the audits may have changed since the last reconcile
        audits = {o["Key"] for o in self.bucket.list_objects(f"{self.cfg.audit_prefix}/")}
        described = {o["Key"] for o in self.bucket.list_objects(f"{self.cfg.changes_prefix}/")}
        heads = self._version_heads()
        repairs = []
        for head in heads:
            meta = SaveMetadata.from_s3(head.get("Metadata", {})) if head else None
            if head is None or meta is None:
                continue  # not written by s3grid: nothing to repair
            version_id = head.get("VersionId") or "null"
            snap_key = snapshot_key(self.cfg, meta.saved_at, meta.save_id)
            akey = audit_key(self.cfg, meta.saved_at, meta.save_id)
            ckey = changeset_key(self.cfg, meta.saved_at, meta.save_id)
            wrote_snapshot = snap_key not in snapshots
            wrote_audit = akey not in audits
            wrote_changeset = ckey not in described and self._rebuild(meta, version_id, ckey)
            if wrote_snapshot:
                wrote_snapshot = _repair_write(
                    lambda: self.write_snapshot(version_id, snap_key)  # noqa: B023
                )
            if wrote_audit:
                record = self.audit_record(
                    meta, version_id, head["ETag"], snap_key, reconciled=True
                )
                wrote_audit = _repair_write(
                    lambda: self.write_audit(akey, record)  # noqa: B023
                )
            if wrote_snapshot or wrote_audit or wrote_changeset:
                repairs.append(
                    Repair(
                        version_id,
                        meta.save_id,
                        snap_key,
                        akey,
                        wrote_snapshot,
                        wrote_audit,
                        changeset_key=ckey,
                        wrote_changeset=wrote_changeset,
                    )
                )
        return repairs

    def _version_heads(self) -> list[dict[str, Any] | None]:
        """A HEAD of every version of the master, oldest first (None: gone meanwhile)."""
        versions = list(reversed(list(self.bucket.list_versions(self.cfg.master_key))))
        return _map(
            lambda vid: self.bucket.head(self.cfg.master_key, vid),
            [v["VersionId"] for v in versions],
        )

    def stray_snapshots(self, older_than: timedelta | None = None) -> list[StraySnapshot]:
        """Snapshots of this master that no master version and no audit record names,
        written over ``older_than`` ago, oldest first.

        A streamed save (``commit="copy"``) uploads its snapshot before the copy that
        commits it; a kernel killed in between leaves that upload, with edits that were
        never saved, where nothing reads it. A refused commit deletes its own. The
        default ``older_than``, :data:`STRAY_AFTER`, leaves alone any save still in
        flight (an upload's LastModified can be when it began). Reports only: nothing
        is deleted.
        """
        cutoff = datetime.now(UTC) - (STRAY_AFTER if older_than is None else older_than)
        pattern = snapshot_key_pattern(self.cfg)
        candidates: list[StraySnapshot] = []
        for obj in self.bucket.list_objects(f"{self.cfg.snapshot_prefix}/"):
            match = pattern.match(obj["Key"])
            written = _utc(obj.get("LastModified"))
            if match and written is not None and written <= cutoff:
                size = int(obj.get("Size") or 0)
                candidates.append(StraySnapshot(obj["Key"], match["save_id"], size, written))
        audits = self.bucket.list_objects(f"{self.cfg.audit_prefix}/")
        named = {p[1] for o in audits if (p := parse_audit_key(self.cfg, o["Key"]))}
        if all(c.save_id in named for c in candidates):
            return []  # no version HEADs needed: every one has its audit
        for head in self._version_heads():
            meta = SaveMetadata.from_s3(head.get("Metadata", {})) if head else None
            if meta is not None:
                named.add(meta.save_id)
        strays = [c for c in candidates if c.save_id not in named]
        return sorted(strays, key=lambda s: (s.last_modified, s.key))

    def _rebuild(self, meta: SaveMetadata, version_id: str, key: str) -> bool:
        """Diff one version against its base (or their snapshots) and write that
        changeset; False, with a warning, when neither is left (its history then starts
        at this save)."""
        try:
            changeset = self._changes(meta.base_version, version_id, self._audited_snapshots)
        except S3GridError as exc:
            warnings.warn(
                f"No changeset for save {meta.save_id} (version {version_id}): its versions "
                f"cannot be compared ({exc}).",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        return _repair_write(lambda: self.write_changeset(key, changeset))

    def _changes(
        self, base: str | None, version: str, snapshots: Callable[[], dict[str, str]]
    ) -> Changeset:
        """What one save changed: diffed from the master's versions, or, when a version
        is gone, from the snapshots of the saves that wrote them (``snapshots``: the
        snapshot key of each audited version)."""
        try:
            return self.diff(base, version)
        except NotFoundError:
            snap = snapshots()
            new_key = snap.get(version)
            old_key = snap.get(base) if base else None
            if new_key is None or (base and old_key is None):
                raise
            return self.diff_snapshots(old_key, new_key)

    def _audited_snapshots(self) -> dict[str, str]:
        """The snapshot key of every audited version (read once per reconcile)."""
        if self._snapshot_of is None:
            log = self.audit_log()
            self._snapshot_of = dict(zip(log["new_version"], log["snapshot_key"], strict=True))
        return self._snapshot_of


def _map(fn: Callable[[_T], Any], items: Sequence[_T]) -> list[Any]:
    # boto3 clients are thread-safe; audits are tiny, so latency dominates.
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(fn, items))


def _repair_write(write: Callable[[], None]) -> bool:
    try:
        write()
    except ConflictError:
        return False  # IfNoneMatch: someone else (another reconcile) wrote it first
    return True


def _utc(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"{value!r} is not a date or time; use ISO 8601 such as 2024-05-01 or "
            "2024-05-01T13:45:00Z."
        ) from exc
    if pd.isna(stamp):
        raise ValidationError(f"{value!r} is not a date or time; use ISO 8601 (2024-05-01).")
    when = stamp.to_pydatetime()
    return when if when.tzinfo else when.replace(tzinfo=UTC)
