"""A least-privilege IAM policy for one master's bucket layout. Pure: builds JSON only.

Each statement grants only what the s3grid commands do on that part of the layout
(``tests/test_iam.py`` runs every command and checks the policy covers exactly that).
"""

from __future__ import annotations

import re
from typing import Any

from s3grid.config import S3GridConfig
from s3grid.errors import ValidationError
from s3grid.layout import staging_prefix as checked_staging
from s3grid.layout import staging_root
from s3grid.sqlcheck import check_identifier, check_location

__all__ = ["iam_policy"]


def iam_policy(
    cfg: S3GridConfig,
    *,
    staging_prefix: str | None = None,
    athena: bool = False,
    athena_results: str | None = None,
    iceberg_location: str | None = None,
    region: str = "*",
    account: str = "*",
) -> dict[str, Any]:
    """The policy document for ``cfg``'s master, snapshots, audits, archive and staging.

    Args:
        cfg: the master's configuration.
        staging_prefix: a staging folder outside the master's own
            (``staging/<master key>/``), e.g. the Lambda's ``S3GRID_STAGING_PREFIX``.
        athena: add Athena, Glue, the query-results location and what Athena writes.
        athena_results: ``s3://bucket/prefix/`` of Athena results (``ATHENA_S3_STAGING_DIR``).
        iceberg_location: ``s3://bucket/prefix/`` of an Iceberg table's data (Athena
            reads, writes and, on VACUUM, deletes its files there).
        region: region for Athena/Glue ARNs.
        account: account id for Athena/Glue ARNs.
    """
    b = f"arn:aws:s3:::{cfg.bucket}"
    staging = [f"{b}/{staging_root(cfg)}*"]
    extra = checked_staging(cfg, staging_prefix) if staging_prefix else None
    if extra and not extra.startswith(staging_root(cfg)):
        staging.append(f"{b}/{extra}*")
    statements: list[dict[str, Any]] = [
        {
            "Sid": "Master",
            "Effect": "Allow",
            # PutObject with IfMatch/IfNoneMatch is the lock; no DeleteObject on the master.
            # AbortMultipartUpload: a large save that fails or conflicts cleans up its parts.
            "Action": [
                "s3:GetObject",
                "s3:GetObjectVersion",
                "s3:PutObject",
                "s3:AbortMultipartUpload",
            ],
            "Resource": [f"{b}/{cfg.master_key}"],
        },
        {
            "Sid": "SavesHistory",
            "Effect": "Allow",
            # DeleteObject: prune moves old saves to the archive.
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": [
                f"{b}/{cfg.snapshot_prefix}/*",
                f"{b}/{cfg.changes_prefix}/*",
                f"{b}/{cfg.audit_prefix}/*",
            ],
        },
        {
            "Sid": "Archive",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": [f"{b}/{cfg.archive_prefix}/*"],
        },
        {
            "Sid": "Staging",  # flatten reads the parts; a promotion empties them after
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:DeleteObject"],
            "Resource": staging,
        },
        {
            "Sid": "List",
            "Effect": "Allow",
            # s3grid checks that versioning is on before it writes
            "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning"],
            "Resource": [b],
        },
    ]
    if cfg.commit == "copy":
        statements.append(
            {
                "Sid": "StreamedSaves",  # S3GRID_COMMIT=copy
                "Effect": "Allow",
                # the commit copies the snapshot's version onto the master; a failed
                # upload to the snapshot is aborted (a refused one is deleted, above)
                "Action": ["s3:GetObjectVersion", "s3:AbortMultipartUpload"],
                "Resource": [f"{b}/{cfg.snapshot_prefix}/*"],
            }
        )
    if athena:
        statements += _athena_statements(
            cfg, staging, athena_results, iceberg_location, region, account
        )
    return {"Version": "2012-10-17", "Statement": statements}


# What Athena does with the caller's credentials when it writes query output (results,
# UNLOAD, Iceberg data): multipart uploads, listed and aborted when a query fails.
_ATHENA_WRITES = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]


def _athena_statements(
    cfg: S3GridConfig,
    staging: list[str],
    athena_results: str | None,
    iceberg_location: str | None,
    region: str,
    account: str,
) -> list[dict[str, Any]]:
    wg = cfg.athena_work_group or "primary"
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", wg):  # Athena's own rule for names
        raise ValidationError(f"Invalid Athena work group {wg!r}.")
    db = check_identifier(cfg.athena_database or "default", what="database")
    b = f"arn:aws:s3:::{cfg.bucket}"
    folder = cfg.master_key.rpartition("/")[0]
    statements: list[dict[str, Any]] = [
        # Athena reads the master's folder (only reads: the master changes by the lock).
        {
            "Sid": "AthenaReadsMaster",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{b}/{folder}/*" if folder else f"{b}/*"],
        },
        # UNLOAD output, run manifests, CSV masters' Parquet copies, Iceberg seed records.
        {
            "Sid": "AthenaStaging",
            "Effect": "Allow",
            "Action": list(_ATHENA_WRITES),
            "Resource": staging,
        },
        {
            "Sid": "AthenaListUploads",
            "Effect": "Allow",
            "Action": ["s3:ListBucketMultipartUploads", "s3:GetBucketLocation"],
            "Resource": [b],
        },
        {
            "Sid": "Athena",
            "Effect": "Allow",
            "Action": [
                "athena:StartQueryExecution",
                "athena:GetQueryExecution",
                "athena:GetQueryResults",
                "athena:StopQueryExecution",
            ],
            "Resource": [f"arn:aws:athena:{region}:{account}:workgroup/{wg}"],
        },
        {
            "Sid": "Glue",
            "Effect": "Allow",
            # UpdateTable: every Iceberg commit (INSERT, MERGE, UPDATE, DELETE, OPTIMIZE)
            "Action": [
                "glue:GetDatabase",
                "glue:GetTable",
                "glue:CreateTable",
                "glue:DeleteTable",
                "glue:UpdateTable",
                "glue:GetPartitions",
            ],
            "Resource": [
                f"arn:aws:glue:{region}:{account}:catalog",
                f"arn:aws:glue:{region}:{account}:database/{db}",
                f"arn:aws:glue:{region}:{account}:table/{db}/*",
            ],
        },
    ]
    for sid, location, actions in (
        ("AthenaResults", athena_results or cfg.athena_s3_staging_dir, ["s3:GetObject"]),
        ("IcebergData", iceberg_location, ["s3:GetObject", "s3:DeleteObject"]),
    ):
        if not location:
            continue
        rb, _, rp = check_location(location).removeprefix("s3://").partition("/")
        statements += [
            {
                "Sid": sid,
                "Effect": "Allow",
                "Action": [*actions, *_ATHENA_WRITES],
                "Resource": [f"arn:aws:s3:::{rb}/{rp}*"],
            },
            {
                "Sid": sid + "List",
                "Effect": "Allow",
                "Action": [
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                    "s3:GetBucketLocation",
                ],
                "Resource": [f"arn:aws:s3:::{rb}"],
            },
        ]
    return statements
