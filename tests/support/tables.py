"""Tables that hold every kind of column Parquet can."""

from __future__ import annotations

import pyarrow as pa


def every_kind_of_column() -> pa.Table:
    import datetime as dt
    import decimal

    return pa.table(
        {
            "k": pa.array([1, 2, 3], pa.int32()),
            "u64": pa.array([2**64 - 1, None, 0], pa.uint64()),
            "f16": pa.array([1.5, None, float("nan")], pa.float16()),
            "f32": pa.array([3.4e38, None, float("nan")], pa.float32()),
            "text": pa.array(["a", None, ""], pa.large_string()),
            "ts_ms": pa.array([0, None, 253402300799000], pa.timestamp("ms")),
            "ts_tz": pa.array([1, None, 2], pa.timestamp("ns", "America/Chicago")),
            "d32": pa.array([1, None, -719162], pa.date32()),
            "dec": pa.array(
                [decimal.Decimal("1.10"), None, decimal.Decimal("-0.01")], pa.decimal128(10, 2)
            ),
            "cat": pa.array(["x", None, "y"]).dictionary_encode(),
            "t": pa.array([dt.time(1, 2, 3), None, dt.time(23, 59)], pa.time64("us")),
            "dur": pa.array([1, None, -5], pa.duration("ms")),
            "bin": pa.array([b"\xff\x00", None, b""], pa.binary()),
            "fsb": pa.array([b"ab", None, b"\x00\x01"], pa.binary(2)),
            "lst": pa.array([[1, 2], None, []], pa.list_(pa.int64())),
            "st": pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": None}]),
            "mp": pa.array([[("a", 1)], None, []], pa.map_(pa.string(), pa.int32())),
        }
    )
