"""The IAM policy covers exactly the S3 actions the commands use, on the resources they use."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from s3grid import ConflictError, MasterStore, S3GridConfig, StoreUnavailableError
from s3grid.aws_lambda import handler
from s3grid.cli import main
from s3grid.iam import iam_policy
from s3grid.s3 import S3Bucket
from tests.support.athena import FakeAthena, read_results_from
from tests.support.events import SCHEDULE, stage


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


class S3Actions:
    """The IAM (action, resource) pairs of every call through ``S3Bucket.call`` while
    ``recording`` (set it False for setup steps that are not a command's)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.used: list[tuple[str, str]] = []
        self.recording = True
        real = S3Bucket.call

        def call(bucket: S3Bucket, op: str, **kw: Any) -> Any:
            if self.recording:
                self.used.extend(actions_of(op, kw, bucket.name))
            return real(bucket, op, **kw)

        monkeypatch.setattr(S3Bucket, "call", call)


def coverage(
    policy: dict[str, Any], used: list[tuple[str, str]], sids: set[str] | None = None
) -> tuple[list[tuple[str, str]], set[tuple[str, str]]]:
    """``(uncovered, unused)``: what was used but not allowed, and what the statements
    ``sids`` (default: all) grant that nothing used."""
    uncovered = sorted({u for u in used if not allowed(policy, *u)})
    granted = {
        (st["Sid"], a)
        for st in policy["Statement"]
        if sids is None or st["Sid"] in sids
        for a in st["Action"]
    }
    exercised = {g for u in set(used) for g in allowed(policy, *u)}
    return uncovered, granted - exercised


def test_policy_covers_exactly_what_commands_do(
    cfg: S3GridConfig,
    s3: Any,
    bucket: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    actions = S3Actions(monkeypatch)
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
    monkeypatch.setattr(in_parts, "look_first", False)
    with pytest.raises(ConflictError):
        in_parts.save(m.table, base=m, note="stale, in parts")
    first = store.versions()[-1].version_id
    snap = store.audit_log().iloc[0]["snapshot_key"]
    assert main(["audit", "--json"]) == 0
    assert main(["restore", "--version-id", first, "--note", "r1"]) == 0
    assert main(["restore", "--snapshot-key", snap, "--note", "r2"]) == 0
    s3.delete_object(Bucket=bucket, Key=store.audit_log().iloc[-1]["audit_key"])
    actions.recording = False
    s3.delete_object(Bucket=bucket, Key=store.audit_log().iloc[-2]["snapshot_key"])
    actions.recording = True
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

    uncovered, unused = coverage(policy, actions.used)
    assert uncovered == []
    assert unused == set()  # nothing granted that no command needs


def test_streamed_saves_get_exactly_what_they_use(
    master_store: MasterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("s3grid.s3.PART_BYTES", 5 * 1024**2)
    from s3grid.sample import sample_master

    actions = S3Actions(monkeypatch)
    streamed = MasterStore(master_store.cfg.with_(commit="copy"))
    m = streamed.load()
    streamed.save(sample_master(300_000), base=m, note="streamed, in parts")
    monkeypatch.setattr(streamed, "look_first", False)
    with pytest.raises(ConflictError):  # refused: its snapshot is deleted
        streamed.save(sample_master(300_000), base=m, note="stale")
    real = streamed.bucket.client.upload_part

    def fail_second(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2:
            raise EndpointConnectionError(endpoint_url="http://local")  # then it is aborted
        return real(**kwargs)

    monkeypatch.setattr(streamed.bucket.client, "upload_part", fail_second)
    with pytest.raises(StoreUnavailableError):
        streamed.save(sample_master(300_000), base=streamed.load(), note="cut off")
    policy = iam_policy(streamed.cfg)
    uncovered, unused = coverage(policy, actions.used, {"StreamedSaves"})
    assert uncovered == []
    assert unused == set()
    assert "StreamedSaves" not in {st["Sid"] for st in iam_policy(master_store.cfg)["Statement"]}


REGION, ACCOUNT = "us-east-1", "123456789012"
GLUE = f"arn:aws:glue:{REGION}:{ACCOUNT}"


def athena_does(sql: str, fake: FakeAthena) -> list[tuple[str, str]]:
    """The (action, resource) pairs Athena needs of the caller for one statement, as its
    documentation lists them: Glue for the tables it reads, creates, changes or drops;
    S3 reads of their data; S3 writes (multipart) where it writes; the results location."""
    needs: list[tuple[str, str]] = []

    def reads(location: str) -> None:
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        needs.extend(
            [
                ("s3:ListBucket", f"arn:aws:s3:::{bucket}"),
                ("s3:GetObject", f"arn:aws:s3:::{bucket}/{prefix}x"),
            ]
        )

    def writes(location: str) -> None:
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        obj = f"arn:aws:s3:::{bucket}/{prefix}x"
        needs.extend(
            (a, obj)
            for a in ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
        )
        needs.extend(
            (a, f"arn:aws:s3:::{bucket}")
            for a in ("s3:ListBucketMultipartUploads", "s3:GetBucketLocation")
        )

    writes(fake.results or "")  # every query writes its result (or metadata) there
    named = re.findall(r'[`"](\w+)[`"]\.[`"](\w+)[`"]', sql)
    target = f"{named[0][0]}.{named[0][1]}" if named else ""
    if re.match(r"CREATE (EXTERNAL )?TABLE", sql):
        needs += [
            ("glue:GetDatabase", f"{GLUE}:database/{named[0][0]}"),
            ("glue:CreateTable", f"{GLUE}:table/{named[0][0]}/{named[0][1]}"),
        ]
        if "ICEBERG" in sql:
            writes(re.findall(r"LOCATION '([^']+)'", sql)[0])  # its first metadata
        named = []
    elif sql.startswith("DROP TABLE"):
        needs += [
            ("glue:GetTable", f"{GLUE}:table/{named[0][0]}/{named[0][1]}"),
            ("glue:DeleteTable", f"{GLUE}:table/{named[0][0]}/{named[0][1]}"),
        ]
        named = []
    elif target in fake.iceberg:  # a commit: new data and metadata files, then the catalog
        location = fake.iceberg[target][0]
        needs.append(("glue:UpdateTable", f"{GLUE}:table/{target.replace('.', '/')}"))
        writes(location)
        if sql.startswith(("VACUUM", "OPTIMIZE")):
            needs.append(("s3:DeleteObject", f"arn:aws:s3:::{location.removeprefix('s3://')}x"))
    for database, name in named:  # every table the statement reads
        needs.append(("glue:GetTable", f"{GLUE}:table/{database}/{name}"))
        table = f"{database}.{name}"
        if table in fake.tables:
            needs.append(("glue:GetPartitions", f"{GLUE}:table/{database}/{name}"))
            reads(fake.tables[table])
        elif table in fake.iceberg:
            reads(fake.iceberg[table][0])
    unload = re.search(r"\)\s*TO '([^']+)'", sql)
    if sql.startswith("UNLOAD") and unload:
        writes(unload[1])
        if "/unload/" in unload[1]:  # pyathena's Arrow cursor reads it back
            reads(unload[1])
            reads(fake.results or "")  # and the data manifest
    return needs


def test_athena_policy_covers_exactly_what_the_athena_paths_do(
    cfg: S3GridConfig,
    engine: Any,
    master_store: MasterStore,
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    import pandas as pd

    from s3grid import bulk_edit, preview_bulk_edit
    from s3grid.athena import external_table_ddl, run
    from s3grid.iceberg import IcebergTable
    from tests.support.seed import SEED_SQL

    actions = S3Actions(monkeypatch)
    used = actions.used
    read_results_from(monkeypatch, cfg.endpoint_url or "")
    workgroup = f"arn:aws:athena:{REGION}:{ACCOUNT}:workgroup/primary"

    def api_call(event_name: str, **_: Any) -> None:
        used.append((f"athena:{event_name.rsplit('.', 1)[-1]}", workgroup))

    engine.connection.client.meta.events.register("before-call.athena", api_call)
    fake = FakeAthena(engine, master_store, s3)
    iceberg = f"s3://{bucket}/iceberg/tows/"

    bulk_edit(master_store, SEED_SQL, engine=engine, note="on athena")
    preview_bulk_edit(master_store, "SELECT * FROM work_master_parquet", engine=engine)
    engine.execute(external_table_ddl(master_store, "work_master_parquet", database="lab"))
    run('SELECT count(*) AS n FROM "lab"."work_master_parquet"', engine=engine)
    ice = IcebergTable(engine, "tows_iceberg")
    ice.create_from_master(master_store, location=iceberg)
    ice.update({"volume_filtered": 9.5}, "tow = 4 AND net = 1")
    ice.delete("tow = 4 AND net = 0")
    ice.merge(pd.DataFrame({"tow": [1], "net": [2], "volume_filtered": [7.25]}), ["tow", "net"])
    ice.optimize()
    ice.vacuum()
    ice.export_to_master(master_store, note="from iceberg")
    assert fake.failed == {}
    for sql in fake.sent:
        used.extend(athena_does(sql, fake))

    policy = iam_policy(
        cfg.with_(athena_work_group="primary", athena_database="lab"),
        athena=True,
        athena_results=engine.s3_staging_dir,
        iceberg_location=iceberg,
        region=REGION,
        account=ACCOUNT,
    )
    # the statements --athena adds: each action in them is needed by an Athena path
    added = {st["Sid"] for st in policy["Statement"]} - {
        st["Sid"] for st in iam_policy(cfg)["Statement"]
    }
    uncovered, unused = coverage(policy, used, added)
    assert uncovered == []
    # pyathena stops a running query when the user interrupts the cell (kill_on_interrupt)
    assert unused == {("Athena", "athena:StopQueryExecution")}
    by_sid = {st["Sid"]: st for st in policy["Statement"]}
    # Athena only reads the master's folder: the master changes through the lock alone
    assert by_sid["AthenaReadsMaster"]["Action"] == ["s3:GetObject"]
    puts = [
        r for st in policy["Statement"] if "s3:PutObject" in st["Action"] for r in st["Resource"]
    ]
    assert f"arn:aws:s3:::{bucket}/data/*" not in puts
