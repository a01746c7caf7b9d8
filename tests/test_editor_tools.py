"""The editor's tools in the kernel: paste, fill down, set value, find, summary, history
and versions (the browser's side is in tests/e2e)."""

from __future__ import annotations

import math
import re

import pyarrow as pa
import pytest

from s3grid import MasterStore
from s3grid.clipboard import parse_tsv, to_tsv
from s3grid.editor import Editor, column_editors
from s3grid.errors import ValidationError
from s3grid.tools import STATUS
from tests.support.frontend import save


def col(editor: Editor, name: str) -> int:
    """The body column index of ``name`` (the ⚑ column is 0)."""
    return [STATUS, *editor.session.columns].index(name)  # type: ignore[union-attr]


def test_a_paste_checks_every_value_applies_the_rest_and_undoes_as_one(editor: Editor) -> None:
    s = editor.session
    assert s is not None
    ids = editor._window_ids
    before = [s.value(ids[r], "volume_filtered") for r in range(3)]
    text = "7\t1.5\nseven\t2.5\n9\t3.5\n"  # max_depth, volume_filtered; one bad int
    result = editor.tools.paste(text, 0, col(editor, "max_depth"))
    assert result is not None
    assert result.changed == 5
    assert [(r.row, r.column, r.value) for r in result.refused] == [
        ("tow 1 · net 1", "max_depth", "seven")
    ]
    assert [s.value(ids[r], "volume_filtered") for r in range(3)] == [1.5, 2.5, 3.5]
    assert s.value(ids[2], "max_depth") == 9
    assert "seven" in editor.tools.panel.value and "not a number" in editor.tools.panel.value
    assert "1 value(s) refused" in editor.message.value
    editor.undo()  # the whole paste, in one step
    assert [s.value(ids[r], "volume_filtered") for r in range(3)] == before
    assert s.pending == 0
    editor.redo()
    assert s.pending == 5


def test_a_paste_past_the_last_row_offers_to_add_rows(editor: Editor) -> None:
    s = editor.session
    assert s is not None
    editor._goto(2)  # the last page: rows 40-49
    text = "\n".join(f"900\t{n}\t12.5" for n in range(3))  # tow, net, lat_decimal
    assert editor.tools.paste(text, 9, col(editor, "tow")) is None  # asked first
    assert "2 more than the table has" in editor.message.value
    assert len(editor.tools.offer.children) == 2
    assert s.pending == 0
    result = editor.tools.paste(text, 9, col(editor, "tow"), add_rows=True)
    assert result is not None and len(result.added) == 2
    assert [s.key_of(r) for r in result.added] == [(900, 1), (900, 2)]
    assert s.value(result.added[1], "lat_decimal") == 12.5
    editor.undo()
    assert len(s.df) == 50 and s.pending == 0
    cut = editor.tools.paste(text, 9, col(editor, "tow"), add_rows=False)
    assert cut is not None and cut.added == () and len(s.df) == 50


def test_a_paste_lands_on_the_rows_shown_in_a_sorted_filtered_window(editor: Editor) -> None:
    s = editor.session
    assert s is not None
    editor.filter.value = "net == 2"
    editor.sort_by.value = "tow"
    editor.descending.value = True
    shown = list(editor._window_ids[:2])
    editor.tools.paste("first\nsecond", 0, col(editor, "cruise"))
    assert [s.value(r, "cruise") for r in shown] == ["first", "second"]
    assert all(s.value(r, "net") == 2 for r in shown)
    with pytest.raises(ValidationError, match="no text"):
        parse_tsv("\n")


def test_copy_text_pastes_back_identically() -> None:
    cells = [["a\tb", 'say "hi"', "two\nlines"], ["", "3.5", "nan"]]
    assert [list(r) for r in parse_tsv(to_tsv(cells)).rows] == cells
    # Excel's own: CRLF line ends and a trailing newline
    assert parse_tsv("1\t2\r\n3\t4\r\n").rows == (("1", "2"), ("3", "4"))


def test_fill_down_and_set_value_are_one_step_each(editor: Editor) -> None:
    s = editor.session
    assert s is not None
    ids = editor._window_ids
    editor.grid.select(1, col(editor, "min_depth"), 4, col(editor, "max_depth"), "all")
    editor.tools.fill_down()
    top = (s.value(ids[1], "min_depth"), s.value(ids[1], "max_depth"))
    assert all(
        (s.value(ids[r], "min_depth"), s.value(ids[r], "max_depth")) == top for r in (2, 3, 4)
    )
    editor.undo()
    assert s.pending == 0

    editor.tools.value.value = "77"
    editor.tools.set_in_selection()
    assert {s.value(ids[r], "max_depth") for r in range(1, 5)} == {77}
    editor.undo()
    assert s.pending == 0

    editor.filter.value = "net == 0"
    editor.grid.select(0, col(editor, "net_size"), clear_mode="all")
    editor.tools.value.value = "0.25"
    assert editor.tools.offer_set_in_column() == 10  # counted before it applies
    assert s.pending == 0 and "all 10 rows matching the filter" in str(
        editor.tools.offer.children[0].description
    )
    editor.tools.offer.children[0].click()
    assert (s.df.loc[s.df["net"] == 0, "net_size"] == 0.25).all()
    assert s.pending == 10
    editor.undo()
    assert s.pending == 0
    editor.tools.offer_set_in_column()
    editor.reload()  # a new session: the rows the offer counted are not its rows
    editor.tools.offer.children[0].click()
    assert "ask again" in editor.message.value
    assert editor.session is not None and editor.session.pending == 0


def test_find_walks_the_matches_of_every_page(editor: Editor) -> None:
    s = editor.session
    assert s is not None
    shown: list[tuple[int, int]] = []
    editor.grid_patch.show_cell = lambda row, column: shown.append((row, column))  # type: ignore[method-assign]
    editor.tools.find.value = "4"  # int columns equal to 4; text containing "4"
    label = editor.tools.find_label.value
    n = int(label.split(" of ")[1].replace(",", ""))
    expected = sum(
        int((s.df[c] == 4).sum()) for c in ("tow", "net", "min_depth", "max_depth")
    ) + sum(int(s.df[c].astype(str).str.contains("4").sum()) for c in ("vessel", "cruise"))
    assert label.startswith("1 of ") and n == expected
    for _ in range(n):
        editor.tools.step_match(1)
    assert editor.tools.find_label.value == f"1 of {n}"  # round again
    pages = set()
    for _ in range(n):
        editor.tools.step_match(1)
        pages.add(editor.page)
        row, column = shown[-1]
        name = [STATUS, *s.columns][column]
        value = s.value(editor._window_ids[row], name)
        assert value == 4 or "4" in str(value)
    assert pages == {0, 1, 2}
    editor.tools.find.value = "no such thing"
    assert editor.tools.find_label.value == "no match"


def test_summary_of_the_selected_column(editor: Editor) -> None:
    editor.grid.select(0, col(editor, "tow"), clear_mode="all")
    text = editor.tools.show_summary()
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", text)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", text)
    facts = dict(zip(heads, cells, strict=True))
    assert facts["type"] == "int32" and (facts["min"], facts["max"]) == ("1", "10")
    assert facts["distinct"] == "10" and facts["mean"] == "5.5"
    editor.grid.select(0, col(editor, "vessel"), clear_mode="all")
    assert "distinct" in editor.tools.show_summary()
    floats = pa.array([1.0, math.nan, None])
    from s3grid.summary import summarize

    facts = dict(summarize("x", floats).facts)
    assert (facts["empty"], facts["NaN"], facts["min"]) == ("1", "1", "1.0")


def test_history_and_versions_in_the_editor(editor: Editor, master_store: MasterStore) -> None:
    s = editor.session
    assert s is not None
    editor.edit_cell(editor._window_ids[0], "net_size", "0.75")
    assert save(editor, "bigger net")
    editor.grid.select(0, col(editor, "net_size"), clear_mode="all")
    editor.tools.show_history()
    panel = editor.tools.panel.value
    assert "bigger net" in panel and "0.75" in panel and "initial upload" in panel
    editor.grid.select(0, 0, clear_mode="all")  # the ⚑ cell: the whole row
    editor.tools.show_history()
    assert "History of tow 1 · net 0:" in editor.message.value

    editor.tools.versions_button.value = True
    assert editor.tools.versions.layout.display == "flex"
    assert "bigger net" in editor.tools.versions_table.value
    editor.tools.show_diff()
    assert "net_size" in editor.tools.panel.value
    editor.edit_cell(editor._window_ids[1], "net_size", "0.5")
    editor.note.value = "back to the upload"
    editor.tools.version_to.value = master_store.audit_log().iloc[0]["new_version"]
    assert not editor.tools.offer_restore()
    assert "pending change(s)" in editor.message.value  # refused: nothing restored
    editor.revert_all()
    editor.note.value = ""
    assert not editor.tools.offer_restore()
    assert "Write a note first" in editor.message.value
    editor.note.value = "back to the upload"
    saves = len(master_store.audit_log())
    assert editor.tools.offer_restore()  # asks first: nothing written yet
    assert len(master_store.audit_log()) == saves
    go, _cancel = editor.tools.offer.children
    assert "initial upload" in go.description
    go.click()
    assert master_store.audit_log().iloc[-1]["source"] == "restore"
    assert "back to the upload" in editor.tools.versions_table.value  # drawn again
    assert "Restored the version saved" in editor.message.value
    assert (
        editor.session is not None
        and editor.session.value(editor._window_ids[0], "net_size") != 0.75
    )


def test_columns_get_the_editor_that_fits() -> None:
    schema = pa.schema(
        [
            ("ok", pa.bool_()),
            pa.field("must", pa.bool_(), nullable=False),
            ("day", pa.date32()),
            ("t", pa.timestamp("us")),
            ("x", pa.float64()),
        ]
    )
    assert column_editors(schema) == {
        "ok": {"constraint": {"enum": ["true", "false", ""]}},
        "must": {"constraint": {"enum": ["true", "false"]}},
        "day": {"type": "date"},
    }
