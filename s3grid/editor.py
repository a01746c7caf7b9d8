"""The editor widget: an ipydatagrid grid over a window of the master, with a toolbar.

Thin by design: the workflow (reload, save, conflicts, merges) and its state live in
:class:`~s3grid.controller.EditorController`, pending edits in
:class:`~s3grid.session.EditSession`, the grid in :mod:`s3grid.grid`. This module lays
out and wires widgets, renders the controller's state, and keeps the browser showing
exactly what the kernel holds.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
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
    values_equal,
)
from s3grid.display import (
    STATUS,
    cell_text,
    column_width,
    html_table,
    row_label,
    say,
    when,
)
from s3grid.errors import S3GridError
from s3grid.grid import CheckedGrid
from s3grid.gridpatch import GridPatch
from s3grid.session import ROW_ID, EditSession
from s3grid.store import MasterStore
from s3grid.tools import EditorTools
from s3grid.watch import Watch
from s3grid.window import header_query

__all__ = ["STATUS", "Editor", "cell_text"]  # STATUS, cell_text: from s3grid.display

log = logging.getLogger(__name__)

# From this many rows on, a sort, a row deletion or a merge takes long enough to wonder
# about (docs/performance.md), so the editor says what it is doing meanwhile. Below, the
# message would only flash.
SAY_WORK_ROWS = 1_000_000
WIDTH_SAMPLE = 256  # rows whose values size the columns
WATCH_SECONDS = 30.0  # how often an open editor looks for a colleague's newer version
# The editor of each master (by URI) whose watch runs: one per master in a kernel.
_WATCHING: weakref.WeakValueDictionary[str, Editor] = weakref.WeakValueDictionary()
_READ_ONLY_BG = "#eeeeee"
_NOTHING = object()


def _display_frame(
    frame: pd.DataFrame, session: EditSession, conflicts: Mapping[int, Sequence[str]]
) -> pd.DataFrame:
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
    out.insert(0, STATUS, _row_status(session, [int(rid) for rid in out.index], conflicts))
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


def _row_status(
    session: EditSession, row_ids: Sequence[int], conflicts: Mapping[int, Sequence[str]]
) -> list[str]:
    """The ⚑ column for each row id: "dup key", "conflict: <columns>" (while a merge is
    open), "new", "edited: <columns>" or "". The cells' renderers read the columns named
    to mark themselves (see :meth:`Editor._renderers`)."""
    dup_ids = {rid for ids in session.duplicates().values() for rid in ids}
    added = set(session.added_ids)
    edited = session.edited_columns()
    status = []
    for rid in row_ids:
        if rid in dup_ids:
            status.append("dup key")
        elif rid in conflicts:
            status.append("conflict: " + ", ".join(conflicts[rid]))
        elif rid in added:
            status.append("new")
        elif rid in edited:
            status.append("edited: " + ", ".join(edited[rid]))
        else:
            status.append("")
    return status


MAX_CHOICES = 500  # a categorical column with more categories keeps the text editor


def categories_of(frame: pd.DataFrame) -> dict[str, list[str]]:
    """The categories of each categorical column of ``frame`` (up to :data:`MAX_CHOICES`)."""
    return {
        str(name): [str(c) for c in column.cat.categories]
        for name, column in frame.items()
        if isinstance(column.dtype, pd.CategoricalDtype)
        and len(column.cat.categories) <= MAX_CHOICES
    }


def column_editors(
    schema: pa.Schema, categories: Mapping[str, Sequence[str]] | None = None
) -> dict[str, dict[str, Any]]:
    """The cell editor that fits each column, as metadata for the browser's grid
    (gridpatch): a dropdown of true/false (and empty, where allowed) for booleans and of
    the categories for a categorical column, a date picker for dates. Other columns keep
    the text editor: the kernel parses exactly what is typed (ISO text for timestamps,
    decimal text at the column's scale)."""
    editors: dict[str, dict[str, Any]] = {}
    for field in schema:
        empty = [""] if field.nullable else []
        if pa.types.is_boolean(field.type):
            editors[field.name] = {"constraint": {"enum": ["true", "false", *empty]}}
        elif pa.types.is_date(field.type):
            editors[field.name] = {"type": "date"}
        elif categories and field.name in categories:
            editors[field.name] = {"constraint": {"enum": [*categories[field.name], *empty]}}
    return editors


def _cell_mark(column: str, otherwise: str) -> VegaExpr:
    """A cell's background: red if its row's ⚑ names it in conflict, yellow if edited."""
    status = f"(cell.metadata.data[{json.dumps(STATUS)}] + ',')"
    named = f"indexof({status}, {json.dumps(' ' + column + ',')}) > 0"
    return VegaExpr(
        f"indexof({status}, 'conflict:') == 0 && {named} ? '#ffb3b3' : "
        f"indexof({status}, 'edited:') == 0 && {named} ? '#fff2b3' : '{otherwise}'"
    )


class Editor(w.VBox):  # type: ignore[misc]
    """Edit the master in a grid; Save goes through the locked save.

    Args:
        store: the master to edit.
        key_columns: row identity (default: the store's key columns).
        read_only_columns: columns that cannot be edited.
        page_size: rows shown per page; filtering, sorting and paging run in the kernel.
        new_categories: a value typed (or pasted) into a categorical column that is not
            one of its categories starts a new one; by default it is refused.
        load: load the master now (default True).
        watch: seconds between looks at the master (one HEAD) while the editor is open,
            to say when a colleague saved a newer version; ``True``: every 30 s;
            ``False`` for none. No look is made while a load or save runs.
    """

    def __init__(
        self,
        store: MasterStore,
        *,
        key_columns: Sequence[str] | None = None,
        read_only_columns: Iterable[str] = (),
        page_size: int = 500,
        new_categories: bool = False,
        load: bool = True,
        watch: float | bool = True,
    ) -> None:
        # The workflow (reload, save, conflicts, merges) and its state live in the
        # controller; this widget lays out, wires and renders.
        self.controller = EditorController(
            store,
            key_columns=key_columns,
            read_only_columns=read_only_columns,
            busy=self._busy,
        )
        self.controller.new_categories = new_categories
        self.read_only_columns = tuple(read_only_columns)
        self.page_size = page_size
        self.page = 0
        self._rendered: tuple[EditSession | None, PendingMerge | None] = (None, None)
        self._choices: dict[tuple[Any, str | None], w.ToggleButtons] = {}
        self._window_ids: list[int] = []
        self._echoed: dict[tuple[int, str], Any] = {}  # (grid row, column) -> value sent
        self._shown_status: list[str] = []  # the ⚑ column as the browser shows it
        self._look: tuple[Any, ...] | None = None  # what the grid's renderers were made for
        self._where: tuple[Any, ...] | None = None  # the master, filter, sort and page shown
        self._conflict_cells: dict[int, list[str]] = {}  # while a merge is open
        self._sized: EditSession | None = None  # the session the column widths fit
        self.matching_rows = 0  # rows the filter matches (all rows without one)

        cfg = store.cfg
        layout = w.Layout(width="auto")
        self.bucket = w.Text(cfg.bucket, description="Bucket", layout=layout)
        self.master_key = w.Text(cfg.master_key, description="Master key", layout=layout)
        self.snapshot_prefix = w.Text(cfg.snapshot_prefix, description="Snapshots", layout=layout)
        self.audit_prefix = w.Text(cfg.audit_prefix, description="Audits", layout=layout)
        self.reload_button = w.Button(description="Reload", icon="refresh")
        self.save_button = w.Button(description="Save", icon="save", button_style="primary")
        self.note = w.Text(
            placeholder="Required: what did you change, and why?",
            description="Note",
            layout=w.Layout(width="40%", min_width="320px"),
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
        # A colleague's newer version, said until a Reload or Save takes it in.
        self.notice = w.HTML()
        self._notice_lock = threading.Lock()  # the watch's thread sets it too
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
        # makes an edit repaint one cell instead of the whole grid, and sends the header
        # menu's sort and filter here (see gridpatch.py)
        self.grid_patch = GridPatch(self.grid)
        self.grid_patch.on_transform = self._guarded("Sort", self._on_header_transform)
        self._quiet = False  # set while the header menu sets the sort fields
        # paste, fill down, set value, find, summary, history, versions (tools.py)
        self.tools = EditorTools(self)

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

        # Rows of controls wrap at a narrow notebook width instead of squeezing their
        # labels into ellipses; buttons keep the width of their label.
        saving = (self.reload_button, self.save_button)
        editing = (
            self.undo_button,
            self.redo_button,
            self.add_button,
            self.delete_button,
            self.revert_button,
            self.changes_button,
        )
        for button in (*saving, *editing):
            button.layout.width = "auto"
            button.layout.min_width = "90px"

        def row(*children: w.Widget) -> w.HBox:
            return w.HBox(list(children), layout=w.Layout(flex_flow="row wrap"))

        super().__init__(
            [
                row(self.bucket, self.master_key, self.snapshot_prefix, self.audit_prefix),
                row(*saving, self.note),
                row(*editing),
                row(
                    self.filter,
                    self.sort_by,
                    self.descending,
                    self.prev_button,
                    self.page_label,
                    self.next_button,
                ),
                self.tools.bar,
                self.status,
                self.notice,
                self.message,
                self.tools.offer,
                self.progress,
                self.conflict_panel,
                self.changes_panel,
                self.tools.versions,
                self.tools.panel,
                self.grid,
                self.grid_patch,
            ]
        )
        self.add_class("s3grid-editor")
        if load:
            self.reload()
        seconds = WATCH_SECONDS if watch is True else float(watch)
        self.watch = Watch(self._look_at_master, seconds).start() if seconds > 0 else None
        if self.watch is not None:
            # Re-running a notebook cell leaves the earlier editor open (ipywidgets keeps
            # every widget until it is closed), looking at the master forever: the newest
            # editor of a master in this kernel takes the look over.
            earlier = _WATCHING.get(self.store.cfg.uri)
            if earlier is not None and earlier.watch is not None:
                earlier.watch.stop()
            _WATCHING[self.store.cfg.uri] = self

    def close(self) -> None:
        """Close the widget and stop its look at the master."""
        if self.watch is not None:
            self.watch.stop()
        super().close()

    def _look_at_master(self) -> None:
        """The watch's tick: show (or clear) the notice of a colleague's newer version."""
        looked_at = self.controller.session
        text = self.controller.colleague_notice()
        shown = (
            ""
            if text is None
            else f'<div class="s3grid-notice" style="color:#0b4f8a">ⓘ {html.escape(text)}</div>'
        )
        with self._notice_lock:
            # a load or save since the look shows its own state: this news is stale
            if self.controller.session is looked_at and self.notice.value != shown:
                self.notice.value = shown

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
        # Not ``with self.progress``: in a kernel, the Output widget's exit swallows an
        # exception (it shows the traceback instead), and the caller never hears of it.
        self.progress.__enter__()
        try:
            yield
        finally:
            self.progress.__exit__(None, None, None)
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
        if session is not self._rendered[0]:
            with self._notice_lock:  # a new version loaded or saved: no longer news
                self.notice.value = ""
            self.tools.refresh_versions()
        if merge is not self._rendered[1]:
            marks = self._conflicts_by_row(merge)
            refresh = refresh or marks != self._conflict_cells
            self._conflict_cells = marks
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

    def _conflicts_by_row(self, merge: PendingMerge | None) -> dict[int, list[str]]:
        """The session's rows with a cell in conflict in ``merge``: row id -> columns."""
        s = self.session
        cells = [c for c in merge.result.conflicts if c.kind == "cell"] if merge else []
        if s is None or not cells or not s.key_columns:
            return {}
        keys = pd.MultiIndex.from_frame(s.df[list(s.key_columns)])
        wanted = [c.key if isinstance(c.key, tuple) else (c.key,) for c in cells]
        if not keys.is_unique:
            return {}  # duplicate keys block merging anyway
        at = keys.get_indexer(pd.MultiIndex.from_tuples(wanted))
        ids = s.df.index.to_numpy()
        out: dict[int, list[str]] = {}
        for c, pos in zip(cells, at.tolist(), strict=True):
            if pos >= 0 and c.column:
                out.setdefault(int(ids[pos]), []).append(c.column)
        return out

    def refresh(self) -> None:
        """Draw the page, the status line and the Changes panel again from the session
        (after changing ``editor.session`` from Python, for example)."""
        self._refresh()

    def _refresh(self) -> None:
        self._refresh_grid()
        self._refresh_status()
        self._refresh_changes()

    def _send_editors(self, s: EditSession) -> None:
        """Tell the browser each column's cell editor (a new category joins its
        dropdown) and which columns are read-only; sent only when they change."""
        editors = column_editors(s.schema, categories_of(s.df))
        if self.grid_patch.editors != editors:
            self.grid_patch.editors = editors
        read_only = sorted(s.read_only_columns)
        if list(self.grid_patch.read_only) != read_only:
            self.grid_patch.read_only = read_only

    def _refresh_grid(self) -> bool:
        """Send the page to the browser; False if the filter or sort was refused (and
        said so: the page shown is then unfiltered)."""
        s = self.session
        if s is None:
            return False
        self._send_editors(s)
        ok = True
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
            ok = False
            win = s.window(page=self.page, page_size=self.page_size)
        self.page = win.page
        # the same master's same filter, sort and page after an edit or a save keeps the
        # browser's scroll position and selection; anything else is another window
        where = (
            self.store.cfg.uri,
            self.filter.value,
            self.sort_by.value,
            self.descending.value,
            win.page,
        )
        if where != self._where:
            self.grid_patch.new_window()
            self._where = where
        self._window_ids = [int(i) for i in win.frame.index]
        self._echoed.clear()
        shown = _display_frame(win.frame, s, self._conflict_cells)
        self._shown_status = shown[STATUS].tolist()
        self.grid.data = shown
        # Renderers depend on the columns alone, and re-sending them makes the browser
        # rebuild every column's renderer and repaint: only when they change.
        look = (s.schema, frozenset(s.read_only_columns))
        if look != self._look:
            self.grid.renderers = self._renderers(s)
            self._look = look
        if s is not self._sized:  # a new master: size the columns to its values
            self.grid.column_widths = self._column_widths(s)
            self._sized = s
        rows = "row" if win.matching_rows == 1 else "rows"
        self.page_label.value = f"page {win.page + 1}/{win.pages} · {win.matching_rows:,} {rows}"
        self.matching_rows = win.matching_rows
        return ok

    def _column_widths(self, s: EditSession) -> dict[str, int]:
        """Each column as wide as its header and the longest of a sample of its values
        (rows spread over the whole table), within a minimum and a maximum."""
        n = len(s.df)
        sample = s.df.iloc[np.unique(np.linspace(0, n - 1, num=min(n, WIDTH_SAMPLE), dtype=int))]
        ids = sample.index.to_numpy()
        widths = {STATUS: 96}
        for column in s.columns:
            texts = _column_text(sample[column], s.nan_mask(ids, column))
            widths[column] = column_width(column, texts)
        return widths

    def _renderers(self, s: EditSession) -> dict[str, Any]:
        flag = TextRenderer(
            background_color=VegaExpr(
                "indexof(cell.value, 'dup key') == 0 || indexof(cell.value, 'conflict') == 0"
                " ? '#ffb3b3' : cell.value == 'new' ? '#d6f5d6' : "
                "indexof(cell.value, 'edited') == 0 ? '#fff2b3' : 'white'"
            )
        )
        out: dict[str, Any] = {STATUS: flag}
        for field in s.schema:
            numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
            read_only = field.name in s.read_only_columns
            out[field.name] = TextRenderer(
                background_color=_cell_mark(field.name, _READ_ONLY_BG if read_only else "white"),
                text_color="#555555" if read_only else "black",
                horizontal_alignment="right" if numeric else "left",
            )
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
        saved_at = self.controller.last_saved_at
        if saved_at:
            parts.append(f"your last save: {html.escape(when(saved_at))}")
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
        if not (d.cells or d.added or d.deleted):
            self.changes_panel.value = '<div class="s3grid-changes">No pending changes.</div>'
            return

        def label(key: Any) -> str:
            return row_label(d.key_columns, key)

        rows = [(label(c.key), c.column, say(c.old), say(c.new)) for c in d.cells]
        rows += [(label(k), "(row added)", "", "") for k in d.added]
        rows += [(label(k), "(row deleted)", "", "") for k in d.deleted]
        self.changes_panel.value = html_table(
            rows, ("row", "column", "was", "now"), css_class="s3grid-changes", limit=None
        )

    def _goto(self, page: int) -> None:
        """Show ``page``; the message line then says nothing of an earlier action."""
        self.page = page
        if self._refresh_grid():
            self.message.value = ""

    def _on_header_transform(self, transform: dict[str, Any]) -> None:
        """The header menu's Sort or Filter, done by the kernel over the whole master:
        the sort fields or the Filter box take it, so what is shown is what they say."""
        s = self.session
        column = str(transform.get("column", ""))
        if s is None:
            return
        if column not in s.columns:
            self._say("The ⚑ column shows row status; sort or filter another column.", "warn")
            return
        if transform.get("type") == "sort":
            self._quiet = True
            try:
                self.sort_by.value = column
                self.descending.value = bool(transform.get("desc", False))
            finally:
                self._quiet = False
            self._rewindow()
        elif transform.get("type") == "filter":
            try:
                query = header_query(transform, s.schema.field(column))
            except S3GridError as exc:
                self._say(str(exc), "error")
                return
            current = self.filter.value.strip()
            # the observer runs the new filter over the whole master
            self.filter.value = f"({current}) and ({query})" if current else query

    def _rewindow(self) -> None:
        """The filter or the sort changed: the first page of the new window, and what
        it shows."""
        if self._quiet:
            return
        with self._working("Filtering and sorting"):
            self.page = 0
            if not self._refresh_grid():
                return
        what = [f"{self.matching_rows:,} row(s)"]
        if self.filter.value.strip():
            what.append(f"match {self.filter.value.strip()}")
        if self.sort_by.value:
            order = "descending" if self.descending.value else "ascending"
            what.append(f"sorted by {self.sort_by.value} ({order}, over all of them)")
        self._say(" ".join(what) + ".")

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
            self._say(f"{s.label(row_id)}: {column} = {say(stored)}")
        except S3GridError as exc:
            stored = s.value(row_id, column) if row_id in s.df.index else None
            accepted = False
            self._say(f"{exc} The cell keeps {say(stored)}.", "error")
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
        if accepted and isinstance(s.df[column].dtype, pd.CategoricalDtype):
            self._send_editors(s)  # the value may be a new category
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
        (status,) = _row_status(self.session, [row_id], self._conflict_cells)
        if grid_row < len(self._shown_status) and self._shown_status[grid_row] != status:
            self._shown_status[grid_row] = status
            self._echo(grid_row, STATUS, status)

    def _echo(self, grid_row: int, column: str, value: Any) -> None:
        self._echoed[(grid_row, column)] = value
        self.grid.set_cell_value_by_index(column, grid_row, value)

    def undo(self) -> None:
        """Undo the last edit (a Revert all or a deletion is one step too)."""
        with self._working("Undoing"):
            if self.session and self.session.undo():
                self._show_step()
                self._say_step("Undone")
            else:
                self._say("Nothing to undo.", "warn")

    def redo(self) -> None:
        """Redo the last undone edit."""
        with self._working("Redoing"):
            if self.session and self.session.redo():
                self._show_step()
                self._say_step("Redone")
            else:
                self._say("Nothing to redo.", "warn")

    def _say_step(self, done: str) -> None:
        """Say what an undo or redo changed: the cell and the value it holds now."""
        assert self.session is not None
        cell = self.session.last_step_cell
        if cell is None or cell[0] not in self.session.df.index:
            self._say(f"{done}. {self.session.pending} pending change(s).")
            return
        row_id, column = cell
        value = say(self.session.value(row_id, column))
        self._say(f"{done}: {self.session.label(row_id)} · {column} is {value} again.")

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
        keys = f"; fill in its key ({', '.join(self.key_columns)})" if self.key_columns else ""
        self._say(f"Added a row on the last page{keys}.")
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
        s = self.session
        ids = sorted({int(r) for r in row_ids})
        # named before they go (the session skips ids that are not there)
        names = [s.label(r) for r in islice((r for r in ids if r in s.df.index), 5)]
        with self._working("Deleting"):
            n = s.delete_rows(ids)
            self._refresh()
        if n:
            more = f" and {n - len(names)} more" if n > len(names) else ""
            self._say(f"Deleted {n} row(s): {', '.join(names)}{more}. Undo brings them back.")
        else:
            self._say("Select cells in the rows to delete first.", "warn")
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
                    f"{row_label(self.key_columns, c.key)} · {c.column}: was {say(c.base)}, "
                    f"theirs {say(c.theirs)}, mine {say(c.mine)}"
                )
            else:
                where = row_label(self.key_columns, c.key)
                text = f"{where} · {c.column or 'row'}: {c.kind.replace('-', ' ')}"
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
