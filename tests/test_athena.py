"""The Athena engine against the Athena fake (tests/support/athena.py) and botocore's Stubber."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from botocore.stub import Stubber

from s3grid import MasterStore, ValidationError, bulk_edit
from s3grid.athena import (
    AthenaEngine,
    AthenaQueryError,
    external_table_ddl,
    glue_type,
    run_table_name,
)
from s3grid.sample import SAMPLE_SCHEMA
from s3grid.sqlcheck import rename_table
from tests.support.athena import FakeAthena, read_results_from
from tests.support.s3 import all_objects, keys_under
from tests.support.seed import SEED_SQL, expected_seed_result

pytestmark = pytest.mark.both_stores


@pytest.fixture
def fake(engine: AthenaEngine, master_store: MasterStore, s3: Any) -> FakeAthena:
    return FakeAthena(engine, master_store, s3)


def test_glue_types_and_ddl(master_store: MasterStore) -> None:
    assert [glue_type(f.type) for f in SAMPLE_SCHEMA] == [
        "string",
        "string",
        "int",
        "int",
        "double",
        "double",
        "int",
        "int",
        "double",
        "timestamp",
        "timestamp",
        "boolean",
        "double",
    ]
    ddl = external_table_ddl(master_store, "work_master_parquet", database="lab")
    assert ddl.startswith(
        "CREATE EXTERNAL TABLE IF NOT EXISTS `lab`.`work_master_parquet` (\n"
        "  `vessel` string,\n  `cruise` string,\n  `tow` int,\n  `net` int,\n"
    )
    assert ddl.endswith(
        "  `net_size` double\n)\nSTORED AS PARQUET\n"
        f"LOCATION 's3://{master_store.cfg.bucket}/data/'"
    )


RUN_ID = "20240501T120000Z_abcd1234"


def test_bulk_edit_on_athena_sends_exact_sql_and_promotes(
    engine: AthenaEngine,
    fake: FakeAthena,
    master_store: MasterStore,
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import s3grid.athena

    monkeypatch.setattr(s3grid.athena, "new_run_id", lambda: RUN_ID)
    base = master_store.load()
    res = bulk_edit(master_store, SEED_SQL, engine=engine, note="athena: shift tow 4")
    run = f"staging/data/master.parquet/runs/{RUN_ID}/"
    digest = hashlib.sha256(master_store.cfg.uri.encode()).hexdigest()[:10]
    source = run_table_name(master_store.cfg, RUN_ID)
    assert source == f"s3grid_{digest}_20240501t120000z_abcd1234"
    assert fake.sent == [
        external_table_ddl(master_store, source, database="lab", if_not_exists=False),
        "UNLOAD ("
        + rename_table(SEED_SQL, "work_master_parquet", to=source, database="lab")
        + f")\nTO 's3://{bucket}/{run}'\nWITH (format = 'PARQUET', compression = 'SNAPPY')",
        f"DROP TABLE IF EXISTS `lab`.`{source}`",
    ]
    assert f'FROM "lab"."{source}" AS work_master_parquet' in fake.sent[1]
    assert keys_under(s3, bucket, "staging/") == []  # saved: the run's folder is emptied
    after = master_store.load()
    assert after.schema == base.schema
    # Athena guarantees no row order across part files: compare in key order.
    got = after.to_pandas().sort_values(["tow", "net"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected_seed_result(base.to_pandas()))
    assert master_store.audit_log().iloc[-1]["source"] == "sql"
    assert res.rows_deleted == 1


def test_non_empty_target_fails_like_athena(
    engine: AthenaEngine,
    fake: FakeAthena,
    master_store: MasterStore,
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import s3grid.athena

    monkeypatch.setattr(s3grid.athena, "empty_prefix", lambda *_: 0)
    monkeypatch.setattr(s3grid.athena, "new_run_id", lambda: RUN_ID)
    run = f"staging/data/master.parquet/runs/{RUN_ID}/"
    s3.put_object(Bucket=bucket, Key=f"{run}stale", Body=b"old")
    master = master_store.load()
    with pytest.raises(AthenaQueryError, match="HIVE_PATH_ALREADY_EXISTS") as info:
        bulk_edit(master_store, SEED_SQL, engine=engine, note="x")
    assert info.value.query_id
    assert master_store.load().etag == master.etag
    assert len(master_store.audit_log()) == 1


def test_failed_query_via_stubber(
    engine: AthenaEngine, master_store: MasterStore, s3: Any, bucket: str
) -> None:
    client = engine.connection.client
    before = all_objects(s3, bucket)
    reason = "SYNTAX_ERROR: line 1:8: Column 'nope' cannot be resolved"
    with Stubber(client) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": "q-failed-1"})
        stub.add_response(
            "get_query_execution",
            {
                "QueryExecution": {
                    "QueryExecutionId": "q-failed-1",
                    "Query": "CREATE TABLE ...",
                    "Status": {"State": "FAILED", "StateChangeReason": reason},
                }
            },
        )
        with pytest.raises(AthenaQueryError) as info:
            bulk_edit(master_store, "SELECT nope FROM work_master_parquet", engine=engine, note="x")
    assert info.value.query_id == "q-failed-1"
    assert "cannot be resolved" in str(info.value)
    assert "q-failed-1" in str(info.value)
    assert all_objects(s3, bucket) == before


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("data/", "contains the master"),
        ("data/next/", "inside the master's folder"),
        ("staging/next", "must end with '/'"),
        ("staging/it's/", "Invalid S3 location"),
        ("staging/a;b/", "Invalid S3 location"),
    ],
)
def test_unsafe_target_prefixes_refused(
    endpoint: str, master_store: MasterStore, prefix: str, message: str
) -> None:
    engine = AthenaEngine(
        output_prefix=prefix, endpoint_url=endpoint, region="us-east-1", progress=False
    )
    with pytest.raises(ValidationError, match=message):
        bulk_edit(master_store, SEED_SQL, engine=engine, note="x")


@pytest.mark.parametrize("name", ['x"y', "a;b", "t name", "1abc", "x`y"])
def test_injection_in_identifiers_refused(master_store: MasterStore, name: str) -> None:
    with pytest.raises(ValidationError, match="Invalid"):
        external_table_ddl(master_store, name)
    with pytest.raises(ValidationError, match="Invalid"):
        AthenaEngine(database=name)


def test_run_any_statement_and_textfile_recipe(
    engine: AthenaEngine, fake: FakeAthena, bucket: str
) -> None:
    from s3grid.athena import QueryInfo, ctas_sql, run

    info = run("DROP TABLE IF EXISTS `lab`.`old_table`", engine=engine)
    assert isinstance(info, QueryInfo)
    assert info.query_id
    assert fake.sent[-1] == "DROP TABLE IF EXISTS `lab`.`old_table`"
    with pytest.raises(ValidationError, match="one statement"):
        run("DROP TABLE a; DROP TABLE b", engine=engine)
    assert ctas_sql(
        "SELECT * FROM work_master_parquet",
        table="master_csv",
        database="lab",
        location=f"s3://{bucket}/exports/csv/",
        format="TEXTFILE",
    ) == (
        'CREATE TABLE "lab"."master_csv"\n'
        f"WITH (format = 'TEXTFILE', field_delimiter = ',', "
        f"external_location = 's3://{bucket}/exports/csv/')\nAS\n"
        "SELECT * FROM work_master_parquet"
    )


def test_two_masters_in_one_database_read_their_own_data(
    engine: AthenaEngine, master_store: MasterStore, s3: Any, bucket: str
) -> None:
    # the original workflow's table, registered long ago for master A's folder
    fake = FakeAthena(engine, master_store, s3)
    engine.execute(external_table_ddl(master_store, "work_master_parquet", database="lab"))
    other = MasterStore(master_store.cfg.with_(master_key="other/master.parquet"))
    table = master_store.load().table
    i = table.schema.get_field_index("volume_filtered")
    other.create(table.set_column(i, "volume_filtered", pa.array([2.0] * 50)), note="B")
    sql = "SELECT * FROM work_master_parquet ORDER BY tow, net"
    res = bulk_edit(other, sql, engine=engine, note="B: same rows")
    assert res.cells_changed == 0  # B read B, not A's folder behind the old table
    assert set(other.load().table.column("volume_filtered").to_pylist()) == {2.0}
    assert fake.tables == {"lab.work_master_parquet": f"s3://{bucket}/data/"}  # untouched


def test_mixed_case_columns_come_back_in_the_masters_case(
    engine: AthenaEngine, store: MasterStore, s3: Any
) -> None:
    master = pa.table({"Tow": pa.array([1, 2], pa.int32()), "DepthMax": [10.5, 20.0]})
    store = MasterStore(store.cfg, key_columns=("Tow",))
    store.create(master, note="mixed case")
    FakeAthena(engine, store, s3)
    sql = "SELECT Tow, DepthMax * 2 AS DepthMax FROM work_master_parquet ORDER BY Tow"
    res = bulk_edit(store, sql, engine=engine, note="double the depth")
    after = store.load().table
    assert after.schema == master.schema  # "tow"/"depthmax" from Athena, mapped back
    # Athena promises no row order across parts: compare in key order
    rows = sorted(after.to_pylist(), key=lambda r: r["Tow"])
    assert rows == [{"Tow": 1, "DepthMax": 21.0}, {"Tow": 2, "DepthMax": 40.0}]
    assert res.cells_changed == 2


def test_sub_millisecond_timestamps_are_refused_before_any_query(
    engine: AthenaEngine, store: MasterStore, s3: Any, bucket: str
) -> None:
    import datetime as dt

    when = [dt.datetime(2024, 5, 1, 12, 0, 0, 123000), dt.datetime(2024, 5, 1, 12, 0, 0, 123456)]
    store.create(pa.table({"k": [1, 2], "t": pa.array(when, pa.timestamp("us"))}), note="us")
    fake = FakeAthena(engine, store, s3)
    before = all_objects(s3, bucket)
    with pytest.raises(ValidationError, match=r"'t' holds times finer than a millisecond \(row 1"):
        bulk_edit(store, "SELECT * FROM work_master_parquet", engine=engine, note="x")
    assert fake.sent == []
    assert all_objects(s3, bucket) == before


def test_a_workgroup_that_enforces_its_results_location(
    engine: AthenaEngine, fake: FakeAthena, master_store: MasterStore, bucket: str
) -> None:
    from s3grid.athena import ctas_sql, run

    fake.enforced_results = True
    # As Athena's documentation says: a CTAS naming external_location fails there...
    ctas = ctas_sql(
        "SELECT * FROM t", table="x", location=f"s3://{bucket}/elsewhere/", database="lab"
    )
    with pytest.raises(AthenaQueryError, match="cannot specify external_location"):
        run(ctas, engine=engine)
    # ...so a bulk edit writes its result with UNLOAD, which works in any work group
    base = master_store.load()
    bulk_edit(master_store, SEED_SQL, engine=engine, note="enforced work group")
    got = master_store.load().to_pandas().sort_values(["tow", "net"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected_seed_result(base.to_pandas()))
    assert not [sql for sql in fake.sent[1:] if sql.startswith("CREATE TABLE")]


def test_partial_output_of_a_failed_query_is_never_promoted(
    engine: AthenaEngine,
    fake: FakeAthena,
    master_store: MasterStore,
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from s3grid.promote import promote

    fake.fail_midway = "Query cancelled by user"
    before = master_store.load()
    with pytest.raises(AthenaQueryError, match="cancelled by user"):
        bulk_edit(master_store, SEED_SQL, engine=engine, note="x")
    assert master_store.load().etag == before.etag
    assert keys_under(s3, bucket, "staging/") == []  # the failed run's part is removed
    # Even when it cannot be removed, the part a failed run left is never promoted:
    monkeypatch.setattr(engine, "done", lambda store: None)
    with pytest.raises(AthenaQueryError):
        bulk_edit(master_store, SEED_SQL, engine=engine, note="x")
    (part,) = keys_under(s3, bucket, "staging/data/master.parquet/runs/")
    run = part.rpartition("/")[0] + "/"
    with pytest.raises(ValidationError, match="holds no run manifest") as info:
        promote(master_store, run, note="pick up the output", base_version=before.version_id)
    assert "may be partial" in str(info.value)
    assert master_store.load().etag == before.etag


def test_a_csv_master_keeps_its_text_through_an_athena_bulk_edit(
    engine: AthenaEngine, cfg: Any, s3: Any, bucket: str
) -> None:
    from tests.support.csvtext import HAND_WRITTEN, cell_texts

    csv_cfg = cfg.with_(master_key="data/master.csv", file_format="csv")
    store = MasterStore(csv_cfg, key_columns=("station",))
    s3.put_object(Bucket=bucket, Key="data/master.csv", Body=HAND_WRITTEN.encode())
    fake = FakeAthena(engine, store, s3)
    sql = (
        "SELECT station, \"when\", depth, CASE WHEN station = '012' THEN 'edited' "
        "ELSE comment END AS comment, empty, flag FROM work_master_parquet"
    )
    res = bulk_edit(store, sql, engine=engine, note="one comment")
    assert res.cells_changed == 1  # "" and empty, "007", "1e3", "NA" all unchanged
    after = cell_texts(s3.get_object(Bucket=bucket, Key="data/master.csv")["Body"].read())
    expected = cell_texts(HAND_WRITTEN.encode())
    expected[2][3] = "edited"
    # Athena promises no row order across part files; the rows, cell for cell
    assert after[0] == expected[0] and sorted(after[1:]) == sorted(expected[1:])
    # Athena read a Parquet copy of the version loaded, from the run's own folder
    (ddl,) = [sql for sql in fake.sent if sql.startswith("CREATE EXTERNAL TABLE")]
    assert "STORED AS PARQUET" in ddl
    assert f"LOCATION 's3://{bucket}/staging/data/master.csv/sources/" in ddl
    assert keys_under(s3, bucket, "staging/") == []


def test_csv_ddl_reads_quoted_fields_as_text(store: MasterStore, bucket: str) -> None:
    schema = pa.schema([("station", pa.string()), ("depth", pa.float64())])
    csv = MasterStore(store.cfg.with_(master_key="data/master.csv", file_format="csv"))
    csv.create(pa.table({"station": ["007"], "depth": [1.5]}), note="csv")
    ddl = external_table_ddl(csv, "tows_csv", database="lab")
    assert ddl == external_table_ddl(
        schema, "tows_csv", database="lab", location=f"s3://{bucket}/data/", csv=True
    )
    assert ddl == (
        "CREATE EXTERNAL TABLE IF NOT EXISTS `lab`.`tows_csv` (\n"
        "  `station` string,\n  `depth` string\n)\n"
        "ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'\n"
        "WITH SERDEPROPERTIES ('separatorChar' = ',', 'quoteChar' = '\"', "
        "'escapeChar' = '\\\\')\n"
        "STORED AS TEXTFILE\n"
        f"LOCATION 's3://{bucket}/data/'\n"
        "TBLPROPERTIES ('skip.header.line.count'='1')"
    )


def test_two_masters_of_one_name_stage_apart(cfg: Any) -> None:
    from s3grid.layout import promote_prefix, run_prefix, staging_prefix

    a, b = cfg.with_(master_key="a/master.parquet"), cfg.with_(master_key="b/master.parquet")
    assert promote_prefix(a) == "staging/a/master.parquet/next/"
    assert promote_prefix(b) == "staging/b/master.parquet/next/"
    assert run_prefix(a, "r1") != run_prefix(a, "r2")
    assert not run_prefix(a, "r1").startswith(staging_prefix(b).rpartition("next/")[0])
    odd = cfg.with_(master_key="lab data/tows (v2).parquet")
    assert staging_prefix(odd) == "staging/lab_data/tows__v2_.parquet/next/"


def test_run_reads_a_select_whole_through_the_arrow_cursor(
    engine: AthenaEngine,
    fake: FakeAthena,
    master_store: MasterStore,
    endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from s3grid.athena import run

    read_results_from(monkeypatch, endpoint)
    engine.execute(external_table_ddl(master_store, "tows", database="lab"))
    got = run('SELECT tow, count(*) AS nets FROM "lab"."tows" GROUP BY tow', engine=engine)
    # pyathena wrapped the SELECT in UNLOAD (Parquet) under the results location
    assert re.match(r"UNLOAD \(\s*SELECT tow", fake.sent[-1])
    assert "athena-results/unload/" in fake.sent[-1]
    expected = master_store.load().to_pandas().groupby("tow").size()
    assert dict(zip(got["tow"], got["nets"], strict=True)) == expected.to_dict()
