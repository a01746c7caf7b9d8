"""`s3grid demo`: serves JupyterLab quickly, stops on Ctrl+C, keeps saves across restarts."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from s3grid import MasterStore, S3GridConfig
from s3grid.demo import DEMO_BUCKET
from tests.support.demo import free_port, start_demo, stop_demo, use_demo_credentials


@pytest.mark.parametrize("kind", [pytest.param("seaweedfs", marks=pytest.mark.seaweedfs), "moto"])
def test_demo_serves_stops_and_keeps_saves(
    tmp_path: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    use_demo_credentials(monkeypatch)
    port = free_port()
    proc, s3_url, lab_url = start_demo(tmp_path, port, store=kind)
    try:
        token = lab_url.split("token=")[1]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/status?token={token}", timeout=10
        ) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(lab_url, timeout=10) as resp:
            assert resp.status == 200
        # JupyterLab serves the demo's own copy of the notebooks
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/contents/?token={token}", timeout=10
        ) as resp:
            served = {item["name"] for item in json.load(resp)["content"]}
        shipped = {p.name for p in (Path(__file__).parents[1] / "notebooks").glob("*.ipynb")}
        assert shipped <= served and len(shipped) == 3
        assert {p.name for p in (tmp_path / "notebooks").glob("*.ipynb")} == shipped
        store = MasterStore(S3GridConfig(bucket=DEMO_BUCKET, endpoint_url=s3_url))
        m = store.load()
        assert m.table.num_rows == 100
        df = m.to_pandas()
        df.loc[0, "volume_filtered"] = 4.5
        saved = store.save(df, base=m, note="before restart")
    finally:
        stop_demo(proc)  # Ctrl+C stops it, Jupyter too, with exit code 0

    proc, s3_url, _ = start_demo(tmp_path, port, store=kind)
    try:
        store = MasterStore(S3GridConfig(bucket=DEMO_BUCKET, endpoint_url=s3_url))
        again = store.load()
        assert again.version_id == saved.new_version
        assert again.etag == saved.new_etag
        assert again.to_pandas().loc[0, "volume_filtered"] == 4.5
        assert list(store.audit_log()["note"]) == ["demo: sample master", "before restart"]
        assert store.reconcile() == []
    finally:
        stop_demo(proc)
