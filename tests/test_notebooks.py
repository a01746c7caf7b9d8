"""The notebooks in notebooks/ run top to bottom against the local endpoint."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from s3grid import MasterStore, S3GridConfig
from s3grid.sample import sample_master

pytestmark = pytest.mark.notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(name: str, cfg: S3GridConfig, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("S3_BUCKET", cfg.bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", cfg.endpoint_url or "")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> str:
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", ""))
            text.extend(str(v) for v in out.get("data", {}).values())
    return "\n".join(text)


def test_01_edit_master_shows_the_editor(
    cfg: S3GridConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    MasterStore(cfg).create(sample_master(30), note="seed")
    nb = execute("01_edit_master.ipynb", cfg, monkeypatch)
    out = outputs(nb)
    assert "application/vnd.jupyter.widget-view+json" in str(nb.cells[1].outputs[0]["data"])
    assert "Error" not in out
    assert "testing" not in out  # the fake credentials are never printed


def test_03_review_audits_diffs_and_writes_nothing_on_run_all(
    cfg: S3GridConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MasterStore(cfg)
    store.create(sample_master(30), note="seed")
    m = store.load()
    df = m.to_pandas()
    df.loc[0, "volume_filtered"] = 1.0
    store.save(df, base=m, note="an edit")
    latest = store.load()
    nb = execute("03_review_audits.ipynb", cfg, monkeypatch)
    out = outputs(nb)
    assert "ChangeCounts(cells_changed=1, rows_added=0, rows_deleted=0)" in out
    assert "restoring snapshots/master_" in out and "would change: ChangeCounts(cells_cha" in out
    assert "Not restored (RESTORE = False): nothing was written." in out
    assert "testing" not in out  # no credentials printed
    assert list(store.audit_log()["source"]) == ["init", "api"]  # Run All restored nothing
    assert store.load().version_id == latest.version_id
    # the example restores when asked to
    cell = next(c for c in nb.cells if "RESTORE = False" in c.source)
    cell.source = cell.source.replace("RESTORE = False", "RESTORE = True")
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    assert "restored snapshots/master_" in outputs(nb)
    assert list(store.audit_log()["source"]) == ["init", "api", "restore"]
    assert store.load().table.equals(m.table)


def test_02_bulk_edit_sql_applies_the_seed_recipe(
    cfg: S3GridConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.seed import SEED_SQL, expected_seed_result

    store = MasterStore(cfg)
    store.create(sample_master(30), note="seed")
    base = store.load()
    nb = execute("02_bulk_edit_sql.ipynb", cfg, monkeypatch)
    out = outputs(nb)
    assert SEED_SQL.strip() in nb.cells[1].source
    assert "ChangeCounts(cells_changed=7, rows_added=0, rows_deleted=1)" in out
    assert "testing" not in out  # no credentials printed
    assert f"TO 's3://{cfg.bucket}/staging/data/master.parquet/runs/RUN_ID/'" in out
    after = store.load().to_pandas()
    pd.testing.assert_frame_equal(after, expected_seed_result(base.to_pandas()))
    assert store.audit_log().iloc[-1]["source"] == "sql"
    # run again: the recipe is applied once
    out = outputs(execute("02_bulk_edit_sql.ipynb", cfg, monkeypatch))
    assert "Already applied (see the audit log): not applying it twice." in out
    pd.testing.assert_frame_equal(store.load().to_pandas(), after)
    assert list(store.audit_log()["source"]) == ["init", "sql"]
