"""Schema is the law: every seed column type round-trips; lossy values are refused."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from s3grid.errors import SchemaError
from s3grid.sample import SAMPLE_SCHEMA, sample_master
from s3grid.schema import coerce_table, coerce_value, contiguous, to_pandas


def test_sample_round_trip_every_seed_type() -> None:
    table = sample_master(40)
    df = to_pandas(table)
    assert str(df["tow"].dtype) == "Int32"
    assert str(df["is_day"].dtype) == "boolean"
    back = coerce_table(df, SAMPLE_SCHEMA)
    assert back.schema == SAMPLE_SCHEMA
    assert back.equals(table)


def test_nulls_in_int_float_and_timestamp_stay_typed() -> None:
    df = to_pandas(sample_master(10))
    df.loc[2, "min_depth"] = pd.NA
    df.loc[3, "volume_filtered"] = np.nan
    df.loc[4, "time_start_gmt"] = pd.NaT
    out = coerce_table(df, SAMPLE_SCHEMA)
    assert out.schema.field("min_depth").type == pa.int32()
    assert out.column("min_depth")[2].as_py() is None
    assert out.column("volume_filtered")[3].as_py() is None
    assert out.column("time_start_gmt")[4].as_py() is None


def test_cleared_int_cell_as_float_column_becomes_null_int() -> None:
    # What ipydatagrid does: clearing one int cell turns the column to float with NaN.
    df = to_pandas(sample_master(10))
    df["max_depth"] = df["max_depth"].astype("float64")
    df.loc[1, "max_depth"] = np.nan
    out = coerce_table(df, SAMPLE_SCHEMA)
    assert out.schema.field("max_depth").type == pa.int32()
    assert out.column("max_depth")[1].as_py() is None
    assert out.column("max_depth")[0].as_py() == int(df.loc[0, "max_depth"])


def test_text_from_grid_is_parsed() -> None:
    df = to_pandas(sample_master(5)).astype(object)
    df.loc[0, "tow"] = "12"
    df.loc[0, "volume_filtered"] = "1.5e2"
    df.loc[0, "is_day"] = "no"
    df.loc[0, "time_start_gmt"] = "2024-05-01T13:45:00"
    df.loc[0, "min_depth"] = ""
    out = coerce_table(df, SAMPLE_SCHEMA).to_pylist()[0]
    assert out["tow"] == 12
    assert out["volume_filtered"] == 150.0
    assert out["is_day"] is False
    assert out["time_start_gmt"] == datetime(2024, 5, 1, 13, 45)
    assert out["min_depth"] is None


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("tow", 7.5, "fractional part"),
        ("tow", "abc", "not a number"),
        ("tow", 3e10, "out of range"),
        ("tow", True, "true/false value is not a number"),
        ("tow", float("inf"), "infinity"),
        ("volume_filtered", "abc", "not a number"),
        ("is_day", "maybe", "expected true/false"),
        ("time_start_gmt", "yesterday-ish", "ISO 8601"),
        ("time_start_local", "2024-05-01T10:00:00+02:00", "UTC offset"),
    ],
)
def test_lossy_values_refused_naming_row_column_value_type(
    column: str, value: object, reason: str
) -> None:
    df = to_pandas(sample_master(10)).astype(object)
    df.loc[6, column] = value
    with pytest.raises(SchemaError, match=reason) as info:
        coerce_table(df, SAMPLE_SCHEMA)
    err = info.value
    assert err.row == 6
    assert err.column == column
    assert err.expected == str(SAMPLE_SCHEMA.field(column).type)
    assert str(err).startswith(f"Row 6, column {column!r}: cannot store {value!r}")


def test_int32_overflow_from_arrow_table_names_row() -> None:
    t = pa.table({"tow": pa.array([1, 2, 2**40], pa.int64())})
    with pytest.raises(SchemaError, match="Row 2, column 'tow'.*out of range") as info:
        coerce_table(t, pa.schema([("tow", pa.int32())]))
    assert info.value.value == 2**40


def test_arrow_bigint_to_int32_cast_when_it_fits() -> None:
    t = pa.table({"tow": pa.array([1, None, 3], pa.int64())})
    out = coerce_table(t, pa.schema([("tow", pa.int32())]))
    assert out.column("tow").type == pa.int32()
    assert out.column("tow").to_pylist() == [1, None, 3]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.assign(extra=1), "Columns added: \\['extra'\\]"),
        (lambda df: df.drop(columns=["net_size"]), "Columns dropped: \\['net_size'\\]"),
        (lambda df: df.rename(columns={"tow": "tow_id"}), "renamed.*missing \\['tow'\\]"),
        (lambda df: df[list(reversed(df.columns))], "Columns reordered"),
    ],
)
def test_column_changes_refused_unless_allowed(change: object, message: str) -> None:
    df = to_pandas(sample_master(5))
    changed = change(df)  # type: ignore[operator]
    with pytest.raises(SchemaError, match=message):
        coerce_table(changed, SAMPLE_SCHEMA)
    out = coerce_table(changed, SAMPLE_SCHEMA, allow_schema_change=True)
    assert out.column_names == [str(c) for c in changed.columns]
    if "tow" in out.column_names:
        assert out.schema.field("tow").type == pa.int32()


def test_coerce_value_single_cell() -> None:
    field = SAMPLE_SCHEMA.field("net")
    assert coerce_value("3", field, row=9) == 3
    assert coerce_value(None, field) is None
    with pytest.raises(SchemaError, match="Row 9, column 'net'"):
        coerce_value("3.5", field, row=9)


def test_non_nullable_field_refuses_empty() -> None:
    schema = pa.schema([pa.field("tow", pa.int32(), nullable=False)])
    with pytest.raises(SchemaError, match="does not allow empty"):
        coerce_table(pd.DataFrame({"tow": [1, None]}), schema)


def test_wrong_container_type() -> None:
    with pytest.raises(SchemaError, match="DataFrame or a pyarrow Table"):
        coerce_table([1, 2, 3], SAMPLE_SCHEMA)  # type: ignore[arg-type]


def test_index_named_as_columns_is_restored() -> None:
    df = to_pandas(sample_master(5)).set_index(["tow", "net"])
    out = coerce_table(df, SAMPLE_SCHEMA)
    assert out.column_names == SAMPLE_SCHEMA.names


def test_contiguous_joins_chunks_and_keeps_content() -> None:
    one = pa.table({"a": [1, 2], "s": ["x", None]})
    two = pa.table({"a": [3], "s": ["z"]})
    chunked = pa.concat_tables([one, two])
    assert chunked.column("a").num_chunks == 2
    joined = contiguous(chunked)
    assert [col.num_chunks for col in joined.columns] == [1, 1]
    assert joined.equals(chunked)
    assert joined.schema == chunked.schema
    assert contiguous(joined) is joined  # already one chunk: untouched
    # only the columns asked for: the others keep their chunks
    some = contiguous(chunked, columns=["a"])
    assert [col.num_chunks for col in some.columns] == [1, 2]
    assert some.equals(chunked)
    assert contiguous(some, columns=["a"]) is some
    no_chunks = pa.table({"a": pa.chunked_array([], type=pa.int32())})
    empty = contiguous(no_chunks)
    assert empty.num_rows == 0 and empty.column("a").num_chunks == 1
    assert empty.schema.field("a").type == pa.int32()
