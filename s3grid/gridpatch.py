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

    def __init__(self, grid: Any, **kwargs: Any) -> None:
        super().__init__(grid_id=grid.model_id, **kwargs)
        self.layout.display = "none"
        self.on_transform: Callable[[dict[str, Any]], None] | None = None
        self.on_msg(self._on_front_end_msg)

    def _on_front_end_msg(self, widget: Any, content: Any, buffers: Any) -> None:
        if (
            isinstance(content, dict)
            and content.get("event") == "header-transform"
            and isinstance(content.get("transform"), dict)
            and self.on_transform is not None
        ):
            self.on_transform(content["transform"])
