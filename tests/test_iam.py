"""The IAM policy covers exactly the S3 actions the commands use, on the resources they use."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest

from s3grid import ConflictError, MasterStore, S3GridConfig
from s3grid.aws_lambda import handler
from s3grid.cli import main
from s3grid.iam import iam_policy
from s3grid.store import S3Bucket
from tests.test_aws_lambda import SCHEDULE, stage


def actions_of(op: str, kw: dict[str, Any], bucket: str) -> list[tuple[str, str]]:
    """The IAM (action, resource) pairs one S3 API call needs."""
    obj = f"arn:aws:s3:::{bucket}/{kw.get('Key', '')}"
    read = "s3:GetObjectVersion" if kw.get("VersionId") else "s3:GetObject"
    if op in ("get_object", "head_object"):
        return [(read, obj)]
    if op in ("put_object", "create_multipart_upload", "upload_part", "complete_multipart_upload"):
        return [("s3:PutObject", obj)]
    if op == "abort_multipart_upload":
        return [("s3:AbortMultipartUpload", obj)]
    if op == "copy_object":
        src = kw["CopySource"]
        src_read = "s3:GetObjectVersion" if src.get("VersionId") else "s3:GetObject"
        return [(src_read, f"arn:aws:s3:::{bucket}/{src['Key']}"), ("s3:PutObject", obj)]
    if op == "delete_object":
        return [("s3:DeleteObject", obj)]
    if op == "delete_objects":
        return [
            ("s3:DeleteObject", f"arn:aws:s3:::{bucket}/{o['Key']}")
            for o in kw["Delete"]["Objects"]
        ]
    if op == "list_objects_v2":
        return [("s3:ListBucket", f"arn:aws:s3:::{bucket}")]
    if op == "list_object_versions":
        return [("s3:ListBucketVersions", f"arn:aws:s3:::{bucket}")]
    if op == "get_bucket_versioning":
        return [("s3:GetBucketVersioning", f"arn:aws:s3:::{bucket}")]
    raise AssertionError(f"unmapped S3 operation {op}")


def allowed(policy: dict[str, Any], action: str, resource: str) -> list[tuple[str, str]]:
    return [
        (st["Sid"], action)
        for st in policy["Statement"]
        if action in st["Action"] and any(fnmatch.fnmatchcase(resource, r) for r in st["Resource"])
    ]


def test_policy_covers_exactly_what_commands_do(
    cfg: S3GridConfig,
    s3: Any,
    bucket: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    used: list[tuple[str, str]] = []
    real_call = S3Bucket.call

    def recording_call(self: S3Bucket, op: str, **kw: Any) -> Any:
        used.extend(actions_of(op, kw, self.name))
        return real_call(self, op, **kw)

    monkeypatch.setattr(S3Bucket, "call", recording_call)
    monkeypatch.setenv("S3_BUCKET", cfg.bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", cfg.endpoint_url or "")
    store = MasterStore(cfg)

    import pyarrow.parquet as pq

    from s3grid.sample import sample_master

    pq.write_table(sample_master(50), tmp_path / "m.parquet")
    assert main(["init", str(tmp_path / "m.parquet")]) == 0
    for i in range(3):
        m = store.load()
        df = m.to_pandas()
        df.loc[0, "volume_filtered"] = float(i)
        store.save(df, base=m, note=f"edit {i}")
    in_parts = MasterStore(cfg.with_(multipart_bytes=1024))  # a large master's save
    m = in_parts.load()
    in_parts.save(m.table, base=m, note="in parts")
    # A stale one, racing a save that lands after its look at the master: the
    # conditional complete refuses it, and the upload is aborted.
    monkeypatch.setattr(in_parts, "_check_unchanged", lambda expect: None)
    with pytest.raises(ConflictError):
        in_parts.save(m.table, base=m, note="stale, in parts")
    first = store.versions()[-1].version_id
    snap = store.audit_log().iloc[0]["snapshot_key"]
    assert main(["audit", "--json"]) == 0
    assert main(["restore", "--version-id", first, "--note", "r1"]) == 0
    assert main(["restore", "--snapshot-key", snap, "--note", "r2"]) == 0
    s3.delete_object(Bucket=bucket, Key=store.audit_log().iloc[-1]["audit_key"])
    monkeypatch.setattr(S3Bucket, "call", real_call)
    s3.delete_object(Bucket=bucket, Key=store.audit_log().iloc[-2]["snapshot_key"])
    monkeypatch.setattr(S3Bucket, "call", recording_call)
    assert main(["reconcile"]) == 0
    stage(store, s3, bucket, 5.0)
    assert main(["flatten", "--prefix", "staging/data/master.parquet/next/"]) == 0
    stage(store, s3, bucket, 6.0)  # the flatten emptied staging: a new run's output
    assert handler(SCHEDULE, None)["status"] == "promoted"
    assert main(["prune", "--keep", "2", "--apply"]) == 0
    capsys.readouterr()
    assert main(["iam-policy"]) == 0
    policy = json.loads(capsys.readouterr().out)
    assert policy == iam_policy(cfg)

    uncovered = sorted({u for u in used if not allowed(policy, *u)})
    assert uncovered == []
    granted = {(st["Sid"], a) for st in policy["Statement"] for a in st["Action"]}
    exercised = {g for u in set(used) for g in allowed(policy, *u)}
    assert granted - exercised == set()  # nothing granted that no command needs


def test_athena_policy_adds_athena_glue_and_results(cfg: S3GridConfig) -> None:
    policy = iam_policy(
        cfg.with_(
            athena_work_group="lab-wg",
            athena_database="lab",
            athena_s3_staging_dir="s3://lab-results/athena/",
        ),
        athena=True,
        region="us-west-2",
        account="123456789012",
    )
    by_sid = {st["Sid"]: st for st in policy["Statement"]}
    assert by_sid["Athena"]["Resource"] == [
        "arn:aws:athena:us-west-2:123456789012:workgroup/lab-wg"
    ]
    assert "glue:CreateTable" in by_sid["Glue"]["Action"]
    assert "arn:aws:glue:us-west-2:123456789012:table/lab/*" in by_sid["Glue"]["Resource"]
    assert by_sid["AthenaResults"]["Resource"] == [
        "arn:aws:s3:::lab-results",
        "arn:aws:s3:::lab-results/athena/*",
    ]
    assert (
        f"arn:aws:s3:::{cfg.bucket}/staging/data/master.parquet/next/*"
        in (by_sid["AthenaData"]["Resource"])
    )
