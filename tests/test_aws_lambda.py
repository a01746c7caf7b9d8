"""The Lambda handler, invoked in-process with sample events against the local endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from s3grid import MasterStore, S3GridConfig
from s3grid.aws_lambda import handler
from tests.support.events import (
    SCHEDULE,
    STAGING,
    athena_event,
    s3_event,
    stage,
    started_query,
    unload_into,
)
from tests.support.s3 import all_objects, keys_under


@pytest.fixture
def env(cfg: S3GridConfig, monkeypatch: pytest.MonkeyPatch, athena_url: str) -> None:
    monkeypatch.setenv("S3_BUCKET", cfg.bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", cfg.endpoint_url or "")
    monkeypatch.setenv("ATHENA_ENDPOINT_URL", athena_url)


@pytest.mark.parametrize("kind", ["schedule", "athena", "s3"])
def test_promotes_then_empties_staging(
    env: None, master_store: MasterStore, s3: Any, bucket: str, kind: str
) -> None:
    stage(master_store, s3, bucket, 42.0)
    s3.put_object(Bucket=bucket, Key=f"{STAGING}_SUCCESS", Body=b"")
    event = {
        "schedule": lambda: SCHEDULE,
        "athena": lambda: athena_event("SUCCEEDED", started_query(unload_into(bucket))),
        "s3": lambda: s3_event(f"{STAGING}_SUCCESS"),
    }[kind]()
    out = handler(event, None)
    assert out["status"] == "promoted", out
    assert out["rows"] == 50
    assert master_store.load().version_id == out["new_version"]
    assert master_store.load().to_pandas().loc[0, "volume_filtered"] == 42.0
    last = master_store.audit_log().iloc[-1]
    assert last["source"] == "automation"
    if kind == "athena":
        assert event["detail"]["queryExecutionId"] in last["note"]
    assert keys_under(s3, bucket, STAGING) == []


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (athena_event("FAILED"), "is FAILED"),
        (athena_event("SUCCEEDED", group="other-wg"), "ran in work group other-wg, not lab-wg"),
        (s3_event(f"{STAGING}20240501_00000"), "waiting for it"),
        (s3_event("elsewhere/_SUCCESS"), "not under the staging prefix"),
        ({"hello": "world"}, "unrecognised"),
    ],
)
def test_ignored_events_change_nothing(
    env: None,
    master_store: MasterStore,
    s3: Any,
    bucket: str,
    event: dict[str, Any],
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ATHENA_WORK_GROUP", "lab-wg")
    stage(master_store, s3, bucket, 1.0)
    before = all_objects(s3, bucket)
    out = handler(event, None)
    assert out["status"] == "ignored"
    assert reason in out["reason"]
    assert all_objects(s3, bucket) == before


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT count(*) FROM t", "is not a CTAS or UNLOAD"),
        ("UNLOAD (SELECT 1) TO 's3://{bucket}/elsewhere/' WITH (format = 'PARQUET')", "does not"),
        ("UNLOAD (SELECT 1) TO 's3://{bucket}/{staging}more/' WITH (format = 'PARQUET')", "not"),
    ],
    ids=["a-select", "another-folder", "a-subfolder"],
)
def test_an_athena_event_about_another_query_is_ignored(
    env: None, master_store: MasterStore, s3: Any, bucket: str, sql: str, reason: str
) -> None:
    stage(master_store, s3, bucket, 1.0)
    before = all_objects(s3, bucket)
    qid = started_query(sql.format(bucket=bucket, staging=STAGING))
    out = handler(athena_event("SUCCEEDED", qid), None)
    assert out["status"] == "ignored", out
    assert reason in out["reason"] and qid in out["reason"]
    assert all_objects(s3, bucket) == before


def test_empty_prefix_reported(env: None, master_store: MasterStore, s3: Any, bucket: str) -> None:
    before = all_objects(s3, bucket)
    out = handler(SCHEDULE, None)
    assert out["status"] == "empty"
    assert all_objects(s3, bucket) == before


def test_conflict_reported_and_staging_intact(
    env: None, master_store: MasterStore, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage(master_store, s3, bucket, 7.0)
    stale = master_store.load()
    m = master_store.load()
    df = m.to_pandas()
    df.loc[1, "volume_filtered"] = 99.0
    master_store.save(df, base=m, note="grid save meanwhile")
    current = master_store.load()
    monkeypatch.setattr(MasterStore, "load", lambda self: stale)  # the handler's view is stale
    staged = keys_under(s3, bucket, STAGING)
    out = handler(SCHEDULE, None)
    monkeypatch.undo()
    assert out["status"] == "conflict"
    assert out["current_version"] == current.version_id
    assert keys_under(s3, bucket, STAGING) == staged
    assert master_store.load().etag == current.etag


def eventbridge_s3_event(key: str) -> dict[str, Any]:
    """S3 "Object Created" as EventBridge delivers it: the key is not URL-encoded."""
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": "b"}, "object": {"key": key, "size": 0}},
    }


@pytest.mark.parametrize(
    "event",
    [
        s3_event(f"{STAGING}_DONE%3Dyes+now"),  # direct notification: URL-encoded
        eventbridge_s3_event(f"{STAGING}_DONE=yes now"),
    ],
    ids=["s3-notification", "eventbridge"],
)
def test_s3_events_of_both_kinds_name_the_marker(
    env: None,
    master_store: MasterStore,
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    event: dict[str, Any],
) -> None:
    monkeypatch.setenv("S3GRID_TRIGGER_MARKER", "_DONE=yes now")
    stage(master_store, s3, bucket, 42.0)
    s3.put_object(Bucket=bucket, Key=f"{STAGING}_DONE=yes now", Body=b"")
    out = handler(event, None)
    assert out["status"] == "promoted", out
    assert out["trigger"] == "s3"
    part = eventbridge_s3_event(f"{STAGING}20240501_00000")
    assert handler(part, None)["status"] == "ignored"
