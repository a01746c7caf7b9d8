"""How the editor writes values, rows and times for people. Pure: text only, no I/O.

Two kinds of text: :func:`cell_text` is what a grid cell shows, exact enough for the
kernel to parse back; :func:`say` is a value in a sentence ("net_size = 3e+40",
"time = 2023-03-02 18:24:58", "vessel = empty"). Rows are named by their key
(:func:`row_label`: "tow 4 · net 1"), times in the reader's zone with how long ago
(:func:`when`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from s3grid.diff import py_value

__all__ = ["STATUS", "cell_text", "column_width", "html_table", "row_label", "say", "when"]


STATUS = "⚑"  # the grid's first column, the row's status; not part of the master


def cell_text(value: Any) -> str:
    """How the grid shows a kernel value: exact text the kernel can parse back.

    A float NaN shows as "nan" (typing "nan" stores NaN); a missing value as nothing;
    a timestamp as ``2023-03-02 18:24:58`` (to the nanosecond when it has them).
    """
    if isinstance(value, float | np.floating) and np.isnan(value):
        return "nan"
    if isinstance(value, np.float32 | np.float16):
        return str(value)  # "0.1", not the float64 widening "0.10000000149011612"
    if isinstance(value, pd.Timestamp) and value is not pd.NaT:
        return value.isoformat(sep=" ")  # to the nanosecond (a datetime stops at µs)
    value = py_value(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if isinstance(value, bytes | bytearray):
        return "0x" + value.hex()
    if isinstance(value, np.ndarray):
        return str([py_value(v) for v in value.tolist()])
    return repr(value) if isinstance(value, float) else str(value)


def say(value: Any) -> str:
    """A value as a person writes it in a sentence: ``empty`` for a missing value,
    ``""`` for empty text, ``NaN``, ``true``, ``2023-03-02 18:24:58``, ``3e+40``."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    text = cell_text(value)
    if text == "":
        return '""' if isinstance(value, str) else "empty"
    return text


def row_label(key_columns: Sequence[str], key: Any, row_id: int | None = None) -> str:
    """A row named by its key: ``tow 4 · net 1``; a key not filled in yet reads
    ``tow ? · net ?``. Without key columns, ``row <id>`` (the id given, or the key, which
    is then ``(row id,)``)."""
    if not key_columns:
        if row_id is None and isinstance(key, tuple) and len(key) == 1:
            row_id = key[0]
        return f"row {row_id}" if row_id is not None else "row"
    values = key if isinstance(key, tuple) else (key,)
    parts = []
    for name, value in zip(key_columns, values, strict=False):
        shown = say(value)
        parts.append(f"{name} {'?' if shown == 'empty' else shown}")
    return " · ".join(parts)


def when(moment: datetime | str, now: datetime | None = None) -> str:
    """A past moment in the reader's local zone, with how long ago:
    ``3 min ago (14:02)``, ``yesterday 09:15``, ``2026-11-03 09:15``."""
    if isinstance(moment, str):
        moment = pd.Timestamp(moment).to_pydatetime()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    local = moment.astimezone()
    seconds = (now - moment).total_seconds()
    clock = local.strftime("%H:%M")
    if seconds < 45:
        return f"just now ({clock})"
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min ago ({clock})"
    if seconds < 6 * 3600:
        return f"{seconds / 3600:.0f} h ago ({clock})"
    today: date = now.astimezone().date()
    if local.date() == today:
        return f"today {clock}"
    if (today - local.date()).days == 1:
        return f"yesterday {clock}"
    return local.strftime("%Y-%m-%d %H:%M")


# Measured on ipydatagrid's default 12 px sans-serif: a digit or lower-case letter is
# about 7 px wide, a bold header letter 8 px; the header also holds the menu's icon.
_VALUE_PX, _HEADER_PX, _PAD_PX, _HEADER_PAD_PX = 7, 8, 16, 28
MIN_COLUMN_PX, MAX_COLUMN_PX = 48, 280


def column_width(header: str, texts: Sequence[str]) -> int:
    """Pixels for a grid column: its header and its longest sample value fit, within
    :data:`MIN_COLUMN_PX` and :data:`MAX_COLUMN_PX` (a long text is cut there)."""
    longest = max((len(t) for t in texts), default=0)
    wanted = max(len(header) * _HEADER_PX + _HEADER_PAD_PX, longest * _VALUE_PX + _PAD_PX)
    return int(min(MAX_COLUMN_PX, max(MIN_COLUMN_PX, wanted)))


def html_table(
    rows: Sequence[Sequence[Any]],
    header: Sequence[str],
    *,
    css_class: str,
    limit: int | None = 200,
) -> str:
    """Rows as an HTML table (values escaped, missing ones empty), the first ``limit``
    of them (None: all), then a line saying how many more there are."""

    def cell(value: Any) -> str:
        shown = py_value(value)  # NaN, NA and NaT show as nothing
        return f"<td>{html.escape('' if shown is None else str(shown))}</td>"

    shown_rows = rows if limit is None else rows[:limit]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in shown_rows)
    more = len(rows) - len(shown_rows)
    tail = f"<div>… and {more:,} more.</div>" if more else ""
    # separate borders, so the spacing keeps the columns apart without a style per cell
    style = "border-collapse:separate;border-spacing:10px 1px;margin-left:-10px;text-align:left"
    return (
        f'<table class="{css_class}" style="{style}">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{tail}"
    )
