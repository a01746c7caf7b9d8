"""Pure diffs of two versions of a master: which cells changed, which rows came and went.

Rows are matched by the key columns when there are any (the only way to follow a row
through sorting, inserts and deletes), else by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from s3grid.schema import to_pandas

__all__ = ["CellChange", "ChangeCounts", "TableDiff", "default_key_columns", "diff_tables"]

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


def _py(value: Any) -> Any:
    if value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def _changed_mask(old: pd.Series, new: pd.Series) -> np.ndarray:
    """Null-aware inequality: two nulls are equal, a null and a value are not."""
    o_na = old.isna().to_numpy(dtype=bool)
    n_na = new.isna().to_numpy(dtype=bool)
    try:
        eq = (old.to_numpy(dtype=object) == new.to_numpy(dtype=object)).astype(bool)
    except (TypeError, ValueError):
        eq = np.array([a == b for a, b in zip(old, new, strict=True)], dtype=bool)
    both_na = o_na & n_na
    return np.asarray(~(both_na | (eq & ~o_na & ~n_na)), dtype=bool)


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
    """
    keys = tuple(key_columns)
    if keys and not set(keys) <= (set(old.column_names) & set(new.column_names)):
        keys = ()
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
        mask = _changed_mask(o[column], n[column])
        for pos in np.flatnonzero(mask):
            key = _as_key(o.index[int(pos)]) if keys else (int(pos),)
            cells.append(
                CellChange(key, str(column), _py(o[column].iloc[pos]), _py(n[column].iloc[pos]))
            )
    return TableDiff(keys, tuple(cells), added, deleted)


def _as_key(value: Any) -> Key:
    items = value if isinstance(value, tuple) else (value,)
    return tuple(_py(v) for v in items)
