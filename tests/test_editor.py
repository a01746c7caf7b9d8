"""The editor without a browser: feed it ipydatagrid's front-end messages (anywidget-style)."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import pytest

import s3grid.editor as editor_mod
from s3grid import MasterStore, S3GridConfig
from s3grid.editor import STATUS, Editor, cell_text
from s3grid.model import SaveResult
from tests.support.frontend import FrontEnd, save
from tests.support.s3 import all_objects


def msg(editor: Editor) -> str:
    """The message area's text, as the user reads it."""
    return html.unescape(editor.message.value)


def test_layout_and_status(editor: Editor, cfg: S3GridConfig) -> None:
    assert editor.bucket.value == cfg.bucket
    assert editor.master_key.value == "data/master.parquet"
    assert editor.snapshot_prefix.value == "snapshots"
    assert editor.audit_prefix.value == "audit"
    assert len(editor.grid.data) == 20  # one page, not the whole master
    assert editor.grid.data.columns[0] == STATUS
    assert "50 rows × 13 columns" in editor.status.value
    assert "<b>0</b> pending" in editor.status.value
    assert "page 1/3" in editor.page_label.value


def test_edit_is_coerced_and_echoed(editor: Editor, fe: FrontEnd) -> None:
    fe.type_into(2, "min_depth", " 075")
    assert editor.session is not None
    assert editor.session.value(2, "min_depth") == 75
    assert fe.last_echo("min_depth")["value"] == "75"  # the browser shows what is stored
    assert fe.shown(2, "min_depth") == "75"
    editor.refresh()
    assert editor.grid.data.iloc[2][STATUS] == "edited: min_depth"  # names the edited cells
    assert "<b>1</b> pending" in editor.status.value


def test_echo_only_when_needed(editor: Editor, fe: FrontEnd) -> None:
    # Each value the kernel sets makes the front-end rebuild and repaint the grid:
    # text the kernel stores as typed sends nothing back at all.
    fe.type_into(2, "min_depth", "75")
    fe.type_into(2, "max_depth", "80")
    assert fe.sent == []
    assert editor.session is not None
    assert editor.session.pending == 2
    assert "<b>2</b> pending" in editor.status.value
    # the kernel's copy of the grid (what a reloaded page draws) has them too
    assert (fe.shown(2, "min_depth"), fe.shown(2, "max_depth")) == ("75", "80")


def test_edit_from_code_is_shown_in_the_grid(editor: Editor, fe: FrontEnd) -> None:
    # nobody typed it in the browser, so the browser is told even when the text is as given
    row_id = int(editor.grid.data.index[3])
    assert editor.edit_cell(row_id, "cruise", "Leg 9")
    assert fe.last_echo("cruise")["value"] == "Leg 9"
    assert fe.last_echo("cruise")["row"] == 3
    assert fe.shown(3, "cruise") == "Leg 9"


def test_status_flag_follows_the_edit_once_the_browser_is_patched(
    editor: Editor, fe: FrontEnd
) -> None:
    assert editor.grid_patch.grid_id == editor.grid.model_id
    assert editor.grid_patch in editor.children
    fe.type_into(2, "min_depth", "75")
    assert fe.sent == []  # unpatched browser: the flag waits for the next refresh
    editor.grid_patch.patched = True  # what gridpatch.js reports once applied
    fe.type_into(3, "min_depth", "76")
    echo = fe.last_echo(STATUS)
    assert (echo["row"], echo["value"]) == (3, "edited: min_depth")
    assert fe.shown(3, STATUS) == "edited: min_depth"
    fe.bounce()  # the browser reports the flag back as an edit: ignored
    assert "cannot be edited" not in msg(editor)
    fe.type_into(3, "max_depth", "90")  # another cell of the row: the flag names it too
    assert fe.last_echo(STATUS)["value"] == "edited: min_depth, max_depth"
    fe.sent.clear()
    fe.type_into(3, "max_depth", "91")  # already named: nothing more to send
    assert fe.sent == []
    assert editor.session is not None
    loaded = editor.session.base
    fe.type_into(3, "min_depth", cell_text(loaded.at[3, "min_depth"]))
    fe.type_into(3, "max_depth", cell_text(loaded.at[3, "max_depth"]))
    assert fe.last_echo(STATUS)["value"] == ""  # back to the loaded values: flag cleared


def test_undo_redo_of_a_cell_send_just_that_cell_once_patched(editor: Editor, fe: FrontEnd) -> None:
    assert editor.session is not None
    loaded = cell_text(editor.session.base.at[3, "min_depth"])
    fe.type_into(3, "min_depth", "76")
    fe.sent.clear()
    editor.undo()  # unpatched browser: a new window (state updates)
    assert {d["method"] for d in fe.sent} == {"update"}
    assert fe.shown(3, "min_depth") == loaded
    editor.grid_patch.patched = True
    fe.sent.clear()
    editor.redo()
    # patched: the cell and its flag go alone, as custom messages; no new window
    assert [d["method"] for d in fe.sent] == ["custom", "custom"]
    assert (fe.last_echo("min_depth")["value"], fe.last_echo(STATUS)["value"]) == (
        "76",
        "edited: min_depth",
    )
    assert fe.shown(3, "min_depth") == "76" and editor.session.pending == 1
    editor.undo()
    assert fe.last_echo("min_depth")["value"] == loaded
    assert fe.last_echo(STATUS)["value"] == ""
    assert editor.session.pending == 0 and "<b>0</b> pending" in editor.status.value
    fe.bounce()  # the browser reports the values back: not edits
    assert editor.session.pending == 0


def test_front_end_bounce_of_echo_is_not_an_edit(editor: Editor, fe: FrontEnd) -> None:
    fe.type_into(2, "min_depth", "075")  # stored as 75: echoed, then bounced back
    message = editor.message.value
    fe.bounce()
    assert fe.sent == []  # no ping-pong
    assert editor.message.value == message
    assert editor.session is not None
    assert editor.session.pending == 1
    assert editor.session.can_undo


@pytest.mark.parametrize(
    ("column", "typed", "reason"),
    [
        ("tow", 7.5, "fractional part"),
        ("volume_filtered", "abc", "not a number"),
        ("is_day", "perhaps", "true/false"),
        ("time_start_gmt", "noon", "ISO 8601"),
    ],
)
def test_refused_value_reverts_cell_and_names_it(
    editor: Editor, fe: FrontEnd, column: str, typed: Any, reason: str
) -> None:
    assert editor.session is not None
    before = editor.session.value(4, column)
    fe.type_into(4, column, typed)
    assert editor.session.value(4, column) == before
    assert reason in msg(editor)
    assert "tow 1 · net 4" in msg(editor)  # the row, by its key
    assert column in msg(editor)
    assert fe.last_echo(column)["value"] == cell_text(before)
    assert editor.session.pending == 0


def test_cleared_int_cell_stays_int(editor: Editor, fe: FrontEnd) -> None:
    fe.type_into(1, "max_depth", None)
    assert editor.session is not None
    assert editor.session.value(1, "max_depth") is None
    assert str(editor.session.df["max_depth"].dtype) == "Int32"
    assert editor.session.to_table().schema.field("max_depth").type == "int32"


def test_read_only_and_status_columns(editor: Editor, fe: FrontEnd) -> None:
    assert editor.session is not None
    before = editor.session.value(0, "vessel")
    fe.type_into(0, "vessel", "R/V Nope")
    assert editor.session.value(0, "vessel") == before
    assert "read-only" in msg(editor)
    assert fe.last_echo("vessel")["value"] == before
    fe.type_into(0, STATUS, "x")
    assert editor.session.pending == 0


def test_row_identity_survives_kernel_sort_and_filter(editor: Editor, fe: FrontEnd) -> None:
    editor.filter.value = "net == 3"
    editor.sort_by.value = "tow"
    editor.descending.value = True
    shown = editor.grid.data
    target_row_id = int(shown.index[2])
    tow, net = int(shown.iloc[2]["tow"]), int(shown.iloc[2]["net"])
    fe.type_into(2, "volume_filtered", 321.0)
    assert editor.session is not None
    assert editor.session.value(target_row_id, "volume_filtered") == 321.0
    change = editor.session.changes().cells[0]
    assert change.key == (tow, net)


def test_bad_filter_is_reported(editor: Editor) -> None:
    editor.filter.value = "tow ==="
    assert "not valid" in msg(editor)
    assert len(editor.grid.data) == 20


def test_undo_redo_add_delete_changes_panel(editor: Editor, fe: FrontEnd) -> None:
    s = editor.session
    assert s is not None
    fe.type_into(0, "volume_filtered", 1.25)
    editor.undo()
    assert s.pending == 0
    editor.redo()
    assert s.value(0, "volume_filtered") == 1.25
    rid = editor.add_row({"tow": 999, "net": 0, "vessel": "R/V New"})
    assert rid == 50
    assert 50 in editor.grid.data.index
    editor.grid.selections = [{"r1": 0, "c1": 1, "r2": 0, "c2": 1}]
    editor.page = 0
    editor.refresh()
    editor.grid.selections = [{"r1": 1, "c1": 1, "r2": 2, "c2": 2}]
    assert editor.delete_selected() == 2
    editor.changes_button.value = True
    panel = editor.changes_panel.value
    assert "<td>volume_filtered</td>" in panel
    assert "<td>1.25</td>" in panel
    assert "tow 999 · net 0" in panel
    assert "(row added)" in panel
    assert panel.count("(row deleted)") == 2
    assert s.pending == 4
    editor.revert_all()
    assert s.pending == 0
    assert len(s.df) == 50


def test_duplicates_highlighted_and_block_save(
    editor: Editor, fe: FrontEnd, s3: Any, bucket: str
) -> None:
    before = all_objects(s3, bucket)
    fe.type_into(1, "net", 0)  # row 1 is (tow 1, net 1): now (1, 0) twice
    shown = editor.grid.data
    assert list(shown[STATUS].iloc[:2]) == ["dup key", "dup key"]
    assert "1 duplicate key" in editor.status.value
    assert save(editor) is False
    assert "duplicate keys" in msg(editor)
    assert "tow 1 · net 0 (2 rows)" in msg(editor)
    assert all_objects(s3, bucket) == before


def test_save_then_continue(editor: Editor, fe: FrontEnd, master_store: MasterStore) -> None:
    fe.type_into(3, "volume_filtered", 42.5)
    editor.note.value = "grid edit ✓"
    assert save(editor) is True
    latest = master_store.load()
    assert editor.session is not None
    assert editor.session.master.version_id == latest.version_id
    assert editor.session.master.etag == latest.etag
    assert editor.session.pending == 0
    assert latest.version_id is not None
    assert latest.version_id[:12] in editor.status.value
    assert latest.to_pandas().loc[3, "volume_filtered"] == 42.5
    log = master_store.audit_log()
    assert log.iloc[-1]["note"] == "grid edit ✓"
    assert editor.note.value == ""
    fe.type_into(4, "volume_filtered", 43.5)
    assert save(editor) is True  # the next save uses the new ETag


def test_save_says_it_is_running_and_locks_save_until_done(editor: Editor, fe: FrontEnd) -> None:
    seen: list[tuple[str, bool, bool]] = []

    def record(_: Any) -> None:
        seen.append(
            (editor.message.value, editor.save_button.disabled, editor.reload_button.disabled)
        )

    editor.message.observe(record, "value")
    fe.type_into(3, "volume_filtered", 42.5)
    seen.clear()
    assert save(editor) is True
    # first "Saving 50 rows…" with both buttons locked, then the outcome with them free
    assert "Saving 50 rows to s3://" in seen[0][0]
    assert seen[0][1:] == (True, True)
    assert "Saved version" in seen[-1][0]
    assert (editor.save_button.disabled, editor.reload_button.disabled) == (False, False)


def test_slow_steps_on_a_large_table_say_so_while_they_run(
    editor: Editor, fe: FrontEnd, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, bool]] = []
    editor.message.observe(
        lambda change: seen.append((change["new"], editor.save_button.disabled)), "value"
    )
    fe.type_into(3, "volume_filtered", 42.5)
    editor.sort_by.value = "tow"  # 50 rows: too quick to say anything while it runs
    said = editor.message.value
    assert "sorted by tow" in said  # only what it did, once done
    assert len(seen) == 2

    monkeypatch.setattr(editor_mod, "SAY_WORK_ROWS", 40)  # as if this were 1M rows
    seen.clear()
    editor.descending.value = True
    # "Filtering and sorting (50 rows)…" with Save locked, then what it did
    assert "Filtering and sorting (50 rows)" in seen[0][0]
    assert seen[0][1] is True
    assert "sorted by tow (descending" in editor.message.value
    assert editor.save_button.disabled is False
    assert editor.grid.data.iloc[0]["tow"] >= editor.grid.data.iloc[1]["tow"]

    seen.clear()
    editor.grid.selections = [{"r1": 0, "c1": 1, "r2": 0, "c2": 1}]
    assert editor.delete_selected() == 1
    assert "Deleting (50 rows)" in seen[0][0]
    assert seen[0][1] is True
    assert "Deleted 1 row(s): tow " in editor.message.value
    seen.clear()
    editor.undo()
    assert "Undoing (49 rows)" in seen[0][0]
    assert "Undone. 1 pending change(s)." in editor.message.value  # the edit of row 3
    assert editor.session is not None and len(editor.session.df) == 50


def test_after_a_save_a_new_duplicate_key_is_still_caught(
    editor: Editor, fe: FrontEnd, s3: Any, bucket: str
) -> None:
    # the session opened on the saved table skips its first duplicate check (the store
    # just validated those keys): a later key edit must still be checked
    fe.type_into(3, "volume_filtered", 42.5)
    editor.note.value = "first"
    assert save(editor) is True
    before = all_objects(s3, bucket)
    fe.type_into(1, "net", 0)  # row 1 is (tow 1, net 1): now (1, 0) twice
    assert "1 duplicate key" in editor.status.value
    assert save(editor) is False
    assert "tow 1 · net 0 (2 rows)" in msg(editor)
    assert all_objects(s3, bucket) == before


def test_conflict_merge_three_ways(editor: Editor, fe: FrontEnd, master_store: MasterStore) -> None:
    fe.type_into(0, "volume_filtered", 10.0)  # conflicts with theirs
    fe.type_into(1, "volume_filtered", 11.0)  # only mine
    # a colleague saves behind the editor's back
    other = MasterStore(master_store.cfg)
    m = other.load()
    df = m.to_pandas()
    df.loc[0, "volume_filtered"] = 99.0
    df.loc[5, "max_depth"] = 555
    other.save(df, base=m, note="colleague")

    assert save(editor) is False
    assert "saved a new version" in msg(editor)
    assert "colleague" in msg(editor)
    assert editor.merge is not None
    assert [(c.key, c.column, c.theirs, c.mine) for c in editor.merge.conflicts] == [
        ((1, 0), "volume_filtered", 99.0, 10.0)
    ]
    assert save(editor) is False  # unresolved conflicts block saving
    editor.resolve({((1, 0), "volume_filtered"): "mine"})
    editor.apply_merge()
    assert save(editor) is True
    final = master_store.load().to_pandas()
    assert final.loc[0, "volume_filtered"] == 10.0  # mine, chosen
    assert final.loc[1, "volume_filtered"] == 11.0  # mine, merged automatically
    assert final.loc[5, "max_depth"] == 555  # theirs, kept


def colleague_saves(master_store: MasterStore, cells: dict[tuple[int, str], Any]) -> SaveResult:
    """A colleague loads the master, sets ``cells`` ((row, column) -> value) and saves."""
    other = MasterStore(master_store.cfg)
    m = other.load()
    df = m.to_pandas()
    for (row, column), value in cells.items():
        df.loc[row, column] = value
    return other.save(df, base=m, note="colleague")


def _in_conflict(
    editor: Editor, fe: FrontEnd, master_store: MasterStore, **theirs: tuple[int, Any]
) -> None:
    """I set row 0's volume_filtered to 10.0, a colleague saves it as 99.0 (and
    ``column=(row, value)``), and my Save shows the conflict."""
    fe.type_into(0, "volume_filtered", 10.0)
    cells = {(row, column): value for column, (row, value) in theirs.items()}
    colleague_saves(master_store, {(0, "volume_filtered"): 99.0, **cells})
    assert save(editor) is False
    assert editor.merge is not None and editor.merge.conflicts


def test_edits_made_while_conflicts_show_are_kept(
    editor: Editor, fe: FrontEnd, master_store: MasterStore
) -> None:
    _in_conflict(editor, fe, master_store)
    conflict = ((1, 0), "volume_filtered")
    assert [c.id for c in editor.merge.conflicts] == [conflict]  # type: ignore[union-attr]
    editor.resolve({conflict: "mine"})
    # the conflict panel is open, and the grid still takes edits
    fe.type_into(2, "lat_decimal", 22.5)  # a column not edited before
    editor.apply_merge()
    s = editor.session
    assert s is not None and editor.merge is None
    assert s.value(0, "volume_filtered") == 10.0
    assert s.value(2, "lat_decimal") == 22.5
    assert save(editor) is True
    final = master_store.load().to_pandas()
    assert (final.loc[0, "volume_filtered"], final.loc[2, "lat_decimal"]) == (10.0, 22.5)


def test_edits_that_settle_every_conflict_are_applied_as_they_are(
    editor: Editor, fe: FrontEnd, master_store: MasterStore
) -> None:
    _in_conflict(editor, fe, master_store)
    fe.type_into(0, "volume_filtered", 99.0)  # now mine equals theirs: no conflict left
    fe.type_into(2, "lat_decimal", 22.5)
    editor.apply_merge()
    s = editor.session
    assert s is not None and editor.merge is None
    assert "Merged onto version" in msg(editor)
    assert (s.value(0, "volume_filtered"), s.value(2, "lat_decimal")) == (99.0, 22.5)
    assert s.master.etag == master_store.load().etag
    assert s.pending == 1  # only lat_decimal differs from theirs


def test_apply_merge_waits_for_duplicate_keys_to_be_fixed(
    editor: Editor, fe: FrontEnd, master_store: MasterStore
) -> None:
    _in_conflict(editor, fe, master_store)
    fe.type_into(1, "net", 0)  # row 1 is (tow 1, net 1): now (1, 0) twice
    editor.apply_merge()
    assert "duplicate keys: fix them, then Apply merge" in msg(editor)
    assert editor.merge is not None  # still to resolve
    editor.undo()
    editor.apply_merge()
    assert editor.merge is None
    assert editor.session is not None
    assert editor.session.master.etag == master_store.load().etag


def test_edits_that_change_the_conflicts_are_shown_before_applying(
    editor: Editor, fe: FrontEnd, master_store: MasterStore
) -> None:
    _in_conflict(editor, fe, master_store, max_depth=(5, 555))
    first, second = ((1, 0), "volume_filtered"), ((2, 0), "max_depth")
    editor.resolve({first: "mine"})
    fe.type_into(0, "volume_filtered", 11.0)  # my side of the conflict shown
    fe.type_into(5, "max_depth", 600)  # a cell they changed too: a new conflict
    editor.apply_merge()
    assert "changed it: 2 conflict(s)" in msg(editor)
    assert editor.merge is not None
    assert {c.id: c.mine for c in editor.merge.conflicts} == {first: 11.0, second: 600}
    assert editor.session is not None
    assert editor.session.master.etag != master_store.load().etag  # nothing applied yet
    editor.resolve({second: "theirs"})  # the first keeps the pick made before
    editor.apply_merge()
    s = editor.session
    assert s is not None and editor.merge is None
    assert (s.value(0, "volume_filtered"), s.value(5, "max_depth")) == (11.0, 555)
    assert s.master.etag == master_store.load().etag


def test_reload_keeps_pending_edits(
    editor: Editor, fe: FrontEnd, master_store: MasterStore
) -> None:
    fe.type_into(2, "volume_filtered", 7.0)
    other = MasterStore(master_store.cfg)
    m = other.load()
    df = m.to_pandas()
    df.loc[9, "volume_filtered"] = 9.0
    other.save(df, base=m, note="other")
    editor.reload()
    s = editor.session
    assert s is not None
    assert s.master.etag == master_store.load().etag
    assert s.value(2, "volume_filtered") == 7.0
    assert s.value(9, "volume_filtered") == 9.0
    assert s.pending == 1


def test_unreachable_store_keeps_edits(editor: Editor, fe: FrontEnd, cfg: S3GridConfig) -> None:
    fe.type_into(2, "volume_filtered", 7.0)
    editor.store = MasterStore(cfg.with_(endpoint_url="http://127.0.0.1:9", connect_timeout=1.0))
    assert save(editor) is False
    assert "unreachable" in msg(editor)
    assert "kept" in msg(editor)
    assert editor.session is not None
    assert editor.session.pending == 1
    editor.store = MasterStore(cfg)
    assert save(editor) is True


def test_retarget_refused_with_pending_then_allowed(
    editor: Editor, fe: FrontEnd, master_store: MasterStore
) -> None:
    other = MasterStore(master_store.cfg.with_(master_key="data/other.parquet"))
    other.create(pd.DataFrame({"tow": [1], "net": [0], "x": [1.0]}), note="other master")
    fe.type_into(0, "volume_filtered", 5.0)
    editor.master_key.value = "data/other.parquet"
    editor.reload()
    assert "pending" in msg(editor)
    assert editor.store.cfg.master_key == "data/master.parquet"
    editor.revert_all()
    editor.reload()
    assert editor.store.cfg.master_key == "data/other.parquet"
    assert editor.session is not None
    assert editor.session.columns == ["tow", "net", "x"]


def test_retarget_to_master_without_key_columns_is_reported(
    master_store: MasterStore, fe: FrontEnd, editor: Editor
) -> None:
    editor.store = MasterStore(master_store.cfg, key_columns=("tow", "net"))
    other = MasterStore(master_store.cfg.with_(master_key="data/plain.parquet"))
    other.create(pd.DataFrame({"a": [1, 2]}), note="no keys here")
    editor.master_key.value = "data/plain.parquet"
    editor.reload()
    assert "Could not open" in msg(editor)
    assert "Key column(s)" in msg(editor)
    assert editor.session is not None
    assert editor.session.columns[0] == "vessel"  # still on the old master, nothing lost
    assert editor.store.cfg.master_key == "data/master.parquet"


def test_lost_update_offers_the_merge(
    editor: Editor, fe: FrontEnd, master_store: MasterStore
) -> None:
    from tests.support.locks import without_lock

    without_lock(editor.store)
    fe.type_into(1, "volume_filtered", 11.0)
    # the colleague's change the store fails to protect
    colleague = colleague_saves(master_store, {(5, "max_depth"): 555})
    assert save(editor) is False
    assert "LOST UPDATE" in msg(editor)
    assert colleague.new_version in msg(editor)
    s = editor.session
    assert s is not None
    assert s.value(5, "max_depth") == 555  # their lost change, back as a pending edit
    assert s.value(1, "volume_filtered") == 11.0
    assert s.pending == 1
    assert save(editor) is True
    final = master_store.load().to_pandas()
    assert final.loc[5, "max_depth"] == 555
    assert final.loc[1, "volume_filtered"] == 11.0


def _lost_update_conflict(editor: Editor, fe: FrontEnd, master_store: MasterStore) -> SaveResult:
    """I set row 5's max_depth to 600, a colleague saves it as 555, and my Save goes
    through a store that ignores IfMatch: a lost update, whose merge conflicts there."""
    from tests.support.locks import without_lock

    without_lock(editor.store)
    fe.type_into(5, "max_depth", 600)
    colleague = colleague_saves(master_store, {(5, "max_depth"): 555})
    assert save(editor) is False
    assert "LOST UPDATE" in msg(editor)
    assert editor.merge is not None and len(editor.merge.conflicts) == 1
    return colleague


def test_reload_waits_for_a_lost_updates_merge(
    editor: Editor, fe: FrontEnd, master_store: MasterStore
) -> None:
    _lost_update_conflict(editor, fe, master_store)
    editor.reload()
    assert "Apply merge: it brings back the changes the lost update overwrote" in msg(editor)
    assert editor.merge is not None  # still offered
    editor.apply_merge()  # theirs, the default
    s = editor.session
    assert s is not None and s.value(5, "max_depth") == 555 and s.pending == 1
    editor.reload()  # now it may
    assert editor.session is s  # the master has not moved: the pending edit stays
    assert save(editor) is True
    assert master_store.load().to_pandas().loc[5, "max_depth"] == 555


def test_revert_all_during_a_lost_updates_merge_shows_what_was_saved(
    editor: Editor, fe: FrontEnd, master_store: MasterStore
) -> None:
    colleague = _lost_update_conflict(editor, fe, master_store)
    editor.revert_all()
    s = editor.session
    assert s is not None and editor.merge is None
    assert s.master.etag == master_store.load().etag  # on the version saved, not the old one
    assert s.value(5, "max_depth") == 600 and s.pending == 0  # my saved edit, shown
    assert colleague.new_version in msg(editor)


def test_reload_with_duplicate_keys_keeps_edits(
    editor: Editor, fe: FrontEnd, master_store: MasterStore
) -> None:
    fe.type_into(1, "net", 0)  # duplicate of row 0's key
    other = MasterStore(master_store.cfg)
    m = other.load()
    other.save(m.to_pandas(), base=m, note="someone else")
    editor.reload()
    assert "duplicate keys" in msg(editor)
    assert editor.session is not None
    assert editor.session.pending == 1
    assert editor.session.master.version_id == m.version_id  # not rebased yet


# --- nothing escapes a button or an edit: a message, and a usable editor


def _boom(*_: Any, **__: Any) -> Any:
    raise KeyError("ETag")  # e.g. an answer a store cut short, before the wrapper saw it


@pytest.mark.parametrize(
    ("button", "target", "action"),
    [
        ("reload_button", "load", "Reload"),
        ("save_button", "save", "Save"),
    ],
)
def test_an_unexpected_failure_in_a_button_ends_in_a_message(
    editor: Editor,
    fe: FrontEnd,
    monkeypatch: pytest.MonkeyPatch,
    button: str,
    target: str,
    action: str,
    s3: Any,
    bucket: str,
) -> None:
    fe.type_into(2, "min_depth", "75")
    editor.note.value = "my edit"
    before = all_objects(s3, bucket)
    monkeypatch.setattr(editor.store, target, _boom)
    getattr(editor, button).click()
    text = msg(editor)
    assert f"{action} failed unexpectedly (KeyError: 'ETag')" in text
    assert "1 pending change(s) are kept" in text
    assert "…" not in text  # not stuck on "Saving…" / "Loading…"
    assert not editor.save_button.disabled and not editor.reload_button.disabled
    assert editor.session is not None and editor.session.value(2, "min_depth") == 75
    assert all_objects(s3, bucket) == before
    monkeypatch.undo()  # and the editor still works
    editor.save_button.click()
    assert "Saved" in msg(editor), msg(editor)


def test_an_unexpected_failure_in_an_edit_ends_in_a_message(
    editor: Editor, fe: FrontEnd, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert editor.session is not None
    monkeypatch.setattr(editor.session, "set_cell", _boom)
    fe.type_into(2, "min_depth", "75")
    assert "edit failed unexpectedly" in msg(editor)
    monkeypatch.undo()
    fe.type_into(2, "min_depth", "76")
    assert editor.session.value(2, "min_depth") == 76


def test_reload_of_a_missing_master_key_says_so(editor: Editor) -> None:
    editor.master_key.value = "data/missing.parquet"
    editor.reload_button.click()
    assert "No master at" in msg(editor) and "data/missing.parquet" in msg(editor)
    assert not editor.reload_button.disabled
    editor.master_key.value = "data/master.parquet"
    editor.reload_button.click()
    assert "Loaded version" in msg(editor)


def test_a_save_whose_answer_is_cut_short_is_saved_once(
    master_store: MasterStore, cut_proxy: Any
) -> None:
    store = MasterStore(master_store.cfg.with_(endpoint_url=cut_proxy.url))
    editor = Editor(store, page_size=20)
    FrontEnd(editor).type_into(2, "min_depth", "75")
    editor.note.value = "answer lost"
    cut_proxy.cut("PUT", "/data/master.parquet", "status")
    editor.save_button.click()
    assert "Saved version" in msg(editor), msg(editor)
    assert editor.session is not None and editor.session.pending == 0
    assert len(master_store.versions()) == 2


def test_an_ipydatagrid_without_the_names_the_grid_uses_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ipydatagrid import DataGrid

    from s3grid import ConfigError
    from s3grid.grid import check_ipydatagrid

    check_ipydatagrid()  # the installed one has them
    monkeypatch.delattr(DataGrid, "_visible_rows")
    with pytest.raises(ConfigError, match=r"lacks _visible_rows.*ipydatagrid>=1\.4,<2"):
        check_ipydatagrid()
