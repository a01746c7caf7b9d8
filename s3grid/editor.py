"""The editor widget: an ipydatagrid grid over a window of the master, with a toolbar.

Thin by design: the state of pending edits lives in :class:`~s3grid.session.EditSession`,
saving in :class:`~s3grid.store.MasterStore`, merging in :mod:`s3grid.diff`. This module
only wires widgets to them and keeps the browser showing exactly what the kernel holds.
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
from ipydatagrid import DataGrid, TextRenderer, VegaExpr

from s3grid.diff import (
    MINE,
    THEIRS,
    MergeConflict,
    MergeResult,
    py_value,
    three_way_merge,
    values_equal,
)
from s3grid.errors import ConflictError, LostUpdateError, S3GridError, StoreUnavailableError
from s3grid.gridpatch import GridPatch
from s3grid.model import Master
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


class _CheckedGrid(DataGrid):  # type: ignore[misc]
    """A DataGrid whose cell edits reach the editor before they touch the grid's data.

    ipydatagrid 1.4 writes the raw typed value into its kernel-side frame before telling
    anyone (so "75" into an Int32 column raises, and a cleared int cell turns the column to
    float). Here the editor coerces first and writes back only what it accepted.
    """

    def __init__(self, *args: Any, on_edit: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_msg(self._DataGrid__handle_custom_msg, remove=True)
        self.on_msg(self._on_front_end_msg)
        self._on_edit = on_edit

    def keep_shown(self, row: int, column: str, text: str) -> None:
        """Record a value the browser already shows in the kernel's copy, sending nothing.

        A reloaded page, or a second view of the grid, is drawn from that copy.
        """
        self._data["data"].loc[row, column] = text

    def _on_front_end_msg(self, widget: Any, content: dict[str, Any], buffers: Any) -> None:
        if content.get("event_type") == "cell-changed":
            column = self._column_index_to_name(self._data, content["column_index"])
            self._on_edit(int(content["row"]), str(column), content["value"])
        else:  # clicks and the rest keep ipydatagrid's own handling
            self._DataGrid__handle_custom_msg(widget, content, buffers)


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
        self.store = store
        self._key_columns_arg = tuple(key_columns) if key_columns is not None else None
        self.read_only_columns = tuple(read_only_columns)
        self.page_size = page_size
        self.session: EditSession | None = None
        self.page = 0
        self.merge: MergeResult | None = None
        # (base, theirs, onto): the merged result becomes pending edits on `onto`. "Mine"
        # is the session's content when the merge is applied: edits made while the
        # conflicts are shown are part of it.
        self._merge_inputs: tuple[Master, Master, Master] | None = None
        self._choices: dict[tuple[Any, str | None], w.ToggleButtons] = {}
        self._window_ids: list[int] = []
        self._echoed: dict[tuple[int, str], Any] = {}  # (grid row, column) -> value sent
        self._shown_status: list[str] = []  # the ⚑ column as the browser shows it
        self.last_save: str = ""

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
        self.grid = _CheckedGrid(
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

    def _new_session(
        self,
        master: Master,
        content: Any = None,
        store: MasterStore | None = None,
        *,
        keys_verified: bool = False,
    ) -> EditSession:
        keys = (
            self._key_columns_arg
            if self._key_columns_arg is not None
            else (store or self.store).key_columns_for(master.schema)
        )
        # Read-only columns are per master: a re-targeted editor may not have them.
        read_only = [c for c in self.read_only_columns if c in master.schema.names]
        if content is None:
            return EditSession(
                master, key_columns=keys, read_only_columns=read_only, keys_verified=keys_verified
            )
        return EditSession.from_content(
            master, content, key_columns=keys, read_only_columns=read_only
        )

    def _set_session(self, session: EditSession) -> None:
        self.session = session
        options = [("(file order)", ""), *[(c, c) for c in session.columns]]
        if list(self.sort_by.options) != options:
            self.sort_by.options = options
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
        visible = list(self.grid._visible_rows or [])  # front-end sort/filter order
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
        """Drop every pending edit."""
        if self._merge_inputs is not None and self._merging_lost_update:
            # Our save did commit: dropping the merge leaves the version we saved, not the
            # one we started from (that would show edits undone that are in the master).
            _, lost, saved = self._merge_inputs
            self._continue_on(saved)
            self._say(
                f"Merge dropped: the master is the version you saved, {saved.version_id}. "
                f"The changes it overwrote are still in version {lost.version_id} "
                "(store.read_version, or restore it)."
            )
            return
        if self.session:
            with self._working("Reverting"):
                self.session.revert_all()
                self._hide_conflict()
                self._refresh()
            self._say("All pending changes were dropped.")

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
        s = self.session
        store = self.store
        if self._merging_lost_update:
            # A reload would merge onto the master (ours) instead of the version ours
            # overwrote, and their changes would be offered no more.
            self._say(
                "First pick mine or theirs for each conflict and Apply merge: it brings "
                "back the changes the lost update overwrote. Then Reload.",
                "warn",
            )
            return
        if self._target_changed():
            if s is not None and s.pending:
                self._say(
                    f"You have {s.pending} pending change(s) to {self.store.cfg.uri}. Save or "
                    "Revert all before switching to another master.",
                    "warn",
                )
                return
            try:
                cfg = self.store.cfg.with_(
                    bucket=self.bucket.value.strip(),
                    master_key=self.master_key.value.strip(),
                    snapshot_prefix=self.snapshot_prefix.value.strip(),
                    audit_prefix=self.audit_prefix.value.strip(),
                )
                store = self.store.with_config(cfg)
            except S3GridError as exc:
                self._say(str(exc), "error")
                return
        try:
            with self._busy(f"Loading {store.cfg.uri}"):
                latest = store.load()
        except S3GridError as exc:
            self._say(f"Could not load: {exc}", "error")
            self._refresh_status()
            return
        if s is not None and s.pending and latest.etag != s.master.etag:
            if self._duplicates_block_merge(s, "The master changed, and your", "Reload"):
                return
            self._start_merge(s.master, latest, s.to_table(), reason="Reloaded")
            return
        if s is not None and s.pending:
            self._say("The master has not changed since you loaded it; your edits are kept.")
            self._refresh_status()
            return
        try:
            session = self._new_session(latest, store=store)
        except S3GridError as exc:  # e.g. key columns this master lacks
            self._say(f"Could not open {store.cfg.uri}: {exc}", "error")
            return
        self.store = store  # re-targeted only once the new master is open
        self.page = 0
        self._hide_conflict()
        self._set_session(session)
        self._say(f"Loaded version {latest.version_id} ({latest.table.num_rows:,} rows).")

    def save(self) -> bool:
        """Save pending edits with the note through the locked save; True on success."""
        s = self.session
        if s is None:
            return False
        if self.merge is not None and self.merge.conflicts:
            self._say("Resolve the conflicts (mine/theirs) and click Apply merge first.", "warn")
            return False
        dups = s.duplicates()
        if dups:
            listing = "; ".join(
                f"{dict(zip(s.key_columns, k, strict=True))} in rows {ids}"
                for k, ids in list(dups.items())[:20]
            )
            self._say(f"Save blocked: duplicate keys: {listing}. Fix them, then Save.", "error")
            self._refresh_grid()
            return False
        with self._busy(f"Saving {len(s.df):,} rows to {self.store.cfg.uri}"):
            return self._save(s)

    def _save(self, s: EditSession) -> bool:
        try:
            table = s.to_table()
            res = self.store.save(
                table, base=s.master, note=self.note.value, changes=s.changes().counts
            )
        except ConflictError as exc:
            try:
                theirs = self.store.load()
            except S3GridError as load_exc:
                self._say(f"{exc}\nCould not load their version: {load_exc}", "error")
                return False
            who = f"{exc.saved_by or 'someone'} at {exc.saved_at or '?'}"
            self._start_merge(
                s.master,
                theirs,
                table,
                reason=f"Conflict: saved by {who} (note: {exc.current_note!r})",
            )
            return False
        except LostUpdateError as exc:
            # Ours committed over a colleague's version that the store failed to protect:
            # merge their lost changes onto ours, as pending edits to review and save.
            res = exc.result
            saved = Master(
                table=table, version_id=res.new_version, etag=res.new_etag, key=s.master.key
            )
            try:
                lost = self.store.read_version(exc.overwritten[0])
            except S3GridError as load_exc:
                self._say(f"{exc}\nCould not load the overwritten version: {load_exc}", "error")
                return False
            self.last_save = f"{res.new_version[:12]} at {res.timestamp}"
            self._start_merge(s.master, lost, table, onto=saved, reason=str(exc))
            return False
        except StoreUnavailableError as exc:
            self._say(
                f"{exc}\nEvery pending edit is kept; click Save again when S3 is back.", "error"
            )
            return False
        except S3GridError as exc:
            self._say(f"Not saved: {exc}\nYour edits are kept.", "error")
            return False
        saved = Master(table=table, version_id=res.new_version, etag=res.new_etag, key=s.master.key)
        self.last_save = f"{res.new_version[:12]} at {res.timestamp}"
        self.note.value = ""
        self._hide_conflict()
        # The store refused duplicate keys in exactly this table: when it checked the same
        # key columns as the editor, there is no need to look again.
        verified = s.key_columns == tuple(self.store.key_columns_for(saved.schema))
        self._set_session(self._new_session(saved, keys_verified=verified))
        msg = (
            f"Saved version {res.new_version}: {res.cells_changed} cell(s) changed, "
            f"{res.rows_added} added, {res.rows_deleted} deleted. Snapshot {res.snapshot_key}."
        )
        self._say(
            msg + (f"\n{res.incomplete}" if res.incomplete else ""),
            "warn" if res.incomplete else "info",
        )
        return True

    # ---------------------------------------------------------------- merging

    @property
    def _merging_lost_update(self) -> bool:
        """A lost update's merge is open: "theirs" is the version our save overwrote."""
        return self._merge_inputs is not None and self._merge_inputs[2] is not self._merge_inputs[1]

    def _duplicates_block_merge(self, s: EditSession, lead: str, then: str) -> bool:
        """Rows are matched by key in a merge: with duplicate keys, say so and refuse."""
        if not s.duplicates():
            return False
        self._say(
            f"{lead} edits hold duplicate keys: fix them, then {then} to merge. "
            "Your edits are kept.",
            "warn",
        )
        return True

    def _start_merge(
        self, base: Master, theirs: Master, mine: Any, *, reason: str, onto: Master | None = None
    ) -> None:
        keys = self.session.key_columns if self.session else ()
        result = three_way_merge(base.table, theirs.table, mine, keys)
        theirs_diff = result.theirs_changes
        summary = (
            f"{reason}. They changed {theirs_diff.cells_changed} cell(s), added "
            f"{theirs_diff.rows_added} and deleted {theirs_diff.rows_deleted} row(s) "
            f"(version {theirs.version_id}). {result.auto_merged} of your change(s) merged "
            f"automatically; {len(result.conflicts)} conflict(s)."
        )
        if not result.conflicts:
            self._continue_on(onto or theirs, result.table)
            self._say(summary + " Review and Save again to commit.", "warn")
            return
        self._merge_inputs = (base, theirs, onto or theirs)
        self.merge = result
        self._say(summary + " Pick mine or theirs for each conflict, then Apply merge.", "warn")
        self._show_conflicts(result.conflicts)

    def _show_conflicts(
        self, conflicts: Sequence[MergeConflict], picks: dict[Any, str] | None = None
    ) -> None:
        rows: list[w.Widget] = [w.HTML("<b>Conflicts</b> (default: keep theirs)")]
        self._choices = {}
        for c in conflicts:
            pick = w.ToggleButtons(
                options=[("mine", MINE), ("theirs", THEIRS)],
                value=(picks or {}).get(c.id, THEIRS),
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
        s = self.session
        if self._merge_inputs is None or self.merge is None or s is None:
            return
        with self._working("Merging"):
            self._apply_merge(s, *self._merge_inputs)

    def _apply_merge(self, s: EditSession, base: Master, theirs: Master, onto: Master) -> None:
        assert self.merge is not None
        picks = {cid: b.value for cid, b in self._choices.items()}
        if self._duplicates_block_merge(s, "Your", "Apply merge"):
            return
        result = three_way_merge(base.table, theirs.table, s.to_table(), s.key_columns, picks)
        shown = self.merge.conflicts
        changed = len(shown) != len(result.conflicts) or not all(
            a.same_as(b) for a, b in zip(shown, result.conflicts, strict=True)
        )
        if changed and result.conflicts:
            self.merge = result
            self._show_conflicts(result.conflicts, picks)
            self._say(
                f"Your edits since the conflict changed it: {len(result.conflicts)} "
                "conflict(s) now. Check mine or theirs for each, then Apply merge.",
                "warn",
            )
            return
        self._continue_on(onto, result.table)
        n_mine = sum(1 for c in result.conflicts if picks.get(c.id) == MINE)
        self._say(
            f"Merged onto version {onto.version_id}: {result.auto_merged} automatic, "
            f"{n_mine} conflict(s) kept as mine. Review the changes and Save.",
            "warn",
        )

    def _continue_on(self, onto: Master, content: pa.Table | None = None) -> None:
        """Close any conflict; edit ``content`` (a merge's result; default: ``onto`` as
        it is) as pending changes on ``onto``."""
        self._hide_conflict()
        self.page = 0
        self._set_session(self._new_session(onto, content))

    def _hide_conflict(self) -> None:
        self.merge = None
        self._merge_inputs = None
        self._choices = {}
        self.conflict_panel.children = []
        self.conflict_panel.layout.display = "none"
