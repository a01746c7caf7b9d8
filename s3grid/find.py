"""Find: the cells of the whole working table that match a search, in the order the
window shows its rows.

Text columns match by substring, ignoring case; other columns match when the search,
read as that column's type, equals the value (``4.5`` finds 4.5 in a float column,
``2024-05-01`` that day in a date column, ``true`` in a boolean one). Pure: no widgets,
no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from s3grid.errors import S3GridError
from s3grid.schema import coerce_value, editable

__all__ = ["Matches", "find_cells"]


@dataclass(frozen=True)
class Matches:
    """The matching cells, in window order: row ``row_ids[i]``, column
    ``names[columns[i]]``, at ``positions[i]`` in the window (arrays: millions of
    matches cost no Python objects)."""

    query: str
    row_ids: np.ndarray
    positions: np.ndarray
    columns: np.ndarray
    names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.row_ids)

    def column(self, i: int) -> str:
        """The column of the ``i``-th match."""
        return self.names[int(self.columns[i])]


def find_cells(df: pd.DataFrame, schema: pa.Schema, query: str, order: np.ndarray) -> Matches:
    """Every cell of ``df`` (indexed by row id) that matches ``query``, ordered by the
    rows' places in ``order`` (the window's row ids), then by column. Rows outside the
    window (filtered out) are not matches."""
    text = query.strip()
    none = np.array([], np.int64)
    if not text:
        return Matches(query, none, none, none)
    place = pd.Series(np.arange(len(order)), index=order)
    found_ids, found_places, found_columns = [], [], []
    for number, field in enumerate(schema):
        mask = _matching(df[field.name], field, text)
        if mask is None or not mask.any():
            continue
        ids = df.index.to_numpy()[mask]
        places = place.reindex(ids).to_numpy()
        shown = ~np.isnan(places)
        found_ids.append(ids[shown])
        found_places.append(places[shown].astype(np.int64))
        found_columns.append(np.full(int(shown.sum()), number))
    if not found_ids:
        return Matches(query, none, none, none)
    ids = np.concatenate(found_ids)
    places = np.concatenate(found_places)
    columns = np.concatenate(found_columns)
    ordered = np.lexsort((columns, places))
    return Matches(query, ids[ordered], places[ordered], columns[ordered], tuple(schema.names))


def _matching(column: pd.Series, field: pa.Field, text: str) -> np.ndarray | None:
    """Which cells of one column match, or None when the search cannot be such a value."""
    type_ = field.type
    if (
        pa.types.is_string(type_)
        or pa.types.is_large_string(type_)
        or pa.types.is_dictionary(type_)
    ):
        found = column.astype("string").str.contains(text, case=False, regex=False)
        return np.asarray(found.fillna(False).to_numpy(dtype=bool))
    if not editable(type_):
        return None
    try:
        value = coerce_value(text, field)
    except S3GridError:
        return None
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return np.asarray(column.isna().to_numpy(dtype=bool))  # "nan" finds NaN (and null)
    equal = column == value
    return np.asarray(pd.Series(equal).fillna(False).to_numpy(dtype=bool))
