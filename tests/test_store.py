"""The locked save, snapshot, audit, restore and reconcile against a local S3 endpoint."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from typing import Any
from urllib.parse import quote, unquote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import EndpointConnectionError
from hypothesis import given, settings
from hypothesis import strategies as st

from s3grid import (
    ConflictError,
    MasterFormatError,
    MasterNotFoundError,
    MasterStore,
    S3GridConfig,
    StoreUnavailableError,
    ValidationError,
    VersioningError,
    export_csv,
)
from s3grid.cli import main
from s3grid.commit import SaveMetadata
from s3grid.prune import prune
from s3grid.sample import sample_master
from tests.support.cells import assert_same_table
from tests.support.s3 import all_objects, keys_under
from tests.support.tables import every_kind_of_column

pytestmark = pytest.mark.both_stores


class Crash(BaseException):
    """A simulated process crash (not an Exception, so nothing catches it)."""


def edit_volume(df: pd.DataFrame, row: int, value: float) -> pd.DataFrame:
    df = df.copy()
    df.loc[row, "volume_filtered"] = value
    return df


def test_happy_path_layout(master_store: MasterStore, s3: Any, bucket: str) -> None:
    m = master_store.load()
    df = edit_volume(m.to_pandas(), 3, 123.45)
    res = master_store.save(df, base=m, note="fix volume")

    assert res.prev_version == m.version_id
    assert res.new_version != m.version_id
    head = s3.head_object(Bucket=bucket, Key="data/master.parquet")
    assert head["VersionId"] == res.new_version
    assert head["ETag"] == res.new_etag
    assert (res.cells_changed, res.rows_added, res.rows_deleted) == (1, 0, 0)

    assert re.fullmatch(r"snapshots/master_\d{8}T\d{6}_[0-9a-f]{16}\.parquet", res.snapshot_key)
    assert re.fullmatch(
        r"audit/\d{4}-\d{2}-\d{2}/master_\d{8}T\d{6}_[0-9a-f]{16}\.jsonl", res.audit_key
    )
    assert res.save_id in res.snapshot_key and res.save_id in res.audit_key

    snap = s3.get_object(Bucket=bucket, Key=res.snapshot_key)["Body"].read()
    committed = s3.get_object(Bucket=bucket, Key="data/master.parquet", VersionId=res.new_version)
    assert snap == committed["Body"].read()

    body = s3.get_object(Bucket=bucket, Key=res.audit_key)["Body"].read().decode()
    assert body.endswith("\n") and body.count("\n") == 1
    rec = json.loads(body)
    for field in (
        "timestamp",
        "user",
        "note",
        "prev_version",
        "new_version",
        "snapshot_key",
        "row_count",
        "column_count",
        "master_key",
        "save_id",
        "source",
        "prev_etag",
        "new_etag",
        "changes",
        "aws_identity",
    ):
        assert field in rec
    assert rec["timestamp"].endswith("Z")
    assert rec["note"] == "fix volume"
    assert rec["source"] == "api"  # a save from Python
    assert rec["prev_version"] == m.version_id and rec["new_version"] == res.new_version
    assert rec["snapshot_key"] == res.snapshot_key
    assert rec["row_count"] == 50 and rec["column_count"] == 13
    assert rec["changes"] == {"cells_changed": 1, "rows_added": 0, "rows_deleted": 0}

    again = master_store.load()
    assert again.version_id == res.new_version and again.etag == res.new_etag
    assert again.table.schema == m.table.schema
    assert again.to_pandas().loc[3, "volume_filtered"] == 123.45


def test_seed_audit_reading_snippet(master_store: MasterStore, s3: Any, bucket: str) -> None:
    m = master_store.load()
    # LastModified has whole-second resolution, so the seed's snippet can only tell
    # saves apart a second or more apart; saves within one second are a tie for it.
    time.sleep(1.1)
    res = master_store.save(edit_volume(m.to_pandas(), 0, 1.0), base=m, note="latest")
    # The seed README's snippet: list the audit prefix, newest by LastModified, last line.
    objs = s3.list_objects_v2(Bucket=bucket, Prefix="audit/")["Contents"]
    newest = max(objs, key=lambda o: o["LastModified"])
    text = s3.get_object(Bucket=bucket, Key=newest["Key"])["Body"].read().decode("utf-8")
    last = json.loads(text.strip().splitlines()[-1])
    assert last["new_version"] == res.new_version
    assert last["note"] == "latest"


def test_equal_data_still_gets_new_etag(master_store: MasterStore) -> None:
    m = master_store.load()
    res = master_store.save(m.to_pandas(), base=m, note="no-op save")
    assert res.new_etag != m.etag
    assert res.cells_changed == 0


@pytest.mark.parametrize("race", [False, True])
def test_two_writers_step_by_step(
    master_store: MasterStore,
    cfg: S3GridConfig,
    s3: Any,
    bucket: str,
    race: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = MasterStore(cfg)
    b = MasterStore(cfg)
    ma = a.load()
    mb = b.load()
    res_a = a.save(edit_volume(ma.to_pandas(), 1, 11.0), base=ma, note="A")
    before = all_objects(s3, bucket)
    puts: list[str] = []
    b.bucket.client.meta.events.register(
        "before-send.s3.PutObject", lambda **kw: puts.append(kw["request"].url)
    )
    if race:  # A's save lands after B's look at the master: B's conditional PUT refuses
        monkeypatch.setattr(b, "look_first", False)
    with pytest.raises(ConflictError) as info:
        b.save(edit_volume(mb.to_pandas(), 2, 22.0), base=mb, note="B")
    assert all_objects(s3, bucket) == before
    err = info.value
    assert err.base_version == mb.version_id
    assert err.current_version == res_a.new_version
    assert err.current_etag == res_a.new_etag
    assert err.saved_by and err.saved_at
    assert err.current_note == "A"
    assert "Nothing was written" in str(err)
    assert len(puts) == (1 if race else 0)  # without the race, refused before any PUT
    current = a.load().to_pandas()
    assert current.loc[1, "volume_filtered"] == 11.0
    assert current.loc[2, "volume_filtered"] != 22.0


def test_create_refuses_existing(
    master_store: MasterStore, table: pa.Table, s3: Any, bucket: str
) -> None:
    before = all_objects(s3, bucket)
    with pytest.raises(ConflictError, match="already exists"):
        master_store.create(table, note="again")
    assert all_objects(s3, bucket) == before


def test_create_writes_init_audit(store: MasterStore, table: pa.Table) -> None:
    res = store.create(table, note="first")
    log = store.audit_log()
    assert list(log["source"]) == ["init"]
    assert log.loc[0, "new_version"] == res.new_version
    assert pd.isna(log.loc[0, "prev_version"])
    assert res.rows_added == table.num_rows


def test_unreachable_endpoint(cfg: S3GridConfig, s3: Any, bucket: str, table: pa.Table) -> None:
    MasterStore(cfg).create(table, note="x")
    good = MasterStore(cfg)
    m = good.load()
    before = all_objects(s3, bucket)
    dead = MasterStore(cfg.with_(endpoint_url="http://127.0.0.1:9", connect_timeout=1.0))
    with pytest.raises(StoreUnavailableError, match="unreachable"):
        dead.load()
    with pytest.raises(StoreUnavailableError, match="Nothing was written"):
        dead.save(m.to_pandas(), base=m, note="offline")
    assert all_objects(s3, bucket) == before


@pytest.mark.parametrize("where", ["_write_snapshot", "_write_audit"])
def test_crash_after_commit_is_repaired(
    master_store: MasterStore, monkeypatch: pytest.MonkeyPatch, s3: Any, bucket: str, where: str
) -> None:
    m = master_store.load()

    def crash(*_: Any, **__: Any) -> None:
        raise Crash(where)

    with monkeypatch.context() as mp:
        mp.setattr(MasterStore, where, crash)
        with pytest.raises(Crash):
            master_store.save(edit_volume(m.to_pandas(), 4, 44.0), base=m, note="crashy ✓")
    head = s3.head_object(Bucket=bucket, Key="data/master.parquet")
    assert head["VersionId"] != m.version_id  # the commit happened
    meta = SaveMetadata.from_s3(head["Metadata"])
    assert meta is not None

    repairs = master_store.reconcile()
    assert len(repairs) == 1
    r = repairs[0]
    assert r.version_id == head["VersionId"] and r.save_id == meta.save_id
    assert r.wrote_audit
    assert r.wrote_snapshot == (where == "_write_snapshot")
    snap = s3.get_object(Bucket=bucket, Key=r.snapshot_key)["Body"].read()
    data = s3.get_object(Bucket=bucket, Key="data/master.parquet", VersionId=r.version_id)
    assert snap == data["Body"].read()
    rec = json.loads(s3.get_object(Bucket=bucket, Key=r.audit_key)["Body"].read())
    assert rec["source"] == "reconcile"
    assert rec["original_source"] == "api"
    assert rec["note"] == "crashy ✓"
    assert rec["changes"]["cells_changed"] == 1
    assert rec["prev_version"] == m.version_id

    before = all_objects(s3, bucket)
    assert master_store.reconcile() == []
    assert all_objects(s3, bucket) == before


def test_reconcile_ignores_foreign_versions(
    store: MasterStore, s3: Any, bucket: str, table: pa.Table
) -> None:
    sink = pa.BufferOutputStream()
    pa.parquet.write_table(table, sink)
    s3.put_object(Bucket=bucket, Key="data/master.parquet", Body=sink.getvalue().to_pybytes())
    assert store.reconcile() == []
    assert keys_under(s3, bucket, "snapshots/") == []


def test_note_round_trip_one_line(master_store: MasterStore, s3: Any, bucket: str) -> None:
    note = 'line one\nline "two"\ttabbed — ünïcødé 🧪🐟 \\ backslash'
    m = master_store.load()
    res = master_store.save(m.to_pandas(), base=m, note=note)
    body = s3.get_object(Bucket=bucket, Key=res.audit_key)["Body"].read()
    assert body.count(b"\n") == 1 and body.endswith(b"\n")
    assert json.loads(body)["note"] == note
    log = master_store.audit_log()
    assert log.iloc[-1]["note"] == note
    # reconcile rebuilds the same note from the version metadata
    s3.delete_object(Bucket=bucket, Key=res.audit_key)
    repairs = master_store.reconcile()
    assert [r.audit_key for r in repairs] == [res.audit_key]
    assert master_store.audit_log().iloc[-1]["note"] == note


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("x" * 1001, "limit is 1000"),
        ("bell\x07", "U\\+0007"),
        ("nul\x00", "U\\+0000"),
        ("lone \ud83d surrogate", "U\\+D83D"),
    ],
)
def test_bad_notes_refused(
    master_store: MasterStore, s3: Any, bucket: str, note: str, message: str
) -> None:
    m = master_store.load()
    before = all_objects(s3, bucket)
    with pytest.raises(ValidationError, match=message):
        master_store.save(m.to_pandas(), base=m, note=note)
    assert all_objects(s3, bucket) == before


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    shift=st.integers(0, 20),
    tail=st.lists(
        st.sampled_from(["é", "e\u0301", "👍🏽", "👩\u200d🔬", "❤\ufe0f", "漢", "𝄞", "a"]),
        min_size=60,  # long enough to be cut at 1200 encoded bytes, often
        max_size=300,
    ),
)
def test_a_note_cut_for_metadata_ends_on_a_whole_character(shift: int, tail: list[str]) -> None:
    from s3grid.commit import NOTE_METADATA_BYTES, metadata_note

    clusters = ["a"] * shift + tail
    note = "".join(clusters)
    encoded, truncated = metadata_note(note)
    assert len(encoded) <= NOTE_METADATA_BYTES
    assert encoded.isascii()
    cut = unquote(encoded, errors="strict")
    assert truncated == (cut != note)
    # a prefix made of whole clusters: no broken bytes, no accent or joiner cut off
    whole = [i for i in range(len(clusters) + 1) if "".join(clusters[:i]) == cut]
    assert whole, (note, cut)
    if truncated:  # and it is the longest such prefix that fits
        assert len(quote("".join(clusters[: whole[0] + 1]), safe="")) > NOTE_METADATA_BYTES


def test_non_parquet_master(store: MasterStore, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="data/master.parquet", Body=b"tow,net\n1,0\n")
    with pytest.raises(MasterFormatError) as info:
        store.load()
    msg = str(info.value)
    assert "data/master.parquet" in msg and "Parquet" in msg and "magic" in msg


def test_missing_master_and_bucket(store: MasterStore, cfg: S3GridConfig) -> None:
    with pytest.raises(MasterNotFoundError, match="data/master.parquet"):
        store.load()
    with pytest.raises(MasterNotFoundError, match="no-such-bucket-here"):
        MasterStore(cfg.with_(bucket="no-such-bucket-here")).load()


def test_duplicate_keys_refused(master_store: MasterStore, s3: Any, bucket: str) -> None:
    m = master_store.load()
    df = m.to_pandas()
    df.loc[7, ["tow", "net"]] = df.loc[6, ["tow", "net"]].to_list()
    before = all_objects(s3, bucket)
    with pytest.raises(ValidationError) as info:
        master_store.save(df, base=m, note="dup")
    key = (int(df.loc[6, "tow"]), int(df.loc[6, "net"]))
    assert info.value.duplicates == [key]
    assert "rows [6, 7]" in str(info.value)
    assert all_objects(s3, bucket) == before


def test_empty_table_refused(master_store: MasterStore) -> None:
    m = master_store.load()
    with pytest.raises(ValidationError, match="empty table"):
        master_store.save(m.to_pandas().iloc[:0], base=m, note="wipe")


def test_restore_snapshot_and_version(master_store: MasterStore) -> None:
    m0 = master_store.load()
    r1 = master_store.save(edit_volume(m0.to_pandas(), 0, 1.5), base=m0, note="one")
    m1 = master_store.load()
    master_store.save(edit_volume(m1.to_pandas(), 0, 2.5), base=m1, note="two")
    m2 = master_store.load()
    res = master_store.restore(snapshot_key=r1.snapshot_key, base=m2, note="back to one")
    m3 = master_store.load()
    assert m3.to_pandas().loc[0, "volume_filtered"] == 1.5
    assert res.cells_changed == 1
    log = master_store.audit_log()
    assert log.iloc[-1]["source"] == "restore"
    res2 = master_store.restore(version_id=m0.version_id, base=m3, note="to the start")
    assert master_store.load().table.equals(m0.table)
    assert res2.prev_version == m3.version_id
    with pytest.raises(ConflictError):
        master_store.restore(version_id=m0.version_id, base=m3, note="stale base")
    with pytest.raises(ValidationError, match="exactly one"):
        master_store.restore(base=m3, note="?")
    with pytest.raises(ValidationError, match="snapshot prefix"):
        master_store.restore(snapshot_key="data/master.parquet", base=m3, note="?")


def test_versions_and_read_version(master_store: MasterStore) -> None:
    m0 = master_store.load()
    master_store.save(edit_volume(m0.to_pandas(), 0, 9.0), base=m0, note="x")
    vs = master_store.versions()
    assert len(vs) == 2 and vs[0].is_latest and not vs[1].is_latest
    assert vs[1].version_id == m0.version_id
    old = master_store.read_version(m0.version_id or "")
    assert old.table.equals(m0.table)
    with pytest.raises(MasterNotFoundError):
        master_store.read_version("not-a-version")


def test_audit_log_filters_and_ignores_foreign(
    master_store: MasterStore, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="audit/glue/run-1.log", Body=b"glue says hi")
    s3.put_object(
        Bucket=bucket, Key="audit/2024-01-01/other_20240101T000000_abc.jsonl", Body=b'{"foo": 1}\n'
    )
    m = master_store.load()
    for i in range(3):
        m = master_store.load()
        master_store.save(edit_volume(m.to_pandas(), i, float(i)), base=m, note=f"n{i}")
    log = master_store.audit_log()
    assert list(log["note"]) == ["initial upload", "n0", "n1", "n2"]
    assert str(log["timestamp"].dtype) == "datetime64[ns, UTC]" or "UTC" in str(
        log["timestamp"].dtype
    )
    assert log["timestamp"].is_monotonic_increasing
    chain = list(zip(log["prev_version"][1:], log["new_version"][:-1], strict=True))
    assert all(prev == new for prev, new in chain)
    cut = log.loc[2, "timestamp"]
    assert list(master_store.audit_log(since=cut)["note"]) == ["n1", "n2"]
    assert list(master_store.audit_log(until=cut)["note"]) == ["initial upload", "n0", "n1"]


_A_RECORD = {
    "timestamp": "2024-01-01T00:00:00Z",
    "user": "u",
    "note": "n",
    "prev_version": None,
    "new_version": "v",
    "snapshot_key": "s",
    "row_count": 1,
    "column_count": 1,
    "master_key": "data/master.parquet",
    "save_id": "abc",
    "source": "editor",
    "prev_etag": None,
    "new_etag": "e",
}
MALFORMED_AUDITS = {
    "not json": b"this is not json\n",
    "json list": b"[1, 2, 3]\n",
    "empty": b"",
    "binary": bytes(range(256)),
    "bad timestamp": json.dumps({**_A_RECORD, "timestamp": "yesterday"}).encode(),
    "wrong types": json.dumps({**_A_RECORD, "row_count": "many", "changes": [1]}).encode(),
    "missing field": json.dumps({k: v for k, v in _A_RECORD.items() if k != "user"}).encode(),
}


@pytest.mark.parametrize("name", list(MALFORMED_AUDITS))
def test_a_malformed_audit_is_skipped_with_a_warning(
    name: str,
    master_store: MasterStore,
    s3: Any,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    m = master_store.load()
    master_store.save(edit_volume(m.to_pandas(), 0, 1.5), base=m, note="real save")
    bad = "audit/2024-01-01/master_20240101T000000_0000abc.jsonl"  # looks like ours
    s3.put_object(Bucket=bucket, Key=bad, Body=MALFORMED_AUDITS[name])
    with pytest.warns(RuntimeWarning, match=f"Skipped s3://{bucket}/{bad}"):
        log = master_store.audit_log()
    assert list(log["note"]) == ["initial upload", "real save"]
    with pytest.warns(RuntimeWarning, match="not an s3grid audit record"):
        code = main(["audit", "--bucket", bucket, "--endpoint-url", master_store.cfg.endpoint_url])
    assert code == 0
    assert "real save" in capsys.readouterr().out
    with pytest.warns(RuntimeWarning, match="Skipped"):
        plan = prune(master_store, keep=1, apply=True)
    assert len(plan.archive) == 1
    assert bad in keys_under(s3, bucket, "audit/")  # not ours: left where it is


@pytest.mark.parametrize("status", ["Off", "Suspended"])
def test_unversioned_bucket_warns_on_load_and_refuses_every_write(
    status: str, endpoint: str, s3: Any, table: pa.Table, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"unversioned-{status.lower()}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="data/master.parquet", Body=_parquet(table))
    if status == "Suspended":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    store = MasterStore(S3GridConfig(bucket=name, endpoint_url=endpoint))
    before = all_objects(s3, name)
    with pytest.warns(RuntimeWarning, match=f"Bucket '{name}' has versioning {status.lower()}"):
        m = store.load()
    enable = f"aws s3api put-bucket-versioning --bucket {name}"
    writes = {
        "save": lambda: store.save(edit_volume(m.to_pandas(), 0, 9.5), base=m, note="x"),
        "create": lambda: MasterStore(store.cfg.with_(master_key="new/m.parquet")).create(
            table, note="x"
        ),
        "reconcile": store.reconcile,
        "prune": lambda: prune(store, keep=1, apply=True),
        "export": lambda: export_csv(store, f"s3://{name}/out.csv"),
    }
    for what, write in writes.items():
        warns = pytest.warns(RuntimeWarning) if what == "export" else contextlib.nullcontext()
        with warns, pytest.raises(VersioningError, match=re.escape(enable)) as info:
            write()
        assert status.lower() in str(info.value), what
    code = main(["reconcile", "--bucket", name, "--endpoint-url", endpoint])
    assert code == 1
    assert enable in capsys.readouterr().err
    assert all_objects(s3, name) == before  # nothing was written


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_audit_log_other_master_same_stem(cfg: S3GridConfig, table: pa.Table) -> None:
    a = MasterStore(cfg)
    b = MasterStore(cfg.with_(master_key="other/master.parquet"))
    a.create(table, note="a")
    b.create(table, note="b")
    assert list(a.audit_log()["note"]) == ["a"]
    assert list(b.audit_log()["note"]) == ["b"]


def test_csv_master_round_trip(cfg: S3GridConfig, s3: Any, bucket: str) -> None:
    csv_cfg = cfg.with_(master_key="data/master.csv", file_format="csv")
    store = MasterStore(csv_cfg)
    df = pd.DataFrame(
        {"tow": [1, 1, 2], "net": [0, 1, 0], "note": ["a", None, "c"], "v": [1.5, None, 3.0]}
    )
    store.create(df, note="csv init")
    m = store.load()
    assert m.table.schema.field("tow").type == pa.int64()
    edited = m.to_pandas()
    edited.loc[1, "v"] = 2.25
    res = store.save(edited, base=m, note="csv edit")
    assert res.snapshot_key.endswith(".csv")
    text = s3.get_object(Bucket=bucket, Key="data/master.csv")["Body"].read().decode()
    assert text.splitlines()[0] == '"tow","net","note","v"'
    assert store.load().to_pandas().loc[1, "v"] == 2.25


def test_conflict_when_master_deleted(master_store: MasterStore, s3: Any, bucket: str) -> None:
    m = master_store.load()
    s3.delete_object(Bucket=bucket, Key="data/master.parquet")
    with pytest.raises(ConflictError, match="deleted"):
        master_store.save(m.to_pandas(), base=m, note="x")


def test_unknown_source_refused(master_store: MasterStore) -> None:
    m = master_store.load()
    with pytest.raises(ValidationError, match="Unknown source 'robot'"):
        master_store.save(m.to_pandas(), base=m, note="x", source="robot")


def test_save_ids_sort_by_time_within_a_second() -> None:
    from datetime import UTC, datetime

    from s3grid.commit import new_save_id

    early = new_save_id(datetime(2024, 5, 1, 12, 0, 0, 1_000, tzinfo=UTC))
    late = new_save_id(datetime(2024, 5, 1, 12, 0, 0, 999_000, tzinfo=UTC))
    assert early < late
    assert len(early) == 16


def test_large_transfers_stream_with_progress(
    master_store: MasterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3grid.s3

    monkeypatch.setattr(s3grid.s3, "PROGRESS_BYTES", 1)  # every transfer is "large"
    m = master_store.load()
    df = edit_volume(m.to_pandas(), 2, 2.75)
    res = master_store.save(df, base=m, note="chunked")
    again = master_store.load()
    assert again.version_id == res.new_version
    assert again.to_pandas().loc[2, "volume_filtered"] == 2.75
    body, _ = master_store.bucket.get(res.snapshot_key)
    assert body == master_store.bucket.get(master_store.cfg.master_key)[0]


def _in_parts(store: MasterStore) -> MasterStore:
    """The same master, with every body over 1 KB sent as a multipart upload."""
    return MasterStore(store.cfg.with_(multipart_bytes=1024))


def test_multipart_save_commits_with_a_conditional_complete(
    master_store: MasterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3grid.s3

    monkeypatch.setattr(s3grid.s3, "PART_BYTES", 5 * 1024**2)  # S3's smallest part
    monkeypatch.setattr(s3grid.s3, "PROGRESS_BYTES", 1)
    store = _in_parts(master_store)
    sent: list[dict[str, Any]] = []
    store.bucket.client.meta.events.register(
        "provide-client-params.s3.CompleteMultipartUpload",
        lambda params, **_: (
            sent.append(dict(params)) if params["Key"] == "data/master.parquet" else None
        ),
    )
    big = sample_master(400_000)  # ~13 MB of Parquet: three parts
    m = store.load()
    res = store.save(big, base=m, note="in parts")
    assert [p["IfMatch"] for p in sent] == [m.etag]  # the compare-and-swap is on the complete
    assert [len(p["MultipartUpload"]["Parts"]) for p in sent] == [3]
    again = store.load()
    assert again.version_id == res.new_version
    assert again.etag.endswith('-3"')  # S3's ETag of a three-part object
    assert again.table.equals(big)
    snapshot, _ = store.bucket.get(res.snapshot_key)
    assert snapshot == store.bucket.get(store.cfg.master_key)[0]
    assert store.audit_log().iloc[-1]["new_version"] == res.new_version
    assert (
        store.bucket.client.list_multipart_uploads(Bucket=store.cfg.bucket).get("Uploads", []) == []
    )


@pytest.mark.parametrize("race", [False, True])
def test_stale_multipart_save_is_a_conflict_and_leaves_nothing(
    master_store: MasterStore, s3: Any, bucket: str, race: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _in_parts(master_store)
    base = store.load()
    theirs = store.save(edit_volume(base.to_pandas(), 1, 1.5), base=base, note="theirs first")
    before = all_objects(s3, bucket)
    if race:  # their save lands after our look at the master: the complete refuses ours
        monkeypatch.setattr(store, "look_first", False)
    with pytest.raises(ConflictError):
        store.save(edit_volume(base.to_pandas(), 2, 2.5), base=base, note="mine, stale")
    assert all_objects(s3, bucket) == before  # no master version, snapshot or audit
    assert store.load().version_id == theirs.new_version
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted


def test_failed_part_aborts_the_upload_and_writes_nothing(
    master_store: MasterStore, s3: Any, bucket: str
) -> None:
    store = _in_parts(master_store)

    def drop(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    store.bucket.client.meta.events.register("before-send.s3.UploadPart", drop)
    base = store.load()
    before = all_objects(s3, bucket)
    with pytest.raises(StoreUnavailableError, match="edits are kept"):
        store.save(edit_volume(base.to_pandas(), 2, 2.5), base=base, note="network down")
    assert all_objects(s3, bucket) == before
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_over_single_put_limit_refused(
    master_store: MasterStore, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3grid.s3

    monkeypatch.setattr(s3grid.s3, "MAX_SINGLE_PUT", 1000)
    m = master_store.load()
    before = all_objects(s3, bucket)
    with pytest.raises(ValidationError, match="over 5 GB"):
        master_store.save(m.to_pandas(), base=m, note="too big")
    assert all_objects(s3, bucket) == before


@pytest.mark.moto_only("a real store refuses the made-up secret this test saves with")
def test_audits_never_contain_credentials(
    master_store: MasterStore, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN")
    store = MasterStore(master_store.cfg)
    m = store.load()
    res = store.save(edit_volume(m.to_pandas(), 0, 3.0), base=m, note="n")
    for key in (res.audit_key,):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        assert secret not in body
        assert "EXAMPLETOKEN" not in body
        assert "testing" not in body  # the access key id either
    head = s3.head_object(Bucket=bucket, Key="data/master.parquet")
    assert secret not in json.dumps(head["Metadata"])


@pytest.mark.parametrize("how", ["arrow", "pandas"])
def test_every_parquet_type_round_trips_unchanged(store: MasterStore, how: str) -> None:
    original = every_kind_of_column()
    store.create(original, note="every type")
    m = store.load()
    assert m.table.schema == original.schema
    data = m.table if how == "arrow" else m.to_pandas()
    res = store.save(data, base=m, note="unchanged")
    assert res.cells_changed == 0
    assert_same_table(store.load().table, original)  # NaN stays NaN, null stays null


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"]), "named ['a']"),
        (pa.table({"k": [1], "empty": pa.array([None])}), "['empty'] have no type"),
    ],
)
def test_a_master_s3grid_cannot_keep_is_refused_on_load(
    store: MasterStore, s3: Any, bucket: str, table: pa.Table, message: str
) -> None:
    s3.put_object(Bucket=bucket, Key="data/master.parquet", Body=_parquet(table))
    from s3grid import SchemaError

    with pytest.raises(SchemaError, match=re.escape(message)):
        store.load()
    with pytest.raises(SchemaError, match=re.escape(message)):
        store.create(table, note="x")


def test_every_operation_on_a_master_is_a_method_too(
    master_store: MasterStore, tmp_path: Any
) -> None:
    sql = "SELECT * FROM work_master_parquet WHERE NOT (tow = 1 AND net = 2)"
    preview = master_store.preview_bulk_edit(sql)
    assert preview.diff.deleted == ((1, 2),)
    res = master_store.bulk_edit(sql, note="drop one net")
    assert res.rows_deleted == 1 and master_store.load().table.num_rows == 49
    out = master_store.export_csv(tmp_path / "m.csv")
    assert (tmp_path / "m.csv").read_text().count("\n") == 50  # header + 49 rows
    assert out == str(tmp_path / "m.csv")
    plan = master_store.prune(keep=1)
    assert not plan.applied and len(plan.archive) == 1


def test_a_save_writes_the_configured_compression(
    master_store: MasterStore, s3: Any, bucket: str
) -> None:
    import pyarrow.parquet as pq

    def codecs(key: str) -> set[str]:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        meta = pq.ParquetFile(pa.BufferReader(body)).metadata
        return {
            meta.row_group(g).column(c).compression
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        }

    assert codecs(master_store.cfg.master_key) == {"SNAPPY"}  # the default
    store = MasterStore(master_store.cfg.with_(compression="zstd:3"))
    m = store.load()
    res = store.save(edit_volume(m.to_pandas(), 0, 3.5), base=m, note="zstd")
    assert codecs(store.cfg.master_key) == {"ZSTD"}
    assert codecs(res.snapshot_key) == {"ZSTD"}
    again = master_store.load()  # a reader with the default setting loads it as is
    assert again.version_id == res.new_version
    assert again.to_pandas().loc[0, "volume_filtered"] == 3.5


@pytest.mark.parametrize("in_pieces", [False, True])  # one read; in pieces, with progress
def test_a_body_that_arrives_damaged_is_read_again_or_refused(
    master_store: MasterStore, monkeypatch: pytest.MonkeyPatch, in_pieces: bool
) -> None:
    """botocore checks the CRC32 the store keeps for the object: a damaged body is read
    again, and refused in words if it stays damaged, never decoded."""
    from botocore.response import StreamingBody

    from s3grid import s3 as s3_module

    if in_pieces:
        monkeypatch.setattr(s3_module, "PROGRESS_BYTES", 1024)
    m = master_store.load()
    master_store.save(sample_master(300_000), base=m, note="bigger")
    expected = master_store.load().table
    real = StreamingBody.read
    damaged: list[int] = []

    def flip_first_byte(self: StreamingBody, amt: int | None = None) -> bytes:
        chunk = real(self, amt)
        if chunk and self._amount_read == len(chunk) and len(damaged) < budget[0]:
            damaged.append(1)
            return bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        return chunk

    monkeypatch.setattr(StreamingBody, "read", flip_first_byte)
    budget = [1]
    assert master_store.load().table.equals(expected)  # damaged once: read again
    assert damaged == [1]
    budget[0] = 100
    with pytest.raises(StoreUnavailableError, match="arrived damaged") as caught:
        master_store.load()
    assert "retry" in str(caught.value)
    assert len(damaged) == 1 + master_store.cfg.max_attempts


def test_a_ranged_read_cut_short_is_read_again_or_refused(
    master_store: MasterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranged reads behind flatten (of Athena's part files): a body cut short is
    read again, and refused in words if it stays cut short."""
    from botocore.exceptions import ResponseStreamingError
    from botocore.response import StreamingBody

    key = master_store.cfg.master_key
    whole, _ = master_store.bucket.get(key)
    real = StreamingBody.read
    cuts: list[int] = []

    def cut(self: StreamingBody, amt: int | None = None) -> bytes:
        if len(cuts) < budget[0]:
            cuts.append(1)
            raise ResponseStreamingError(error="Connection broken: IncompleteRead")
        return real(self, amt)

    monkeypatch.setattr(StreamingBody, "read", cut)
    budget = [1]
    assert master_store.bucket.get_range(key, 4, 100) == bytes(whole[4:104])
    assert cuts == [1]
    budget[0] = 100
    with pytest.raises(StoreUnavailableError, match=r"\(bytes 4-103\): the body was cut short"):
        master_store.bucket.get_range(key, 4, 100)
    assert len(cuts) == 1 + master_store.cfg.max_attempts
