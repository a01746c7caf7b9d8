"""A hand-written CSV master and its cells' text."""

from __future__ import annotations

import csv
import io

# As a spreadsheet or an instrument writes it: leading zeros, offsets, whole-number
# floats, an empty column, quoted commas and newlines, words pandas calls missing.
HAND_WRITTEN = (
    "station,when,depth,comment,empty,flag\n"
    '007,2024-06-30T19:01:00-05:00,110.0,"calm, clear",,NA\n'
    '012,2024-07-01T08:00:00+02:00,95,"two\nlines",,nan\n'
    '100,2024-07-02,1e3,"",,TRUE\n'
)


def cell_texts(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode())))
