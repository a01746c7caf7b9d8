"""Athena without AWS: moto records the queries, a hook plays Athena.

The hook runs each CTAS's or UNLOAD's SELECT on DuckDB (transpiled by sqlglot) and
writes extension-less part files to its location, as Athena does. As Athena does, it
fails a query whose target is not empty, fails a CTAS with ``external_location`` in a
work group that enforces its results location, leaves the parts it wrote when a query
fails midway, lists an UNLOAD's files in a data manifest, and keeps Iceberg tables
(without ``tinyint``/``smallint``). Its error texts are paraphrases of Athena's.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from types import SimpleNamespace
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot

from s3grid import MasterStore
from s3grid.athena import (
    AthenaEngine,
)
from tests.support.s3 import keys_under

# Athena DDL types of Iceberg columns (Iceberg keeps timestamps to the microsecond).
ICEBERG_TYPES = {
    "int": pa.int32(),
    "bigint": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
    "date": pa.date32(),
    "binary": pa.binary(),
}


class FakeAthena:
    """Side effects of Athena queries on the local S3, keyed by moto's query ids."""

    def __init__(self, engine: AthenaEngine, store: MasterStore, s3: Any) -> None:
        self.store, self.s3 = store, s3
        self.sent: list[str] = []
        self.failed: dict[str, tuple[str, str]] = {}  # query id -> (sql, reason)
        self.tables: dict[str, str] = {}  # external tables registered: "db.name" -> LOCATION
        self.iceberg: dict[str, tuple[str, pa.Table]] = {}  # "db.name" -> (LOCATION, rows)
        self.enforced_results = False  # the work group overrides client-side settings
        self.fail_midway: str | None = None  # a reason: fail after writing one part
        self._pending: str | None = None
        self.results = engine.s3_staging_dir  # the work group's results location
        self.written: list[str] = []  # s3:// paths of the parts the last query wrote
        self.data_manifests: dict[str, str] = {}  # UNLOAD query id -> its data manifest
        events = engine.connection.client.meta.events
        events.register("provide-client-params.athena.StartQueryExecution", self.on_params)
        events.register("after-call.athena.StartQueryExecution", self.on_started)
        events.register("before-call.athena.GetQueryExecution", self.on_get)
        events.register("after-call.athena.GetQueryExecution", self.on_got)

    def on_params(self, params: dict[str, Any], **_: Any) -> None:
        self._pending = params["QueryString"]

    def on_started(self, parsed: dict[str, Any], **_: Any) -> None:
        sql, self._pending = self._pending or "", None
        self.sent.append(sql)
        qid = parsed["QueryExecutionId"]
        reason = None
        if sql.startswith("CREATE TABLE") and "'table_type'='ICEBERG'" in sql:
            reason = self.create_iceberg(sql)
        elif sql.startswith("CREATE TABLE"):
            reason = self.ctas(sql)
        elif sql.startswith(("INSERT INTO", "MERGE INTO", "UPDATE", "DELETE FROM")):
            reason = self.iceberg_dml(sql)
        elif sql.startswith("UNLOAD"):
            unload = re.fullmatch(r"UNLOAD \((.*)\)\s*TO '(s3://[^']+)'\s*WITH \(.*\)", sql, re.S)
            assert unload, sql
            reason = self.write_result(sqlglot.parse_one(unload[1], read="athena"), unload[2])
            if not reason and self.results:  # Athena lists what an UNLOAD wrote
                bucket, _, prefix = self.results[5:].partition("/")
                key = f"{prefix}{qid}-manifest.csv"
                body = "".join(f"{path}\n" for path in self.written).encode()
                self.s3.put_object(Bucket=bucket, Key=key, Body=body)
                self.data_manifests[qid] = f"s3://{bucket}/{key}"
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
        if self.enforced_results:  # Athena's workgroup troubleshooting page, in words
            return (
                "INVALID_INPUT: the work group enforces its query results location; a "
                "CTAS query cannot specify external_location"
            )
        return self.write_result(sqlglot.parse_one(sql, read="athena").expression, location[1])

    def connect(self, sql: str) -> Any:
        """DuckDB with the tables ``sql`` names: Hive tables read every object in their
        LOCATION (timestamps to milliseconds, as Hive's ``timestamp``), Iceberg tables
        hold their rows."""
        con = duckdb.connect()
        for table, where in self.tables.items():
            database, name = table.split(".")
            if name not in sql:  # as Athena, read only what the query reads
                continue
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
            con.register(f"src_{name}", self.read_folder(where))
            con.execute(f'CREATE VIEW "{database}"."{name}" AS SELECT * FROM "src_{name}"')
        for table, (_, rows) in self.iceberg.items():
            database, name = table.split(".")
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{database}"')
            con.register(f"ice_{name}", rows)
            con.execute(f'CREATE TABLE "{database}"."{name}" AS SELECT * FROM "ice_{name}"')
            con.unregister(f"ice_{name}")
        return con

    def write_result(self, select: Any, location: str) -> str | None:
        bucket, _, prefix = location[5:].partition("/")
        if keys_under(self.s3, bucket, prefix):
            return f"HIVE_PATH_ALREADY_EXISTS: Target directory for table exists: {location}"
        text = select.sql(dialect="duckdb")
        result = self.connect(text).sql(text).to_arrow_table()
        # as Athena does: Glue lowercases column names
        result = result.rename_columns([c.lower() for c in result.column_names])
        self.written = []
        half = result.num_rows // 2
        for part in (result.slice(0, half), result.slice(half)):
            buf = io.BytesIO()
            pq.write_table(part, buf, compression="snappy")
            key = f"{prefix}20240501_120000_00007_{uuid.uuid4().hex[:5]}_{uuid.uuid4()}"
            self.s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
            self.written.append(f"s3://{bucket}/{key}")
            if self.fail_midway:  # Athena does not delete what a failed query wrote
                return self.fail_midway
        return None

    def create_iceberg(self, sql: str) -> str | None:
        found = re.match(
            r"CREATE TABLE `(\w+)`\.`(\w+)` \(\n(.*)\n\)\nLOCATION '([^']+)'", sql, re.S
        )
        assert found, sql
        fields = []
        for line in found[3].split(",\n"):
            column = re.fullmatch(r"\s*`(\w+)` (\w+(?:\(\d+,\d+\))?)", line)
            assert column, line
            if column[2] in ("tinyint", "smallint"):  # Athena's Iceberg type table
                return f"NOT_SUPPORTED: Unsupported Iceberg column type: {column[2]}"
            fields.append((column[1], ICEBERG_TYPES[column[2]]))
        schema = pa.schema(fields)
        self.iceberg[f"{found[1]}.{found[2]}"] = (found[4], schema.empty_table())
        return None

    def iceberg_dml(self, sql: str) -> str | None:
        """INSERT, MERGE, UPDATE, DELETE on an Iceberg table (rows kept in memory)."""
        con = self.connect(sql)
        con.execute(sqlglot.transpile(sql, read="athena", write="duckdb")[0])
        for table, (location, rows) in self.iceberg.items():
            kept = con.sql(f"SELECT * FROM {table}").to_arrow_table()
            self.iceberg[table] = (location, kept.cast(rows.schema))
        return None

    def read_folder(self, location: str) -> Any:
        bucket, _, prefix = location[5:].partition("/")
        parts = [
            pq.read_table(io.BytesIO(self.s3.get_object(Bucket=bucket, Key=k)["Body"].read()))
            for k in keys_under(self.s3, bucket, prefix)
        ]
        rows = pa.concat_tables(parts)
        return pa.table(  # Hive's timestamp keeps milliseconds: finer parts are cut
            [
                c.cast(pa.timestamp("ms", c.type.tz), safe=False)
                if pa.types.is_timestamp(c.type)
                else c
                for c in rows.columns
            ],
            names=rows.column_names,
        )

    def on_got(self, parsed: dict[str, Any], **_: Any) -> None:
        execution = parsed.get("QueryExecution", {})
        manifest = self.data_manifests.get(execution.get("QueryExecutionId", ""))
        if manifest:
            execution.setdefault("Statistics", {})["DataManifestLocation"] = manifest

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


def read_results_from(monkeypatch: Any, endpoint: str) -> None:
    """Point pyathena's result readers at the local S3: it reads an UNLOADed result with
    boto3 and with pyarrow's S3 file system, both made for AWS."""
    import functools

    from pyarrow import fs

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setattr(
        fs, "S3FileSystem", functools.partial(fs.S3FileSystem, endpoint_override=endpoint)
    )
