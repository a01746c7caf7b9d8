"""Prune: keep the latest N saves, archive the rest; dry run, re-run and crash safe."""

from __future__ import annotations

from typing import Any

import pytest

from s3grid import MasterStore
from s3grid.cli import main
from s3grid.prune import plan_prune, prune
from tests.support.s3 import all_objects, keys_under

pytestmark = pytest.mark.both_stores


@pytest.fixture
def saved_18(master_store: MasterStore, s3: Any, bucket: str) -> list[str]:
    """18 saves (the initial upload + 17 edits), plus objects that are not ours."""
    versions = [master_store.load().version_id or ""]
    for i in range(17):
        m = master_store.load()
        df = m.to_pandas()
        df.loc[0, "volume_filtered"] = float(i)
        versions.append(master_store.save(df, base=m, note=f"edit {i}").new_version)
    s3.put_object(Bucket=bucket, Key="audit/glue/job-run.log", Body=b"glue")
    s3.put_object(Bucket=bucket, Key="snapshots/other_20200101T000000_abc.parquet", Body=b"x")
    other = MasterStore(master_store.cfg.with_(master_key="other/master.parquet"))
    other.create(master_store.load().table, note="another master")
    return versions


def test_keep_15_of_18(
    master_store: MasterStore,
    saved_18: list[str],
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = all_objects(s3, bucket)
    code = main(
        [
            "prune",
            "--keep",
            "15",
            "--bucket",
            bucket,
            "--endpoint-url",
            master_store.cfg.endpoint_url or "",
        ]
    )
    assert code == 0
    assert "Would archive 3 save(s); keeping the latest 15." in capsys.readouterr().out
    assert all_objects(s3, bucket) == before  # the dry run changed nothing

    plan = prune(master_store, keep=15, apply=True)
    assert [i.version_id for i in plan.archive] == saved_18[:3]
    mine = [k for k in keys_under(s3, bucket, "snapshots/") if k.startswith("snapshots/master_")]
    audits = [k for k in keys_under(s3, bucket, "audit/") if "/master_" in k]
    # the other master shares the stem "master": count only this master's saves
    other_log = MasterStore(master_store.cfg.with_(master_key="other/master.parquet")).audit_log()
    assert len(mine) == 15 + len(other_log)
    assert len(audits) == 15 + len(other_log)
    archived = keys_under(s3, bucket, "archive/streamlit/")
    for item in plan.archive:
        day = item.timestamp[:10].replace("-", "")
        assert f"archive/streamlit/{day}/snapshot_{item.version_id}.parquet" in archived
        assert f"archive/streamlit/{day}/audit_{item.version_id}.jsonl" in archived
        assert f"archive/streamlit/{day}/changes_{item.version_id}.parquet" in archived
        assert item.changeset_key not in keys_under(s3, bucket, "changes/")
    assert len(archived) == 9
    assert "audit/glue/job-run.log" in keys_under(s3, bucket, "audit/")
    assert "snapshots/other_20200101T000000_abc.parquet" in keys_under(s3, bucket, "snapshots/")
    assert len(master_store.versions()) == 18  # master versions are never deleted

    after = all_objects(s3, bucket)
    assert prune(master_store, keep=15, apply=True).archive == ()  # a re-run is a no-op
    assert all_objects(s3, bucket) == after


def test_crash_between_copy_and_delete_is_finished(
    master_store: MasterStore,
    saved_18: list[str],
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Crash(BaseException):
        pass

    def crash(*_: Any, **__: Any) -> None:
        raise Crash

    with monkeypatch.context() as mp:
        mp.setattr(master_store.bucket, "delete", crash)
        with pytest.raises(Crash):
            prune(master_store, keep=15, apply=True)
    # the first snapshot was copied but not deleted: a duplicate, nothing lost
    first = plan_prune(master_store, keep=15).archive[0]
    assert first.snapshot_key in keys_under(s3, bucket, "snapshots/")
    assert first.archive_snapshot_key in keys_under(s3, bucket, "archive/")
    plan = prune(master_store, keep=15, apply=True)
    assert len(plan.archive) == 3
    assert first.snapshot_key not in keys_under(s3, bucket, "snapshots/")
    assert len(keys_under(s3, bucket, "archive/streamlit/")) == 9
    assert plan_prune(master_store, keep=15).archive == ()
