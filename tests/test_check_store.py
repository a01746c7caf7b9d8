"""``s3grid check-store`` against both stores: the verdicts they should get, nothing left."""

from __future__ import annotations

import json
from typing import Any

import pytest

from s3grid import MasterStore, S3GridConfig, ValidationError
from s3grid.cli import main
from s3grid.s3 import S3Bucket
from s3grid.storecheck import (
    SAFE,
    SINGLE_PUTS_ONLY,
    UNSAFE,
    StoreCheck,
    StoreReport,
    verdict_of,
)
from tests.support.s3 import all_objects

pytestmark = pytest.mark.both_stores

REQUIRED = (
    "versioning",
    "If-Match refused when stale",
    "If-None-Match: * honoured",
    "CopyObject of a VersionId",
    "ListObjectVersions newest first",
)
RACE = "race of 8 conditional PUTs"
MULTIPART = "multipart complete with If-Match"
COPY = "CopyObject with If-Match"


def checks(report: StoreReport) -> dict[str, Any]:
    return {c.name: c for c in report.checks}


def rounds_for(store_kind: str) -> int:
    # moto's 8 MiB race often has one winner by chance (one round in two, on a busy
    # machine): 20 rounds make its verdict certain enough (1 in a million), and take a
    # few seconds there. SeaweedFS's single PUTs always hold and its multipart race runs
    # 12 rounds at 3; fewer rounds keep the test short there (each losing PUT waits on
    # weed's lock).
    return 3 if store_kind == "seaweedfs" else 20


def test_each_store_gets_the_verdict_it_should(
    store: MasterStore, s3: Any, bucket: str, store_kind: str
) -> None:
    report = store.check_store(rounds=rounds_for(store_kind))
    found = checks(report)
    assert [found[name].ok for name in REQUIRED] == [True] * len(REQUIRED), str(report)
    assert not report.aws
    if store_kind == "seaweedfs":
        # single conditional PUTs are atomic there, even 8 MiB ones under 8 writers;
        # its multipart complete checks If-Match, but not atomically
        assert found[RACE].ok, str(report)
        assert found[COPY].ok, str(report)  # its conditional copy is atomic
        assert "S3GRID_COMMIT=copy" in report.reason  # so saves may stream there
        assert not found[MULTIPART].ok and not found[MULTIPART].required
        assert "of 8 writers with the same If-Match succeeded" in found[MULTIPART].detail
        assert report.verdict == SINGLE_PUTS_ONLY and report.safe
    else:
        # moto, a mock: its conditional PUT checks the ETag before it has read the body,
        # so racing 8 MiB writers can both win; it is not a store to trust with a master
        assert not found[RACE].ok, str(report)
        assert "8 MiB bodies" in found[RACE].detail
        assert report.verdict == UNSAFE and not report.safe
        assert RACE in report.reason
    assert all_objects(s3, bucket) == []  # every scratch version removed


def ignore_conditions(client: Any) -> None:
    """Make ``client``'s PUTs and completes go without their conditions, as to a store
    that does not know them."""

    def strip(params: dict[str, Any], **_: Any) -> None:
        params.pop("IfMatch", None)
        params.pop("IfNoneMatch", None)

    for op in ("PutObject", "CompleteMultipartUpload"):
        client.meta.events.register(f"before-parameter-build.s3.{op}", strip)


def test_a_store_that_ignores_conditions_is_unsafe(
    store: MasterStore, s3: Any, bucket: str
) -> None:
    ignore_conditions(store.bucket.client)
    report = store.check_store(rounds=1)
    found = checks(report)
    assert not found["If-Match refused when stale"].ok
    assert "stale If-Match was stored" in found["If-Match refused when stale"].detail
    assert not found["If-None-Match: * honoured"].ok
    assert not found[RACE].ok
    assert found["CopyObject of a VersionId"].ok
    assert report.verdict == UNSAFE
    assert all_objects(s3, bucket) == []


def test_an_unversioned_bucket_is_unsafe_and_nothing_is_written(
    store: MasterStore, s3: Any, bucket: str
) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    report = store.check_store()
    assert [c.name for c in report.checks] == ["versioning"]
    assert report.verdict == UNSAFE
    assert "versioning suspended" in report.reason
    assert "put-bucket-versioning" in report.reason  # what to do about it
    assert all_objects(s3, bucket) == []


def test_the_command_prints_a_verdict_and_exits_by_it(
    store: MasterStore,
    s3: Any,
    bucket: str,
    store_kind: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flags = ["--bucket", bucket, "--endpoint-url", store.cfg.endpoint_url or ""]
    if store_kind == "moto":
        # moto's verdict takes many rounds to be sure of (the test above): here the
        # command's PUTs go without their conditions, so one round makes it unsafe
        make_client = S3Bucket._make_client

        def unconditional(cfg: S3GridConfig) -> Any:
            client = make_client(cfg)
            ignore_conditions(client)
            return client

        monkeypatch.setattr(S3Bucket, "_make_client", staticmethod(unconditional))
    flags += ["--rounds", "1" if store_kind == "moto" else str(rounds_for(store_kind))]
    code = main(["check-store", *flags])
    text = capsys.readouterr().out
    expected = SINGLE_PUTS_ONLY if store_kind == "seaweedfs" else UNSAFE
    assert f"Verdict: {expected}: " in text
    assert code == (0 if store_kind == "seaweedfs" else 1)
    if store_kind == "seaweedfs":
        assert all(f"ok   {name}" in text for name in REQUIRED)
    else:
        assert "FAIL If-Match refused when stale" in text

    # --json, on the bucket with versioning suspended (quick: nothing else is tried)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    code = main(["check-store", *flags, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["verdict"] == UNSAFE
    assert [c["name"] for c in report["checks"]] == ["versioning"]
    assert report["location"].startswith(f"s3://{bucket}/s3grid-check-store/")


@pytest.mark.moto_only("pure logic: no store is used")
def test_the_verdicts_follow_the_checks() -> None:
    ok = [StoreCheck(n, True, "fine") for n in REQUIRED]
    assert verdict_of([*ok, StoreCheck(MULTIPART, True, "one winner")])[0] == SAFE
    not_atomic = StoreCheck(MULTIPART, False, "3 of 8", required=False)  # not on AWS
    assert verdict_of([*ok, not_atomic])[0] == SINGLE_PUTS_ONLY
    on_aws = StoreCheck(MULTIPART, False, "3 of 8", required=True)
    verdict, reason = verdict_of([*ok, on_aws])
    assert verdict == UNSAFE and "3 of 8" in reason
    copy_no = StoreCheck(COPY, False, "8 of 8", required=False)  # saves do not copy
    verdict, reason = verdict_of([*ok, copy_no, StoreCheck(MULTIPART, True, "one")])
    assert verdict == SAFE and COPY in reason and "S3GRID_COMMIT" not in reason
    copy_needed = StoreCheck(COPY, False, "2 of 8", required=True)  # commit="copy"
    verdict, reason = verdict_of([*ok, copy_needed, StoreCheck(MULTIPART, True, "one")])
    assert verdict == UNSAFE and "2 of 8" in reason
    copy_ok = StoreCheck(COPY, True, "one winner", required=False)
    verdict, reason = verdict_of([*ok, copy_ok, not_atomic])
    assert verdict == SINGLE_PUTS_ONLY and "S3GRID_COMMIT=copy" in reason


@pytest.mark.moto_only("an argument check: no store is used")
def test_a_race_needs_a_round(store: MasterStore, s3: Any, bucket: str) -> None:
    with pytest.raises(ValidationError, match="at least one round"):
        store.check_store(rounds=0)
    assert all_objects(s3, bucket) == []
