"""A column's summary: its type, how many values are missing or distinct, the range of
numbers and times, the most common values of text. Computed in Arrow. Pure: no I/O."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from s3grid.display import say
from s3grid.schema import describe_type

__all__ = ["ColumnSummary", "summarize"]

TOP = 5  # the most common values listed for text, booleans and categories


@dataclass(frozen=True)
class ColumnSummary:
    """What :func:`summarize` found: each ``(label, value)`` pair in ``facts`` is one
    line of the summary, in order."""

    column: str
    facts: tuple[tuple[str, str], ...]


def summarize(name: str, values: pa.ChunkedArray | pa.Array) -> ColumnSummary:
    """Summarize one column: type, rows, empty cells (NaN apart from null), distinct
    values, then min/max (numbers, times) or the most common values (text, booleans,
    categories)."""
    type_ = values.type
    facts: list[tuple[str, str]] = [
        ("type", describe_type(type_)),
        ("rows", f"{len(values):,}"),
        ("empty", f"{values.null_count:,}"),
    ]
    if pa.types.is_floating(type_):
        nans = pc.sum(pc.is_nan(values)).as_py() or 0
        facts.append(("NaN", f"{nans:,}"))
    with contextlib.suppress(pa.ArrowNotImplementedError):  # lists, structs: no count
        facts.append(("distinct", f"{pc.count_distinct(values, mode='only_valid').as_py():,}"))
    numeric = pa.types.is_integer(type_) or pa.types.is_floating(type_)
    temporal = pa.types.is_temporal(type_) or pa.types.is_decimal(type_)
    if numeric or temporal:
        bounds = pc.min_max(values)
        facts += [("min", say(bounds["min"].as_py())), ("max", say(bounds["max"].as_py()))]
        if numeric:
            mean = pc.mean(values).as_py()
            facts.append(("mean", "" if mean is None else f"{mean:.6g}"))
    elif values.null_count < len(values):
        try:
            counts = pc.value_counts(values.drop_null() if hasattr(values, "drop_null") else values)
        except pa.ArrowNotImplementedError:
            counts = None
        if counts is not None:
            ranked = sorted(counts.to_pylist(), key=lambda c: (-c["counts"], str(c["values"])))[
                :TOP
            ]
            facts += [
                (f"#{i + 1}", f"{say(c['values'])} ({c['counts']:,})") for i, c in enumerate(ranked)
            ]
    return ColumnSummary(name, tuple(facts))
