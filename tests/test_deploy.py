"""The Lambda container image (deploy/lambda/Dockerfile) installs and its handler works.

Docker is not here: the test stages the files the Dockerfile's COPY lines name, runs
its ``pip install`` line as written in a fresh virtual environment, and invokes the
handler its CMD names from the installed tree alone (an isolated interpreter), against
the local S3.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from s3grid import MasterStore
from tests.support.events import STAGING, stage

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "lambda" / "Dockerfile"


def test_the_lambda_image_installs_and_promotes(
    tmp_path: Path, master_store: MasterStore, s3: Any, bucket: str
) -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:3\.\d+$", text, re.M)
    (handler,) = re.findall(r'^CMD \["([\w.]+)"\]$', text, re.M)
    image = tmp_path / "image"  # the image's file system, as far as the install sees it
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, dest = line.split()
        for source in sources:
            target = image / dest.lstrip("/")
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, target)
    (install,) = re.findall(r"^RUN (pip install .+?) && ", text, re.M)
    task = tmp_path / "task"  # LAMBDA_TASK_ROOT
    copied = tuple(re.findall(r"^COPY .+ (/\S+?)/?$", text, re.M))
    args = [
        str(image / a.lstrip("/")) if a.startswith(copied) else a
        for a in shlex.split(install.replace("${LAMBDA_TASK_ROOT}", str(task)))
    ]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (task / "s3grid" / "aws_lambda.py").exists()

    # The handler, from the installed tree only (-I: no site-packages, no cwd, no env paths)
    stage(master_store, s3, bucket, 42.0)
    module, _, function = handler.rpartition(".")
    code = (
        f"import json, sys; sys.path.insert(0, {str(task)!r}); import {module} as m; "
        f"print(json.dumps(m.{function}({{}}, None)))"
    )
    env = {
        **os.environ,
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": master_store.cfg.endpoint_url or "",
    }
    ran = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    out = json.loads(ran.stdout.strip().splitlines()[-1])
    assert out["status"] == "promoted", out
    assert out["prefix"] == STAGING
    assert master_store.load().to_pandas().loc[0, "volume_filtered"] == 42.0
    assert master_store.audit_log().iloc[-1]["source"] == "automation"
