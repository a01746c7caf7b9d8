"""`s3grid demo`: serves JupyterLab quickly, stops on Ctrl+C, keeps saves across restarts."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from s3grid import MasterStore, S3GridConfig
from s3grid.demo import DEMO_BUCKET
from tests.e2e.conftest import _free_port


def start_demo(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "s3grid",
            "demo",
            "--no-browser",
            "--port",
            str(port),
            "--rows",
            "100",
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    s3_url = lab_url = ""
    while time.monotonic() < deadline and not lab_url:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        if m := re.search(r"S3 endpoint: (\S+)", line):
            s3_url = m[1]
        if m := re.search(r"JupyterLab:\s+(\S+)", line):
            lab_url = m[1]
    if not lab_url:
        proc.kill()
        pytest.fail("the demo did not serve JupyterLab within 60 s")
    return proc, s3_url, lab_url


def stop(proc: subprocess.Popen[str]) -> float:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the demo did not stop within 15 s of Ctrl+C")
    assert code == 0
    return time.monotonic() - t0


def test_demo_serves_stops_and_keeps_saves(tmp_path: Path, aws_env: None) -> None:
    port = _free_port()
    proc, s3_url, lab_url = start_demo(tmp_path, port)
    try:
        token = lab_url.split("token=")[1]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/status?token={token}", timeout=10
        ) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(lab_url, timeout=10) as resp:
            assert resp.status == 200
        store = MasterStore(S3GridConfig(bucket=DEMO_BUCKET, endpoint_url=s3_url))
        m = store.load()
        assert m.table.num_rows == 100
        df = m.to_pandas()
        df.loc[0, "volume_filtered"] = 4.5
        saved = store.save(df, base=m, note="before restart")
    finally:
        elapsed = stop(proc)
    assert elapsed < 10

    proc, s3_url, _ = start_demo(tmp_path, port)
    try:
        store = MasterStore(S3GridConfig(bucket=DEMO_BUCKET, endpoint_url=s3_url))
        again = store.load()
        assert again.version_id == saved.new_version
        assert again.etag == saved.new_etag
        assert again.to_pandas().loc[0, "volume_filtered"] == 4.5
        assert list(store.audit_log()["note"]) == ["demo: sample master", "before restart"]
        assert store.reconcile() == []
    finally:
        stop(proc)
