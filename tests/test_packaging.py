"""A wheel a user installs: one version, and `s3grid demo` working outside a checkout."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import s3grid
from s3grid import MasterStore, S3GridConfig
from s3grid.demo import DEMO_BUCKET
from tests.support.demo import free_port, start_demo, stop_demo, use_demo_credentials

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_runs_the_demo_in_a_fresh_environment(
    tmp_path: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    uv = shutil.which("uv")
    assert uv, "uv builds the wheel (`pip install uv`)"
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("s3grid-*.whl")
    # the version is written once, in s3grid/__init__.py
    assert wheel.name.startswith(f"s3grid-{s3grid.__version__}-")
    # A new environment with nothing but the wheel and what it declares: uv installs
    # it as pip would (from the registry, or uv's cache of it), in seconds instead of
    # minutes.
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = str(venv / "bin" / "python")
    done = subprocess.run(
        [uv, "pip", "install", "-q", "--python", python, f"{wheel}[demo]"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    meta = subprocess.run(
        [uv, "pip", "show", "--python", python, "s3grid"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.search(rf"^Version: {re.escape(s3grid.__version__)}$", meta, re.M)

    # Far from any checkout: the demo finds the notebooks inside the installed package
    away = tmp_path / "elsewhere"
    away.mkdir()
    port = free_port()
    proc, s3_url, lab_url = start_demo(
        away / ".s3grid-demo", port, command=(str(venv / "bin" / "s3grid"),), cwd=away, wait=120
    )
    try:
        token = lab_url.split("token=")[1]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/contents/?token={token}", timeout=10
        ) as resp:
            served = {item["name"] for item in json.load(resp)["content"]}
        assert {"01_edit_master.ipynb", "02_bulk_edit_sql.ipynb", "03_review_audits.ipynb"} <= (
            served
        )
        use_demo_credentials(monkeypatch)
        master = MasterStore(S3GridConfig(bucket=DEMO_BUCKET, endpoint_url=s3_url)).load()
        assert master.table.num_rows == 100
        # the demo extra brought SeaweedFS's binary, and the demo keeps its data there
        assert (away / ".s3grid-demo" / "seaweedfs").is_dir()
    finally:
        stop_demo(proc)
