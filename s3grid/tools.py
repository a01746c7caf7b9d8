"""The editor's tools beyond typing into a cell: paste a spreadsheet's range, fill down,
set one value into many cells, find, a column's summary, the history of a cell or row,
and the master's versions (diff any two, restore one).

:class:`EditorTools` holds their widgets and handlers for one
:class:`~s3grid.editor.Editor`; the work is done by the session
(:meth:`~s3grid.session.EditSession.set_cells`: checked, one undo step), the pure
modules (:mod:`s3grid.clipboard`, :mod:`s3grid.find`, :mod:`s3grid.summary`) and the
store (:meth:`~s3grid.store.MasterStore.history`, ``diff_versions``, ``restore``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import pandas as pd

from s3grid.clipboard import parse_tsv
from s3grid.display import STATUS, html_table, row_label, say, when
from s3grid.errors import S3GridError
from s3grid.find import Matches, find_cells
from s3grid.session import BlockResult, EditSession, Refusal
from s3grid.summary import summarize

if TYPE_CHECKING:
    from s3grid.editor import Editor

__all__ = ["EditorTools"]

SHOWN_REFUSALS = 50


class EditorTools:
    """Paste, fill down, set value, find, summary, history and versions for ``editor``.

    Attributes:
        bar: the row of controls the editor lays out.
        panel: where summaries, histories, versions and refused values are shown.
        offer: a question waiting for a click (add rows for a long paste, set a value
            in every matching row).
    """

    def __init__(self, editor: Editor) -> None:
        self.editor = editor
        guard = editor._guarded
        self.find = w.Text(
            placeholder="find in every column", description="Find", continuous_update=False
        )
        self.find_prev = w.Button(description="◀", tooltip="previous match")
        self.find_next = w.Button(description="▶", tooltip="next match")
        self.find_label = w.Label()
        self.fill_button = w.Button(description="Fill down", icon="arrow-down")
        self.value = w.Text(placeholder="value", description="Set", layout=w.Layout(width="220px"))
        self.set_button = w.Button(description="Set in selection", icon="pencil")
        self.set_all_button = w.Button(description="Set in column…", icon="columns")
        self.summary_button = w.Button(description="Summary", icon="bar-chart")
        self.history_button = w.Button(description="History", icon="history")
        self.versions_button = w.ToggleButton(description="Versions", icon="code-fork")
        buttons = (
            self.find_prev,
            self.find_next,
            self.fill_button,
            self.set_button,
            self.set_all_button,
            self.summary_button,
            self.history_button,
            self.versions_button,
        )
        for button in buttons:
            button.layout.width = "auto"
        self.bar = w.HBox(
            [
                self.find,
                self.find_prev,
                self.find_label,
                self.find_next,
                self.fill_button,
                self.value,
                self.set_button,
                self.set_all_button,
                self.summary_button,
                self.history_button,
                self.versions_button,
            ],
            layout=w.Layout(flex_flow="row wrap"),
        )
        self.offer = w.HBox()
        self.panel = w.HTML()
        self.panel.add_class("s3grid-panel")
        self.version_from = w.Dropdown(description="From")
        self.version_to = w.Dropdown(description="To")
        self.diff_button = w.Button(description="Show changes", icon="exchange")
        self.restore_button = w.Button(description="Restore “To”…", icon="undo")
        self.versions = w.VBox(layout=w.Layout(display="none"))
        self.versions_table = w.HTML()
        self.versions.children = [
            self.versions_table,
            w.HBox(
                [self.version_from, self.version_to, self.diff_button, self.restore_button],
                layout=w.Layout(flex_flow="row wrap"),
            ),
        ]
        self._matches: Matches | None = None
        self._matched_for: tuple[Any, ...] | None = None
        self._match = -1
        self._summaries: dict[tuple[str | None, str], str] = {}

        self.find.observe(guard("Find", lambda _: self.find_from_start()), "value")
        self.find_next.on_click(guard("Find", lambda _: self.step_match(1)))
        self.find_prev.on_click(guard("Find", lambda _: self.step_match(-1)))
        self.fill_button.on_click(guard("Fill down", lambda _: self.fill_down()))
        self.set_button.on_click(guard("Set", lambda _: self.set_in_selection()))
        self.set_all_button.on_click(guard("Set", lambda _: self.offer_set_in_column()))
        self.summary_button.on_click(guard("Summary", lambda _: self.show_summary()))
        self.history_button.on_click(guard("History", lambda _: self.show_history()))
        self.versions_button.observe(guard("Versions", lambda _: self.show_versions()), "value")
        self.diff_button.on_click(guard("Versions", lambda _: self.show_diff()))
        self.restore_button.on_click(guard("Restore", lambda _: self.offer_restore()))
        patch = editor.grid_patch
        patch.on_paste = guard("Paste", self._on_paste)
        patch.on_fill_down = guard("Fill down", self._on_fill_down)
        patch.on_read_only = guard("Edit", self._on_read_only)

    # ------------------------------------------------------------ helpers

    @property
    def session(self) -> EditSession | None:
        return self.editor.session

    def _names(self) -> list[str]:
        """The grid's columns, by body column index (the ⚑ column first)."""
        return [STATUS, *(self.session.columns if self.session else [])]

    def _window(self) -> Any:
        """Every row id of the window (all pages), in the order shown."""
        assert self.session is not None
        e = self.editor
        return self.session.window_ids(
            query=e.filter.value, sort_by=e.sort_by.value or None, ascending=not e.descending.value
        )

    def _selection(self) -> dict[str, int] | None:
        """The grid's selected block (body coordinates), from the kernel's copy."""
        chosen = list(self.editor.grid.selections or [])
        if not chosen:
            return None
        s = chosen[-1]
        return {
            "r1": min(s["r1"], s["r2"]),
            "r2": max(s["r1"], s["r2"]),
            "c1": min(s["c1"], s["c2"]),
            "c2": max(s["c1"], s["c2"]),
        }

    def _show_panel(self, content: str) -> None:
        self.panel.value = content

    def _done(self, result: BlockResult, what: str, extra: Sequence[Refusal] = ()) -> None:
        """Show a block edit: the window again, what changed, and the refused values."""
        e = self.editor
        e._refresh()
        refused = [*extra, *result.refused]
        added = f", {len(result.added)} row(s) added" if result.added else ""
        text = f"{what}: {result.changed:,} cell(s) changed{added}."
        if refused:
            text += f" {len(refused):,} value(s) refused (listed below); the rest applied."
        if result.changed or result.added:
            text += " Undo takes it all back."
        e._say(text, "warn" if refused else "info")
        if refused:
            rows = [(r.row, r.column, r.value, r.reason) for r in refused]
            self._show_panel(
                html_table(
                    rows,
                    ("row", "column", "value", "why it was refused"),
                    css_class="s3grid-refused",
                    limit=SHOWN_REFUSALS,
                )
            )
        else:
            self._show_panel("")

    # ------------------------------------------------------------- paste

    def _on_paste(self, content: dict[str, Any]) -> None:
        self.paste(str(content.get("text", "")), int(content["r1"]), int(content["c1"]))

    def paste(
        self, text: str, row: int, column: int, *, add_rows: bool | None = None
    ) -> BlockResult | None:
        """Paste tab-separated ``text`` with its top-left cell at grid ``row``, body
        ``column`` of the page shown; rows below the page continue in the window's
        order. A paste longer than the rows left offers to add rows (``add_rows``:
        True adds them, False pastes what fits). Returns what was done (None: asked)."""
        s = self.session
        e = self.editor
        if s is None:
            return None
        self.offer.children = []
        try:
            block = parse_tsv(text)
        except S3GridError as exc:
            e._say(str(exc), "error")
            return None
        names = self._names()
        order = self._window()
        start = e.page * e.page_size + row
        ids = [int(i) for i in order[start : start + block.height]]
        missing = block.height - len(ids)
        if missing and add_rows is None:
            e._say(
                f"The paste has {block.height:,} rows; {missing:,} more than the table has "
                "from the selected cell down.",
                "warn",
            )
            more = w.Button(description=f"Add {missing:,} row(s) and paste", icon="plus")
            fit = w.Button(description="Paste what fits")
            more.on_click(
                e._guarded("Paste", lambda _: self.paste(text, row, column, add_rows=True))
            )
            fit.on_click(
                e._guarded("Paste", lambda _: self.paste(text, row, column, add_rows=False))
            )
            self.offer.children = [more, fit]
            return None
        refused: list[Refusal] = []
        cells: list[tuple[int, str, Any]] = []
        new_rows: list[dict[str, Any]] = []
        for i, line in enumerate(block.rows):
            target = ids[i] if i < len(ids) else None
            if target is None and not add_rows:
                break
            values: dict[str, Any] = {}
            for j, value in enumerate(line):
                at = column + j
                name = names[at] if at < len(names) else None
                if name is None or name == STATUS:
                    where = s.label(target) if target is not None else "new row"
                    why = "past the last column" if name is None else "⚑ shows row status"
                    refused.append(Refusal(where, name or f"column {at}", value, why))
                elif target is None:
                    values[name] = value
                else:
                    cells.append((target, name, value))
            if target is None:
                new_rows.append(values)
        result = s.set_cells(cells, new_rows=new_rows)
        height = block.height if add_rows else min(block.height, len(ids))
        self._done(result, f"Pasted {height:,} × {block.width:,}", refused)
        return result

    # ------------------------------------------------------- fill and set

    def _on_fill_down(self, content: dict[str, Any]) -> None:
        self.fill_down({k: int(content[k]) for k in ("r1", "r2", "c1", "c2")})

    def _block_ids(self, block: dict[str, int]) -> tuple[list[int], list[str]]:
        """The row ids and column names of a selected block of the page shown."""
        ids = self.editor._window_ids
        rows = [ids[r] for r in range(block["r1"], block["r2"] + 1) if r < len(ids)]
        names = self._names()
        columns = [names[c] for c in range(block["c1"], block["c2"] + 1) if c < len(names)]
        return rows, [c for c in columns if c != STATUS]

    def fill_down(self, block: dict[str, int] | None = None) -> BlockResult | None:
        """Fill the selected block (default: the grid's selection) with its first row's
        values, column by column, as one undo step."""
        s = self.session
        e = self.editor
        block = block or self._selection()
        if s is None or block is None:
            e._say("Select the cells to fill first: the top row gives the values.", "warn")
            return None
        rows, columns = self._block_ids(block)
        if len(rows) < 2 or not columns:
            e._say("Select two rows or more: the top row's values fill the rest.", "warn")
            return None
        cells = [(r, c, s.value(rows[0], c)) for c in columns for r in rows[1:]]
        result = s.set_cells(cells)
        self._done(result, f"Filled down {len(rows) - 1:,} row(s) × {len(columns):,}")
        return result

    def set_in_selection(self, value: str | None = None) -> BlockResult | None:
        """Set ``value`` (default: the Set box) into every selected cell."""
        s = self.session
        e = self.editor
        block = self._selection()
        if s is None or block is None:
            e._say("Select the cells to set first.", "warn")
            return None
        rows, columns = self._block_ids(block)
        text = self.value.value if value is None else value
        result = s.set_cells([(r, c, text) for c in columns for r in rows])
        self._done(result, f"Set {say(text)} in {len(rows) * len(columns):,} cell(s)")
        return result

    def offer_set_in_column(self) -> int:
        """Say how many rows the Set box's value would go into (the selected cell's
        column, every row the filter matches) and offer the button that does it;
        returns that count."""
        s = self.session
        e = self.editor
        block = self._selection()
        self.offer.children = []
        if s is None or block is None:
            e._say("Select a cell of the column to set first.", "warn")
            return 0
        _, columns = self._block_ids({**block, "c2": block["c1"]})
        if not columns:
            e._say("The ⚑ column shows row status; select a cell of another column.", "warn")
            return 0
        column, text = columns[0], self.value.value
        ids = [int(i) for i in self._window()]
        scope = "matching the filter" if e.filter.value.strip() else "of the table"
        go = w.Button(
            description=f"Set {column} = {say(text)} in all {len(ids):,} rows {scope}",
            button_style="warning",
        )
        go.layout.width = "auto"

        def apply(_: Any) -> None:
            self.offer.children = []
            if self.session is not s:  # a save or reload since: the rows counted are gone
                e._say("The table was saved or reloaded since; ask again.", "warn")
                return
            result = s.set_cells([(r, column, text) for r in ids])
            self._done(result, f"Set {column} = {say(text)} in {len(ids):,} row(s)")

        go.on_click(e._guarded("Set", apply))
        self.offer.children = [go]
        e._say(f"{len(ids):,} row(s) {scope}: click to set {column} in every one.")
        return len(ids)

    # --------------------------------------------------------------- find

    def find_from_start(self) -> None:
        self._matched_for = None
        self._match = -1
        self.step_match(1)

    def step_match(self, step: int) -> None:
        """Show the next (``step`` 1) or previous (-1) match of the Find box, over the
        whole window; the page turns to it and the cell is selected."""
        s = self.session
        e = self.editor
        query = self.find.value
        if s is None or not query.strip():
            self.find_label.value = ""
            return
        state = (id(s), s.pending, len(s.df), e.filter.value, e.sort_by.value, e.descending.value)
        if self._matches is None or self._matched_for != (query, *state):
            self._matches = find_cells(s.df, s.schema, query, self._window())
            self._matched_for = (query, *state)
            self._match = -1 if step > 0 else 0
        matches = self._matches
        if not len(matches):
            self.find_label.value = "no match"
            e._say(f"No cell matches {query!r} (the filter's rows, every column).", "warn")
            return
        self._match = (self._match + step) % len(matches)
        place = int(matches.positions[self._match])
        column = matches.column(self._match)
        page = place // e.page_size
        if page != e.page:
            e.page = page
            e._refresh_grid()
        grid_row = place % e.page_size
        e.grid_patch.show_cell(grid_row, self._names().index(column))
        self.find_label.value = f"{self._match + 1:,} of {len(matches):,}"
        row_id = int(matches.row_ids[self._match])
        e._say(f"{s.label(row_id)} · {column} = {say(s.value(row_id, column))}")

    # ------------------------------------------------- summary and history

    def _cursor(self) -> tuple[int, str] | None:
        """``(row id, column)`` of the selected cell (the ⚑ column: the whole row)."""
        block = self._selection()
        ids = self.editor._window_ids
        if block is None or block["r1"] >= len(ids):
            return None
        names = self._names()
        return ids[block["r1"]], names[min(block["c1"], len(names) - 1)]

    def show_summary(self) -> str:
        """Show the selected column's summary (over the whole table, pending edits
        included); kept per version while nothing is pending."""
        s = self.session
        e = self.editor
        cursor = self._cursor()
        if s is None or cursor is None or cursor[1] == STATUS:
            e._say("Select a cell of the column to summarize.", "warn")
            return ""
        column = cursor[1]
        cache = (s.master.version_id, column) if not s.pending else None
        if cache is None or cache not in self._summaries:
            summary = summarize(column, s.column(column))
            labels = [label for label, _ in summary.facts]
            values = tuple(value for _, value in summary.facts)
            text = f"<b>{html.escape(column)}</b>" + html_table(
                [values], labels, css_class="s3grid-summary"
            )
            if cache is None:
                self._show_panel(text)
                return text
            self._summaries[cache] = text
        self._show_panel(self._summaries[cache])
        return self._summaries[cache]

    def show_history(self) -> None:
        """Show the history of the selected cell (every save that changed it), or of
        the whole row when the ⚑ cell is selected."""
        s = self.session
        e = self.editor
        cursor = self._cursor()
        if s is None or cursor is None:
            e._say("Select a cell (or a row's ⚑ cell) to see its history.", "warn")
            return
        row_id, column = cursor
        if row_id in s.added_ids:
            e._say("This row is new: it has no history until it is saved.", "warn")
            return
        key = s.key_of(row_id)
        name = row_label(s.key_columns, key, row_id)
        frame = e.store.history(key=key, column=None if column == STATUS else column)
        what = name if column == STATUS else f"{name} · {column}"
        if frame.empty:
            e._say(f"No save has changed {what}.")
            self._show_panel("")
            return
        rows = [
            (
                _when(r["timestamp"]),
                r["user"],
                r["note"],
                r["change"],
                r["column"],
                r["old"],
                r["new"],
            )
            for r in _newest_first(frame)
        ]
        e._say(f"History of {what}: {len(frame):,} change(s), newest first.")
        self._show_panel(
            html_table(
                rows,
                ("when", "who", "note", "change", "column", "was", "became"),
                css_class="s3grid-history",
            )
        )

    # ------------------------------------------------------------ versions

    def show_versions(self) -> None:
        """The Versions view: every save (who, when, note, counts), a diff of any two,
        and restore (through the locked save)."""
        e = self.editor
        if not self.versions_button.value:
            self.versions.layout.display = "none"
            return
        log = e.store.audit_log()
        saves = _newest_first(log)
        rows = [
            (
                _when(r["timestamp"]),
                r["user"],
                r["note"],
                r["source"],
                r["cells_changed"],
                r["rows_added"],
                r["rows_deleted"],
                r["new_version"],
            )
            for r in saves
        ]
        self.versions_table.value = html_table(
            rows,
            ("when", "who", "note", "source", "cells", "+rows", "-rows", "version"),
            css_class="s3grid-versions",
            limit=100,
        )
        options = [
            (f"{_when(r['timestamp'])} · {r['user']} · {str(r['note'])[:40]}", r["new_version"])
            for r in saves
        ]
        self.version_from.options = options
        self.version_to.options = options
        if options:  # the newest save against the one before it
            self.version_to.value = options[0][1]
            self.version_from.value = options[min(1, len(options) - 1)][1]
        self.versions.layout.display = "flex"

    def refresh_versions(self) -> None:
        """Draw the Versions view again if it is open (a save or a reload made a new
        version the editor's)."""
        if self.versions_button.value:
            self.show_versions()

    def show_diff(self) -> None:
        """Show what changed from the "From" version to the "To" one."""
        e = self.editor
        old, new = self.version_from.value, self.version_to.value
        if not old or not new:
            e._say("Pick two versions to compare.", "warn")
            return
        frame = e.store.diff_versions(old, new)
        if frame.empty:
            e._say("No changes: the two versions hold the same table.")
            self._show_panel("")
            return
        e._say(f"{len(frame):,} change(s) from “From” to “To”.")
        header = [str(c) for c in frame.columns]
        rows = [tuple(r) for r in frame.itertuples(index=False)]
        self._show_panel(html_table(rows, header, css_class="s3grid-diff"))

    def offer_restore(self) -> bool:
        """Ask before restoring: name the "To" save and offer the button that restores
        it (refused while edits are pending, or without a note). True: asked."""
        s = self.session
        e = self.editor
        self.offer.children = []
        version = self.version_to.value
        if s is None or not version:
            e._say("Pick the version to restore in “To”.", "warn")
            return False
        if s.pending:
            e._say(
                f"You have {s.pending} pending change(s): save or revert them before "
                "restoring a version.",
                "warn",
            )
            return False
        if not e.note.value.strip():
            e._say("Write a note first: why this version comes back (it goes in the audit).")
            return False
        label = self.version_to.label
        go = w.Button(description=f"Restore {label}", button_style="danger")
        go.layout.width = "auto"
        cancel = w.Button(description="Cancel")
        go.on_click(e._guarded("Restore", lambda _: self.restore(version, label)))
        cancel.on_click(lambda _: self._cancel_offer())
        self.offer.children = [go, cancel]
        e._say(
            f"Restore the version saved {label} as a new version of the master? "
            "Everyone's later saves stay in the history."
        )
        return True

    def _cancel_offer(self) -> None:
        self.offer.children = []
        self.editor._say("Nothing was changed.")

    def restore(self, version: str, label: str) -> None:
        """Make ``version`` the master again, with the note, through the locked save."""
        s = self.session
        e = self.editor
        self.offer.children = []
        if s is None or s.pending:  # edited since the question was asked
            e._say("The table has pending changes now; nothing was restored.", "warn")
            return
        try:
            result = e.store.restore(version_id=version, base=s.master, note=e.note.value)
        except S3GridError as exc:
            e._say(f"{exc} Nothing was restored.", "error")
            return
        e.note.value = ""
        e.reload()
        self._show_panel("")  # a diff shown before is of versions that moved on
        e._say(
            f"Restored the version saved {label}; the master's new version is {result.new_version}."
        )

    def _on_read_only(self, column: str) -> None:
        if column == STATUS:
            self.editor._say("The ⚑ column shows row status; it cannot be edited.", "warn")
        else:
            self.editor._say(
                f"Column {column!r} is read-only (rows you add take a value there).", "warn"
            )


def _newest_first(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in frame.iloc[::-1].to_dict("records")]


def _when(stamp: Any) -> str:
    return when(pd.Timestamp(stamp).to_pydatetime())
