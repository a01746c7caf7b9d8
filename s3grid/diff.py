"""Pure diffs of two versions of a master: which cells changed, which rows came and went.

Rows are matched by the key columns when there are any (the only way to follow a row
through sorting, inserts and deletes), else by position.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from s3grid.schema import put_nans, to_pandas

__all__ = [
    "CellChange",
    "ChangeCounts",
    "MergeConflict",
    "MergeResult",
    "TableDiff",
    "default_key_columns",
    "diff_tables",
    "equal_mask",
    "keys_unique",
    "py_value",
    "row_sources",
    "same_values",
    "three_way_merge",
    "values_equal",
]

Key = tuple[Any, ...]


@dataclass(frozen=True)
class ChangeCounts:
    """How much a save changed: the ``changes`` object of an audit record."""

    cells_changed: int = 0
    rows_added: int = 0
    rows_deleted: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as the audit record's ``changes`` mapping."""
        return {
            "cells_changed": self.cells_changed,
            "rows_added": self.rows_added,
            "rows_deleted": self.rows_deleted,
        }


@dataclass(frozen=True)
class CellChange:
    """One changed cell: the row's key (or position), the column, old and new value."""

    key: Key
    column: str
    old: Any
    new: Any


@dataclass(frozen=True)
class TableDiff:
    """The difference between two versions of a table."""

    key_columns: tuple[str, ...]
    cells: tuple[CellChange, ...]
    added: tuple[Key, ...]
    deleted: tuple[Key, ...]

    @property
    def counts(self) -> ChangeCounts:
        """The sizes of this diff."""
        return ChangeCounts(len(self.cells), len(self.added), len(self.deleted))

    @property
    def empty(self) -> bool:
        """True when the two versions hold the same rows and values."""
        return not (self.cells or self.added or self.deleted)


def default_key_columns(names: Sequence[str]) -> tuple[str, ...]:
    """The seed's key, ``("tow", "net")``, when both columns exist; else no key."""
    return ("tow", "net") if {"tow", "net"} <= set(names) else ()


def py_value(value: Any) -> Any:
    """A plain Python value: numpy scalars unwrapped, every kind of missing as None."""
    if value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def cell_value(value: Any) -> Any:
    """:func:`py_value` for a value read from Arrow, where a float NaN is a value (NaN)
    and only null is missing (None)."""
    if isinstance(value, float | np.floating) and np.isnan(value):
        return math.nan
    return py_value(value)


def values_equal(a: Any, b: Any) -> bool:
    """Null-aware equality of two cell values (None, NaN, NA and NaT are all equal)."""
    a, b = py_value(a), py_value(b)
    if a is None or b is None:
        return a is None and b is None
    return bool(a == b)


def equal_mask(old: pd.Series, new: pd.Series) -> np.ndarray:
    """Null-aware equality per row: two nulls are equal, a null and a value are not."""
    o_na = old.isna().to_numpy(dtype=bool)
    n_na = new.isna().to_numpy(dtype=bool)
    a = old.reset_index(drop=True)
    b = new.reset_index(drop=True)
    try:
        eq = a.eq(b).fillna(False).to_numpy(dtype=bool)
    except (TypeError, ValueError):  # mixed object columns: compare value by value
        eq = np.array([values_equal(x, y) for x, y in zip(a, b, strict=True)], dtype=bool)
    return np.asarray((o_na & n_na) | (eq & ~o_na & ~n_na), dtype=bool)


def diff_tables(
    old: pa.Table,
    new: pa.Table,
    key_columns: Sequence[str] = (),
) -> TableDiff:
    """Compare two versions of a master.

    Args:
        old: the earlier version.
        new: the later version.
        key_columns: columns identifying a row (must be unique in both); empty means rows
            are matched by position.

    Returns:
        The changed cells of rows present in both, and the keys of added and deleted rows.
        Without key columns a "key" is the 1-tuple of the row position.

    Rows are matched and compared in Arrow; Python objects are made only for what
    changed, so a diff of two 10M-row versions costs a join and a compare per column.
    """
    keys = _shared_keys(old, new, key_columns)
    if any(old.column(k).null_count or new.column(k).null_count for k in keys):
        return _diff_in_pandas(old, new, keys)  # an Arrow join never matches empty keys
    try:
        rows = _match_rows(old, new, keys)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return _diff_in_pandas(old, new, keys)  # a key type Arrow's join does not take
    cells: list[CellChange] = []
    for column in (c for c in new.column_names if c in old.column_names and c not in keys):
        a, b = rows.pair(old.column(column), new.column(column))
        try:
            same = _same(a, b).to_numpy(zero_copy_only=False)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            return _diff_in_pandas(old, new, keys)  # e.g. a column whose type changed
        changed = np.flatnonzero(~same)
        if not len(changed):
            continue
        where = _keys_at(old, keys, rows.old_positions(changed))
        before = a.take(pa.array(changed)).to_pylist()
        after = b.take(pa.array(changed)).to_pylist()
        cells.extend(
            CellChange(k, str(column), cell_value(o), cell_value(n))
            for k, o, n in zip(where, before, after, strict=True)
        )
    added = tuple(_keys_at(new, keys, rows.added))
    deleted = tuple(_keys_at(old, keys, rows.deleted))
    return TableDiff(keys, tuple(cells), added, deleted)


@dataclass(frozen=True)
class _MatchedRows:
    """Which rows of two versions are the same row: old/new positions, pairwise.

    ``None`` positions mean the first ``common`` rows match in place (no copy needed).
    ``added``/``deleted`` are positions in the new/old version, in table order.
    """

    common: int
    old: np.ndarray | None
    new: np.ndarray | None
    added: np.ndarray
    deleted: np.ndarray

    def pair(self, a: pa.ChunkedArray, b: pa.ChunkedArray) -> tuple[Any, Any]:
        """The column values of the matched rows, side by side."""
        if self.old is None or self.new is None:
            return a.slice(0, self.common), b.slice(0, self.common)
        return a.take(pa.array(self.old)), b.take(pa.array(self.new))

    def old_positions(self, matched: np.ndarray) -> np.ndarray:
        """Positions in the old version of the given matched pairs."""
        return matched if self.old is None else self.old[matched]


def _shared_keys(old: pa.Table, new: pa.Table, key_columns: Sequence[str]) -> tuple[str, ...]:
    """The key columns when both versions have them all; else none (match by position)."""
    keys = tuple(key_columns)
    if keys and not set(keys) <= (set(old.column_names) & set(new.column_names)):
        return ()
    return keys


def _match_rows(
    old: pa.Table, new: pa.Table, keys: tuple[str, ...], *, in_old_order: bool = True
) -> _MatchedRows:
    """Match the rows of two versions: in place when the keys line up, else by a join
    (pairs sorted by old position unless ``in_old_order`` is False, as for counting)."""
    common = min(old.num_rows, new.num_rows)
    in_place = not keys or old.select(keys).slice(0, common).equals(
        new.select(keys).slice(0, common)
    )
    if in_place:  # no keys, or the same rows in the same order with some appended or cut
        return _MatchedRows(
            common,
            None,
            None,
            np.arange(common, new.num_rows),
            np.arange(common, old.num_rows),
        )
    o_pos, n_pos = "__s3grid_old_row", "__s3grid_new_row"
    left = old.select(keys).append_column(o_pos, pa.array(np.arange(old.num_rows)))
    right = new.select(keys).append_column(n_pos, pa.array(np.arange(new.num_rows)))
    matched = left.join(right, keys=list(keys), join_type="inner")
    if in_old_order:
        matched = matched.sort_by(o_pos)
    o_idx = matched.column(o_pos).to_numpy()
    n_idx = matched.column(n_pos).to_numpy()
    unmatched_new = np.ones(new.num_rows, dtype=bool)
    unmatched_new[n_idx] = False
    unmatched_old = np.ones(old.num_rows, dtype=bool)
    unmatched_old[o_idx] = False
    return _MatchedRows(
        len(o_idx), o_idx, n_idx, np.flatnonzero(unmatched_new), np.flatnonzero(unmatched_old)
    )


def keep_nans(new: pa.Table, base: pa.Table, key_columns: Sequence[str] = ()) -> pa.Table:
    """``new`` with NaN put back where pandas lost it: a missing float cell whose row
    holds NaN in ``base`` (matched by key, else by position) is NaN again.

    A pandas float column marks missing values with NaN, so a frame cannot say NaN from
    null; the version it was loaded from can. Unmatched rows, and rows with duplicate or
    empty keys (refused by the save anyway), keep null.
    """
    base_nans = {}  # the base's NaN cells, per float column that has any
    for name, type_ in zip(new.column_names, new.schema.types, strict=True):
        if not pa.types.is_floating(type_) or name not in base.column_names:
            continue
        if base.schema.field(name).type != type_:
            continue
        mask = pc.fill_null(pc.is_nan(base.column(name)), False)
        if pc.any(mask).as_py():
            base_nans[name] = mask.to_numpy(zero_copy_only=False)
    if not base_nans:
        return new
    try:
        sources = row_sources(base, new, key_columns)
    except (ValueError, pd.errors.InvalidIndexError):
        return new  # keys that do not identify rows: validation names them
    found = sources >= 0
    for name, base_nan in base_nans.items():
        nan = np.zeros(new.num_rows, dtype=bool)
        nan[found] = base_nan[sources[found]]
        new = put_nans(new, name, nan)
    return new


def row_sources(old: pa.Table, new: pa.Table, key_columns: Sequence[str] = ()) -> np.ndarray:
    """For each row of ``new``, the position of the same row in ``old``, or -1.

    Rows are the same when their keys are equal (empty keys included); without key
    columns, when they sit at the same position. Keys must be unique in both. As in
    :func:`diff_tables`, rows are matched in Arrow (in place when the keys line up, else
    by a join) and through pandas only for empty keys or a key type Arrow cannot join.
    """
    keys = _shared_keys(old, new, key_columns)
    sources = np.full(new.num_rows, -1, dtype=np.int64)
    if not keys:
        common = min(old.num_rows, new.num_rows)
        sources[:common] = np.arange(common)
        return sources
    if not any(old.column(k).null_count or new.column(k).null_count for k in keys):
        try:
            rows = _match_rows(old, new, keys, in_old_order=False)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # a key type Arrow's join does not take: pandas below
        else:
            if rows.old is None or rows.new is None:
                sources[: rows.common] = np.arange(rows.common)
            else:
                sources[rows.new] = rows.old
            return sources
    old_keys = pd.MultiIndex.from_frame(to_pandas(old.select(list(keys))))
    new_keys = pd.MultiIndex.from_frame(to_pandas(new.select(list(keys))))
    found: np.ndarray = old_keys.get_indexer(new_keys).astype(np.int64)
    return found


def _keys_at(table: pa.Table, keys: tuple[str, ...], positions: np.ndarray) -> list[Key]:
    """The keys (or 1-tuples of the positions, without key columns) of some rows."""
    if not keys:
        return [(int(p),) for p in positions]
    taken = pa.array(positions, type=pa.int64())
    columns = [table.column(k).take(taken).to_pylist() for k in keys]
    return [tuple(py_value(v) for v in row) for row in zip(*columns, strict=True)]


def _diff_in_pandas(old: pa.Table, new: pa.Table, keys: tuple[str, ...]) -> TableDiff:
    """:func:`diff_tables` through pandas indexes: slower, but matches empty keys and
    compares columns whose types differ (a schema change)."""
    old_df = to_pandas(old)
    new_df = to_pandas(new)
    if keys:
        old_df = old_df.set_index(list(keys), drop=False)
        new_df = new_df.set_index(list(keys), drop=False)
        common = old_df.index.intersection(new_df.index, sort=False)
        added_idx = new_df.index.difference(old_df.index, sort=False)
        deleted_idx = old_df.index.difference(new_df.index, sort=False)
        o = old_df.loc[common]
        n = new_df.loc[common]
        added = tuple(_as_key(k) for k in added_idx)
        deleted = tuple(_as_key(k) for k in deleted_idx)
    else:
        m = min(len(old_df), len(new_df))
        o = old_df.iloc[:m]
        n = new_df.iloc[:m]
        added = tuple((i,) for i in range(m, len(new_df)))
        deleted = tuple((i,) for i in range(m, len(old_df)))
    cells: list[CellChange] = []
    shared = [c for c in new_df.columns if c in old_df.columns and c not in keys]
    for column in shared:
        mask = ~equal_mask(o[column], n[column])
        for pos in np.flatnonzero(mask):
            key = _as_key(o.index[int(pos)]) if keys else (int(pos),)
            cells.append(
                CellChange(
                    key, str(column), py_value(o[column].iloc[pos]), py_value(n[column].iloc[pos])
                )
            )
    return TableDiff(keys, tuple(cells), added, deleted)


def _same(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
    """Exact equality, row by row: null equals null and NaN equals NaN, but NaN is not
    null (they are different values in Parquet and in Athena)."""
    a_null, b_null = pc.is_null(a), pc.is_null(b)
    equal = pc.fill_null(pc.equal(a, b), False)
    if pa.types.is_floating(a.type) and pa.types.is_floating(b.type):
        both_nan = pc.and_(pc.fill_null(pc.is_nan(a), False), pc.fill_null(pc.is_nan(b), False))
        equal = pc.or_(equal, both_nan)
    both_null = pc.and_(a_null, b_null)
    neither_null = pc.invert(pc.or_(a_null, b_null))
    return pc.or_(both_null, pc.and_(equal, neither_null))


def same_values(a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    """Equality of two columns, row by row, as :func:`_same` (null equals null, NaN equals
    NaN, NaN is not null): in Arrow, or value by value in Python for a type Arrow cannot
    compare (lists, structs, maps; float16 is compared widened to float32)."""
    try:
        same: np.ndarray = _same(a, b).to_numpy(zero_copy_only=False)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        if pa.types.is_float16(a.type) and pa.types.is_float16(b.type):
            return same_values(a.cast(pa.float32()), b.cast(pa.float32()))  # exact widening
        return _equal_as_python(a, b)
    return same


def _equal_as_python(a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    """Row-by-row equality of Python values, for types Arrow cannot compare (lists,
    structs, maps): slow, and only for such columns."""
    return np.array([x == y for x, y in zip(a.to_pylist(), b.to_pylist(), strict=True)], dtype=bool)


def keys_unique(keys: pa.Table) -> bool | None:
    """True when no two rows share a key (None: cannot tell here, e.g. float keys).

    Sort the keys, then compare each row with the next: in Arrow, and lighter than a hash
    group-by, which holds a hash table of every key; this holds only the order.
    """
    if any(pa.types.is_floating(t) for t in keys.schema.types):
        return None  # NaN != NaN would hide duplicates; the pandas check handles them
    if keys.num_rows < 2:
        return True
    order = pc.sort_indices(keys, sort_keys=[(k, "ascending") for k in keys.column_names])
    same: Any = None
    # One key column in sorted order at a time: the peak is one column, not all of them.
    for name in keys.column_names:
        column = keys.column(name).take(order)
        equal = pc.equal(column.slice(1), column.slice(0, len(column) - 1))
        same = equal if same is None else pc.and_(same, equal)
        del column
    return not pc.any(same).as_py()


def _as_key(value: Any) -> Key:
    items = value if isinstance(value, tuple) else (value,)
    return tuple(py_value(v) for v in items)


MINE, THEIRS = "mine", "theirs"


@dataclass(frozen=True)
class MergeConflict:
    """A change both sides made differently; the user picks ``mine`` or ``theirs``.

    ``kind`` is ``"cell"`` (both changed one cell), ``"deleted-by-them"`` (you edited a
    row they deleted), ``"deleted-by-me"`` (you deleted a row they edited) or
    ``"added-both"`` (both added a row with this key, with different values).
    ``column`` is None for whole-row conflicts.
    """

    key: Key
    column: str | None
    kind: str
    base: Any
    theirs: Any
    mine: Any

    @property
    def id(self) -> tuple[Key, str | None]:
        """What a resolution refers to."""
        return (self.key, self.column)

    def same_as(self, other: MergeConflict) -> bool:
        """The same choice to make: same cell or row, kind and values (NaN equals NaN)."""
        return (
            self.id == other.id
            and self.kind == other.kind
            and all(
                values_equal(a, b)
                for a, b in (
                    (self.base, other.base),
                    (self.theirs, other.theirs),
                    (self.mine, other.mine),
                )
            )
        )


@dataclass(frozen=True)
class MergeResult:
    """A three-way merge: the merged table with the given resolutions applied."""

    table: pa.Table
    conflicts: tuple[MergeConflict, ...]
    auto_merged: int
    theirs_changes: ChangeCounts = ChangeCounts()  # what they changed since the base


def three_way_merge(
    base: pa.Table,
    theirs: pa.Table,
    mine: pa.Table,
    key_columns: Sequence[str] = (),
    resolutions: Mapping[tuple[Key, str | None], str] | None = None,
) -> MergeResult:
    """Merge my changes (base -> mine) onto theirs (base -> theirs).

    Changes that do not overlap are applied automatically. Overlapping ones are
    conflicts, resolved by ``resolutions`` (``MergeConflict.id`` -> ``"mine"`` or
    ``"theirs"``); an unresolved conflict keeps *theirs*, so nothing a colleague saved
    is overwritten without an explicit choice.

    Args:
        base: the version both sides started from.
        theirs: the current master.
        mine: my edited table.
        key_columns: row identity; empty means rows are matched by position.
        resolutions: choices for conflicts.

    The result is *theirs* with my changes written into it in Arrow: only the rows and
    cells that changed ever become Python objects.
    """
    choose = dict(resolutions or {})
    d_mine = diff_tables(base, mine, key_columns)
    d_theirs = diff_tables(base, theirs, key_columns)
    keys = d_mine.key_columns
    theirs_cells = {(c.key, c.column): c for c in d_theirs.cells}
    theirs_rows_changed = {c.key for c in d_theirs.cells}
    theirs_deleted = set(d_theirs.deleted)
    conflicts: list[MergeConflict] = []
    auto = 0
    readd: list[Key] = []
    writes: dict[Key, dict[str, Any]] = {}  # cells of theirs' rows to overwrite with mine

    def pick(conflict: MergeConflict) -> str:
        conflicts.append(conflict)
        return choose.get(conflict.id, THEIRS)

    for c in d_mine.cells:
        if c.key in theirs_deleted:
            if pick(MergeConflict(c.key, c.column, "deleted-by-them", c.old, None, c.new)) == MINE:
                readd.append(c.key)
            continue
        theirs_cell = theirs_cells.get((c.key, c.column))
        if theirs_cell is not None and not values_equal(theirs_cell.new, c.new):
            conflict = MergeConflict(c.key, c.column, "cell", c.old, theirs_cell.new, c.new)
            if pick(conflict) == MINE:
                writes.setdefault(c.key, {})[c.column] = c.new
            continue
        writes.setdefault(c.key, {})[c.column] = c.new
        auto += 1
    drop: list[Key] = []
    for k in d_mine.deleted:
        if k in theirs_deleted:
            continue
        if k in theirs_rows_changed:
            if pick(MergeConflict(k, None, "deleted-by-me", None, None, None)) == MINE:
                drop.append(k)
            continue
        drop.append(k)
        auto += 1
    in_theirs = _positions(theirs, keys, [*writes, *drop, *d_mine.added])
    in_mine = _positions(mine, keys, [*readd, *d_mine.added])
    append: list[Key] = list(dict.fromkeys(readd))
    for k in d_mine.added:
        if k in in_theirs:  # both added this key
            theirs_row = _row(theirs, in_theirs[k])
            mine_row = _row(mine, in_mine[k])
            same = all(values_equal(theirs_row.get(col), v) for col, v in mine_row.items())
            if not same and pick(MergeConflict(k, None, "added-both", None, None, None)) == MINE:
                writes[k] = {col: v for col, v in mine_row.items() if col in theirs_row}
            continue
        append.append(k)
        auto += 1
    merged = _write_cells(
        theirs, {in_theirs[k]: cells for k, cells in writes.items() if k in in_theirs}
    )
    if drop:
        keep = np.ones(theirs.num_rows, dtype=bool)
        keep[[in_theirs[k] for k in drop if k in in_theirs]] = False
        merged = merged.filter(pa.array(keep))
    rows = [in_mine[k] for k in append if k in in_mine]
    if rows:
        picked = mine.take(pa.array(rows, type=pa.int64()))
        # in theirs' columns: a column they added is empty in my rows
        extra = pa.Table.from_arrays(
            [
                picked.column(f.name).cast(f.type)
                if f.name in picked.column_names
                else pa.nulls(len(rows), f.type)
                for f in theirs.schema
            ],
            schema=theirs.schema,
        )
        merged = pa.concat_tables([merged, extra])
    return MergeResult(merged, tuple(conflicts), auto, d_theirs.counts)


def _positions(table: pa.Table, keys: tuple[str, ...], wanted: Sequence[Key]) -> dict[Key, int]:
    """Where the rows with the ``wanted`` keys are in ``table`` (absent keys left out).

    A join of the few wanted keys against the table's key columns. Keys holding an
    empty value (which a join never matches), or of a type the join does not take, are
    found by a scan per key.
    """
    wanted = list(dict.fromkeys(wanted))
    if not keys:
        return {k: int(k[0]) for k in wanted if 0 <= int(k[0]) < table.num_rows}
    found: dict[Key, int] = {}
    plain = [k for k in wanted if all(v is not None for v in k)]
    scan = [k for k in wanted if any(v is None for v in k)]
    if plain:
        try:
            found.update(_join_positions(table, keys, plain))
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            scan += plain
    for k in scan:
        match = np.ones(table.num_rows, dtype=bool)
        for name, v in zip(keys, k, strict=True):
            col = table.column(name)
            hit = pc.is_null(col, nan_is_null=True) if v is None else pc.equal(col, v)
            match &= pc.fill_null(hit, False).to_numpy(zero_copy_only=False)
        where = np.flatnonzero(match)
        if len(where):
            found[k] = int(where[0])
    return found


def _join_positions(table: pa.Table, keys: tuple[str, ...], wanted: list[Key]) -> dict[Key, int]:
    probe = pa.table(
        {
            name: pa.array([k[i] for k in wanted], type=table.schema.field(name).type)
            for i, name in enumerate(keys)
        }
    ).append_column("__s3grid_probe", pa.array(np.arange(len(wanted))))
    rows = table.select(list(keys)).append_column(
        "__s3grid_row", pa.array(np.arange(table.num_rows))
    )
    # the few wanted keys are the join's hash table; the big table streams past it
    hits = rows.join(probe, keys=list(keys), join_type="inner")
    return {
        wanted[i]: int(row)
        for i, row in zip(
            hits.column("__s3grid_probe").to_pylist(),
            hits.column("__s3grid_row").to_pylist(),
            strict=True,
        )
    }


def _row(table: pa.Table, position: int) -> dict[str, Any]:
    """One row as plain Python values."""
    return {k: py_value(v) for k, v in table.slice(position, 1).to_pylist()[0].items()}


def _write_cells(table: pa.Table, writes: Mapping[int, Mapping[str, Any]]) -> pa.Table:
    """``table`` with some cells replaced: ``{row position: {column: value}}``."""
    by_column: dict[str, dict[int, Any]] = {}
    for pos, cells in writes.items():
        for column, value in cells.items():
            by_column.setdefault(column, {})[pos] = value
    for column, values in by_column.items():
        i = table.schema.get_field_index(column)
        field = table.schema.field(i)
        mask = np.zeros(table.num_rows, dtype=bool)
        mask[list(values)] = True
        replacements = pa.array([values[p] for p in sorted(values)], type=field.type)
        updated = pc.replace_with_mask(
            table.column(i).combine_chunks(), pa.array(mask), replacements
        )
        table = table.set_column(i, field, updated)
    return table
