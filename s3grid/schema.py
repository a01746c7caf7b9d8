"""Schema is the law: coerce edited values back to the master's Arrow schema.

Pure functions only (no I/O). A value that cannot be stored exactly in its column is
refused with a :class:`~s3grid.errors.SchemaError` naming the row, column, value and
expected type; nothing is silently widened, truncated or turned into float.
"""

from __future__ import annotations

import decimal
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from s3grid.errors import SchemaError

__all__ = [
    "check_columns",
    "check_loadable",
    "coerce_series",
    "coerce_table",
    "coerce_value",
    "contiguous",
    "describe_type",
    "editable",
    "parse_type",
    "put_nans",
    "strip_metadata",
    "to_pandas",
    "viewable",
    "with_master_case",
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


def editable(type_: pa.DataType) -> bool:
    """Whether cells of this type can be edited (typed text is parsed back exactly).

    Numbers (decimals keep their scale), booleans, text (categories of a dictionary of
    text too), timestamps and dates are. Other types a Parquet master can hold (time,
    duration, binary, list, struct, map, dictionaries of other values) are shown
    read-only and saved back as they were.
    """
    if pa.types.is_dictionary(type_):
        value = type_.value_type
        return bool(pa.types.is_string(value) or pa.types.is_large_string(value))
    return bool(
        pa.types.is_integer(type_)
        or pa.types.is_floating(type_)
        or pa.types.is_decimal(type_)
        or pa.types.is_boolean(type_)
        or pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_timestamp(type_)
        or pa.types.is_date(type_)
    )


_SIMPLE_TYPES: dict[str, pa.DataType] = {
    **{name: getattr(pa, name)() for name in ("int8", "int16", "int32", "int64")},
    **{name: getattr(pa, name)() for name in ("uint8", "uint16", "uint32", "uint64")},
    "halffloat": pa.float16(),
    "float16": pa.float16(),
    "float": pa.float32(),
    "float32": pa.float32(),
    "double": pa.float64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "str": pa.string(),
    "utf8": pa.string(),
    "large_string": pa.large_string(),
    "date": pa.date32(),
    "date32": pa.date32(),
    "date32[day]": pa.date32(),
    "date64": pa.date64(),
    "date64[ms]": pa.date64(),
}
_TIMESTAMP = re.compile(r"timestamp\[(?P<unit>s|ms|us|ns)(?:,\s*tz=(?P<tz>[^\]]+))?\]")


def parse_type(text: str) -> pa.DataType:
    """An editable Arrow type from its name: ``int32``, ``float64``, ``bool``, ``string``,
    ``date32``, ``timestamp[us]``, ``timestamp[us, tz=UTC]`` (what ``str(type)`` gives).

    Raises:
        SchemaError: not a type name s3grid can edit.
    """
    name = text.strip().lower()
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    match = _TIMESTAMP.fullmatch(text.strip())
    if match:
        tz = match["tz"].strip() if match["tz"] else None
        if tz is not None and not re.fullmatch(r"[+-]\d{2}:\d{2}", tz):
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise SchemaError(
                    f"Unknown time zone {tz!r} in {text!r}; use a name such as UTC or "
                    "Europe/Oslo, or an offset such as +02:00."
                ) from exc
        return pa.timestamp(match["unit"], tz=tz)
    raise SchemaError(
        f"Unknown column type {text!r}; use one of int8..int64, uint8..uint64, float32, "
        "float64, bool, string, date32, timestamp[s|ms|us|ns] or timestamp[us, tz=UTC]."
    )


def check_loadable(schema: pa.Schema, *, where: str) -> None:
    """Refuse a master s3grid cannot keep exactly: a column name used twice (no cell could
    be addressed), or a column without a type (Arrow ``null``: nothing could be stored).

    Raises:
        SchemaError: names the columns and what to do.
    """
    names = list(schema.names)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SchemaError(
            f"{where} has more than one column named {twice}; s3grid cannot tell them apart. "
            "Rename them in the file (for example with pyarrow's rename_columns) and upload "
            "it again."
        )
    untyped = [f.name for f in schema if pa.types.is_null(f.type)]
    if untyped:
        raise SchemaError(
            f"{where}: column(s) {untyped} have no type (every value is empty, stored as "
            "Arrow 'null'), so no value could ever be saved in them. Re-create the master "
            "with a type for each, e.g. `s3grid init FILE --types "
            f"{untyped[0]}=string`.",
            column=untyped[0],
            expected="a typed column",
        )


def put_nans(table: pa.Table, name: str, where: np.ndarray) -> pa.Table:
    """``table`` with NaN in float column ``name`` at the rows ``where`` marks that are
    null there (NaN that a pandas frame could not tell from null)."""
    column = table.column(name)
    where = where & column.is_null().to_numpy(zero_copy_only=False)
    if not where.any():
        return table
    nan = pa.array(np.full(1, np.nan, dtype=column.type.to_pandas_dtype()))[0]
    filled = pc.if_else(pa.array(where), nan, column)
    return table.set_column(table.column_names.index(name), name, filled)


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
    value = s.iloc[pos]
    if isinstance(value, np.generic):
        value = value.item()  # show 1099511627776, not np.int64(1099511627776)
    return _value_error(s.index[pos], field, value, reason, more=len(positions) - 1)


def _value_error(row: Any, field: pa.Field, value: Any, reason: str, *, more: int) -> SchemaError:
    """The error for one value that does not fit, naming row, column, value and type."""
    tail = f" ({more} more row(s) in this column have the same problem)" if more else ""
    where = row if isinstance(row, str) else f"Row {row}"  # a str: the row's name
    return SchemaError(
        f"{where}, column {field.name!r}: cannot store {value!r} as "
        f"{describe_type(field.type)}: {reason}.{tail}",
        row=row,
        column=field.name,
        value=value,
        expected=describe_type(field.type),
        reason=reason,
    )


def refused_at(exc: SchemaError, row: Any, field: pa.Field) -> SchemaError:
    """The error ``exc`` (one value that does not fit ``field``) as it reads for the
    same value in another ``row``: many cells holding one bad value are checked once."""
    if exc.reason is None:
        return exc
    return _value_error(row, field, exc.value, exc.reason, more=0)


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


def _nan_text(s: pd.Series) -> np.ndarray:
    """Cells holding the text "nan" (any case, any sign): the float value NaN, typed."""
    if s.dtype != object and not pd.api.types.is_string_dtype(s.dtype):
        return np.zeros(len(s), dtype=bool)
    text = s.astype("string").str.strip().str.lower().str.lstrip("+-")
    return text.eq("nan").fillna(False).to_numpy(dtype=bool)


def _numbers(
    s: pd.Series, nulls: np.ndarray, field: pa.Field, *, nan: np.ndarray | None = None
) -> pd.Series:
    """Parse a column to numbers; refuse text that is not a number and bools.

    ``nan`` marks cells where NaN is the value (the text "nan" in a float column).
    """
    bools = _is_bool_values(s) & ~nulls
    if bools.any():
        raise _fail(s, bools, field, "a true/false value is not a number")
    if pd.api.types.is_numeric_dtype(s.dtype):
        num = s
    else:
        num = pd.to_numeric(s.where(~nulls), errors="coerce")
    bad = ~nulls & num.isna().to_numpy(dtype=bool)
    if nan is not None:
        bad &= ~nan
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
    """Floats: a missing value is null; NaN is a value only where typed as the text
    "nan" (in pandas, NaN is how a float column marks a missing value)."""
    if s.dtype == np.float64 and field.type == pa.float64():
        # Already float64, where NaN is the only missing marker: Arrow takes the values
        # as they are (a copy per column would cost the whole column again at save time).
        return pa.array(s.to_numpy(), type=pa.float64(), from_pandas=True)
    nan = _nan_text(s)
    num = _numbers(s, nulls, field, nan=nan)
    data = num.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
    arr = pa.array(np.where(nulls, 0.0, data), type=pa.float64(), mask=nulls)
    if field.type == pa.float64():
        return arr
    narrowed = arr.cast(field.type, safe=False)
    wider = narrowed.cast(pa.float64()).to_numpy(zero_copy_only=False)
    overflow = ~nulls & np.isfinite(data) & ~np.isfinite(wider)
    if overflow.any():
        limit = float(np.finfo(field.type.to_pandas_dtype()).max)
        raise _fail(s, overflow, field, f"out of range (at most ±{limit:.4g})")
    return narrowed


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


def _none_mask(s: pd.Series) -> np.ndarray:
    """Missing cells of an object column holding lists, dicts or bytes (where ``isna``
    would look inside a list)."""
    return np.array([v is None or v is pd.NA or v is pd.NaT for v in s], dtype=bool)


def _coerce_binary(s: pd.Series, field: pa.Field) -> pa.Array:
    bad = np.array([not (v is None or isinstance(v, bytes | bytearray)) for v in s], dtype=bool)
    if bad.any():
        raise _fail(
            s, bad, field, "binary columns take bytes only (they are read-only in the grid)"
        )
    return pa.array(list(s), type=field.type)


def _coerce_decimal(s: pd.Series, nulls: np.ndarray, field: pa.Field) -> pa.Array:
    """Decimal text (or numbers) into the column's decimal type exactly: ``1.5`` is
    stored as 1.50 at scale 2, but ``1.234`` (a digit the scale cannot hold) and a number
    too large for the precision are refused, never rounded."""
    values: list[decimal.Decimal | None] = []
    bad = np.zeros(len(s), dtype=bool)
    for i, (value, null) in enumerate(zip(s.tolist(), nulls, strict=True)):
        if null:
            values.append(None)
            continue
        try:
            number = (
                value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value).strip())
            )
            if not number.is_finite():
                raise decimal.InvalidOperation
        except (decimal.InvalidOperation, ValueError):
            bad[i] = True
            values.append(None)
            continue
        values.append(number)
    if bad.any():
        raise _fail(s, bad, field, "not a decimal number")
    try:
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    for i, one in enumerate(values):
        try:
            pa.array([one], type=field.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            bad[i] = True
    type_ = field.type
    raise _fail(
        s,
        bad,
        field,
        f"it does not fit exactly ({type_.precision} digits, {type_.scale} after the point)",
    )


def _keep_as_is(s: pd.Series, field: pa.Field) -> pa.Array:
    try:
        return pa.array(s, type=field.type, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise SchemaError(
            f"Column {field.name!r}: cannot store these values as {describe_type(field.type)} "
            f"({exc}). The column is read-only in the grid; keep the values it was loaded with.",
            column=field.name,
            expected=describe_type(field.type),
        ) from exc


def coerce_series(s: pd.Series, field: pa.Field) -> pa.Array:
    """Coerce one pandas column to the Arrow type of ``field``.

    Raises:
        SchemaError: a value cannot be stored exactly; names row, column, value, type.
    """
    type_ = field.type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        arr = _coerce_string(s, field)
        nulls = s.isna().to_numpy(dtype=bool)
    elif pa.types.is_dictionary(type_) and editable(type_):
        text = _coerce_string(s.astype(object), pa.field(field.name, type_.value_type))
        nulls = s.isna().to_numpy(dtype=bool)
        arr = text.dictionary_encode().cast(type_)
    elif not editable(type_):  # kept as they are: no text is parsed into these
        nulls = s.isna().to_numpy(dtype=bool) if s.dtype != object else _none_mask(s)
        if pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
            arr = _coerce_binary(s, field)
        else:
            arr = _keep_as_is(s, field)
    else:
        nulls = _null_mask(s)
        if pa.types.is_integer(type_):
            arr = _coerce_int(s, nulls, field)
        elif pa.types.is_floating(type_):
            arr = _coerce_float(s, nulls, field)
        elif pa.types.is_boolean(type_):
            arr = _coerce_bool(s, nulls, field)
        elif pa.types.is_decimal(type_):
            arr = _coerce_decimal(s, nulls, field)
        else:  # timestamp or date: the last editable kind
            arr = _coerce_temporal(s, nulls, field)
    if not field.nullable and nulls.any():
        raise _fail(s, nulls, field, "the column does not allow empty values")
    return arr


def coerce_value(value: Any, field: pa.Field, *, row: Any = None) -> Any:
    """Coerce one edited cell value; return the Python value the master will hold.

    Raises:
        SchemaError: the value cannot be stored exactly in the column.
    """
    if (
        pa.types.is_floating(field.type)
        and isinstance(value, float | np.floating)
        and np.isnan(value)
    ):
        return float("nan")  # a NaN given as one value is meant (a frame's NaN is missing)
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
        cast = col.cast(field.type, safe=True)
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
    _check_exact_cast(col, cast, field)
    return cast


def _check_exact_cast(col: pa.ChunkedArray, cast: pa.ChunkedArray, field: pa.Field) -> None:
    """Refuse what Arrow's "safe" cast still lets through: numbers other than 0 and 1
    into bool (2 and 0.5 both become true), and floats too large for a narrower float
    (they become infinity).

    Raises:
        SchemaError: names the first row, its value and the expected type.
    """
    bad = None
    reason = ""
    if pa.types.is_boolean(field.type) and (
        pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
    ):
        zero_or_one = pc.is_in(col, value_set=pa.array([0, 1], col.type))
        bad = pc.and_(pc.is_valid(col), pc.invert(zero_or_one))
        reason = "expected true/false (1 or 0)"
    elif pa.types.is_floating(field.type) and pa.types.is_floating(col.type):
        bad = pc.and_(pc.is_finite(col), pc.invert(pc.is_finite(cast)))
        reason = "out of range for the column's float type"
    if bad is None:
        return
    positions = np.flatnonzero(pc.fill_null(bad, False).to_numpy(zero_copy_only=False))
    if not len(positions):
        return
    row = int(positions[0])
    raise _value_error(row, field, col[row].as_py(), reason, more=len(positions) - 1)


def with_master_case(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with its column names in the master's case where they differ only in
    case: Athena (Glue) lowercases every column name, so ``Tow`` comes back as ``tow``."""
    by_lower = {name.lower(): name for name in schema.names}
    if len(by_lower) != len(schema.names):  # names that differ only in case: leave them
        return table
    return table.rename_columns([by_lower.get(n.lower(), n) for n in table.column_names])
