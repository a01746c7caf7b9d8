"""A stand-in for the grid's front end: the messages the browser would send."""

from __future__ import annotations

from typing import Any

from s3grid.editor import Editor


class FrontEnd:
    """Records what the kernel sends to the grid's front-end."""

    def __init__(self, editor: Editor) -> None:
        self.editor = editor
        self.sent: list[dict[str, Any]] = []
        editor.grid.comm.send = lambda data=None, **_: self.sent.append(data)

    def type_into(self, grid_row: int, column: str, value: Any) -> None:
        """What ipydatagrid's front-end sends when a user edits a cell."""
        names = list(self.editor.grid.data.columns)
        self.editor.grid._handle_custom_msg(
            {
                "event_type": "cell-changed",
                "row": grid_row,
                "column_index": names.index(column),
                "value": value,
            },
            [],
        )

    def bounce(self) -> None:
        """What ipydatagrid's front-end does with each value the kernel sets: it reports
        it back as a cell edit."""
        for data in list(self.sent):
            c = data["content"]
            self.editor.grid._handle_custom_msg(
                {
                    "event_type": "cell-changed",
                    "row": c["row"],
                    "column_index": c["column_index"],
                    "value": c["value"],
                },
                [],
            )
        self.sent.clear()

    def last_echo(self, column: str) -> dict[str, Any]:
        """The last value the kernel pushed to the browser for a cell of ``column``."""
        for data in reversed(self.sent):
            content: dict[str, Any] = data["content"]
            if content["event_type"] == "cell-changed" and content["column"] == column:
                return content
        raise AssertionError(f"nothing was sent for column {column!r}")

    def shown(self, grid_row: int, column: str) -> Any:
        return self.editor.grid.data.iloc[grid_row][column]


def save(editor: Editor, note: str | None = None) -> bool:
    """Click Save as a user does: with ``note``, or with the note already typed, or else
    with one (a save needs a note)."""
    if note is not None:
        editor.note.value = note
    elif not editor.note.value.strip():
        editor.note.value = "a test save"
    return editor.save()
