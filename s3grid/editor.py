"""The editor widget: an ipydatagrid grid over a window of the master, with a toolbar.

Thin by design: the workflow (reload, save, conflicts, merges) and its state live in
:class:`~s3grid.controller.EditorController`, pending edits in
:class:`~s3grid.session.EditSession`, the grid in :mod:`s3grid.grid`. This module lays
out and wires widgets, renders the controller's state, and keeps the browser showing
exactly what the kernel holds.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
import pyarrow as pa
from ipydatagrid import TextRenderer, VegaExpr

from s3grid.controller import EditorController, Outcome, PendingMerge
from s3grid.diff import (
    MINE,
    THEIRS,
    MergeResult,
    py_value,
    values_equal,
)
from s3grid.errors import S3GridError
from s3grid.grid import CheckedGrid
from s3grid.gridpatch import GridPatch
from s3grid.session import ROW_ID, EditSession
from s3grid.store import MasterStore

__all__ = ["Editor"]

log = logging.getLogger(__name__)

STATUS = "⚑"  # the status column the grid shows first; not part of the master
# From this many rows on, a sort, a row deletion or a merge takes long enough to wonder
# about (docs/performance.md), so the editor says what it is doing meanwhile. Below, the
# message would only flash.
SAY_WORK_ROWS = 1_000_000
_READ_ONLY_BG = "#eeeeee"
_NOTHING = object()


def cell_text(value: Any) -> str:
    """How the grid shows a kernel value: exact text the kernel can parse back.

    A float NaN shows as "nan" (typing "nan" stores NaN); a missing value as nothing.
    """
    if isinstance(value, float | np.floating) and np.isnan(value):
        return "nan"
    if isinstance(value, np.float32 | np.float16):
        return str(value)  # "0.1", not the float64 widening "0.10000000149011612"
    if isinstance(value, pd.Timestamp) and value is not pd.NaT:
        return value.isoformat()  # to the nanosecond (a datetime stops at microseconds)
    value = py_value(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if isinstance(value, bytes | bytearray):
        return "0x" + value.hex()
    if isinstance(value, np.ndarray):
        return str([py_value(v) for v in value.tolist()])
    return repr(value) if isinstance(value, float) else str(value)


def _display_frame(frame: pd.DataFrame, session: EditSession) -> pd.DataFrame:
    """What the grid shows: a status column, then the master's columns, all as text.

    ipydatagrid's front-end number editors parse before sending: "7.5" typed into an int
    column arrives as 7, "abc" in a float column as 0/NaN. As text, the kernel gets
    exactly what was typed and decides (schema.py); the browser is told the result.
    """
    ids = frame.index.to_numpy()
    out = pd.DataFrame(
        {col: _column_text(frame[col], session.nan_mask(ids, col)) for col in frame.columns},
        index=frame.index,
        dtype=object,
    )
    out.insert(0, STATUS, _row_status(session, [int(rid) for rid in out.index]))
    out.index.name = ROW_ID
    return out


def _column_text(column: pd.Series, nan: np.ndarray) -> list[str]:
    """Cell texts of one window column: in a float column pandas holds null as NaN too,
    so only the cells the session knows to be NaN show "nan"."""
    missing = column.isna().to_numpy(dtype=bool)
    values = column.tolist()
    if column.dtype in (np.float32, np.float16):  # the shortest text of the stored value
        narrow = column.dtype.type
        values = [narrow(v) for v in values]
    return [
        ("nan" if is_nan else "") if gone else cell_text(value)
        for value, gone, is_nan in zip(values, missing, nan, strict=True)
    ]


def _row_status(session: EditSession, row_ids: Sequence[int]) -> list[str]:
    """The ⚑ column: "dup key", "new", "edited" or "" for each row id."""
    dup_ids = {rid for ids in session.duplicates().values() for rid in ids}
    added = set(session.added_ids)
    edited = session.edited_ids()
    status = []
    for rid in row_ids:
        if rid in dup_ids:
            status.append("dup key")
        elif rid in added:
            status.append("new")
        elif rid in edited:
            status.append("edited")
        else:
            status.append("")
    return status


class Editor(w.VBox):  # type: ignore[misc]
    """Edit the master in a grid; Save goes through the locked save.

    Args:
        store: the master to edit.
        key_columns: row identity (default: the store's key columns).
        read_only_columns: columns that cannot be edited.
        page_size: rows shown per page; filtering, sorting and paging run in the kernel.
        load: load the master now (default True).
    """

    def __init__(
        self,
        store: MasterStore,
        *,
        key_columns: Sequence[str] | None = None,
        read_only_columns: Iterable[str] = (),
        page_size: int = 500,
        load: bool = True,
    ) -> None:
        # The workflow (reload, save, conflicts, merges) and its state live in the
        # controller; this widget lays out, wires and renders.
        self.controller = EditorController(
            store,
            key_columns=key_columns,
            read_only_columns=read_only_columns,
            busy=self._busy,
        )
        self.read_only_columns = tuple(read_only_columns)
        self.page_size = page_size
        self.page = 0
        self._rendered: tuple[EditSession | None, PendingMerge | None] = (None, None)
        self._choices: dict[tuple[Any, str | None], w.ToggleButtons] = {}
        self._window_ids: list[int] = []
        self._echoed: dict[tuple[int, str], Any] = {}  # (grid row, column) -> value sent
        self._shown_status: list[str] = []  # the ⚑ column as the browser shows it

        cfg = store.cfg
        layout = w.Layout(width="auto")
        self.bucket = w.Text(cfg.bucket, description="Bucket", layout=layout)
        self.master_key = w.Text(cfg.master_key, description="Master key", layout=layout)
        self.snapshot_prefix = w.Text(cfg.snapshot_prefix, description="Snapshots", layout=layout)
        self.audit_prefix = w.Text(cfg.audit_prefix, description="Audits", layout=layout)
        self.reload_button = w.Button(description="Reload", icon="refresh")
        self.save_button = w.Button(description="Save", icon="save", button_style="primary")
        self.note = w.Text(
            placeholder="What did you change, and why?",
            description="Note",
            layout=w.Layout(width="40%"),
        )
        self.undo_button = w.Button(description="Undo", icon="undo")
        self.redo_button = w.Button(description="Redo", icon="repeat")
        self.add_button = w.Button(description="Add row", icon="plus")
        self.delete_button = w.Button(description="Delete rows", icon="trash")
        self.revert_button = w.Button(description="Revert all", icon="times")
        self.changes_button = w.ToggleButton(description="Changes", icon="list")
        self.filter = w.Text(
            placeholder="filter, e.g. tow == 4 and net > 0",
            description="Filter",
            continuous_update=False,
        )
        self.sort_by = w.Dropdown(options=[("(file order)", "")], description="Sort by")
        self.descending = w.Checkbox(description="descending", indent=False)
        self.prev_button = w.Button(description="◀", layout=w.Layout(width="40px"))
        self.next_button = w.Button(description="▶", layout=w.Layout(width="40px"))
        self.page_label = w.Label()
        self.status = w.HTML()
        # A fixed height: a message appearing must not shift the grid (a re-layout
        # repaints the whole canvas).
        self.message = w.HTML(layout=w.Layout(min_height="3.2em"))
        # Transfer progress bars of a large master land here, in sight, instead of in
        # the log console where output from a button's callback goes.
        self.progress = w.Output()
        self.changes_panel = w.HTML(layout=w.Layout(display="none"))
        self.conflict_panel = w.VBox(layout=w.Layout(display="none"))
        self.conflict_panel.add_class("s3grid-conflicts")
        self.grid = CheckedGrid(
            pd.DataFrame(),
            editable=True,
            selection_mode="cell",
            layout=w.Layout(height="420px"),
            on_edit=self._guarded("edit", self._on_grid_edit),
        )
        # makes an edit repaint one cell instead of the whole grid (see gridpatch.py)
        self.grid_patch = GridPatch(self.grid)

        guard = self._guarded
        self.reload_button.on_click(guard("Reload", lambda _: self.reload()))
        self.save_button.on_click(guard("Save", lambda _: self.save()))
        self.undo_button.on_click(guard("Undo", lambda _: self.undo()))
        self.redo_button.on_click(guard("Redo", lambda _: self.redo()))
        self.add_button.on_click(guard("Add row", lambda _: self.add_row()))
        self.delete_button.on_click(guard("Delete rows", lambda _: self.delete_selected()))
        self.revert_button.on_click(guard("Revert all", lambda _: self.revert_all()))
        self.changes_button.observe(guard("Changes", lambda _: self._refresh_changes()), "value")
        self.filter.observe(guard("Filter", lambda _: self._rewindow()), "value")
        self.sort_by.observe(guard("Sort", lambda _: self._rewindow()), "value")
        self.descending.observe(guard("Sort", lambda _: self._rewindow()), "value")
        self.prev_button.on_click(guard("Page", lambda _: self._goto(self.page - 1)))
        self.next_button.on_click(guard("Page", lambda _: self._goto(self.page + 1)))

        super().__init__(
            [
                w.HBox([self.bucket, self.master_key, self.snapshot_prefix, self.audit_prefix]),
                w.HBox([self.reload_button, self.save_button, self.note]),
                w.HBox(
                    [
                        self.undo_button,
                        self.redo_button,
                        self.add_button,
                        self.delete_button,
                        self.revert_button,
                        self.changes_button,
                    ]
                ),
                w.HBox(
                    [
                        self.filter,
                        self.sort_by,
                        self.descending,
                        self.prev_button,
                        self.page_label,
                        self.next_button,
                    ]
                ),
                self.status,
                self.message,
                self.progress,
                self.conflict_panel,
                self.changes_panel,
                self.grid,
                self.grid_patch,
            ]
        )
        self.add_class("s3grid-editor")
        if load:
            self.reload()

    @classmethod
    def from_env(cls, **kwargs: Any) -> Editor:
        """An editor on the master configured by the environment (see S3GridConfig)."""
        return cls(MasterStore.from_env(), **kwargs)

    # ---------------------------------------------------------------- helpers

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The key columns in use."""
        return self.session.key_columns if self.session else ()

    def _guarded(self, action: str, handler: Callable[..., Any]) -> Callable[..., None]:
        """``handler`` for a button, a field or a grid edit: whatever fails in it ends in a
        message, never in a traceback in the log and an editor stuck on "Saving…"."""

        def run(*args: Any) -> None:
            try:
                handler(*args)
            except Exception as exc:  # the last line of defence: S3GridErrors are said earlier
                log.exception("s3grid editor: %s failed", action)
                pending = self.session.pending if self.session is not None else 0
                kept = f" Your {pending} pending change(s) are kept." if pending else ""
                self._say(
                    f"{action} failed unexpectedly ({type(exc).__name__}: {exc}).{kept} "
                    "Try again; if it keeps failing, save your work from Python "
                    "(editor.session.to_table()) and report this.",
                    "error",
                )
                self._refresh_status()

        return run

    @contextmanager
    def _busy(self, doing: str) -> Iterator[None]:
        """Say what is running and lock Save/Reload until it ends (a 10M-row save takes
        seconds: the user sees it started, and a second click cannot queue a second
        save). The message sent first reaches the browser before the work starts."""
        buttons = (self.save_button, self.reload_button)
        before = [b.disabled for b in buttons]
        for b in buttons:
            b.disabled = True
        self._say(f"{doing}…")
        try:
            with self.progress:
                yield
        finally:
            self.progress.clear_output()
            for b, disabled in zip(buttons, before, strict=True):
                b.disabled = disabled

    @contextmanager
    def _working(self, doing: str) -> Iterator[None]:
        """:meth:`_busy` for a step that is slow only on a large table. A step that says
        nothing of its own leaves the message as it was before."""
        s = self.session
        if s is None or len(s.df) < SAY_WORK_ROWS:
            yield
            return
        before = self.message.value
        with self._busy(f"{doing} ({len(s.df):,} rows)"):
            busy = self.message.value
            yield
        if self.message.value == busy:
            self.message.value = before

    def _say(self, text: str, kind: str = "info") -> None:
        colors = {"info": "#1a5e20", "error": "#b00020", "warn": "#8a5300"}
        self.message.value = (
            f'<div class="s3grid-message s3grid-{kind}" style="color:{colors[kind]};'
            f'white-space:pre-wrap">{html.escape(text)}</div>'
        )

    @property
    def store(self) -> MasterStore:
        """The master being edited."""
        return self.controller.store

    @store.setter
    def store(self, store: MasterStore) -> None:
        self.controller.store = store

    @property
    def session(self) -> EditSession | None:
        """The pending edits over the loaded version (None before the first load)."""
        return self.controller.session

    @property
    def merge(self) -> MergeResult | None:
        """The merge waiting for picks (its conflicts), if one is open."""
        return self.controller.merge.result if self.controller.merge else None

    @property
    def last_save(self) -> str:
        """The version and time of this editor's last save, for the status line."""
        return self.controller.last_save

    def _show(
        self, outcome: Outcome | None, *, keep_page: bool = False, refresh: bool = False
    ) -> None:
        """Render the controller's state after an action, then say what it did. A new
        session starts on the first page, unless it is the one just saved; ``refresh``:
        the session's rows changed in place."""
        session, merge = self.controller.session, self.controller.merge
        if session is not None and session is not self._rendered[0]:
            if not keep_page:
                self.page = 0
            options = [("(file order)", ""), *[(c, c) for c in session.columns]]
            if list(self.sort_by.options) != options:
                self.sort_by.options = options
            self._refresh()
        elif refresh:
            self._refresh()
        elif outcome is not None and outcome.duplicates:
            self._refresh_grid()
        else:
            self._refresh_status()
            self._refresh_changes()
        if merge is not self._rendered[1]:
            if merge is None:
                self._choices = {}
                self.conflict_panel.children = []
                self.conflict_panel.layout.display = "none"
            else:
                self._show_conflicts(merge)
        self._rendered = (session, merge)
        if outcome is not None:
            self._say(outcome.message, outcome.kind)

    def refresh(self) -> None:
        """Draw the page, the status line and the Changes panel again from the session
        (after changing ``editor.session`` from Python, for example)."""
        self._refresh()

    def _refresh(self) -> None:
        self._refresh_grid()
        self._refresh_status()
        self._refresh_changes()

    def _refresh_grid(self) -> None:
        s = self.session
        if s is None:
            return
        try:
            win = s.window(
                query=self.filter.value,
                sort_by=self.sort_by.value or None,
                ascending=not self.descending.value,
                page=self.page,
                page_size=self.page_size,
            )
        except S3GridError as exc:
            self._say(str(exc), "error")
            win = s.window(page=self.page, page_size=self.page_size)
        self.page = win.page
        self._window_ids = [int(i) for i in win.frame.index]
        self._echoed.clear()
        shown = _display_frame(win.frame, s)
        self._shown_status = shown[STATUS].tolist()
        self.grid.data = shown
        self.grid.renderers = self._renderers(s)
        self.page_label.value = (
            f"page {win.page + 1}/{win.pages} · {win.matching_rows:,} matching rows"
        )

    def _renderers(self, s: EditSession) -> dict[str, Any]:
        flag = TextRenderer(
            background_color=VegaExpr(
                "cell.value == 'dup key' ? '#ffb3b3' : cell.value == 'new' ? '#d6f5d6' : "
                "cell.value == 'edited' ? '#fff2b3' : 'white'"
            )
        )
        out: dict[str, Any] = {STATUS: flag}
        for field in s.schema:
            numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
            if field.name in s.read_only_columns:
                out[field.name] = TextRenderer(
                    background_color=_READ_ONLY_BG,
                    horizontal_alignment="right" if numeric else "left",
                )
            elif numeric:
                out[field.name] = TextRenderer(horizontal_alignment="right")
        return out

    def _refresh_status(self) -> None:
        s = self.session
        if s is None:
            self.status.value = "<i>not loaded</i>"
            return
        m = s.master
        version = (m.version_id or "-")[:12]
        dups = s.duplicates()
        parts = [
            f"<b>{html.escape(self.store.cfg.uri)}</b>",
            f"version <code>{html.escape(version)}</code>",
            f"{len(s.df):,} rows × {len(s.columns)} columns",
            f"<b>{s.pending}</b> pending change(s)",
        ]
        if dups:
            parts.append(f'<span style="color:#b00020">{len(dups)} duplicate key(s)</span>')
        if self.last_save:
            parts.append(f"last save: {html.escape(self.last_save)}")
        self.status.value = '<span class="s3grid-status">' + " · ".join(parts) + "</span>"
        self.undo_button.disabled = not s.can_undo
        self.redo_button.disabled = not s.can_redo

    def _refresh_changes(self) -> None:
        s = self.session
        show = self.changes_button.value and s is not None
        self.changes_panel.layout.display = "block" if show else "none"
        if not show or s is None:
            return
        d = s.changes()
        keys = ", ".join(d.key_columns) if d.key_columns else "row"
        rows = [
            f"<tr><td>{html.escape(str(c.key))}</td><td>{html.escape(c.column)}</td>"
            f"<td>{html.escape(repr(c.old))} → {html.escape(repr(c.new))}</td></tr>"
            for c in d.cells
        ]
        rows += [
            f"<tr><td>{html.escape(str(k))}</td><td colspan=2>added row</td></tr>" for k in d.added
        ]
        rows += [
            f"<tr><td>{html.escape(str(k))}</td><td colspan=2>deleted row</td></tr>"
            for k in d.deleted
        ]
        body = "".join(rows) or "<tr><td colspan=3>No pending changes.</td></tr>"
        self.changes_panel.value = (
            f'<table class="s3grid-changes"><tr><th>{html.escape(keys)}</th><th>column</th>'
            f"<th>old → new</th></tr>{body}</table>"
        )

    def _goto(self, page: int) -> None:
        self.page = page
        self._refresh_grid()

    def _rewindow(self) -> None:
        """The filter or the sort changed: the first page of the new window."""
        with self._working("Filtering and sorting"):
            self._goto(0)

    # ----------------------------------------------------------------- edits

    def _on_grid_edit(self, row: int, column: str, value: Any) -> None:
        if self.session is None:
            return
        echoed = self._echoed.pop((row, column), _NOTHING)
        if echoed is not _NOTHING and values_equal(echoed, value):
            return  # the front-end reports every value the kernel sets: our own echo
        if column == STATUS or row >= len(self._window_ids):
            self._say("The ⚑ column shows row status; it cannot be edited.", "warn")
            self._refresh_grid()
            return
        self.edit_cell(self._window_ids[row], column, value, grid_row=row)

    def _cell_text(self, column: str, value: Any) -> str:
        """:func:`cell_text` at the column's precision (a float32 shows as float32)."""
        assert self.session is not None
        type_ = self.session.schema.field(column).type
        if isinstance(value, float) and (pa.types.is_float32(type_) or pa.types.is_float16(type_)):
            value = type_.to_pandas_dtype()(value)
        return cell_text(value)

    def edit_cell(
        self, row_id: int, column: str, value: Any, *, grid_row: int | None = None
    ) -> bool:
        """Apply one edit to the row with id ``row_id``; True if it was accepted.

        A refused value is reported in the message area and the grid cell goes back to
        the value the kernel holds. ``grid_row`` is set by the grid's handler only: the
        edit was typed into that row of the window, so the browser shows it already.
        """
        s = self.session
        assert s is not None
        try:
            stored = s.set_cell(row_id, column, value)
            accepted = True
            self._say(f"Row {row_id}: {column} = {stored!r}")
        except S3GridError as exc:
            stored = s.value(row_id, column) if row_id in s.df.index else None
            accepted = False
            self._say(f"{exc} The cell keeps {stored!r}.", "error")
        typed = grid_row is not None  # in the browser, which shows the text typed
        if grid_row is None and row_id in self._window_ids:
            grid_row = self._window_ids.index(row_id)
        shown = self._cell_text(column, stored)
        if grid_row is not None and typed and accepted and shown == value:
            # Stored as typed: the browser is right already. Without the front-end patch
            # each value the kernel sets rebuilds the browser's whole data model, so only
            # the kernel's copy is brought up to date.
            self.grid.keep_shown(grid_row, column, shown)
        elif grid_row is not None:
            # The browser must show what the kernel stored ("012" -> "12", a refused
            # value -> the old one, an edit made from code), never what was typed.
            self._echo(grid_row, column, shown)
        if accepted and column in self.key_columns:
            self._refresh_grid()  # duplicate flags may have changed
        elif accepted and grid_row is not None and self.grid_patch.patched:
            self._show_row_status(grid_row, row_id)
        # Without the front-end patch every value the kernel sets costs the browser a
        # full grid rebuild and repaint, so the ⚑ flag waits for the next refresh; the
        # status line counts pending edits now.
        self._refresh_status()
        self._refresh_changes()
        return accepted

    def _show_row_status(self, grid_row: int, row_id: int) -> None:
        assert self.session is not None
        (status,) = _row_status(self.session, [row_id])
        if grid_row < len(self._shown_status) and self._shown_status[grid_row] != status:
            self._shown_status[grid_row] = status
            self._echo(grid_row, STATUS, status)

    def _echo(self, grid_row: int, column: str, value: Any) -> None:
        self._echoed[(grid_row, column)] = value
        self.grid.set_cell_value_by_index(column, grid_row, value)

    def undo(self) -> None:
        """Undo the last edit."""
        with self._working("Undoing"):
            if self.session and self.session.undo():
                self._show_step()

    def redo(self) -> None:
        """Redo the last undone edit."""
        with self._working("Redoing"):
            if self.session and self.session.redo():
                self._show_step()

    def _show_step(self) -> None:
        """Show an undo/redo: one cell in view is sent alone, as an edit's echo is (a new
        window would repaint the whole grid); anything else refreshes the window."""
        assert self.session is not None
        cell = self.session.last_step_cell
        if (
            cell is None
            or not self.grid_patch.patched
            or cell[1] in self.key_columns  # duplicate flags of other rows may change
            or cell[0] not in self._window_ids
        ):
            self._refresh()
            return
        row_id, column = cell
        grid_row = self._window_ids.index(row_id)
        self._echo(grid_row, column, self._cell_text(column, self.session.value(row_id, column)))
        self._show_row_status(grid_row, row_id)
        self._refresh_status()
        self._refresh_changes()

    def add_row(self, values: dict[str, Any] | None = None) -> int | None:
        """Add a row (shown on the last page); returns its row id."""
        if self.session is None:
            return None
        with self._working("Adding a row"):
            try:
                rid = self.session.add_row(values)
            except S3GridError as exc:
                self._say(str(exc), "error")
                return None
            self.filter.value = ""
            self.sort_by.value = ""
            self.page = 10**9  # the last page, where new rows are
            self._refresh()
        self._say(f"Added row {rid}; fill in its key ({', '.join(self.key_columns)}).")
        return rid

    def selected_row_ids(self) -> list[int]:
        """Row ids of the rows with a selected cell."""
        visible = self.grid.visible_rows()  # the front end's sort/filter order
        rows = set()
        for cell in self.grid.selected_cells:
            r = int(cell["r"])
            r = visible[r] if visible and r < len(visible) else r
            if 0 <= r < len(self._window_ids):
                rows.add(self._window_ids[r])
        return sorted(rows)

    def delete_selected(self) -> int:
        """Delete the rows that have a selected cell; returns how many."""
        return self.delete_rows(self.selected_row_ids())

    def delete_rows(self, row_ids: Iterable[int]) -> int:
        """Delete rows by id; returns how many."""
        if self.session is None:
            return 0
        with self._working("Deleting"):
            n = self.session.delete_rows(row_ids)
            self._refresh()
        self._say(
            f"Deleted {n} row(s)." if n else "Select cells in the rows to delete first.",
            "info" if n else "warn",
        )
        return n

    def revert_all(self) -> None:
        """Drop every pending edit (and a merge left open)."""
        with self._working("Reverting"):
            outcome = self.controller.revert_all()
            self._show(outcome, refresh=True)

    # ------------------------------------------------------------ load / save

    def _target_changed(self) -> bool:
        cfg = self.store.cfg
        return (
            self.bucket.value.strip(),
            self.master_key.value.strip(),
            self.snapshot_prefix.value.strip(),
            self.audit_prefix.value.strip(),
        ) != (cfg.bucket, cfg.master_key, cfg.snapshot_prefix, cfg.audit_prefix)

    def reload(self) -> None:
        """Load the latest master; pending edits are merged onto it, never dropped.

        With the config fields changed, re-targets the editor (only without pending edits).
        """
        target = None
        if self._target_changed():
            try:
                target = self.store.cfg.with_(
                    bucket=self.bucket.value.strip(),
                    master_key=self.master_key.value.strip(),
                    snapshot_prefix=self.snapshot_prefix.value.strip(),
                    audit_prefix=self.audit_prefix.value.strip(),
                )
            except S3GridError as exc:
                self._say(str(exc), "error")
                return
        self._show(self.controller.reload(target))

    def save(self) -> bool:
        """Save pending edits with the note through the locked save; True on success."""
        if self.session is None:
            return False
        outcome = self.controller.save(self.note.value)
        if outcome.saved:
            self.note.value = ""
        self._show(outcome, keep_page=outcome.saved)
        return outcome.saved

    # ---------------------------------------------------------------- merging

    def _show_conflicts(self, merge: PendingMerge) -> None:
        rows: list[w.Widget] = [w.HTML("<b>Conflicts</b> (default: keep theirs)")]
        self._choices = {}
        for c in merge.result.conflicts:
            pick = w.ToggleButtons(
                options=[("mine", MINE), ("theirs", THEIRS)],
                value=merge.picks.get(c.id, THEIRS),
                style={"button_width": "70px"},
            )
            self._choices[c.id] = pick
            if c.kind == "cell":
                text = (
                    f"{c.key} · {c.column}: base {c.base!r}, theirs {c.theirs!r}, mine {c.mine!r}"
                )
            else:
                text = f"{c.key} · {c.column or 'row'}: {c.kind.replace('-', ' ')}"
            rows.append(w.HBox([w.Label(text), pick]))
        apply = w.Button(description="Apply merge", button_style="warning")
        apply.on_click(self._guarded("Apply merge", lambda _: self.apply_merge()))
        rows.append(apply)
        self.conflict_panel.children = rows
        self.conflict_panel.layout.display = "flex"

    def resolve(self, choices: dict[tuple[Any, str | None], str]) -> None:
        """Pick ``"mine"`` or ``"theirs"`` for conflicts (by ``MergeConflict.id``)."""
        for cid, choice in choices.items():
            if cid in self._choices:
                self._choices[cid].value = choice

    def apply_merge(self) -> None:
        """Apply the merge with the chosen resolutions; the result is pending on theirs.

        The merge is made again from the session as it is now, so edits made while the
        conflicts were shown are kept. If those edits changed the conflicts, the new list
        is shown (with the picks made so far) and nothing is applied yet.
        """
        picks = {cid: b.value for cid, b in self._choices.items()}
        with self._working("Merging"):
            outcome = self.controller.apply_merge(picks)
        self._show(outcome)
