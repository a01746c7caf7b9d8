"""Exact values: a save changes the cells the user changed and nothing else, on every path.

NaN and null are different values (in Parquet, in Athena); pandas shows both as NaN in a
float column, so the paths through pandas (``save(df)``, the editor) must keep them
apart from what they loaded. No path narrows a value silently.
"""

from __future__ import annotations

import html
import io
import math
import re
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3grid import MasterStore, SchemaError, bulk_edit
from s3grid.editor import Editor
from s3grid.flatten import flatten_to_table
from tests.support.cells import assert_same_table, cells
from tests.support.frontend import FrontEnd, save
from tests.support.s3 import all_objects

NAN = math.nan

MASTER = pa.table(
    {
        "k": pa.array([1, 2, 3, 4], pa.int32()),
        "f": pa.array([NAN, 1.0, None, NAN], pa.float64()),
        "g": pa.array([0.5, None, NAN, 2.5], pa.float64()),
        "h": pa.array([1.5, NAN, None, 3.0e38], pa.float32()),
        "b": pa.array([True, False, None, True]),
    }
)


@pytest.fixture
def nan_store(store: MasterStore) -> MasterStore:
    s = MasterStore(store.cfg, key_columns=("k",))
    s.create(MASTER, note="NaN and null")
    return s


def test_save_of_an_unrelated_edit_keeps_nan_and_null(nan_store: MasterStore) -> None:
    m = nan_store.load()
    df = m.to_pandas()
    df.loc[1, "g"] = 7.0  # only g changes
    res = nan_store.save(df, base=m, note="edit g only")
    assert res.cells_changed == 1  # the NaN/null cells of f, g and h are not "changed"
    after = nan_store.load().table
    expected = MASTER.set_column(2, "g", pa.array([0.5, 7.0, NAN, 2.5]))
    assert_same_table(after, expected)


def test_save_of_the_unchanged_frame_keeps_every_cell(nan_store: MasterStore) -> None:
    m = nan_store.load()
    res = nan_store.save(m.to_pandas().iloc[::-1], base=m, note="reordered rows, same cells")
    assert res.cells_changed == 0
    # rows are matched by key: NaN goes back to the row that held it
    after = nan_store.load().table
    back = after.take(pa.compute.sort_indices(after, [("k", "ascending")]))
    assert_same_table(back, MASTER)


def test_nan_and_null_differ_in_the_audit_count(nan_store: MasterStore) -> None:
    m = nan_store.load()
    table = m.table.set_column(1, "f", pa.array([None, 1.0, NAN, NAN]))  # 2 swapped
    res = nan_store.save(table, base=m, note="swap NaN and null")
    assert res.cells_changed == 2
    assert cells(nan_store.load().table.column("f")) == [None, 1.0, "NaN", "NaN"]


def test_the_editor_keeps_nan_and_null_apart(nan_store: MasterStore) -> None:
    editor = Editor(nan_store, page_size=10)
    fe = FrontEnd(editor)
    shown = editor.grid.data
    assert list(shown["f"]) == ["nan", "1.0", "", "nan"]  # NaN shows, null is blank
    assert list(shown["h"]) == ["1.5", "nan", "", "3e+38"]
    fe.type_into(1, "f", "nan")  # typed: the value NaN
    fe.type_into(0, "f", "")  # cleared: null
    fe.type_into(2, "g", " NaN ")  # NaN already: no change
    fe.type_into(2, "f", "NaN")  # null -> NaN
    assert editor.session is not None
    assert editor.session.pending == 3
    editor.refresh()
    assert list(editor.grid.data["f"]) == ["", "nan", "nan", "nan"]
    editor.changes_button.value = True
    panel = html.unescape(editor.changes_panel.value)
    assert "<td>NaN</td>" in panel and "<td>empty</td>" in panel  # NaN and null apart
    editor.note.value = "NaN and null by hand"
    assert save(editor), html.unescape(editor.message.value)
    after = nan_store.load().table
    assert cells(after.column("f")) == [None, "NaN", "NaN", "NaN"]
    for name in ("g", "h", "b"):  # untouched columns: identical
        assert cells(after.column(name)) == cells(MASTER.column(name)), name
    assert nan_store.audit_log().iloc[-1]["cells_changed"] == 3


def test_undo_of_a_nan_edit_restores_null(nan_store: MasterStore) -> None:
    editor = Editor(nan_store, page_size=10)
    fe = FrontEnd(editor)
    fe.type_into(2, "f", "nan")
    editor.undo()
    assert editor.session is not None
    assert editor.session.pending == 0
    assert editor.session.value(2, "f") is None
    assert editor.session.value(0, "f") != editor.session.value(0, "f")  # NaN
    assert cells(editor.session.to_table().column("f")) == cells(MASTER.column("f"))


def test_float32_overflow_is_refused_on_every_path(
    nan_store: MasterStore, s3: Any, bucket: str
) -> None:
    m = nan_store.load()
    before = all_objects(s3, bucket)
    # save(df)
    df = m.to_pandas()
    df["h"] = df["h"].astype("float64")
    df.loc[0, "h"] = 1e39
    with pytest.raises(SchemaError, match=r"Row 0, column 'h'.*out of range"):
        nan_store.save(df, base=m, note="too big")
    # the grid
    editor = Editor(nan_store, page_size=10)
    fe = FrontEnd(editor)
    fe.type_into(0, "h", "1e39")
    assert "out of range" in html.unescape(editor.message.value)
    assert editor.session is not None and editor.session.pending == 0
    # SQL
    with pytest.raises(SchemaError, match="out of range"):
        bulk_edit(
            nan_store,
            "SELECT k, f, g, CAST(h AS DOUBLE) * 1e10 AS h, b FROM t",
            note="x",
            table_name="t",
        )
    assert all_objects(s3, bucket) == before


@pytest.mark.parametrize(
    ("value", "shown"), [("2", "2"), ("CAST(0.5 AS DOUBLE)", "0.5"), ("-1", "-1")]
)
def test_numbers_other_than_0_and_1_are_not_bools_in_sql(
    nan_store: MasterStore, s3: Any, bucket: str, value: str, shown: str
) -> None:
    before = all_objects(s3, bucket)
    sql = f"SELECT k, f, g, h, CASE WHEN k = 2 THEN {value} ELSE 1 END AS b FROM t ORDER BY k"
    with pytest.raises(SchemaError, match=rf"Row 1, column 'b': cannot store {shown} as bool"):
        bulk_edit(nan_store, sql, note="x", table_name="t")
    assert all_objects(s3, bucket) == before


def _put_part(s3: Any, bucket: str, key: str, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3.put_object(Bucket=bucket, Key=key, Body=sink.getvalue())


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("b", pa.array([1, 0, 2, 1], pa.int64()), "cannot store 2 as bool"),
        ("b", pa.array([1.0, 0.5, 0.0, 1.0]), "cannot store 0.5 as bool"),
        ("h", pa.array([1.0, 2.0, 1e300, None]), "cannot store 1e+300 as float"),
    ],
)
def test_flatten_refuses_lossy_casts(
    nan_store: MasterStore, s3: Any, bucket: str, column: str, values: pa.Array, message: str
) -> None:
    part = MASTER.set_column(MASTER.column_names.index(column), column, values)
    _put_part(s3, bucket, "staging/run/part-0", part)
    with pytest.raises(SchemaError, match=re.escape(message)):
        flatten_to_table(nan_store.bucket, "staging/run/", schema=MASTER.schema)


def test_flatten_and_sql_keep_nan(nan_store: MasterStore, s3: Any, bucket: str) -> None:
    _put_part(s3, bucket, "staging/run/part-0", MASTER)
    table, _ = flatten_to_table(nan_store.bucket, "staging/run/", schema=MASTER.schema)
    assert_same_table(table, MASTER)
    res = bulk_edit(nan_store, "SELECT * FROM t ORDER BY k", note="same", table_name="t")
    assert res.cells_changed == 0
    assert_same_table(nan_store.load().table, MASTER)


def test_pandas_frame_with_new_rows_gets_null_not_nan(nan_store: MasterStore) -> None:
    m = nan_store.load()
    df = m.to_pandas()
    row = pd.DataFrame({"k": [9], "f": [NAN], "g": [NAN], "h": [NAN], "b": [None]})
    df = pd.concat([df, row.astype(df.dtypes.to_dict())], ignore_index=True)
    nan_store.save(df, base=m, note="add a row")
    after = nan_store.load().table
    # a NaN in a new pandas row is pandas' missing marker: null
    assert [after.column(c)[4].as_py() for c in ("f", "g", "h")] == [None, None, None]
    assert_same_table(after.slice(0, 4), MASTER)


def test_a_float32_cell_shows_and_echoes_at_its_own_precision(nan_store: MasterStore) -> None:
    editor = Editor(nan_store, page_size=10)
    fe = FrontEnd(editor)
    fe.type_into(0, "h", "0.1")
    assert fe.sent == []  # stored as typed: nothing to correct in the browser
    assert fe.shown(0, "h") == "0.1"
    editor.undo()
    assert fe.shown(0, "h") == "1.5"
    editor.redo()
    assert fe.shown(0, "h") == "0.1"


def test_nan_mask_answers_for_any_order_of_rows() -> None:
    from s3grid.model import Master
    from s3grid.session import EditSession

    s = EditSession(Master(table=MASTER, version_id="v", etag='"e"', key="k"), key_columns=("k",))
    s.set_cell(1, "f", "nan")  # 1.0 -> NaN
    s.set_cell(0, "f", None)  # NaN -> null
    s.set_cell(2, "g", "")  # NaN -> null
    expected_f = {0: False, 1: True, 2: False, 3: True}
    for ids in ([0, 1, 2, 3], [3, 1, 0], [2], []):
        assert s.nan_mask(ids, "f").tolist() == [expected_f[i] for i in ids]
    assert s.nan_mask([3, 2, 1, 0], "g").tolist() == [False, False, False, False]
    assert s.nan_mask([1, 3], "h").tolist() == [True, False]


def test_read_only_types_show_and_refuse_sorting_by_nested_values(store: MasterStore) -> None:
    from tests.support.tables import every_kind_of_column

    table = every_kind_of_column()
    s = MasterStore(store.cfg, key_columns=("k",))
    s.create(table, note="every type")
    editor = Editor(s, page_size=10)
    fe = FrontEnd(editor)
    assert editor.session is not None
    assert {"t", "dur", "bin", "fsb", "lst", "st", "mp"} <= editor.session.read_only_columns
    assert not {"dec", "cat"} & editor.session.read_only_columns  # decimals, categories edit
    assert editor.grid.data["dec"].tolist()[0] == "1.10"
    fe.type_into(2, "dec", "2.5")
    assert fe.shown(2, "dec") == "2.50"
    fe.type_into(2, "dec", "2.555")
    assert "does not fit exactly (10 digits, 2 after the point)" in editor.message.value
    assert fe.shown(2, "dec") == "2.50"
    saved = editor.session.to_table().column("dec")
    assert saved.type == pa.decimal128(10, 2) and str(saved[2].as_py()) == "2.50"
    editor.undo()
    # a categorical column: a dropdown of its categories; a new one only when allowed
    assert editor.grid_patch.editors["cat"] == {"constraint": {"enum": ["x", "y", ""]}}
    fe.type_into(1, "cat", "y")
    assert editor.session.value(1, "cat") == "y"
    fe.type_into(0, "cat", "z")
    assert "'z' is not one of its categories ('x', 'y')" in html.unescape(editor.message.value)
    assert editor.session.value(0, "cat") == "x"
    editor.session.new_categories = True
    fe.type_into(0, "cat", "z")
    assert editor.session.value(0, "cat") == "z"
    assert editor.grid_patch.editors["cat"]["constraint"]["enum"] == ["x", "y", "z", ""]
    cats = editor.session.to_table().column("cat")
    assert cats.type == table.schema.field("cat").type and cats.to_pylist() == ["z", "y", "y"]
    editor.undo()  # the dropdown no longer offers the category the undone edit added
    assert editor.grid_patch.editors["cat"]["constraint"]["enum"] == ["x", "y", ""]
    editor.undo()
    shown = editor.grid.data
    assert shown["bin"].tolist()[0] == "0xff00"
    assert shown["ts_tz"].tolist()[0] == "1969-12-31 18:00:00.000000001-06:00"
    fe.type_into(0, "lst", "[3]")
    assert "read-only (s3grid does not edit list<element: int64> cells)" in html.unescape(
        editor.message.value
    )
    editor.sort_by.value = "st"
    assert "Cannot sort by 'st'" in html.unescape(editor.message.value)
    assert editor.session.pending == 0
