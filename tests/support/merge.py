"""A slow, obviously right three-way merge to check the real one against."""

from __future__ import annotations

from s3grid.diff import (
    MINE,
)

Row = tuple[object, ...]


def reference_merge(
    base: dict[tuple[int, int], Row],
    theirs: dict[tuple[int, int], Row],
    mine: dict[tuple[int, int], Row],
    choice: str,
) -> tuple[dict[tuple[int, int], Row], int, int]:
    """The merge rules row by row on plain dicts: the merged rows, the number of
    conflicts, and of my changes applied without one.

    Every conflict is resolved by ``choice``; unresolved, *theirs* stands.
    """
    merged, conflicts, auto = dict(theirs), 0, 0
    for k in sorted(base.keys() | mine.keys()):
        b, t, m = base.get(k), theirs.get(k), mine.get(k)
        if m == b:
            continue  # I did not touch this row
        if m is None:  # I deleted it
            if t == b:
                del merged[k]
                auto += 1
            elif t is not None:
                conflicts += 1  # they edited the row I deleted
                if choice == MINE:
                    del merged[k]
            continue
        if b is None:  # I added it
            if t is None:
                merged[k] = m
                auto += 1
            elif t != m:
                conflicts += 1  # both added it, differently
                if choice == MINE:
                    merged[k] = m
            continue
        changed = [i for i in range(len(m)) if m[i] != b[i]]
        if t is None:  # they deleted the row I edited: one conflict per cell
            conflicts += len(changed)
            if choice == MINE:
                merged[k] = m
            continue
        row = list(t)
        for i in changed:
            if t[i] != b[i] and t[i] != m[i]:
                conflicts += 1  # we both changed this cell, differently
                if choice != MINE:
                    continue
            else:
                auto += 1
            row[i] = m[i]
        merged[k] = tuple(row)
    return merged, conflicts, auto
