"""A real JupyterLab on 127.0.0.1 driven by Debian's Chromium through Python Playwright."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3grid.demo import lab_command
from tests.support.demo import free_port

CHROMIUM = os.environ.get("S3GRID_CHROMIUM", "/usr/bin/chromium")
E2E_BUCKET = "s3grid-e2e"
# Debian's Chromium, never Playwright's download; without the networking flags it keeps
# trying to reach Google's hosts from a machine that has no route to them.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
REPO = Path(__file__).resolve().parents[2]


class Lab:
    """A running JupyterLab: its base URL and token."""

    def __init__(self, base: str, token: str, root: Path) -> None:
        self.base = base
        self.token = token
        self.root = root

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}&reset"


@pytest.fixture(scope="session")
def lab(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("notebooks")
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        shutil.copy(nb, root / nb.name)  # the browser may autosave; never touch the repo
    port = free_port()
    token = secrets.token_hex(12)
    env = dict(os.environ)
    env.update(
        {
            "S3_BUCKET": E2E_BUCKET,
            "S3_ENDPOINT_URL": moto_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "JUPYTER_CONFIG_DIR": str(root / ".jupyter"),
            "JUPYTER_RUNTIME_DIR": str(root / ".runtime"),
        }
    )
    env.pop("AWS_PROFILE", None)
    # Warm up first: in a fresh clone nothing is compiled to bytecode yet, and the first
    # kernel would spend its first minute on that while the browser test waits for it.
    # The kernel's imports, run once here to the end, leave every module compiled.
    subprocess.run(
        [sys.executable, "-c", "import ipykernel.kernelapp, s3grid.editor, s3grid.sample"],
        check=True,
        env=env,
    )
    cmd = lab_command(port=port, root=root, token=token)
    log = open(root / "jupyter.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                raise RuntimeError((root / "jupyter.log").read_text()[-3000:]) from None
            time.sleep(0.5)
    yield Lab(base, token, root)
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    # Kept for debugging a failure: the last screen of the last browser test.
    pg.screenshot(path=str(Path(tempfile.gettempdir()) / "s3grid-e2e-last.png"))
    context.close()
