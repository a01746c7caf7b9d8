"""The Athena engine (pyathena): master table DDL, CTAS/UNLOAD bulk edits, Iceberg recipes.

Every statement is checked before it is sent: identifiers and S3 locations must match
strict patterns (:mod:`s3grid.sqlcheck`), a bulk edit is exactly one SELECT, and each
``execute`` sends one statement. Queries show progress while Athena runs them; a failed
or cancelled query raises :class:`AthenaQueryError` with the query id and Athena's reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import posixpath
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from s3grid.config import S3GridConfig
from s3grid.errors import AthenaQueryError, SchemaError, ValidationError
from s3grid.flatten import empty_prefix, flatten_to_table
from s3grid.layout import new_run_id, run_prefix, source_prefix, staging_prefix
from s3grid.promote import RunManifest, write_manifest
from s3grid.schema import with_master_case
from s3grid.sqlcheck import (
    check_identifier,
    check_location,
    check_one_statement,
    check_single_select,
    rename_table,
)

__all__ = [
    "AthenaEngine",
    "AthenaQueryError",
    "QueryInfo",
    "ctas_sql",
    "external_table_ddl",
    "glue_type",
    "run",
    "sql_literal",
    "unload_sql",
]


@dataclass(frozen=True)
class QueryInfo:
    """One finished Athena query."""

    query_id: str
    state: str
    data_scanned_bytes: int | None
    output_location: str | None
    seconds: float


def glue_type(type_: pa.DataType) -> str:
    """The exact Glue/Hive type for an Arrow type (int32 -> int, int64 -> bigint, ...).

    Raises:
        SchemaError: the type has no exact Glue equivalent.
    """
    simple = {
        pa.int8(): "tinyint",
        pa.int16(): "smallint",
        pa.int32(): "int",
        pa.int64(): "bigint",
        pa.float32(): "float",
        pa.float64(): "double",
        pa.bool_(): "boolean",
        pa.string(): "string",
        pa.large_string(): "string",
        pa.date32(): "date",
        pa.binary(): "binary",
    }
    if type_ in simple:
        return simple[type_]
    if pa.types.is_timestamp(type_):
        return "timestamp"
    if pa.types.is_decimal(type_):
        return f"decimal({type_.precision},{type_.scale})"
    raise SchemaError(f"Arrow type {type_} has no exact Athena/Glue type; cast it first.")


def column_list(schema: pa.Schema, type_of: Callable[[pa.DataType], str] = glue_type) -> str:
    return ",\n  ".join(
        f"`{check_identifier(f.name, what='column name')}` {type_of(f.type)}" for f in schema
    )


def external_table_ddl(
    store: Any,
    name: str,
    *,
    database: str | None = None,
    location: str | None = None,
    if_not_exists: bool = True,
    csv: bool | None = None,
) -> str:
    """``CREATE EXTERNAL TABLE`` for the master, with Glue types from its Arrow schema.

    A CSV master's table reads every field as text with OpenCSVSerDe (quoted commas and
    newlines kept, the header skipped): its readers take typed columns only in narrow
    forms, so CAST in the query what you need as a number or a date.

    Args:
        store: a MasterStore (its master is loaded to read the schema) or a pyarrow Schema
            together with ``location``.
        name: the table name, e.g. ``work_master_parquet``.
        database: the Glue database (default: none, the connection's).
        location: the folder Athena reads; default the master's folder. Keep the master
            alone in it: Athena reads every object under the location.
        if_not_exists: keep a table that exists (False: Athena fails the statement).
        csv: the files are CSV (default: the store's ``file_format``).
    """
    schema = store if isinstance(store, pa.Schema) else store.load().schema
    if location is None:
        if isinstance(store, pa.Schema):
            raise ValidationError("Give the location of the table's folder.")
        location = _master_location(store.cfg)
    check_location(location)
    table = qualified_name(name, database, quote="`")
    if csv is None:
        csv = getattr(getattr(store, "cfg", None), "file_format", "parquet") == "csv"
    create = "CREATE EXTERNAL TABLE IF NOT EXISTS" if if_not_exists else "CREATE EXTERNAL TABLE"
    if not csv:
        columns = column_list(schema)
        return f"{create} {table} (\n  {columns}\n)\nSTORED AS PARQUET\nLOCATION '{location}'"
    columns = column_list(schema, lambda _: "string")
    return (
        f"{create} {table} (\n  {columns}\n)\n"
        "ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde'\n"
        "WITH SERDEPROPERTIES ('separatorChar' = ',', 'quoteChar' = '\"', "
        "'escapeChar' = '\\\\')\n"
        f"STORED AS TEXTFILE\nLOCATION '{location}'\n"
        "TBLPROPERTIES ('skip.header.line.count'='1')"
    )


def qualified_name(name: str, database: str | None, *, quote: str = '"') -> str:
    check_identifier(name, what="table name")
    q = f"{quote}{name}{quote}"
    if database:
        return f"{quote}{check_identifier(database, what='database name')}{quote}.{q}"
    return q


def ctas_sql(
    select_sql: str,
    *,
    table: str,
    location: str,
    database: str | None = None,
    format: str = "PARQUET",
) -> str:
    """``CREATE TABLE ... WITH (format, SNAPPY, external_location) AS <select>``."""
    check_location(location)
    select = check_single_select(select_sql)
    if format == "TEXTFILE":
        options = f"format = 'TEXTFILE', field_delimiter = ',', external_location = '{location}'"
    else:
        options = (
            f"format = 'PARQUET', write_compression = 'SNAPPY', external_location = '{location}'"
        )
    return f"CREATE TABLE {qualified_name(table, database)}\nWITH ({options})\nAS\n{select}"


def unload_sql(select_sql: str, *, location: str) -> str:
    """``UNLOAD (<select>) TO '<location>' WITH (format = 'PARQUET', compression = 'SNAPPY')``."""
    check_location(location)
    return (
        f"UNLOAD ({check_single_select(select_sql)})\nTO '{location}'\n"
        "WITH (format = 'PARQUET', compression = 'SNAPPY')"
    )


def drop_table_sql(table: str, database: str | None = None) -> str:
    """``DROP TABLE IF EXISTS`` (Hive DDL, backticks): metadata only for external tables."""
    return f"DROP TABLE IF EXISTS {qualified_name(table, database, quote='`')}"


def sql_literal(value: Any) -> str:
    """A Trino SQL literal for a Python value; strings are escaped by doubling quotes.

    Raises:
        ValidationError: the value has no literal form (NaN/inf, other types).
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            if math.isnan(value):
                return "NULL"
            raise ValidationError(f"{value} has no SQL literal.")
        return repr(value)
    if isinstance(value, pd.Timestamp | dt.datetime):
        return f"TIMESTAMP '{pd.Timestamp(value).strftime('%Y-%m-%d %H:%M:%S.%f')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if hasattr(value, "item"):  # numpy scalars
        return sql_literal(value.item())
    raise ValidationError(f"No SQL literal for {value!r} ({type(value).__name__}).")


class AthenaEngine:
    """Athena through pyathena: one statement per execute, progress while it runs.

    Args:
        work_group: Athena work group (``ATHENA_WORK_GROUP``).
        s3_staging_dir: query result location (``ATHENA_S3_STAGING_DIR``).
        database: Glue database (``ATHENA_DATABASE``).
        region: AWS region.
        profile: AWS profile.
        output_prefix: key prefix (in the master's bucket) for every run's output;
            default a folder per run, ``staging/<master key>/runs/<run id>/``. Emptied
            before every bulk edit.
        endpoint_url: an Athena endpoint (tests use a local one).
        progress: show a progress bar while queries run.
        poll_interval: seconds between status polls.
    """

    name = "athena"

    def __init__(
        self,
        *,
        work_group: str | None = None,
        s3_staging_dir: str | None = None,
        database: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        output_prefix: str | None = None,
        endpoint_url: str | None = None,
        progress: bool = True,
        poll_interval: float = 1.0,
    ) -> None:
        self.work_group = work_group
        self.s3_staging_dir = s3_staging_dir
        self.database = check_identifier(database, what="database") if database else None
        self.region = region
        self.profile = profile
        self.output_prefix = output_prefix
        self.endpoint_url = endpoint_url
        self.progress = progress
        self.poll_interval = poll_interval
        self._connection: Any = None
        self._staged: list[str] = []  # run folders to empty in done()
        self.history: list[tuple[str, QueryInfo]] = []

    @classmethod
    def from_env(cls, cfg: S3GridConfig | None = None, **kwargs: Any) -> AthenaEngine:
        """An engine from ``ATHENA_*`` variables (or the config's athena fields)."""
        env = os.environ
        values: dict[str, Any] = {
            "work_group": (cfg and cfg.athena_work_group) or env.get("ATHENA_WORK_GROUP"),
            "s3_staging_dir": (cfg and cfg.athena_s3_staging_dir)
            or env.get("ATHENA_S3_STAGING_DIR"),
            "database": (cfg and cfg.athena_database) or env.get("ATHENA_DATABASE"),
            "region": (cfg and cfg.region)
            or env.get("AWS_REGION")
            or env.get("AWS_DEFAULT_REGION"),
            "profile": (cfg and cfg.profile) or env.get("AWS_PROFILE"),
            "endpoint_url": env.get("ATHENA_ENDPOINT_URL"),
        }
        values.update(kwargs)
        return cls(**values)

    @property
    def connection(self) -> Any:
        """The pyathena connection (made on first use)."""
        if self._connection is None:
            import pyathena

            extra: dict[str, Any] = {"endpoint_url": self.endpoint_url} if self.endpoint_url else {}
            self._connection = pyathena.connect(
                work_group=self.work_group,
                s3_staging_dir=self.s3_staging_dir,
                schema_name=self.database or "default",
                region_name=self.region,
                profile_name=self.profile,
                poll_interval=self.poll_interval,
                **extra,
            )
        return self._connection

    def execute(self, sql: str, *, arrow: bool = False) -> tuple[Any, QueryInfo]:
        """Run exactly one statement and wait for it, with progress.

        Args:
            sql: one statement.
            arrow: read a SELECT's result with pyathena's Arrow cursor, as Parquet that
                Athena UNLOADs under the results location (``as_arrow()``), instead of
                pages of 1,000 rows through ``GetQueryResults``.

        Returns:
            The pyathena cursor (for results) and the query's :class:`QueryInfo`.

        Raises:
            AthenaQueryError: the query failed or was cancelled (query id and reason).
        """
        from pyathena.error import Error as PyAthenaError
        from tqdm.auto import tqdm

        sql = check_one_statement(sql)
        started = time.monotonic()
        ids: list[str] = []
        bar = tqdm(total=None, desc="Athena", unit=" polls", disable=not self.progress, leave=False)

        def on_poll(execution: Any) -> None:
            scanned = getattr(execution, "data_scanned_in_bytes", None) or 0
            bar.set_postfix_str(f"{execution.state} · {scanned / 1e6:.1f} MB scanned")
            bar.update(1)

        if arrow and _is_select(sql):
            from pyathena.arrow.cursor import ArrowCursor

            cursor = self.connection.cursor(ArrowCursor, unload=True, on_poll=on_poll)
        else:
            cursor = self.connection.cursor(on_poll=on_poll)
        try:
            cursor.execute(sql, on_start_query_execution=ids.append)
        except PyAthenaError as exc:
            qid = ids[0] if ids else getattr(cursor, "query_id", None)
            raise AthenaQueryError(
                f"Athena query {qid} failed: {exc}. Nothing was promoted; fix the SQL and "
                "run it again.",
                query_id=qid,
                reason=str(exc),
            ) from exc
        finally:
            bar.close()
        info = QueryInfo(
            query_id=cursor.query_id,
            state="SUCCEEDED",
            data_scanned_bytes=getattr(cursor, "data_scanned_in_bytes", None),
            output_location=getattr(cursor, "output_location", None),
            seconds=time.monotonic() - started,
        )
        self.history.append((sql, info))
        return cursor, info

    def target_prefix(self, cfg: S3GridConfig, run_id: str | None = None) -> str:
        """The key prefix a run writes to: ``output_prefix`` when given, else the run's
        own folder (checked: ends with '/', neither holds nor sits beside the master)."""
        return staging_prefix(cfg, self.output_prefix or run_prefix(cfg, run_id or new_run_id()))

    def run(
        self,
        select_sql: str,
        master: pa.Table,
        table_name: str,
        *,
        store: Any,
        base: Any = None,
    ) -> pa.Table:
        """Bulk edit on Athena: register the master, UNLOAD the SELECT to the run's own
        folder, flatten.

        UNLOAD, not CTAS: a workgroup that enforces its results location fails a CTAS
        with ``external_location``, but not an UNLOAD, and UNLOAD creates no table.
        With ``base`` (the loaded version the query reads), a manifest beside the output
        records it and the query id, so that a promotion of this output by anyone
        (``s3grid flatten``) saves over that version and no other.

        Raises:
            AthenaQueryError: a statement failed; nothing is promoted.
            ValidationError: unsafe names, locations or SQL.
        """
        cfg: S3GridConfig = store.cfg
        check_identifier(table_name, what="table name")
        check_millisecond_timestamps(master)
        run_id = new_run_id()
        prefix = self.target_prefix(cfg, run_id)
        self._staged.append(prefix)
        location = f"s3://{cfg.bucket}/{prefix}"
        source = self.register_master(store, master, run_id)
        select = rename_table(select_sql, table_name, to=source, database=self.database)
        try:
            empty_prefix(store.bucket, prefix)  # an output_prefix of an earlier run
            _, info = self.execute(unload_sql(select, location=location))
        finally:  # metadata only: the master's data stays
            self.execute(drop_table_sql(source, self.database))
        if base is not None:
            manifest = RunManifest.for_base(base, query_id=info.query_id)
            write_manifest(store, prefix, replace(manifest, run_id=run_id))
        scanned = info.data_scanned_bytes or 0
        print(f"Athena query {info.query_id}: {scanned / 1e6:.1f} MB scanned, output {location}")
        table, _ = flatten_to_table(store.bucket, prefix)
        return with_master_case(table, master.schema)

    def register_master(self, store: Any, master: pa.Table, run_id: str) -> str:
        """Register ``master`` (the version loaded) as an external table of this run only;
        returns its name. Drop it with :func:`drop_table_sql` when the run is done.

        A table of this master and this run only: an existing table of the same name
        (another master's, an older schema's) is never reused, and two runs, or two
        users on two masters in one database, never drop each other's tables.
        """
        source = run_table_name(store.cfg, run_id)
        self.execute(
            external_table_ddl(
                master.schema,
                source,
                database=self.database,
                location=self._source_location(store, master, run_id),
                if_not_exists=False,  # a new name: one that exists is not ours
            )
        )
        return source

    def _source_location(self, store: Any, master: pa.Table, run_id: str) -> str:
        """Where Athena reads the master: its folder, or for a CSV master a Parquet copy
        of the version loaded (Hive's CSV readers cannot tell an empty field from ``""``,
        and read typed columns only in narrow forms, so the text would not come back
        exactly)."""
        cfg: S3GridConfig = store.cfg
        if cfg.file_format != "csv":
            return _master_location(cfg)
        prefix = source_prefix(cfg, run_id)
        self._staged.append(prefix)
        sink = pa.BufferOutputStream()
        pq.write_table(master, sink, compression="snappy")
        store.bucket.put(prefix + "master.parquet", sink.getvalue().to_pybytes())
        return f"s3://{cfg.bucket}/{prefix}"

    def done(self, store: Any) -> None:
        """Empty the folders this engine's runs staged: their results were previewed or
        saved, and must not be promoted (again) by anyone else."""
        while self._staged:
            empty_prefix(store.bucket, self._staged[-1])
            self._staged.pop()


def check_millisecond_timestamps(table: pa.Table) -> None:
    """Refuse a master whose timestamps have sub-millisecond parts, before any query:
    Athena reads Parquet timestamps as Hive ``timestamp``, which keeps milliseconds, so a
    bulk edit there would cut every such value silently.

    Raises:
        ValidationError: names the column, the first row and its value.
    """
    per_ms = {"us": 1_000, "ns": 1_000_000}
    for name, type_ in zip(table.column_names, table.schema.types, strict=True):
        if not pa.types.is_timestamp(type_) or type_.unit not in per_ms:
            continue
        ticks = table.column(name).cast(pa.int64())
        finer = pc.not_equal(pc.remainder(ticks, per_ms[type_.unit]), 0)
        rows = np.flatnonzero(pc.fill_null(finer, False).to_numpy(zero_copy_only=False))
        if len(rows):
            value = table.column(name)[int(rows[0])]
            raise ValidationError(
                f"Column {name!r} holds times finer than a millisecond (row {int(rows[0])}: "
                f"{value}; {len(rows)} row(s) in all). Athena keeps milliseconds and would cut "
                "them in a bulk edit; run it with engine='duckdb', or round the column to "
                "milliseconds first."
            )


def run_table_name(cfg: S3GridConfig, run_id: str) -> str:
    """The table one Athena run registers for the master: unique to the master's bucket
    and key and to the run (Glue lowercases table names)."""
    digest = hashlib.sha256(cfg.uri.encode()).hexdigest()[:10]
    return f"s3grid_{digest}_{re.sub(r'[^a-z0-9]', '_', run_id.lower())}"


def _master_location(cfg: S3GridConfig) -> str:
    folder = posixpath.dirname(cfg.master_key)
    if not folder:
        raise ValidationError(
            "The master sits at the bucket root; Athena would read the whole bucket. "
            "Move it into a folder of its own, or pass location='s3://bucket/folder/'."
        )
    return f"s3://{cfg.bucket}/{folder}/"


def run(sql: str, *, engine: AthenaEngine | None = None) -> pd.DataFrame | QueryInfo:
    """Run one statement on Athena from a notebook cell.

    Returns a DataFrame for a SELECT or WITH (read whole as Parquet through pyathena's
    Arrow cursor) or SHOW/DESCRIBE, else the :class:`QueryInfo`.

    Raises:
        AthenaQueryError: the query failed.
    """
    engine = engine or AthenaEngine.from_env()
    cursor, info = engine.execute(sql, arrow=True)
    if hasattr(cursor, "as_arrow") and _is_select(sql):  # UNLOADed as Parquet: read whole
        frame: pd.DataFrame = cursor.as_arrow().to_pandas()
        return frame
    if cursor.description:
        columns = [d[0] for d in cursor.description]
        return pd.DataFrame(cursor.fetchall(), columns=columns)
    return info


def _is_select(sql: str) -> bool:
    """A query whose rows UNLOAD can write (``SELECT`` or ``WITH``), as pyathena wraps."""
    return re.match(r"\s*(SELECT|WITH)\b", sql, re.IGNORECASE) is not None


# Athena refuses a query string longer than this many bytes.
MAX_QUERY_BYTES = 262_144


def merge_sql(
    table: str, edits: pd.DataFrame, key_columns: Sequence[str], *, database: str | None = None
) -> str:
    """``MERGE INTO`` an Iceberg table from a DataFrame of edited rows (values escaped).

    Raises:
        ValidationError: no edits, missing or duplicate keys, no column to set, or a
            statement over Athena's query size (see :func:`merge_statements`).
    """
    statements = merge_statements(table, edits, key_columns, database=database)
    if len(statements) > 1:
        raise ValidationError(
            f"These {len(edits)} edits make a MERGE over Athena's {MAX_QUERY_BYTES:,}-byte "
            "query limit; use merge_statements (IcebergTable.merge does) to send it in parts."
        )
    return statements[0]


def merge_statements(
    table: str,
    edits: pd.DataFrame,
    key_columns: Sequence[str],
    *,
    database: str | None = None,
    limit: int = MAX_QUERY_BYTES,
) -> list[str]:
    """``MERGE INTO`` statements for ``edits``, each under ``limit`` bytes (Athena's query
    size): as many rows per statement as fit, every row in exactly one.

    Raises:
        ValidationError: no edits, missing or duplicate keys among the edits (which row
            would win is undefined), only key columns (nothing to set), or one row alone
            over the limit.
    """
    if edits.empty:
        raise ValidationError("No edits to merge.")
    keys = [check_identifier(k, what="key column") for k in key_columns]
    cols = [check_identifier(str(c), what="column name") for c in edits.columns]
    missing = [k for k in keys if k not in cols]
    if missing:
        raise ValidationError(f"The edits lack key column(s) {missing}.")
    if not [c for c in cols if c not in keys]:
        raise ValidationError("The edits hold only key columns: give the columns to set too.")
    repeated = edits[edits.duplicated(subset=keys, keep=False)]
    if not repeated.empty:
        shown = repeated[keys].drop_duplicates().head(5).to_dict("records")
        raise ValidationError(
            f"The edits repeat key(s) {shown}: a MERGE takes one row per key. Keep one each."
        )
    col_list = ", ".join(f'"{c}"' for c in cols)
    on = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
    sets = ", ".join(f'"{c}" = s."{c}"' for c in cols if c not in keys)
    values = ", ".join(f's."{c}"' for c in cols)
    head = f"MERGE INTO {qualified_name(table, database)} t\nUSING (VALUES\n    "
    tail = (
        f"\n) AS s ({col_list})\nON {on}\n"
        f"WHEN MATCHED THEN UPDATE SET {sets}\n"
        f"WHEN NOT MATCHED THEN INSERT ({col_list}) VALUES ({values})"
    )
    room = limit - len(head.encode()) - len(tail.encode())
    sep = ",\n    "
    statements: list[str] = []
    chunk: list[str] = []
    size = 0
    for row in edits.itertuples(index=False, name=None):
        text = "(" + ", ".join(sql_literal(v) for v in row) + ")"
        width = len(text.encode()) + (len(sep) if chunk else 0)
        if len(text.encode()) > room:
            raise ValidationError(
                f"One edited row makes a MERGE over Athena's {limit:,}-byte query limit; "
                "update that row with UPDATE ... WHERE instead."
            )
        if chunk and size + width > room:
            statements.append(head + sep.join(chunk) + tail)
            chunk, size, width = [], 0, len(text.encode())
        chunk.append(text)
        size += width
    statements.append(head + sep.join(chunk) + tail)
    return statements
