"""Every key and prefix s3grid writes in the bucket besides the master.

Snapshots, audits and changesets::

    <snapshot_prefix>/<stem>_<YYYYMMDDTHHMMSS>_<save_id>.<ext>
    <audit_prefix>/<YYYY-MM-DD>/<stem>_<YYYYMMDDTHHMMSS>_<save_id>.jsonl
    <changes_prefix>/<YYYY-MM-DD>/<stem>_<YYYYMMDDTHHMMSS>_<save_id>.parquet
    <archive_prefix>/<YYYYMMDD>/snapshot_<VersionId>.<ext>, audit_<VersionId>.jsonl,
                                changes_<VersionId>.parquet

A changeset sits under a prefix of its own rather than beside its audit, so the audit
prefix keeps only audits: the seed's snippet (newest object there by LastModified, whole
seconds) must find the audit, not a changeset written in the same second.

Staged query output: one folder per master, one per run. Every staging key derives from
the master's key, so two masters in one bucket (even two called ``master.parquet`` in
different folders) never share staged output::

    staging/<master key>/next/                 output to promote: a CTAS or UNLOAD run
                                               outside s3grid, the Lambda's default
    staging/<master key>/runs/<run id>/        one Athena run that s3grid started
    staging/<master key>/sources/<run id>/     a run's Parquet copy of a CSV master
    staging/<master key>/iceberg/<table>.json  the master version an Iceberg table holds

Scratch objects of ``s3grid check-store``, removed (every version) when it ends::

    s3grid-check-store/<run id>/

Pure: builds and checks keys, no I/O.
"""

from __future__ import annotations

import posixpath
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from s3grid.errors import ValidationError
from s3grid.sqlcheck import check_identifier, check_location

__all__ = [
    "archive_keys",
    "audit_key",
    "audit_key_pattern",
    "changeset_key",
    "check_store_prefix",
    "iceberg_seed_key",
    "is_run_prefix",
    "new_run_id",
    "parse_audit_key",
    "promote_prefix",
    "run_prefix",
    "snapshot_key",
    "snapshot_key_pattern",
    "source_prefix",
    "staging_prefix",
    "staging_root",
]

_STAMP = "%Y%m%dT%H%M%S"  # whole seconds; the save id orders saves within one


def snapshot_key(cfg: Any, saved_at: datetime, save_id: str) -> str:
    """``<snapshot_prefix>/<stem>_<YYYYMMDDTHHMMSS>_<save_id>.<ext>``."""
    stamp = saved_at.astimezone(UTC).strftime(_STAMP)
    return f"{cfg.snapshot_prefix}/{cfg.stem}_{stamp}_{save_id}.{cfg.ext}"


def snapshot_key_pattern(cfg: Any) -> re.Pattern[str]:
    """What the snapshot keys of this master look like (``save_id`` is a group); other
    masters' snapshots under the same prefix do not match."""
    return re.compile(
        rf"^{re.escape(cfg.snapshot_prefix)}/{re.escape(cfg.stem)}_\d{{8}}T\d{{6}}_"
        rf"(?P<save_id>[0-9a-f]+)\.{re.escape(cfg.ext)}$"
    )


def audit_key(cfg: Any, saved_at: datetime, save_id: str) -> str:
    """``<audit_prefix>/<YYYY-MM-DD>/<stem>_<YYYYMMDDTHHMMSS>_<save_id>.jsonl``."""
    utc = saved_at.astimezone(UTC)
    return f"{cfg.audit_prefix}/{utc:%Y-%m-%d}/{cfg.stem}_{utc.strftime(_STAMP)}_{save_id}.jsonl"


def changeset_key(cfg: Any, saved_at: datetime, save_id: str) -> str:
    """``<changes_prefix>/<YYYY-MM-DD>/<stem>_<YYYYMMDDTHHMMSS>_<save_id>.parquet``."""
    utc = saved_at.astimezone(UTC)
    stamp = utc.strftime(_STAMP)
    return f"{cfg.changes_prefix}/{utc:%Y-%m-%d}/{cfg.stem}_{stamp}_{save_id}.parquet"


def audit_key_pattern(cfg: Any) -> re.Pattern[str]:
    """What the audit keys of this master look like."""
    return re.compile(
        rf"^{re.escape(cfg.audit_prefix)}/(?P<date>\d{{4}}-\d{{2}}-\d{{2}})/"
        rf"{re.escape(cfg.stem)}_(?P<stamp>\d{{8}}T\d{{6}})_(?P<save_id>[0-9a-f]+)\.jsonl$"
    )


def parse_audit_key(cfg: Any, key: str) -> tuple[str, str] | None:
    """``(date, save_id)`` if ``key`` is an s3grid audit of this master's stem, else None.

    Anything else under the audit prefix (``audit/glue/...``, other tools' logs) is not ours.
    """
    match = audit_key_pattern(cfg).match(key)
    return (match["date"], match["save_id"]) if match else None


def archive_keys(cfg: Any, day: str, version_id: str) -> tuple[str, str, str]:
    """``(snapshot, audit, changeset)`` keys in the archive for a save of UTC date
    ``day`` (``YYYYMMDD``) that wrote ``version_id``."""
    base = f"{cfg.archive_prefix}/{day}"
    return (
        f"{base}/snapshot_{version_id}.{cfg.ext}",
        f"{base}/audit_{version_id}.jsonl",
        f"{base}/changes_{version_id}.parquet",
    )


# Athena takes locations of these characters only (see sqlcheck.check_location).
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-=/]")


def staging_root(cfg: Any) -> str:
    """``staging/<master key>/``: everything staged for this master, and nothing else.

    Characters Athena refuses in a location become ``_``.
    """
    return f"staging/{_UNSAFE.sub('_', cfg.master_key)}/"


def promote_prefix(cfg: Any) -> str:
    """``staging/<master key>/next/``: where output to promote is written by queries
    s3grid does not start (the Athena console, a Step Functions UNLOAD), and where the
    Lambda handler and ``s3grid flatten`` look by default."""
    return staging_root(cfg) + "next/"


def check_store_prefix(run_id: str) -> str:
    """``s3grid-check-store/<run id>/``: the store check's scratch keys, outside any
    master's folders."""
    return f"s3grid-check-store/{run_id}/"


def new_run_id() -> str:
    """A run id that sorts by start time: ``20261201T123456Z_1a2b3c4d``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}_{uuid.uuid4().hex[:8]}"


def run_prefix(cfg: Any, run_id: str) -> str:
    """``staging/<master key>/runs/<run id>/``: one run's output and manifest."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", run_id):
        raise ValidationError(f"Invalid run id {run_id!r}.")
    return f"{staging_root(cfg)}runs/{run_id}/"


def source_prefix(cfg: Any, run_id: str) -> str:
    """``staging/<master key>/sources/<run id>/``: what one run reads, when not the master."""
    return run_prefix(cfg, run_id).replace("/runs/", "/sources/", 1)


def is_run_prefix(cfg: Any, prefix: str) -> bool:
    """Whether ``prefix`` is (inside) a folder of runs that s3grid started: such output
    is whole only once its run manifest is written."""
    return prefix.startswith(staging_root(cfg) + "runs/")


def iceberg_seed_key(cfg: Any, table: str) -> str:
    """``staging/<master key>/iceberg/<table>.json``: the version an Iceberg table holds."""
    return f"{staging_root(cfg)}iceberg/{check_identifier(table, what='table name')}.json"


def staging_prefix(cfg: Any, prefix: str | None = None) -> str:
    """A staging folder for part files, checked safe to empty; default
    :func:`promote_prefix`.

    Raises:
        ValidationError: no trailing ``/``, characters Athena refuses, a prefix that
            holds the master, or one inside the master's folder (which Athena reads as
            the master table).
    """
    prefix = prefix or promote_prefix(cfg)
    check_location(f"s3://{cfg.bucket}/{prefix}")
    if cfg.master_key.startswith(prefix) or prefix.rstrip("/") == cfg.master_key:
        raise ValidationError(
            f"The staging prefix {prefix!r} contains the master {cfg.master_key!r}; "
            "emptying it would delete the master. Choose another prefix."
        )
    folder = posixpath.dirname(cfg.master_key)
    if folder and prefix.startswith(folder + "/"):
        raise ValidationError(
            f"The staging prefix {prefix!r} is inside the master's folder, which Athena "
            "reads as the master table. Choose a prefix outside it."
        )
    return prefix
