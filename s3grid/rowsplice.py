"""Rows in row-id order: put rows back where they belong, or cut rows out by position.

An editing session keeps its rows sorted by row id. An undo puts deleted rows back and a
delete cuts rows out; both are done with slices of the frame for a few rows, since
sorting or masking every row and column for one row is what made undo slow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLICE_MAX = 1000  # rows put back or cut out one slice each; for more, a sort or a mask


def insert_by_id(
    frame: pd.DataFrame, rows: pd.DataFrame, *, splice_max: int = SPLICE_MAX
) -> pd.DataFrame:
    """``frame`` with ``rows`` in row-id order (both are in row-id order already).

    New rows go after the last one. Rows an undo brings back go to their places: a few
    are spliced between slices of ``frame``, one copy of it, instead of sorting the whole
    index and taking every column again for one row.
    """
    if len(rows) > splice_max:
        return pd.concat([frame, rows]).sort_index()
    at = np.searchsorted(frame.index.to_numpy(), rows.index.to_numpy())
    pieces, start = [], 0
    for i, position in enumerate(at.tolist()):
        pieces += [frame.iloc[start:position], rows.iloc[i : i + 1]]
        start = position
    pieces.append(frame.iloc[start:])
    return pd.concat([p for p in pieces if len(p)])


def without_rows(
    frame: pd.DataFrame, gone: np.ndarray, *, splice_max: int = SPLICE_MAX
) -> pd.DataFrame:
    """``frame`` without the rows at positions ``gone`` (sorted, unique).

    A few rows are cut out by joining the slices between them, one copy of the rest,
    instead of ``drop``, which hashes every row id and then takes every row of every
    column, for one row.
    """
    if not len(gone):
        return frame.copy(deep=False)
    if len(gone) > splice_max:
        keep = np.ones(len(frame), dtype=bool)
        keep[gone] = False
        return frame.iloc[keep]
    pieces, start = [], 0
    for position in gone.tolist():
        pieces.append(frame.iloc[start:position])
        start = position + 1
    pieces.append(frame.iloc[start:])
    kept = [p for p in pieces if len(p)]
    return pd.concat(kept) if kept else frame.iloc[:0]
