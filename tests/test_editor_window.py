"""A Hypothesis state machine over the editor's kernel-side window.

It filters, sorts and pages, then edits cells and keys, adds, deletes, undoes and
redoes through the messages ipydatagrid's front-end sends (row numbers within the
window shown). A model keeps the expected rows by key. After every step:

- the rows the session holds are the model's;
- every row the grid shows has the model's values for that row's key.

So the cell a user types into is the row that changes, whatever the window shows.
"""

from __future__ import annotations

import itertools
from typing import Any

import pandas as pd
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from s3grid import MasterStore
from s3grid.editor import STATUS, Editor, cell_text
from tests.support.frontend import FrontEnd
from tests.support.machines import machine_settings

EDITABLE = ("volume_filtered", "net_size")
FILTERS = ("", "tow == 2", "net > 1", "volume_filtered > 50", "tow < 3 and net != 0")
SORTS = ("", "tow", "volume_filtered", "net_size")
VALUES = ("1.5", "2.25", "99.0", "1e-05")

Key = tuple[int, ...]
Rows = dict[Key, dict[str, Any]]


def _values(row: dict[str, Any]) -> dict[str, Any]:
    """A row's editable values, an empty one as None (NaN never equals NaN)."""
    return {c: None if pd.isna(row[c]) else row[c] for c in EDITABLE}


def make_machine(store: MasterStore) -> type[RuleBasedStateMachine]:
    class EditorWindow(RuleBasedStateMachine):
        @initialize(patched=st.booleans())
        def open(self, patched: bool) -> None:
            self.editor = Editor(store, page_size=4)
            # with the front-end patch, an undo/redo in view sends one cell, not a window
            self.editor.grid_patch.patched = patched
            self.fe = FrontEnd(self.editor)
            self.keys = self.editor.key_columns
            self.model: Rows = {
                self._key(row): _values(row) for row in self._session().df.to_dict("records")
            }
            self.base_rows = {k: dict(v) for k, v in self.model.items()}  # as loaded
            self.origin: dict[Key, Key | None] = {k: k for k in self.model}  # None: added
            self.done: list[tuple[str, Any]] = []  # what undo takes back, newest last
            self.undone: list[tuple[str, Any]] = []
            self.new_tows = itertools.count(1000)  # keys no sample row has

        def _session(self) -> Any:
            assert self.editor.session is not None
            return self.editor.session

        def _key(self, row: dict[str, Any]) -> Key:
            return tuple(int(row[k]) for k in self.keys)

        def _shown_key(self, grid_row: int) -> Key:
            shown = self.editor.grid.data.iloc[grid_row]
            return tuple(int(shown[k]) for k in self.keys)

        def _at(self, row: int) -> tuple[int, Key]:
            """A row of the window shown (``row`` wraps round), and the key it shows."""
            row %= len(self.editor.grid.data)
            return row, self._shown_key(row)

        def _apply(self, step: tuple[str, Any], forward: bool) -> None:
            kind, what = step
            if kind == "cell":
                key, column, old, new = what
                self.model[key][column] = new if forward else old
            elif kind == "key":
                before, after = what if forward else what[::-1]
                self.model[after] = self.model.pop(before)
                self.origin[after] = self.origin[before]
            elif (kind == "add") == forward:  # an add, or an undone delete
                self.model[what[0]] = dict(what[1])
                self.origin.setdefault(what[0], None)
            else:
                del self.model[what[0]]

        def _record(self, step: tuple[str, Any]) -> None:
            self._apply(step, forward=True)
            self.done.append(step)
            self.undone.clear()

        @rule(query=st.sampled_from(FILTERS))
        def filter(self, query: str) -> None:
            self.editor.filter.value = query

        @rule(column=st.sampled_from(SORTS), descending=st.booleans())
        def sort(self, column: str, descending: bool) -> None:
            self.editor.sort_by.value = column
            self.editor.descending.value = descending

        @rule(forward=st.booleans())
        def page(self, forward: bool) -> None:
            (self.editor.next_button if forward else self.editor.prev_button).click()

        @precondition(lambda self: len(self.editor.grid.data) > 0)
        @rule(row=st.integers(0, 3), column=st.sampled_from(EDITABLE), text=st.sampled_from(VALUES))
        def type_value(self, row: int, column: str, text: str) -> None:
            row, key = self._at(row)
            old, new = self.model[key][column], float(text)
            self.fe.type_into(row, column, text)
            if old != new:  # an unchanged value is no step to undo
                self._record(("cell", (key, column, old, new)))

        @precondition(lambda self: len(self.editor.grid.data) > 0)
        @rule(row=st.integers(0, 3))
        def change_key(self, row: int) -> None:
            row, key = self._at(row)
            tow = next(self.new_tows)
            self.fe.type_into(row, self.keys[0], str(tow))
            self._record(("key", (key, (tow, *key[1:]))))

        @precondition(lambda self: len(self.editor.grid.data) > 0)
        @rule(row=st.integers(0, 3))
        def delete(self, row: int) -> None:
            row, key = self._at(row)
            self.editor.grid.selections = [{"r1": row, "c1": 1, "r2": row, "c2": 1}]
            assert self.editor.delete_selected() == 1
            self._record(("delete", (key, dict(self.model[key]))))

        @rule()
        def add(self) -> None:
            key = (next(self.new_tows), 0)
            values = {self.keys[0]: key[0], self.keys[1]: key[1]}
            assert self.editor.add_row(values) is not None
            self._record(("add", (key, dict.fromkeys(EDITABLE))))

        @rule(redo=st.booleans())
        def undo_or_redo(self, redo: bool) -> None:
            (self.editor.redo if redo else self.editor.undo)()
            source, target = (self.undone, self.done) if redo else (self.done, self.undone)
            if source:
                step = source.pop()
                self._apply(step, forward=redo)
                target.append(step)

        @invariant()
        def session_holds_the_model(self) -> None:
            if not hasattr(self, "editor"):
                return
            held = {self._key(row): _values(row) for row in self._session().df.to_dict("records")}
            assert held == self.model

        @invariant()
        def grid_shows_the_model(self) -> None:
            if not hasattr(self, "editor"):
                return
            for grid_row in range(len(self.editor.grid.data)):
                expected = self.model[self._shown_key(grid_row)]
                for column in EDITABLE:
                    shown = self.editor.grid.data.iloc[grid_row][column]
                    assert shown == cell_text(expected[column]), (grid_row, column)

        @invariant()
        def flags_show_new_and_edited_rows(self) -> None:
            # with the front-end patch the ⚑ flag follows each step (without it, it
            # waits for the next refresh of the window, by design)
            if not hasattr(self, "editor") or not self.editor.grid_patch.patched:
                return
            for grid_row in range(len(self.editor.grid.data)):
                key = self._shown_key(grid_row)
                origin = self.origin[key]
                if origin is None:
                    expected = "new"
                elif key != origin or self.model[key] != self.base_rows[origin]:
                    expected = "edited"
                else:
                    expected = ""
                shown = self.editor.grid.data.iloc[grid_row][STATUS]
                assert shown.split(":")[0] == expected, grid_row  # "edited: <its columns>"

    return EditorWindow


def test_edits_land_on_the_row_shown_whatever_the_window(master_store: MasterStore) -> None:
    run_state_machine_as_test(
        make_machine(master_store),
        settings=machine_settings(40, 25),
    )
