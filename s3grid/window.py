"""The window over an editing session's working table: the rows a pandas filter matches,
in a column's stable sort order (missing values last), one page at a time.

Over the whole table only row positions are computed; a page's rows are the only ones
copied. :class:`RowOrder` keeps the last answer until an edit could change it, and
carries a sort order across row additions and deletions, so paging through (and editing)
a sorted 10M-row table does not sort it again. No I/O.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from s3grid.display import cell_text
from s3grid.errors import ValidationError
from s3grid.schema import coerce_value, describe_type

__all__ = [
    "PLACE_MAX",
    "RowOrder",
    "Window",
    "header_query",
    "matching",
    "page_of",
    "sorted_positions",
]


@dataclass(frozen=True)
class Window:
    """One page of the (filtered, sorted) working table, indexed by row id."""

    frame: pd.DataFrame
    page: int
    pages: int
    matching_rows: int


def page_of(df: pd.DataFrame, rows: np.ndarray | None, page: int, page_size: int) -> Window:
    """Page ``page`` (clamped) of ``df``'s rows at positions ``rows`` (None: every row,
    in order)."""
    matching_rows = len(df) if rows is None else len(rows)
    pages = max(1, -(-matching_rows // page_size))
    page = min(max(page, 0), pages - 1)
    start = page * page_size
    if rows is None:
        frame = df.iloc[start : start + page_size]
    else:
        frame = df.iloc[rows[start : start + page_size]]
    return Window(frame, page, pages, matching_rows)


class RowOrder:
    """The rows the last window matched, in order, kept for paging.

    Counters say when the kept answer is out of date: a filter may read any column, so
    after any change; a sort alone, after a change of the row set or of the sorted column.
    The session reports each change (:meth:`cell_changed`, :meth:`rows_changed`), and
    after a row change lets a kept sort order follow (:meth:`lost`, :meth:`took_in`).
    """

    def __init__(self) -> None:
        self._kept_rows: tuple[tuple[Any, ...], np.ndarray] | None = None
        self._changes = 0
        self._row_set_changes = 0
        self._column_changes: dict[str, int] = {}

    def cell_changed(self, column: str) -> None:
        """A value in ``column`` changed."""
        self._changes += 1
        self._column_changes[column] = self._column_changes.get(column, 0) + 1

    def rows_changed(self) -> None:
        """The working table is another one (other rows, or other values anywhere)."""
        self._changes += 1
        self._row_set_changes += 1

    def rows(
        self,
        df: pd.DataFrame,
        schema: pa.Schema,
        query: str,
        sort_by: str | None,
        ascending: bool,
    ) -> np.ndarray | None:
        """Positions in ``df`` of the rows matching ``query``, in ``sort_by`` order (stable,
        missing values last); None for every row in file order."""
        if not query and not sort_by:
            return None
        if sort_by and sort_by not in df.columns:
            raise ValidationError(f"Cannot sort by {sort_by!r}: no such column.")
        if sort_by and pa.types.is_nested(type_ := schema.field(sort_by).type):
            raise ValidationError(
                f"Cannot sort by {sort_by!r}: its values ({describe_type(type_)}) have no order."
            )
        key: tuple[Any, ...]
        if query:  # a filter may read any column
            key = ("filter", query, sort_by, ascending, self._changes)
        else:
            column_changes = self._column_changes.get(sort_by or "", 0)
            key = ("sort", sort_by, ascending, self._row_set_changes, column_changes)
        if self._kept_rows is None or self._kept_rows[0] != key:
            self._kept_rows = None  # let the old answer go first: it is one int per row
            rows = np.flatnonzero(matching(df, query)) if query else None
            if sort_by:  # only the matching rows are sorted
                column = df[sort_by] if rows is None else df[sort_by].iloc[rows]
                order = sorted_positions(column, ascending)
                rows = order if rows is None else rows[order]
            assert rows is not None
            self._kept_rows = (key, rows)
        return self._kept_rows[1]

    def lost(self, gone: np.ndarray) -> None:
        """The rows at positions ``gone`` (sorted) were deleted. A kept sort order holds
        for the rest, renumbered: a stable sort of fewer rows keeps their relative
        order, so a large master is not sorted again for one deleted row. A kept filter
        answer is not kept: a query may compare rows with each other, e.g.
        ``x > x.mean()``."""
        kept = self._carried_sort()
        if kept is None:
            return
        rows = kept[1][~np.isin(kept[1], gone)]
        rows -= np.searchsorted(gone, rows)
        self._carry_sort(kept, rows)

    def took_in(self, df: pd.DataFrame, added: np.ndarray) -> None:
        """Rows were inserted at positions ``added`` (sorted). A kept sort order takes
        them in where a stable sort would put them: two comparisons over the column per
        row instead of sorting it again. A kept filter answer is not kept, as in
        :meth:`lost`."""
        kept = self._carried_sort()
        if kept is None or len(added) > PLACE_MAX:
            return
        _, sort_by, ascending, *_ = kept[0]
        try:
            places = places_in_order(df[sort_by], added, ascending)
        except (TypeError, ValueError):
            # values pandas sorts but cannot compare one by one: sort again when asked
            # (this runs inside an edit, which must not fail for a shortcut)
            self._kept_rows = None
            return
        order = np.empty(len(df), dtype=np.intp)
        order[places] = added
        rest = np.ones(len(order), dtype=bool)
        rest[places] = False
        # Old position q moved up by the inserted rows that now sit before it.
        old = kept[1]
        order[rest] = old + np.searchsorted(added - np.arange(len(added)), old, side="right")
        self._carry_sort(kept, order)

    def _carried_sort(self) -> tuple[tuple[Any, ...], np.ndarray] | None:
        """The kept sort order, if it was up to date just before the row change just
        made. A filter answer is never carried, and neither is an order that an earlier
        change (Revert all, say) left out of date: renumbering it would revive it."""
        kept = self._kept_rows
        if kept is None or kept[0][0] != "sort" or kept[0][3] != self._row_set_changes - 1:
            return None
        return kept

    def _carry_sort(self, kept: tuple[tuple[Any, ...], np.ndarray], rows: np.ndarray) -> None:
        """Keep ``rows`` as the order of ``kept``'s sort over the current row set."""
        _, sort_by, ascending, _, column_changes = kept[0]
        key = ("sort", sort_by, ascending, self._row_set_changes, column_changes)
        self._kept_rows = (key, rows)


# Rows placed into a kept sort one at a time; for more, sort again. Placing one row is
# a binary search and an insert, a small fraction of a full sort (docs/performance.md),
# so a few rows stay well under it.
PLACE_MAX = 8


def places_in_order(column: pd.Series, rows: np.ndarray, ascending: bool) -> np.ndarray:
    """Where the rows at positions ``rows`` of ``column`` stand in its stable sort (missing
    values last), as ``sort_values(kind="stable")`` would place them: each one's place is
    the number of rows before it, that is rows with a lesser value (greater when
    descending), or with an equal value at an earlier position."""
    missing = column.isna().to_numpy()
    present = int(len(column) - missing.sum())
    places = []
    for position in rows.tolist():
        if missing[position]:
            places.append(present + int(missing[:position].sum()))
            continue
        value = column.iloc[position]
        before = column < value if ascending else column > value
        tied = column.iloc[:position] == value
        places.append(_count(before) + _count(tied))
    return np.array(places, dtype=np.intp)


def _count(mask: pd.Series) -> int:
    """How many are true (missing counts as false)."""
    return int(mask.to_numpy(dtype=bool, na_value=False).sum())


# Names a filter may use with ``@``: a decimal column compares exactly with
# ``@decimal('2.50')`` (pandas has no decimal literal, and 0.1 as a float is not 0.10).
QUERY_NAMES: dict[str, Any] = {"decimal": decimal.Decimal}


def matching(frame: pd.DataFrame, query: str) -> np.ndarray:
    """A boolean per row of ``frame``: does it match the pandas query (missing: no)?
    The query may use :data:`QUERY_NAMES` (``@decimal('2.50')``).

    Raises:
        ValidationError: the query is not valid for ``frame``, or is not true/false per row.
    """
    try:
        mask = frame.eval(query, local_dict=QUERY_NAMES)
    except Exception as exc:  # pandas raises many types for a bad expression
        raise ValidationError(
            f"Filter {query!r} is not valid: {exc}. Use pandas query syntax, e.g. "
            "tow == 4 and net > 0, or vessel.str.contains('Point')."
        ) from exc
    if not isinstance(mask, pd.Series) or mask.dtype.kind != "b":
        raise ValidationError(f"Filter {query!r} must give true/false per row, e.g. tow == 4.")
    result: np.ndarray = mask.fillna(False).to_numpy(dtype=bool)
    return result


def sorted_positions(column: pd.Series, ascending: bool) -> np.ndarray:
    """Positions of ``column``'s values in sorted order: stable, missing values last, as
    ``DataFrame.sort_values`` orders rows (but one column is sorted, not every column)."""
    by_position = column.reset_index(drop=True)
    order: np.ndarray = by_position.sort_values(ascending=ascending, kind="stable").index.to_numpy()
    return order


_COMPARISONS = {"=": "==", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">="}
_TEXT_TESTS = {
    "contains": "{col}.str.contains({value}, regex=False)",
    "!contains": "~{col}.str.contains({value}, regex=False)",
    "startswith": "{col}.str.startswith({value})",
    "endswith": "{col}.str.endswith({value})",
}


def header_query(transform: dict[str, Any], field: pa.Field) -> str:
    """The kernel filter (a pandas query, as the Filter box takes) for a filter that the
    grid's header menu asked for (ipydatagrid's transform: ``operator``, ``value``).
    Values are read as the column's type, so "4" filters an int column by 4.

    Raises:
        ValidationError: an operator that does not apply to the column, or a value that
            is not of its type.
    """
    col = f"`{field.name}`"
    op = str(transform.get("operator", ""))
    value = transform.get("value")

    def literal(text: Any) -> str:
        typed = coerce_value(text, field)
        if typed is None:
            return "None"
        if pa.types.is_temporal(field.type):
            return repr(cell_text(typed))  # pandas compares datetimes with ISO text
        if pa.types.is_decimal(field.type):
            return f"@decimal({str(typed)!r})"
        return repr(typed)

    if op == "empty":
        return f"{col}.isna()"
    if op == "notempty":
        return f"{col}.notna()"
    if op in _COMPARISONS:
        if value in (None, ""):
            return f"{col}.isna()" if op == "=" else f"{col}.notna()"
        return f"{col} {_COMPARISONS[op]} {literal(value)}"
    if op == "between" and isinstance(value, list | tuple) and len(value) == 2:
        return f"({col} >= {literal(value[0])}) and ({col} <= {literal(value[1])})"
    if op == "in" and isinstance(value, list | tuple):
        present = [v for v in value if v not in (None, "")]
        parts = [f"{col} in [{', '.join(literal(v) for v in present)}]"] if present else []
        if len(present) < len(value):
            parts.append(f"{col}.isna()")
        return " or ".join(parts) if parts else "False"
    if op in _TEXT_TESTS and pa.types.is_string(field.type):
        return _TEXT_TESTS[op].format(col=col, value=repr(str(value)))
    raise ValidationError(
        f"The header menu's {op!r} filter does not apply to {field.name!r} "
        f"({describe_type(field.type)}); type a filter in the Filter box instead, e.g. "
        f"{field.name} > 0."
    )
