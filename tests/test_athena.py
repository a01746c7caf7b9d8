"""The Athena engine without AWS: moto records the queries, a hook plays Athena.

The hook runs each CTAS's SELECT on DuckDB (transpiled by sqlglot) and writes
extension-less part files to its external_location, as Athena does; a non-empty
target fails the query, as Athena does. FAILED queries also come from botocore's Stubber.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import uuid
from types import SimpleNamespace
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from botocore.stub import Stubber

from s3grid import MasterStore, ValidationError, bulk_edit
from s3grid.athena import (
    AthenaEngine,
    AthenaQueryError,
    external_table_ddl,
    glue_type,
    run_table_names,
)
from s3grid.sample import SAMPLE_SCHEMA
from s3grid.sqlcheck import rename_table
from tests.conftest import all_objects, keys_under
from tests.test_bulk import SEED_SQL, expected_seed_result


class FakeAthena:
    """Side effects of Athena queries on the local S3, keyed by moto's query ids."""

    def __init__(self, engine: AthenaEngine, store: MasterStore, s3: Any) -> None:
        self.store, self.s3 = store, s3
        self.sent: list[str] = []
        self.failed: dict[str, tuple[str, str]] = {}  # query id -> (sql, reason)
        self.tables: dict[str, str] = {}  # external tables registered: "db.name" -> LOCATION
        self._pending: str | None = None
        events = engine.connection.client.meta.events
        events.register("provide-client-params.athena.StartQueryExecution", self.on_params)
        events.register("after-call.athena.StartQueryExecution", self.on_started)
        events.register("before-call.athena.GetQueryExecution", self.on_get)

    def on_params(self, params: dict[str, Any], **_: Any) -> None:
        self._pending = params["QueryString"]

    def on_started(self, parsed: dict[str, Any], **_: Any) -> None:
        sql, self._pending = self._pending or "", None
        self.sent.append(sql)
        qid = parsed["QueryExecutionId"]
        reason = None
        if sql.startswith("CREATE TABLE"):
            reason = self.ctas(sql)
        elif sql.startswith("CREATE EXTERNAL TABLE"):
            name = re.search(r"TABLE (?:IF NOT EXISTS )?`(\w+)`\.`(\w+)`", sql)
            location = re.search(r"LOCATION '(s3://[^']+)'", sql)
            assert name and location, sql
            table = f"{name[1]}.{name[2]}"
            if table in self.tables and "IF NOT EXISTS" not in sql:
                reason = f"AlreadyExistsException: Table {table} already exists"
            self.tables.setdefault(table, location[1])  # IF NOT EXISTS keeps the old one
        elif sql.startswith("DROP TABLE IF EXISTS"):
            name = re.search(r"`(\w+)`\.`(\w+)`", sql)
            assert name, sql
            self.tables.pop(f"{name[1]}.{name[2]}", None)
        if reason:
            self.failed[qid] = (sql, reason)

    def ctas(self, sql: str) -> str | None:
        location = re.search(r"external_location = '(s3://[^']+)'", sql)
        assert location, sql
        bucket, _, prefix = location[1][5:].partition("/")
        if keys_under(self.s3, bucket, prefix):
            return f"HIVE_PATH_ALREADY_EXISTS: Target directory for table exists: {location[1]}"
        select = sqlglot.parse_one(sql, read="athena").expression
        con = duckdb.connect()
        for table, where in self.tables.items():  # as Athena: every object in LOCATION
            database, name = table.split(".")
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
            con.register(f"src_{name}", self.read_folder(where))
            con.execute(f'CREATE VIEW "{database}"."{name}" AS SELECT * FROM "src_{name}"')
        result = con.sql(select.sql(dialect="duckdb")).to_arrow_table()
        # as Athena does: Glue lowercases column names, Hive timestamps keep milliseconds
        result = result.rename_columns([c.lower() for c in result.column_names])
        result = pa.table(
            [
                c.cast(pa.timestamp("ms", c.type.tz)) if pa.types.is_timestamp(c.type) else c
                for c in result.columns
            ],
            names=result.column_names,
        )
        half = result.num_rows // 2
        for part in (result.slice(0, half), result.slice(half)):
            buf = io.BytesIO()
            pq.write_table(part, buf, compression="snappy")
            key = f"{prefix}20240501_120000_00007_{uuid.uuid4().hex[:5]}_{uuid.uuid4()}"
            self.s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
        return None

    def read_folder(self, location: str) -> Any:
        bucket, _, prefix = location[5:].partition("/")
        parts = [
            pq.read_table(io.BytesIO(self.s3.get_object(Bucket=bucket, Key=k)["Body"].read()))
            for k in keys_under(self.s3, bucket, prefix)
        ]
        return pa.concat_tables(parts)

    def on_get(self, params: dict[str, Any], **_: Any) -> Any:
        qid = json.loads(params["body"])["QueryExecutionId"]
        if qid not in self.failed:
            return None
        sql, reason = self.failed[qid]
        return SimpleNamespace(status_code=200, headers={}), {
            "QueryExecution": {
                "QueryExecutionId": qid,
                "Query": sql,
                "StatementType": "DDL",
                "Status": {"State": "FAILED", "StateChangeReason": reason},
                "Statistics": {},
                "ResultConfiguration": {},
            }
        }


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


def test_bulk_edit_on_athena_sends_exact_sql_and_promotes(
    engine: AthenaEngine,
    fake: FakeAthena,
    master_store: MasterStore,
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import s3grid.athena

    s3.put_object(Bucket=bucket, Key="staging/master_next.parquet/stale-part", Body=b"old")
    base = master_store.load()
    names = run_table_names(master_store.cfg)
    source, tmp = names
    monkeypatch.setattr(s3grid.athena, "run_table_names", lambda cfg: names)
    res = bulk_edit(master_store, SEED_SQL, engine=engine, note="athena: shift tow 4")
    location = f"s3://{bucket}/staging/master_next.parquet/"
    digest = hashlib.sha256(master_store.cfg.uri.encode()).hexdigest()[:10]
    assert source.startswith(f"s3grid_{digest}_") and source.endswith("_master")
    assert fake.sent == [
        external_table_ddl(master_store, source, database="lab", if_not_exists=False),
        f'CREATE TABLE "lab"."{tmp}"\n'
        "WITH (format = 'PARQUET', write_compression = 'SNAPPY', "
        f"external_location = '{location}')\nAS\n"
        + rename_table(SEED_SQL, "work_master_parquet", to=source, database="lab"),
        f"DROP TABLE IF EXISTS `lab`.`{tmp}`",
        f"DROP TABLE IF EXISTS `lab`.`{source}`",
    ]
    assert f'FROM "lab"."{source}" AS work_master_parquet' in fake.sent[1]
    # the stale object was removed before the CTAS (else the fake, like Athena, fails it)
    assert "staging/master_next.parquet/stale-part" not in keys_under(s3, bucket, "staging/")
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
    s3.put_object(Bucket=bucket, Key="staging/master_next.parquet/stale", Body=b"old")
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
