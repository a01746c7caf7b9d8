"""MasterStore, the facade users call: load, the locked save, snapshot, audit, restore,
versions, reconcile, and the operations built on them.

Every S3 request goes through :meth:`s3grid.s3.S3Bucket.call`, which retries transient
failures and translates botocore errors into :mod:`s3grid.errors`. The compare-and-swap
on the master (``put_object`` with ``IfMatch``/``IfNoneMatch``) appears once, in
:meth:`MasterStore._commit`; the expectation it enforces is the pure
:class:`~s3grid.commit.ExpectEtag`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pandas as pd
import pyarrow as pa
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from s3grid import audit as audit_mod
from s3grid.audit import AuditRecord, format_timestamp
from s3grid.changeset import Changeset, build_changeset, changeset_frame
from s3grid.commit import (
    TYPES_METADATA_BYTES,
    ExpectEtag,
    SaveMetadata,
    SaveNotFoundError,
    check_note,
    check_unchanged,
    commit,
    commit_copy,
    commit_stream,
    confirm_commit,
    current_user,
    new_save_id,
    unreachable,
)
from s3grid.config import S3GridConfig
from s3grid.diff import default_key_columns, keep_nans, keys_unique
from s3grid.errors import (
    ConfigError,
    LostUpdateError,
    MasterNotFoundError,
    NotFoundError,
    S3GridError,
    StoreUnavailableError,
    ValidationError,
)
from s3grid.formats import (
    content_type,
    csv_types_text,
    decode_table,
    encode_table,
    parse_csv_types,
    write_table,
)
from s3grid.history import History
from s3grid.layout import audit_key, changeset_key, snapshot_key
from s3grid.model import Master, Repair, SaveResult, StraySnapshot, VersionInfo
from s3grid.s3 import MAX_SINGLE_PUT, PartStream, S3Bucket, SeekableReader
from s3grid.schema import check_loadable, coerce_table

if TYPE_CHECKING:
    from s3grid.bulk import BulkPreview
    from s3grid.promote import PromoteResult
    from s3grid.prune import PrunePlan
    from s3grid.storecheck import StoreReport

__all__ = [
    "ExpectEtag",
    "Master",
    "MasterStore",
    "Repair",
    "S3Bucket",
    "SaveMetadata",
    "SaveResult",
    "SeekableReader",
    "VersionInfo",
    "check_note",
    "new_save_id",
]

log = logging.getLogger(__name__)


class MasterStore:
    """The master table in S3, with locked saves, snapshots, audits and repairs.

    Args:
        cfg: where the master lives.
        key_columns: columns that identify a row and must stay unique; default
            ``cfg.key_columns``, else ``("tow", "net")`` when both exist, else none.
        client: a boto3 S3 client to use instead of building one from ``cfg``.

    Attributes:
        look_first: a save first checks (one HEAD) that the master is still its base,
            so a stale save is refused before any work on its table. The
            conditional PUT decides either way; turned off, only the PUT (and, on a
            store that ignores its condition, the lost-update check) stands between a
            stale save and the master: tests use that to open the race window.
    """

    look_first: bool = True

    def __init__(
        self,
        cfg: S3GridConfig,
        *,
        key_columns: Sequence[str] | None = None,
        client: Any = None,
    ) -> None:
        self.cfg = cfg
        self.bucket = S3Bucket(cfg, client)
        self._key_columns = tuple(key_columns) if key_columns is not None else cfg.key_columns
        self._identity: str | bool | None = False  # False: not looked up yet
        self._history = History(
            self.bucket,
            cfg,
            self.aws_identity,
            self.changes_between,
            self._changes_between_snapshots,
        )

    @classmethod
    def from_env(cls, **overrides: Any) -> MasterStore:
        """A store configured by :meth:`S3GridConfig.from_env`."""
        return cls(S3GridConfig.from_env(**overrides))

    def __repr__(self) -> str:
        return f"MasterStore({self.cfg.uri!r})"

    def with_config(self, cfg: S3GridConfig) -> MasterStore:
        """A store on another master (``cfg``) with the same key-column setting."""
        return MasterStore(cfg, key_columns=self._key_columns)

    # ------------------------------------------------------------------ reading

    def key_columns_for(self, schema: pa.Schema) -> tuple[str, ...]:
        """The key columns that apply to a table with ``schema``."""
        if self._key_columns is not None:
            missing = [k for k in self._key_columns if k not in schema.names]
            if missing:
                raise ConfigError(
                    f"Key column(s) {missing} are not in the master's columns {schema.names}."
                )
            return self._key_columns
        return default_key_columns(schema.names)

    def load(self) -> Master:
        """Read the current master with one GetObject, keeping its ETag and VersionId.

        Raises:
            MasterNotFoundError: the bucket or the master does not exist.
            MasterFormatError: the object is not valid Parquet/CSV.
            StoreUnavailableError: S3 could not be reached.
            AccessDeniedError: the credentials may not read the master.
        """
        return self._read(None)

    def read_version(self, version_id: str) -> Master:
        """Read one earlier version of the master by its S3 VersionId.

        Raises:
            MasterNotFoundError: no such version.
        """
        return self._read(version_id)

    def _read(self, version_id: str | None) -> Master:
        key = self.cfg.master_key
        try:
            body, resp = self.bucket.get(key, version_id)
        except NotFoundError as exc:
            what = f"version {version_id} of " if version_id else ""
            raise MasterNotFoundError(
                f"No {what}master at {self.bucket.url(key)} ({exc}). Check S3_BUCKET and "
                "S3_MASTER_KEY, or create it with `s3grid init FILE`."
            ) from exc
        table, save = self._decode(body, resp, where=self.bucket.url(key, version_id))
        check_loadable(table.schema, where=self.bucket.url(key, version_id))
        problem = self.bucket.versioning_problem()
        if problem is not None:  # reading is safe; say now what a save would refuse
            warnings.warn(f"{problem} Saves are refused until then.", RuntimeWarning, stacklevel=3)
        return Master(
            table=table,
            version_id=resp.get("VersionId"),
            etag=resp["ETag"],
            key=key,
            last_modified=resp.get("LastModified"),
            save=save,
        )

    def _decode(
        self, body: bytes | bytearray, resp: dict[str, Any], *, where: str
    ) -> tuple[pa.Table, SaveMetadata | None]:
        """A master version's (or snapshot's) table, read with the types its save
        declared (a CSV master's), and that save's metadata."""
        save = SaveMetadata.from_s3(resp.get("Metadata", {}))
        types = parse_csv_types(save.column_types) if save else None
        return decode_table(body, self.cfg.file_format, where=where, csv_types=types), save

    def read_snapshot(self, snapshot_key: str) -> pa.Table:
        """The table a snapshot (or an archived snapshot) holds, read with the types
        its save declared.

        Raises:
            NotFoundError: no object at ``snapshot_key``.
            MasterFormatError: the object is not a table in the master's format.
        """
        try:
            body, resp = self.bucket.get(snapshot_key)
        except NotFoundError as exc:
            raise NotFoundError(
                f"No snapshot at {self.bucket.url(snapshot_key)}; list them with `s3grid audit`."
            ) from exc
        return self._decode(body, resp, where=self.bucket.url(snapshot_key))[0]

    def changes_between(self, old_version: str | None, new_version: str) -> Changeset:
        """What changed from one master version to another (``old_version`` None: from
        nothing, every row added), diffed by key like a save's changeset.

        Raises:
            MasterNotFoundError: either version does not exist.
        """
        new = self.read_version(new_version).table
        old = self.read_version(old_version).table if old_version else None
        return build_changeset(old, new, self.key_columns_for(new.schema))

    def _changes_between_snapshots(self, old_key: str | None, new_key: str) -> Changeset:
        """:meth:`changes_between`, from two snapshots (for versions a lifecycle rule
        expired: the snapshots outlive them)."""
        new = self.read_snapshot(new_key)
        old = self.read_snapshot(old_key) if old_key else None
        return build_changeset(old, new, self.key_columns_for(new.schema))

    def versions(self) -> list[VersionInfo]:
        """Every version of the master, newest first."""
        return [
            VersionInfo(
                version_id=v["VersionId"],
                etag=v["ETag"],
                last_modified=v["LastModified"],
                size=int(v.get("Size", 0)),
                is_latest=bool(v.get("IsLatest")),
            )
            for v in self.bucket.list_versions(self.cfg.master_key)
        ]

    # ------------------------------------------------------------------ writing

    def validate(self, table: pa.Table) -> None:
        """Check a coerced table before any write: not empty, key unique and present.

        Raises:
            ValidationError: empty table, empty key cells or duplicate keys (listed with
                their row numbers).
        """
        if table.num_rows == 0:
            raise ValidationError(
                "Refusing to save an empty table (0 rows): that would wipe the master. "
                "If you really mean it, restore or re-create the master explicitly."
            )
        keys = list(self.key_columns_for(table.schema))
        if not keys:
            return
        sub = table.select(keys)
        if not any(sub.column(k).null_count for k in keys) and keys_unique(sub):
            return
        frame = sub.to_pandas()  # something is wrong: find the rows to name
        null_rows = frame.isna().any(axis=1).to_numpy()
        if null_rows.any():
            rows = [int(i) for i in null_rows.nonzero()[0][:10]]
            raise ValidationError(
                f"Key column(s) {keys} must not be empty; empty at row(s) {rows}. "
                "Fill them in before saving."
            )
        dup_mask = frame.duplicated(keep=False).to_numpy()
        if dup_mask.any():
            dups = frame[dup_mask]
            groups = dups.groupby(keys, sort=True).groups
            listed = [
                (k if isinstance(k, tuple) else (k,), [int(i) for i in idx])
                for k, idx in list(groups.items())[:20]
            ]
            text = "; ".join(
                f"{dict(zip(keys, k, strict=True))} at rows {rows}" for k, rows in listed
            )
            more = f" (and {len(groups) - 20} more)" if len(groups) > 20 else ""
            raise ValidationError(
                f"Duplicate key values in {keys}: {text}{more}. Each row needs a unique "
                "key; fix or delete the duplicates, then save again.",
                duplicates=[k for k, _ in listed],
            )

    def save(
        self,
        data: pd.DataFrame | pa.Table,
        *,
        base: Master,
        note: str,
        source: str = "api",
        allow_schema_change: bool = False,
    ) -> SaveResult:
        """Save new content over ``base`` with the locked pipeline.

        Validates, commits with ``IfMatch=base.etag`` (the only step that decides
        success), copies exactly the new version to a snapshot, writes the changeset
        (every changed cell, added and deleted row), then the audit.

        Args:
            data: the new master content.
            base: the version the edits started from (from :meth:`load`).
            note: a note for the audit (any Unicode, newlines allowed).
            source: where the save comes from, for the audit: ``api`` (a Python call, the
                default), ``editor``, ``sql``, ``restore``, ``automation``...
            allow_schema_change: accept a change of columns on purpose.

        Raises:
            SchemaError: a column or value does not fit the master's schema.
            ValidationError: duplicate or empty keys, an empty table, or a bad note.
            ConflictError: the master changed since ``base`` was loaded; nothing written.
            StoreUnavailableError: S3 could not be reached; nothing written unless the
                error says the outcome is unknown.
        """
        check_note(note)
        if source not in audit_mod.SOURCES:
            raise ValidationError(f"Unknown source {source!r}; use one of {audit_mod.SOURCES}.")
        expect = ExpectEtag(base.etag, base.version_id)
        self._refuse_if_moved(expect)  # before any work on the table, however large
        table = coerce_table(data, base.schema, allow_schema_change=allow_schema_change)
        if isinstance(data, pd.DataFrame):  # a frame cannot say NaN from null: base can
            table = keep_nans(table, base.table, self.key_columns_for(table.schema))

        def check_and_diff() -> Changeset:
            self.validate(table)
            return build_changeset(base.table, table, self.key_columns_for(table.schema))

        return self._locked_save(
            table, expect=expect, note=note, source=source, prepare=check_and_diff
        )

    def create(
        self, data: pd.DataFrame | pa.Table, *, note: str, source: str = "init"
    ) -> SaveResult:
        """Write a new master; refuses to overwrite one that exists (``IfNoneMatch='*'``).

        Raises:
            ConflictError: the master already exists.
            ValidationError: empty table, duplicate keys, or a bad note.
        """
        check_note(note)
        if isinstance(data, pd.DataFrame):
            table = pa.Table.from_pandas(data, preserve_index=False)
        elif isinstance(data, pa.Table):
            table = data
        else:
            raise ValidationError(
                f"Expected a pandas DataFrame or a pyarrow Table, got {type(data).__name__}."
            )
        table = table.replace_schema_metadata(None)
        check_loadable(table.schema, where="The new master")
        self.validate(table)
        self._refuse_if_moved(ExpectEtag(None))
        return self._locked_save(
            table,
            expect=ExpectEtag(None),
            note=note,
            source=source,
            prepare=lambda: build_changeset(None, table, self.key_columns_for(table.schema)),
        )

    def restore(
        self,
        *,
        snapshot_key: str | None = None,
        version_id: str | None = None,
        base: Master,
        note: str,
    ) -> SaveResult:
        """Make an earlier snapshot (or master version) the master again, via the locked save.

        The restored content keeps its own columns: restoring is an explicit choice, so
        a schema change it brings back is allowed and recorded.

        Raises:
            ValidationError: neither or both of ``snapshot_key``/``version_id`` given, or
                the key is not a snapshot or archive of this bucket's layout.
            NotFoundError: the snapshot does not exist (MasterNotFoundError: the version).
            ConflictError: the master changed since ``base`` was loaded.
        """
        check_note(note)  # before reading a snapshot that might be large
        if (snapshot_key is None) == (version_id is None):
            raise ValidationError("Give exactly one of snapshot_key or version_id to restore.")
        if not (snapshot_key or version_id or "").strip():
            # an empty version id would read the current master: never "restore" that
            raise ValidationError(
                "The snapshot key or version id to restore is empty; copy one from the "
                "audit log (columns snapshot_key, new_version)."
            )
        if snapshot_key is not None:
            allowed = (f"{self.cfg.snapshot_prefix}/", f"{self.cfg.archive_prefix}/")
            if not snapshot_key.startswith(allowed):
                raise ValidationError(
                    f"{snapshot_key!r} is not under the snapshot prefix "
                    f"{self.cfg.snapshot_prefix!r} or the archive prefix; pass a snapshot key "
                    "from the audit log (column snapshot_key)."
                )
            table = self.read_snapshot(snapshot_key)
        else:
            assert version_id is not None
            table = self.read_version(version_id).table
        return self.save(table, base=base, note=note, source="restore", allow_schema_change=True)

    def _locked_save(
        self,
        table: pa.Table,
        *,
        expect: ExpectEtag,
        note: str,
        source: str,
        prepare: Callable[[], Changeset],
    ) -> SaveResult:
        """Steps 2-5 of the save, once :meth:`_refuse_if_moved` has passed. ``prepare``
        validates and diffs (the changeset) while the body encodes (both are Arrow work
        that releases the GIL). Nothing is sent unless it returns."""
        column_types = ""
        if self.cfg.file_format == "csv":  # the text cannot say its types: the version does
            column_types = csv_types_text(table.schema)
            if len(column_types) > TYPES_METADATA_BYTES:
                raise ValidationError(
                    f"This CSV master declares {column_types.count(',') + 1} typed columns, "
                    "more than S3 metadata can record with each version; declare fewer "
                    "(text needs no declaration) or use a Parquet master."
                )
        saved_at = datetime.now(UTC)
        save_id = new_save_id(saved_at)
        snap_key = snapshot_key(self.cfg, saved_at, save_id)
        akey = audit_key(self.cfg, saved_at, save_id)
        ckey = changeset_key(self.cfg, saved_at, save_id)

        def metadata(changeset: Changeset) -> SaveMetadata:
            return SaveMetadata(
                save_id=save_id,
                saved_at=saved_at,
                user=current_user(),
                source=source,
                note=note,
                base_version=expect.version_id,
                base_etag=expect.etag,
                row_count=table.num_rows,
                column_count=table.num_columns,
                changes=changeset.counts,
                column_types=column_types,
            )

        streamed = self.cfg.commit == "copy"
        if streamed:  # step 3, with step 4 (the snapshot) written before it
            version_id, etag, meta, changeset = self._commit_streamed(
                table, save_id, snap_key, expect, prepare, metadata
            )
        elif self.bucket.multipart_threshold < MAX_SINGLE_PUT:  # step 3, in parts
            version_id, etag, meta, changeset = self._commit_in_parts(
                table, save_id, expect, prepare, metadata
            )
        else:
            with ThreadPoolExecutor(1, thread_name_prefix="s3grid-validate") as pool:
                preparing = pool.submit(prepare)
                # The encoder stays on this thread: the body grows by reallocation, and in
                # a worker thread glibc serves that from a per-thread arena that keeps
                # every outgrown copy, which raised the peak memory of a save
                # (docs/performance.md).
                body = encode_table(
                    table, self.cfg.file_format, save_id=save_id, compression=self.cfg.compression
                )
                changeset = preparing.result()
                meta = metadata(changeset)
            version_id, etag = self._commit(body, expect, meta)  # step 3: decides success
        changes = meta.changes
        incomplete = None
        overwritten: tuple[str, ...] = ()
        try:
            # The listing confirms the version the commit's answer named (an answer cut
            # short can name a garbled one) and shows any write that slipped past the
            # lock. The snapshot copy of the named version runs beside it (a copy of a
            # large master takes a while even server-side) and is redone in the rare
            # case that the listing names another. The audit needs both answers.
            # The changeset goes up beside them: it describes the content, whichever
            # version the listing names.
            with ThreadPoolExecutor(3, thread_name_prefix="s3grid-after-commit") as pool:
                confirming = pool.submit(self._confirm_commit, version_id, etag, expect, meta)
                describing = pool.submit(self._history.write_changeset, ckey, changeset)
                copying = None
                if not streamed:
                    copying = pool.submit(self._write_snapshot, version_id, snap_key)  # step 4
                confirmed, etag, overwritten = confirming.result()
                try:
                    if copying is not None:
                        copying.result()
                except S3GridError:
                    if confirmed == version_id:
                        raise
                describing.result()
            if confirmed != version_id:
                version_id = confirmed
                if not streamed:  # a streamed save's snapshot holds its bytes already
                    self._write_snapshot(version_id, snap_key)
            record = self._audit_record(meta, version_id, etag, snap_key)
            if overwritten:
                record = replace(record, lost_update_of=list(overwritten))
            self._write_audit(akey, record)  # step 5
        except S3GridError as exc:
            if isinstance(exc, SaveNotFoundError):
                raise  # no version to report: a result would name a garbled one
            # The save is committed; only its paper trail is missing. Reporting failure
            # here would make the user retry a save that already happened.
            incomplete = (
                f"Saved as version {version_id}, but writing its snapshot/audit failed ({exc}). "
                "Run `s3grid reconcile` (or store.reconcile()) to repair."
            )
            warnings.warn(incomplete, RuntimeWarning, stacklevel=3)
        result = SaveResult(
            prev_version=expect.version_id,
            new_version=version_id,
            new_etag=etag,
            snapshot_key=snap_key,
            audit_key=akey,
            save_id=meta.save_id,
            timestamp=format_timestamp(meta.saved_at),
            row_count=meta.row_count,
            column_count=meta.column_count,
            cells_changed=changes.cells_changed,
            rows_added=changes.rows_added,
            rows_deleted=changes.rows_deleted,
            incomplete=incomplete,
        )
        if overwritten:
            raise LostUpdateError(
                f"LOST UPDATE: the save committed version {version_id} of {self.cfg.uri} over "
                f"version(s) {', '.join(overwritten)} instead of your base {expect.version_id}: "
                "this store let two conditional writes through. Their changes are not in the "
                "master now; merge them back (the editor offers it) and save again.",
                overwritten=overwritten,
                result=result,
            )
        return result

    def _encode_streaming(
        self,
        key: str,
        table: pa.Table,
        save_id: str,
        prepare: Callable[[], Changeset],
        metadata: Callable[[Changeset], SaveMetadata],
        *,
        threshold: int = 0,
    ) -> tuple[PartStream, dict[str, Any], SaveMetadata, Changeset]:
        """Encode ``table`` into a :class:`PartStream` to ``key`` while ``prepare``
        validates and diffs. Parts go up while it encodes, once ``prepare`` has passed
        and the body is over ``threshold``; nothing is sent before. Returns the stream,
        ready to finish with the returned object arguments, with the save's metadata and
        changeset. Raises what ``prepare`` raises, the upload aborted."""
        found: list[SaveMetadata] = []
        with ThreadPoolExecutor(1, thread_name_prefix="s3grid-validate") as pool:
            preparing = pool.submit(prepare)

            def when_prepared() -> dict[str, Any] | None:
                if not preparing.done() or preparing.exception() is not None:
                    return None
                if not found:
                    found.append(metadata(preparing.result()))
                return {
                    "Metadata": found[0].to_s3(),
                    "ContentType": content_type(self.cfg.file_format),
                }

            stream = self.bucket.stream(key, when=when_prepared, threshold=threshold)
            try:
                write_table(
                    table,
                    stream,
                    self.cfg.file_format,
                    save_id=save_id,
                    compression=self.cfg.compression,
                )
                changeset = preparing.result()  # raises what validation found: nothing sent
                args = when_prepared()
                assert args is not None
            except BaseException:
                stream.abort()
                raise
        return stream, args, found[0], changeset

    def _commit_streamed(
        self,
        table: pa.Table,
        save_id: str,
        snap_key: str,
        expect: ExpectEtag,
        prepare: Callable[[], Changeset],
        metadata: Callable[[Changeset], SaveMetadata],
    ) -> tuple[str, str, SaveMetadata, Changeset]:
        """Step 3 with ``commit="copy"``: the body goes up to its snapshot key in parts
        while it encodes, then a conditional copy onto the master commits it. Nothing is
        sent before ``prepare`` has passed; a refused commit deletes the snapshot it
        uploaded. Returns the committed ``(version_id, etag)``, the save's metadata and
        its changeset."""
        stream, args, meta, changeset = self._encode_streaming(
            snap_key, table, save_id, prepare, metadata
        )
        snap = stream.finish(**args)
        source = (snap_key, str(snap.get("VersionId") or "null"))
        try:
            version_id, etag = commit_copy(self.bucket, self.cfg, source, expect, meta)
        except S3GridError as exc:
            if not (isinstance(exc, StoreUnavailableError) and exc.maybe_committed):
                self._drop_orphan(snap_key)
            raise
        return version_id, etag, meta, changeset

    def _commit_in_parts(
        self,
        table: pa.Table,
        save_id: str,
        expect: ExpectEtag,
        prepare: Callable[[], Changeset],
        metadata: Callable[[Changeset], SaveMetadata],
    ) -> tuple[str, str, SaveMetadata, Changeset]:
        """Step 3 where the store's conditional ``CompleteMultipartUpload`` is trusted
        (AWS, or ``multipart_bytes`` set): a body over the threshold goes up to the
        master in parts while it encodes, and the conditional complete commits it (one
        conditional PUT for a smaller body). Nothing is sent before ``prepare`` has
        passed. Returns as :meth:`_commit_streamed`."""
        stream, args, meta, changeset = self._encode_streaming(
            self.cfg.master_key,
            table,
            save_id,
            prepare,
            metadata,
            threshold=self.bucket.multipart_threshold,
        )

        def encode_again() -> bytes:
            return encode_table(
                table, self.cfg.file_format, save_id=save_id, compression=self.cfg.compression
            )

        version_id, etag = commit_stream(
            self.bucket, self.cfg, stream, args, expect, meta, encode_again
        )
        return version_id, etag, meta, changeset

    def _drop_orphan(self, key: str) -> None:
        """Delete the snapshot of a save that did not commit (a delete marker: editors
        may not destroy versions), logging a failure to."""
        try:
            self.bucket.delete(key)
        except S3GridError as exc:
            log.warning("Could not delete %s of a save that did not commit: %s", key, exc)

    def _refuse_if_moved(self, expect: ExpectEtag) -> None:
        """The checks a save makes before any work on its table: the bucket keeps
        versions (asked afresh) and, with ``look_first``, one HEAD shows the master is
        still the base. So a stale save is refused in milliseconds at any size; the
        conditional PUT still decides.

        Raises:
            VersioningError, ConflictError, StoreUnavailableError: nothing written.
        """
        try:
            self.bucket.require_versioning(fresh=True)
        except StoreUnavailableError as exc:
            raise unreachable(self.bucket.url(self.cfg.master_key), exc) from exc
        if self.look_first:
            self._check_unchanged(expect)

    def _check_unchanged(self, expect: ExpectEtag) -> None:
        check_unchanged(self.bucket, self.cfg.master_key, expect)

    def _commit(self, body: bytes, expect: ExpectEtag, meta: SaveMetadata) -> tuple[str, str]:
        return commit(self.bucket, self.cfg, body, expect, meta)

    def _confirm_commit(
        self, version_id: str, etag: str, expect: ExpectEtag, meta: SaveMetadata
    ) -> tuple[str, str, tuple[str, ...]]:
        return confirm_commit(self.bucket, self.cfg, version_id, etag, expect, meta)

    def _write_snapshot(self, version_id: str, snap_key: str) -> None:
        self._history.write_snapshot(version_id, snap_key)

    def _write_audit(self, akey: str, record: AuditRecord) -> None:
        self._history.write_audit(akey, record)

    def _audit_record(
        self, meta: SaveMetadata, version_id: str, etag: str, snap_key: str
    ) -> AuditRecord:
        return self._history.audit_record(meta, version_id, etag, snap_key)

    def aws_identity(self) -> str | None:
        """The caller's AWS ARN via STS, looked up once; None on non-AWS endpoints."""
        if self._identity is False:
            self._identity = None
            if self.bucket.on_aws:  # the real endpoint, wherever it was set
                try:
                    session = boto3.session.Session(
                        profile_name=self.cfg.profile, region_name=self.cfg.region
                    )
                    sts = session.client(
                        "sts",
                        config=Config(
                            connect_timeout=3, read_timeout=3, retries={"max_attempts": 1}
                        ),
                    )
                    self._identity = str(sts.get_caller_identity()["Arn"])
                except (BotoCoreError, ClientError):
                    log.info("AWS caller identity unavailable; audits record the OS user only")
        return self._identity if isinstance(self._identity, str) else None

    # ---------------------------------------------------------------- audit, repair

    def audit_log(
        self, since: datetime | str | None = None, until: datetime | str | None = None
    ) -> pd.DataFrame:
        """The audit log of this master as a DataFrame, one row per save, oldest first
        (``since``/``until``: UTC if naive; see :meth:`s3grid.history.History.audit_log`)."""
        return self._history.audit_log(since, until)

    def history(self, key: Any = None, column: str | None = None) -> pd.DataFrame:
        """Every change to one row (``key``: a value, a tuple in key-column order, or a
        dict), one column, or one cell (both), oldest first: when, who, the note, the
        version, and old -> new (:meth:`s3grid.history.History.history`)."""
        return self._history.history(key, column)

    def diff_versions(self, old_version: str | None, new_version: str) -> pd.DataFrame:
        """What changed between two master versions, one row per change: ``change``,
        the key columns, ``column``, ``old``, ``new`` (as in :meth:`history`)."""
        return changeset_frame(self.changes_between(old_version, new_version).table)

    # ---------------------------------------------- operations built on the above
    # Every operation on a master is a method here; the modules that implement them
    # (imported on first use: they import this one) also offer them as functions.

    def bulk_edit(self, select_sql: str, *, note: str, **kwargs: Any) -> SaveResult:
        """Replace the master with a SELECT's result through the locked save
        (:func:`s3grid.bulk.bulk_edit`: ``engine``, ``table_name``, ``base``,
        ``allow_schema_change``)."""
        from s3grid.bulk import bulk_edit

        return bulk_edit(self, select_sql, note=note, **kwargs)

    def preview_bulk_edit(self, select_sql: str, **kwargs: Any) -> BulkPreview:
        """What a bulk edit would change, writing nothing
        (:func:`s3grid.bulk.preview_bulk_edit`)."""
        from s3grid.bulk import preview_bulk_edit

        return preview_bulk_edit(self, select_sql, **kwargs)

    def export_csv(self, destination: str | Path, *, version_id: str | None = None) -> str:
        """Write the master (or one version) as CSV (:func:`s3grid.bulk.export_csv`)."""
        from s3grid.bulk import export_csv

        return export_csv(self, destination, version_id=version_id)

    def prune(self, keep: int = 15, apply: bool = False, **kwargs: Any) -> PrunePlan:
        """Archive all but the latest ``keep`` saves; without ``apply``, only plan
        (:func:`s3grid.prune.prune`)."""
        from s3grid.prune import prune

        return prune(self, keep, apply, **kwargs)

    def promote(self, prefix: str, *, note: str, **kwargs: Any) -> PromoteResult:
        """Flatten staged query output and save it over the version it was computed
        from (:func:`s3grid.promote.promote`)."""
        from s3grid.promote import promote

        return promote(self, prefix, note=note, **kwargs)

    def check_store(self, **kwargs: Any) -> StoreReport:
        """Try, with scratch objects it removes again, whether this bucket's store keeps
        the behaviours the locked save relies on (:func:`s3grid.storecheck.check_store`).
        Run it once per bucket before trusting a store other than AWS S3."""
        from s3grid.storecheck import check_store

        return check_store(self.bucket, **kwargs)

    def reconcile(self) -> list[Repair]:
        """Give every s3grid-made master version its missing snapshot and/or audit
        (:meth:`s3grid.history.History.reconcile`).

        Raises:
            VersioningError: the bucket does not keep versions.
        """
        return self._history.reconcile()

    def stray_snapshots(self, older_than: timedelta | None = None) -> list[StraySnapshot]:
        """Snapshots that no master version and no audit record names, older than
        ``older_than`` (default: a day): uploads of streamed saves (``commit="copy"``)
        whose kernel was killed before the copy that commits them. They hold edits that
        were never saved; read one with :meth:`read_snapshot`, then delete it (a delete
        marker; ``s3grid reconcile`` prints the command). Nothing is deleted here."""
        return self._history.stray_snapshots(older_than)
