"""Start and stop ``s3grid demo`` as a user would, and a free port for it."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


def use_demo_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The credentials the demo gives its kernels (its SeaweedFS accepts only these)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "demo")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "demo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_demo(
    data_dir: Path,
    port: int,
    *,
    command: tuple[str, ...] = (sys.executable, "-m", "s3grid"),
    cwd: Path | None = None,
    wait: float = 60,
    store: str | None = None,
) -> tuple[subprocess.Popen[str], str, str]:
    """Run ``<command> demo`` until it prints its S3 endpoint and JupyterLab's URL.

    Its output is read to the end in a thread, so that a full pipe never stalls it; its
    messages go to ``<data_dir>.log``, shown when it fails to start or stop.
    """
    log = open(f"{data_dir}.log", "w")  # noqa: SIM115 - the demo writes it until it stops
    proc = subprocess.Popen(
        [
            *command,
            "demo",
            "--no-browser",
            "--port",
            str(port),
            "--rows",
            "100",
            "--data-dir",
            str(data_dir),
            *(["--store", store] if store else []),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=cwd,
    )
    proc.log_path = log.name  # type: ignore[attr-defined]
    assert proc.stdout is not None
    deadline = time.monotonic() + wait
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
        pytest.fail(f"the demo did not serve JupyterLab within {wait:.0f} s:\n{_tail(proc)}")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, s3_url, lab_url


def _tail(proc: subprocess.Popen[str]) -> str:
    return Path(proc.log_path).read_text()[-3000:]  # type: ignore[attr-defined]


def stop_demo(proc: subprocess.Popen[str]) -> float:
    """Ctrl+C, as in a terminal; returns how long the demo took to stop."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the demo did not stop within 60 s of Ctrl+C:\n{_tail(proc)}")
    assert code == 0, _tail(proc)
    return time.monotonic() - t0
