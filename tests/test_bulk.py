"""SQL bulk edits on the local DuckDB engine, flatten, export."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3grid import (
    ConflictError,
    MasterStore,
    SchemaError,
    ValidationError,
    bulk_edit,
    export_csv,
    preview_bulk_edit,
)
from s3grid.flatten import flatten_to_bytes, flatten_to_table
from s3grid.localsql import SQLError
from s3grid.sample import SAMPLE_SCHEMA
from tests.support.s3 import all_objects
from tests.support.seed import SEED_SQL, expected_seed_result, put_part

pytestmark = pytest.mark.both_stores


def test_seed_select_runs_unchanged_on_duckdb(master_store: MasterStore) -> None:
    base = master_store.load()
    res = bulk_edit(master_store, SEED_SQL, note="shift tow 4 bins")
    after = master_store.load()
    assert after.schema == base.schema  # int32 stays int32, timestamps stay timestamps
    expected = expected_seed_result(base.to_pandas())
    pd.testing.assert_frame_equal(after.to_pandas(), expected)
    assert res.rows_deleted == 1
    # nets 1-4 take the previous bin: 4 x (min, max), less net 1 min_depth (0 -> 0)
    assert res.cells_changed == 7
    log = master_store.audit_log()
    assert log.iloc[-1]["source"] == "sql"
    assert log.iloc[-1]["note"] == "shift tow 4 bins"


def test_preview_writes_nothing(master_store: MasterStore, s3: Any, bucket: str) -> None:
    before = all_objects(s3, bucket)
    p = preview_bulk_edit(
        master_store, "SELECT * FROM work_master_parquet WHERE NOT (tow = 1 AND net = 2)"
    )
    assert p.diff.deleted == ((1, 2),)
    assert p.table.num_rows == 49
    assert all_objects(s3, bucket) == before


def test_integer_division_matches_athena(master_store: MasterStore) -> None:
    p = preview_bulk_edit(
        master_store,
        "SELECT vessel, cruise, tow, net, lat_decimal, long_decimal, min_depth, "
        "max_depth / 2 AS max_depth, volume_filtered, time_start_gmt, time_start_local, "
        "is_day, net_size FROM work_master_parquet",
    )
    assert p.table.column("max_depth")[1].as_py() == 25  # 50 / 2, an int as on Trino
    assert p.table.schema.field("max_depth").type == pa.int32()


def test_concurrent_grid_save_makes_bulk_edit_conflict(
    master_store: MasterStore, s3: Any, bucket: str
) -> None:
    base = master_store.load()
    grid = MasterStore(master_store.cfg)
    m = grid.load()
    df = m.to_pandas()
    df.loc[0, "volume_filtered"] = 1.0
    grid.save(df, base=m, note="grid save during the query")
    before = all_objects(s3, bucket)
    with pytest.raises(ConflictError):
        bulk_edit(master_store, SEED_SQL, note="bulk", base=base)
    assert all_objects(s3, bucket) == before
    assert master_store.load().to_pandas().loc[0, "volume_filtered"] == 1.0


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        ("SELEC * FROM work_master_parquet", ValidationError, "does not parse"),
        ("SELECT * FROM nope", SQLError, "nope"),
        ("SELECT tow, net FROM work_master_parquet", SchemaError, "Columns dropped"),
        ("SELECT * FROM work_master_parquet WHERE tow < 0", ValidationError, "no rows"),
        ("SELECT * FROM work_master_parquet; DROP TABLE x", ValidationError, "one statement"),
        ("DELETE FROM work_master_parquet", ValidationError, "must be a SELECT"),
        (
            "SELECT vessel, cruise, tow, net, lat_decimal, long_decimal, min_depth, max_depth, "
            "volume_filtered, time_start_gmt, time_start_local, is_day, net_size + 0.5 AS net_size "
            "FROM work_master_parquet UNION ALL SELECT * FROM work_master_parquet",
            ValidationError,
            "Duplicate key",
        ),
        (
            "SELECT vessel, cruise, CAST(tow AS DOUBLE) + 0.5 AS tow, net, lat_decimal, "
            "long_decimal, min_depth, max_depth, volume_filtered, time_start_gmt, "
            "time_start_local, is_day, net_size FROM work_master_parquet",
            SchemaError,
            "fractional part",
        ),
    ],
)
def test_bad_sql_refused_nothing_written(
    master_store: MasterStore, s3: Any, bucket: str, sql: str, error: type[Exception], message: str
) -> None:
    before = all_objects(s3, bucket)
    with pytest.raises(error, match=message):
        bulk_edit(master_store, sql, note="bad")
    assert all_objects(s3, bucket) == before


@pytest.mark.parametrize(
    ("reader", "column"),
    [
        ("read_text('{path}.csv')", "content"),
        ("read_csv('{path}.csv')", "vessel"),
        ("read_parquet('{path}.parquet')", "vessel"),
    ],
)
def test_local_sql_reads_only_the_master(
    master_store: MasterStore, s3: Any, bucket: str, tmp_path: Path, reader: str, column: str
) -> None:
    secret = tmp_path / "secret"
    Path(f"{secret}.csv").write_text("vessel\nleaked\n")
    pq.write_table(pa.table({"vessel": ["leaked"]}), f"{secret}.parquet")
    sql = (
        f"SELECT m.* REPLACE (CAST(x.{column} AS VARCHAR) AS vessel) "
        f"FROM work_master_parquet m, {reader.format(path=secret)} x"
    )
    before = all_objects(s3, bucket)
    with pytest.raises(SQLError, match="disabled by configuration"):
        bulk_edit(master_store, sql, note="exfiltrate")
    assert all_objects(s3, bucket) == before
    # the master itself still reads, with external access off
    p = preview_bulk_edit(master_store, "SELECT * FROM work_master_parquet")
    assert p.table.num_rows == 50


def test_bad_table_name_refused(master_store: MasterStore) -> None:
    with pytest.raises(ValidationError, match="Invalid table name"):
        preview_bulk_edit(master_store, "SELECT 1", table_name='x"; DROP TABLE y; --')


def test_flatten_mixed_int_widths_markers_and_hidden(
    store: MasterStore, s3: Any, bucket: str, table: pa.Table
) -> None:
    wide = pa.Table.from_pandas(table.slice(0, 20).to_pandas(), preserve_index=False)
    wide = wide.cast(
        pa.schema(
            [
                pa.field(f.name, pa.int64()) if pa.types.is_integer(f.type) else f
                for f in SAMPLE_SCHEMA
            ]
        )
    )  # bigint, as Athena writes
    put_part(s3, bucket, "staging/next/20240101_000_part0", wide)
    put_part(s3, bucket, "staging/next/20240101_000_part1", table.slice(20, 30))
    s3.put_object(Bucket=bucket, Key="staging/next/_SUCCESS", Body=b"")
    s3.put_object(Bucket=bucket, Key="staging/next/_metadata_junk", Body=b"x")
    s3.put_object(Bucket=bucket, Key="staging/next/.hidden", Body=b"x")
    s3.put_object(Bucket=bucket, Key="staging/next/empty_part", Body=b"")
    out, info = flatten_to_table(store.bucket, "staging/next/", schema=SAMPLE_SCHEMA)
    assert out.schema == SAMPLE_SCHEMA
    assert out.equals(table)
    assert info.rows == 50
    assert len(info.parts) == 2
    assert len(info.skipped) == 4
    body, info2 = flatten_to_bytes(
        store.bucket, "staging/next/", schema=SAMPLE_SCHEMA, row_group_size=16
    )
    assert pq.read_table(io.BytesIO(body)).equals(table)
    assert info2.rows == 50


def test_flatten_empty_or_missing_prefix(store: MasterStore) -> None:
    with pytest.raises(ValidationError, match="No part files"):
        flatten_to_table(store.bucket, "staging/none/")
    with pytest.raises(ValidationError, match="must end with '/'"):
        flatten_to_table(store.bucket, "staging/none")


def test_export_csv_local_and_s3(
    master_store: MasterStore, tmp_path: Path, s3: Any, bucket: str
) -> None:
    path = export_csv(master_store, tmp_path / "out" / "master.csv")
    df = pd.read_csv(path)
    assert len(df) == 50
    assert list(df.columns) == SAMPLE_SCHEMA.names
    dest = export_csv(master_store, f"s3://{bucket}/exports/master.csv")
    body = s3.get_object(Bucket=bucket, Key="exports/master.csv")["Body"].read()
    assert body.startswith(b'"vessel","cruise","tow"')
    assert dest.endswith("exports/master.csv")
    with pytest.raises(ValidationError):
        export_csv(master_store, f"s3://{bucket}/data/master.parquet")
