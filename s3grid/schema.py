"""Schema is the law: coerce edited values back to the master's Arrow schema.

Pure functions only (no I/O). A value that cannot be stored exactly in its column is
refused with a :class:`~s3grid.errors.SchemaError` naming the row, column, value and
expected type; nothing is silently widened, truncated or turned into float.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from s3grid.errors import SchemaError

__all__ = [
    "check_columns",
    "coerce_series",
    "coerce_table",
    "coerce_value",
    "contiguous",
    "describe_type",
    "strip_metadata",
    "to_pandas",
    "viewable",
]

_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})

_NULLABLE_PANDAS: dict[pa.DataType, Any] = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def to_pandas(table: pa.Table, *, share_buffers: bool = False) -> pd.DataFrame:
    """Convert a master table to pandas without losing its types.

    Integer and bool columns become pandas' nullable dtypes (``Int32``, ``boolean``), so a
    null stays a null instead of turning the column into float or object.

    ``share_buffers=True`` keeps each column a block of its own, so float and timestamp
    columns without nulls are views of the table's memory instead of copies. Those views
    are read-only: only for a frame that is never written in place, and whose shallow
    copies pandas' copy-on-write protects (the edit session's base).
    """
    frame: pd.DataFrame = table.to_pandas(
        types_mapper=_NULLABLE_PANDAS.get, split_blocks=share_buffers
    )
    return frame


def viewable(arrow_type: pa.DataType) -> bool:
    """Whether ``to_pandas(share_buffers=True)`` can view a column of this type in place
    (float, timestamp and duration, when in one chunk and without nulls). The others
    (nullable ints and bools, strings) are converted, so copied, whatever their chunks."""
    return bool(
        pa.types.is_floating(arrow_type)
        or pa.types.is_timestamp(arrow_type)
        or pa.types.is_duration(arrow_type)
    )


def contiguous(table: pa.Table, *, columns: Iterable[str] | None = None) -> pa.Table:
    """The table with every column (or each of ``columns``) in one chunk; the same table
    when they already are.

    Columns are joined one at a time, each chunked original let go before the next, so
    the extra memory is one column (plus the original, for as long as a caller holds it).
    """
    wanted = set(table.column_names if columns is None else columns)
    if all(table.column(name).num_chunks == 1 for name in wanted):
        return table
    schema, joined = table.schema, []
    for name in schema.names:
        column = table.column(0)
        joined.append(column.combine_chunks() if name in wanted else column)
        table = table.remove_column(0)
    return pa.Table.from_arrays(joined, schema=schema)


def strip_metadata(schema: pa.Schema) -> pa.Schema:
    """The schema without file-level metadata (pandas index info, s3grid save ids)."""
    return schema.remove_metadata()


def describe_type(type_: pa.DataType) -> str:
    """A short human name for an Arrow type, as used in messages."""
    return str(type_)


def check_columns(columns: Sequence[str], schema: pa.Schema) -> None:
    """Refuse added, dropped, renamed or reordered columns.

    Raises:
        SchemaError: the column names or their order differ from the master's.
    """
    expected = list(schema.names)
    given = [str(c) for c in columns]
    if given == expected:
        return
    dupes = sorted({c for c in given if given.count(c) > 1})
    if dupes:
        raise SchemaError(f"Duplicate column names {dupes}; each column must appear once.")
    added = [c for c in given if c not in expected]
    dropped = [c for c in expected if c not in given]
    hint = (
        " Changing the master's columns is a separate, explicit action: "
        "pass allow_schema_change=True to do it on purpose."
    )
    if added and dropped:
        raise SchemaError(
            f"Columns renamed or replaced: missing {dropped}, unexpected {added}.{hint}"
        )
    if added:
        raise SchemaError(f"Columns added: {added}.{hint}")
    if dropped:
        raise SchemaError(f"Columns dropped: {dropped}.{hint}")
    raise SchemaError(
        f"Columns reordered: got {given}, the master's order is {expected}. "
        "Select the columns in the master's order (df[master_columns]), or pass "
        "allow_schema_change=True to store the new order."
    )


def _fail(s: pd.Series, mask: np.ndarray, field: pa.Field, reason: str) -> SchemaError:
    positions = np.flatnonzero(mask)
    pos = int(positions[0])
    row = s.index[pos]
    value = s.iloc[pos]
    if isinstance(value, np.generic):
        value = value.item()  # show 1099511627776, not np.int64(1099511627776)
    more = len(positions) - 1
    tail = f" ({more} more row(s) in this column have the same problem)" if more else ""
    return SchemaError(
        f"Row {row}, column {field.name!r}: cannot store {value!r} as "
        f"{describe_type(field.type)}: {reason}.{tail}",
        row=row,
        column=field.name,
        value=value,
        expected=describe_type(field.type),
    )


def _null_mask(s: pd.Series) -> np.ndarray:
    """Missing values, counting blank text (a cleared cell) as missing."""
    mask = s.isna().to_numpy(dtype=bool, copy=True)
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        text = s.astype("string")
        blank = text.str.strip().eq("").fillna(False).to_numpy(dtype=bool)
        mask |= blank
    return mask


def _is_bool_values(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(s.dtype):
        return np.ones(len(s), dtype=bool)
    if s.dtype == object:
        return s.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy(dtype=bool)
    return np.zeros(len(s), dtype=bool)


def _numbers(s: pd.Series, nulls: np.ndarray, field: pa.Field) -> pd.Series:
    """Parse a column to numbers; refuse text that is not a number and bools."""
    bools = _is_bool_values(s) & ~nulls
    if bools.any():
        raise _fail(s, bools, field, "a true/false value is not a number")
    if pd.api.types.is_numeric_dtype(s.dtype):
        num = s
    else:
        num = pd.to_numeric(s.where(~nulls), errors="coerce")
    bad = ~nulls & num.isna().to_numpy(dtype=bool)
    if bad.any():
        raise _fail(s, bad, field, "not a number")
    return num


def _coerce_int(s: pd.Series, nulls: np.ndarray, field: pa.Field) -> pa.Array:
    if s.dtype == _NULLABLE_PANDAS.get(field.type):
        # Already this exact type (Int32 for int32): nothing to check, and Arrow can take
        # the values as they are (only the null bitmap is new).
        return pa.array(s.array, type=field.type)
    num = _numbers(s, nulls, field)
    np_type = np.dtype(field.type.to_pandas_dtype())
    info = np.iinfo(np_type)
    filled: np.ndarray
    if pd.api.types.is_integer_dtype(num.dtype):
        values = num.astype("Int64" if info.min < 0 or num.dtype.kind == "i" else "UInt64")
        filled = values.fillna(0).to_numpy()
        out = ~nulls & ((filled < info.min) | (filled > info.max))
    else:
        floats = num.astype("float64").fillna(0.0).to_numpy()
        infinite = ~nulls & ~np.isfinite(floats)
        if infinite.any():
            raise _fail(s, infinite, field, "infinity is not an integer")
        frac = ~nulls & (np.floor(floats) != floats)
        if frac.any():
            raise _fail(s, frac, field, "it has a fractional part")
        out = ~nulls & ((floats < info.min) | (floats > info.max))
        filled = floats
    if out.any():
        raise _fail(s, out, field, f"out of range [{info.min}, {info.max}]")
    data = np.where(nulls, 0, filled).astype(np_type)
    return pa.array(data, type=field.type, mask=nulls)


def _coerce_float(s: pd.Series, nulls: np.ndarray, field: pa.Field) -> pa.Array:
    if s.dtype == np.float64 and field.type == pa.float64():
        # Already float64, where NaN is the only missing marker: Arrow takes the values
        # as they are (a copy per column would cost the whole column again at save time).
        return pa.array(s.to_numpy(), type=pa.float64(), from_pandas=True)
    num = _numbers(s, nulls, field)
    data = num.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
    arr = pa.array(np.where(nulls, 0.0, data), type=pa.float64(), mask=nulls)
    return arr if field.type == pa.float64() else arr.cast(field.type, safe=False)


def _coerce_bool(s: pd.Series, nulls: np.ndarray, field: pa.Field) -> pa.Array:
    if pd.api.types.is_bool_dtype(s.dtype):
        data = s.fillna(False).to_numpy(dtype=bool)
        return pa.array(data, type=pa.bool_(), mask=nulls)

    def parse(v: Any) -> bool | None:
        if isinstance(v, bool | np.bool_):
            return bool(v)
        if isinstance(v, int | float | np.integer | np.floating) and v in (0, 1):
            return bool(v)
        if isinstance(v, str):
            text = v.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        return None

    parsed = [None if n else parse(v) for v, n in zip(s.tolist(), nulls, strict=True)]
    bad = ~nulls & np.array([p is None for p in parsed], dtype=bool)
    if bad.any():
        raise _fail(s, bad, field, "expected true/false (or yes/no, 1/0)")
    return pa.array([bool(p) if p is not None else False for p in parsed], mask=nulls)


def _has_offset(value: Any) -> bool:
    try:
        return pd.Timestamp(value).tzinfo is not None
    except (ValueError, TypeError):
        return False


def _coerce_temporal(s: pd.Series, nulls: np.ndarray, field: pa.Field) -> pa.Array:
    type_ = field.type
    tz = getattr(type_, "tz", None)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        parsed = s
    else:
        try:
            parsed = pd.to_datetime(
                s.where(~nulls), errors="coerce", format="ISO8601", utc=tz is not None
            )
        except (ValueError, TypeError) as exc:
            if tz is None:  # mixed naive and offset text: name the first row with an offset
                aware = ~nulls & s.map(_has_offset).to_numpy(dtype=bool)
                if aware.any():
                    raise _fail(
                        s, aware, field, "it carries a UTC offset but the column stores local time"
                    ) from exc
            raise SchemaError(
                f"Column {field.name!r}: cannot parse timestamps ({exc}); "
                "use ISO 8601 text such as 2024-05-01T13:45:00.",
                column=field.name,
                expected=describe_type(type_),
            ) from exc
        bad = ~nulls & parsed.isna().to_numpy(dtype=bool)
        if bad.any():
            raise _fail(s, bad, field, "not an ISO 8601 date/time (e.g. 2024-05-01T13:45:00)")
    parsed_tz = getattr(parsed.dtype, "tz", None)
    if tz is not None:
        parsed = (parsed.dt.tz_localize("UTC") if parsed_tz is None else parsed).dt.tz_convert(tz)
    elif parsed_tz is not None:
        aware = ~nulls
        raise _fail(s, aware, field, "it carries a UTC offset but the column stores local time")
    if pa.types.is_date(type_):
        values = pa.array(parsed.dt.date.where(~pd.Series(nulls, index=s.index)), from_pandas=True)
        return values.cast(type_)
    arr = pa.array(parsed, from_pandas=True)
    return arr.cast(type_, safe=False)


def _coerce_string(s: pd.Series, field: pa.Field) -> pa.Array:
    if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object:
        return pa.array(s, type=field.type, from_pandas=True)
    isna = s.isna().to_numpy(dtype=bool)
    values = [
        None if n else (v if isinstance(v, str) else str(v)) for v, n in zip(s, isna, strict=True)
    ]
    return pa.array(values, type=field.type)


def coerce_series(s: pd.Series, field: pa.Field) -> pa.Array:
    """Coerce one pandas column to the Arrow type of ``field``.

    Raises:
        SchemaError: a value cannot be stored exactly; names row, column, value, type.
    """
    type_ = field.type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        arr = _coerce_string(s, field)
        nulls = s.isna().to_numpy(dtype=bool)
    else:
        nulls = _null_mask(s)
        if pa.types.is_integer(type_):
            arr = _coerce_int(s, nulls, field)
        elif pa.types.is_floating(type_):
            arr = _coerce_float(s, nulls, field)
        elif pa.types.is_boolean(type_):
            arr = _coerce_bool(s, nulls, field)
        elif pa.types.is_timestamp(type_) or pa.types.is_date(type_):
            arr = _coerce_temporal(s, nulls, field)
        else:
            try:
                arr = pa.array(s, type=type_, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise SchemaError(
                    f"Column {field.name!r}: cannot store values as {describe_type(type_)}: {exc}",
                    column=field.name,
                    expected=describe_type(type_),
                ) from exc
    if not field.nullable and nulls.any():
        raise _fail(s, nulls, field, "the column does not allow empty values")
    return arr


def coerce_value(value: Any, field: pa.Field, *, row: Any = None) -> Any:
    """Coerce one edited cell value; return the Python value the master will hold.

    Raises:
        SchemaError: the value cannot be stored exactly in the column.
    """
    s = pd.Series([value], index=[row], dtype=object)
    return coerce_series(s, field)[0].as_py()


def _frame_without_index(df: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    names = [n for n in df.index.names if n is not None]
    if names and all(n in schema.names for n in names):
        flat = df.reset_index()
        # reset_index puts the key columns first; that order is ours, not the user's.
        if sorted(map(str, flat.columns)) == sorted(schema.names):
            flat = flat[list(schema.names)]
        return flat
    return df


def coerce_table(
    data: pd.DataFrame | pa.Table,
    schema: pa.Schema,
    *,
    allow_schema_change: bool = False,
) -> pa.Table:
    """Coerce a DataFrame or Arrow table to the master's schema exactly.

    Args:
        data: the new content of the master.
        schema: the master's Arrow schema (the law).
        allow_schema_change: accept added, dropped, renamed or reordered columns; columns
            that keep their name keep the master's type.

    Raises:
        SchemaError: a column or value does not fit; nothing is guessed.
    """
    schema = strip_metadata(schema)
    if isinstance(data, pa.Table):
        names = data.column_names
    elif isinstance(data, pd.DataFrame):
        data = _frame_without_index(data, schema)
        names = [str(c) for c in data.columns]
    else:
        raise SchemaError(
            f"Expected a pandas DataFrame or a pyarrow Table, got {type(data).__name__}."
        )
    if allow_schema_change:
        by_name = {f.name: f for f in schema}
        fields = []
        for i, name in enumerate(names):
            if name in by_name:
                fields.append(by_name[name])
            else:
                col = data.column(i) if isinstance(data, pa.Table) else data.iloc[:, i]
                inferred = col.type if isinstance(data, pa.Table) else pa.array(col).type
                fields.append(pa.field(name, inferred))
        target = pa.schema(fields)
    else:
        check_columns(names, schema)
        target = schema

    arrays = []
    for i, field in enumerate(target):
        if isinstance(data, pa.Table):
            arrays.append(_coerce_arrow_column(data.column(i), field))
        else:
            arrays.append(coerce_series(data.iloc[:, i], field))
    return pa.Table.from_arrays(arrays, schema=target)


def _coerce_arrow_column(col: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    if col.type == field.type:
        if not field.nullable and col.null_count:
            coerce_series(col.to_pandas(), field)  # raises with the row that is empty
        return col
    try:
        return col.cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        # Re-run through pandas only to find and name the offending row.
        series = col.to_pandas(types_mapper=_NULLABLE_PANDAS.get)
        coerced = coerce_series(series, field)
        if coerced.type == field.type:
            return pa.chunked_array([coerced])
        raise SchemaError(
            f"Column {field.name!r}: cannot cast {col.type} to {field.type}: {exc}",
            column=field.name,
            expected=describe_type(field.type),
        ) from exc
