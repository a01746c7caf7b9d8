"""The editor for a working day: safe by default, plain messages, colleagues visible.

The ``editor`` (20-row pages, ``vessel`` read-only) and ``fe`` fixtures are
test_editor.py's, shared through tests/conftest.py."""

from __future__ import annotations

import html
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from s3grid import MasterStore, ValidationError
from s3grid.display import cell_text, row_label, say, when
from s3grid.editor import Editor
from tests.support.frontend import FrontEnd, save
from tests.support.s3 import all_objects


def msg(editor: Editor) -> str:
    """The message line's text, as the user reads it."""
    return html.unescape(re.sub("<[^>]+>", "", editor.message.value))


# ------------------------------------------------------------------ safe by default


def test_a_save_needs_a_note_and_keeps_the_edits_without_one(
    editor: Editor, fe: FrontEnd, master_store: MasterStore, s3: Any, bucket: str
) -> None:
    before = all_objects(s3, bucket)
    fe.type_into(3, "volume_filtered", 42.5)
    for blank in ("", "   \n"):
        editor.note.value = blank
        assert editor.save() is False
        assert "Write a note first" in msg(editor)
    assert all_objects(s3, bucket) == before
    assert editor.session is not None and editor.session.pending == 1
    assert "Required" in editor.note.placeholder
    m = master_store.load()
    with pytest.raises(ValidationError, match="needs a note"):
        master_store.save(m.to_pandas(), base=m, note=" ")
    assert all_objects(s3, bucket) == before


def test_a_save_with_nothing_pending_writes_nothing(
    editor: Editor, fe: FrontEnd, s3: Any, bucket: str
) -> None:
    before = all_objects(s3, bucket)
    editor.note.value = "nothing really"
    assert editor.save() is False
    assert "Nothing to save" in msg(editor) and "Nothing was written" in msg(editor)
    fe.type_into(3, "volume_filtered", 42.5)
    editor.undo()  # an edit undone is nothing pending either
    assert editor.save() is False
    assert all_objects(s3, bucket) == before
    assert editor.note.value == "nothing really"  # kept for a save that has something


def test_revert_all_is_one_step_that_undo_takes_back(editor: Editor, fe: FrontEnd) -> None:
    s = editor.session
    assert s is not None
    fe.type_into(3, "volume_filtered", 42.5)
    fe.type_into(4, "net_size", 2.5)
    editor.delete_rows([5])
    editor.revert_all()
    assert s.pending == 0 and s.value(3, "volume_filtered") != 42.5 and 5 in s.df.index
    assert "Reverted 3 pending change(s)" in msg(editor) and "Undo" in msg(editor)
    editor.undo()
    assert s.pending == 3
    assert s.value(3, "volume_filtered") == 42.5 and s.value(4, "net_size") == 2.5
    assert 5 not in s.df.index
    editor.undo()  # the steps before the revert are still there
    assert 5 in s.df.index and s.pending == 2
    editor.redo()
    editor.redo()  # and the revert again
    assert s.pending == 0
    editor.revert_all()
    assert "Nothing to revert" in msg(editor)


def test_delete_names_the_rows_by_key_and_undo_brings_them_back(editor: Editor) -> None:
    s = editor.session
    assert s is not None
    labels = [s.label(r) for r in (0, 1)]
    assert labels == ["tow 1 · net 0", "tow 1 · net 1"]
    assert editor.delete_rows([0, 1]) == 2
    assert f"Deleted 2 row(s): {labels[0]}, {labels[1]}." in msg(editor)
    editor.undo()
    assert {0, 1} <= set(s.df.index)
    assert "Undone" in msg(editor)


def test_new_rows_take_values_in_read_only_columns(editor: Editor) -> None:
    s = editor.session
    assert s is not None
    assert editor.edit_cell(0, "vessel", "R/V Other") is False  # a loaded row: protected
    assert "read-only" in msg(editor) and "rows you add take a value there" in msg(editor)
    rid = editor.add_row({"tow": 900, "net": 0})
    assert rid is not None
    assert editor.edit_cell(rid, "vessel", "R/V Sikuliaq") is True
    assert s.value(rid, "vessel") == "R/V Sikuliaq"
    assert s.is_read_only(0, "vessel") and not s.is_read_only(rid, "vessel")


# ------------------------------------------------------------------ plain messages


def test_values_rows_and_times_read_as_a_person_writes_them() -> None:
    stamp = pd.Timestamp("2023-03-02 18:24:58")
    assert cell_text(stamp) == "2023-03-02 18:24:58"
    assert say(datetime(2023, 3, 2, 18, 24, 58)) == "2023-03-02 18:24:58"
    assert (say(None), say(""), say(True), say(float("nan")), say(3e40)) == (
        "empty",
        '""',
        "true",
        "NaN",
        "3e+40",
    )
    assert row_label(("tow", "net"), (4, 1)) == "tow 4 · net 1"
    assert row_label(("tow", "net"), (None, None)) == "tow ? · net ?"
    assert row_label((), (17,)) == "row 17"
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    three = now - timedelta(minutes=3)
    assert when(three, now) == f"3 min ago ({three.astimezone().strftime('%H:%M')})"
    assert when(now - timedelta(seconds=5), now).startswith("just now")
    assert when(now - timedelta(days=30), now) == (now - timedelta(days=30)).astimezone().strftime(
        "%Y-%m-%d %H:%M"
    )


def test_messages_name_rows_by_key_and_show_plain_values(editor: Editor, fe: FrontEnd) -> None:
    fe.type_into(4, "net_size", "2.5")
    assert msg(editor) == "tow 1 · net 4: net_size = 2.5"
    fe.type_into(4, "net_size", "abc")
    text = msg(editor)
    assert text.startswith("tow 1 · net 4, column 'net_size': cannot store 'abc'")
    assert text.endswith("The cell keeps 2.5.")
    editor.undo()
    assert "Undone: tow 1 · net 4 · net_size is" in msg(editor)
    editor.changes_button.value = True
    assert "No pending changes." in editor.changes_panel.value
    assert "<table" not in editor.changes_panel.value
    fe.type_into(4, "net_size", "3.5")
    editor.add_row()
    panel = html.unescape(editor.changes_panel.value)
    assert "<th>was</th><th>now</th>" in panel
    assert "<td>tow 1 · net 4</td><td>net_size</td>" in panel and "<td>3.5</td>" in panel
    assert "<td>tow ? · net ?</td><td>(row added)</td>" in panel
    assert "(None, None)" not in panel


def test_paging_clears_the_message_and_a_sort_says_what_it_sorted(
    editor: Editor, fe: FrontEnd
) -> None:
    fe.type_into(2, "net_size", "2.5")
    assert msg(editor)
    editor.next_button.click()
    assert msg(editor) == ""
    editor.sort_by.value = "tow"
    editor.descending.value = True
    assert msg(editor) == "50 row(s) sorted by tow (descending, over all of them)."
    assert "page 1/3 · 50 rows" in editor.page_label.value


def test_the_browser_hears_which_rows_are_another_window(
    editor: Editor, fe: FrontEnd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # another window scrolls to the top with nothing selected; the same window after an
    # edit or a save keeps the browser's scroll position and selection
    said: list[str] = []
    monkeypatch.setattr(editor.grid_patch, "send", lambda content: said.append(content["event"]))
    editor.next_button.click()
    assert said == ["new-window"]
    fe.type_into(2, "net_size", "2.5")
    editor.tools.value.value = "0.5"
    editor.grid.select(0, 13, 3, 13, clear_mode="all")  # net_size, rows 0-3
    editor.tools.set_in_selection()
    assert "in 4 cell(s): 4 cell(s) changed" in msg(editor)  # a refresh of the window
    assert save(editor, "nets")
    assert said == ["new-window"]
    editor.filter.value = "tow == 2"
    editor.sort_by.value = "net"
    assert said == ["new-window"] * 3


def test_the_status_line_says_when_the_last_save_was(editor: Editor, fe: FrontEnd) -> None:
    fe.type_into(3, "volume_filtered", 42.5)
    editor.note.value = "a note"
    assert editor.save() is True
    assert "your last save: just now (" in editor.status.value
    assert "Z" not in editor.status.value.split("your last save")[1]


# ------------------------------------------------------------------ colleagues


def wait_for(condition: Any, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_an_open_editor_hears_of_a_colleagues_save(master_store: MasterStore) -> None:
    editor = Editor(master_store, watch=0.1)
    try:
        assert editor.watch is not None and editor.watch.running
        assert editor.edit_cell(0, "net_size", 9.5)
        colleague = MasterStore(master_store.cfg)
        m = colleague.load()
        df = m.to_pandas()
        df.loc[1, "volume_filtered"] = 7.0
        colleague.save(df, base=m, note="fix tow 1 volume")
        assert wait_for(lambda: "saved a new version" in editor.notice.value)
        notice = html.unescape(editor.notice.value)
        assert "just now" in notice and "'fix tow 1 volume'" in notice
        assert "Reload merges it with your edits." in notice
        editor.reload()  # takes it in: no longer news
        assert editor.notice.value == ""
        assert editor.session is not None and editor.session.pending == 1
    finally:
        editor.close()
    assert wait_for(lambda: not editor.watch.running)  # type: ignore[union-attr]


def test_a_newer_editor_of_the_same_master_takes_over_the_look(
    master_store: MasterStore,
) -> None:
    # a notebook cell run again: the editor it showed before stays open, unseen
    first = Editor(master_store, watch=60)
    second = Editor(master_store, watch=60)
    try:
        assert first.watch is not None and second.watch is not None
        assert wait_for(lambda: not first.watch.running)  # type: ignore[union-attr]
        assert second.watch.running
        unwatched = Editor(master_store, watch=False)  # asks for no look: takes none over
        assert second.watch.running
        unwatched.close()
    finally:
        first.close()
        second.close()


def test_no_look_while_a_save_runs_and_none_when_asked_not_to(
    master_store: MasterStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Editor(master_store, watch=False).watch is None
    editor = Editor(master_store, watch=False)
    heads: list[str] = []
    real = master_store.bucket.head

    def head(*args: Any, **kwargs: Any) -> Any:
        heads.append("x")
        return real(*args, **kwargs)

    monkeypatch.setattr(master_store.bucket, "head", head)
    with editor.controller._io:  # as a save holds it
        assert editor.controller.colleague_notice() is None
    assert heads == []
    assert editor.controller.colleague_notice() is None  # unchanged master: nothing to say
    assert heads == ["x"]


def test_a_master_table_with_timestamps_shows_them_readably(store: MasterStore) -> None:
    table = pa.table(
        {
            "tow": pa.array([1], pa.int32()),
            "net": pa.array([0], pa.int32()),
            "time": pa.array([datetime(2023, 3, 2, 18, 24, 58)], pa.timestamp("us")),
        }
    )
    store.create(table, note="one row")
    editor = Editor(store)
    assert editor.grid.data["time"].iloc[0] == "2023-03-02 18:24:58"
    assert editor.edit_cell(0, "time", "2023-03-02 18:25:00")
    assert msg(editor) == "tow 1 · net 0: time = 2023-03-02 18:25:00"


# ------------------------------------------------------------------ the header menu


def header_menu(editor: Editor, transform: dict[str, Any]) -> None:
    """What gridpatch.js sends when the grid's header menu asks for a sort or filter."""
    editor.grid_patch._on_front_end_msg(
        editor.grid_patch, {"event": "header-transform", "transform": transform}, []
    )


def test_the_header_menu_sorts_the_whole_master_in_the_kernel(editor: Editor) -> None:
    master = editor.session.df  # type: ignore[union-attr]
    header_menu(editor, {"type": "sort", "column": "tow", "columnIndex": 3, "desc": True})
    assert (editor.sort_by.value, editor.descending.value) == ("tow", True)
    shown = editor.grid.data
    assert int(shown["tow"].iloc[0]) == int(master["tow"].max())  # of all 50 rows, not the page
    assert msg(editor) == "50 row(s) sorted by tow (descending, over all of them)."
    header_menu(editor, {"type": "sort", "column": "⚑", "desc": False})
    assert "row status" in msg(editor) and editor.sort_by.value == "tow"


def test_the_header_menu_filters_through_the_filter_box(editor: Editor) -> None:
    header_menu(editor, {"type": "filter", "column": "tow", "operator": "=", "value": "3"})
    assert editor.filter.value == "`tow` == 3"
    assert set(editor.grid.data["tow"]) == {"3"}
    header_menu(editor, {"type": "filter", "column": "net", "operator": "in", "value": ["0", "1"]})
    assert editor.filter.value == "(`tow` == 3) and (`net` in [0, 1])"
    assert sorted(editor.grid.data["net"]) == ["0", "1"]
    header_menu(editor, {"type": "filter", "column": "tow", "operator": "contains", "value": "3"})
    assert "does not apply to 'tow'" in msg(editor)
    assert editor.filter.value == "(`tow` == 3) and (`net` in [0, 1])"  # unchanged


def test_header_filters_become_queries_of_the_columns_type() -> None:
    from s3grid.window import header_query

    f = pa.field
    assert header_query({"operator": ">=", "value": "2.5"}, f("v", pa.float64())) == "`v` >= 2.5"
    assert header_query({"operator": "=", "value": ""}, f("v", pa.float64())) == "`v`.isna()"
    assert header_query({"operator": "notempty"}, f("v", pa.int32())) == "`v`.notna()"
    assert (
        header_query({"operator": "between", "value": ["1", "3"]}, f("n", pa.int32()))
        == "(`n` >= 1) and (`n` <= 3)"
    )
    assert (
        header_query({"operator": "in", "value": ["a", ""]}, f("s", pa.string()))
        == "`s` in ['a'] or `s`.isna()"
    )
    assert (
        header_query({"operator": "startswith", "value": "R/V"}, f("s", pa.string()))
        == "`s`.str.startswith('R/V')"
    )
    when_ = header_query({"operator": ">", "value": "2023-03-02 18:00"}, f("t", pa.timestamp("us")))
    assert when_ == "`t` > '2023-03-02 18:00:00'"
    with pytest.raises(ValidationError, match="cannot store 'x'"):
        header_query({"operator": "<", "value": "x"}, f("n", pa.int32()))


def test_a_header_filter_on_a_decimal_column_compares_exactly() -> None:
    from decimal import Decimal

    from s3grid.window import header_query, matching

    d = pa.field("d", pa.decimal128(10, 2))
    frame = pd.DataFrame({"d": [Decimal("0.10"), Decimal("2.50"), None, Decimal("3.00")]})

    def rows(transform: dict[str, Any]) -> list[int]:
        return np.flatnonzero(matching(frame, header_query(transform, d))).tolist()

    assert header_query({"operator": "=", "value": "0.1"}, d) == "`d` == @decimal('0.10')"
    assert rows({"operator": "=", "value": "0.1"}) == [0]  # 0.1 as a float is not 0.10
    assert rows({"operator": ">=", "value": "2.5"}) == [1, 3]
    assert rows({"operator": "between", "value": ["0.1", "2.5"]}) == [0, 1]
    assert rows({"operator": "in", "value": ["0.1", "3", ""]}) == [0, 2, 3]
    assert matching(frame, "d < @decimal('1')").tolist() == [True, False, False, False]
    with pytest.raises(ValidationError, match="not a decimal number"):
        header_query({"operator": "<", "value": "abc"}, d)


def test_column_widths_fit_headers_and_values(editor: Editor) -> None:
    from s3grid.display import MAX_COLUMN_PX, column_width

    widths = editor.grid.column_widths
    assert set(widths) == {"⚑", *editor.session.columns}  # type: ignore[union-attr]
    for name in ("lat_decimal", "long_decimal", "min_depth", "max_depth", "vessel"):
        assert widths[name] >= len(name) * 8 + 28  # the header reads whole
    longest = max(len(v) for v in editor.grid.data["lat_decimal"])
    assert widths["lat_decimal"] >= longest * 7 + 16  # so does a value: no ellipsis
    assert column_width("note", ["x" * 500]) == MAX_COLUMN_PX


def test_cells_are_marked_edited_and_in_conflict(
    editor: Editor, fe: FrontEnd, master_store: MasterStore
) -> None:
    fe.type_into(4, "net_size", "2.5")
    fe.type_into(4, "volume_filtered", "7.5")
    editor.refresh()
    assert editor.grid.data["⚑"].iloc[4] == "edited: volume_filtered, net_size"
    renderer = editor.grid.renderers["net_size"]
    assert "' net_size,'" in renderer.background_color.value.replace('"', "'")
    m = master_store.load()
    df = m.to_pandas()
    df.loc[4, "net_size"] = 9.5
    master_store.save(df, base=m, note="colleague")
    editor.note.value = "mine"
    assert editor.save() is False and editor.merge is not None
    assert editor.grid.data["⚑"].iloc[4] == "conflict: net_size"
    editor.resolve({c.id: "mine" for c in editor.merge.conflicts})
    editor.apply_merge()
    assert editor.grid.data["⚑"].iloc[4].startswith("edited: ")
