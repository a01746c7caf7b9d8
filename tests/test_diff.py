"""Pure diff and three-way merge."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from s3grid.diff import MINE, diff_tables, three_way_merge

SCHEMA = pa.schema(
    [("tow", pa.int32()), ("net", pa.int32()), ("v", pa.float64()), ("s", pa.string())]
)


def table(rows: list[tuple[int, int, float | None, str | None]]) -> pa.Table:
    return pa.Table.from_pandas(
        pd.DataFrame(rows, columns=SCHEMA.names), schema=SCHEMA, preserve_index=False
    )


BASE = table([(1, 0, 1.0, "a"), (1, 1, 2.0, "b"), (2, 0, 3.0, "c"), (2, 1, None, "d")])


def test_diff_by_key_follows_rows_through_reordering() -> None:
    new = table([(2, 1, 4.0, "d"), (1, 0, 1.0, "a"), (1, 1, 2.0, "B"), (3, 0, 0.0, "n")])
    d = diff_tables(BASE, new, ("tow", "net"))
    assert {(c.key, c.column, c.old, c.new) for c in d.cells} == {
        ((2, 1), "v", None, 4.0),
        ((1, 1), "s", "b", "B"),
    }
    assert d.added == ((3, 0),)
    assert d.deleted == ((2, 0),)
    assert d.counts.as_dict() == {"cells_changed": 2, "rows_added": 1, "rows_deleted": 1}


def test_diff_by_position_without_keys() -> None:
    new = table([(1, 0, 1.0, "a"), (1, 1, 2.5, "b")])
    d = diff_tables(BASE, new)
    assert [(c.key, c.column) for c in d.cells] == [((1,), "v")]
    assert d.deleted == ((2,), (3,))
    assert diff_tables(BASE, BASE).empty


def test_merge_non_overlapping_is_automatic() -> None:
    theirs = table(
        [(1, 0, 9.0, "a"), (1, 1, 2.0, "b"), (2, 0, 3.0, "c"), (2, 1, None, "d"), (5, 0, 5.0, "t")]
    )
    mine = table([(1, 0, 1.0, "A"), (1, 1, 2.0, "b"), (2, 1, None, "d"), (6, 0, 6.0, "m")])
    r = three_way_merge(BASE, theirs, mine, ("tow", "net"))
    assert r.conflicts == ()
    assert r.auto_merged == 3  # my cell edit, my delete, my added row
    got = r.table.to_pandas().set_index(["tow", "net"])
    assert got.loc[(1, 0), "v"] == 9.0  # theirs
    assert got.loc[(1, 0), "s"] == "A"  # mine
    assert (2, 0) not in got.index  # my delete
    assert (5, 0) in got.index  # their add
    assert (6, 0) in got.index  # my add
    assert r.table.schema == SCHEMA


def test_merge_conflicts_default_theirs_and_resolve_mine() -> None:
    theirs = table([(1, 0, 9.0, "a"), (1, 1, 7.0, "b"), (2, 0, 3.0, "c"), (3, 0, 1.0, "x")])
    # (1,0).v changed by both; (1,1) changed by them, deleted by me; (2,1) deleted by
    # them, edited by me; (2,0).v changed by me only; (3,0) added by both, differently.
    mine2 = table([(1, 0, 8.0, "a"), (2, 0, 3.5, "c"), (3, 0, 2.0, "y"), (2, 1, 1.0, "d")])
    r = three_way_merge(BASE, theirs, mine2, ("tow", "net"))
    kinds = {(c.key, c.column, c.kind) for c in r.conflicts}
    assert kinds == {
        ((1, 0), "v", "cell"),
        ((1, 1), None, "deleted-by-me"),
        ((2, 1), "v", "deleted-by-them"),
        ((3, 0), None, "added-both"),
    }
    kept = r.table.to_pandas().set_index(["tow", "net"])
    assert kept.loc[(1, 0), "v"] == 9.0  # unresolved -> theirs
    assert (1, 1) in kept.index
    assert (2, 1) not in kept.index
    assert kept.loc[(3, 0), "s"] == "x"
    assert kept.loc[(2, 0), "v"] == 3.5  # automatic

    r2 = three_way_merge(BASE, theirs, mine2, ("tow", "net"), {c.id: MINE for c in r.conflicts})
    got = r2.table.to_pandas().set_index(["tow", "net"])
    assert got.loc[(1, 0), "v"] == 8.0
    assert (1, 1) not in got.index
    assert got.loc[(2, 1), "v"] == 1.0
    assert got.loc[(3, 0), "s"] == "y"
