"""Changesets (what each save changed, cell by cell) and the history of a row, a
column or a cell built from them."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3grid import MasterStore, S3GridConfig
from s3grid.aws_lambda import handler
from s3grid.changeset import (
    ADDED,
    CELL,
    DELETED,
    LABEL,
    build_changeset,
    changeset_frame,
    decode_changeset,
    encode_changeset,
    select_changes,
)
from s3grid.diff import ChangeCounts
from s3grid.editor import Editor
from s3grid.errors import MasterFormatError, ValidationError
from tests.support.events import SCHEDULE, stage
from tests.support.frontend import FrontEnd, save
from tests.support.s3 import keys_under


def changeset_at(store: MasterStore, key: str) -> pd.DataFrame:
    body, _ = store.bucket.get(key)
    changeset = decode_changeset(body, where=key)
    frame = changeset.table.to_pandas().astype(object)
    frame = frame.where(frame.notna(), None)
    frame["key"] = [tuple(k.values()) if k else None for k in frame["key"]]
    return frame


def test_every_save_path_writes_the_changeset_its_audit_names(
    master_store: MasterStore,
    cfg: S3GridConfig,
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    athena_url: str,
) -> None:
    store = master_store
    first = store.audit_log().iloc[0]
    created = changeset_at(store, first["changeset_key"])
    assert (created["change"] == ADDED).sum() == 50  # init: every row added
    assert first["changeset_key"].startswith("changes/")

    m = store.load()
    df = m.to_pandas()
    df.loc[df["tow"].eq(3) & df["net"].eq(1), "volume_filtered"] = 123.5
    store.save(df, base=m, note="api")

    editor = Editor(store, page_size=20)
    FrontEnd(editor).type_into(0, "min_depth", "7")
    assert save(editor, "editor")
    editor.close()

    store.bulk_edit("SELECT * FROM work_master_parquet WHERE NOT (tow = 1 AND net = 0)", note="sql")
    store.restore(version_id=m.version_id, base=store.load(), note="restore")

    monkeypatch.setenv("S3_BUCKET", cfg.bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", cfg.endpoint_url or "")
    monkeypatch.setenv("ATHENA_ENDPOINT_URL", athena_url)
    stage(store, s3, bucket, 42.0)
    assert handler(SCHEDULE, None)["status"] == "promoted"

    log = store.audit_log()
    assert list(log["source"]) == ["init", "api", "editor", "sql", "restore", "automation"]
    assert sorted(keys_under(s3, bucket, "changes/")) == sorted(log["changeset_key"])
    by_source = {r.source: changeset_at(store, r.changeset_key) for r in log.itertuples()}

    api = by_source["api"]
    assert api[["change", "key", "column", "old", "new"]].values.tolist() == [
        [CELL, (3, 1), "volume_filtered", api["old"][0], "123.5"]
    ]
    assert not math.isclose(float(api["old"][0]), 123.5)
    edited = by_source["editor"]
    assert edited[["change", "column", "new"]].values.tolist() == [[CELL, "min_depth", "7"]]
    assert by_source["sql"][["change", "key"]].values.tolist() == [[DELETED, (1, 0)]]
    restored = by_source["restore"]  # back to the first version: the api's cell and sql's row
    assert restored[["change", "key", "column"]].values.tolist() == [
        [CELL, (3, 1), "volume_filtered"],
        [ADDED, (1, 0), None],
    ]
    assert set(by_source["automation"]["column"].dropna()) == {"volume_filtered"}
    for row in log.itertuples():  # the counts in the audit are the changeset's
        frame = by_source[row.source]
        assert row.cells_changed == (frame["change"] == CELL).sum()
        assert row.rows_added == (frame["change"] == ADDED).sum()
        assert row.rows_deleted == (frame["change"] == DELETED).sum()


def test_reconcile_rebuilds_a_missing_changeset(
    master_store: MasterStore, s3: Any, bucket: str
) -> None:
    m = master_store.load()
    df = m.to_pandas()
    df.loc[4, "net_size"] = 0.25
    res = master_store.save(df, base=m, note="one cell")
    key = master_store.audit_log().iloc[-1]["changeset_key"]
    written, _ = master_store.bucket.get(key)
    s3.delete_object(Bucket=bucket, Key=key)  # as if the kernel died before writing it

    repairs = master_store.reconcile()
    assert [(r.version_id, r.wrote_changeset, r.wrote_audit) for r in repairs] == [
        (res.new_version, True, False)
    ]
    rebuilt, _ = master_store.bucket.get(key)
    assert decode_changeset(rebuilt, where=key).table.equals(
        decode_changeset(written, where=key).table
    )
    assert master_store.reconcile() == []  # idempotent


def test_a_save_cut_short_before_its_changeset_is_repaired(
    master_store: MasterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3grid.errors import StoreUnavailableError

    def fail(*_: Any, **__: Any) -> None:
        raise StoreUnavailableError("the network went away")

    m = master_store.load()
    with monkeypatch.context() as mp:
        mp.setattr(master_store._history, "write_changeset", fail)
        with pytest.warns(RuntimeWarning, match="reconcile"):
            res = master_store.save(m.to_pandas().assign(min_depth=1), base=m, note="cut short")
    assert res.incomplete is not None
    assert master_store.load().version_id == res.new_version  # the save itself stands
    repairs = master_store.reconcile()
    assert [(r.wrote_changeset, r.wrote_audit) for r in repairs] == [(True, True)]
    history = master_store.history(column="min_depth")
    assert (history["note"] == "cut short").sum() == 50


@pytest.fixture
def fifty_saves(master_store: MasterStore) -> list[str]:
    """50 saves after the initial upload: save i sets volume_filtered of row (i % 5)
    to i; every 10th save also deletes a row and adds one."""
    versions = []
    m = master_store.load()
    for i in range(50):
        df = m.to_pandas()
        df.loc[df["tow"].eq(1) & df["net"].eq(i % 5), "volume_filtered"] = float(i)
        if i % 10 == 9:
            df = df[~(df["tow"].eq(10) & df["net"].eq(i // 10))]
            extra = df.iloc[[0]].assign(tow=100 + i, net=0)
            df = pd.concat([df, extra], ignore_index=True)
        res = master_store.save(df, base=m, note=f"save {i}")
        versions.append(res.new_version)
        m = master_store.load()
    return versions


def test_history_of_a_cell_a_row_and_a_column_over_fifty_saves(
    master_store: MasterStore, fifty_saves: list[str]
) -> None:
    cell = master_store.history(key=(1, 2), column="volume_filtered")
    # the row's arrival, then the saves that touched (1, 2): i % 5 == 2, oldest first
    assert list(cell["change"][:2]) == [ADDED, CELL]
    assert cell["note"][0] == "initial upload"
    cell = cell.iloc[1:]
    assert list(cell["note"]) == [f"save {i}" for i in range(2, 50, 5)]
    assert list(cell["new"]) == [str(float(i)).removesuffix(".0") for i in range(2, 50, 5)]
    assert list(cell["old"][1:]) == list(cell["new"][:-1])  # each picks up the last
    assert list(cell["version"]) == [fifty_saves[i] for i in range(2, 50, 5)]
    assert set(cell.columns) >= {"timestamp", "user", "note", "source", "version", "tow", "net"}
    assert cell["timestamp"].is_monotonic_increasing

    row = master_store.history(key={"tow": 10, "net": 1})  # deleted by save 19
    assert list(row["change"]) == [ADDED, DELETED]
    assert list(row["note"]) == ["initial upload", "save 19"]

    column = master_store.history(column="volume_filtered")
    assert len(column) == 50
    untouched = master_store.history(key=(1, 2), column="net_size")
    assert list(untouched["change"]) == [ADDED]  # only its arrival


def test_history_of_saves_without_changesets_diffs_their_versions(
    master_store: MasterStore, fifty_saves: list[str], s3: Any, bucket: str
) -> None:
    # saves made before changesets existed: their audits name none, and none is stored
    expected = master_store.history(key=(1, 3), column="volume_filtered")
    for key in keys_under(s3, bucket, "changes/"):
        s3.delete_object(Bucket=bucket, Key=key)
    fresh = MasterStore(master_store.cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fresh.history(key=(1, 3), column="volume_filtered")
    pd.testing.assert_frame_equal(got, expected)
    assert keys_under(s3, bucket, "changes/") == []  # history reads; reconcile writes
    assert len(fresh.reconcile()) == 51
    assert len(keys_under(s3, bucket, "changes/")) == 51


def test_history_of_versions_a_lifecycle_rule_expired_reads_their_snapshots(
    master_store: MasterStore, s3: Any, bucket: str
) -> None:
    m = master_store.load()
    for i in range(3):
        df = m.to_pandas()
        df.loc[df["tow"].eq(2) & df["net"].eq(1), "net_size"] = 0.5 + i
        master_store.save(df, base=m, note=f"net {i}")
        m = master_store.load()
    expected = master_store.history(key=(2, 1), column="net_size")
    assert list(expected["new"][1:]) == ["0.5", "1.5", "2.5"]
    # saves without changesets whose noncurrent versions a lifecycle rule then expired
    for key in keys_under(s3, bucket, "changes/"):
        s3.delete_object(Bucket=bucket, Key=key)
    versions = [v.version_id for v in master_store.versions()]
    for version_id in versions[1:]:  # all but the current one
        s3.delete_object(Bucket=bucket, Key=master_store.cfg.master_key, VersionId=version_id)

    fresh = MasterStore(master_store.cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fresh.history(key=(2, 1), column="net_size")
    pd.testing.assert_frame_equal(got, expected)
    # reconcile rebuilds the current version's changeset from its base's snapshot
    repairs = fresh.reconcile()
    assert [(r.version_id, r.wrote_changeset) for r in repairs] == [(versions[0], True)]
    assert list(changeset_at(fresh, repairs[0].changeset_key)["new"]) == ["2.5"]


def test_history_refuses_what_it_cannot_answer(master_store: MasterStore) -> None:
    with pytest.raises(ValidationError, match="audit_log"):
        master_store.history()
    with pytest.raises(ValidationError, match=r"\('tow', 'net'\)"):
        master_store.history(key=3)  # two key columns: one value is not a row
    with pytest.raises(ValidationError, match="1 value"):
        master_store.history(key=(3,))
    assert master_store.history(key=(999, 9)).empty
    assert master_store.history(key=("not a number", 1)).empty


def test_diff_between_any_two_versions(master_store: MasterStore) -> None:
    m0 = master_store.load()
    df = m0.to_pandas()
    df.loc[0, "cruise"] = "EN-999"
    df = df.iloc[1:]  # tow 1 net 1 goes
    r1 = master_store.save(df, base=m0, note="one")
    m1 = master_store.load()
    r2 = master_store.save(m1.to_pandas().assign(is_day=False), base=m1, note="two")
    diff = master_store.diff_versions(m0.version_id, r2.new_version)
    assert list(diff.columns) == ["change", "tow", "net", "column", "old", "new"]
    assert (diff["change"] == DELETED).sum() == 1
    assert "cruise" not in set(diff["column"].dropna())  # the changed row was deleted
    assert set(diff.loc[diff["change"] == CELL, "column"]) == {"is_day"}
    assert master_store.diff_versions(r1.new_version, r1.new_version).empty


def test_changesets_of_schema_changes_and_masters_without_keys() -> None:
    old = pa.table({"a": [1, 2], "b": ["x", "y"]})
    new = pa.table({"a": [1.0, 2.0], "c": [True, False]})
    changeset = build_changeset(old, new, ())
    rows = changeset.table.to_pylist()
    assert [(r["change"], r["column"], r["old"], r["new"]) for r in rows] == [
        ("column retyped", "a", "int64", "double"),
        ("column added", "c", None, "bool"),
        ("column dropped", "b", "string", None),
    ]
    positional = build_changeset(pa.table({"a": [1, 2]}), pa.table({"a": [1, 5, 6]}), ())
    assert [(r["change"], r["key"]) for r in positional.table.to_pylist()] == [
        (CELL, {"row": 1}),
        (ADDED, {"row": 2}),
    ]


def test_a_bulk_edit_changeset_stores_its_labels_once() -> None:
    n = 100_000
    old = pa.table({"k": range(n), "v": [0.5] * n, "w": ["a"] * n})
    new = old.set_column(1, "v", pa.array([1.5] * n)).set_column(2, "w", pa.array(["b"] * n))
    changeset = build_changeset(old, new, ("k",))
    table = changeset.table
    assert table.schema.field("change").type == LABEL
    assert table.schema.field("column").type == LABEL
    # an index per row, not the text of "cell" and the column name on every row
    assert table.column("change").nbytes + table.column("column").nbytes <= 8 * 2 * n + 1024
    assert changeset.counts.cells_changed == 2 * n
    assert sorted(set(table.column("column").to_pylist())) == ["v", "w"]
    back = decode_changeset(encode_changeset(changeset), where="s3://b/changes/x.parquet")
    assert back.table.schema == table.schema
    assert back.table.to_pylist() == table.to_pylist()
    frame = changeset_frame(back.table.slice(n - 1, 2))  # text, as before: no categoricals
    assert frame["change"].dtype == frame["column"].dtype == frame["old"].dtype
    assert frame[["change", "k", "column", "old", "new"]].values.tolist() == [
        [CELL, n - 1, "v", "0.5", "1.5"],
        [CELL, 0, "w", "a", "b"],
    ]


def _written_before_labels(rows: list[tuple[str, int, str | None]]) -> bytes:
    """A changeset as saves wrote them before LABEL: ``change`` and ``column`` as text."""
    table = pa.table(
        {
            "change": pa.array([r[0] for r in rows], pa.string()),
            "key": pa.array([{"k": r[1]} for r in rows]),
            "column": pa.array([r[2] for r in rows], pa.string()),
            "old": pa.array(["1" if r[2] else None for r in rows], pa.string()),
            "new": pa.array(["2" if r[2] else None for r in rows], pa.string()),
        }
    ).replace_schema_metadata({b"s3grid.changeset.key_columns": b'["k"]'})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def test_changesets_written_before_labels_still_read() -> None:
    body = _written_before_labels([(CELL, 1, "v"), (ADDED, 2, None), (DELETED, 3, None)])
    changeset = decode_changeset(body, where="s3://b/changes/old.parquet")
    assert changeset.table.schema.field("change").type == LABEL
    assert changeset.counts == ChangeCounts(1, 1, 1)
    rows = select_changes(changeset, key={"k": 1}, column="v").to_pylist()
    assert [(r["change"], r["column"], r["old"], r["new"]) for r in rows] == [(CELL, "v", "1", "2")]

    bad = pa.table({"change": [1], "key": [{"k": 1}], "column": ["v"], "old": ["1"], "new": ["2"]})
    sink = pa.BufferOutputStream()
    pq.write_table(bad.replace_schema_metadata({b"s3grid.changeset.key_columns": b'["k"]'}), sink)
    with pytest.raises(MasterFormatError, match=r"'change' is int64"):
        decode_changeset(sink.getvalue().to_pybytes(), where="s3://b/changes/bad.parquet")


def test_changesets_write_times_as_the_grid_shows_them() -> None:
    from datetime import datetime

    def table(*stamps: datetime) -> pa.Table:
        return pa.table({"k": list(range(len(stamps))), "t": pa.array(stamps, pa.timestamp("us"))})

    old = table(datetime(2024, 1, 1, 12, 0, 0), datetime(2024, 1, 1, 12, 0, 0))
    new = table(datetime(2024, 1, 1, 12, 0, 1), datetime(2024, 1, 1, 12, 0, 0, 500))
    rows = build_changeset(old, new, ("k",)).table.to_pylist()
    # whole seconds without ".000000"; a fraction kept to the microsecond
    assert [(r["old"], r["new"]) for r in rows] == [
        ("2024-01-01 12:00:00", "2024-01-01 12:00:01"),
        ("2024-01-01 12:00:00", "2024-01-01 12:00:00.000500"),
    ]
