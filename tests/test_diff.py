"""Pure diff and three-way merge."""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from s3grid.changeset import CELL, build_changeset
from s3grid.diff import (
    MINE,
    _diff_in_pandas,
    diff_tables,
    keys_unique,
    row_sources,
    three_way_merge,
)
from tests.support.merge import reference_merge

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
    # their side, as the editor's summary reports it: v of (1, 0) changed, (5, 0) added
    assert r.theirs_changes.as_dict() == {"cells_changed": 1, "rows_added": 1, "rows_deleted": 0}
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


ROWS = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.integers(0, 3),
        st.one_of(st.none(), st.just(math.nan), st.sampled_from([0.0, 1.5, -2.0])),
        st.one_of(st.none(), st.sampled_from(["a", "b", ""])),
    ),
    min_size=1,
    max_size=12,
    unique_by=lambda r: (r[0], r[1]),
)


def test_changeset_counts_null_aware_for_timestamps_and_bools() -> None:
    schema = pa.schema([("k", pa.int32()), ("t", pa.timestamp("us")), ("b", pa.bool_())])
    t0 = datetime(2024, 5, 1, 12)
    old = pa.table([[1, 2, 3], [t0, None, t0], [True, None, False]], schema=schema)
    new = pa.table([[3, 2, 4], [None, None, t0], [False, False, True]], schema=schema)
    # row 3: t -> null; row 2: b null -> False; row 1 deleted, row 4 added
    counts = build_changeset(old, new, ("k",)).counts
    assert counts.as_dict() == {"cells_changed": 2, "rows_added": 1, "rows_deleted": 1}
    assert counts == diff_tables(old, new, ("k",)).counts


@settings(max_examples=100, deadline=None, derandomize=True)
@given(old=ROWS, other=ROWS, cut=st.integers(0, 3))
def test_changeset_same_order_path_agrees(
    old: list[tuple[int, int, float | None, str | None]],
    other: list[tuple[int, int, float | None, str | None]],
    cut: int,
) -> None:
    # same keys in the same order (the usual save): values taken from `other`, and the
    # last `cut` rows dropped -- the in-place comparison must match the diff too
    new = [(k[0], k[1], o[2], o[3]) for k, o in zip(old, other + old, strict=False)]
    new = new[: max(1, len(new) - cut)]
    for a, b in ((table(old), table(new)), (table(new), table(old))):
        assert (
            build_changeset(a, b, ("tow", "net")).counts == diff_tables(a, b, ("tow", "net")).counts
        )


def test_keys_unique_sorts_and_compares_neighbours() -> None:
    pairs = pa.table({"tow": [2, 1, 2, 1], "net": [0, 1, 1, 0]})
    assert keys_unique(pairs) is True
    # (1, 0) twice, far apart in file order: found after sorting
    assert keys_unique(pa.table({"tow": [1, 2, 3, 1], "net": [0, 5, 5, 0]})) is False
    assert keys_unique(pa.table({"tow": [1, 2, 1], "net": [0, 0, 1]})) is True
    assert keys_unique(pa.table({"id": ["b", "a", "b"]})) is False
    assert keys_unique(pa.table({"x": [1.0, float("nan")]})) is None  # left to pandas


def _rows_by_key(t: pa.Table) -> dict[tuple[int, int], tuple[object, object]]:
    """Each row's values by key, NaN and null both as None (as the diff sees them)."""
    frame = t.to_pandas()
    return {
        (int(r.tow), int(r.net)): tuple(None if pd.isna(v) else v for v in (r.v, r.s))
        for r in frame.itertuples()
    }


@settings(max_examples=150, deadline=None, derandomize=True)
@given(old=ROWS, new=ROWS, keyed=st.booleans())
def test_arrow_diff_and_counts_match_the_pandas_diff(
    old: list[tuple[int, int, float | None, str | None]],
    new: list[tuple[int, int, float | None, str | None]],
    keyed: bool,
) -> None:
    # the Arrow join/compare must give exactly the cells, keys and order of the
    # pandas-index version it replaced (which stays as the fallback for empty keys),
    # and the save's changeset the same cells and numbers for the audit
    keys = ("tow", "net") if keyed else ()
    a, b = table(old), table(new)
    full = diff_tables(a, b, keys)
    assert full == _diff_in_pandas(a, b, keys)
    changeset = build_changeset(a, b, keys)
    assert changeset.counts == full.counts
    cells = changeset.table.filter(pc.equal(changeset.table.column("change"), CELL))
    names = list(keys) or ["row"]
    found = {
        (tuple(k[n] for n in names), c)
        for k, c in zip(
            cells.column("key").to_pylist(), cells.column("column").to_pylist(), strict=True
        )
    }
    assert found == {(c.key, c.column) for c in full.cells}


@settings(max_examples=100, deadline=None, derandomize=True)
@given(base=ROWS, other=ROWS)
def test_merge_with_one_side_unchanged_is_the_other_side(
    base: list[tuple[int, int, float | None, str | None]],
    other: list[tuple[int, int, float | None, str | None]],
) -> None:
    keys = ("tow", "net")
    b, o = table(base), table(other)
    # they saved, I changed nothing: the result is theirs, untouched
    r = three_way_merge(b, o, b, keys)
    assert r.conflicts == () and r.auto_merged == 0
    assert r.table.equals(o)
    # they changed nothing: every change of mine applies, nothing conflicts
    r = three_way_merge(b, b, o, keys)
    assert r.conflicts == ()
    assert r.auto_merged == diff_tables(b, o, keys).counts.cells_changed + len(
        diff_tables(b, o, keys).added
    ) + len(diff_tables(b, o, keys).deleted)
    assert _rows_by_key(r.table) == _rows_by_key(o)
    assert r.table.schema == b.schema


@settings(max_examples=300, deadline=None, derandomize=True)
@given(base=ROWS, theirs=ROWS, mine=ROWS, choice=st.sampled_from(["theirs", MINE]))
def test_merge_follows_the_rules_row_by_row(
    base: list[tuple[int, int, float | None, str | None]],
    theirs: list[tuple[int, int, float | None, str | None]],
    mine: list[tuple[int, int, float | None, str | None]],
    choice: str,
) -> None:
    # Never lose an edit, never overwrite a colleague's: each of their changes stands
    # unless a conflict is resolved "mine"; each of my changes lands unless it conflicts
    # and is left "theirs". Checked against the rules applied row by row on plain dicts.
    keys = ("tow", "net")
    b, t, m = table(base), table(theirs), table(mine)
    rows_b, rows_t, rows_m = _rows_by_key(b), _rows_by_key(t), _rows_by_key(m)
    unresolved = three_way_merge(b, t, m, keys)
    resolved = three_way_merge(b, t, m, keys, {c.id: choice for c in unresolved.conflicts})
    for r, rule in ((unresolved, "theirs"), (resolved, choice)):
        expected, conflicts, auto = reference_merge(rows_b, rows_t, rows_m, rule)
        assert (len(r.conflicts), r.auto_merged) == (conflicts, auto)
        assert r.table.num_rows == len(expected)  # no row twice
        got = _rows_by_key(r.table)
        assert got == expected
        assert r.table.schema == t.schema
        # their rows come first, in their order; rows only I have follow them
        theirs_kept = [k for k in rows_t if k in expected]
        assert list(got)[: len(theirs_kept)] == theirs_kept


def test_merge_keeps_my_new_row_with_an_empty_key() -> None:
    # an Arrow join never matches an empty key: such rows are found by a scan instead
    theirs = table([(1, 0, 9.0, "a"), (1, 1, 2.0, "b"), (2, 0, 3.0, "c"), (2, 1, None, "d")])
    mine = pa.concat_tables([BASE, pa.table([[None], [5], [7.5], ["new"]], schema=SCHEMA)])
    r = three_way_merge(BASE, theirs, mine, ("tow", "net"))
    assert r.conflicts == ()
    rows = r.table.to_pylist()
    assert rows[0]["v"] == 9.0  # theirs
    assert rows[-1] == {"tow": None, "net": 5, "v": 7.5, "s": "new"}  # mine
    assert r.table.num_rows == 5


_KEY_PAIRS = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), unique=True, max_size=10)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(old=_KEY_PAIRS, extra=_KEY_PAIRS, empty_key=st.booleans(), data=st.data())
def test_row_sources_find_each_row_by_key_or_position(
    old: list[tuple[int | None, int]],
    extra: list[tuple[int | None, int]],
    empty_key: bool,
    data: st.DataObject,
) -> None:
    # new: old's first rows (matched in place), or some of its rows in its order or
    # shuffled (by a join); then rows old lacks. A row with an empty key on both sides
    # is matched by pandas, as an Arrow join never matches empty keys.
    if empty_key:
        old = [*old, (None, 0)]
    how = data.draw(st.sampled_from(["first", "in order", "shuffled"]))
    kept = data.draw(st.permutations(old)) if old else []
    kept = kept[: data.draw(st.integers(0, len(kept)))]
    if how == "first":
        kept = old[: len(kept)]
    elif how == "in order":
        kept = [k for k in old if k in kept]
    new = kept + [k for k in extra if k not in old]

    def keyed(pairs: list[tuple[int | None, int]]) -> pa.Table:
        return pa.table(
            {"tow": pa.array([p[0] for p in pairs], pa.int32()), "net": [p[1] for p in pairs]}
        )

    where = {k: i for i, k in enumerate(old)}
    found = row_sources(keyed(old), keyed(new), ("tow", "net"))
    assert found.tolist() == [where.get(k, -1) for k in new]
    by_position = row_sources(keyed(old), keyed(new))  # no key columns: by position
    assert by_position.tolist() == [i if i < len(old) else -1 for i in range(len(new))]


def test_diff_of_a_column_whose_type_changed_falls_back_to_pandas() -> None:
    old = pa.table({"k": pa.array([1, 2], pa.int32()), "v": pa.array([1, 2], pa.int32())})
    new = pa.table({"k": pa.array([2, 1], pa.int32()), "v": pa.array(["2", "x"])})
    d = diff_tables(old, new, ("k",))  # Arrow cannot compare int32 with string
    assert [(c.key, c.old, c.new) for c in d.cells] == [((1,), 1, "x"), ((2,), 2, "2")]


def test_diff_matches_rows_whose_float_key_is_nan() -> None:
    # Arrow's join matches NaN to NaN (unlike null to null), as pandas' index did
    schema = pa.schema([("k", pa.float64()), ("v", pa.int32())])
    old = pa.Table.from_pydict({"k": [1.5, math.nan], "v": [1, 2]}, schema=schema)
    new = pa.Table.from_pydict({"k": [math.nan, 1.5], "v": [3, 1]}, schema=schema)
    d = diff_tables(old, new, ("k",))
    assert (d.added, d.deleted) == ((), ())
    assert [(c.key, c.old, c.new) for c in d.cells] == [((None,), 2, 3)]
