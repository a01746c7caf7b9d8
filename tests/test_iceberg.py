"""Each ICEBERG.md recipe sends exactly the SQL the doc shows."""

from __future__ import annotations

import io
import re
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from s3grid import ConflictError, MasterStore, ValidationError
from s3grid.athena import AthenaEngine, QueryInfo
from s3grid.iceberg import IcebergTable
from tests.support.s3 import keys_under


class RecordingEngine(AthenaEngine):
    """Records statements; an UNLOAD writes `self.unload_table` as two parts."""

    def __init__(self, s3: Any = None, **kwargs: Any) -> None:
        super().__init__(database="lab", progress=False, **kwargs)
        self.sent: list[str] = []
        self.s3 = s3
        self.unload_table: Any = None

    def execute(self, sql: str, *, arrow: bool = False) -> tuple[Any, QueryInfo]:
        self.sent.append(sql)
        if sql.startswith("UNLOAD") and self.unload_table is not None:
            location = sql.split("TO '")[1].split("'")[0]
            bucket, _, prefix = location[5:].partition("/")
            for i, part in enumerate((self.unload_table.slice(0, 10), self.unload_table.slice(10))):
                buf = io.BytesIO()
                pq.write_table(part, buf)
                self.s3.put_object(Bucket=bucket, Key=f"{prefix}{i:05d}_part", Body=buf.getvalue())
        cursor = type("C", (), {"description": None})()
        return cursor, QueryInfo("q", "SUCCEEDED", 0, None, 0.0)


@pytest.fixture
def ice() -> IcebergTable:
    return IcebergTable(RecordingEngine(), "tows_iceberg")


def test_create_and_load(ice: IcebergTable, master_store: MasterStore) -> None:
    ice.create_from_master(master_store, location="s3://lab-bucket/iceberg/tows/")
    register, create, load, drop = ice.engine.sent  # type: ignore[attr-defined]
    source = re.match(r"CREATE EXTERNAL TABLE `lab`\.`(s3grid_\w+)` ", register)
    assert source, register  # the master, through a table of this run only
    assert f"LOCATION 's3://{master_store.cfg.bucket}/data/'" in register
    assert drop == f"DROP TABLE IF EXISTS `lab`.`{source[1]}`"
    assert create.startswith("CREATE TABLE `lab`.`tows_iceberg` (\n  `vessel` string,\n")
    assert create.endswith(
        ")\nLOCATION 's3://lab-bucket/iceberg/tows/'\n"
        "TBLPROPERTIES ('table_type'='ICEBERG', 'format'='parquet', "
        "'write_compression'='snappy')"
    )
    assert load == f'INSERT INTO "lab"."tows_iceberg"\nSELECT * FROM "lab"."{source[1]}"'


def test_merge_update_delete(ice: IcebergTable) -> None:
    edits = pd.DataFrame(
        {"tow": [4, 99], "net": [1, 0], "note": ["it's fixed", None], "v": [1.5, 2.0]}
    )
    ice.merge(edits, ["tow", "net"])
    ice.update({"volume_filtered": 512.0, "vessel": "R/V O'Brien"}, "tow = 4 AND net = 1")
    ice.delete("tow = 4 AND net = 0")
    merge, update, delete = ice.engine.sent  # type: ignore[attr-defined]
    assert merge == (
        'MERGE INTO "lab"."tows_iceberg" t\n'
        "USING (VALUES\n    (4, 1, 'it''s fixed', 1.5),\n    (99, 0, NULL, 2.0)\n"
        ') AS s ("tow", "net", "note", "v")\n'
        'ON t."tow" = s."tow" AND t."net" = s."net"\n'
        'WHEN MATCHED THEN UPDATE SET "note" = s."note", "v" = s."v"\n'
        'WHEN NOT MATCHED THEN INSERT ("tow", "net", "note", "v") '
        'VALUES (s."tow", s."net", s."note", s."v")'
    )
    assert update == (
        'UPDATE "lab"."tows_iceberg" SET "volume_filtered" = 512.0, '
        "\"vessel\" = 'R/V O''Brien' WHERE tow = 4 AND net = 1"
    )
    assert delete == 'DELETE FROM "lab"."tows_iceberg" WHERE tow = 4 AND net = 0'


def test_time_travel_snapshots_optimize_vacuum(ice: IcebergTable) -> None:
    assert ice.at_sql(timestamp="2024-05-01T12:00:00Z") == (
        'SELECT * FROM "lab"."tows_iceberg" FOR TIMESTAMP AS OF '
        "TIMESTAMP '2024-05-01 12:00:00.000000 UTC'"
    )
    assert ice.at_sql(version=949530903748831860) == (
        'SELECT * FROM "lab"."tows_iceberg" FOR VERSION AS OF 949530903748831860'
    )
    assert ice.snapshots_sql() == (
        'SELECT * FROM "lab"."tows_iceberg$snapshots" ORDER BY committed_at'
    )
    ice.optimize()
    ice.vacuum()
    assert ice.engine.sent == [  # type: ignore[attr-defined]
        'OPTIMIZE "lab"."tows_iceberg" REWRITE DATA USING BIN_PACK',
        'VACUUM "lab"."tows_iceberg"',
    ]


def test_bad_input_refused(ice: IcebergTable) -> None:
    with pytest.raises(ValidationError, match="one statement"):
        ice.delete("tow = 4; DROP TABLE x")
    with pytest.raises(ValidationError, match="Invalid column name"):
        ice.update({'x" = 1 --': 1}, "tow = 4")
    with pytest.raises(ValidationError, match="exactly one"):
        ice.at_sql()
    with pytest.raises(ValidationError, match="Invalid table name"):
        IcebergTable(RecordingEngine(), "t$snapshots")


def test_export_back_to_master(master_store: MasterStore, s3: Any, bucket: str) -> None:
    engine = RecordingEngine(s3)
    base = master_store.load()
    edited = base.to_pandas()
    edited.loc[3, "volume_filtered"] = 3.25
    engine.unload_table = pa_table = base.table.from_pandas(
        edited, schema=base.schema, preserve_index=False
    )
    ice = IcebergTable(engine, "tows_iceberg")
    ice.create_from_master(master_store, location=f"s3://{bucket}/iceberg/tows/")
    engine.sent.clear()
    res = ice.export_to_master(master_store, note="from ice")
    (unload,) = engine.sent
    run = re.fullmatch(
        r"UNLOAD \(SELECT \* FROM \"lab\".\"tows_iceberg\"\)\n"
        rf"TO 's3://{bucket}/(staging/data/master.parquet/runs/\d{{8}}T\d{{6}}Z_[0-9a-f]{{8}}/)'\n"
        r"WITH \(format = 'PARQUET', compression = 'SNAPPY'\)",
        unload,
    )
    assert run, unload
    assert master_store.load().table.equals(pa_table)
    assert res.cells_changed == 1
    assert master_store.audit_log().iloc[-1]["note"] == "from ice"
    # promoted once: the run's folder is gone; only the seed record stays
    assert keys_under(s3, bucket, "staging/") == [ice.seed_key(master_store)]
    assert ice.seed_key(master_store) == "staging/data/master.parquet/iceberg/tows_iceberg.json"
    # the table now holds the master: the next export is based on the version just saved
    assert ice.seed(master_store).base_version == res.new_version


def test_an_export_after_a_grid_save_is_a_conflict(
    master_store: MasterStore, s3: Any, bucket: str
) -> None:
    engine = RecordingEngine(s3)
    ice = IcebergTable(engine, "tows_iceberg")
    ice.create_from_master(master_store, location=f"s3://{bucket}/iceberg/tows/")
    seeded = master_store.load()
    engine.unload_table = seeded.table  # the Iceberg table, edited or not
    m = master_store.load()
    df = m.to_pandas()
    df.loc[2, "volume_filtered"] = 8.75
    saved = master_store.save(df, base=m, note="a grid save after the seed").new_version
    with pytest.raises(ConflictError):
        ice.export_to_master(master_store, note="export")
    latest = master_store.load()
    assert latest.version_id == saved
    assert latest.to_pandas().loc[2, "volume_filtered"] == 8.75  # not overwritten
    # without a record of the seed, an export is refused rather than guessed
    s3.delete_object(Bucket=bucket, Key=ice.seed_key(master_store))
    with pytest.raises(ValidationError, match="No record of the master version"):
        ice.export_to_master(master_store, note="export")


def test_a_merge_over_athenas_query_limit_goes_in_parts(ice: IcebergTable) -> None:
    from s3grid.athena import MAX_QUERY_BYTES, merge_sql

    n = 12_000
    edits = pd.DataFrame({"tow": range(n), "net": [0] * n, "note": ["é" * 10] * n, "v": [0.5] * n})
    with pytest.raises(ValidationError, match="over Athena's 262,144-byte query limit"):
        merge_sql("tows_iceberg", edits, ["tow", "net"])
    infos = ice.merge(edits, ["tow", "net"])
    sent = ice.engine.sent  # type: ignore[attr-defined]
    assert len(infos) == len(sent) >= 2
    assert all(len(sql.encode()) <= MAX_QUERY_BYTES for sql in sent)
    # every row in exactly one statement, in order
    tows = [int(m) for sql in sent for m in re.findall(r"\n    \((\d+), 0, ", sql)]
    assert tows == list(range(n))


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        (pd.DataFrame({"tow": [4, 4], "net": [1, 1], "v": [1.0, 2.0]}), "repeat key"),
        (pd.DataFrame({"tow": [4], "net": [1]}), "only key columns"),
    ],
)
def test_a_merge_refuses_edits_it_cannot_apply(
    ice: IcebergTable, edits: pd.DataFrame, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ice.merge(edits, ["tow", "net"])
    assert ice.engine.sent == []  # type: ignore[attr-defined]


def test_small_integers_become_int_and_come_back_exactly(
    store: MasterStore, s3: Any, bucket: str
) -> None:
    import pyarrow as pa

    from s3grid import SchemaError

    master = pa.table(
        {
            "tow": pa.array([1, 2], pa.int16()),
            "grade": pa.array([3, -4], pa.int8()),
            "v": [0.5, 1.5],
        }
    )
    keyed = MasterStore(store.cfg, key_columns=("tow",))
    keyed.create(master, note="small ints")
    engine = RecordingEngine(s3)
    ice = IcebergTable(engine, "tows_iceberg")
    ice.create_from_master(keyed, location=f"s3://{bucket}/iceberg/tows/")
    (create,) = [sql for sql in engine.sent if "ICEBERG" in sql]
    assert "`tow` int,\n  `grade` int,\n  `v` double" in create  # no tinyint/smallint
    # Athena gives the Iceberg table's ints back as int32: cast to the master's, checked
    widened = master.cast(
        pa.schema([("tow", pa.int32()), ("grade", pa.int32()), ("v", pa.float64())])
    )
    engine.unload_table = widened.set_column(2, "v", pa.array([0.5, 2.5]))
    res = ice.export_to_master(keyed, note="from ice")
    after = keyed.load().table
    assert after.schema == master.schema and res.cells_changed == 1
    engine.unload_table = widened.set_column(1, "grade", pa.array([3, 300], pa.int32()))
    saved = keyed.load().etag
    with pytest.raises(SchemaError, match="grade"):
        ice.export_to_master(keyed, note="out of range")
    assert keyed.load().etag == saved  # nothing written


def test_zone_aware_timestamps_are_refused_before_any_query(
    store: MasterStore, bucket: str
) -> None:
    import pyarrow as pa

    from s3grid import SchemaError

    store.create(
        pa.table({"tow": [1], "net": [0], "at": pa.array([0], pa.timestamp("ms", "UTC"))}),
        note="tz",
    )
    ice = IcebergTable(RecordingEngine(), "tows_iceberg")
    with pytest.raises(SchemaError, match="timestamp without zone only"):
        ice.create_from_master(store, location=f"s3://{bucket}/iceberg/tows/")
    assert ice.engine.sent == []  # type: ignore[attr-defined]


def test_an_iceberg_round_trip_on_the_athena_fake(
    engine: AthenaEngine, master_store: MasterStore, s3: Any, bucket: str
) -> None:
    from s3grid.athena import external_table_ddl
    from tests.support.athena import FakeAthena

    s3.put_object(Bucket=bucket, Key="old/other.parquet", Body=b"not this master")
    fake = FakeAthena(engine, master_store, s3)
    # the original workflow's table, registered long ago for another master's folder
    engine.execute(
        external_table_ddl(
            master_store, "work_master_parquet", database="lab", location=f"s3://{bucket}/old/"
        )
    )
    ice = IcebergTable(engine, "tows_iceberg")
    ice.create_from_master(master_store, location=f"s3://{bucket}/iceberg/tows/")
    ice.update({"volume_filtered": 9.5}, "tow = 4 AND net = 1")
    ice.delete("tow = 4 AND net = 0")
    ice.merge(pd.DataFrame({"tow": [1], "net": [2], "volume_filtered": [7.25]}), ["tow", "net"])
    assert fake.failed == {}
    base = master_store.load()
    res = ice.export_to_master(master_store, note="from iceberg")
    after = master_store.load()
    assert after.schema == base.schema
    df = after.to_pandas().set_index(["tow", "net"])
    assert df.loc[(4, 1), "volume_filtered"] == 9.5
    assert df.loc[(1, 2), "volume_filtered"] == 7.25
    assert (4, 0) not in df.index
    assert (res.cells_changed, res.rows_deleted, res.rows_added) == (2, 1, 0)
    assert keys_under(s3, bucket, "staging/") == [ice.seed_key(master_store)]


def test_an_iceberg_table_in_another_database_reads_the_master_where_it_was_registered(
    master_store: MasterStore,
) -> None:
    engine = RecordingEngine()  # database "lab"
    ice = IcebergTable(engine, "tows_iceberg", database="archive")
    ice.create_from_master(master_store, location="s3://lab-bucket/iceberg/tows/")
    register, create, load, drop = engine.sent
    source = re.match(r"CREATE EXTERNAL TABLE `lab`\.`(s3grid_\w+)` ", register)
    assert source, register
    assert create.startswith("CREATE TABLE `archive`.`tows_iceberg`")
    assert load == f'INSERT INTO "archive"."tows_iceberg"\nSELECT * FROM "lab"."{source[1]}"'
    assert drop == f"DROP TABLE IF EXISTS `lab`.`{source[1]}`"
