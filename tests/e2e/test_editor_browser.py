"""The editor in a real JupyterLab + Chromium: edit, save, refuse, conflict-merge."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import boto3
import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from s3grid import MasterStore, S3GridConfig
from s3grid.editor import STATUS as STATUS_NAME
from s3grid.editor import Editor, cell_text
from s3grid.sample import sample_master
from tests.e2e.conftest import E2E_BUCKET, Lab

pytestmark = pytest.mark.e2e

ROW_HEADER = 64  # ipydatagrid defaults: base_row_header_size, row size, header size
ROW_HEIGHT = 20
HEADER_HEIGHT = 20
# The columns' widths (⚑ first) as the kernel sizes them for the seeded master; the
# browser widens them to fill a wider grid (grid_widths: the widths it uses).
SIZED: list[int] = []


def seed_e2e_bucket(endpoint: str, rows: int, note: str) -> MasterStore:
    """The bucket the running JupyterLab's kernels read (S3_BUCKET), with a new master;
    :data:`SIZED` holds the columns' widths an editor of it gives them (it sizes them
    from the master's values, the same in the notebook's kernel as here)."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=E2E_BUCKET)
    s3.put_bucket_versioning(Bucket=E2E_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    store = MasterStore(S3GridConfig(bucket=E2E_BUCKET, endpoint_url=endpoint))
    store.create(sample_master(rows), note=note)
    sized = Editor(store, watch=False)
    SIZED[:] = [sized.grid.column_widths[c] for c in [STATUS_NAME, *sized.session.columns]]
    sized.close()
    return store


@pytest.fixture
def e2e_store(endpoint: str) -> MasterStore:
    return seed_e2e_bucket(endpoint, 200, "e2e seed")


def run_notebook(page: Any, lab: Lab, name: str) -> Any:
    page.goto(lab.url(name))
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="visible")
    page.wait_for_timeout(1500)
    select = page.locator(".jp-Dialog button", has_text="Select")
    if select.count():  # "Select Kernel" shows when the kernelspec is unknown
        select.first.click()
    page.wait_for_selector(
        ".jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached", timeout=90_000
    )
    # Run All before the kernel's connection is ready runs nothing (every prompt stays
    # "[ ]:"): then it is asked again
    started = (
        "() => [...document.querySelectorAll('.jp-InputPrompt')]"
        ".some(p => /\\[(\\*|\\d+)\\]/.test(p.innerText))"
    )
    for attempt in range(3):
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            page.wait_for_function(started, timeout=15_000)
            break
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise
    editor = page.locator(".s3grid-editor")
    error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    try:
        page.wait_for_function(
            "() => document.querySelector('.s3grid-editor') || document.querySelector("
            "\".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']\")",
            timeout=90_000,
        )
    except Exception:
        shot = Path(tempfile.gettempdir()) / f"s3grid-e2e-{name}-not-run.png"
        page.screenshot(path=str(shot))
        raise AssertionError(f"{name} showed no editor and no error in 90 s; see {shot}") from None
    if error.count():
        raise AssertionError(f"the notebook failed: {error.first.inner_text()}")
    page.locator(".s3grid-status", has_text="rows ×").wait_for(timeout=60_000)
    grid = editor.locator(".lm-DataGrid").first
    grid.wait_for(state="visible")
    page.wait_for_timeout(1000)  # the canvas paints after the widget is attached
    return editor


def grid_widths(editor: Any) -> list[int]:
    """The body columns' widths (⚑ first) the grid in the browser uses."""
    widths = editor.locator(".lm-DataGrid").first.get_attribute("data-s3grid-widths")
    assert widths, "the grid patch has not sized the columns"
    return [int(w) for w in json.loads(widths)]


def cell_point(page: Any, editor: Any, grid_row: int, grid_col: int) -> tuple[float, float]:
    box = editor.locator(".lm-DataGrid").first.bounding_box()
    widths = grid_widths(editor)
    x = box["x"] + ROW_HEADER + sum(widths[:grid_col]) + widths[grid_col] / 2
    y = box["y"] + HEADER_HEIGHT + grid_row * ROW_HEIGHT + ROW_HEIGHT / 2
    return x, y


def type_in_cell(page: Any, editor: Any, grid_row: int, grid_col: int, text: str) -> None:
    x, y = cell_point(page, editor, grid_row, grid_col)
    page.mouse.dblclick(x, y)
    box = page.locator(".lm-DataGrid-cellEditorInput")
    box.wait_for(state="visible")
    box.fill(text)
    box.press("Enter")


def shown_in_cell(page: Any, editor: Any, grid_row: int, grid_col: int) -> str:
    """What the browser holds for a cell: open its editor, read the value, cancel."""
    x, y = cell_point(page, editor, grid_row, grid_col)
    page.mouse.dblclick(x, y)
    box = page.locator(".lm-DataGrid-cellEditorInput")
    box.wait_for(state="visible")
    value: str = box.input_value()
    box.press("Escape")
    return value


def wait_shown(page: Any, editor: Any, grid_row: int, grid_col: int, text: str) -> None:
    """Wait (up to ~10 s) until the browser holds ``text`` in a cell."""
    seen = ""
    for _ in range(20):
        seen = shown_in_cell(page, editor, grid_row, grid_col)
        if seen == text:
            return
        page.wait_for_timeout(500)
    raise AssertionError(f"cell ({grid_row}, {grid_col}) shows {seen!r}, expected {text!r}")


STATUS = 0
VOLUME = 1 + 8  # grid columns: the status column, then the master columns
TIME_GMT = 1 + 9
TOW = 1 + 2
NET = 1 + 3
MIN_DEPTH = 1 + 6


def objects(store: MasterStore, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in store.bucket.list_objects(prefix))


EDITED, WHITE = (255, 242, 179), (255, 255, 255)  # the edit mark (#fff2b3), no mark

# The grid paints into one canvas under a transparent overlay (its selections): the
# first canvas at the point with an opaque pixel there is what shows.
PIXEL = """([x, y]) => {
  for (const canvas of document.elementsFromPoint(x, y)) {
    if (!(canvas instanceof HTMLCanvasElement)) continue;
    const r = canvas.getBoundingClientRect();
    const [sx, sy] = [canvas.width / r.width, canvas.height / r.height];
    const d = canvas.getContext('2d').getImageData((x - r.left) * sx, (y - r.top) * sy, 1, 1);
    if (d.data[3] > 0) return [d.data[0], d.data[1], d.data[2]];
  }
  return null;
}"""


def cell_color(page: Any, editor: Any, grid_row: int, grid_col: int) -> tuple[int, ...]:
    """The background of a cell, as painted: a pixel near its left edge (text is not)."""
    box = editor.locator(".lm-DataGrid").first.bounding_box()
    x = box["x"] + ROW_HEADER + sum(grid_widths(editor)[:grid_col]) + 3
    y = box["y"] + HEADER_HEIGHT + grid_row * ROW_HEIGHT + 3
    return tuple(page.evaluate(PIXEL, [x, y]) or ())


def fill_note(editor: Any, note: str) -> None:
    editor.locator("input[placeholder*='what did you change']").fill(note)


def select_block(page: Any, editor: Any, first: tuple[int, int], last: tuple[int, int]) -> None:
    """Select grid cells from ``first`` to ``last`` (row, column) as a user does: click,
    then Shift+click."""
    page.mouse.click(*cell_point(page, editor, *first))
    page.keyboard.down("Shift")
    page.mouse.click(*cell_point(page, editor, *last))
    page.keyboard.up("Shift")


# Long tasks (the browser blocked) and canvas copies (drawImage) from now on; READ_PAINT
# reads both two animation frames later (the paint done).
WATCH_PAINT = """() => {
  window.__paint = { blocked: 0, copies: 0 };
  if (!window.__paintWatched) {
    window.__paintWatched = true;
    new PerformanceObserver((list) => {
      for (const task of list.getEntries()) window.__paint.blocked += task.duration;
    }).observe({ type: "longtask" });
    const draw = CanvasRenderingContext2D.prototype.drawImage;
    CanvasRenderingContext2D.prototype.drawImage = function (...args) {
      window.__paint.copies += 1;
      return draw.apply(this, args);
    };
  }
}"""
READ_PAINT = """() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(
  () => setTimeout(() => done([window.__paint.blocked, window.__paint.copies]), 300))))"""


def click_button(editor: Any, label: str) -> None:
    editor.locator("button", has_text=re.compile(rf"^\s*{label}\s*$")).first.click()


def wait_message(page: Any, editor: Any, text: str) -> str:
    """Wait until the editor's message area says ``text``; return the message."""
    # The HTML widget replaces its content on every message: query afresh each time.
    page.wait_for_function(
        "t => (document.querySelector('.s3grid-editor .s3grid-message') || {}).innerText"
        "?.includes(t)",
        arg=text,
    )
    out: str = editor.locator(".s3grid-message").inner_text()
    return out


def test_edit_float_cell_and_save(page: Any, lab: Lab, e2e_store: MasterStore) -> None:
    base = e2e_store.load()
    editor = run_notebook(page, lab, "01_edit_master.ipynb")
    type_in_cell(page, editor, 0, VOLUME, "123.5")
    wait_message(page, editor, "tow 1 · net 0: volume_filtered = 123.5")
    # The ⚑ flag follows the edit at once only where gridpatch.js runs in the browser: the
    # kernel pushes it after the browser has reported the patch applied.
    wait_shown(page, editor, 0, STATUS, "edited: volume_filtered")
    assert shown_in_cell(page, editor, 0, VOLUME) == "123.5"
    assert shown_in_cell(page, editor, 1, STATUS) == ""
    # Undo and Redo of one cell send just that cell and its flag, like the edit itself.
    loaded = cell_text(base.to_pandas().loc[0, "volume_filtered"])
    click_button(editor, "Undo")
    wait_shown(page, editor, 0, VOLUME, loaded)
    wait_shown(page, editor, 0, STATUS, "")
    click_button(editor, "Redo")
    wait_shown(page, editor, 0, VOLUME, "123.5")
    wait_shown(page, editor, 0, STATUS, "edited: volume_filtered")
    page.mouse.click(*cell_point(page, editor, 5, TOW))  # the selection away from row 0
    page.wait_for_timeout(300)
    assert cell_color(page, editor, 0, VOLUME) == EDITED  # the edited cell is marked
    assert cell_color(page, editor, 0, TOW) == WHITE  # not the rest of its row
    fill_note(editor, "e2e: fix volume ✓")
    click_button(editor, "Save")
    wait_message(page, editor, "Saved version")

    latest = e2e_store.load()
    assert latest.version_id != base.version_id
    assert latest.to_pandas().loc[0, "volume_filtered"] == 123.5
    log = e2e_store.audit_log()
    last = log.iloc[-1]
    assert last["note"] == "e2e: fix volume ✓"
    assert last["new_version"] == latest.version_id
    assert last["prev_version"] == base.version_id
    assert last["snapshot_key"] in objects(e2e_store, "snapshots/")
    raw = e2e_store.bucket.get(last["audit_key"])[0]
    assert json.loads(raw)["changes"]["cells_changed"] == 1
    assert latest.version_id is not None
    assert latest.version_id[:12] in editor.locator(".s3grid-status").inner_text()


def test_invalid_value_is_refused_and_cell_reverts(
    page: Any, lab: Lab, e2e_store: MasterStore
) -> None:
    editor = run_notebook(page, lab, "01_edit_master.ipynb")
    assert shown_in_cell(page, editor, 0, TOW) == "1"
    type_in_cell(page, editor, 0, TOW, "7.5")
    text = wait_message(page, editor, "fractional part")
    assert "tow 1 · net 0, column 'tow'" in text
    assert "int32" in text
    page.wait_for_timeout(500)
    assert shown_in_cell(page, editor, 0, TOW) == "1"
    assert "0</b> pending" in editor.locator(".s3grid-status").inner_html()


def test_conflict_view_merge_and_save(page: Any, lab: Lab, e2e_store: MasterStore) -> None:
    editor = run_notebook(page, lab, "01_edit_master.ipynb")
    type_in_cell(page, editor, 1, VOLUME, "11.5")
    wait_message(page, editor, "tow 1 · net 1: volume_filtered = 11.5")
    type_in_cell(page, editor, 2, VOLUME, "22.5")
    wait_message(page, editor, "tow 1 · net 2: volume_filtered = 22.5")

    # A colleague saves behind the editor's back: one overlapping cell, one not.
    m = e2e_store.load()
    df = m.to_pandas()
    df.loc[1, "volume_filtered"] = 99.0
    df.loc[5, "min_depth"] = 7
    e2e_store.save(df, base=m, note="colleague's fix")

    fill_note(editor, "my volumes")
    click_button(editor, "Save")
    text = wait_message(page, editor, "saved a new version")
    assert "Conflict:" in text and "colleague's fix" in text
    panel = editor.locator(".s3grid-conflicts")
    panel.wait_for(state="visible")
    assert "theirs 99.0, mine 11.5" in panel.inner_text()
    # an edit made while the conflict shows is part of the merge
    type_in_cell(page, editor, 3, MIN_DEPTH, "42")
    wait_message(page, editor, "tow 1 · net 3: min_depth = 42")
    panel.locator("button", has_text="mine").first.click()
    click_button(editor, "Apply merge")
    wait_message(page, editor, "Merged onto version")
    fill_note(editor, "my volumes, merged")
    click_button(editor, "Save")
    wait_message(page, editor, "Saved version")

    final = e2e_store.load().to_pandas()
    assert final.loc[1, "volume_filtered"] == 11.5  # mine, picked in the conflict view
    assert final.loc[2, "volume_filtered"] == 22.5  # mine, merged automatically
    assert final.loc[5, "min_depth"] == 7  # theirs, kept
    assert final.loc[3, "min_depth"] == 42  # mine, typed while the conflict showed
    assert list(e2e_store.audit_log()["note"])[-2] == "colleague's fix"


def test_edit_under_the_grids_own_sort_uses_ipydatagrid_path(
    page: Any, lab: Lab, e2e_store: MasterStore
) -> None:
    # gridpatch.js steps aside while a front-end sort is active (the edit may move the
    # row): ipydatagrid's own code then maps the sorted view row back to the right row.
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("from s3grid import Editor\neditor = Editor.from_env()\neditor"),
        nbformat.v4.new_code_cell(
            "editor.grid.transform([{'type': 'sort', 'column': 'min_depth', 'desc': True}])"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)"}
    nbformat.write(nb, lab.root / "sorted_in_browser.ipynb")
    editor = run_notebook(page, lab, "sorted_in_browser.ipynb")
    loaded = e2e_store.load().to_pandas()
    deepest = loaded["min_depth"].astype(str).max()  # the grid sorts its text
    wait_shown(page, editor, 0, MIN_DEPTH, deepest)  # the sort arrives after the first paint
    tow, net = int(shown_in_cell(page, editor, 0, TOW)), int(shown_in_cell(page, editor, 0, NET))
    row = int(loaded.index[(loaded["tow"] == tow) & (loaded["net"] == net)][0])
    assert row != 0  # the sort moved it: the view row and the row differ
    type_in_cell(page, editor, 0, VOLUME, "77.5")
    wait_message(page, editor, f"tow {tow} · net {net}: volume_filtered = 77.5")
    assert shown_in_cell(page, editor, 0, VOLUME) == "77.5"
    fill_note(editor, "under the grid's sort")
    click_button(editor, "Save")
    wait_message(page, editor, "Saved version")
    saved = e2e_store.load().to_pandas()
    assert saved.loc[row, "volume_filtered"] == 77.5
    assert e2e_store.audit_log().iloc[-1]["cells_changed"] == 1


# Records, in the browser, what the editor showed at any moment during a save.
WATCH_EDITOR = """() => {
  const ed = document.querySelector('.s3grid-editor');
  window.__seen = {bar: false, saving: false, locked: false};
  new MutationObserver(() => {
    const seen = window.__seen;
    seen.bar ||= !!ed.querySelector('.widget-hprogress, progress');
    seen.saving ||= (ed.querySelector('.s3grid-message') || {}).innerText?.includes('Saving');
    const save = [...ed.querySelectorAll('button')].find(b => b.innerText.trim() === 'Save');
    seen.locked ||= !!(save && save.disabled);
  }).observe(ed, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def test_save_shows_its_progress_in_the_editor(page: Any, lab: Lab, e2e_store: MasterStore) -> None:
    # Transfers of a large master show a progress bar; make every transfer "large" here.
    # From a button's callback the bar must land in the editor, not in the log console.
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import s3grid.s3\n"
            "s3grid.s3.PROGRESS_BYTES = 1\n"
            "from s3grid import Editor\n"
            "editor = Editor.from_env()\n"
            "editor"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)"}
    nbformat.write(nb, lab.root / "progress.ipynb")
    editor = run_notebook(page, lab, "progress.ipynb")
    type_in_cell(page, editor, 0, VOLUME, "5.5")
    wait_message(page, editor, "tow 1 · net 0: volume_filtered = 5.5")
    fill_note(editor, "progress")
    page.evaluate(WATCH_EDITOR)
    click_button(editor, "Save")
    wait_message(page, editor, "Saved version")
    seen = page.evaluate("() => window.__seen")
    assert seen == {"bar": True, "saving": True, "locked": True}
    assert editor.locator(".widget-hprogress").count() == 0  # gone once done
    assert editor.locator("button", has_text="Save").first.is_enabled()
    assert e2e_store.load().to_pandas().loc[0, "volume_filtered"] == 5.5


@pytest.fixture
def big_store(endpoint: str) -> MasterStore:
    return seed_e2e_bucket(endpoint, 1_000_000, "1M rows")


def test_edit_row_900000_of_1m_through_a_filter(
    page: Any, lab: Lab, big_store: MasterStore
) -> None:
    editor = run_notebook(page, lab, "01_edit_master.ipynb")
    assert "1,000,000 rows" in editor.locator(".s3grid-status").inner_text()
    target = big_store.load().to_pandas().iloc[900_000]
    box = editor.locator("input[placeholder^='filter']")
    box.fill(f"tow == {target['tow']} and net == {target['net']}")
    box.press("Enter")
    page.locator(".s3grid-editor .widget-label", has_text="· 1 row").wait_for()
    type_in_cell(page, editor, 0, VOLUME, "900.5")
    label = f"tow {target['tow']} · net {target['net']}"
    wait_message(page, editor, f"{label}: volume_filtered = 900.5")
    fill_note(editor, "row 900,000")
    click_button(editor, "Save")
    wait_message(page, editor, "Saved version")
    saved = big_store.load().to_pandas()
    assert saved.loc[900_000, "volume_filtered"] == 900.5
    assert len(saved) == 1_000_000
    assert big_store.audit_log().iloc[-1]["cells_changed"] == 1


def header_menu_point(page: Any, editor: Any, grid_col: int) -> tuple[float, float]:
    """Where the header's menu button is: the right end of the column's header cell."""
    box = editor.locator(".lm-DataGrid").first.bounding_box()
    right = box["x"] + ROW_HEADER + sum(grid_widths(editor)[: grid_col + 1])
    return right - 8, box["y"] + HEADER_HEIGHT / 2


def test_the_header_menu_sorts_the_whole_master(
    page: Any, lab: Lab, endpoint: str, tmp_path: Any
) -> None:
    store = seed_e2e_bucket(endpoint, 1200, "three pages")  # 500 rows a page
    editor = run_notebook(page, lab, "01_edit_master.ipynb")
    master = store.load().to_pandas()
    # the next page, from a grid scrolled down: its first rows, at the top, in columns
    # as wide as before; the browser blocked under 300 ms, the canvas copied once per
    # region painted (not once per cell)
    box = editor.locator(".lm-DataGrid").first.bounding_box()
    page.mouse.move(box["x"] + 300, box["y"] + 200)
    page.mouse.wheel(0, 400)
    page.evaluate(WATCH_PAINT)
    click_button(editor, "▶")
    page.locator(".s3grid-editor .widget-label", has_text="page 2/3").wait_for()
    blocked, copies = page.evaluate(READ_PAINT)
    assert blocked <= 300, f"a page flip blocked the browser {blocked:.0f} ms"
    assert copies <= 8, f"a page flip copied the canvas {copies} times"
    wait_shown(page, editor, 0, TOW, str(master.loc[500, "tow"]))
    assert shown_in_cell(page, editor, 0, NET) == str(master.loc[500, "net"])
    click_button(editor, "◀")
    page.locator(".s3grid-editor .widget-label", has_text="page 1/3").wait_for()

    page.evaluate(WATCH_PAINT)
    page.mouse.click(*header_menu_point(page, editor, TOW))
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("Sort Descending")).click()
    wait_message(page, editor, "sorted by tow (descending, over all of them)")
    blocked, copies = page.evaluate(READ_PAINT)
    assert blocked <= 300, f"the header's sort blocked the browser {blocked:.0f} ms"
    # the largest tow of the whole master, not of the first page
    wait_shown(page, editor, 0, TOW, str(master["tow"].max()))
    assert master["tow"].max() > master["tow"].iloc[:500].max()
    assert editor.locator("select").first.input_value() == "tow"
    page.screenshot(path=str(tmp_path / "header-sort.png"))


def test_a_save_without_a_note_is_refused_and_reload_of_a_missing_master_says_so(
    page: Any, lab: Lab, e2e_store: MasterStore
) -> None:
    base = e2e_store.load()
    editor = run_notebook(page, lab, "01_edit_master.ipynb")
    type_in_cell(page, editor, 0, VOLUME, "3.5")
    wait_message(page, editor, "volume_filtered = 3.5")
    click_button(editor, "Save")
    wait_message(page, editor, "Write a note first")
    assert e2e_store.load().version_id == base.version_id
    assert "1</b> pending" in editor.locator(".s3grid-status").inner_html()
    click_button(editor, "Revert all")
    wait_message(page, editor, "Reverted 1 pending change(s)")
    # another master's key, which does not exist: said, and the editor stays as it was
    field = editor.locator("input").nth(1)  # Master key
    assert field.input_value() == "data/master.parquet"
    field.fill("data/nothing-here.parquet")
    click_button(editor, "Reload")
    text = wait_message(page, editor, "Could not load")
    assert "data/nothing-here.parquet" in text
    assert "200 rows" in editor.locator(".s3grid-status").inner_text()


def test_a_colleagues_save_shows_in_the_open_editor(
    page: Any, lab: Lab, e2e_store: MasterStore
) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from s3grid import Editor\nEditor.from_env(watch=1)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)"}
    nbformat.write(nb, lab.root / "watching.ipynb")
    editor = run_notebook(page, lab, "watching.ipynb")
    m = e2e_store.load()
    df = m.to_pandas()
    df.loc[3, "volume_filtered"] = 4.5
    res = e2e_store.save(df, base=m, note="fix tow 1 volume")
    notice = editor.locator(".s3grid-notice")
    notice.wait_for(timeout=30_000)
    text = notice.inner_text()
    assert "saved a new version just now" in text and "'fix tow 1 volume'" in text
    click_button(editor, "Reload")
    wait_message(page, editor, f"Loaded version {res.new_version}")  # not the first load's
    assert editor.locator(".s3grid-notice").count() == 0


def test_at_a_narrow_width_the_controls_stay_in_view(
    browser: Any, lab: Lab, e2e_store: MasterStore, tmp_path: Any
) -> None:
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    try:
        editor = run_notebook(page, lab, "01_edit_master.ipynb")
        page.screenshot(path=str(tmp_path / "narrow.png"))
        area = editor.bounding_box()
        for label in ("Reload", "Save", "Undo", "Add row", "Delete rows", "Revert all", "Changes"):
            button = editor.locator("button", has_text=label).first
            box = button.bounding_box()
            assert box["x"] + box["width"] <= area["x"] + area["width"] + 1, label
            # the whole label shows (no ellipsis)
            assert button.evaluate("b => b.scrollWidth <= b.clientWidth"), label
        for field in editor.locator("input[type='text']").all()[:4]:  # bucket, key, prefixes
            box = field.bounding_box()
            assert box["x"] + box["width"] <= area["x"] + area["width"] + 1
        grid = editor.locator(".lm-DataGrid").first.bounding_box()
        assert grid["width"] <= area["width"] + 1  # the grid scrolls inside the notebook
    finally:
        context.close()


MAX_DEPTH = 1 + 7
IS_DAY = 1 + 11


def test_paste_fill_down_dropdown_find_and_history_in_the_browser(
    browser: Any, lab: Lab, e2e_store: MasterStore, tmp_path: Any
) -> None:
    # wide enough that is_day, the last but one column, shows without scrolling
    context = browser.new_context(viewport={"width": 2200, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    try:
        master = e2e_store.load().to_pandas()
        editor = run_notebook(page, lab, "01_edit_master.ipynb")
        # wider than its columns: each widens in proportion and the grid has no empty band
        widths = grid_widths(editor)
        body = editor.locator(".lm-DataGrid").first.bounding_box()["width"] - ROW_HEADER
        assert sum(SIZED) < body - 200
        assert body - 40 <= sum(widths) <= body  # less the vertical scroll bar
        assert all(w >= s for w, s in zip(widths, SIZED, strict=True))
        # Ctrl+V of a spreadsheet's range: min_depth and max_depth of two rows, one
        # value refused; the rest applied, and one Undo takes the paste back
        page.mouse.click(*cell_point(page, editor, 0, MIN_DEPTH))
        page.evaluate("t => navigator.clipboard.writeText(t)", "5\t6\nx\t8\n")
        page.keyboard.press("Control+V")
        text = wait_message(page, editor, "Pasted 2 × 2")
        assert "3 cell(s) changed" in text and "1 value(s) refused" in text
        refused = editor.locator(".s3grid-refused").inner_text()
        assert "min_depth" in refused and "not a number" in refused
        wait_shown(page, editor, 0, MIN_DEPTH, "5")
        wait_shown(page, editor, 1, MAX_DEPTH, "8")
        click_button(editor, "Undo")
        wait_message(page, editor, "Undone")
        wait_shown(page, editor, 0, MIN_DEPTH, str(master.loc[0, "min_depth"]))
        wait_shown(page, editor, 1, MAX_DEPTH, str(master.loc[1, "max_depth"]))

        # Ctrl+D fills a selection down from its top row
        select_block(page, editor, (0, MAX_DEPTH), (3, MAX_DEPTH))
        page.keyboard.press("Control+d")
        wait_message(page, editor, "Filled down 3 row(s)")
        wait_shown(page, editor, 3, MAX_DEPTH, str(master.loc[0, "max_depth"]))

        # a boolean column's cells edit with a true/false dropdown
        page.mouse.dblclick(*cell_point(page, editor, 2, IS_DAY))
        choice = page.locator("select.lm-DataGrid-cellEditorWidget")
        choice.wait_for(state="visible")
        assert choice.locator("option").all_inner_texts()[:2] == ["true", "false"]
        flipped = "false" if master.loc[2, "is_day"] else "true"
        choice.select_option(flipped)
        choice.press("Enter")
        wait_message(page, editor, f"is_day = {flipped}")

        # a read-only column's cell opens no editor; the message says why
        page.mouse.dblclick(*cell_point(page, editor, 4, 1))  # vessel
        wait_message(page, editor, "Column 'vessel' is read-only")
        assert page.locator(".lm-DataGrid-cellEditorInput").count() == 0

        # Find searches every column of the whole master, n of N
        find = editor.locator("input[placeholder='find in every column']")
        find.fill("point sur")  # text matches ignore case
        find.press("Enter")
        expected = int(master["vessel"].str.contains("Point Sur").sum())
        assert expected > 1
        label = editor.locator(".widget-label", has_text=" of ")
        label.wait_for()
        assert label.inner_text() == f"1 of {expected}"
        editor.locator("button[title='next match']").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.s3grid-editor .widget-label')]"
            ".some(l => l.innerText.startsWith('2 of '))"
        )

        # Ctrl+C copies a block as tab-separated text that pastes back identically
        select_block(page, editor, (5, VOLUME), (6, TIME_GMT))
        page.keyboard.press("Control+c")
        copied = page.evaluate("() => navigator.clipboard.readText()")
        assert copied.rstrip("\r\n") == "\n".join(
            f"{cell_text(master.loc[r, 'volume_filtered'])}\t"
            f"{cell_text(master.loc[r, 'time_start_gmt'])}"
            for r in (5, 6)
        )
        page.mouse.click(*cell_point(page, editor, 8, VOLUME))
        page.keyboard.press("Control+V")
        text = wait_message(page, editor, "Pasted 2 × 2")
        assert "4 cell(s) changed" in text and "refused" not in text
        select_block(page, editor, (8, VOLUME), (9, TIME_GMT))
        page.keyboard.press("Control+c")
        assert page.evaluate("() => navigator.clipboard.readText()") == copied

        # Set in column: counted over every row (the whole master), asked, then one step
        page.mouse.click(*cell_point(page, editor, 0, MIN_DEPTH))
        editor.locator("input[placeholder='value']").fill("7")
        click_button(editor, "Set in column…")
        editor.locator("button", has_text=f"in all {len(master)} rows of the table").click()
        wait_message(page, editor, f"Set min_depth = 7 in {len(master)} row(s)")
        wait_shown(page, editor, 12, MIN_DEPTH, "7")
        click_button(editor, "Undo")
        wait_message(page, editor, "Undone")
        wait_shown(page, editor, 12, MIN_DEPTH, str(master.loc[12, "min_depth"]))

        # a paste past the last row of a filtered window offers to add rows
        nets = int(master["tow"].eq(3).sum())
        box = editor.locator("input[placeholder^='filter']")
        box.fill("tow == 3")
        box.press("Enter")
        page.locator(".s3grid-editor .widget-label", has_text=f"· {nets} rows").wait_for()
        page.mouse.click(*cell_point(page, editor, nets - 1, TOW))
        page.evaluate("t => navigator.clipboard.writeText(t)", "3\t98\n3\t99\n")
        page.keyboard.press("Control+V")
        wait_message(page, editor, "1 more than the table has")
        click_button(editor, "Add 1 row\\(s\\) and paste")
        text = wait_message(page, editor, "Pasted 2 × 2")
        assert "1 row(s) added" in text
        wait_shown(page, editor, nets, NET, "99")
        click_button(editor, "Undo")
        wait_message(page, editor, "Undone")
        box.fill("")
        box.press("Enter")
        page.locator(".s3grid-editor .widget-label", has_text=f"· {len(master)} rows").wait_for()

        # the history of the selected cell: the upload that made it
        page.mouse.click(*cell_point(page, editor, 0, VOLUME))
        click_button(editor, "History")
        wait_message(page, editor, "History of tow 1 · net 0 · volume_filtered")
        assert "e2e seed" in editor.locator(".s3grid-history").inner_text()

        # the selected column's summary
        click_button(editor, "Summary")
        summary = editor.locator(".s3grid-summary")
        summary.wait_for()
        assert "distinct" in summary.inner_text() and "double" in summary.inner_text()

        # the Versions view lists the saves and shows the changes between two
        fill_note(editor, "a day with the tools")
        click_button(editor, "Save")
        wait_message(page, editor, "Saved version")
        editor.locator("button", has_text="Versions").click()
        versions = editor.locator(".s3grid-versions")
        versions.wait_for()
        assert "a day with the tools" in versions.inner_text()
        assert "e2e seed" in versions.inner_text() and "init" in versions.inner_text()
        click_button(editor, "Show changes")  # the newest save against the one before
        wait_message(page, editor, "8 change(s) from “From” to “To”")
        diff = editor.locator(".s3grid-diff").inner_text()
        assert "volume_filtered" in diff and "is_day" in diff
        page.screenshot(path=str(tmp_path / "tools.png"))

        # restoring a version asks first, then goes through the locked save
        saves = len(e2e_store.audit_log())
        to = editor.locator(".widget-dropdown", has=page.locator("label", has_text="To"))
        to.locator("select").select_option(index=saves - 1)  # the oldest save
        fill_note(editor, "back to the first version")
        click_button(editor, "Restore “To”…")
        wait_message(page, editor, "as a new version of the master?")
        assert len(e2e_store.audit_log()) == saves  # asked: nothing written yet
        editor.locator("button.mod-danger", has_text="Restore").click()
        wait_message(page, editor, "Restored the version saved")
        log = e2e_store.audit_log()
        assert len(log) == saves + 1
        assert log.iloc[-1]["source"] == "restore"
        assert log.iloc[-1]["note"] == "back to the first version"
        assert editor.locator(".s3grid-diff").count() == 0  # the diff shown is cleared
        editor.locator("button", has_text="Versions").click()  # closed: the grid in view
        wait_shown(page, editor, 8, VOLUME, cell_text(master.loc[8, "volume_filtered"]))
    except Exception:
        page.screenshot(path=str(tmp_path / "tools-failed.png"))
        raise
    finally:
        context.close()
