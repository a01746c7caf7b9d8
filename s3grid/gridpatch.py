"""A front-end adjustment to ipydatagrid: a cell edit repaints one cell, not the grid.

ipydatagrid 1.4 answers every cell edit, typed or set from the kernel, by rebuilding its
current view and repainting every visible cell (see ``static/gridpatch.js`` for the
trace). That is the browser freeze after each edit. :class:`GridPatch` is an invisible
anywidget that, in the browser, skips that rebuild for its grid while no front-end sort or
filter is active. The editor sorts and filters in the kernel; if someone also uses the
grid's own column menu, ipydatagrid's original code runs for those edits.
"""

from __future__ import annotations

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

    def __init__(self, grid: Any, **kwargs: Any) -> None:
        super().__init__(grid_id=grid.model_id, **kwargs)
        self.layout.display = "none"
