"""Every promotion carries its base; a result is promoted once, and only whole."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest

import s3grid.aws_lambda
from s3grid import MasterStore, S3GridConfig, bulk_edit
from s3grid.athena import AthenaEngine
from s3grid.cli import main
from s3grid.promote import MANIFEST_NAME, RunManifest, read_manifest, write_manifest
from tests.support.athena import FakeAthena
from tests.support.events import SCHEDULE, STAGING, athena_event, stage, started_query, unload_into
from tests.support.s3 import all_objects, keys_under
from tests.support.seed import SEED_SQL

pytestmark = pytest.mark.both_stores


@pytest.fixture
def env(cfg: S3GridConfig, monkeypatch: pytest.MonkeyPatch, athena_url: str) -> None:
    monkeypatch.setenv("S3_BUCKET", cfg.bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", cfg.endpoint_url or "")
    monkeypatch.setenv("ATHENA_ENDPOINT_URL", athena_url)


def grid_save(store: MasterStore, value: float) -> str:
    m = store.load()
    df = m.to_pandas()
    df.loc[1, "volume_filtered"] = value
    return store.save(df, base=m, note="a colleague's grid save").new_version


@pytest.mark.parametrize("event", [SCHEDULE, {}], ids=["scheduled", "scheduler-default"])
def test_the_handler_never_promotes_over_a_newer_save(
    env: None, master_store: MasterStore, s3: Any, bucket: str, event: dict[str, Any]
) -> None:
    base = master_store.load()
    stage(master_store, s3, bucket, 42.0)  # the query read `base`...
    write_manifest(master_store, STAGING, RunManifest.for_base(base))
    newer = grid_save(master_store, 7.5)  # ...and a colleague saved after it ran
    out = s3grid.aws_lambda.handler(event, None)
    assert out["status"] == "conflict", out
    assert out["current_version"] == newer
    latest = master_store.load()
    assert latest.version_id == newer
    assert latest.to_pandas().loc[1, "volume_filtered"] == 7.5  # not overwritten
    assert len(keys_under(s3, bucket, STAGING)) == 3  # staging kept: parts + manifest


def test_a_bulk_edit_on_athena_is_promoted_once(
    env: None, engine: AthenaEngine, master_store: MasterStore, s3: Any, bucket: str
) -> None:
    FakeAthena(engine, master_store, s3)
    res = bulk_edit(master_store, SEED_SQL, note="shift tow 4", engine=engine)
    assert keys_under(s3, bucket, STAGING) == []  # saved: the run's output is gone
    versions = len(master_store.versions())
    out = s3grid.aws_lambda.handler(SCHEDULE, None)  # the hourly schedule after it
    assert out["status"] == "empty", out
    assert len(master_store.versions()) == versions
    assert master_store.load().version_id == res.new_version


def test_a_preview_on_athena_leaves_nothing_to_promote(
    env: None, engine: AthenaEngine, master_store: MasterStore, s3: Any, bucket: str
) -> None:
    from s3grid import preview_bulk_edit

    FakeAthena(engine, master_store, s3)
    preview_bulk_edit(master_store, SEED_SQL, engine=engine)
    assert keys_under(s3, bucket, STAGING) == []
    assert s3grid.aws_lambda.handler(SCHEDULE, None)["status"] == "empty"


def test_an_athena_run_that_lost_its_save_keeps_its_base(
    env: None,
    engine: AthenaEngine,
    master_store: MasterStore,
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    FakeAthena(engine, master_store, s3)
    base = master_store.load()
    newer = grid_save(master_store, 3.25)  # lands while the query runs
    with pytest.raises(s3grid.ConflictError):
        bulk_edit(master_store, SEED_SQL, note="bulk", engine=engine, base=base)
    runs = "staging/data/master.parquet/runs/"
    (key,) = [k for k in keys_under(s3, bucket, runs) if k.endswith(MANIFEST_NAME)]
    run = key.removesuffix(MANIFEST_NAME)
    manifest = read_manifest(master_store, run)
    assert manifest is not None
    assert (manifest.base_version, manifest.base_etag) == (base.version_id, base.etag)
    unloads = [info for sql, info in engine.history if sql.startswith("UNLOAD")]
    assert manifest.query_id == unloads[-1].query_id
    # the Lambda watches the promotion folder, not the runs of notebooks
    out = s3grid.aws_lambda.handler(athena_event("SUCCEEDED", manifest.query_id or ""), None)
    assert out["status"] == "ignored", out
    assert f"does not write to s3://{bucket}/{STAGING}" in out["reason"]
    # promoting the run by hand is over its own base: a conflict, never an overwrite
    flags = ["--bucket", bucket, "--endpoint-url", master_store.cfg.endpoint_url or ""]
    assert main(["flatten", "--prefix", run, *flags]) == 2
    assert newer in capsys.readouterr().err
    assert master_store.load().version_id == newer


def test_output_of_a_run_that_did_not_succeed_is_not_promoted(
    env: None, master_store: MasterStore, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = master_store.load()
    stage(master_store, s3, bucket, 42.0)  # the parts a failed CTAS left behind
    write_manifest(master_store, STAGING, RunManifest.for_base(base, query_id="q-failed"))
    asked: list[str] = []

    def state(cfg: Any) -> Any:
        return lambda qid: asked.append(qid) or "FAILED"

    monkeypatch.setattr(s3grid.aws_lambda, "athena_query_state", state)
    before = all_objects(s3, bucket)
    out = s3grid.aws_lambda.handler(SCHEDULE, None)
    assert out["status"] == "invalid", out
    assert "q-failed is FAILED" in out["reason"]
    assert asked == ["q-failed"]
    assert all_objects(s3, bucket) == before


def test_the_query_state_is_asked_of_athena(
    env: None, master_store: MasterStore, s3: Any, bucket: str, athena_url: str
) -> None:
    athena = boto3.client("athena", endpoint_url=athena_url, region_name="us-east-1")
    qid = athena.start_query_execution(
        QueryString="SELECT 1",
        WorkGroup="primary",
        ResultConfiguration={"OutputLocation": f"s3://{bucket}/athena-results/"},
    )["QueryExecutionId"]
    base = master_store.load()
    stage(master_store, s3, bucket, 42.0)
    write_manifest(master_store, STAGING, RunManifest.for_base(base, query_id=qid))
    out = s3grid.aws_lambda.handler(SCHEDULE, None)  # moto answers SUCCEEDED
    assert out["status"] == "promoted", out
    assert f"from Athena query {qid}" in master_store.audit_log().iloc[-1]["note"]
    assert keys_under(s3, bucket, STAGING) == []


def test_an_event_about_another_query_is_ignored(
    env: None, master_store: MasterStore, s3: Any, bucket: str
) -> None:
    stage(master_store, s3, bucket, 42.0)
    write_manifest(master_store, STAGING, RunManifest.for_base(master_store.load(), query_id="q-1"))
    q2 = started_query(unload_into(bucket))  # wrote to the same folder: a second run's
    out = s3grid.aws_lambda.handler(athena_event("SUCCEEDED", q2), None)
    assert out["status"] == "ignored"
    assert f"from query q-1, not {q2}" in out["reason"]


def test_output_without_a_manifest_after_a_newer_save_is_refused_then_promoted_on_request(
    master_store: MasterStore, s3: Any, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    read = master_store.load()
    stage(master_store, s3, bucket, 42.0)  # a CTAS run from the Athena console
    time.sleep(1.1)  # S3 times objects to the second
    newer = grid_save(master_store, 9.5)
    flags = ["--bucket", bucket, "--endpoint-url", master_store.cfg.endpoint_url or ""]
    before = all_objects(s3, bucket)
    code = main(["flatten", "--prefix", STAGING, *flags])
    err = capsys.readouterr().err
    assert code == 2, err  # a conflict
    assert f"as version {newer}" in err and "--base-version" in err
    assert all_objects(s3, bucket) == before
    # the caller knows what the query read: promote over it, a conflict if it moved on
    code = main(["flatten", "--prefix", STAGING, "--base-version", read.version_id or "", *flags])
    assert code == 2  # the master moved on since that version too
    assert len(keys_under(s3, bucket, STAGING)) == 2
    code = main(["flatten", "--prefix", STAGING, "--base-version", newer, *flags])
    assert code == 0, capsys.readouterr().err
    assert master_store.load().to_pandas().loc[0, "volume_filtered"] == 42.0
    assert keys_under(s3, bucket, STAGING) == []


def test_a_manifest_of_another_master_is_refused(
    master_store: MasterStore, s3: Any, bucket: str
) -> None:
    from s3grid import ValidationError
    from s3grid.promote import promote

    m = master_store.load()
    stage(master_store, s3, bucket, 42.0)
    other = RunManifest(
        master_key="other/master.parquet",
        base_version=m.version_id or "",
        base_etag=m.etag,
        columns=tuple(m.schema.names),
    )
    write_manifest(master_store, STAGING, other)
    with pytest.raises(ValidationError, match="computed from other/master.parquet"):
        promote(master_store, STAGING, note="x")
    assert f"{STAGING}{MANIFEST_NAME}" in keys_under(s3, bucket, STAGING)


def test_a_failed_query_is_reported_even_if_staging_cannot_be_emptied(
    env: None,
    engine: AthenaEngine,
    master_store: MasterStore,
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from s3grid import preview_bulk_edit
    from s3grid.athena import AthenaQueryError
    from s3grid.errors import StoreUnavailableError

    FakeAthena(engine, master_store, s3)

    def down(*_: Any) -> None:
        raise StoreUnavailableError("S3 is unreachable")

    monkeypatch.setattr(engine, "done", down)
    warns = pytest.warns(RuntimeWarning, match="Could not empty the run's staging")
    with warns, pytest.raises(AthenaQueryError):  # the query's own error, not the cleanup's
        preview_bulk_edit(master_store, "SELECT * FROM nope", engine=engine)


def test_lowercased_output_promotes_into_a_mixed_case_master(
    store: MasterStore, s3: Any, bucket: str
) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from s3grid.promote import promote

    master = pa.table({"Tow": pa.array([1, 2], pa.int32()), "DepthMax": [10.5, 20.0]})
    store = MasterStore(store.cfg, key_columns=("Tow",))
    store.create(master, note="mixed case")
    base = store.load()
    # as Athena writes it: names lowercased, ints widened
    out = pa.table({"tow": pa.array([1, 2], pa.int64()), "depthmax": [10.5, 21.0]})
    buf = io.BytesIO()
    pq.write_table(out, buf)
    s3.put_object(Bucket=bucket, Key=f"{STAGING}part-0", Body=buf.getvalue())
    write_manifest(store, STAGING, RunManifest.for_base(base))
    done = promote(store, STAGING, note="from Athena")
    assert store.load().table.equals(master.set_column(1, "DepthMax", pa.array([10.5, 21.0])))
    assert done.save.cells_changed == 1


def test_a_manifest_that_is_not_one_is_refused_by_name(
    master_store: MasterStore, s3: Any, bucket: str
) -> None:
    from s3grid import MasterFormatError
    from s3grid.promote import promote

    stage(master_store, s3, bucket, 42.0)
    s3.put_object(Bucket=bucket, Key=f"{STAGING}{MANIFEST_NAME}", Body=b"{not json")
    before = all_objects(s3, bucket)
    with pytest.raises(MasterFormatError, match="is not an s3grid run manifest"):
        promote(master_store, STAGING, note="x")
    assert all_objects(s3, bucket) == before
