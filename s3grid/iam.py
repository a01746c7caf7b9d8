"""A least-privilege IAM policy for one master's bucket layout. Pure: builds JSON only.

Each statement grants only what the s3grid commands do on that part of the layout
(``tests/test_iam.py`` runs every command and checks the policy covers exactly that).
"""

from __future__ import annotations

import re
from typing import Any

from s3grid.config import S3GridConfig
from s3grid.errors import ValidationError
from s3grid.sqlcheck import check_identifier

__all__ = ["iam_policy"]


def iam_policy(
    cfg: S3GridConfig,
    *,
    staging_prefix: str | None = None,
    athena: bool = False,
    athena_results: str | None = None,
    region: str = "*",
    account: str = "*",
) -> dict[str, Any]:
    """The policy document for ``cfg``'s master, snapshots, audits, archive and staging.

    Args:
        cfg: the master's configuration.
        staging_prefix: the part-file staging folder (flatten, Lambda, Athena CTAS).
        athena: add Athena, Glue and the query-results location.
        athena_results: ``s3://bucket/prefix/`` of Athena results (``ATHENA_S3_STAGING_DIR``).
        region: region for Athena/Glue ARNs.
        account: account id for Athena/Glue ARNs.
    """
    from s3grid.flatten import staging_prefix as checked_staging

    b = f"arn:aws:s3:::{cfg.bucket}"
    staging = checked_staging(cfg, staging_prefix)
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
            "Sid": "SnapshotsAndAudits",
            "Effect": "Allow",
            # DeleteObject: prune moves old saves to the archive.
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": [f"{b}/{cfg.snapshot_prefix}/*", f"{b}/{cfg.audit_prefix}/*"],
        },
        {
            "Sid": "Archive",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": [f"{b}/{cfg.archive_prefix}/*"],
        },
        {
            "Sid": "Staging",  # flatten reads the parts; the Lambda empties them after
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:DeleteObject"],
            "Resource": [f"{b}/{staging}*"],
        },
        {
            "Sid": "List",
            "Effect": "Allow",
            # s3grid checks that versioning is on before it writes
            "Action": ["s3:ListBucket", "s3:ListBucketVersions", "s3:GetBucketVersioning"],
            "Resource": [b],
        },
    ]
    if athena:
        wg = cfg.athena_work_group or "primary"
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", wg):  # Athena's own rule for names
            raise ValidationError(f"Invalid Athena work group {wg!r}.")
        db = check_identifier(cfg.athena_database or "default", what="database")
        results = athena_results or cfg.athena_s3_staging_dir
        folder = cfg.master_key.rpartition("/")[0]
        statements.append(
            # Athena reads the master's folder and writes CTAS parts with your credentials.
            {
                "Sid": "AthenaData",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": [f"{b}/{folder}/*", f"{b}/{staging}*"],
            }
        )
        statements.append(
            # IcebergTable records the master version an Iceberg table was seeded from.
            {
                "Sid": "IcebergSeeds",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": [f"{b}/staging/{cfg.stem}_iceberg_*"],
            }
        )
        statements += [
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
                "Action": [
                    "glue:GetDatabase",
                    "glue:GetTable",
                    "glue:CreateTable",
                    "glue:DeleteTable",
                    "glue:GetPartitions",
                ],
                "Resource": [
                    f"arn:aws:glue:{region}:{account}:catalog",
                    f"arn:aws:glue:{region}:{account}:database/{db}",
                    f"arn:aws:glue:{region}:{account}:table/{db}/*",
                ],
            },
        ]
        if results:
            rb, _, rp = results.removeprefix("s3://").partition("/")
            statements.append(
                {
                    "Sid": "AthenaResults",
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObject",
                        "s3:PutObject",
                        "s3:ListBucket",
                        "s3:GetBucketLocation",
                    ],
                    "Resource": [f"arn:aws:s3:::{rb}", f"arn:aws:s3:::{rb}/{rp}*"],
                }
            )
    return {"Version": "2012-10-17", "Statement": statements}
