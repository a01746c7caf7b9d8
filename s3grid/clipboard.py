"""Tab-separated text, as spreadsheets put it on the clipboard, and blocks of cells.

Excel, LibreOffice and Google Sheets copy a range as rows of tab-separated cells; a cell
holding a tab, a newline or a quote is quoted, with quotes doubled. :func:`parse_tsv`
reads that; :func:`to_tsv` writes it, so a copy pastes back identically.

Pure: text in, text out; no widgets, no I/O.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from s3grid.errors import ValidationError

__all__ = ["Block", "parse_tsv", "to_tsv"]

MAX_CELLS = 1_000_000  # a paste larger than this is refused before any work


@dataclass(frozen=True)
class Block:
    """Rows of cell texts, all of one width."""

    rows: tuple[tuple[str, ...], ...]

    @property
    def height(self) -> int:
        return len(self.rows)

    @property
    def width(self) -> int:
        return len(self.rows[0]) if self.rows else 0


def parse_tsv(text: str) -> Block:
    """The cells of clipboard text: rows by line, cells by tab, quoted cells as a
    spreadsheet writes them. A trailing newline ends the last row (spreadsheets add one);
    short rows are padded with empty cells.

    Raises:
        ValidationError: nothing to paste, or more than a million cells.
    """
    if not text or not text.strip("\r\n"):
        raise ValidationError("The clipboard holds no text to paste.")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    reader = csv.reader(io.StringIO(text), delimiter="\t", quotechar='"', strict=False)
    rows = [list(r) or [""] for r in reader]
    width = max(len(r) for r in rows)
    if width * len(rows) > MAX_CELLS:
        raise ValidationError(
            f"The clipboard holds {len(rows):,} rows × {width:,} columns, more than "
            f"{MAX_CELLS:,} cells; paste it in parts, or use a bulk edit (SQL)."
        )
    return Block(tuple(tuple(r + [""] * (width - len(r))) for r in rows))


def to_tsv(rows: Sequence[Sequence[str]]) -> str:
    """Cell texts as tab-separated lines that :func:`parse_tsv` (and a spreadsheet)
    reads back as the same cells."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", quotechar='"', lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue()
