"""The commit step: ambiguous outcomes settled by HEAD, and one winner among racers."""

from __future__ import annotations

import json
import threading
import warnings
from typing import Any

import pandas as pd
import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from s3grid import (
    ConflictError,
    LostUpdateError,
    MasterStore,
    S3GridConfig,
    StoreUnavailableError,
)
from tests.support.locks import ignoring_if_match, without_lock
from tests.support.s3 import all_objects, keys_under

pytestmark = pytest.mark.both_stores


def flaky_master_put(store: MasterStore, *, send_first: bool, times: int = 1) -> list[str]:
    """Make the next master PUTs time out, after (or before) the request reached S3."""
    client = store.bucket.client
    real = client.put_object
    calls: list[str] = []

    def put_object(**kwargs: Any) -> Any:
        if kwargs["Key"] == store.cfg.master_key and len(calls) < times:
            calls.append("sent" if send_first else "lost")
            if send_first:
                real(**kwargs)  # it landed; only the response is lost
            raise ReadTimeoutError(endpoint_url="http://local")
        return real(**kwargs)

    client.put_object = put_object
    return calls


def test_timeout_after_commit_is_reported_as_done(master_store: MasterStore) -> None:
    m = master_store.load()
    df = m.to_pandas()
    df.loc[0, "volume_filtered"] = 5.5
    calls = flaky_master_put(master_store, send_first=True)
    res = master_store.save(df, base=m, note="timeout after send")
    assert calls == ["sent"]
    latest = master_store.load()
    assert latest.version_id == res.new_version  # HEAD found our save id: done, once
    assert len(master_store.versions()) == 2
    assert list(master_store.audit_log()["note"]) == ["initial upload", "timeout after send"]


def test_timeout_before_commit_is_retried_once(master_store: MasterStore) -> None:
    m = master_store.load()
    df = m.to_pandas()
    df.loc[0, "volume_filtered"] = 6.5
    calls = flaky_master_put(master_store, send_first=False)
    res = master_store.save(df, base=m, note="timeout before send")
    assert calls == ["lost"]
    assert master_store.load().version_id == res.new_version
    assert len(master_store.versions()) == 2  # not committed twice


def test_outcome_unknown_when_s3_stays_down(
    master_store: MasterStore, cfg: S3GridConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = master_store.load()
    flaky_master_put(master_store, send_first=True)

    real_head = master_store.bucket.head
    heads: list[str] = []

    def head_down(*args: Any, **kwargs: Any) -> Any:
        heads.append("head")
        if len(heads) == 1:  # the look before encoding: S3 is still up then
            return real_head(*args, **kwargs)
        raise StoreUnavailableError("HEAD failed: S3 is unreachable")

    monkeypatch.setattr(master_store.bucket, "head", head_down)
    with pytest.raises(StoreUnavailableError, match="may or may not have been committed") as info:
        master_store.save(m.to_pandas(), base=m, note="unknown")
    assert info.value.maybe_committed
    assert len(heads) == 2  # before the save, and after the PUT whose answer was lost
    monkeypatch.undo()
    assert len(master_store.reconcile()) == 1  # the landed version gets its snapshot+audit


def race(writers: list[MasterStore], rounds: int) -> None:
    """``rounds`` rounds of every writer saving its own edit on the same base at once:
    exactly one wins each round, the others get a conflict."""
    for r in range(rounds):
        base = writers[0].load()
        barrier = threading.Barrier(len(writers))
        outcomes: list[str] = []

        def save(
            i: int,
            store: MasterStore,
            base: Any = base,
            r: int = r,
            barrier: threading.Barrier = barrier,
            outcomes: list[str] = outcomes,
        ) -> None:
            df = base.to_pandas()
            df.loc[i, "volume_filtered"] = float(r * 10 + i)
            barrier.wait()
            try:
                store.save(df, base=base, note=f"round {r} writer {i}")
                outcomes.append("won")
            except ConflictError:
                outcomes.append("conflict")

        threads = [threading.Thread(target=save, args=(i, w)) for i, w in enumerate(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["conflict"] * (len(writers) - 1) + ["won"]


def test_racing_savers_one_winner_per_round(
    master_store: MasterStore, cfg: S3GridConfig, s3: Any, bucket: str, store_kind: str
) -> None:
    writers = [MasterStore(cfg) for _ in range(8)]
    # SeaweedFS makes racing conditional writes wait on a lock that retries about once a
    # second, so a round there takes that long: fewer rounds, the same race.
    rounds = 40 if store_kind == "moto" else 25
    race(writers, rounds)
    assert len(master_store.versions()) == rounds + 1
    log = master_store.audit_log()
    assert len(log) == rounds + 1
    chain = list(zip(log["prev_version"][1:], log["new_version"][:-1], strict=True))
    assert all(prev == new for prev, new in chain)
    snapshots = [k for k, _ in all_objects(s3, bucket) if k.startswith("snapshots/")]
    assert len(snapshots) == rounds + 1


def test_a_save_looks_first_so_a_lockless_store_still_refuses_a_stale_base(
    master_store: MasterStore,
    cfg: S3GridConfig,
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Through a store that ignores IfMatch, a save on a base a colleague has already
    # replaced is refused by the look before the save: the table is not even coerced,
    # validated or diffed (work that takes seconds on a large master), let alone sent.
    import s3grid.store as store_mod

    a, b = MasterStore(cfg), MasterStore(cfg)
    ignoring_if_match(b)
    ma, mb = a.load(), b.load()
    a.save(ma.to_pandas().assign(volume_filtered=1.0), base=ma, note="A")
    before = all_objects(s3, bucket)
    work: list[str] = []
    for name in ("coerce_table", "encode_table", "build_changeset"):
        real = getattr(store_mod, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            work.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(store_mod, name, counted)
    with pytest.raises(ConflictError, match="Nothing was written"):
        b.save(mb.to_pandas().assign(volume_filtered=2.0), base=mb, note="B")
    # even a table that could not be saved anyway: the moved master is what to act on
    with pytest.raises(ConflictError):
        b.save(mb.to_pandas().iloc[:0], base=mb, note="B, empty")
    assert work == []
    assert all_objects(s3, bucket) == before
    fresh = b.load()  # on the current base, the same save goes through all the steps
    b.save(fresh.to_pandas().assign(volume_filtered=2.0), base=fresh, note="B again")
    assert sorted(work) == ["build_changeset", "coerce_table", "encode_table"]  # in parallel


def test_lost_update_is_detected_named_and_audited(
    master_store: MasterStore, cfg: S3GridConfig
) -> None:
    a, b = MasterStore(cfg), MasterStore(cfg)
    without_lock(b)
    ma, mb = a.load(), b.load()
    first = a.save(ma.to_pandas(), base=ma, note="A")
    with pytest.raises(LostUpdateError) as info:
        b.save(mb.to_pandas(), base=mb, note="B, blind")
    err = info.value
    assert err.overwritten == (first.new_version,)
    assert first.new_version in str(err)
    assert "LOST UPDATE" in str(err)
    assert b.load().version_id == err.result.new_version  # it did commit
    raw = master_store.bucket.get(err.result.audit_key)[0]
    assert json.loads(raw)["lost_update_of"] == [first.new_version]
    assert master_store.reconcile() == []  # snapshot and audit were written


@pytest.mark.parametrize("step", ["snapshot", "audit"])
def test_endpoint_dies_after_commit_then_repaired(
    master_store: MasterStore, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = master_store.load()
    df = m.to_pandas()
    df.loc[0, "volume_filtered"] = 8.5
    # The endpoint goes away right after the commit: the snapshot's copy, or the
    # audit's PUT, finds nobody there (a botocore hook refuses the connection).
    event = "CopyObject" if step == "snapshot" else "PutObject"
    prefix = (
        master_store.cfg.snapshot_prefix if step == "snapshot" else master_store.cfg.audit_prefix
    )

    def down(params: dict[str, Any], **_: Any) -> None:
        if str(params.get("Key", "")).startswith(prefix + "/"):
            raise EndpointConnectionError(endpoint_url="http://gone")

    events = master_store.bucket.client.meta.events
    events.register(f"before-parameter-build.s3.{event}", down)
    try:
        with pytest.warns(RuntimeWarning, match="reconcile"):
            res = master_store.save(df, base=m, note=f"dies at {step}")
    finally:
        events.unregister(f"before-parameter-build.s3.{event}", down)
    assert res.incomplete is not None
    assert f"Saved as version {res.new_version}" in res.incomplete
    assert master_store.load().version_id == res.new_version  # committed, and said so
    repairs = master_store.reconcile()
    assert [r.version_id for r in repairs] == [res.new_version]
    assert master_store.reconcile() == []
    # the next save works as usual once the endpoint is back
    m2 = master_store.load()
    assert master_store.save(m2.to_pandas(), base=m2, note="after").incomplete is None


def test_409_concurrent_write_is_retried_when_master_unchanged(
    master_store: MasterStore,
) -> None:
    from botocore.exceptions import ClientError

    client = master_store.bucket.client
    real = client.put_object
    calls: list[int] = []

    def put_object(**kwargs: Any) -> Any:
        if kwargs["Key"] == master_store.cfg.master_key and not calls:
            calls.append(409)
            raise ClientError(
                {
                    "Error": {"Code": "ConditionalRequestConflict", "Message": "x"},
                    "ResponseMetadata": {"HTTPStatusCode": 409},
                },
                "PutObject",
            )
        return real(**kwargs)

    client.put_object = put_object
    m = master_store.load()
    res = master_store.save(m.to_pandas(), base=m, note="after a 409")
    assert calls == [409]
    assert master_store.load().version_id == res.new_version
    assert len(master_store.versions()) == 2


# --- answers cut short: settled like a timeout, never read as "no ETag" or version "null"


def through(proxy: Any, store: MasterStore) -> MasterStore:
    """The same master, reached through the cutting proxy."""
    return MasterStore(store.cfg.with_(endpoint_url=proxy.url))


@pytest.mark.parametrize("mode", ["status", "headers"])
def test_commit_answer_cut_short_is_settled_by_save_id(
    master_store: MasterStore, cut_proxy: Any, mode: str
) -> None:
    store = through(cut_proxy, master_store)
    m = store.load()
    df = m.to_pandas()
    df.loc[0, "volume_filtered"] = 7.25
    rule = cut_proxy.cut("PUT", f"/{store.cfg.master_key}", mode)
    res = store.save(df, base=m, note=f"answer cut at {mode}")
    assert rule.seen == 1  # sent once: the HEAD found it had landed, so no resend
    latest = master_store.load()
    assert res.new_version == latest.version_id != "null"
    assert res.new_etag == latest.etag
    assert res.incomplete is None
    assert len(master_store.versions()) == 2
    log = master_store.audit_log()
    assert log.iloc[-1]["new_version"] == latest.version_id
    assert latest.to_pandas().loc[0, "volume_filtered"] == 7.25


@pytest.mark.moto_only(
    "the proxy cuts the headers halfway by bytes; on moto that drops the ETag, on SeaweedFS "
    "(other header order) only metadata, which a HEAD does not need, so nothing is retried"
)
@pytest.mark.parametrize("mode", ["status", "headers"])
def test_a_cut_head_before_the_save_is_not_a_conflict(
    master_store: MasterStore, cut_proxy: Any, mode: str
) -> None:
    store = through(cut_proxy, master_store)
    m = store.load()
    rule = cut_proxy.cut("HEAD", f"/{store.cfg.master_key}", mode)
    res = store.save(m.to_pandas(), base=m, note="head cut once")
    assert rule.seen >= 2  # the cut answer was asked again, not taken as a moved master
    assert master_store.load().version_id == res.new_version


def test_heads_cut_every_time_are_unreachable_not_a_conflict(
    master_store: MasterStore, cut_proxy: Any, s3: Any, bucket: str
) -> None:
    store = through(cut_proxy, master_store)
    m = store.load()
    before = all_objects(s3, bucket)
    cut_proxy.cut("HEAD", f"/{store.cfg.master_key}", "status", times=100)
    with pytest.raises(StoreUnavailableError, match="Nothing was written"):
        store.save(m.to_pandas(), base=m, note="no answer")
    assert all_objects(s3, bucket) == before


def test_a_request_sent_once_is_sent_once(master_store: MasterStore, cut_proxy: Any) -> None:
    # botocore's retries={"max_attempts": 1} still resends once; s3grid alone decides.
    store = through(cut_proxy, master_store)
    cut_proxy.cut("GET", "/audit-x", "503", times=5)
    with pytest.raises(StoreUnavailableError):
        store.bucket.call("get_object", what="GET", retry=False, Key="audit-x")
    assert cut_proxy.requests.count("GET /" + store.cfg.bucket + "/audit-x") == 1


def test_snapshot_and_audit_answers_cut_short_are_not_incomplete(
    master_store: MasterStore, cut_proxy: Any
) -> None:
    store = through(cut_proxy, master_store)
    m = store.load()
    snap = cut_proxy.cut("PUT", "/snapshots/", "status")
    audit = cut_proxy.cut("PUT", "/audit/", "status")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "incomplete, run reconcile" warning
        res = store.save(m.to_pandas(), base=m, note="paper trail answers cut")
    assert res.incomplete is None
    assert (snap.seen, audit.seen) == (2, 2)  # resent; the key was taken by our own write
    assert master_store.reconcile() == []


def test_flatten_output_put_that_landed_is_not_a_conflict(
    master_store: MasterStore, cut_proxy: Any, s3: Any, bucket: str
) -> None:
    from s3grid.cli import main
    from tests.support.seed import put_part

    put_part(s3, bucket, "staging/run/part-0", master_store.load().table)
    rule = cut_proxy.cut("PUT", "/exports/flat.parquet", "drop")
    code = main(
        [
            "flatten",
            "--bucket",
            bucket,
            "--endpoint-url",
            cut_proxy.url,
            "--prefix",
            "staging/run/",
            "--output-key",
            "exports/flat.parquet",
        ]
    )
    assert code == 0
    assert rule.seen == 2  # resent after the lost answer; the key held exactly its bytes
    assert len(s3.list_object_versions(Bucket=bucket, Prefix="exports/")["Versions"]) == 1


# ------------------------------------------------- the streamed commit (commit="copy")


@pytest.fixture
def streamed(master_store: MasterStore, monkeypatch: pytest.MonkeyPatch) -> MasterStore:
    """The same master, saved with commit="copy"; parts of 5 MiB (S3's least) so that a
    test-sized body goes up in several."""
    monkeypatch.setattr("s3grid.s3.PART_BYTES", 5 * 1024**2)
    return MasterStore(master_store.cfg.with_(commit="copy"))


def uploads_in_flight(s3: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


@pytest.mark.parametrize("rows", [50, 300_000])  # one PUT; several parts
def test_a_streamed_save_commits_by_copy_and_its_snapshot_is_that_version(
    streamed: MasterStore, s3: Any, bucket: str, rows: int
) -> None:
    from s3grid.sample import sample_master

    m = streamed.load()
    table = sample_master(rows)
    res = streamed.save(table, base=m, note="streamed", source="api")
    master = s3.get_object(Bucket=bucket, Key=streamed.cfg.master_key, VersionId=res.new_version)
    snapshot = s3.get_object(Bucket=bucket, Key=res.snapshot_key)
    body = master["Body"].read()
    assert body == snapshot["Body"].read()
    # the large body went up in parts (a multipart ETag ends in -<parts>), the small in one
    parts = snapshot["ETag"].strip('"').partition("-")[2]
    assert int(parts) >= 2 if rows > 50 else parts == "", snapshot["ETag"]
    assert master["Metadata"]["s3grid-save-id"] == res.save_id  # the copy kept the metadata
    assert streamed.load().table.equals(table)
    assert streamed.versions()[0].version_id == res.new_version
    log = streamed.audit_log()
    assert list(log["note"]) == ["initial upload", "streamed"]
    assert log["snapshot_key"].iloc[-1] == res.snapshot_key
    assert res.incomplete is None and uploads_in_flight(s3, bucket) == []


def test_a_stale_streamed_save_is_refused_and_leaves_nothing(
    streamed: MasterStore, s3: Any, bucket: str
) -> None:
    from s3grid.sample import sample_master

    stale = streamed.load()
    streamed.save(stale.to_pandas(), base=stale, note="moves the master on")
    before = all_objects(s3, bucket)
    streamed.look_first = False  # so that the conditional copy itself must refuse it
    with pytest.raises(ConflictError, match="Nothing was written"):
        streamed.save(sample_master(300_000), base=stale, note="stale")
    # the snapshot it streamed before the copy was refused is deleted (a delete marker
    # over its one version: editors may not destroy versions)
    added = [key for key, _ in set(all_objects(s3, bucket)) - set(before)]
    assert len(added) == 2 and added[0] == added[1] and added[0].startswith("snapshots/")
    assert added[0] not in keys_under(s3, bucket, "snapshots/")
    assert streamed.versions()[0].version_id == streamed.load().version_id
    assert len(streamed.audit_log()) == 2
    assert uploads_in_flight(s3, bucket) == []


def test_a_streamed_save_whose_upload_fails_leaves_the_master_and_no_parts(
    streamed: MasterStore, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3grid.sample import sample_master

    m = streamed.load()
    before = all_objects(s3, bucket)
    client = streamed.bucket.client
    real = client.upload_part
    sent: list[int] = []

    def upload_part(**kwargs: Any) -> Any:
        sent.append(kwargs["PartNumber"])
        if kwargs["PartNumber"] == 2:
            raise EndpointConnectionError(endpoint_url="http://local")
        return real(**kwargs)

    monkeypatch.setattr(client, "upload_part", upload_part)
    with pytest.raises(StoreUnavailableError):
        streamed.save(sample_master(300_000), base=m, note="cut off")
    assert 2 in sent
    assert all_objects(s3, bucket) == before  # no master version, no snapshot, no audit
    assert uploads_in_flight(s3, bucket) == []  # the upload was aborted
    assert streamed.load().version_id == m.version_id


def test_a_streamed_save_killed_before_its_commit_leaves_a_stray_that_is_reported(
    streamed: MasterStore, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from s3grid.sample import sample_master

    m = streamed.load()
    committed = streamed.save(m.to_pandas(), base=m, note="committed")
    m = streamed.load()
    edits = sample_master(300_000)

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # the kernel stops between the upload and the copy

    with monkeypatch.context() as patch:
        patch.setattr("s3grid.store.commit_copy", killed)
        with pytest.raises(KeyboardInterrupt):
            streamed.save(edits, base=m, note="never committed")
    assert streamed.load().version_id == m.version_id
    # a save whose audit was lost (a crash after its commit) is named by its version
    s3.delete_object(Bucket=bucket, Key=streamed.audit_log()["audit_key"].iloc[-1])
    # another master's snapshot under the same prefix is not this master's stray
    s3.put_object(Bucket=bucket, Key="snapshots/other_20240101T000000_0123abc.parquet", Body=b"x")

    assert streamed.stray_snapshots() == []  # a day's grace: it could still commit
    (stray,) = streamed.stray_snapshots(older_than=timedelta(0))
    assert stray.key in keys_under(s3, bucket, "snapshots/")
    assert stray.key not in {committed.snapshot_key, *streamed.audit_log()["snapshot_key"]}
    assert stray.save_id in stray.key and stray.size > 0
    assert streamed.read_snapshot(stray.key).equals(edits)  # the edits can be read back
    # reconcile writes the lost audit, and nothing for the stray
    repairs = streamed.reconcile()
    assert [(r.save_id, r.wrote_audit) for r in repairs] == [(committed.save_id, True)]
    assert streamed.stray_snapshots(older_than=timedelta(0)) == [stray]


def test_racing_streamed_savers_one_winner_per_round(
    streamed: MasterStore, s3: Any, bucket: str, store_kind: str
) -> None:
    writers = [MasterStore(streamed.cfg) for _ in range(8)]
    for w in writers:
        w.look_first = False  # the copies themselves race
    rounds = 10 if store_kind == "moto" else 5
    race(writers, rounds)
    assert len(streamed.versions()) == rounds + 1
    assert len(keys_under(s3, bucket, "snapshots/")) == rounds + 1  # the losers' are deleted


# ------------------------- the streamed commit in parts (AWS, or multipart_bytes set)


@pytest.fixture
def in_parts(master_store: MasterStore, monkeypatch: pytest.MonkeyPatch) -> MasterStore:
    """The same master, saved as on AWS: a body over 1 KB goes up to the master in parts
    (of 5 MiB, S3's least) while it encodes, committed by a conditional complete."""
    monkeypatch.setattr("s3grid.s3.PART_BYTES", 5 * 1024**2)
    return MasterStore(master_store.cfg.with_(multipart_bytes=1024))


def test_parts_go_up_to_the_master_while_the_body_encodes(
    in_parts: MasterStore, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3grid.store
    from s3grid.sample import sample_master

    encoding, prepared = threading.Event(), threading.Event()
    real_write, real_diff = s3grid.store.write_table, s3grid.store.build_changeset

    def build_changeset(*args: Any, **kwargs: Any) -> Any:
        try:
            return real_diff(*args, **kwargs)
        finally:
            prepared.set()

    def write_table(*args: Any, **kwargs: Any) -> None:
        assert prepared.wait(30)  # validation has passed: parts may go from the first
        encoding.set()
        try:
            real_write(*args, **kwargs)
        finally:
            encoding.clear()

    monkeypatch.setattr(s3grid.store, "build_changeset", build_changeset)
    monkeypatch.setattr(s3grid.store, "write_table", write_table)
    sent: list[tuple[str, bool]] = []
    key = in_parts.cfg.master_key

    def note(model: Any, params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == key:
            sent.append((model.name, encoding.is_set()))

    in_parts.bucket.client.meta.events.register("provide-client-params.s3.*", note)
    m = in_parts.load()
    table = sample_master(400_000)  # ~13 MB of Parquet: three parts
    res = in_parts.save(table, base=m, note="in parts, streamed")
    writes = [(op, busy) for op, busy in sent if op in ("UploadPart", "CompleteMultipartUpload")]
    assert [op for op, _ in writes] == ["UploadPart"] * 3 + ["CompleteMultipartUpload"]
    assert writes[0][1], "the first part went up only after the encoder had finished"
    assert not writes[-1][1]  # the complete waits for the whole body
    master = s3.head_object(Bucket=bucket, Key=in_parts.cfg.master_key)
    assert master["ETag"] == res.new_etag and master["ETag"].endswith('-3"')
    assert in_parts.load().table.equals(table)
    snapshot = s3.get_object(Bucket=bucket, Key=res.snapshot_key)["Body"].read()
    assert snapshot == in_parts.bucket.get(in_parts.cfg.master_key)[0]
    assert uploads_in_flight(s3, bucket) == []


@pytest.mark.parametrize("how", ["streamed", "in_parts"])  # to the snapshot; to the master
def test_a_streamed_save_that_fails_validation_sends_nothing(
    how: str, s3: Any, bucket: str, request: pytest.FixtureRequest
) -> None:
    from s3grid import ValidationError

    store: MasterStore = request.getfixturevalue(how)
    m = store.load()
    df = pd.concat([m.to_pandas()] * 200, ignore_index=True)  # duplicate keys; over 1 KB
    calls: list[str] = []
    store.bucket.client.meta.events.register(
        "before-call.s3.*", lambda model, **_: calls.append(model.name)
    )
    with pytest.raises(ValidationError, match="[Dd]uplicate"):
        store.save(df, base=m, note="duplicate keys")
    writes = {"PutObject", "CreateMultipartUpload", "UploadPart", "CopyObject"}
    assert writes.isdisjoint(calls), calls
    assert uploads_in_flight(s3, bucket) == []


def test_a_409_on_the_complete_sends_the_body_again(
    in_parts: MasterStore, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 answers a conditional complete that meets a concurrent one with 409 and asks
    for a new upload: the save encodes the body again and sends it, once."""
    from botocore.exceptions import ClientError

    from s3grid.sample import sample_master

    client = in_parts.bucket.client
    real = client.complete_multipart_upload
    completes: list[str] = []

    def complete(**kwargs: Any) -> Any:
        if kwargs["Key"] != in_parts.cfg.master_key:  # the changeset goes up in parts too
            return real(**kwargs)
        completes.append(kwargs["IfMatch"])
        if len(completes) == 1:
            raise ClientError(
                {
                    "Error": {"Code": "ConditionalRequestConflict", "Message": "try again"},
                    "ResponseMetadata": {"HTTPStatusCode": 409},
                },
                "CompleteMultipartUpload",
            )
        return real(**kwargs)

    monkeypatch.setattr(client, "complete_multipart_upload", complete)
    m = in_parts.load()
    table = sample_master(400_000)
    res = in_parts.save(table, base=m, note="after a 409")
    assert completes == [m.etag, m.etag]  # each carried the condition
    assert [v.version_id for v in in_parts.versions()][:1] == [res.new_version]
    assert len(in_parts.versions()) == 2
    assert in_parts.load().table.equals(table)
    assert uploads_in_flight(s3, bucket) == []


def test_a_lost_answer_to_the_complete_is_settled_by_the_save_id(
    in_parts: MasterStore, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3grid.sample import sample_master

    client = in_parts.bucket.client
    real = client.complete_multipart_upload
    completes: list[int] = []

    def complete(**kwargs: Any) -> Any:
        if kwargs["Key"] != in_parts.cfg.master_key:
            return real(**kwargs)
        completes.append(1)
        real(**kwargs)  # it lands; its answer does not come back
        raise ReadTimeoutError(endpoint_url="http://local")

    monkeypatch.setattr(client, "complete_multipart_upload", complete)
    m = in_parts.load()
    res = in_parts.save(sample_master(400_000), base=m, note="answer lost")
    assert completes == [1]  # not resent: the HEAD found the save's own version
    assert res.incomplete is None
    assert in_parts.load().version_id == res.new_version
    assert len(in_parts.versions()) == 2
    assert in_parts.audit_log().iloc[-1]["new_version"] == res.new_version


def test_a_new_master_in_parts_is_created_once(in_parts: MasterStore, s3: Any, bucket: str) -> None:
    from s3grid.sample import sample_master

    store = MasterStore(in_parts.cfg.with_(master_key="data/other.parquet"))
    conditions: list[str | None] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == "data/other.parquet":
            conditions.append(params.get("IfNoneMatch"))

    store.bucket.client.meta.events.register(
        "provide-client-params.s3.CompleteMultipartUpload", note
    )
    table = sample_master(400_000)
    res = store.create(table, note="new, in parts")
    assert conditions == ["*"]
    store.look_first = False  # so that the complete itself must refuse the second
    with pytest.raises(ConflictError):
        store.create(sample_master(300_000), note="again")
    assert conditions == ["*", "*"]
    assert [v.version_id for v in store.versions()] == [res.new_version]
    assert store.load().table.equals(table)
    assert uploads_in_flight(s3, bucket) == []


@pytest.mark.parametrize("how", ["streamed", "in_parts"])
def test_a_body_held_back_until_validation_passed_goes_up_whole(
    how: str, s3: Any, bucket: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation that ends after the encoder: every part waits for it, then goes up."""
    import s3grid.store
    from s3grid.sample import sample_master

    store: MasterStore = request.getfixturevalue(how)
    encoded = threading.Event()
    real_write, real_validate = s3grid.store.write_table, MasterStore.validate

    def write_table(*args: Any, **kwargs: Any) -> None:
        real_write(*args, **kwargs)
        encoded.set()

    def validate(self: MasterStore, table: Any) -> None:
        assert encoded.wait(30)
        real_validate(self, table)

    monkeypatch.setattr(s3grid.store, "write_table", write_table)
    monkeypatch.setattr(MasterStore, "validate", validate)
    m = store.load()
    table = sample_master(400_000)  # ~13 MB: three parts of 5 MiB
    res = store.save(table, base=m, note="validated late")
    # what went up in parts: the snapshot (a copy onto the master has an ETag of its own)
    key = res.snapshot_key if how == "streamed" else store.cfg.master_key
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"].endswith('-3"')
    assert store.load().table.equals(table)
    assert uploads_in_flight(s3, bucket) == []


@pytest.mark.parametrize("size", [1000, 11 * 1024**2])  # one PUT; three parts
def test_a_stream_knows_the_etag_of_what_it_sent(
    in_parts: MasterStore, s3: Any, bucket: str, size: int
) -> None:
    """How a save recognises its own version when a HEAD lacks the metadata."""
    stream = in_parts.bucket.stream("scratch/body", when=lambda: {}, threshold=100)
    assert stream.etag == ""
    chunk = bytes(range(256)) * 4096
    for start in range(0, size, len(chunk)):
        stream.write(chunk[: size - start])
    answer = stream.finish()
    assert (
        stream.etag == answer["ETag"] == s3.head_object(Bucket=bucket, Key="scratch/body")["ETag"]
    )
    assert stream.etag.endswith('-3"') == (size > 5 * 1024**2)
