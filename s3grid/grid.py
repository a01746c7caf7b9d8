"""The grid the editor draws: ipydatagrid's DataGrid, with cell edits checked first.

Every ipydatagrid private name s3grid relies on is used here, and only here, and is
checked when this module is imported: a release of ipydatagrid that renames one fails
with a message that says so, not with an AttributeError on a user's first edit.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from ipydatagrid import DataGrid

from s3grid.errors import ConfigError

__all__ = ["CheckedGrid", "check_ipydatagrid"]

SUPPORTED = "1.4"  # the ipydatagrid minor version these private names were read from
_PRIVATE_NAMES = (
    "_DataGrid__handle_custom_msg",  # its handler of front-end messages, to wrap
    "_column_index_to_name",  # a message's column index -> the column's name
    "_visible_rows",  # the front end's sort/filter order
    "_data",  # the kernel-side copy the front end draws from
)


def check_ipydatagrid() -> None:
    """Raise :class:`ConfigError` unless this ipydatagrid has the names s3grid uses."""
    missing = [name for name in _PRIVATE_NAMES if not hasattr(DataGrid, name)]
    if missing:
        raise ConfigError(
            f"ipydatagrid {version('ipydatagrid')} lacks {', '.join(missing)}, which the "
            f"s3grid editor relies on (written against ipydatagrid {SUPPORTED}). Install "
            f"'ipydatagrid>={SUPPORTED},<2' or an s3grid release that supports it."
        )


check_ipydatagrid()


class CheckedGrid(DataGrid):  # type: ignore[misc]
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

    def visible_rows(self) -> list[int]:
        """The grid rows in the order the front end shows them (after its own sort or
        filter), or ``[]`` when it shows them in order."""
        return list(self._visible_rows or [])
