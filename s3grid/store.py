"""The only S3 code for masters: load, the locked save, snapshot, audit, restore, reconcile.

Every S3 request goes through :class:`S3Bucket.call`, which retries transient failures and
translates botocore errors into :mod:`s3grid.errors`. The compare-and-swap on the master
(``put_object`` with ``IfMatch``/``IfNoneMatch``) appears once, in
:meth:`MasterStore._commit`; the expectation it enforces is the pure :class:`ExpectEtag`.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import logging
import random
import time
import unicodedata
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import boto3
import pandas as pd
import pyarrow as pa
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound
from botocore.parsers import ResponseParserError

from s3grid import audit as audit_mod
from s3grid.audit import AuditRecord, format_timestamp, parse_timestamp
from s3grid.config import S3GridConfig
from s3grid.diff import (
    ChangeCounts,
    count_changes,
    default_key_columns,
    keep_nans,
    keys_unique,
)
from s3grid.errors import (
    AccessDeniedError,
    ConfigError,
    ConflictError,
    IncompleteResponseError,
    LostUpdateError,
    MasterNotFoundError,
    S3GridError,
    StoreUnavailableError,
    ValidationError,
    VersioningError,
    is_transient,
    translate,
)
from s3grid.formats import csv_types_text, decode_table, encode_table, parse_csv_types
from s3grid.schema import check_loadable, coerce_table, to_pandas

__all__ = [
    "ExpectEtag",
    "Master",
    "MasterStore",
    "Repair",
    "S3Bucket",
    "SaveMetadata",
    "SaveResult",
    "VersionInfo",
]

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 1000
# S3 limits user metadata to 2 KB in total; the note gets what the other fields leave.
_NOTE_METADATA_BYTES = 1200
_META = "s3grid-"
# S3 keeps 2 KB of user metadata per object: the CSV types' share comes off the note's.
_TYPES_METADATA_BYTES = 900


# --------------------------------------------------------------------------- values


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
class Repair:
    """What :meth:`MasterStore.reconcile` wrote for one committed version."""

    version_id: str
    save_id: str
    snapshot_key: str
    audit_key: str
    wrote_snapshot: bool
    wrote_audit: bool


@dataclass(frozen=True)
class SaveMetadata:
    """The s3grid metadata carried by every master version s3grid writes.

    It is everything reconcile needs to rebuild the snapshot and audit keys and the
    audit record, so a repair never depends on anything but the version itself.
    """

    save_id: str
    saved_at: datetime
    user: str
    source: str
    note: str
    base_version: str | None
    base_etag: str | None
    row_count: int
    column_count: int
    changes: ChangeCounts = field(default_factory=ChangeCounts)
    note_truncated: bool = False
    column_types: str = ""  # a CSV master's declared types (formats.csv_types_text)

    def to_s3(self) -> dict[str, str]:
        """As S3 user metadata (ASCII only, so text is percent-encoded)."""
        note, truncated = _metadata_note(
            self.note, limit=_NOTE_METADATA_BYTES - len(self.column_types)
        )
        c = self.changes
        return {
            f"{_META}save-id": self.save_id,
            f"{_META}saved-at": format_timestamp(self.saved_at),
            f"{_META}user": quote(self.user, safe=""),
            f"{_META}source": self.source,
            f"{_META}note": note,
            f"{_META}note-truncated": "1" if truncated else "0",
            f"{_META}base-version": self.base_version or "",
            f"{_META}base-etag": self.base_etag or "",
            f"{_META}shape": f"{self.row_count}x{self.column_count}",
            f"{_META}changes": f"{c.cells_changed},{c.rows_added},{c.rows_deleted}",
            **({f"{_META}types": self.column_types} if self.column_types else {}),
        }

    @classmethod
    def from_s3(cls, metadata: dict[str, str]) -> SaveMetadata | None:
        """Parse S3 user metadata; None when the version was not written by s3grid."""
        m = {k.lower(): v for k, v in metadata.items()}
        save_id = m.get(f"{_META}save-id")
        if not save_id:
            return None
        try:
            rows, cols = (int(x) for x in m.get(f"{_META}shape", "0x0").split("x"))
            cells, added, deleted = (int(x) for x in m.get(f"{_META}changes", "0,0,0").split(","))
            return cls(
                save_id=save_id,
                saved_at=parse_timestamp(m[f"{_META}saved-at"]),
                user=unquote(m.get(f"{_META}user", "")),
                source=m.get(f"{_META}source", "editor"),
                note=unquote(m.get(f"{_META}note", "")),
                base_version=m.get(f"{_META}base-version") or None,
                base_etag=m.get(f"{_META}base-etag") or None,
                row_count=rows,
                column_count=cols,
                changes=ChangeCounts(cells, added, deleted),
                note_truncated=m.get(f"{_META}note-truncated") == "1",
                column_types=m.get(f"{_META}types", ""),
            )
        except (KeyError, ValueError):
            log.warning("ignoring malformed s3grid metadata: %r", metadata)
            return None


@dataclass(frozen=True)
class ExpectEtag:
    """The commit's precondition: the master is still the version the caller loaded.

    ``etag=None`` means "the master must not exist yet" (a first save). Pure: it turns
    into request conditions and validates a HEAD result, but does no I/O itself.
    """

    etag: str | None
    version_id: str | None = None

    def conditions(self) -> dict[str, str]:
        """The ``put_object`` condition arguments for this expectation."""
        return {"IfMatch": self.etag} if self.etag else {"IfNoneMatch": "*"}

    def holds(self, current: dict[str, Any] | None) -> bool:
        """Whether a HEAD response (None: no object) satisfies the expectation."""
        if self.etag is None:
            return current is None
        return current is not None and current.get("ETag") == self.etag

    def validate(self, current: dict[str, Any] | None, *, key: str) -> None:
        """Raise :class:`ConflictError` unless ``current`` is the expected version."""
        if self.holds(current):
            return
        meta = SaveMetadata.from_s3(current.get("Metadata", {})) if current else None
        if self.etag is None:
            what = f"{key} already exists (version {current and current.get('VersionId')})"
        elif current is None:
            what = f"{key} was deleted since you loaded it"
        else:
            who = f" by {meta.user} at {format_timestamp(meta.saved_at)}" if meta else ""
            what = (
                f"{key} was changed{who} since you loaded version {self.version_id}; "
                f"it is now version {current.get('VersionId')}"
            )
        raise ConflictError(
            f"Conflict: {what}. Nothing was written. Reload (or merge your edits onto the "
            "new version) and save again.",
            key=key,
            base_version=self.version_id,
            base_etag=self.etag,
            current_version=current.get("VersionId") if current else None,
            current_etag=current.get("ETag") if current else None,
            saved_by=meta.user if meta else None,
            saved_at=format_timestamp(meta.saved_at) if meta else None,
            current_note=meta.note if meta else None,
        )


# ------------------------------------------------------------------- S3 chokepoint

# S3's limit for one PUT and for one CopyObject. The save's snapshot is a server-side
# copy, so this is the largest master a save can write (Parquet of ~150M rows of 13
# columns); over it a copy would need a multipart copy, with other ETags.
MAX_SINGLE_PUT = 5 * 1024**3
PROGRESS_BYTES = 64 * 1024**2  # transfers this large take seconds: show progress
PART_BYTES = 16 * 1024**2  # multipart part size (S3: at least 5 MiB, at most 10,000 parts)
PART_THREADS = 4  # parts in flight at once: S3 gives each connection its own bandwidth


def _progress(total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False)


class _ProgressReader(io.BytesIO):
    """The body of a PUT that reports how far the upload got.

    botocore reads the body once for the checksum and again to send it; the bar shows
    the furthest position reached, so it never counts twice.
    """

    def __init__(self, data: bytes, bar: Any) -> None:
        super().__init__(data)
        self._bar = bar
        self._furthest = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        pos = self.tell()
        if pos > self._furthest:
            self._bar.update(pos - self._furthest)
            self._furthest = pos
        return chunk


class SeekableReader(io.RawIOBase):
    """A read-only, seekable file of ``size`` bytes; subclasses say how to read a range.

    botocore rewinds a body to resend it; pyarrow seeks to a Parquet footer, then to
    each column chunk.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._pos = 0

    def _read_range(self, start: int, n: int) -> Any:
        """Up to ``n`` bytes from ``start`` (bytes-like)."""
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._read_range(self._pos, n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def __len__(self) -> int:
        return self._size


class _PartReader(SeekableReader):
    """One part of a body, read in place: no copy of the part while it uploads."""

    def __init__(self, view: memoryview) -> None:
        super().__init__(len(view))
        self._view = view

    def _read_range(self, start: int, n: int) -> Any:
        return self._view[start : start + n]


def _part_size(total: int) -> int:
    """Bytes per part of a multipart upload of ``total`` bytes (S3 allows 10,000 parts)."""
    return max(PART_BYTES, -(-total // 10_000))


# Requests that write into the bucket: refused unless it keeps every version.
_WRITE_OPS = frozenset(
    {
        "put_object",
        "copy_object",
        "delete_object",
        "delete_objects",
        "create_multipart_upload",
        "upload_part",
        "complete_multipart_upload",
    }
)


# What a successful answer always carries; without it, the answer was cut short.
_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "get_object": ("ETag",),
    "head_object": ("ETag",),
    "put_object": ("ETag",),
    "upload_part": ("ETag",),
    "complete_multipart_upload": ("ETag",),
    "copy_object": ("CopyObjectResult.ETag",),
}


class S3Bucket:
    """The one chokepoint for S3 calls: retries with backoff, errors translated.

    Botocore's own retries are switched off so that this class alone decides what is
    safe to send twice; a conditional PUT that may have landed is never blindly resent.
    """

    def __init__(self, cfg: S3GridConfig, client: Any = None) -> None:
        self.cfg = cfg
        self.name = cfg.bucket
        self._client = client if client is not None else self._make_client(cfg)
        # Seen "Enabled": the writes of one save need not ask again (each save asks
        # afresh, as versioning can be suspended at any time).
        self._versioned = False

    @staticmethod
    def _make_client(cfg: S3GridConfig) -> Any:
        try:
            session = boto3.session.Session(profile_name=cfg.profile, region_name=cfg.region)
        except ProfileNotFound as exc:
            raise ConfigError(
                f"AWS profile {cfg.profile!r} not found; check AWS_PROFILE or --profile."
            ) from exc
        config = Config(
            # One attempt: botocore's "max_attempts" counts retries (1 is two sends);
            # "total_max_attempts" counts sends. S3Bucket.call decides what is resent.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
            # Custom endpoints (moto, MinIO, Ceph) rarely serve virtual-hosted buckets.
            s3={"addressing_style": "path"} if cfg.endpoint_url else None,
        )
        return session.client("s3", endpoint_url=cfg.endpoint_url, config=config)

    @property
    def client(self) -> Any:
        """The underlying boto3 client (for tests and advanced use)."""
        return self._client

    def url(self, key: str, version_id: str | None = None) -> str:
        """``s3://bucket/key`` (with ``?versionId=`` when given), for messages."""
        suffix = f"?versionId={version_id}" if version_id else ""
        return f"s3://{self.name}/{key}{suffix}"

    def call(self, op: str, *, what: str, retry: bool = True, **kwargs: Any) -> Any:
        """Run one boto3 S3 operation.

        Args:
            op: the boto3 method name (``"get_object"``).
            what: a short description for error messages.
            retry: retry transient failures; False sends exactly once.
            **kwargs: the operation's parameters (``Bucket`` is filled in).

        Raises:
            S3GridError: the translated failure, with the botocore error as ``__cause__``.
        """
        kwargs.setdefault("Bucket", self.name)
        if op in _WRITE_OPS and kwargs["Bucket"] == self.name and not self._versioned:
            self.require_versioning()
        attempts = self.cfg.max_attempts if retry else 1
        rewind = getattr(kwargs.get("Body"), "seek", None)
        for attempt in range(1, attempts + 1):
            if rewind is not None:
                rewind(0)  # a retry must send the whole body again
            try:
                try:
                    resp = getattr(self._client, op)(**kwargs)
                except ResponseParserError as exc:  # a body cut short; not a BotoCoreError
                    raise IncompleteResponseError(operation=op, missing=str(exc)) from exc
                self._check_complete(op, resp)
                return resp
            except (ClientError, BotoCoreError) as exc:
                if attempt < attempts and is_transient(exc):
                    delay = min(5.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random())
                    log.info("%s failed (%s); retry %d in %.2fs", what, exc, attempt, delay)
                    time.sleep(delay)
                    continue
                raise translate(exc, what=what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_complete(self, op: str, resp: Any) -> None:
        """Refuse a success whose headers were cut short (it could pass for a missing ETag
        or a version "null"): the caller treats it like a timeout and settles it."""
        fields = _REQUIRED_FIELDS.get(op, ())
        if self._versioned and op in ("put_object", "complete_multipart_upload", "copy_object"):
            fields = (*fields, "VersionId")  # a versioned bucket names every new version
        missing = []
        for path in fields:
            value = resp
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value in (None, ""):
                missing.append(path)
        if missing:
            raise IncompleteResponseError(operation=op, missing="no " + ", ".join(missing))

    def versioning(self) -> str:
        """The bucket's versioning status: ``"Enabled"``, ``"Suspended"`` or ``"Off"``."""
        resp = self.call("get_bucket_versioning", what=f"GET VERSIONING s3://{self.name}")
        status = str(resp.get("Status") or "Off")
        self._versioned = status == "Enabled"
        return status

    def versioning_problem(self, *, fresh: bool = False) -> str | None:
        """Why s3grid may not write to this bucket, or None when versioning is on.

        ``fresh`` asks S3 even if versioning was seen on before (it can be suspended).
        """
        if self._versioned and not fresh:
            return None
        try:
            status = self.versioning()
        except AccessDeniedError as exc:
            return (
                f"s3grid could not check that bucket {self.name!r} keeps versions ({exc}). "
                "Grant s3:GetBucketVersioning on the bucket (`s3grid` README, IAM policy)."
            )
        if status == "Enabled":
            return None
        endpoint = f" --endpoint-url {self.cfg.endpoint_url}" if self.cfg.endpoint_url else ""
        return (
            f"Bucket {self.name!r} has versioning {status.lower()}: a save would overwrite "
            "the only copy of the master, and snapshots would copy nothing. Turn it on with "
            f"`aws s3api put-bucket-versioning --bucket {self.name} "
            f"--versioning-configuration Status=Enabled{endpoint}`, then retry."
        )

    def require_versioning(self, *, fresh: bool = False) -> None:
        """Refuse to write unless the bucket keeps every version (asked once per bucket
        object, or now with ``fresh``: each save asks, as a bucket can be suspended).

        Raises:
            VersioningError: versioning is off or suspended, or cannot be checked.
        """
        problem = self.versioning_problem(fresh=fresh)
        if problem is not None:
            raise VersioningError(problem)

    def get(self, key: str, version_id: str | None = None) -> tuple[bytes, dict[str, Any]]:
        """GET an object; the body and the response (ETag, VersionId, Metadata)."""
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        what = f"GET {self.url(key, version_id)}"
        resp = self.call("get_object", what=what, Key=key, **extra)
        size = int(resp.get("ContentLength") or 0)
        try:
            if size < PROGRESS_BYTES:
                body = resp["Body"].read()
            else:  # large: read in chunks into one preallocated buffer, with progress
                buf = bytearray(size)
                view = memoryview(buf)
                pos = 0
                with _progress(size, f"load {key}") as bar:
                    for chunk in resp["Body"].iter_chunks(8 << 20):
                        view[pos : pos + len(chunk)] = chunk
                        pos += len(chunk)
                        bar.update(len(chunk))
                # a full read hands over the buffer as is (a short one fails to decode;
                # bytes(buf) would hold a second copy of a large master)
                body = buf if pos == size else bytes(view[:pos])
        except (BotoCoreError, OSError) as exc:
            raise translate(exc, what=what) from exc
        return body, resp

    def head(self, key: str, version_id: str | None = None) -> dict[str, Any] | None:
        """HEAD an object; None when it does not exist."""
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        try:
            return dict(
                self.call("head_object", what=f"HEAD {self.url(key, version_id)}", Key=key, **extra)
            )
        except MasterNotFoundError:
            return None

    def put(self, key: str, body: bytes, *, retry: bool = True, **kwargs: Any) -> dict[str, Any]:
        """PUT an object (pass ``IfMatch``/``IfNoneMatch`` through ``kwargs``).

        Up to ``cfg.multipart_threshold``, one request; above, a multipart upload whose
        complete carries the condition (boto3's managed transfer does not take
        ``IfMatch``). Either way the object appears, or not, in one atomic step.

        Raises:
            ValidationError: the body is over 5 GiB.
        """
        if len(body) > MAX_SINGLE_PUT:
            raise ValidationError(
                f"{self.url(key)}: {len(body) / 1e9:.1f} GB is over 5 GB, the most S3 takes "
                "in one PUT or copies in one CopyObject (the save's snapshot). Split the "
                "table or archive rows."
            )
        try:
            return self._send(key, body, retry=retry, **kwargs)
        except ConflictError:
            # An earlier attempt of this very PUT may have landed with its answer lost:
            # the resend then finds the key taken. Taken by exactly these bytes is done.
            if kwargs.get("IfNoneMatch") == "*":
                head = self.head(key)
                if head is not None and head.get("ETag") == self.etag_of(body):
                    return head
            raise

    def etag_of(self, body: bytes) -> str:
        """The ETag S3 gives ``body`` as :meth:`put` uploads it (MD5, or MD5 of the
        parts' MD5s). Objects encrypted with SSE-KMS have other ETags: no match then."""
        if len(body) <= self.cfg.multipart_threshold:
            return f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
        size = _part_size(len(body))
        digests = b"".join(
            hashlib.md5(body[i : i + size], usedforsecurity=False).digest()
            for i in range(0, len(body), size)
        )
        count = -(-len(body) // size)
        return f'"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{count}"'

    def _send(self, key: str, body: bytes, *, retry: bool, **kwargs: Any) -> dict[str, Any]:
        if len(body) > self.cfg.multipart_threshold:
            return self._put_in_parts(key, body, retry=retry, **kwargs)
        payload: Any = body
        bar = None
        if len(body) >= PROGRESS_BYTES:
            bar = _progress(len(body), f"save {key}")
            payload = _ProgressReader(body, bar)
        try:
            return dict(
                self.call(
                    "put_object",
                    what=f"PUT {self.url(key)}",
                    retry=retry,
                    Key=key,
                    Body=payload,
                    **kwargs,
                )
            )
        finally:
            if bar is not None:
                bar.close()

    def _put_in_parts(self, key: str, body: bytes, *, retry: bool, **kwargs: Any) -> dict[str, Any]:
        """A multipart upload: parts in parallel, then one conditional complete.

        Nothing is visible until the complete, which S3 checks against ``IfMatch`` /
        ``IfNoneMatch`` like a PUT. Parts are safe to resend; the complete is sent as
        ``retry`` says. Any failure before the complete aborts the upload (S3 would
        otherwise bill the orphaned parts).
        """
        conditions = {k: kwargs.pop(k) for k in ("IfMatch", "IfNoneMatch") if k in kwargs}
        url = self.url(key)
        upload_id = self.call(
            "create_multipart_upload", what=f"START UPLOAD {url}", Key=key, **kwargs
        )["UploadId"]
        view = memoryview(body)
        size = _part_size(len(body))
        bounds = [(i + 1, start) for i, start in enumerate(range(0, len(body), size))]
        bar = _progress(len(body), f"save {key}") if len(body) >= PROGRESS_BYTES else None

        def send(number: int, start: int) -> dict[str, Any]:
            part = view[start : start + size]
            resp = self.call(
                "upload_part",
                what=f"UPLOAD PART {number}/{len(bounds)} of {url}",
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=_PartReader(part),
            )
            if bar is not None:
                bar.update(len(part))
            return {"PartNumber": number, "ETag": resp["ETag"]}

        pool = ThreadPoolExecutor(PART_THREADS, thread_name_prefix="s3grid-part")
        try:
            try:
                futures = [pool.submit(send, number, start) for number, start in bounds]
                parts = [f.result() for f in futures]
            finally:  # on a failed part, the parts not yet started are not sent at all
                pool.shutdown(wait=True, cancel_futures=True)
            return dict(
                self.call(
                    "complete_multipart_upload",
                    what=f"COMPLETE UPLOAD {url}",
                    retry=retry,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **conditions,
                )
            )
        except BaseException:
            try:  # harmless after a complete that did land: the upload id is gone then
                self.call(
                    "abort_multipart_upload",
                    what=f"ABORT UPLOAD {url}",
                    Key=key,
                    UploadId=upload_id,
                )
            except S3GridError as exc:
                log.warning("Could not abort upload %s of %s: %s", upload_id, url, exc)
            raise
        finally:
            if bar is not None:
                bar.close()

    def copy(self, src_key: str, src_version: str | None, dst_key: str, **kwargs: Any) -> None:
        """Server-side copy of exactly one version (no second upload of the bytes)."""
        source = {"Bucket": self.name, "Key": src_key}
        if src_version:
            source["VersionId"] = src_version
        self.call(
            "copy_object",
            what=f"COPY {self.url(src_key, src_version)} -> {self.url(dst_key)}",
            Key=dst_key,
            CopySource=source,
            **kwargs,
        )

    def delete(self, key: str) -> None:
        """DELETE an object (on a versioned bucket this adds a delete marker)."""
        self.call("delete_object", what=f"DELETE {self.url(key)}", Key=key)

    def list_objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        """All objects under ``prefix`` (Key, Size, LastModified, ETag)."""
        token: str | None = None
        while True:
            extra: dict[str, Any] = {"ContinuationToken": token} if token else {}
            page = self.call(
                "list_objects_v2", what=f"LIST {self.url(prefix)}", Prefix=prefix, **extra
            )
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def list_versions(self, key: str) -> Iterator[dict[str, Any]]:
        """Every version of exactly ``key``, newest first (delete markers excluded)."""
        markers: dict[str, Any] = {}
        while True:
            page = self.call(
                "list_object_versions",
                what=f"LIST VERSIONS {self.url(key)}",
                Prefix=key,
                **markers,
            )
            for v in page.get("Versions", []):
                if v["Key"] == key:
                    yield v
            if not page.get("IsTruncated"):
                return
            markers = {
                "KeyMarker": page["NextKeyMarker"],
                "VersionIdMarker": page["NextVersionIdMarker"],
            }


# ---------------------------------------------------------------------- the store


def _metadata_note(note: str, limit: int = _NOTE_METADATA_BYTES) -> tuple[str, bool]:
    """The note percent-encoded for metadata, cut to fit between whole characters.

    A cut never splits a character's bytes, nor a character from the accents, joiners
    and variation selectors that follow it. Returns ``(encoded, truncated)``.
    """
    encoded = quote(note, safe="")
    if len(encoded) <= limit:
        return encoded, False
    end, size = 0, 0
    for ch in note:
        size += len(quote(ch, safe=""))
        if size > limit:
            break
        end += 1
    while end > 0 and _joins_previous(note, end):
        end -= 1
    return quote(note[:end], safe=""), True


def _joins_previous(text: str, i: int) -> bool:
    """Whether ``text[i]`` belongs to the character before it (a mark, a joiner)."""
    ch = text[i]
    return (
        unicodedata.category(ch).startswith("M")
        or ch in "\u200d\ufe0e\ufe0f"
        or text[i - 1] == "\u200d"
        or 0x1F3FB <= ord(ch) <= 0x1F3FF  # skin-tone modifiers
    )


def new_save_id(saved_at: datetime) -> str:
    """16 hex digits: the microsecond (5 digits), then 11 random ones.

    Keys carry only whole seconds; leading with the microsecond makes saves within one
    second sort by time too.
    """
    return f"{saved_at.microsecond:05x}{uuid.uuid4().hex[:11]}"


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in some containers
        return "unknown"


def check_note(note: str) -> str:
    """Validate a save note: any Unicode and newlines, but bounded and without control codes.

    Raises:
        ValidationError: the note is too long or holds control characters.
    """
    if not isinstance(note, str):
        raise ValidationError(f"The note must be text, got {type(note).__name__}.")
    if len(note) > MAX_NOTE_CHARS:
        raise ValidationError(
            f"The note is {len(note)} characters; the limit is {MAX_NOTE_CHARS}. "
            "Shorten it (link to a longer description instead)."
        )
    surrogates = sorted({f"U+{ord(ch):04X}" for ch in note if unicodedata.category(ch) == "Cs"})
    if surrogates:
        raise ValidationError(
            f"The note contains {', '.join(surrogates)}, half of a character that cannot be "
            "stored as text (often from a broken copy and paste); retype that part."
        )
    bad = sorted(
        {f"U+{ord(ch):04X}" for ch in note if unicodedata.category(ch) == "Cc" and ch not in "\n\t"}
    )
    if bad:
        raise ValidationError(
            f"The note contains control characters {', '.join(bad)}; remove them "
            "(newlines and tabs are fine)."
        )
    return note


class MasterStore:
    """The master table in S3, with locked saves, snapshots, audits and repairs.

    Args:
        cfg: where the master lives.
        key_columns: columns that identify a row and must stay unique; default
            ``cfg.key_columns``, else ``("tow", "net")`` when both exist, else none.
        client: a boto3 S3 client to use instead of building one from ``cfg``.
    """

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
        except MasterNotFoundError as exc:
            what = f"version {version_id} of " if version_id else ""
            raise MasterNotFoundError(
                f"No {what}master at {self.bucket.url(key)} ({exc}). Check S3_BUCKET and "
                "S3_MASTER_KEY, or create it with `s3grid init FILE`."
            ) from exc
        save = SaveMetadata.from_s3(resp.get("Metadata", {}))
        table = decode_table(
            body,
            self.cfg.file_format,
            where=self.bucket.url(key, version_id),
            csv_types=parse_csv_types(save.column_types) if save else None,
        )
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
        source: str = "editor",
        allow_schema_change: bool = False,
        changes: ChangeCounts | None = None,
    ) -> SaveResult:
        """Save new content over ``base`` with the locked pipeline.

        Validates, commits with ``IfMatch=base.etag`` (the only step that decides
        success), copies exactly the new version to a snapshot, then writes the audit.

        Args:
            data: the new master content.
            base: the version the edits started from (from :meth:`load`).
            note: a note for the audit (any Unicode, newlines allowed).
            source: who is saving: ``editor``, ``sql``, ``restore``, ``automation``...
            allow_schema_change: accept a change of columns on purpose.
            changes: the change counts for the audit, when the caller knows them
                (skips diffing the whole table against ``base``).

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
        table = coerce_table(data, base.schema, allow_schema_change=allow_schema_change)
        if isinstance(data, pd.DataFrame):  # a frame cannot say NaN from null: base can
            table = keep_nans(table, base.table, self.key_columns_for(table.schema))

        def check_and_count() -> ChangeCounts:
            self.validate(table)
            if changes is not None:
                return changes  # the caller already knows (the editor, a bulk-edit preview)
            if table.schema == base.schema:
                return count_changes(base.table, table, self.key_columns_for(table.schema))
            # a deliberate schema change: count rows, cells are not comparable
            return ChangeCounts(
                0,
                max(0, table.num_rows - base.table.num_rows),
                max(0, base.table.num_rows - table.num_rows),
            )

        return self._locked_save(
            table,
            expect=ExpectEtag(base.etag, base.version_id),
            note=note,
            source=source,
            prepare=check_and_count,
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
        return self._locked_save(
            table,
            expect=ExpectEtag(None),
            note=note,
            source=source,
            prepare=lambda: ChangeCounts(0, table.num_rows, 0),  # validated above
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
            MasterNotFoundError: the snapshot or version does not exist.
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
            try:
                body, resp = self.bucket.get(snapshot_key)
            except MasterNotFoundError as exc:
                raise MasterNotFoundError(
                    f"No snapshot at {self.bucket.url(snapshot_key)}; list them with "
                    "`s3grid audit`."
                ) from exc
            save = SaveMetadata.from_s3(resp.get("Metadata", {}))
            table = decode_table(
                body,
                self.cfg.file_format,
                where=self.bucket.url(snapshot_key),
                csv_types=parse_csv_types(save.column_types) if save else None,
            )
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
        prepare: Callable[[], ChangeCounts],
    ) -> SaveResult:
        """Steps 2-5 of the save. ``prepare`` validates and counts the changes; it runs
        while the master is looked at (a base that moved on fails here, before any
        encoding) and while the body encodes (both are Arrow work that releases the GIL).
        Nothing is sent unless it returns."""
        column_types = ""
        if self.cfg.file_format == "csv":  # the text cannot say its types: the version does
            column_types = csv_types_text(table.schema)
            if len(column_types) > _TYPES_METADATA_BYTES:
                raise ValidationError(
                    f"This CSV master declares {column_types.count(',') + 1} typed columns, "
                    "more than S3 metadata can record with each version; declare fewer "
                    "(text needs no declaration) or use a Parquet master."
                )
        try:
            self.bucket.require_versioning(fresh=True)
        except StoreUnavailableError as exc:
            raise _unreachable(self.bucket.url(self.cfg.master_key), exc) from exc
        saved_at = datetime.now(UTC)
        save_id = new_save_id(saved_at)
        with ThreadPoolExecutor(1, thread_name_prefix="s3grid-validate") as pool:
            preparing = pool.submit(prepare)
            try:
                # A master that has already moved on is a conflict now, not after encoding
                # and sending the whole table. The conditional PUT still decides.
                self._check_unchanged(expect)
            except (ConflictError, StoreUnavailableError):
                preparing.result()  # a table that cannot be saved anyway says so first
                raise
            # The encoder stays on this thread: the body grows by reallocation, and in a
            # worker thread glibc serves that from a per-thread arena that keeps every
            # outgrown copy, which raised the peak memory of a save (docs/performance.md).
            body = encode_table(table, self.cfg.file_format, save_id=save_id)
            changes = preparing.result()
        meta = SaveMetadata(
            save_id=save_id,
            saved_at=saved_at,
            user=_current_user(),
            source=source,
            note=note,
            base_version=expect.version_id,
            base_etag=expect.etag,
            row_count=table.num_rows,
            column_count=table.num_columns,
            changes=changes,
            column_types=column_types,
        )
        version_id, etag = self._commit(body, expect, meta)  # step 3: decides success
        snap_key = audit_mod.snapshot_key(self.cfg, meta.saved_at, meta.save_id)
        akey = audit_mod.audit_key(self.cfg, meta.saved_at, meta.save_id)
        incomplete = None
        overwritten: tuple[str, ...] = ()
        try:
            # The listing confirms the version the commit's answer named (an answer cut
            # short can name a garbled one) and shows any write that slipped past the
            # lock. The snapshot copy of the named version runs beside it (a copy of a
            # large master takes a while even server-side) and is redone in the rare
            # case that the listing names another. The audit needs both answers.
            with ThreadPoolExecutor(2, thread_name_prefix="s3grid-after-commit") as pool:
                confirming = pool.submit(self._confirm_commit, version_id, etag, expect, meta)
                copying = pool.submit(self._write_snapshot, version_id, snap_key)  # step 4
                confirmed, etag, overwritten = confirming.result()
                try:
                    copying.result()
                except S3GridError:
                    if confirmed == version_id:
                        raise
            if confirmed != version_id:
                version_id = confirmed
                self._write_snapshot(version_id, snap_key)
            record = self._audit_record(meta, version_id, etag, snap_key)
            if overwritten:
                record = replace(record, lost_update_of=list(overwritten))
            self._write_audit(akey, record)  # step 5
        except S3GridError as exc:
            if isinstance(exc, _SaveNotFound):
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

    def _confirm_commit(
        self, version_id: str, etag: str, expect: ExpectEtag, meta: SaveMetadata
    ) -> tuple[str, str, tuple[str, ...]]:
        """The committed ``(version_id, etag)`` as S3 lists them, and the versions between
        ours and our base: non-empty only if a write slipped past the lock.

        S3 lists a key's versions newest first; the one just before ours must be the base.
        When the commit's answer named a version the listing does not hold (headers cut
        mid-value), ours is found among the newest by its save id.

        Raises:
            StoreUnavailableError: the committed version cannot be found (maybe_committed).
        """
        key = self.cfg.master_key
        page = self.bucket.call(
            "list_object_versions",
            what=f"LIST VERSIONS {self.bucket.url(key)}",
            Prefix=key,
            MaxKeys=100,
        )
        listed = [v for v in page.get("Versions", []) if v["Key"] == key]
        ids = [v["VersionId"] for v in listed]
        if version_id not in ids:
            version_id = self._find_save(listed, expect, meta)
        etag = listed[ids.index(version_id)].get("ETag") or etag
        if expect.version_id is None:
            return version_id, etag, ()  # a first save: nothing to compare
        older = ids[ids.index(version_id) + 1 :]
        if not older or older[0] == expect.version_id:
            return version_id, etag, ()
        if expect.version_id in older:
            return version_id, etag, tuple(older[: older.index(expect.version_id)])
        return version_id, etag, (older[0],)

    def _find_save(
        self, listed: list[dict[str, Any]], expect: ExpectEtag, meta: SaveMetadata
    ) -> str:
        """The VersionId of save ``meta`` among the newest listed versions (newer than the base)."""
        for version in listed:
            if version["VersionId"] == expect.version_id:
                break
            head = self.bucket.head(self.cfg.master_key, version["VersionId"])
            found = SaveMetadata.from_s3(head.get("Metadata", {})) if head else None
            if found is not None and found.save_id == meta.save_id:
                return str(version["VersionId"])
        raise _SaveNotFound(
            f"The save to {self.cfg.uri} was committed, but S3's answer was garbled and its "
            f"version could not be found. Reload to see it, then run `s3grid reconcile`.",
            maybe_committed=True,
        )

    def _check_unchanged(self, expect: ExpectEtag) -> None:
        """Raise :class:`ConflictError` if the master is no longer the expected version."""
        url = self.bucket.url(self.cfg.master_key)
        try:
            current = self._head_master()
        except StoreUnavailableError as exc:
            raise _unreachable(url, exc) from exc
        expect.validate(current, key=url)

    def _head_master(self) -> dict[str, Any] | None:
        return self.bucket.head(self.cfg.master_key)

    def _commit(self, body: bytes, expect: ExpectEtag, meta: SaveMetadata) -> tuple[str, str]:
        """The compare-and-swap: PUT the master only if it is still the expected version.

        Returns ``(version_id, etag)`` of the committed version. Any doubt (a timeout, a
        412 after a resend) is settled by HEADing the master and comparing the save id.
        """
        key = self.cfg.master_key
        url = self.bucket.url(key)
        content_type = "text/csv" if self.cfg.file_format == "csv" else "application/octet-stream"

        def ours(head: dict[str, Any] | None) -> bool:
            if head is None:
                return False
            found = SaveMetadata.from_s3(head.get("Metadata", {}))
            if found is not None:
                return found.save_id == meta.save_id
            # no s3grid metadata in the answer (not ours, or its headers were cut): the
            # body names its save id too, so an ETag equal to our body's is our version
            return bool(head.get("ETag") == self.bucket.etag_of(body))

        for attempt in range(1, self.cfg.max_attempts + 1):
            try:
                resp = self.bucket.put(
                    key,
                    body,
                    retry=False,
                    Metadata=meta.to_s3(),
                    ContentType=content_type,
                    **expect.conditions(),
                )
                return resp.get("VersionId") or "null", resp["ETag"]
            except (ConflictError, MasterNotFoundError, StoreUnavailableError) as exc:
                sent = not isinstance(exc, StoreUnavailableError) or exc.maybe_committed
                try:
                    current = self._head_master()
                except StoreUnavailableError as head_exc:
                    if sent:
                        raise StoreUnavailableError(
                            f"The save to {url} may or may not have been committed: the "
                            f"connection failed ({exc}) and the master could not be checked. "
                            "Your edits are kept. When S3 is back, Reload to see whether "
                            f"save {meta.save_id} landed, and run `s3grid reconcile`.",
                            maybe_committed=True,
                        ) from head_exc
                    raise _unreachable(url, exc) from exc
                if ours(current):
                    assert current is not None
                    return current.get("VersionId") or "null", current["ETag"]
                retryable = isinstance(exc, StoreUnavailableError) or (
                    exc.code in ("ConditionalRequestConflict", "409")
                )
                expect.validate(current, key=url)  # raises ConflictError if moved on
                if not retryable or attempt == self.cfg.max_attempts:
                    if isinstance(exc, StoreUnavailableError):
                        raise StoreUnavailableError(
                            f"Could not save to {url} after {attempt} attempts ({exc}). "
                            "The master is unchanged; your edits are kept. Retry later.",
                        ) from exc
                    raise
                time.sleep(min(5.0, 0.2 * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_snapshot(self, version_id: str, snap_key: str) -> None:
        try:
            self.bucket.copy(self.cfg.master_key, version_id, snap_key, IfNoneMatch="*")
        except ConflictError:
            # The key names the save: taken means an earlier attempt whose answer was
            # lost (or a reconcile) copied this same version there.
            if self.bucket.head(snap_key) is None:
                raise

    def _write_audit(self, akey: str, record: AuditRecord) -> None:
        self.bucket.put(akey, record.to_line(), IfNoneMatch="*", ContentType="application/x-ndjson")

    def _audit_record(
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
            aws_identity=self.aws_identity(),
            original_source=meta.source if reconciled else None,
        )

    def aws_identity(self) -> str | None:
        """The caller's AWS ARN via STS, looked up once; None on non-AWS endpoints."""
        if self._identity is False:
            self._identity = None
            if not self.cfg.endpoint_url:
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
            parsed = audit_mod.parse_audit_key(self.cfg, obj["Key"])
            if parsed is None:
                continue
            day = parsed[0]
            if (lo and day < f"{lo:%Y-%m-%d}") or (hi and day > f"{hi:%Y-%m-%d}"):
                continue
            keys.append(obj["Key"])
        records = [
            (k, r)
            for k, r in zip(keys, self._map(self._read_audit, keys), strict=True)
            if r is not None and r.master_key == self.cfg.master_key
        ]
        frame = audit_mod.records_to_frame(records)
        if lo is not None:
            frame = frame[frame["timestamp"] >= pd.Timestamp(lo)]
        if hi is not None:
            frame = frame[frame["timestamp"] <= pd.Timestamp(hi)]
        return frame.reset_index(drop=True)

    def _read_audit(self, key: str) -> AuditRecord | None:
        """The record in one audit object; None, with a warning, for anything else.

        One malformed or foreign object under the audit prefix must not break the log
        (and prune, which reads it) for every user of the bucket.
        """
        body, _ = self.bucket.get(key)
        lines = body.decode("utf-8", errors="replace").splitlines()
        try:
            if not lines:
                raise S3GridError("the object is empty")
            return AuditRecord.from_line(lines[-1])
        except S3GridError as exc:
            warnings.warn(
                f"Skipped {self.bucket.url(key)}: {exc}. It is not an s3grid audit record; "
                "move it out of the audit prefix.",
                RuntimeWarning,
                stacklevel=2,
            )
            return None

    @staticmethod
    def _map(fn: Callable[[str], Any], items: Sequence[str]) -> list[Any]:
        # boto3 clients are thread-safe; audits are tiny, so latency dominates.
        if len(items) <= 1:
            return [fn(i) for i in items]
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(fn, items))

    def reconcile(self) -> list[Repair]:
        """Give every s3grid-made master version its missing snapshot and/or audit.

        Repairs a crash between the commit and the audit. Keys derive only from each
        version's own metadata, so running it again changes nothing.

        Raises:
            VersioningError: the bucket does not keep versions.
        """
        self.bucket.require_versioning(fresh=True)
        snapshots = {o["Key"] for o in self.bucket.list_objects(f"{self.cfg.snapshot_prefix}/")}
        audits = {o["Key"] for o in self.bucket.list_objects(f"{self.cfg.audit_prefix}/")}
        versions = list(reversed(list(self.bucket.list_versions(self.cfg.master_key))))
        heads = self._map(
            lambda vid: self.bucket.head(self.cfg.master_key, vid),
            [v["VersionId"] for v in versions],
        )
        repairs = []
        for head in heads:
            meta = SaveMetadata.from_s3(head.get("Metadata", {})) if head else None
            if head is None or meta is None:
                continue  # not written by s3grid: nothing to repair
            version_id = head.get("VersionId") or "null"
            snap_key = audit_mod.snapshot_key(self.cfg, meta.saved_at, meta.save_id)
            akey = audit_mod.audit_key(self.cfg, meta.saved_at, meta.save_id)
            wrote_snapshot = snap_key not in snapshots
            wrote_audit = akey not in audits
            if wrote_snapshot:
                wrote_snapshot = self._repair_write(
                    lambda: self._write_snapshot(version_id, snap_key)  # noqa: B023
                )
            if wrote_audit:
                record = self._audit_record(
                    meta, version_id, head["ETag"], snap_key, reconciled=True
                )
                wrote_audit = self._repair_write(
                    lambda: self._write_audit(akey, record)  # noqa: B023
                )
            if wrote_snapshot or wrote_audit:
                repairs.append(
                    Repair(version_id, meta.save_id, snap_key, akey, wrote_snapshot, wrote_audit)
                )
        return repairs

    @staticmethod
    def _repair_write(write: Callable[[], None]) -> bool:
        try:
            write()
        except ConflictError:
            return False  # IfNoneMatch: someone else (another reconcile) wrote it first
        return True


class _SaveNotFound(StoreUnavailableError):
    """A commit whose answer was garbled, and whose version the listing does not show."""


def _unreachable(url: str, exc: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"Could not save to {url}: S3 is unreachable ({exc}). Nothing was written; your "
        "edits are kept. Check the endpoint and retry.",
    )


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
