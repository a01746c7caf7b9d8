"""Cell-by-cell comparison of Arrow columns where NaN equals NaN and differs from null
(Arrow's own ``equals`` says NaN != NaN)."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa


def cells(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """The column's values, with NaN as the string "NaN" so that lists compare it."""
    return ["NaN" if isinstance(v, float) and math.isnan(v) else v for v in column.to_pylist()]


def assert_same_table(got: pa.Table, expected: pa.Table) -> None:
    """Same schema, and every cell identical (NaN-aware, null-aware)."""
    assert got.schema == expected.schema, f"{got.schema}\n!=\n{expected.schema}"
    for name in expected.column_names:
        assert cells(got.column(name)) == cells(expected.column(name)), name
