"""EditSession: the pending-edit state behind the editor, at any size."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3grid.diff import diff_tables
from s3grid.errors import SchemaError, ValidationError
from s3grid.model import Master
from s3grid.sample import sample_master
from s3grid.session import EditSession, _Replace
from tests.support.cells import assert_same_table


@pytest.fixture
def session() -> EditSession:
    m = Master(table=sample_master(30), version_id="v0", etag='"e0"', key="data/master.parquet")
    return EditSession(m, key_columns=("tow", "net"), read_only_columns=["vessel"])


def test_edit_leaves_the_loaded_version_untouched(session: EditSession) -> None:
    before = session.base.loc[3, "volume_filtered"]
    session.set_cell(3, "volume_filtered", "9.5")
    assert session.value(3, "volume_filtered") == 9.5
    assert session.base.loc[3, "volume_filtered"] == before  # copy-on-write, not shared
    assert session.master.table.column("volume_filtered")[3].as_py() == before


def test_base_shares_the_tables_memory_and_every_column_still_edits() -> None:
    table = pa.concat_tables([sample_master(50).slice(0, 20), sample_master(50).slice(20)])
    assert table.column("lat_decimal").num_chunks == 2  # as a large master arrives
    m = Master(table=table, version_id="v0", etag='"e0"', key="data/master.parquet")
    session = EditSession(m, key_columns=("tow", "net"))
    # lat_decimal (float, no nulls) is a view of the session's table, not a second copy
    arrow_address = session.master.table.column("lat_decimal").chunk(0).buffers()[1].address
    assert session.base["lat_decimal"].to_numpy().ctypes.data == arrow_address
    before = table.to_pylist()
    # The shared columns are read-only memory: an edit of any type must copy on write.
    edits = {
        "lat_decimal": 1.25,
        "time_start_gmt": None,
        "time_start_local": "2021-05-01 10:00",
        "volume_filtered": None,
        "tow": 99,
        "is_day": True,
        "cruise": "X",
    }
    for column, value in edits.items():
        session.set_cell(7, column, value)
    assert session.value(7, "lat_decimal") == 1.25
    assert session.value(7, "time_start_gmt") is None
    assert session.pending == len(edits)
    assert table.to_pylist() == before  # the loaded version is untouched
    assert session.base.loc[7, "lat_decimal"] == before[7]["lat_decimal"]
    session.undo()
    session.revert_all()
    assert session.to_table().equals(table)


def test_a_table_made_for_saving_does_not_follow_later_edits(session: EditSession) -> None:
    # The editor keeps this table as the version it saved (a lost update's merge goes
    # onto it): Arrow wraps numeric pandas columns without copying, so a later edit
    # must not reach it.
    edits = {
        "lat_decimal": 1.25,
        "volume_filtered": 2.5,
        "min_depth": 3,
        "time_start_gmt": "2021-05-01 10:00",
        "is_day": False,
        "cruise": "X",
    }
    for column, value in edits.items():
        session.set_cell(7, column, value)  # each column is now the session's own copy
    table = session.to_table()
    before = table.to_pylist()
    for column, value in {
        "lat_decimal": 9.0,
        "volume_filtered": None,
        "min_depth": 4,
        "time_start_gmt": None,
        "is_day": True,
        "cruise": "Y",
    }.items():
        session.set_cell(7, column, value)
        session.set_cell(8, column, value)
    session.undo()
    session.delete_rows([2])
    session.add_row({"tow": 500, "net": 1})
    assert table.to_pylist() == before
    assert session.to_table().column("lat_decimal")[7].as_py() == 9.0


def test_undo_of_delete_restores_the_rows_edits(session: EditSession) -> None:
    session.set_cell(3, "volume_filtered", 1.0)
    session.delete_rows([3])
    assert session.pending == 1
    assert session.changes().cells == ()
    assert session.changes().deleted == ((1, 3),)
    session.undo()
    assert session.pending == 1
    assert [(c.key, c.column, c.new) for c in session.changes().cells] == [
        ((1, 3), "volume_filtered", 1.0)
    ]
    session.undo()
    assert session.pending == 0


def test_added_rows_and_deletions_are_tracked(session: EditSession) -> None:
    rid = session.add_row({"tow": 99, "net": 0})
    session.delete_rows([0, rid])
    assert session.added_ids == []
    assert session.deleted_ids == [0]
    session.undo()
    assert session.added_ids == [rid]
    assert session.deleted_ids == []
    assert session.to_table().num_rows == 31


def test_duplicates_cached_and_refreshed_on_key_edits(session: EditSession) -> None:
    assert session.duplicates() == {}
    session.set_cell(1, "net", 0)  # (1, 1) -> (1, 0): a duplicate
    assert session.duplicates() == {(1, 0): [0, 1]}
    session.set_cell(1, "volume_filtered", 5.0)  # not a key: cache stays valid
    assert session.duplicates() == {(1, 0): [0, 1]}
    session.undo()
    session.undo()
    assert session.duplicates() == {}
    session.add_row({"tow": 1, "net": 2})
    assert list(session.duplicates()) == [(1, 2)]


def test_a_deletion_looks_for_duplicates_again_only_if_there_were_some(
    session: EditSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3grid.session as session_mod

    looks = []  # each look at the keys asks diff.keys_unique first
    real = session_mod.keys_unique
    monkeypatch.setattr(session_mod, "keys_unique", lambda t: looks.append(1) or real(t))
    assert session.duplicates() == {}
    session.delete_rows([5])  # no duplicates before: none after, no new look
    assert session.duplicates() == {}
    assert len(looks) == 1
    session.set_cell(1, "net", 0)  # (1, 1) -> (1, 0): a duplicate of row 0
    session.delete_rows([7])  # another row: the duplicate stays
    assert session.duplicates() == {(1, 0): [0, 1]}
    session.delete_rows([0])  # one of the pair: it ends
    assert session.duplicates() == {}
    assert session.undo()  # row 0 comes back, and so does the duplicate
    assert session.duplicates() == {(1, 0): [0, 1]}


def test_refusals(session: EditSession) -> None:
    with pytest.raises(SchemaError, match="tow 1 · net 2, column 'tow'"):  # by its key
        session.set_cell(2, "tow", "x")
    with pytest.raises(ValidationError, match="read-only"):
        session.set_cell(2, "vessel", "R/V Other")
    with pytest.raises(ValidationError, match="No column"):
        session.set_cell(2, "nope", 1)
    with pytest.raises(ValidationError, match="not in the table"):
        session.set_cell(999, "net", 1)
    assert session.pending == 0


def test_a_block_refuses_each_bad_cell_by_its_own_row(session: EditSession) -> None:
    # one bad value in three rows (checked once), one good value, another bad one
    cells = [(r, "max_depth", "3.5") for r in (0, 1, 2)]
    cells += [(3, "max_depth", "70"), (4, "max_depth", "deep")]
    result = session.set_cells(cells)
    assert result.changed == 1 and session.value(3, "max_depth") == 70
    assert [(r.row, r.value) for r in result.refused] == [
        ("tow 1 · net 0", "3.5"),
        ("tow 1 · net 1", "3.5"),
        ("tow 1 · net 2", "3.5"),
        ("tow 1 · net 4", "deep"),
    ]
    for refusal in result.refused:
        assert refusal.reason.startswith(f"{refusal.row}, column 'max_depth': cannot store")
    assert "fractional part" in result.refused[2].reason
    assert "fractional part" not in result.refused[3].reason


def test_window_pages_filter_and_sort(session: EditSession) -> None:
    w = session.window(query="net == 0", sort_by="tow", ascending=False, page=1, page_size=4)
    assert w.matching_rows == 6
    assert w.pages == 2
    assert list(w.frame["tow"]) == [2, 1]
    assert list(w.frame.index) == [5, 0]  # row ids, not positions


_WINDOW_TABLE = pa.table(
    {
        "name": pa.array(["b", None, "a", "b", "c", None, "a", "b"], pa.string()),
        "n": pa.array([2, None, 0, 1, None, 2, 1, 0], pa.int32()),
        "x": pa.array([0.5, float("nan"), 0.1, 0.9, 0.5, None, 0.3, 0.5], pa.float64()),
    }
)
_QUERIES = ["", "n > 0", "x < 0.6", "name == 'b'", "n >= 1 and x > 0.2"]
_COLUMNS = ["name", "n", "x"]
_VALUES = {"name": ["a", "b", "z", None], "n": [0, 1, 3, None], "x": [0.1, 0.5, 2.0, None]}

_window_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("window"),
            st.sampled_from(_QUERIES),
            st.sampled_from([None, *_COLUMNS]),
            st.booleans(),
            st.integers(0, 3),
        ),
        st.tuples(
            st.just("edit"), st.integers(0, 20), st.sampled_from(_COLUMNS), st.integers(0, 3)
        ),
        # the last window again (as paging does), maybe in the other direction
        st.tuples(st.just("again"), st.booleans(), st.integers(0, 3)),
        st.tuples(st.just("add"), st.integers(0, 3)),
        st.tuples(st.just("delete"), st.lists(st.integers(0, 20), min_size=1, max_size=3)),
        st.tuples(st.just("undo"), st.booleans()),
        st.tuples(st.just("revert")),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(_window_steps)
def test_windows_match_pandas_filter_and_sort_between_any_edits(steps: list[tuple]) -> None:
    # The reference is what the window used to do: filter and sort the whole frame in
    # pandas. After every step the last window is asked for again (as paging does): an
    # edit must drop a kept order or filter answer that it changed.
    m = Master(table=_WINDOW_TABLE, version_id="v", etag='"e"', key="k")
    s = EditSession(m)
    last: tuple[str, str | None, bool, int] = ("", None, True, 0)
    for step in steps:
        kind, *args = step
        if kind == "window":
            last = (args[0], args[1], args[2], args[3])
        elif kind == "again":
            flip, page = args
            last = (last[0], last[1], last[2] != flip, page)
        elif kind == "edit":
            pos, column, value = args
            if len(s.df):
                rid = int(s.df.index[pos % len(s.df)])
                s.set_cell(rid, column, _VALUES[column][value])
        elif kind == "add":
            s.add_row({c: _VALUES[c][args[0]] for c in _COLUMNS})
        elif kind == "delete":
            if len(s.df):
                s.delete_rows([int(s.df.index[i % len(s.df)]) for i in args[0]])
        elif kind == "revert":
            s.revert_all()
        else:
            (s.redo if args[0] else s.undo)()
        query, sort_by, ascending, page = last
        ref = s.df
        if query:
            ref = ref[ref.eval(query).fillna(False).to_numpy(dtype=bool)]
        if sort_by:
            ref = ref.sort_values(sort_by, ascending=ascending, kind="stable")
        for size in (3, 100):  # one page, and every matching row in order
            w = s.window(
                query=query, sort_by=sort_by, ascending=ascending, page=page, page_size=size
            )
            assert w.matching_rows == len(ref), step
            start = w.page * size
            pd.testing.assert_frame_equal(w.frame, ref.iloc[start : start + size])


_row_set_steps = st.lists(
    st.one_of(
        st.tuples(st.just("delete"), st.lists(st.integers(0, 20), min_size=1, max_size=4)),
        st.tuples(st.just("add"), st.integers(0, 3)),
        st.tuples(st.just("undo")),
        st.tuples(st.just("redo")),
        st.tuples(st.just("revert")),
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_COLUMNS), st.booleans(), _row_set_steps)
def test_rows_put_back_take_their_place_in_a_kept_sort(
    column: str, ascending: bool, steps: list[tuple]
) -> None:
    # Undo of a deletion and redo of an add insert rows into a sorted window's kept
    # order instead of sorting again; the order must be what pandas' stable sort of the
    # whole frame gives, ties and missing values included.
    import s3grid.window as window_mod

    sorts = resorts = 0
    real = window_mod.sorted_positions

    def counting(values: pd.Series, asc: bool) -> Any:
        nonlocal sorts
        sorts += 1
        return real(values, asc)

    s = EditSession(Master(table=_WINDOW_TABLE, version_id="v", etag='"e"', key="k"))
    with patch.object(window_mod, "sorted_positions", counting):
        s.window(sort_by=column, ascending=ascending)
        for kind, *args in steps:
            if kind == "delete" and len(s.df):
                s.delete_rows([int(s.df.index[i % len(s.df)]) for i in args[0]])
            elif kind == "add":
                s.add_row({c: _VALUES[c][args[0]] for c in _COLUMNS})
            elif kind in ("undo", "redo"):
                stack = s._undo if kind == "undo" else s._redo
                # a Revert all (and its undo) replaces the rows: that sorts again
                resorts += bool(stack) and isinstance(stack[-1], _Replace)
                getattr(s, kind)()
            elif kind == "revert":
                resorts += s.revert_all() > 0
            w = s.window(sort_by=column, ascending=ascending, page_size=100)
            ref = s.df.sort_values(column, ascending=ascending, kind="stable")
            pd.testing.assert_frame_equal(w.frame, ref, obj=str((kind, *args)))
    # every deletion, add, undo and redo of them kept the order; Revert all sorts again
    assert sorts == 1 + resorts


def test_a_sort_order_left_out_of_date_is_not_carried_through_a_later_edit() -> None:
    # Revert all leaves the kept order out of date; a deletion right after it (no window
    # asked in between) must not renumber that old order and serve it as current.
    table = pa.table({"x": pa.array([5.0, 3.0, 1.0, 4.0])})
    s = EditSession(Master(table=table, version_id="v", etag='"e"', key="k"))
    s.window(sort_by="x")
    s.add_row({"x": 0.5})
    assert list(s.window(sort_by="x").frame.index) == [4, 2, 1, 3, 0]
    s.revert_all()
    s.delete_rows([0])
    assert list(s.window(sort_by="x").frame.index) == [2, 1, 3]
    s.add_row({"x": 2.0})  # and an insertion after it is placed into a current order
    assert list(s.window(sort_by="x").frame.index) == [2, 5, 1, 3]  # ids are not reused


def test_an_undo_in_a_sort_by_a_column_without_order_sorts_again() -> None:
    # pandas sorts an unordered categorical (an Arrow dictionary column) by its
    # categories, but refuses to compare its values with "<": the undo must still work.
    table = pa.table(
        {"c": pa.array(["b", "a", "c", "a"]).dictionary_encode(), "x": [1.0, 2.0, 3.0, 4.0]}
    )
    s = EditSession(Master(table=table, version_id="v", etag='"e"', key="k"))
    assert list(s.window(sort_by="c").frame.index) == [0, 1, 3, 2]  # categories: b, a, c
    s.delete_rows([1])
    assert s.undo()
    assert list(s.window(sort_by="c").frame.index) == [0, 1, 3, 2]
    assert len(s.df) == 4


@settings(max_examples=100, deadline=None)
@given(st.sets(st.integers(0, 40), min_size=1), st.data())
def test_rows_put_back_or_cut_out_land_in_row_id_order(ids: set[int], data: st.DataObject) -> None:
    from s3grid.rowsplice import insert_by_id, without_rows

    everything = pd.DataFrame(
        {"x": [float(i) for i in sorted(ids)], "s": [str(i) for i in sorted(ids)]},
        index=pd.Index(sorted(ids), name="row"),
    )
    back = sorted(data.draw(st.sets(st.sampled_from(sorted(ids)), min_size=1)))
    frame, rows = everything.drop(index=back), everything.loc[back]
    for splice_max in (0, 1000):  # sorted in, and spliced in
        put_back = insert_by_id(frame, rows, splice_max=splice_max)
        pd.testing.assert_frame_equal(put_back, everything)
        # and cut out again, by position: what drop by row id gives
        positions = everything.index.get_indexer(back)
        cut = without_rows(everything, positions, splice_max=splice_max)
        pd.testing.assert_frame_equal(cut, frame)


def test_only_columns_pandas_can_view_are_joined_into_one_chunk() -> None:
    # A saved table can arrive in chunks (an undone deletion splices rows back). Float
    # and timestamp columns are joined so the base can view them; strings and nullable
    # ints are converted by pandas anyway, so joining them would copy them for nothing.
    table = pa.concat_tables([sample_master(30).slice(0, 10), sample_master(30).slice(10)])
    m = Master(table=table, version_id="v0", etag='"e0"', key="data/master.parquet")
    s = EditSession(m, key_columns=("tow", "net"))
    chunks = {name: s.master.table.column(name).num_chunks for name in table.column_names}
    assert chunks["lat_decimal"] == chunks["time_start_gmt"] == 1
    assert chunks["vessel"] == chunks["tow"] == 2
    arrow_address = s.master.table.column("lat_decimal").chunk(0).buffers()[1].address
    assert s.base["lat_decimal"].to_numpy().ctypes.data == arrow_address
    assert s.to_table().equals(table)
    assert list(s.window(sort_by="vessel", page_size=30).frame["vessel"]) == sorted(
        table.column("vessel").to_pylist()
    )


def test_paging_a_sorted_window_does_not_sort_again(
    session: EditSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3grid.window as window_mod

    sorts: list[tuple[str, int]] = []  # (column, rows sorted)
    real = window_mod.sorted_positions

    def counting(column: pd.Series, ascending: bool) -> Any:
        sorts.append((str(column.name), len(column)))
        return real(column, ascending)

    monkeypatch.setattr(window_mod, "sorted_positions", counting)
    for page in range(3):
        session.window(sort_by="volume_filtered", page=page, page_size=5)
    assert sorts == [("volume_filtered", 30)]
    session.set_cell(4, "lat_decimal", 1.5)  # not the sorted column: the order holds
    session.window(sort_by="volume_filtered", page=1, page_size=5)
    assert len(sorts) == 1
    session.set_cell(4, "volume_filtered", -1.0)  # the sorted column: sorted again
    first = session.window(sort_by="volume_filtered", page=0, page_size=5)
    assert len(sorts) == 2
    assert first.frame.index[0] == 4
    session.delete_rows([4])  # the rest keeps its order: no new sort
    after = session.window(sort_by="volume_filtered", page_size=5).frame
    assert list(after.index[:4]) == list(first.frame.index[1:])
    assert len(sorts) == 2
    session.undo()  # the row comes back to its place in the order: no new sort
    assert session.window(sort_by="volume_filtered", page_size=5).frame.index[0] == 4
    assert len(sorts) == 2
    many = [int(i) for i in session.df.index[: window_mod.PLACE_MAX + 1]]
    session.delete_rows(many)
    session.undo()  # too many rows to place one by one: sorted again
    assert session.window(sort_by="volume_filtered", page_size=5).frame.index[0] == 4
    assert len(sorts) == 3
    # With a filter, only its matching rows are sorted, once for every page.
    matching = session.window(query="net == 0", sort_by="tow", page_size=5).matching_rows
    session.window(query="net == 0", sort_by="tow", page=1, page_size=5)
    assert sorts[3:] == [("tow", matching)]
    assert 0 < matching < 30


_CONTENT_MASTER = pa.table(
    {
        "k": pa.array([3, 1, 4, 5, 9, 2, 6], pa.int32()),
        "name": pa.array(["c", "a", None, "e", "i", "b", "f"]),
        "x": pa.array([0.3, 0.1, 0.4, None, 0.9, 0.2, 0.6]),
    }
)


@settings(max_examples=200, deadline=None)
@given(
    keep=st.lists(st.booleans(), min_size=7, max_size=7),
    edits=st.lists(
        st.tuples(st.integers(0, 6), st.sampled_from(["name", "x"]), st.integers(0, 3)),
        max_size=4,
    ),
    new_keys=st.lists(st.sampled_from([7, 8, 10, 11]), unique=True, max_size=2),
    shuffle=st.booleans(),
)
def test_content_becomes_exactly_its_diff_as_pending_edits(
    keep: list[bool],
    edits: list[tuple[int, str, int]],
    new_keys: list[int],
    shuffle: bool,
) -> None:
    # A merge's result on the master: some rows deleted, cells changed, rows added,
    # maybe in another order. The session must hold exactly that content (in row-id
    # order), and pend exactly what diff_tables finds between the two.
    values = {"name": ["a", "z", None, "q"], "x": [0.1, 5.5, None, float("nan")]}
    rows = _CONTENT_MASTER.to_pylist()
    for pos, column, value in edits:
        rows[pos][column] = values[column][value]
    kept = [r for r, k in zip(rows, keep, strict=True) if k]
    added = [{"k": k, "name": "new", "x": float(k)} for k in new_keys]
    content = pa.Table.from_pylist(
        (kept[::-1] if shuffle else kept) + added, schema=_CONTENT_MASTER.schema
    )
    m = Master(table=_CONTENT_MASTER, version_id="v", etag='"e"', key="k")
    s = EditSession.from_content(m, content, key_columns=("k",))
    # NaN stays NaN and null stays null, though pandas holds both as NaN
    expected = pa.Table.from_pylist(kept + added, schema=_CONTENT_MASTER.schema)
    assert_same_table(s.to_table(), expected)
    want = diff_tables(_CONTENT_MASTER, content, ("k",))
    got = s.changes()
    assert sorted(map(repr, got.cells)) == sorted(map(repr, want.cells))
    assert sorted(got.added) == sorted(want.added)
    assert sorted(got.deleted) == sorted(want.deleted)
    assert s.pending == len(want.cells) + len(want.added) + len(want.deleted)


def test_content_shares_the_master_columns_it_does_not_change() -> None:
    table = sample_master(100)
    m = Master(table=table, version_id="v", etag='"e"', key="k")
    volume = table.column("volume_filtered").to_pylist()  # nulls stay null (not NaN)
    volume[7] = 1234.5
    content = table.set_column(
        table.schema.get_field_index("volume_filtered"),
        "volume_filtered",
        pa.array(volume, pa.float64()),
    )
    s = EditSession.from_content(m, content, key_columns=("tow", "net"))
    assert s.pending == 1
    assert s.value(7, "volume_filtered") == 1234.5
    # the unchanged float column is still the master's memory, the changed one a copy
    assert np.shares_memory(s.df["lat_decimal"].to_numpy(), s.base["lat_decimal"].to_numpy())
    assert not np.shares_memory(
        s.df["volume_filtered"].to_numpy(), s.base["volume_filtered"].to_numpy()
    )


def test_large_master_window_and_duplicates_are_vectorised() -> None:
    big = sample_master(1_000_000)
    s = EditSession(
        Master(table=big, version_id="v", etag='"e"', key="k"), key_columns=("tow", "net")
    )
    w = s.window(query="tow == 180000 and net == 0", page_size=10)
    (rid,) = w.frame.index
    s.set_cell(int(rid), "volume_filtered", 1.5)
    assert s.duplicates() == {}
    assert s.pending == 1
    out = s.to_table()
    assert out.num_rows == 1_000_000
    assert out.schema == big.schema
    assert out.column("volume_filtered")[int(rid)].as_py() == 1.5
    assert isinstance(out, pa.Table)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", None]), st.one_of(st.none(), st.integers(0, 2))),
        min_size=1,
        max_size=12,
    )
)
def test_duplicates_match_pandas_on_any_keys(rows: list[tuple[str | None, int | None]]) -> None:
    # the Arrow fast path may only ever answer "none"; empty keys go to pandas
    table = pa.table(
        {
            "name": pa.array([r[0] for r in rows], pa.string()),
            "n": pa.array([r[1] for r in rows], pa.int32()),
        }
    )
    m = Master(table=table, version_id="v0", etag='"e0"', key="data/master.parquet")
    found = EditSession(m, key_columns=("name", "n")).duplicates()
    frame = table.to_pandas()
    dup = frame[frame.duplicated(keep=False)]
    expected = {
        tuple(None if pd.isna(v) else v for v in key): sorted(ids)
        for key, ids in dup.groupby(["name", "n"], dropna=False).groups.items()
    }
    assert {k: sorted(v) for k, v in found.items()} == expected


def test_merged_content_becomes_pending_edits_on_the_master() -> None:
    table = sample_master(30)
    m = Master(table=table, version_id="v0", etag='"e0"', key="data/master.parquet")
    frame = table.to_pandas()
    frame.loc[5, "volume_filtered"] = 555.5
    extra = frame.iloc[[0]].assign(tow=99, net=9)
    content = pd.concat([frame.drop(index=3), extra]).iloc[::-1]  # any order
    schema = table.schema
    session = EditSession.from_content(
        m,
        pa.Table.from_pandas(content, schema=schema, preserve_index=False),
        key_columns=("tow", "net"),
    )
    assert session.deleted_ids == [3]
    assert session.added_ids == [30]
    assert [(c.key, c.column, c.old, c.new) for c in session.changes().cells] == [
        (session.key_of(5), "volume_filtered", table.column("volume_filtered")[5].as_py(), 555.5)
    ]
    assert session.pending == 3
    expected = pd.concat([frame.drop(index=3), extra]).reset_index(drop=True)
    assert session.to_table().equals(
        pa.Table.from_pandas(expected, schema=schema, preserve_index=False)
    )


def categorical_session() -> EditSession:
    table = pa.table(
        {"k": pa.array([1, 2, 3, 4], pa.int32()), "cat": pa.array(["x", "y", "y", None])}
    )
    table = table.set_column(1, "cat", table.column("cat").dictionary_encode())
    m = Master(table=table, version_id="v0", etag='"e0"', key="data/master.parquet")
    session = EditSession(m, key_columns=("k",))
    session.new_categories = True
    return session


def categories(session: EditSession) -> list[str]:
    """The column's categories in the session: what its dropdown offers."""
    return list(session.df["cat"].cat.categories)


def test_an_undo_takes_back_the_category_its_edit_added() -> None:
    s = categorical_session()
    s.set_cell(0, "cat", "z")
    assert categories(s) == ["x", "y", "z"]
    s.undo()
    assert categories(s) == ["x", "y"]  # undone: the dropdown no longer offers it
    assert s.pending == 0
    s.redo()
    assert s.value(0, "cat") == "z" and categories(s) == ["x", "y", "z"]
    s.set_cells([(1, "cat", "z"), (2, "cat", "x")])
    s.set_cell(0, "cat", "y")
    s.undo()  # "z" still in rows 0 and 1 (and a loaded category stays, used or not)
    s.undo()
    assert categories(s) == ["x", "y", "z"]
    assert s.to_table().column("cat").to_pylist() == ["z", "y", "y", None]


def test_rows_put_back_keep_a_category_dropped_meanwhile() -> None:
    s = categorical_session()
    s.set_cell(3, "cat", "z")  # the empty cell: code -1 must not count as a category
    s.delete_rows([3])
    s.set_cell(0, "cat", "y")
    s.undo()  # "z" is in no row now: dropped
    assert categories(s) == ["x", "y"]
    s.undo()  # the deleted row comes back with its "z", not empty
    assert s.value(3, "cat") == "z" and categories(s) == ["x", "y", "z"]
    assert s.to_table().column("cat").to_pylist() == ["x", "y", "y", "z"]
    s.undo()
    assert s.value(3, "cat") is None and categories(s) == ["x", "y"]
    row = s.add_row({"k": 9, "cat": "w"})
    s.undo()
    assert categories(s) == ["x", "y"]
    s.redo()
    assert s.value(row, "cat") == "w"
