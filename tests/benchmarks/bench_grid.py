"""Benchmark in Chromium: plain editable ipydatagrid DataGrid vs s3grid Editor.

    uv run python tests/benchmarks/bench_grid.py [--rows 10000 100000] [--plain-max 1000000]

For each size, the grids are opened in the same JupyterLab, one after the other, and
measured the same way: Run All -> grid canvas painted (ms), JS heap after paint (MB),
and main-thread time blocked by long tasks in the 3 s after one cell edit (ms).
Ratios are Editor / plain, from the same run. Above ``--plain-max`` rows only the Editor
runs (a plain DataGrid of 10M rows needs several GB of browser heap).

Then, in the Editor, the steps of moving around (500-row pages): the next page, a sort
(descending, over the whole master), deleting a row and undoing that. For each: how
long the browser's main thread was blocked by long tasks from the click until 1.5 s
after the result showed, and how long after the click the result showed (the editor's
page label or message saying so, then two animation frames: painted).

A third notebook, "one page", loads the same master and shows only its first 500 rows
in a plain DataGrid: the least any kernel-side window can cost here (the imports, the
GetObject, one grid's JavaScript and first paint), without any editing machinery. Its
ratio to the plain grid is the floor under the Editor's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import nbformat

CELLS = {
    "plain": "import pandas as pd\nfrom ipydatagrid import DataGrid\nfrom s3grid import "
    "MasterStore\ndf = MasterStore.from_env().load().to_pandas()\n"
    "DataGrid(df, editable=True, layout={'height': '420px'})",
    "page": "import pandas as pd\nfrom ipydatagrid import DataGrid\nfrom s3grid import "
    "MasterStore\ndf = MasterStore.from_env().load().table.slice(0, 500).to_pandas()\n"
    "DataGrid(df, editable=True, layout={'height': '420px'})",
    "editor": "from s3grid import Editor\nEditor.from_env()",
}
LONGTASKS = """() => { window.__blocked = 0; new PerformanceObserver(l => {
  for (const e of l.getEntries()) window.__blocked += e.duration; })
  .observe({type: 'longtask', buffered: false}); }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(
    page: Any, base: str, token: str, name: str, col: int, widths: list[int] | None = None
) -> dict[str, float]:
    page.goto(f"{base}/lab/tree/{name}.ipynb?token={token}&reset")
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="visible")
    page.wait_for_selector(
        ".jp-Notebook-ExecutionIndicator[data-status='idle']", state="attached", timeout=120_000
    )
    page.wait_for_timeout(1000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    t0 = time.perf_counter()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_selector(".jp-OutputArea .lm-DataGrid canvas", timeout=600_000)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    painted_ms = (time.perf_counter() - t0) * 1000
    page.wait_for_timeout(1500)
    heap = page.evaluate("() => performance.memory.usedJSHeapSize") / 1e6
    page.evaluate(LONGTASKS)
    grid = page.locator(".jp-OutputArea .lm-DataGrid").first
    box = grid.bounding_box()
    if name == "editor":  # the widths the editor's columns have in the browser
        widths = json.loads(grid.get_attribute("data-s3grid-widths") or "null") or widths
    widths = widths or [64] * (col + 1)  # ipydatagrid: 64 px
    x = box["x"] + 64 + sum(widths[:col]) + widths[col] / 2
    page.mouse.dblclick(x, box["y"] + 20 + 2 * 20 + 10)
    editor = page.locator(".lm-DataGrid-cellEditorInput")
    editor.wait_for(state="visible")
    editor.fill("123.5")
    editor.press("Enter")
    page.wait_for_timeout(3000)
    if name == "editor":  # the edit reached the kernel, and was accepted
        page.locator(".s3grid-message", has_text="volume_filtered = 123.5").wait_for()
    blocked = page.evaluate("() => window.__blocked")
    out = {"painted_ms": painted_ms, "heap_mb": heap, "blocked_ms": blocked}
    if name == "editor":
        out.update(moving_around(page, widths or []))
    return out


def step(page: Any, act: Any, shown: str) -> tuple[float, float]:
    """(blocked ms, ms to shown) of one step: ``act`` clicks; ``shown`` is a JS predicate
    that turns true when the editor says the step is done."""
    page.evaluate(LONGTASKS)
    t0 = time.perf_counter()
    act()
    page.wait_for_function(shown, timeout=600_000, polling=10)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    shown_ms = (time.perf_counter() - t0) * 1000
    page.wait_for_timeout(1500)
    return page.evaluate("() => window.__blocked"), shown_ms


def moving_around(page: Any, widths: list[int]) -> dict[str, float]:
    """The next page, a sort, a deletion and its undo, then a paste of 1,000 x 5 cells
    (Ctrl+V of tab-separated text, as a spreadsheet copies it) and its undo, in the
    Editor."""
    ed = page.locator(".s3grid-editor")
    label = (
        "() => [...document.querySelectorAll('.s3grid-editor .widget-label')]"
        ".map(e => e.innerText).join(' ')"
    )
    said = "() => document.querySelector('.s3grid-editor .s3grid-message')?.innerText || ''"

    def says(js: str, text: str) -> str:
        return f"() => ({js})().includes({text!r})"

    out: dict[str, float] = {}
    out["flip_blocked_ms"], out["flip_ms"] = step(
        page, lambda: ed.locator("button", has_text="▶").first.click(), says(label, "page 2/")
    )
    out["sort_blocked_ms"], out["sort_ms"] = step(
        page,
        lambda: (
            ed.locator("input[type='checkbox']").first.check(),
            ed.locator("select").first.select_option("tow"),
        ),
        says(said, "sorted by tow (descending"),
    )
    box = ed.locator(".lm-DataGrid").first.bounding_box()
    page.mouse.click(box["x"] + 64 + 20, box["y"] + 20 + 10)  # row 1's ⚑ cell
    out["delete_blocked_ms"], out["delete_ms"] = step(
        page, lambda: ed.locator("button", has_text="Delete rows").click(), says(said, "Deleted 1")
    )
    out["undo_blocked_ms"], out["undo_ms"] = step(
        page, lambda: ed.locator("button", has_text="Undo").click(), says(said, "Undone")
    )
    # lat_decimal .. max_depth (grid columns 5-9) of 1,000 rows from the first one shown
    text = "\n".join("\t".join(f"{r % 89 + 1}.5" for _ in range(5)) for r in range(1000))
    page.evaluate("t => navigator.clipboard.writeText(t)", text)
    page.mouse.click(box["x"] + 64 + sum(widths[:5]) + widths[5] / 2, box["y"] + 20 + 10)
    out["paste_blocked_ms"], out["paste_ms"] = step(
        page, lambda: page.keyboard.press("Control+V"), says(said, "Pasted 1,000 × 5")
    )
    out["paste_undo_blocked_ms"], out["paste_undo_ms"] = step(
        page, lambda: ed.locator("button", has_text="Undo").click(), says(said, "Undone")
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000])
    parser.add_argument("--plain-max", type=int, default=1_000_000)
    args = parser.parse_args()

    import boto3
    from playwright.sync_api import sync_playwright

    from s3grid import Editor, MasterStore, S3GridConfig
    from s3grid.demo import lab_command, start_local_s3

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
    from s3grid.sample import sample_master
    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

    server, endpoint = start_local_s3()
    s3 = boto3.client("s3", endpoint_url=endpoint)
    root = Path(tempfile.mkdtemp())
    for name, code in CELLS.items():
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(code)]
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        nbformat.write(nb, root / f"{name}.ipynb")
    port, token = free_port(), secrets.token_hex(8)
    env = dict(os.environ, S3_ENDPOINT_URL=endpoint, JUPYTER_CONFIG_DIR=str(root / ".j"))
    results: dict[int, dict[str, dict[str, float]]] = {}
    for rows in args.rows:
        bucket = f"bench-grid-{rows}"
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        MasterStore(S3GridConfig(bucket=bucket, endpoint_url=endpoint)).create(
            sample_master(rows), note="bench"
        )
        env["S3_BUCKET"] = bucket
        cmd = lab_command(port=port, root=root, token=token)
        lab = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        results[rows] = {}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[*CHROMIUM_ARGS, "--enable-precise-memory-info"],
            )
            runs = (("plain", 8), ("page", 8), ("editor", 9))  # the volume_filtered column
            sized = Editor(MasterStore(S3GridConfig(bucket=bucket, endpoint_url=endpoint)))
            widths = [sized.grid.column_widths[c] for c in ["⚑", *sized.session.columns]]
            sized.close()
            for name, col in runs if rows <= args.plain_max else runs[1:]:
                context = browser.new_context(viewport={"width": 1600, "height": 1000})
                context.grant_permissions(["clipboard-read", "clipboard-write"])
                page = context.new_page()
                page.set_default_timeout(600_000)
                results[rows][name] = measure(
                    page, base, token, name, col, widths if name == "editor" else None
                )
                context.close()
            browser.close()
        lab.terminate()
        lab.wait(timeout=30)
    server.stop()
    for rows, r in results.items():
        p, f, e = r.get("plain"), r["page"], r["editor"]
        print(
            f"{rows:,} rows{'':<16}{'plain':>9}{'one page':>10}{'Editor':>9}"
            f"{'Editor/plain':>14}{'page/plain':>12}"
        )
        for key, label in (
            ("painted_ms", "Run All -> painted (ms)"),
            ("heap_mb", "JS heap (MB)"),
            ("blocked_ms", "blocked after edit (ms)"),
        ):
            if p is None:
                print(f"  {label:<24}{'not run':>9}{f[key]:>10.0f}{e[key]:>9.0f}")
                continue
            ratios = [x[key] / p[key] if p[key] else float("nan") for x in (e, f)]
            print(
                f"  {label:<24}{p[key]:>9.0f}{f[key]:>10.0f}{e[key]:>9.0f}"
                f"{ratios[0]:>13.2f}x{ratios[1]:>11.2f}x"
            )
        print(f"  Editor, 500-row pages{'':<6}{'blocked (ms)':>14}{'shown after (ms)':>18}")
        for what, key in (
            ("next page", "flip"),
            ("sort (whole master)", "sort"),
            ("delete a row", "delete"),
            ("undo the delete", "undo"),
            ("paste 1,000 x 5", "paste"),
            ("undo the paste", "paste_undo"),
        ):
            print(f"    {what:<25}{e[key + '_blocked_ms']:>14.0f}{e[key + '_ms']:>18.0f}")


if __name__ == "__main__":
    main()
