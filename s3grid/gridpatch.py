"""Front-end adjustments to ipydatagrid, made by an invisible anywidget per grid.

- A cell edit repaints one cell, not the grid: ipydatagrid 1.4 answers every cell edit,
  typed or set from the kernel, by rebuilding its current view and repainting every
  visible cell (see ``static/gridpatch.js`` for the trace). That is the browser freeze
  after each edit; :class:`GridPatch` skips the rebuild while no front-end sort or filter
  is active. A change of the status column repaints its row (its cells' edit marks).
- The header menu's Sort and Filter reach the kernel instead of sorting the page in the
  browser: :attr:`GridPatch.on_transform` gets ipydatagrid's transform (``type``,
  ``column``, ``desc`` or ``operator``/``value``), and the editor sorts or filters the
  whole master.
- A new window of rows with the same columns goes into the browser's data model in
  place (one repaint; the columns keep their widths) instead of a new data model;
  :meth:`GridPatch.new_window` says the rows are another window (scroll to the top).
  Each painted region is copied to the screen once, not cell by cell (see
  docs/performance.md); columns widen in proportion to fill a grid wider than they are.
- Ctrl+V (a spreadsheet's range), Ctrl+D (fill down) and a click into a read-only cell
  reach the kernel (:attr:`GridPatch.on_paste`, :attr:`GridPatch.on_fill_down`,
  :attr:`GridPatch.on_read_only`); Ctrl+C copies cells quoted as spreadsheets quote
  them; :attr:`GridPatch.editors` gives columns the cell editor that fits them (a
  dropdown of choices, a date picker); :meth:`GridPatch.show_cell` scrolls to a cell
  and selects it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets


class GridPatch(anywidget.AnyWidget):
    """Applies the edit-without-rebuild patch to one ipydatagrid ``DataGrid`` in the browser.

    ``patched`` turns True once a browser has applied it; until then (or without a browser)
    the grid behaves exactly as plain ipydatagrid.
    """

    _esm = Path(__file__).parent / "static" / "gridpatch.js"
    grid_id = traitlets.Unicode().tag(sync=True)
    patched = traitlets.Bool(False).tag(sync=True)
    # column -> what its cells' metadata gains: {"constraint": {"enum": [...]}} gives
    # Lumino's dropdown editor, {"type": "date"} its date picker
    editors = traitlets.Dict().tag(sync=True)
    read_only = traitlets.List(traitlets.Unicode()).tag(sync=True)  # no editor opens

    def __init__(self, grid: Any, **kwargs: Any) -> None:
        super().__init__(grid_id=grid.model_id, **kwargs)
        self.layout.display = "none"
        self.on_transform: Callable[[dict[str, Any]], None] | None = None
        self.on_paste: Callable[[dict[str, Any]], None] | None = None
        self.on_fill_down: Callable[[dict[str, Any]], None] | None = None
        self.on_read_only: Callable[[str], None] | None = None
        self.on_msg(self._on_front_end_msg)

    def new_window(self) -> None:
        """Say that the next rows sent are another window (a page, a sort, a filter): the
        browser shows them from the top, with nothing selected. Rows sent without it
        (the same window after an edit) keep the scroll position and the selection."""
        self.send({"event": "new-window"})

    def show_cell(self, row: int, column: int) -> None:
        """Scroll the grid to body cell (``row``, ``column``) and select it."""
        self.send({"event": "show-cell", "row": row, "column": column})

    def _on_front_end_msg(self, widget: Any, content: Any, buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        event = content.get("event")
        if (
            event == "header-transform"
            and isinstance(content.get("transform"), dict)
            and self.on_transform is not None
        ):
            self.on_transform(content["transform"])
        elif event == "paste" and self.on_paste is not None:
            self.on_paste(content)
        elif event == "fill-down" and self.on_fill_down is not None:
            self.on_fill_down(content)
        elif event == "read-only" and self.on_read_only is not None:
            self.on_read_only(str(content.get("column", "")))
