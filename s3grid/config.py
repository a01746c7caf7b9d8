"""Configuration: one frozen value, read from the environment only when asked."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from s3grid.errors import ConfigError

__all__ = ["S3GridConfig"]

FILE_FORMATS = ("parquet", "csv")
COMMITS = ("put", "copy")


def _clean_prefix(value: str, name: str) -> str:
    prefix = value.strip().strip("/")
    if not prefix:
        raise ConfigError(f"{name} must not be empty.")
    return prefix


@dataclass(frozen=True)
class S3GridConfig:
    """Where the master lives and how to reach it.

    Attributes:
        bucket: the versioned S3 bucket holding the master (``S3_BUCKET``).
        master_key: the master object's key (``S3_MASTER_KEY``).
        snapshot_prefix: prefix of immutable snapshots (``S3_SNAPSHOT_PREFIX``).
        audit_prefix: prefix of JSONL audit records (``S3_AUDIT_PREFIX``).
        file_format: ``"parquet"`` (default) or ``"csv"`` (``S3_FILE_FORMAT``).
        archive_prefix: where pruned saves go (``S3_ARCHIVE_PREFIX``).
        changes_prefix: prefix of each save's changeset, the cells it changed
            (``S3_CHANGES_PREFIX``).
        endpoint_url: an S3-compatible endpoint (``S3_ENDPOINT_URL``); ``None`` lets boto3
            decide, so ``AWS_ENDPOINT_URL_S3`` keeps working.
        profile: an AWS profile name (``AWS_PROFILE``); ``None`` uses boto3's default chain.
        region: AWS region; ``None`` uses boto3's default chain.
        key_columns: columns that identify a row; ``None`` means ``("tow", "net")`` when
            both exist, else no key (``S3GRID_KEY_COLUMNS``, comma-separated).
        max_attempts: attempts per S3 request for transient failures.
        multipart_bytes: a master body larger than this is uploaded in parts, in
            parallel and while it encodes, and committed by a conditional
            ``CompleteMultipartUpload``; up to it, by one conditional PUT (at most 5 GiB,
            S3's single-PUT limit; ``S3GRID_MULTIPART_BYTES``). ``None``:
            32 MiB on AWS; on any other store (by the client's real endpoint) always one
            PUT, as S3-compatible stores (moto among them) do not all honour
            ``If-Match`` on the complete atomically (see ``S3Bucket.multipart_threshold``).
        compression: the Parquet codec of saved masters (``S3GRID_COMPRESSION``):
            ``snappy`` (default), ``zstd``, ``lz4``, ``gzip``, ``brotli`` or ``none``,
            with a level as ``zstd:3``. snappy encodes fastest and makes encode + upload
            cheapest over fast links (next to S3); over a slow uplink ``zstd``'s smaller
            body wins (docs/performance.md has the break-even). Any codec loads.
        commit: how a save's body reaches the master (``S3GRID_COMMIT``). ``"put"``
            (default): encode the whole body, then one conditional PUT (or a multipart
            upload with a conditional complete, per ``multipart_bytes``); the snapshot
            is copied from the new version afterwards. ``"copy"``: the body goes up in
            parts to its snapshot key *while* it encodes, then a conditional
            ``CopyObject`` onto the master commits it (and the snapshot is already
            written). Faster for large masters, but only as safe as the store's
            conditional copy: use it where ``s3grid check-store`` reports "CopyObject
            with If-Match" ok (AWS documents conditional copies; SeaweedFS passes).
        connect_timeout: seconds to wait for a TCP connection.
        read_timeout: seconds to wait for a response.
        athena_work_group: Athena work group (``ATHENA_WORK_GROUP``).
        athena_s3_staging_dir: Athena query result location (``ATHENA_S3_STAGING_DIR``).
        athena_database: Glue database (``ATHENA_DATABASE``).
    """

    bucket: str
    master_key: str = "data/master.parquet"
    snapshot_prefix: str = "snapshots"
    audit_prefix: str = "audit"
    file_format: str = "parquet"
    archive_prefix: str = "archive/streamlit"
    changes_prefix: str = "changes"
    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    key_columns: tuple[str, ...] | None = None
    max_attempts: int = 4
    multipart_bytes: int | None = None
    compression: str = "snappy"
    commit: str = "put"
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    athena_work_group: str | None = None
    athena_s3_staging_dir: str | None = None
    athena_database: str | None = None

    def __post_init__(self) -> None:
        if not self.bucket or not self.bucket.strip():
            raise ConfigError(
                "No bucket configured: set the S3_BUCKET environment variable "
                "or pass S3GridConfig(bucket=...)."
            )
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "bucket", self.bucket.strip())
        key = self.master_key.strip().lstrip("/")
        if not key or key.endswith("/"):
            raise ConfigError(
                f"S3_MASTER_KEY must name an object, not {self.master_key!r} "
                "(for example data/master.parquet)."
            )
        set_(self, "master_key", key)
        for name in ("snapshot_prefix", "audit_prefix", "archive_prefix", "changes_prefix"):
            set_(self, name, _clean_prefix(getattr(self, name), name))
        fmt = self.file_format.strip().lower()
        if fmt not in FILE_FORMATS:
            raise ConfigError(
                f"S3_FILE_FORMAT={self.file_format!r} is not supported; use one of {FILE_FORMATS}."
            )
        set_(self, "file_format", fmt)
        set_(self, "endpoint_url", _clean_endpoint(self.endpoint_url))
        if self.key_columns is not None:
            set_(self, "key_columns", tuple(self.key_columns))
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1.")
        if self.multipart_bytes is not None and not 0 < self.multipart_bytes <= 5 * 1024**3:
            raise ConfigError(
                f"multipart_bytes={self.multipart_bytes} (S3GRID_MULTIPART_BYTES) must be above "
                "0 and at most 5 GiB (the largest body S3 takes in one PUT)."
            )

        set_(self, "compression", _clean_compression(self.compression))
        commit = str(self.commit).strip().lower()
        if commit not in COMMITS:
            raise ConfigError(
                f"S3GRID_COMMIT={self.commit!r} is not a way to commit; use put (the default) "
                "or copy (streamed, where `s3grid check-store` passes the copy race)."
            )
        set_(self, "commit", commit)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> S3GridConfig:
        """Build a config from environment variables; keyword overrides win.

        Args:
            environ: the mapping to read (default: ``os.environ`` at call time).
            **overrides: field values that replace what the environment says; ``None``
                values are ignored so CLI flags can be passed through unconditionally.

        Raises:
            ConfigError: no bucket is set, or a value is invalid.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value else None

        keys = get("S3GRID_KEY_COLUMNS")
        values: dict[str, Any] = {
            "bucket": get("S3_BUCKET") or "",
            "master_key": get("S3_MASTER_KEY"),
            "snapshot_prefix": get("S3_SNAPSHOT_PREFIX"),
            "audit_prefix": get("S3_AUDIT_PREFIX"),
            "file_format": get("S3_FILE_FORMAT"),
            "archive_prefix": get("S3_ARCHIVE_PREFIX"),
            "changes_prefix": get("S3_CHANGES_PREFIX"),
            "endpoint_url": get("S3_ENDPOINT_URL") or get("AWS_ENDPOINT_URL_S3"),
            "profile": get("AWS_PROFILE"),
            "region": get("AWS_REGION") or get("AWS_DEFAULT_REGION"),
            "key_columns": tuple(k.strip() for k in keys.split(",") if k.strip()) if keys else None,
            "compression": get("S3GRID_COMPRESSION"),
            "commit": get("S3GRID_COMMIT"),
            "multipart_bytes": _bytes_env("S3GRID_MULTIPART_BYTES", get("S3GRID_MULTIPART_BYTES")),
            "athena_work_group": get("ATHENA_WORK_GROUP"),
            "athena_s3_staging_dir": get("ATHENA_S3_STAGING_DIR"),
            "athena_database": get("ATHENA_DATABASE"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if v is not None})

    def with_(self, **changes: Any) -> S3GridConfig:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def stem(self) -> str:
        """The master's file name without extension (``master`` for data/master.parquet)."""
        name = posixpath.basename(self.master_key)
        root, ext = posixpath.splitext(name)
        return root if ext else name

    @property
    def ext(self) -> str:
        """The extension used for snapshots: the master key's, else the file format."""
        _, ext = posixpath.splitext(self.master_key)
        return ext.lstrip(".").lower() or self.file_format

    @property
    def uri(self) -> str:
        """``s3://bucket/master_key``."""
        return f"s3://{self.bucket}/{self.master_key}"


COMPRESSIONS = ("snappy", "zstd", "lz4", "gzip", "brotli", "none")
_LEVELS = {"zstd": range(1, 23), "gzip": range(1, 10), "brotli": range(0, 12)}


def _bytes_env(name: str, text: str | None) -> int | None:
    """A byte count from the environment variable ``name`` (``None`` when unset)."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigError(
            f"{name}={text!r} is not a number of bytes; give one (33554432 for 32 MiB) or unset it."
        ) from None


def _clean_compression(text: str) -> str:
    """``codec`` or ``codec:level``, lower-cased and checked."""
    codec, colon, level = str(text).strip().lower().partition(":")
    hint = (
        f"S3GRID_COMPRESSION={text!r} is not a Parquet codec s3grid writes; use one of "
        f"{', '.join(COMPRESSIONS)}, with a level for zstd (1-22), gzip (1-9) or brotli "
        "(0-11) as zstd:3."
    )
    if codec not in COMPRESSIONS:
        raise ConfigError(hint)
    if colon:
        if codec not in _LEVELS or not level.isdigit() or int(level) not in _LEVELS[codec]:
            raise ConfigError(hint)
        return f"{codec}:{int(level)}"
    return codec


def _clean_endpoint(url: str | None) -> str | None:
    """The endpoint URL, checked: ``http(s)://host[:port][/path]``; blank means none."""
    if url is None or not str(url).strip():
        return None
    text = str(url).strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"S3_ENDPOINT_URL {text!r} is not a valid URL ({exc}).") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"S3_ENDPOINT_URL {text!r} is not a URL; give one such as http://127.0.0.1:9000 "
            "(or leave it unset for AWS)."
        )
    return text
