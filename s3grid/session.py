"""An editing session: pending edits on top of one loaded version of the master.

Pure state, no S3 and no widgets: the editor feeds it cell edits, row additions and
deletions, and asks it for the window to show, the changes to review, the duplicates
to block on, and the table to save. Every row has a stable *row id* (its position in the
loaded version; added rows get new ids), so sorting, filtering and paging never make an
edit land on the wrong row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from s3grid.diff import (
    CellChange,
    Key,
    TableDiff,
    keys_unique,
    py_value,
    row_sources,
    same_values,
    values_equal,
)
from s3grid.display import row_label
from s3grid.errors import S3GridError, SchemaError, ValidationError
from s3grid.model import Master
from s3grid.rowsplice import insert_by_id, without_rows
from s3grid.schema import (
    coerce_series,
    coerce_table,
    coerce_value,
    contiguous,
    describe_type,
    editable,
    put_nans,
    refused_at,
    to_pandas,
    viewable,
)
from s3grid.window import RowOrder, Window, page_of

__all__ = ["ROW_ID", "BlockResult", "EditSession", "Refusal", "Window"]  # Window: s3grid.window

_UNSEEN = object()  # a value not checked yet

ROW_ID = "row"


@dataclass(frozen=True)
class _SetCell:
    row_id: int
    column: str
    old: Any
    new: Any


@dataclass(frozen=True)
class _AddRows:
    rows: pd.DataFrame  # indexed by row id


@dataclass(frozen=True)
class _DeleteRows:
    rows: pd.DataFrame  # indexed by row id, as they were before deletion


@dataclass(frozen=True)
class _State:
    """Every pending edit at one moment: what Revert all leaves, and what its undo
    puts back."""

    df: pd.DataFrame
    dirty: dict[tuple[int, str], Any]
    cell_nan: dict[str, dict[int, bool]]
    added: frozenset[int]
    deleted: frozenset[int]


@dataclass(frozen=True)
class _Replace:
    old: _State
    new: _State


@dataclass(frozen=True)
class _SetCells:
    """Cells of one column set at once (part of a :class:`_Batch`)."""

    column: str
    row_ids: tuple[int, ...]
    old: tuple[Any, ...]
    new: tuple[Any, ...]


@dataclass(frozen=True)
class _Batch:
    """Several edits made by one action (a paste, a fill): one undo step."""

    ops: tuple[_Step, ...]


_Step = _SetCells | _AddRows | _DeleteRows
_Op = _SetCell | _AddRows | _DeleteRows | _Replace | _Batch | _SetCells


@dataclass(frozen=True)
class Refusal:
    """A value a block edit (paste, fill) did not store, and why."""

    row: str  # the row's label (its key, or "new row")
    column: str
    value: Any
    reason: str


@dataclass(frozen=True)
class BlockResult:
    """What a block edit did: cells changed, rows added, values refused."""

    changed: int
    added: tuple[int, ...]
    refused: tuple[Refusal, ...]


class EditSession:
    """Pending edits over one loaded :class:`~s3grid.model.Master`.

    Args:
        master: the loaded version (the base of every edit).
        key_columns: columns that must stay unique (may be empty).
        read_only_columns: columns that cannot be edited.
        keys_verified: the master's keys are known to be unique (it is the table a save
            just validated), so the first duplicate check is skipped.

    Attributes:
        new_categories: a value that is not yet a category of a categorical (dictionary)
            column is added to its categories; False (the default) refuses it, so a
            typo cannot start a new category.
    """

    new_categories: bool = False

    def __init__(
        self,
        master: Master,
        *,
        key_columns: Sequence[str] = (),
        read_only_columns: Iterable[str] = (),
        keys_verified: bool = False,
    ) -> None:
        # One chunk per column that pandas can view, so that the base below shares the
        # table's memory. Other columns are converted anyway: joining their chunks would be
        # a copy for nothing, and a slow one for long string columns.
        viewed = [f.name for f in master.schema if viewable(f.type)]
        self.master = replace(master, table=contiguous(master.table, columns=viewed))
        self.schema: pa.Schema = master.schema
        self.key_columns = tuple(key_columns)
        asked = frozenset(read_only_columns)
        unknown = sorted(asked - set(self.schema.names))
        if unknown:
            raise ValidationError(f"Read-only column(s) {unknown} are not in the master.")
        # Columns of a type no text parses into exactly (lists, binary...) are shown only.
        self.read_only_columns = asked | {f.name for f in self.schema if not editable(f.type)}
        # The base shares the table's memory where Arrow allows (a 10M-row master is
        # held once, not twice). It is never written: edits go to ``df``, a shallow copy,
        # and pandas' copy-on-write copies just the column an edit touches.
        self.base = to_pandas(self.master.table, share_buffers=True)
        self.base.index = pd.RangeIndex(len(self.base), name=ROW_ID)
        self.df = self.base.copy(deep=False)
        self._next_id = len(self.base)
        self._added: set[int] = set()
        self._deleted: set[int] = set()
        # cached: keys change rarely, and a full check holds memory for every key.
        self._dups: dict[Key, list[int]] | None = {} if keys_verified else None
        self._undo: list[_Op] = []
        self._redo: list[_Op] = []
        self._stepped: _Op | None = None  # the op the last undo/redo applied
        self._dirty: dict[tuple[int, str], Any] = {}  # (row id, column) -> base value
        # pandas shows NaN and null alike in a float column; Arrow keeps them apart. The
        # master's NaN cells, per float column that has any, and each edited float cell's
        # kind since (True: NaN), say which missing cells are NaN.
        self._base_nan: dict[str, np.ndarray] = {
            f.name: nan
            for f in self.schema
            if pa.types.is_floating(f.type)
            and (nan := _nan_mask(self.master.table.column(f.name))).any()
        }
        self._cell_nan: dict[str, dict[int, bool]] = {}  # column -> row id -> NaN?
        self._exported: pd.DataFrame | None = None  # see to_table
        self._order = RowOrder()  # the rows the last window matched, kept for paging

    # ----------------------------------------------------------------- queries

    @property
    def columns(self) -> list[str]:
        """The master's columns, in order."""
        return list(self.schema.names)

    @property
    def added_ids(self) -> list[int]:
        """Row ids of rows added in this session and still present."""
        return sorted(self._added)

    @property
    def deleted_ids(self) -> list[int]:
        """Row ids of loaded rows deleted in this session."""
        return sorted(self._deleted)

    @property
    def pending(self) -> int:
        """How many changes are pending: edited cells + added rows + deleted rows."""
        return len(self._live_dirty()) + len(self._added) + len(self._deleted)

    @property
    def can_undo(self) -> bool:
        """Whether there is an edit to undo."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """Whether there is an undone edit to redo."""
        return bool(self._redo)

    def _live_dirty(self) -> dict[tuple[int, str], Any]:
        if not self._deleted:
            return self._dirty
        return {k: v for k, v in self._dirty.items() if k[0] not in self._deleted}

    def edited_columns(self) -> dict[int, list[str]]:
        """The edited cells of loaded rows: row id -> its edited columns, in the
        master's order."""
        order = {name: i for i, name in enumerate(self.schema.names)}
        out: dict[int, list[str]] = {}
        for rid, column in self._live_dirty():
            out.setdefault(rid, []).append(column)
        return {rid: sorted(cols, key=order.__getitem__) for rid, cols in out.items()}

    def edited_ids(self) -> set[int]:
        """Ids of loaded rows with an edited cell (added rows count as new instead)."""
        return {rid for rid, _ in self._live_dirty()}

    def label(self, row_id: int) -> str:
        """The row named by its key, as messages name it: ``tow 4 · net 1`` (``row
        <id>`` without key columns or for a row that is gone)."""
        if not self.key_columns or row_id not in self.df.index:
            return f"row {row_id}"
        return row_label(self.key_columns, self.key_of(row_id), row_id)

    def labels(self, row_ids: Sequence[int]) -> list[str]:
        """:meth:`label` of many rows, with one lookup of their keys."""
        if not self.key_columns:
            return [self.label(rid) for rid in row_ids]
        here = [rid for rid in row_ids if rid in self.df.index]
        keys = self.df.loc[here, list(self.key_columns)].astype(object)
        found = {
            int(rid): row_label(self.key_columns, tuple(py_value(v) for v in values), rid)
            for rid, values in zip(here, keys.itertuples(index=False), strict=True)
        }
        return [found.get(int(rid)) or self.label(rid) for rid in row_ids]

    def value(self, row_id: int, column: str) -> Any:
        """The current value of one cell, as a plain Python value (None for missing,
        ``nan`` for a float NaN)."""
        value = py_value(self.df.at[row_id, column])
        if value is None and self.is_nan(row_id, column):
            return math.nan
        return value

    def is_nan(self, row_id: int, column: str) -> bool:
        """Whether a missing-looking float cell holds NaN (not null)."""
        known = self._cell_nan.get(column, {}).get(row_id)
        if known is not None:
            return known
        base = self._base_nan.get(column)
        return base is not None and row_id < len(base) and bool(base[row_id])

    def nan_mask(self, row_ids: Sequence[int] | np.ndarray, column: str) -> np.ndarray:
        """:meth:`is_nan` for many rows of one column."""
        ids = np.asarray(row_ids, dtype=np.int64)
        out = np.zeros(len(ids), dtype=bool)
        base = self._base_nan.get(column)
        if base is not None:
            inside = ids < len(base)
            out[inside] = base[ids[inside]]
        edited = self._cell_nan.get(column)
        if edited and len(ids):
            keys = np.fromiter(edited, dtype=np.int64, count=len(edited))
            kinds = np.fromiter(edited.values(), dtype=bool, count=len(edited))
            if bool(np.all(ids[1:] >= ids[:-1])):  # the working frame is in row-id order
                at = np.minimum(np.searchsorted(ids, keys), len(ids) - 1)
                found = ids[at] == keys
            else:
                at = pd.Index(ids).get_indexer(pd.Index(keys))
                found = at >= 0
            out[at[found]] = kinds[found]
        return out

    def key_of(self, row_id: int) -> Key:
        """The row's key values (or ``(row_id,)`` when there are no key columns)."""
        if not self.key_columns:
            return (int(row_id),)
        frame = self.df if row_id in self.df.index else self.base
        return tuple(py_value(frame.at[row_id, k]) for k in self.key_columns)

    def changes(self) -> TableDiff:
        """The pending changes: edited cells (old -> new), added and deleted rows."""
        cells = tuple(
            CellChange(self.key_of(rid), col, old, self.value(rid, col))
            for (rid, col), old in sorted(self._live_dirty().items(), key=lambda kv: kv[0])
        )
        added = tuple(self.key_of(rid) for rid in self.added_ids)
        deleted = tuple(
            tuple(py_value(self.base.at[rid, k]) for k in self.key_columns)
            if self.key_columns
            else (rid,)
            for rid in self.deleted_ids
        )
        return TableDiff(self.key_columns, cells, added, deleted)

    def duplicates(self) -> dict[Key, list[int]]:
        """Key values held by more than one row, with those rows' ids.

        One vectorised pass (no Python object per row), cached until a key cell or a row
        addition changes the keys. A deletion can only end duplicates, so it looks again
        only when there were some.
        """
        if self._dups is None:
            self._dups = self._find_duplicates()
        return self._dups

    def _find_duplicates(self) -> dict[Key, list[int]]:
        if not self.key_columns:
            return {}
        keys = self.df[list(self.key_columns)]
        # The common answer, "none", from a sort in Arrow: lighter than pandas' hashing
        # of every key column, whose memory the allocator keeps. Empty keys and float
        # keys (None from keys_unique) take the pandas path below.
        if not keys.isna().to_numpy().any() and _unique_in_arrow(keys):
            return {}
        mask = keys.duplicated(keep=False).to_numpy()
        if not mask.any():
            return {}
        dups = keys[mask]
        groups = dups.groupby(list(self.key_columns), sort=True, dropna=False).groups
        return {
            tuple(py_value(v) for v in (k if isinstance(k, tuple) else (k,))): [int(i) for i in ids]
            for k, ids in groups.items()
        }

    def window(
        self,
        *,
        query: str = "",
        sort_by: str | None = None,
        ascending: bool = True,
        page: int = 0,
        page_size: int = 500,
    ) -> Window:
        """The rows to show: filtered by a pandas query, sorted, one page.

        Over the whole table only row positions are computed; the page's rows are the
        only ones copied. The filter's answer and the sort order are kept until an edit
        could change them, so paging through a sorted 10M-row table does not sort again.

        Raises:
            ValidationError: the filter is not a valid pandas query of this table, or
                ``sort_by`` is not a column.
        """
        rows = self._order.rows(self.df, self.schema, query.strip(), sort_by or None, ascending)
        return page_of(self.df, rows, page, page_size)

    def window_ids(
        self, *, query: str = "", sort_by: str | None = None, ascending: bool = True
    ) -> np.ndarray:
        """The row ids of the whole window (every page), in the order it shows them."""
        rows = self._order.rows(self.df, self.schema, query.strip(), sort_by or None, ascending)
        ids: np.ndarray = self.df.index.to_numpy()
        return ids if rows is None else ids[rows]

    def column(self, name: str) -> pa.ChunkedArray:
        """One column of the working table in the master's type (NaN kept apart from
        null): the loaded version's own while nothing is pending."""
        if not self.pending:
            return self.master.table.column(name)
        return self.to_table().column(name)

    def to_table(self) -> pa.Table:
        """The working table in the master's schema, ready for ``MasterStore.save``.

        Raises:
            SchemaError: a value does not fit (cannot happen for edits made through
                :meth:`set_cell`, which are coerced when made).
        """
        frame = self.df.reset_index(drop=True)
        table = coerce_table(frame, self.schema)
        table = self._with_nans(table, self.df.index.to_numpy())
        # Arrow wraps numeric columns of ``frame`` without copying, and ``frame`` shares
        # them with ``df``. Kept alive, it makes pandas' copy-on-write copy a column
        # before the next edit writes to it; dropped, that edit would write straight
        # into this (immutable) table, which the editor keeps as the version it saved
        # (the base a lost update's merge goes onto).
        self._exported = frame
        return table

    def _mark_nan(self, row_id: int, column: str, nan: bool) -> None:
        """Record whether an edited float cell holds NaN (True) or null/a number."""
        self._cell_nan.setdefault(column, {})[row_id] = nan

    def _float_nans(self, table: pa.Table) -> dict[str, np.ndarray]:
        """The NaN cells of each float column of ``table`` that has any."""
        return {
            f.name: nan
            for f in self.schema
            if pa.types.is_floating(f.type) and (nan := _nan_mask(table.column(f.name))).any()
        }

    def _with_nans(self, table: pa.Table, row_ids: np.ndarray) -> pa.Table:
        """``table`` (rows ``row_ids`` of the working frame) with NaN where it belongs."""
        float_columns = set(self._base_nan) | set(self._cell_nan)
        for name in sorted(float_columns):
            table = put_nans(table, name, self.nan_mask(row_ids, name))
        return table

    # ------------------------------------------------------------------- edits

    def is_read_only(self, row_id: int, column: str) -> bool:
        """Whether a cell cannot be edited: a read-only column protects the loaded rows'
        values, so a row added in this session takes a value there (unless s3grid does
        not edit the column's type at all)."""
        if column not in self.read_only_columns:
            return False
        return row_id not in self._added or not editable(self.schema.field(column).type)

    def _check_editable(self, row_id: int, column: str) -> pa.Field:
        if column not in self.schema.names:
            raise ValidationError(f"No column {column!r} in the master.")
        if row_id not in self.df.index:
            raise ValidationError(f"Row {row_id} is not in the table (deleted?).")
        if self.is_read_only(row_id, column):
            type_ = self.schema.field(column).type
            why = "" if editable(type_) else f" (s3grid does not edit {describe_type(type_)} cells)"
            new = " (rows you add take a value there)" if editable(type_) else ""
            raise ValidationError(
                f"Column {column!r} is read-only{why}{new}; the edit was not kept."
            )
        field: pa.Field = self.schema.field(column)
        return field

    def set_cell(self, row_id: int, column: str, value: Any) -> Any:
        """Edit one cell; returns the value as stored (after coercion).

        Raises:
            SchemaError: the value cannot be stored in the column (names row, column,
                value and expected type); nothing changes.
            ValidationError: the column is read-only or unknown, or the row is gone.
        """
        field = self._check_editable(row_id, column)
        new = coerce_value(value, field, row=self.label(row_id))
        self._take_category(column, new, row=self.label(row_id))
        old = self.value(row_id, column)
        if same_cell(old, new):
            return new
        self._apply(_SetCell(row_id, column, old, new))
        self._undo.append(_SetCell(row_id, column, old, new))
        self._redo.clear()
        return new

    def set_cells(
        self,
        cells: Iterable[tuple[int, str, Any]],
        *,
        new_rows: Sequence[Mapping[str, Any]] = (),
    ) -> BlockResult:
        """Edit many cells as one step (a paste, a fill down): each value is checked as a
        typed edit is; refused ones are listed, the rest applied, and one :meth:`undo`
        takes them all back (the added rows too).

        Args:
            cells: ``(row id, column, value)`` of existing rows.
            new_rows: values of rows to append (each appended empty, then its values set
                and checked like the others).
        """
        ops: list[_Step] = []
        added = []
        wanted = list(cells)
        for row_values in new_rows:
            adding = self._new_row({})
            self._apply(adding)
            ops.append(adding)
            rid = int(adding.rows.index[0])
            added.append(rid)
            wanted.extend((rid, column, value) for column, value in row_values.items())
        refused: list[Refusal] = []
        given: dict[str, dict[int, Any]] = {}
        for rid, column, value in wanted:
            try:
                self._check_editable(rid, column)
            except S3GridError as exc:
                label = self.label(rid) if rid in self.df.index else f"row {rid}"
                refused.append(Refusal(label, column, value, str(exc)))
            else:
                given.setdefault(column, {})[rid] = value
        changed = 0
        for column, asked in given.items():
            stored = self._coerce_many(column, asked, refused)
            for rid in [r for r, v in stored.items() if not self._is_category(column, v)]:
                label = self.label(rid)
                try:
                    self._take_category(column, stored[rid], row=label)
                except S3GridError as exc:
                    refused.append(Refusal(label, column, asked[rid], str(exc)))
                    del stored[rid]
            ids = list(stored)
            olds = self._values(ids, column)
            keep = [i for i, rid in enumerate(ids) if not same_cell(olds[i], stored[rid])]
            if keep:
                setting = _SetCells(
                    column,
                    tuple(ids[i] for i in keep),
                    tuple(olds[i] for i in keep),
                    tuple(stored[ids[i]] for i in keep),
                )
                self._apply(setting)
                ops.append(setting)
                changed += len(keep)
        if ops:
            self._undo.append(_Batch(tuple(ops)))
            self._redo.clear()
        return BlockResult(changed, tuple(added), tuple(refused))

    def _is_category(self, column: str, value: Any) -> bool:
        """Whether ``value`` may be stored in ``column`` as it is (a known category, an
        empty cell, or any value of a column that is not categorical)."""
        dtype = self.df[column].dtype
        if not isinstance(dtype, pd.CategoricalDtype) or value is None:
            return True
        return bool(value in dtype.categories)

    def _take_category(self, column: str, value: Any, *, row: str) -> None:
        """Make ``value`` storable in a categorical column: added to its categories with
        :attr:`new_categories`, else refused.

        Raises:
            SchemaError: a new category, and new ones are not allowed.
        """
        if self._is_category(column, value):
            return
        categories = list(self.df[column].cat.categories)
        if not self.new_categories:
            known = ", ".join(map(repr, categories[:8])) + (" …" if len(categories) > 8 else "")
            raise SchemaError(
                f"{row}, column {column!r}: {value!r} is not one of its categories ({known}). "
                "Pick one of them; to start a new category, allow it "
                "(Editor(..., new_categories=True)).",
                row=row,
                column=column,
                value=value,
                expected="one of the column's categories",
            )
        self.df[column] = self.df[column].cat.add_categories([value])

    def _coerce_many(
        self, column: str, values: Mapping[int, Any], refused: list[Refusal]
    ) -> dict[int, Any]:
        """Coerce many values of one column at once (by row id); values that cannot be
        stored go to ``refused`` and are left out. A float NaN given is meant, as in
        :func:`coerce_value`."""
        field = self.schema.field(column)
        try:
            series = pd.Series(list(values.values()), index=list(values), dtype=object)
            stored = coerce_series(series, field).to_pylist()
        except S3GridError:
            pass  # one bad value or more: each on its own, to name them
        else:
            if pa.types.is_floating(field.type):
                stored = [
                    math.nan if _is_nan(given) else value
                    for given, value in zip(values.values(), stored, strict=True)
                ]
            return dict(zip(values, stored, strict=True))
        # Each distinct value is checked once: a pasted block often repeats one.
        out = {}
        outcomes: dict[Any, Any] = {}  # (type, value) -> the stored value or the error
        bad: list[tuple[int, Any, S3GridError]] = []
        for rid, value in values.items():
            try:
                seen = (type(value), value)
                outcome = outcomes.get(seen, _UNSEEN)
            except TypeError:  # unhashable: checked on its own
                seen, outcome = None, _UNSEEN
            if outcome is _UNSEEN:
                try:
                    outcome = coerce_value(value, field)
                except S3GridError as exc:
                    outcome = exc
                if seen is not None:
                    outcomes[seen] = outcome
            if isinstance(outcome, S3GridError):
                bad.append((rid, value, outcome))
            else:
                out[rid] = outcome
        for (_, value, error), label in zip(bad, self.labels([b[0] for b in bad]), strict=True):
            if isinstance(error, SchemaError):
                error = refused_at(error, label, field)
            refused.append(Refusal(label, column, value, str(error)))
        return out

    def _values(self, row_ids: Sequence[int], column: str) -> list[Any]:
        """:meth:`value` of many cells of one column."""
        raw = self.df.loc[list(row_ids), column].tolist()
        nan = self.nan_mask(row_ids, column)
        return [
            math.nan if (value := py_value(v)) is None and is_nan else value
            for v, is_nan in zip(raw, nan, strict=True)
        ]

    def add_row(self, values: Mapping[str, Any] | None = None) -> int:
        """Append a row (missing values are empty); returns its row id.

        Raises:
            SchemaError: a given value does not fit its column.
        """
        op = self._new_row(values or {})
        self._apply(op)
        self._undo.append(op)
        self._redo.clear()
        return int(op.rows.index[0])

    def _new_row(self, values: Mapping[str, Any]) -> _AddRows:
        """The step that appends one row holding ``values`` (coerced; others empty)."""
        values = dict(values)
        unknown = sorted(set(values) - set(self.schema.names))
        if unknown:
            raise ValidationError(f"Unknown column(s) {unknown}.")
        for name, given in values.items():
            self._take_category(name, coerce_value(given, self.schema.field(name)), row="new row")
        row_id = self._next_id
        columns = {
            f.name: coerce_series(pd.Series([values.get(f.name)], index=[row_id], dtype=object), f)
            for f in self.schema
        }
        for name, given in values.items():
            field = self.schema.field(name)
            if pa.types.is_floating(field.type):
                self._mark_nan(row_id, name, _is_nan(coerce_value(given, field)))
        row = to_pandas(pa.table(columns, schema=self.schema))
        self._next_id += 1
        row.index = pd.Index([row_id], name=ROW_ID)
        return _AddRows(row)

    def delete_rows(self, row_ids: Iterable[int]) -> int:
        """Delete rows by id; returns how many were deleted."""
        ids = sorted({int(r) for r in row_ids if int(r) in self.df.index})
        if not ids:
            return 0
        op = _DeleteRows(self.df.loc[ids].copy())
        self._apply(op)
        self._undo.append(op)
        self._redo.clear()
        return len(ids)

    def undo(self) -> bool:
        """Undo the last edit; False when there is nothing to undo."""
        if not self._undo:
            return False
        op = self._undo.pop()
        self._step(_inverse(op))
        self._redo.append(op)
        self._stepped = op
        return True

    def redo(self) -> bool:
        """Redo the last undone edit; False when there is nothing to redo."""
        if not self._redo:
            return False
        op = self._redo.pop()
        self._step(op)
        self._undo.append(op)
        self._stepped = op
        return True

    def _step(self, op: _Op) -> None:
        """Apply an undo or redo step: the categories its values need first (an undo may
        have dropped one this session had added), unused new ones after."""
        for column, values in _stored_values(op):
            dtype = self.df[column].dtype
            if isinstance(dtype, pd.CategoricalDtype):
                wanted = pd.Index(values).dropna().unique()
                missing = wanted.difference(dtype.categories)
                if len(missing):
                    self.df[column] = self.df[column].cat.add_categories(missing)
        self._apply(op)
        self._drop_unused_new_categories()

    def _drop_unused_new_categories(self) -> None:
        """Forget categories this session added that no cell holds any more, so that
        the dropdown no longer offers one whose edit was undone. (A saved dictionary
        holds only the values in use anyway.)"""
        for column in self.df.columns:
            dtype = self.df[column].dtype
            if not isinstance(dtype, pd.CategoricalDtype):
                continue
            loaded = self.base[column].dtype
            known: Any = loaded.categories if isinstance(loaded, pd.CategoricalDtype) else []
            added = dtype.categories.difference(known)
            if len(added) == 0:
                continue
            codes = np.unique(self.df[column].cat.codes.to_numpy())
            unused = added.difference(dtype.categories[codes[codes >= 0]])  # -1: empty
            if len(unused):
                self.df[column] = self.df[column].cat.remove_categories(unused)

    @property
    def last_step_cell(self) -> tuple[int, str] | None:
        """``(row id, column)`` of the one cell the last undo/redo changed; None when it
        added or deleted rows (or nothing was undone yet)."""
        op = self._stepped
        return (op.row_id, op.column) if isinstance(op, _SetCell) else None

    def revert_all(self) -> int:
        """Drop every pending edit, as one step that :meth:`undo` takes back; returns how
        many changes were dropped (0: nothing was pending, nothing changes)."""
        dropped = self.pending
        if not dropped:
            return 0
        empty = _State(self.base.copy(deep=False), {}, {}, frozenset(), frozenset())
        op = _Replace(self._state(), empty)
        self._apply(op)
        self._undo.append(op)
        self._redo.clear()
        return dropped

    def _state(self) -> _State:
        # shallow copies suffice: with copy-on-write an edit never writes into them
        return _State(
            self.df.copy(deep=False),
            dict(self._dirty),
            {column: dict(cells) for column, cells in self._cell_nan.items()},
            frozenset(self._added),
            frozenset(self._deleted),
        )

    def _replace_rows(self, df: pd.DataFrame) -> None:
        """Make ``df`` the working table (other rows, or other values anywhere)."""
        self.df = df
        self._order.rows_changed()

    def _positions(self, row_ids: pd.Index) -> np.ndarray:
        """Positions in ``df`` of rows that are in it, sorted. ``df`` is in row-id order, so
        a binary search finds them (``get_indexer`` hashed the whole index: 10M ids)."""
        ids = np.sort(row_ids.to_numpy())
        positions: np.ndarray = np.searchsorted(self.df.index.to_numpy(), ids)
        return positions

    def _apply(self, op: _Op) -> None:
        n_base = len(self.base)
        if isinstance(op, _Batch):
            for step in op.ops:
                self._apply(step)
            return
        if isinstance(op, _SetCells):
            self._set_column_cells(op, n_base)
            return
        if isinstance(op, _Replace):
            new = op.new
            self._replace_rows(new.df.copy(deep=False))
            self._dirty = dict(new.dirty)
            self._cell_nan = {column: dict(cells) for column, cells in new.cell_nan.items()}
            self._added, self._deleted = set(new.added), set(new.deleted)
            self._dups = None
            return
        if isinstance(op, _SetCell):
            self.df.loc[op.row_id, op.column] = _missing(self.df[op.column], op.new)
            if pa.types.is_floating(self.schema.field(op.column).type):
                self._mark_nan(op.row_id, op.column, _is_nan(op.new))
            self._order.cell_changed(op.column)
            if op.column in self.key_columns:
                self._dups = None
            if op.row_id < n_base:
                key = (op.row_id, op.column)
                original = self._dirty.pop(key, op.old)
                if not same_cell(original, op.new):
                    self._dirty[key] = original
            return
        if isinstance(op, _AddRows):
            self._dups = None  # an added or put-back row may repeat a key
            rows = op.rows.astype(self.df.dtypes.to_dict()).sort_index()
            self._replace_rows(insert_by_id(self.df, rows))
            self._order.took_in(self.df, self._positions(rows.index))
            for rid in map(int, op.rows.index):
                if rid >= n_base:
                    self._added.add(rid)
                else:  # undoing a deletion
                    self._deleted.discard(rid)
        else:
            if self._dups:  # a deletion can end duplicates, never start one: none stay none
                self._dups = None
            gone = self._positions(op.rows.index)
            self._replace_rows(without_rows(self.df, gone))
            self._order.lost(gone)
            for rid in map(int, op.rows.index):
                if rid >= n_base:
                    self._added.discard(rid)
                else:  # its cell edits stay recorded, for an undo of the deletion
                    self._deleted.add(rid)

    def _set_column_cells(self, op: _SetCells, n_base: int) -> None:
        """Apply a :class:`_SetCells`: one assignment into the column, then each cell's
        bookkeeping (its NaN kind, whether it differs from the loaded value)."""
        column = self.df[op.column]
        values = pd.array([_missing(column, v) for v in op.new], dtype=column.dtype)  # type: ignore[arg-type]
        self.df.loc[list(op.row_ids), op.column] = values
        if pa.types.is_floating(self.schema.field(op.column).type):
            for rid, new in zip(op.row_ids, op.new, strict=True):
                self._mark_nan(rid, op.column, _is_nan(new))
        self._order.cell_changed(op.column)
        if op.column in self.key_columns:
            self._dups = None
        for rid, old, new in zip(op.row_ids, op.old, op.new, strict=True):
            if rid < n_base:
                key = (rid, op.column)
                original = self._dirty.pop(key, old)
                if not same_cell(original, new):
                    self._dirty[key] = original

    # ---------------------------------------------------------------- rebasing

    @classmethod
    def from_content(
        cls,
        master: Master,
        table: pa.Table,
        *,
        key_columns: Sequence[str] = (),
        read_only_columns: Iterable[str] = (),
    ) -> EditSession:
        """A session on ``master`` whose pending edits turn it into ``table``.

        Used after a three-way merge: the merged content becomes pending edits on top
        of the current master, to review and save against it. Undo history starts empty.
        """
        session = cls(master, key_columns=key_columns, read_only_columns=read_only_columns)
        base, content = session.master.table, coerce_table(table, session.schema)
        # Only what differs is copied: the working frame starts as the session's, which
        # shares the master's memory, and takes the content's deleted rows, changed cells
        # and new rows, rather than converting the whole content to pandas to keep a few
        # edits. Rows are matched and compared in Arrow.
        sources = row_sources(base, content, session.key_columns)
        kept_at = np.flatnonzero(sources >= 0)  # positions in the content
        kept_ids = sources[kept_at]  # the same rows' ids (positions in the master)
        new_at = np.flatnonzero(sources < 0)
        n = len(kept_at)
        in_place = n == 0 or (kept_at[-1] == n - 1 and bool(np.array_equal(kept_ids, np.arange(n))))
        present = np.zeros(base.num_rows, dtype=bool)
        present[kept_ids] = True
        gone = np.flatnonzero(~present)
        df = without_rows(session.df, gone)
        for col in session.columns:
            old, new = base.column(col), content.column(col)
            if in_place:  # the master's first rows, in order: compare them where they are
                old, new = old.slice(0, n), new.slice(0, n)
            else:
                old, new = old.take(pa.array(kept_ids)), new.take(pa.array(kept_at))
            changed = np.flatnonzero(~same_values(old, new))
            if not len(changed):
                continue
            ids = kept_ids[changed]
            values = to_pandas(pa.table({col: new.take(pa.array(changed))}))[col]
            df.loc[ids, col] = values.set_axis(pd.Index(ids, name=ROW_ID))
            is_float = pa.types.is_floating(session.schema.field(col).type)
            if is_float:
                nan = _nan_mask(new.take(pa.array(changed)))
            for i, rid in enumerate(ids.tolist()):
                # the base value, NaN-aware (the cell's own mark is set just below)
                session._dirty[(rid, col)] = session.value(rid, col)
                if is_float:
                    session._mark_nan(rid, col, bool(nan[i]))
        added = np.arange(base.num_rows, base.num_rows + len(new_at))
        if len(added):
            for name, nan in session._float_nans(content.take(pa.array(new_at))).items():
                for rid in added[nan].tolist():
                    session._mark_nan(rid, name, True)
            rows = to_pandas(content.take(pa.array(new_at)))
            rows.index = pd.Index(added, name=ROW_ID)
            df = pd.concat([df, rows.astype(df.dtypes.to_dict())])
        session._next_id = base.num_rows + len(added)
        session._added = set(added.tolist())
        session._deleted = set(gone.tolist())
        session._replace_rows(df)
        return session


def _unique_in_arrow(keys: pd.DataFrame) -> bool:
    """True if no two rows share a key; False also when Arrow cannot tell (let pandas)."""
    try:
        return keys_unique(pa.Table.from_pandas(keys, preserve_index=False)) is True
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False  # e.g. a key type Arrow cannot sort: the pandas check decides


def _nan_mask(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """True where a float column holds NaN (not null)."""
    mask: np.ndarray = pc.fill_null(pc.is_nan(column), False).to_numpy(zero_copy_only=False)
    return mask


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def same_cell(a: Any, b: Any) -> bool:
    """:func:`values_equal`, except that NaN and null (None) differ."""
    if _is_nan(a) or _is_nan(b):
        return _is_nan(a) and _is_nan(b)
    return values_equal(a, b)


def _stored_values(op: _Op) -> Iterator[tuple[str, Sequence[Any] | pd.Series]]:
    """``(column, values)`` that applying ``op`` stores (a whole state: none needed);
    rows as their columns, not copied (the caller looks at categorical ones only)."""
    if isinstance(op, _Batch):
        for step in op.ops:
            yield from _stored_values(step)
    elif isinstance(op, _SetCell):
        yield op.column, [op.new]
    elif isinstance(op, _SetCells):
        yield op.column, op.new
    elif isinstance(op, _AddRows):
        for column in op.rows.columns:
            yield str(column), op.rows[column]


def _inverse_step(op: _Step) -> _Step:
    if isinstance(op, _SetCells):
        return _SetCells(op.column, op.row_ids, op.new, op.old)
    return _DeleteRows(op.rows) if isinstance(op, _AddRows) else _AddRows(op.rows)


def _inverse(op: _Op) -> _Op:
    if isinstance(op, _Batch):
        return _Batch(tuple(_inverse_step(step) for step in reversed(op.ops)))
    if isinstance(op, _Replace):
        return _Replace(op.new, op.old)
    if isinstance(op, _SetCell):
        return _SetCell(op.row_id, op.column, op.new, op.old)
    return _inverse_step(op)


def _missing(column: pd.Series, value: Any) -> Any:
    """The missing-value marker that keeps the column's dtype (NA, NaN or NaT)."""
    if value is not None:
        return value
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        return pd.NaT
    if column.dtype.kind == "f":
        return np.nan
    return pd.NA if isinstance(column.dtype, pd.api.extensions.ExtensionDtype) else None
